/**
 * Small pieces shared by the services that write files as root (SshFiles, ManagedKeys, RunLock). Their local syscalls run
 * synchronously: opening, checking and reading a small file on a local disk take microseconds, less than handing each
 * call to libuv's thread pool and back. fsync, which waits for the disk, and the creation of a file, which can wait for
 * the journal those fsyncs commit, go to the pool, so that many users' flushes overlap.
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { promisify } from "node:util"

/** fsync on the thread pool. */
export const fsyncFd: (fd: number) => Promise<void> = promisify(fs.fsync)

/** open(2) on the thread pool, for a call that creates a file (and so may wait for the file system's journal). */
export const openFile: (path: string, flags: number, mode: number) => Promise<number> = promisify(fs.open)

/**
 * `mkdir -p`, each new directory with `mode`, one level at a time. Not Node's recursive mkdir: it reports a read-only
 * file system (systemd's ProtectSystem=strict outside ReadWritePaths=) as ENOENT, "no such file or directory", and on
 * a path under /proc it loops forever (ENOENT, then EEXIST) at full CPU, deaf to SIGTERM.
 */
export const makeDirectories = (path: string, mode: number): void => {
  const missing: Array<string> = []
  for (let dir = nodePath.resolve(path); !fs.existsSync(dir); dir = nodePath.dirname(dir)) {
    missing.unshift(dir)
    if (dir === nodePath.dirname(dir)) break
  }
  for (const dir of missing) {
    try {
      fs.mkdirSync(dir, { mode })
    } catch (error) {
      // Made meanwhile by another run: the caller checks what it is.
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
    }
  }
}

/**
 * How many entries of a directory a user controls are ever looked at in one run. A `.ssh` or backups directory holds
 * a handful; a user who fills theirs with millions of names (hard links cost no inodes) must not hold the run's one
 * thread for seconds, long enough for other users' fetches to time out.
 */
export const MAX_DIRECTORY_ENTRIES = 4096

/**
 * The names in the directory `base`, read a batch at a time and never more than `max` of them; `complete` says whether
 * that was all of them.
 */
export const listDirectory = (base: string, max: number = MAX_DIRECTORY_ENTRIES): {
  readonly names: ReadonlyArray<string>
  readonly complete: boolean
} => {
  const names: Array<string> = []
  const dir = fs.opendirSync(base, { bufferSize: 128 })
  try {
    for (let entry = dir.readSync(); entry !== null; entry = dir.readSync()) {
      if (names.length === max) return { names, complete: false }
      names.push(entry.name)
    }
    return { names, complete: true }
  } finally {
    dir.closeSync()
  }
}

/**
 * Files a killed run left behind in the directory `base` (a path the caller has made safe to use: pinned, or root's
 * alone): names of `pattern` that are regular files last modified before `beforeMs`, removed. Returns their names,
 * and whether the directory was looked at whole (at most `max` entries, see MAX_DIRECTORY_ENTRIES). lstat: a link
 * with such a name is left alone, like anything that is not a regular file of a finished run.
 */
export const removeStaleFiles = (base: string, pattern: RegExp, beforeMs: number, max = MAX_DIRECTORY_ENTRIES): {
  readonly removed: ReadonlyArray<string>
  readonly complete: boolean
} => {
  const removed: Array<string> = []
  const listing = attempt(() => listDirectory(base, max)) ?? { names: [], complete: true }
  for (const name of listing.names) {
    if (!pattern.test(name)) continue
    const path = `${base}/${name}`
    const st = attempt(() => fs.lstatSync(path))
    if (!st?.isFile() || st.mtimeMs >= beforeMs) continue
    try {
      fs.unlinkSync(path)
      removed.push(name)
    } catch {
      // Gone already, or not ours to remove: left as it is.
    }
  }
  return { removed, complete: listing.complete }
}

/** Close, ignoring failure: the number is released either way. */
export const closeQuietly = (fd: number | undefined): void => {
  if (fd === undefined) return
  try {
    fs.closeSync(fd)
  } catch {
    // Best effort; the descriptor is gone either way.
  }
}

/** Remove, ignoring failure: already gone, or never created (the error worth reporting is the caller's). */
export const unlinkQuietly = (path: string): void => {
  try {
    fs.unlinkSync(path)
  } catch {
    // Nothing to do.
  }
}

/** `fn()`, or undefined when it throws (for lookups whose failure means "not there"). */
export const attempt = <A>(fn: () => A): A | undefined => {
  try {
    return fn()
  } catch {
    return undefined
  }
}

/**
 * Whether access(2)'s "no permission" is this process's: it answers for the real uid, with root's own capabilities
 * (a unit whose CapabilityBoundingSet leaves out CAP_DAC_OVERRIDE), but for any other account with none, so a
 * non-root run given CAP_DAC_OVERRIDE would be told EACCES about a write it may make.
 */
const accessSpeaksForUs = (() => {
  let answer: boolean | undefined
  return (): boolean => {
    if (answer === undefined) {
      const uid = process.getuid?.()
      const effective = attempt(() => /^CapEff:\s*(\S+)/m.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1])
      answer = uid === 0 || (uid === process.geteuid?.() && (effective === undefined || /^0+$/.test(effective)))
    }
    return answer
  }
})()

/**
 * Throws when `path` refuses the write a real run would make, as far as access(2) can tell without writing: a
 * read-only mount (EROFS), the immutable flag (EPERM), and missing permission where access(2) answers for this
 * process (see accessSpeaksForUs). The append-only flag is not among them: access(2) does not look at it.
 */
export const throwIfRefusesWrites = (path: string): void => {
  try {
    fs.accessSync(path, fs.constants.W_OK)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? ""
    if (REFUSED_BEFORE_WRITING.has(code) || (code === "EACCES" && accessSpeaksForUs())) throw error
  }
}

/**
 * What refuses a write whoever asks, and so what a dry run reports whatever its credentials: a read-only mount, the
 * immutable flag. The memory layers' dry-run checks answer for these codes too.
 */
export const REFUSED_BEFORE_WRITING: ReadonlySet<string> = new Set(["EROFS", "EPERM"])
