/**
 * Version, commit and build date: filled in by `npm run build` (esbuild `define`), "dev"/"unknown" when run from source.
 *
 * @since 0.1.0
 */
import type { BuildInfo } from "./pipeline/Render.js"

declare const __AUTHKEYSYNC_VERSION__: string | undefined
declare const __AUTHKEYSYNC_COMMIT__: string | undefined
declare const __AUTHKEYSYNC_BUILT__: string | undefined

/** @since 0.1.0 */
export const buildInfo: BuildInfo = {
  version: typeof __AUTHKEYSYNC_VERSION__ === "string" ? __AUTHKEYSYNC_VERSION__ : "dev",
  commit: typeof __AUTHKEYSYNC_COMMIT__ === "string" ? __AUTHKEYSYNC_COMMIT__ : "unknown",
  built: typeof __AUTHKEYSYNC_BUILT__ === "string" ? __AUTHKEYSYNC_BUILT__ : "unknown"
}
