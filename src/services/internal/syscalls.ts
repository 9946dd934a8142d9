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
 * `mkdir -p`, each new directory with `mode`. Node's recursive mkdir reports a read-only file system (systemd's
 * ProtectSystem=strict outside ReadWritePaths=) as ENOENT, "no such file or directory"; the missing levels are then
 * made one by one, so that the error says why (EROFS).
 */
export const makeDirectories = (path: string, mode: number): void => {
  try {
    fs.mkdirSync(path, { recursive: true, mode })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error
    const missing: Array<string> = []
    for (let dir = nodePath.resolve(path); !fs.existsSync(dir); dir = nodePath.dirname(dir)) missing.unshift(dir)
    for (const dir of missing) fs.mkdirSync(dir, { mode })
  }
}

/**
 * Files a killed run left behind in the directory `base` (a path the caller has made safe to use: pinned, or root's
 * alone): names of `pattern` that are regular files last modified before `beforeMs`, removed; returns their names.
 * lstat: a link with such a name is left alone, like anything that is not a regular file of a finished run.
 */
export const removeStaleFiles = (base: string, pattern: RegExp, beforeMs: number): ReadonlyArray<string> => {
  const removed: Array<string> = []
  for (const name of attempt(() => fs.readdirSync(base)) ?? []) {
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
  return removed
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
