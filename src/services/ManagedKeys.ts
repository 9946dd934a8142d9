/**
 * The record of which keys (and which exact lines) the tool wrote from sources (and as pinned keys) into each user's
 * file, kept where users cannot reach it: `<policy.state_dir>/managed-keys/<user>.json`, in root-only directories. Revocation trusts this
 * record, never the marker lines of the file itself (see pipeline/Revocation.ts).
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Option, Ref } from "effect"
import * as fs from "node:fs"
import { constants as C } from "node:fs"
import * as nodePath from "node:path"
import { describeCause, StateError } from "../pipeline/Errors.js"
import { directoryStat, privateDirectoryProblem } from "../pipeline/PrivateDirectory.js"
import {
  closeQuietly,
  fsyncFd,
  makeDirectories,
  openFile,
  REFUSED_BEFORE_WRITING,
  removeStaleFiles,
  throwIfRefusesWrites,
  unlinkQuietly
} from "./internal/syscalls.js"
import { untrustedStep } from "./internal/trustedPath.js"

/** What the tool wrote into one user's file from sources and pins. @since 0.1.0 */
export interface ManagedRecord {
  /** The keys' identities (type and blob). */
  readonly identities: ReadonlySet<string>
  /** The exact lines written for them; undefined in a record made before lines were kept (format 1). */
  readonly lines: ReadonlySet<string> | undefined
}

/** @since 0.1.0 */
export class ManagedKeys extends Context.Tag("authkeysync/ManagedKeys")<ManagedKeys, {
  /** The record for `user`, or none when the tool never wrote that user's file. */
  readonly read: (stateDir: string, user: string) => Effect.Effect<Option.Option<ManagedRecord>, StateError>
  /** Replace the record of `user` (atomically). */
  readonly write: (stateDir: string, user: string, record: ManagedRecord) => Effect.Effect<void, StateError>
  /**
   * What a dry run can know of a record's write: fails as `write` would when the directory it would write in (or
   * create) refuses writes of any kind, a read-only mount above all. Changes nothing.
   */
  readonly checkWritable: (stateDir: string) => Effect.Effect<void, StateError>
}>() {}

const SUBDIR = "managed-keys"
/** 2 adds `lines`; a format-1 record (identities only) is still read. */
const FORMAT_VERSION = 2

/** `<state_dir>/managed-keys/<user>.json`; the name is URI-encoded, so it is never `..` and never holds a `/`. */
export const recordPath = (stateDir: string, user: string): string =>
  nodePath.join(stateDir, SUBDIR, `${encodeURIComponent(user)}.json`)

type Errno = NodeJS.ErrnoException
const euid = () => process.geteuid?.() ?? 0

// Like SshFiles: local syscalls run synchronously, fsync aside (see internal/syscalls.ts).

/**
 * The directories above the state directory: nobody but root may be able to swap one (see internal/trustedPath.ts).
 * Checked once per run and directory: only root can change what passed.
 */
const checkAncestors = (checked: Set<string>, path: string): void => {
  if (checked.has(path)) return
  const problem = untrustedStep(path)
  if (problem !== undefined) throw new StateError({ path, detail: `refusing the state directory: ${problem}` })
  checked.add(path)
}

const checkDirectory = (checked: Set<string>, path: string): void => {
  checkAncestors(checked, path)
  const problem = privateDirectoryProblem(directoryStat(fs.lstatSync(path)), euid())
  if (problem !== undefined) throw new StateError({ path, detail: `refusing the state directory: ${problem}` })
}

const ensureDirectory = (checked: Set<string>, path: string): void => {
  checkAncestors(checked, path)
  makeDirectories(path, 0o700)
  checkDirectory(checked, path)
}

const stateFailed = (path: string) => (error: unknown) =>
  error instanceof StateError ? error : new StateError({ path, detail: describeCause(error), cause: error })

const isStringList = (value: unknown): value is Array<string> =>
  Array.isArray(value) && value.every((k) => typeof k === "string")

const decodeRecord = (path: string, text: string): ManagedRecord => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new StateError({ path, detail: "the record is not valid JSON; remove it to start over" })
  }
  const { keys, lines } = (value ?? {}) as { keys?: unknown; lines?: unknown }
  if (!isStringList(keys)) {
    throw new StateError({ path, detail: "the record has no list of keys; remove it to start over" })
  }
  if (lines !== undefined && !isStringList(lines)) {
    throw new StateError({ path, detail: "the record's lines are not a list of strings; remove it to start over" })
  }
  return { identities: new Set(keys), lines: lines === undefined ? undefined : new Set(lines) }
}

const readRecord = (checked: Set<string>, stateDir: string, user: string): ManagedRecord | undefined => {
  const dir = nodePath.join(stateDir, SUBDIR)
  try {
    checkDirectory(checked, stateDir)
    checkDirectory(checked, dir)
  } catch (error) {
    // No state directory yet: nothing was ever recorded (reading never creates it, so a dry run changes nothing).
    if ((error as Errno).code === "ENOENT") return undefined
    throw error
  }
  const path = recordPath(stateDir, user)
  let fd: number
  try {
    fd = fs.openSync(path, C.O_RDONLY | C.O_NOFOLLOW)
  } catch (error) {
    if ((error as Errno).code === "ENOENT") return undefined
    throw error
  }
  try {
    return decodeRecord(path, fs.readFileSync(fd, "utf8"))
  } finally {
    fs.closeSync(fd)
  }
}

/** A record being written (`<user>.json.<pid>.tmp`); only names of this exact shape are ever removed as leftovers. */
const TEMP_RECORD_PATTERN = /^[^/]+\.json\.\d+\.tmp$/
const PROCESS_STARTED_MS = Date.now() - process.uptime() * 1000

