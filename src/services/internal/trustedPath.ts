/**
 * Whether anyone but root could swap a directory on the way to a path. The tool keeps its run lock and its revocation
 * records in directories only root may control; checking the last directory alone is not enough when a directory
 * above it belongs to someone else, who can rename it away and put their own (with links to anywhere) in its place
 * between the check and the use.
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"

/**
 * The rule for one step on the way to a path, which both walks apply (this one to the state and lock directories,
 * SshFiles' to the homes): the directory holding the step must be owned by a `trusted` uid and writable by nobody else,
 * or be sticky (like /tmp) with the step's own entry owned by a trusted uid. Why not, or undefined. An entry that does
 * not exist yet (undefined) cannot have been planted by anyone.
 *
 * @since 0.1.0
 */
export const stepProblem = (
  parent: { readonly uid: number; readonly mode: number },
  parentPath: string,
  entry: { readonly uid: number } | undefined,
  entryPath: string,
  trusted: (uid: number) => boolean
): string | undefined => {
  if (!trusted(parent.uid)) {
    return `${parentPath}, a directory on the way to it, is owned by uid ${parent.uid}, not root`
  }
  if ((parent.mode & 0o022) !== 0 && ((parent.mode & 0o1000) === 0 || (entry !== undefined && !trusted(entry.uid)))) {
    const mode = (parent.mode & 0o7777).toString(8).padStart(4, "0")
    return `${parentPath}, a directory on the way to it, is writable by group or others (mode ${mode}), who could replace ${entryPath}`
  }
  return undefined
}

/** More links than this on the way (a loop, or a maze) is refused, as the kernel refuses it (ELOOP). */
const MAX_LINKS = 40

/**
 * Why someone other than root (or the running user) could replace a step on the way to `path`, or undefined: every
 * step must pass stepProblem, trusting root and the running user. Links on the way are followed, and the way to their
 * targets checked the same way. A step that does not exist ends the check: nobody else can create it.
 *
 * @since 0.1.0
 */
export const untrustedStep = (path: string): string | undefined => {
  const euid = process.geteuid?.() ?? 0
  const trusted = (uid: number) => uid === 0 || uid === euid
  let links = 0
  type Reached = { readonly real: string } | { readonly problem: string } | { readonly missing: true }
  // Walks `target` (absolute) from `/`: the real path it reaches, why it cannot be trusted, or that a step is missing.
  const walk = (target: string): Reached => {
    let dir = "/"
    for (const name of target.split("/").filter((part) => part !== "")) {
      if (name === ".") continue
      if (name === "..") {
        dir = nodePath.dirname(dir)
        continue
      }
      const parent = fs.statSync(dir)
      const entryPath = nodePath.join(dir, name)
      const entry = fs.lstatSync(entryPath, { throwIfNoEntry: false })
      const problem = stepProblem(parent, dir, entry, entryPath, trusted)
      if (problem !== undefined) return { problem }
      if (entry === undefined) return { missing: true }
      if (entry.isSymbolicLink()) {
        if (++links > MAX_LINKS) return { problem: `more than ${MAX_LINKS} symbolic links on the way to it` }
        const reached = walk(nodePath.resolve(dir, fs.readlinkSync(entryPath)))
        if (!("real" in reached)) return reached
        dir = reached.real
      } else {
        dir = entryPath
      }
    }
    return { real: dir }
  }
  const reached = walk(nodePath.resolve(path))
  return "problem" in reached ? reached.problem : undefined
}
