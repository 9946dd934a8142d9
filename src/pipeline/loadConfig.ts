/**
 * Read and decode the config file through @effect/platform's FileSystem, logging unknown keys as warnings.
 *
 * @since 0.1.0
 */
import { FileSystem } from "@effect/platform"
import { Effect, Either } from "effect"
import { type Config, decodeConfig } from "./Config.js"
import { ConfigError, describeCause } from "./Errors.js"

/** @since 0.1.0 */
export const loadConfig = Effect.fn("loadConfig")(function*(file: string) {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(file, "utf8").pipe(
    Effect.mapError((error) => {
      const cause = error._tag === "SystemError" ? error.cause ?? error : error
      const detail = error._tag === "SystemError" && error.reason === "NotFound"
        ? "file not found"
        : describeCause(cause)
      return new ConfigError({ file, reason: "Read", detail: `cannot read: ${detail}` })
    })
  )
  const decoded = decodeConfig(file, text)
  if (Either.isLeft(decoded)) return yield* decoded.left
  for (const warning of decoded.right.warnings) yield* Effect.logWarning(`config ${file}: ${warning}`)
  return decoded.right.config satisfies Config
})
