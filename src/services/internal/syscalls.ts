/**
 * Small pieces shared by the services that write files as root (SshFiles, ManagedKeys). Their local syscalls run
 * synchronously: opening, checking and reading a small file on a local disk take microseconds, less than handing each
 * call to libuv's thread pool and back. Only fsync, which waits for the disk, goes to the pool, so that many users'
 * flushes overlap.
 */
import * as fs from "node:fs"
import { promisify } from "node:util"

/** fsync on the thread pool. */
export const fsyncFd: (fd: number) => Promise<void> = promisify(fs.fsync)

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
