/**
 * One run at a time: a lock file in a root-only runtime directory (`/run/authkeysync/` by default), holding the
 * holder's pid and process start time. A second run waits up to `--lock-timeout`, then fails naming the holder; the
 * lock of a process that no longer exists (killed with -9, a crash, a reboot) is taken over.
 *
 * The directory must be a real directory of the running user, writable by nobody else, so that no account can
 * plant the lock (or a symlink in its place) to stop or steer root's runs.
 *
 * Its syscalls run synchronously, as in SshFiles: a dozen of them take well under a millisecond on /run, while their
 * trips through libuv's thread pool kept every run waiting about 25 ms before its first user.
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Layer, type Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { describeCause, RunLockError } from "../pipeline/Errors.js"
import { directoryStat, privateDirectoryProblem } from "../pipeline/PrivateDirectory.js"
import { makeDirectories, unlinkQuietly } from "./internal/syscalls.js"
import { untrustedStep } from "./internal/trustedPath.js"

/** @since 0.1.0 */
export class RunLock extends Context.Tag("authkeysync/RunLock")<RunLock, {
  /** Hold the lock at `path` until the scope closes; wait at most `timeout` for another run to finish. */
  readonly hold: (path: string, timeout: Duration.DurationInput) => Effect.Effect<void, RunLockError, Scope.Scope>
}>() {}

/** `/run/authkeysync/authkeysync.lock` for root; a per-user runtime directory otherwise (for trying things out). */
export const defaultLockPath = (): string => {
  const uid = process.geteuid?.() ?? 0
  if (uid === 0) return "/run/authkeysync/authkeysync.lock"
  const runtime = process.env["XDG_RUNTIME_DIR"]
  return runtime !== undefined && runtime.startsWith("/")
    ? nodePath.join(runtime, "authkeysync", "authkeysync.lock")
    : nodePath.join(os.tmpdir(), `authkeysync-${uid}`, "authkeysync.lock")
}

type Errno = NodeJS.ErrnoException

interface Holder {
  readonly pid: number
  /** Start time of the process (Linux /proc, in clock ticks since boot): tells a reused pid from the holder. */
  readonly start: string
}

const C = fs.constants

/** Field 22 of /proc/PID/stat; undefined where there is no /proc. */
const startTimeOf = (pid: number): string | undefined => {
  let stat: string
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
  // The command name (field 2) may contain spaces and parentheses; the fields after the last ")" are plain.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return fields[19]
}

const parseHolder = (text: string): Holder | undefined => {
  const match = /^(\d+) (\S+)\n$/.exec(text)
  return match ? { pid: Number(match[1]), start: match[2]! } : undefined
}

const isAlive = (holder: Holder): boolean => {
  try {
    process.kill(holder.pid, 0)
  } catch (error) {
    if ((error as Errno).code === "ESRCH") return false
  }
  const start = startTimeOf(holder.pid)
  return start === undefined || holder.start === "-" || start === holder.start
}

const fail = (path: string, detail: string) => new RunLockError({ path, detail })

const checkDirectory = (lockPath: string): void => {
  const dir = nodePath.dirname(lockPath)
  // Above the lock's own directory too, nobody but root may be able to swap a directory (see internal/trustedPath.ts).
  const above = untrustedStep(dir)
  if (above !== undefined) throw fail(lockPath, `refusing the lock directory ${dir}: ${above}`)
  try {
    makeDirectories(dir, 0o700)
  } catch (error) {
    throw fail(lockPath, `cannot create ${dir}: ${describeCause(error)}`)
  }
  const problem = privateDirectoryProblem(directoryStat(fs.lstatSync(dir)), process.geteuid?.() ?? 0)
  if (problem !== undefined) throw fail(lockPath, `refusing the lock directory ${dir}: ${problem}`)
}

/**
 * Create the lock file with `token` already in it; false when it exists. The content is written to a private temp
 * file first and then hard-linked to the lock's name, so a run killed at any moment never leaves an empty lock.
 */
