/**
 * Local account lookup: uid, primary gid and home directory of a login name.
 * Linux asks `getent passwd` so that NSS sources (LDAP, SSSD, systemd-homed) are honoured; macOS asks `dscl`.
 *
 * @since 0.1.0
 */
import { execFile } from "node:child_process"
import { Context, Effect, Layer } from "effect"
import { AccountLookupError, UserNotFound } from "../pipeline/Errors.js"

/** @since 0.1.0 */
export interface Account {
  readonly name: string
  readonly uid: number
  readonly gid: number
  readonly home: string
}

/** @since 0.1.0 */
export class Accounts extends Context.Tag("authkeysync/Accounts")<Accounts, {
  readonly lookup: (name: string) => Effect.Effect<Account, UserNotFound | AccountLookupError>
}>() {}

// =============================================================================
// Parsing (pure)
// =============================================================================

/** Parse one `passwd(5)` line: `name:x:uid:gid:gecos:home:shell`. @since 0.1.0 */
export const parsePasswdLine = (line: string): Account | undefined => {
  const fields = line.replace(/\r?\n$/, "").split(":")
  if (fields.length < 7) return undefined
  const [name, , uid, gid, , home] = fields
  if (name === undefined || home === undefined || !/^\d+$/.test(uid ?? "") || !/^\d+$/.test(gid ?? "")) return undefined
  return { name, uid: Number(uid), gid: Number(gid), home }
}

/** Parse `dscl . -read /Users/NAME UniqueID PrimaryGroupID NFSHomeDirectory`. @since 0.1.0 */
export const parseDsclRecord = (name: string, text: string): Account | undefined => {
  const field = (key: string) => text.match(new RegExp(`^${key}:\\s*(.+)$`, "m"))?.[1]?.trim()
  const uid = field("UniqueID")
  const gid = field("PrimaryGroupID")
  const home = field("NFSHomeDirectory")
  if (uid === undefined || gid === undefined || home === undefined) return undefined
  if (!/^-?\d+$/.test(uid) || !/^-?\d+$/.test(gid)) return undefined
  return { name, uid: Number(uid), gid: Number(gid), home }
}

// =============================================================================
// Live
// =============================================================================

interface CommandResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const LOOKUP_TIMEOUT_MS = 15_000

const run = (file: string, args: ReadonlyArray<string>) =>
  Effect.async<CommandResult, Error>((resume, signal) => {
    execFile(
      file,
      args,
      { timeout: LOOKUP_TIMEOUT_MS, signal, encoding: "utf8", maxBuffer: 1024 * 1024, env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", LC_ALL: "C" } },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") resume(Effect.fail(error))
        else resume(Effect.succeed({ code: error ? Number(error.code) : 0, stdout, stderr }))
      }
    )
  })

const lookupLinux = (name: string) =>
  run("getent", ["passwd", "--", name]).pipe(
    Effect.mapError((cause) => new AccountLookupError({ user: name, detail: `getent failed: ${cause.message}`, cause })),
    Effect.flatMap(({ code, stderr, stdout }): Effect.Effect<Account, UserNotFound | AccountLookupError> => {
      // getent(1): exit 2 means "key not found in database".
      if (code === 2) return Effect.fail(new UserNotFound({ user: name }))
      if (code !== 0) {
        return Effect.fail(
          new AccountLookupError({ user: name, detail: `getent exited with ${code}: ${stderr.trim() || "no output"}` })
        )
      }
      const account = parsePasswdLine(stdout.split("\n")[0] ?? "")
      return account === undefined
        ? Effect.fail(new AccountLookupError({ user: name, detail: "getent printed an unreadable passwd entry" }))
        : Effect.succeed(account)
    })
  )

const lookupDarwin = (name: string) =>
  run("dscl", [".", "-read", `/Users/${name}`, "UniqueID", "PrimaryGroupID", "NFSHomeDirectory"]).pipe(
    Effect.mapError((cause) => new AccountLookupError({ user: name, detail: `dscl failed: ${cause.message}`, cause })),
    Effect.flatMap(({ code, stderr, stdout }): Effect.Effect<Account, UserNotFound | AccountLookupError> => {
      if (code !== 0) {
        return /eDSRecordNotFound|not found/i.test(stderr + stdout)
          ? Effect.fail(new UserNotFound({ user: name }))
          : Effect.fail(new AccountLookupError({ user: name, detail: `dscl exited with ${code}: ${stderr.trim()}` }))
      }
      const account = parseDsclRecord(name, stdout)
      return account === undefined
        ? Effect.fail(new AccountLookupError({ user: name, detail: "dscl printed an unreadable record" }))
        : Effect.succeed(account)
    })
  )

/** The host's account database. @since 0.1.0 */
export const layer: Layer.Layer<Accounts> = Layer.succeed(
  Accounts,
  Accounts.of({
    lookup: (name) =>
      // A name with "/" or control characters can never be an account and must not reach a path or an argv.
      /[/\0-\x1f\x7f]/.test(name) || name.startsWith("-")
        ? Effect.fail(new UserNotFound({ user: name }))
        : (process.platform === "darwin" ? lookupDarwin(name) : lookupLinux(name)).pipe(
          Effect.withSpan("Accounts.lookup", { attributes: { user: name } })
        )
  })
)

/** A fixed set of accounts. @since 0.1.0 */
export const layerTest = (accounts: ReadonlyArray<Account>): Layer.Layer<Accounts> =>
  Layer.succeed(
    Accounts,
    Accounts.of({
      lookup: (name) => {
        const account = accounts.find((a) => a.name === name)
        return account ? Effect.succeed(account) : Effect.fail(new UserNotFound({ user: name }))
      }
    })
  )
