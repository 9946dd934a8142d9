/**
 * The system commands the tool runs as root (`getent`, `dscl`): taken from the system's own directories, never from
 * `$PATH`, and run only when root owns them and no one else may change them.
 */
import { Either } from "effect"
import * as fs from "node:fs"
import * as nodePath from "node:path"

/**
 * Where `getent` and `dscl` are taken from (the first directory that has them), never `$PATH`: the tool runs as root,
 * and a PATH with a directory someone else can write to (a user's `~/bin`, a tool's shims) would run their program
 * as root. NixOS and Guix keep system commands under /run/current-system.
 *
 * @since 0.1.0
 */
export const SYSTEM_COMMAND_DIRS: ReadonlyArray<string> = [
  "/usr/bin",
  "/bin",
  "/usr/sbin",
  "/sbin",
  "/run/current-system/sw/bin",
  "/run/current-system/profile/bin"
]

/**
 * The absolute path of `name` in the first of `dirs` that has it. A program there that anyone but root (or the user
 * running the tool) owns, or that its group or others may write to, is refused rather than run: whoever can change
 * it would run as root.
 */
export const findCommand = (name: string, dirs: ReadonlyArray<string>): Either.Either<string, string> => {
  for (const dir of dirs) {
    if (!nodePath.isAbsolute(dir)) continue
    const candidate = nodePath.join(dir, name)
    let st: fs.Stats
    try {
      // Followed: /bin is a link to /usr/bin on most systems, and NixOS links every command into its store.
      st = fs.statSync(candidate)
    } catch {
      continue
    }
    if (!st.isFile() || (st.mode & 0o111) === 0) continue
    const euid = process.geteuid?.() ?? 0
    if (st.uid !== 0 && st.uid !== euid) return Either.left(`${candidate} is owned by uid ${st.uid}, not by root`)
    if ((st.mode & 0o022) !== 0) {
      return Either.left(`${candidate} is writable by its group or by others (mode ${(st.mode & 0o7777).toString(8)})`)
    }
    return Either.right(candidate)
  }
  return Either.left(`not found in ${dirs.join(", ")} (the tool does not search $PATH)`)
}