const tryCreate = (path: string, token: string): boolean => {
  const temp = `${path}.${process.pid}.tmp`
  unlinkQuietly(temp)
  let fd: number
  try {
    fd = fs.openSync(temp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600)
  } catch (error) {
    throw fail(path, `cannot create ${temp}: ${describeCause(error)}`)
  }
  try {
    try {
      fs.writeFileSync(fd, token)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.linkSync(temp, path)
    return true
  } catch (error) {
    if ((error as Errno).code === "EEXIST") return false
    throw fail(path, `cannot create: ${describeCause(error)}`)
  } finally {
    unlinkQuietly(temp)
  }
}

const readLock = (path: string): { text: string; ageMs: number } | undefined => {
  try {
    const fd = fs.openSync(path, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK)
    try {
      const st = fs.fstatSync(fd)
      if (!st.isFile()) throw fail(path, "it is not a regular file")
      return { text: fs.readFileSync(fd, "utf8"), ageMs: Date.now() - st.mtimeMs }
    } finally {
      fs.closeSync(fd)
    }
  } catch (error) {
    if ((error as Errno).code === "ENOENT") return undefined
    if (error instanceof RunLockError) throw error
    throw fail(path, `cannot read: ${describeCause(error)}`)
  }
}

/** A lock file written by a run that died between creating and filling it is empty; after this long it is stale. */
const HALF_WRITTEN_STALE_MS = 10_000

/**
 * Remove the lock at `path` if it still holds exactly `staleText`. The `.takeover` file makes check-and-remove one
 * step among runs, so that two runs that both found the same stale lock cannot remove each other's fresh one.
 */
const takeOver = (path: string, staleText: string, token: string): void => {
  const guard = `${path}.takeover`
  if (!tryCreate(guard, token)) {
    const other = readLock(guard)
    if (other !== undefined && other.ageMs > HALF_WRITTEN_STALE_MS) unlinkQuietly(guard)
    return
  }
  try {
    const now = readLock(path)
    if (now !== undefined && now.text === staleText) unlinkQuietly(path)
  } finally {
    unlinkQuietly(guard)
  }
}

/** One attempt: acquired, or who holds the lock. */
const attempt = (path: string, token: string): { acquired: true } | { acquired: false; holder: string } => {
  if (tryCreate(path, token)) return { acquired: true }
  const current = readLock(path)
  if (current === undefined) return { acquired: false, holder: "a run that just finished" }
  const holder = parseHolder(current.text)
  // Only a lock of ours is ever removed: a --lock-file that names some other file (a typo, the config itself) stops
  // the run instead. An empty one is a lock a run of an older build died writing.
  if (holder === undefined && current.text !== "") {
    throw fail(path, "it is not an authkeysync lock (it holds other text); refusing to remove it")
  }
  const stale = holder === undefined ? current.ageMs > HALF_WRITTEN_STALE_MS : !isAlive(holder)
  if (stale) {
    takeOver(path, current.text, token)
    if (tryCreate(path, token)) return { acquired: true }
  }
  return { acquired: false, holder: holder === undefined ? "an unknown process" : `pid ${holder.pid}` }
}

const release = (path: string, token: string) => {
  let current: { text: string } | undefined
  try {
    current = readLock(path)
  } catch {
    return
  }
  if (current?.text === token) unlinkQuietly(path)
}

const POLL = Duration.millis(100)

/** The real lock file. @since 0.1.0 */
export const layer: Layer.Layer<RunLock> = Layer.succeed(
  RunLock,
  RunLock.of({
    hold: (path, timeout) =>
      Effect.gen(function*() {
        const token = `${process.pid} ${startTimeOf(process.pid) ?? "-"}\n`
        const guarded = <A>(f: () => A) =>
          Effect.try({
            try: f,
            catch: (error) => error instanceof RunLockError ? error : fail(path, describeCause(error))
          })
        yield* guarded(() => checkDirectory(path))
        const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(Duration.decode(timeout))
        for (;;) {
          // acquireRelease: once the file is created, its removal is registered before anything can interrupt.
          const result = yield* Effect.acquireRelease(
            guarded(() => attempt(path, token)),
            (r) => (r.acquired ? Effect.sync(() => release(path, token)) : Effect.void)
          )
          if (result.acquired) return
          if ((yield* Clock.currentTimeMillis) >= deadline) {
            const waited = Duration.format(Duration.decode(timeout))
            return yield* fail(
              path,
              `held by ${result.holder}, another authkeysync run; gave up after ${waited} (--lock-timeout)`
            )
          }
          yield* Effect.logDebug("waiting for the run lock").pipe(Effect.annotateLogs({ holder: result.holder }))
          yield* Effect.sleep(POLL)
        }
      })
  })
)

/** No lock at all (tests, or a caller that serializes runs itself). @since 0.1.0 */
export const layerNoop: Layer.Layer<RunLock> = Layer.succeed(RunLock, RunLock.of({ hold: () => Effect.void }))