/**
 * Temp records of runs killed before their rename (the pid in the name is theirs, so no later run would reuse it):
 * regular files from before this process started, never a record another live run is writing. The directory is
 * root's alone (checked), so names are safe to use.
 */
const removeStaleTemps = (dir: string): void =>
  // Root's own directory, one record per account: looked at whole, however many accounts there are.
  void removeStaleFiles(dir, TEMP_RECORD_PATTERN, PROCESS_STARTED_MS, Number.POSITIVE_INFINITY)

const writeRecord = async (
  checked: Set<string>,
  stateDir: string,
  user: string,
  record: ManagedRecord,
  firstWriteIn: (dir: string) => boolean
): Promise<void> => {
  ensureDirectory(checked, stateDir)
  const dir = nodePath.join(stateDir, SUBDIR)
  ensureDirectory(checked, dir)
  if (firstWriteIn(dir)) removeStaleTemps(dir)
  const path = recordPath(stateDir, user)
  const temp = `${path}.${process.pid}.tmp`
  const text = JSON.stringify(
    {
      version: FORMAT_VERSION,
      user,
      keys: [...record.identities].sort(),
      ...(record.lines === undefined ? {} : { lines: [...record.lines].sort() })
    },
    null,
    1
  ) + "\n"
  // A leftover of an earlier run with this pid.
  unlinkQuietly(temp)
  const fd = await openFile(temp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600)
  let open = true
  try {
    fs.writeFileSync(fd, text, "utf8")
    await fsyncFd(fd)
    // Marked closed first: a failed close has still released the number, which another call may already reuse.
    open = false
    fs.closeSync(fd)
  } catch (error) {
    if (open) closeQuietly(fd)
    unlinkQuietly(temp)
    throw error
  }
  try {
    fs.renameSync(temp, path)
  } catch (error) {
    unlinkQuietly(temp)
    throw error
  }
  const dirFd = fs.openSync(dir, C.O_RDONLY | C.O_DIRECTORY)
  try {
    await fsyncFd(dirFd)
  } finally {
    fs.closeSync(dirFd)
  }
}

/** The directory a record's write would write in, or the one it would create that in: the first that exists. */
const checkRecordDirectory = (stateDir: string): void => {
  const target = nodePath.join(stateDir, SUBDIR)
  let dir = target
  while (fs.lstatSync(dir, { throwIfNoEntry: false }) === undefined && nodePath.dirname(dir) !== dir) {
    dir = nodePath.dirname(dir)
  }
  try {
    throwIfRefusesWrites(dir)
  } catch (error) {
    if (dir === target) throw error
    throw new StateError({ path: target, detail: `cannot be created in ${dir}: ${describeCause(error)}`, cause: error })
  }
}

/**
 * Records in root-only files under `policy.state_dir`. The first write into a directory also removes the temp records
 * that killed runs left there. @since 0.1.0
 */
export const layer: Layer.Layer<ManagedKeys> = Layer.sync(ManagedKeys, () => {
  const swept = new Set<string>()
  const checked = new Set<string>()
  const firstWriteIn = (dir: string) => {
    if (swept.has(dir)) return false
    swept.add(dir)
    return true
  }
  return ManagedKeys.of({
    read: (stateDir, user) =>
      Effect.try({
        try: () => readRecord(checked, stateDir, user),
        catch: stateFailed(recordPath(stateDir, user))
      }).pipe(Effect.map(Option.fromNullable)),
    write: (stateDir, user, record) =>
      Effect.tryPromise({
        try: () => writeRecord(checked, stateDir, user, record, firstWriteIn),
        catch: stateFailed(recordPath(stateDir, user))
      }).pipe(Effect.uninterruptible),
    checkWritable: (stateDir) =>
      Effect.try({
        try: () => checkRecordDirectory(stateDir),
        catch: stateFailed(nodePath.join(stateDir, SUBDIR))
      })
  })
})

/**
 * Records in memory, optionally pre-filled (`user -> identities`, as a format-1 record without lines); `records` shows
 * what was written. With `failWritesWith` (an errno code such as "EROFS") every write fails, and so does
 * `checkWritable` for the codes a dry run can see before writing (EROFS, EPERM). @since 0.1.0
 */
export const layerMemory = (
  initial: Record<string, ReadonlyArray<string>> = {},
  records: Map<string, ManagedRecord> = new Map(),
  options: { readonly failWritesWith?: string } = {}
): Layer.Layer<ManagedKeys> =>
  Layer.effect(
    ManagedKeys,
    Effect.gen(function*() {
      for (const [user, keys] of Object.entries(initial)) {
        records.set(user, { identities: new Set(keys), lines: undefined })
      }
      const store = yield* Ref.make(records)
      return ManagedKeys.of({
        read: (_, user) => Ref.get(store).pipe(Effect.map((m) => Option.fromNullable(m.get(user)))),
        write: (stateDir, user, record) =>
          options.failWritesWith !== undefined
            ? Effect.fail(
              new StateError({ path: recordPath(stateDir, user), detail: `${options.failWritesWith}: simulated` })
            )
            : Ref.get(store).pipe(Effect.map((m) =>
              void m.set(user, {
                identities: new Set(record.identities),
                lines: record.lines === undefined ? undefined : new Set(record.lines)
              })
            )),
        checkWritable: (stateDir) =>
          options.failWritesWith !== undefined && REFUSED_BEFORE_WRITING.has(options.failWritesWith)
            ? Effect.fail(
              new StateError({ path: nodePath.join(stateDir, SUBDIR), detail: `${options.failWritesWith}: simulated` })
            )
            : Effect.void
      })
    })
  )
