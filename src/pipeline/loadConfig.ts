/**
 * Read and decode the config file through @effect/platform's FileSystem, logging unknown keys as warnings.
 *
 * @since 0.1.0
 */
import { FileSystem } from "@effect/platform"
import { Effect, Either, Option } from "effect"
import { type Config, decodeConfig } from "./Config.js"
import { ConfigError, describeCause } from "./Errors.js"

/**
 * Pure: the config decides who gets root's trust, so a file others can change is a finding. World-writable is
 * refused; group-writable, or (for a root run) owned by anyone but root, is warned about.
 *
 * @since 0.1.0
 */
export const configFileProblem = (
  info: { readonly mode: number; readonly uid: number | undefined },
  runningUid: number
): { readonly refuse?: string; readonly warn?: string } => {
  const mode = (info.mode & 0o7777).toString(8).padStart(4, "0")
  if ((info.mode & 0o002) !== 0) {
    return { refuse: `it is writable by every account (mode ${mode}); run chmod o-w on it` }
  }
  if ((info.mode & 0o020) !== 0) {
    return { warn: `it is writable by its group (mode ${mode}); anyone in it can grant SSH access` }
  }
  if (runningUid === 0 && info.uid !== undefined && info.uid !== 0) {
    return { warn: `it is owned by uid ${info.uid}, not root; that account can grant SSH access to every managed user` }
  }
  return {}
}

/**
 * Pure: the file's text, or undefined when it is not valid text. UTF-8, or UTF-16 when the file starts with its
 * byte-order mark, as yaml.v3 reads them (a config saved as "Unicode" by a Windows editor).
 *
 * @since 0.1.0
 */
export const configText = (bytes: Uint8Array): string | undefined => {
  const encoding = bytes[0] === 0xff && bytes[1] === 0xfe
    ? "utf-16le"
    : bytes[0] === 0xfe && bytes[1] === 0xff
    ? "utf-16be"
    : "utf-8"
  try {
    return new TextDecoder(encoding, { fatal: true }).decode(bytes)
  } catch {
    return undefined
  }
}

/** Far more than any real config (200 users with three sources each is about 40 KB). */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024

const TYPE_NAMES: Partial<Record<FileSystem.File.Type, string>> = {
  Directory: "a directory",
  BlockDevice: "a block device",
  CharacterDevice: "a character device",
  Socket: "a socket",
  Unknown: "of an unknown type"
}

/**
 * Pure: why a config file of this type and size is not read. A device would be read for ever (`/dev/zero`) or never
 * answer; a pipe (`--config /dev/stdin`, `<(…)`) is read as the Go original reads it.
 *
 * @since 0.1.0
 */
export const configTypeProblem = (type: FileSystem.File.Type, size: bigint): string | undefined => {
  const name = TYPE_NAMES[type]
  if (name !== undefined) return `it is ${name}, not a regular file`
  if (type === "File" && size > BigInt(MAX_CONFIG_BYTES)) return `it is larger than ${MAX_CONFIG_BYTES} bytes`
  return undefined
}

/** @since 0.1.0 */
export const loadConfig = Effect.fn("loadConfig")(function*(file: string) {
  const fs = yield* FileSystem.FileSystem
  const info = yield* fs.stat(file).pipe(Effect.option)
  if (Option.isSome(info)) {
    const typeProblem = configTypeProblem(info.value.type, info.value.size)
    if (typeProblem !== undefined) {
      return yield* new ConfigError({ file, reason: "Read", detail: `refusing to read it: ${typeProblem}` })
    }
    const problem = configFileProblem(
      { mode: info.value.mode, uid: Option.getOrUndefined(info.value.uid) },
      process.geteuid?.() ?? 0
    )
    if (problem.refuse !== undefined) {
      return yield* new ConfigError({ file, reason: "Read", detail: `refusing to use it: ${problem.refuse}` })
    }
    if (problem.warn !== undefined) yield* Effect.logWarning(`config ${file}: ${problem.warn}`)
  }
  const bytes = yield* fs.readFile(file).pipe(
    Effect.mapError((error) => {
      const cause = error._tag === "SystemError" ? error.cause ?? error : error
      const detail = error._tag === "SystemError" && error.reason === "NotFound"
        ? "file not found"
        : describeCause(cause)
      return new ConfigError({ file, reason: "Read", detail: `cannot read: ${detail}` })
    })
  )
  const text = configText(bytes)
  if (text === undefined) {
    // yaml.v3 refuses such a file too; read leniently, a Latin-1 header value or body would be sent mangled.
    return yield* new ConfigError({
      file,
      reason: "Yaml",
      detail: "invalid YAML: the file is not valid UTF-8 (or UTF-16 with a byte-order mark) text"
    })
  }
  const decoded = decodeConfig(file, text)
  if (Either.isLeft(decoded)) return yield* decoded.left
  for (const warning of decoded.right.warnings) yield* Effect.logWarning(`config ${file}: ${warning}`)
  return decoded.right.config satisfies Config
})
