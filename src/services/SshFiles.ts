/**
 * Every file-system call the tool makes inside a user's home, in one place, so that the rules for working as root in
 * a directory somebody else controls are applied everywhere:
 *
 * - `~/.ssh` is opened once with O_NOFOLLOW|O_DIRECTORY and pinned by its descriptor; on Linux every later path goes
 *   through `/proc/self/fd/N/…`, so swapping `.ssh` for a symlink after the check cannot redirect a write.
 * - Files are opened with O_NOFOLLOW (and O_NONBLOCK for reads, so a FIFO cannot hang the run) and checked on the
 *   open descriptor: a regular file with a single link, or the user is refused.
 * - New files are created with O_EXCL; mode and owner are set on the descriptor (fchmod/fchown), never by path.
 * - Writes are temp file + fsync + rename + directory fsync; a temp file is removed on any failure or interruption.
 *
 * @since 0.1.0
 */
import { constants as C } from "node:fs"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import { Context, Effect, Exit, Layer, Option, type Scope } from "effect"
import { describeCause, ReadError, SshDirMissing, UnsafePath, WriteError } from "../pipeline/Errors.js"
import { AUTHORIZED_KEYS, BACKUP_DIR, backupsToDelete } from "../pipeline/FileNames.js"
import type { Account } from "./Accounts.js"

// =============================================================================
// Interface
// =============================================================================

/** The current authorized_keys as found on disk. @since 0.1.0 */
export interface ExistingFile {
  readonly content: string
  /** Permission bits only (e.g. 0o600). */
  readonly mode: number
  readonly uid: number
  readonly gid: number
}

/** @since 0.1.0 */
export interface Owner {
  readonly uid: number
  readonly gid: number
}

/** @since 0.1.0 */
export interface BackupResult {
  readonly path: string
  /** Names of old backups removed by retention. */
  readonly pruned: ReadonlyArray<string>
}

/** An opened, pinned `~/.ssh` directory. Valid until the scope that opened it closes. @since 0.1.0 */
export interface SshDir {
  readonly path: string
  /** Same value for two accounts that share one `.ssh` (device and inode), so their syncs can be serialized. */
  readonly identity: string
  readonly authorizedKeysPath: string
  readonly readAuthorizedKeys: Effect.Effect<Option.Option<ExistingFile>, UnsafePath | ReadError>
  /** Atomically replace authorized_keys with `content`, via a temp file called `tempName` in the same directory. */
  readonly replaceAuthorizedKeys: (
    content: string,
    owner: Owner,
    tempName: string
  ) => Effect.Effect<void, WriteError | UnsafePath>
  /** Write `content` as backup `name` in `authorized_keys_backups/` (created 0700), then keep the newest `retention`. */
  readonly writeBackup: (
    content: string,
    owner: Owner,
    name: string,
    retention: number
  ) => Effect.Effect<BackupResult, WriteError | UnsafePath>
}

/** @since 0.1.0 */
export class SshFiles extends Context.Tag("authkeysync/SshFiles")<SshFiles, {
  /** Open `~/.ssh` of the account; fails with `SshDirMissing` (a skip) or `UnsafePath` (a failure). */
  readonly open: (account: Account) => Effect.Effect<SshDir, SshDirMissing | UnsafePath | ReadError, Scope.Scope>
}>() {}

/** A larger "authorized_keys" is not a key file; refusing it keeps memory bounded. */
export const MAX_LOCAL_FILE_BYTES = 16 * 1024 * 1024

// =============================================================================
// Live
// =============================================================================

type Errno = NodeJS.ErrnoException

const attempt = <A>(f: () => Promise<A>): Effect.Effect<A, Errno> =>
  Effect.tryPromise({ try: f, catch: (e) => e as Errno })

const closeQuietly = (handle: fs.FileHandle) => attempt(() => handle.close()).pipe(Effect.ignore)

const PROC_FD = "/proc/self/fd"

/** Where later paths start from, and how to make sure that is still the directory we opened. */
interface Pinned {
  readonly base: string
  /** Fails if the directory at the checked path is no longer the opened one (a no-op when pinned by /proc). */
  readonly guard: Effect.Effect<void, UnsafePath>
}

/**
 * Pin an opened directory. On Linux, `/proc/self/fd/N` resolves to exactly the opened directory, whatever happens to
 * its path later; without it a user could swap the directory for a symlink during the (long) network fetch and steer
 * root's writes into another account, so a Linux host without /proc is refused. Elsewhere (macOS) the path is used,
 * re-checked against the descriptor right before each operation: a much smaller window, documented in README.
 */
const pin = (user: string, handle: fs.FileHandle, displayPath: string): Effect.Effect<Pinned, UnsafePath> =>
  Effect.gen(function*() {
    const opened = yield* attempt(() => handle.stat()).pipe(Effect.option)
    const viaProc = yield* attempt(() => fs.stat(`${PROC_FD}/${handle.fd}`)).pipe(Effect.option)
    if (
      Option.isSome(opened) && Option.isSome(viaProc) && viaProc.value.isDirectory() &&
      viaProc.value.ino === opened.value.ino && viaProc.value.dev === opened.value.dev
    ) {
      return { base: `${PROC_FD}/${handle.fd}`, guard: Effect.void }
    }
    if (process.platform === "linux" || Option.isNone(opened)) {
      return yield* new UnsafePath({
        user,
        path: displayPath,
        reason: "cannot pin the directory through /proc/self/fd (is /proc mounted?); refusing path-based writes as root"
      })
    }
    const expected = opened.value
    const guard = attempt(() => fs.lstat(displayPath)).pipe(
      Effect.option,
      Effect.flatMap((now) =>
        Option.isSome(now) && now.value.isDirectory() && now.value.ino === expected.ino && now.value.dev === expected.dev
          ? Effect.void
          : Effect.fail(new UnsafePath({ user, path: displayPath, reason: "it was replaced during the run" }))
      )
    )
    return { base: displayPath, guard }
  })

/** Open a directory without following a final symlink, and check it is the one `lstat` saw. */
const openDirectory = (user: string, path: string) =>
  Effect.acquireRelease(
    attempt(() => fs.open(path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW)).pipe(
      Effect.catchAll((e): Effect.Effect<never, UnsafePath | ReadError> => {
        if (e.code !== "ELOOP" && e.code !== "ENOTDIR") {
          return Effect.fail(new ReadError({ path, detail: describeCause(e), cause: e }))
        }
        // Linux answers ENOTDIR for a symlink opened with O_DIRECTORY|O_NOFOLLOW; lstat tells which it was.
        return attempt(() => fs.lstat(path)).pipe(
          Effect.option,
          Effect.flatMap((st) =>
            Effect.fail(
              new UnsafePath({
                user,
                path,
                reason: Option.isSome(st) && st.value.isSymbolicLink() ? "it is a symbolic link" : "it is not a directory"
              })
            )
          )
        )
      })
    ),
    closeQuietly
  )

/** Create `path` exclusively (never through a link), set mode and owner on the descriptor, write, fsync. */
const createFile = (path: string, display: string, content: string, owner: Owner, mode: number) =>
  Effect.acquireUseRelease(
    attempt(() => fs.open(path, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode)),
    (handle) =>
      Effect.gen(function*() {
        yield* attempt(() => handle.chmod(mode))
        yield* attempt(() => handle.chown(owner.uid, owner.gid))
        yield* attempt(() => handle.writeFile(content, "latin1"))
        yield* attempt(() => handle.sync())
      }),
    (handle, exit) =>
      closeQuietly(handle).pipe(
        Effect.zipRight(Exit.isFailure(exit) ? attempt(() => fs.unlink(path)).pipe(Effect.ignore) : Effect.void)
      )
  ).pipe(Effect.mapError((e) => new WriteError({ path: display, operation: "write", detail: describeCause(e), cause: e })))

const makeSshDir = (
  account: Account,
  sshPath: string,
  dir: fs.FileHandle,
  identity: string,
  pinned: Pinned
): SshDir => {
  const { base, guard } = pinned
  const user = account.name
  const authorizedKeysPath = nodePath.join(sshPath, AUTHORIZED_KEYS)
  const target = `${base}/${AUTHORIZED_KEYS}`

  const readAuthorizedKeys = guard.pipe(Effect.zipRight(Effect.acquireUseRelease(
    attempt(() => fs.open(target, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY)),
    (handle) =>
      Effect.gen(function*() {
        const st = yield* attempt(() => handle.stat())
        if (!st.isFile()) {
          const what = st.isDirectory() ? "a directory" : st.isFIFO() ? "a FIFO" : "not a regular file"
          return yield* new UnsafePath({ user, path: authorizedKeysPath, reason: `it is ${what}` })
        }
        if (st.nlink > 1) {
          return yield* new UnsafePath({ user, path: authorizedKeysPath, reason: `it has ${st.nlink} hard links` })
        }
        if (st.size > MAX_LOCAL_FILE_BYTES) {
          return yield* new UnsafePath({ user, path: authorizedKeysPath, reason: `it is larger than ${MAX_LOCAL_FILE_BYTES} bytes` })
        }
        // latin1: one char per byte, so the bytes are written back (and backed up) exactly as they were.
        const content = yield* attempt(() => handle.readFile("latin1"))
        return Option.some<ExistingFile>({ content, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid })
      }),
    closeQuietly
  ))).pipe(
    Effect.catchAll((e): Effect.Effect<Option.Option<ExistingFile>, UnsafePath | ReadError> => {
      if (e instanceof UnsafePath) return Effect.fail(e)
      if (e.code === "ENOENT") return Effect.succeed(Option.none<ExistingFile>())
      if (e.code === "ELOOP") {
        return Effect.fail(new UnsafePath({ user, path: authorizedKeysPath, reason: "it is a symbolic link" }))
      }
      return Effect.fail(new ReadError({ path: authorizedKeysPath, detail: describeCause(e), cause: e }))
    })
  )

  const replaceAuthorizedKeys = (content: string, owner: Owner, tempName: string) =>
    Effect.gen(function*() {
      const temp = `${base}/${tempName}`
      const tempDisplay = nodePath.join(sshPath, tempName)
      yield* guard
      yield* Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          yield* restore(createFile(temp, tempDisplay, content, owner, 0o600))
          yield* guard.pipe(Effect.tapError(() => attempt(() => fs.unlink(temp)).pipe(Effect.ignore)))
          // From here the temp file exists; whatever happens next, it must not be left behind.
          yield* attempt(() => fs.rename(temp, target)).pipe(
            Effect.tapError(() => attempt(() => fs.unlink(temp)).pipe(Effect.ignore)),
            Effect.mapError((e) =>
              new WriteError({ path: authorizedKeysPath, operation: "replace", detail: describeCause(e), cause: e })
            )
          )
        })
      )
      // The file is already replaced: a failed directory fsync is worth a warning, not a "left untouched" failure.
      yield* attempt(() => dir.sync()).pipe(
        Effect.catchAll((e) => Effect.logWarning(`fsync of ${sshPath} failed after the rename: ${describeCause(e)}`))
      )
    })

  const writeBackup = (content: string, owner: Owner, name: string, retention: number) =>
    Effect.gen(function*() {
      const backupDisplay = nodePath.join(sshPath, BACKUP_DIR)
      const backupTarget = `${base}/${BACKUP_DIR}`
      const wrap = (operation: string, path: string) => (e: Errno) =>
        new WriteError({ path, operation, detail: describeCause(e), cause: e })
      yield* guard

      yield* attempt(() => fs.mkdir(backupTarget, { mode: 0o700 })).pipe(
        Effect.catchIf((e) => e.code === "EEXIST", () => Effect.void),
        Effect.mapError(wrap("create directory", backupDisplay))
      )
      const backupDir = yield* openDirectory(user, backupTarget).pipe(
        Effect.mapError((e) => (e._tag === "UnsafePath" ? new UnsafePath({ ...e, path: backupDisplay }) : new WriteError({ path: backupDisplay, operation: "open", detail: e.detail })))
      )
      // Spec: the directory belongs to the user, mode 0700, whoever made it. Fixed on the pinned descriptor.
      const dirStat = yield* attempt(() => backupDir.stat()).pipe(Effect.mapError(wrap("stat", backupDisplay)))
      if (dirStat.uid !== owner.uid || dirStat.gid !== owner.gid) {
        yield* attempt(() => backupDir.chown(owner.uid, owner.gid)).pipe(Effect.mapError(wrap("chown", backupDisplay)))
      }
      if ((dirStat.mode & 0o7777) !== 0o700) {
        yield* attempt(() => backupDir.chmod(0o700)).pipe(Effect.mapError(wrap("chmod", backupDisplay)))
      }
      const backupPin = yield* pin(user, backupDir, backupTarget).pipe(
        Effect.mapError((e) => new UnsafePath({ ...e, path: backupDisplay }))
      )
      const backupBase = backupPin.base
      yield* backupPin.guard
      const path = nodePath.join(backupDisplay, name)
      yield* createFile(`${backupBase}/${name}`, path, content, owner, 0o600)
      yield* attempt(() => backupDir.sync()).pipe(Effect.mapError(wrap("fsync", backupDisplay)))

      const names = yield* attempt(() => fs.readdir(backupBase)).pipe(Effect.mapError(wrap("list", backupDisplay)))
      const pruned: Array<string> = []
      for (const old of backupsToDelete(names, retention)) {
        const oldPath = `${backupBase}/${old}`
        const st = yield* attempt(() => fs.lstat(oldPath)).pipe(Effect.option)
        // Only regular files of our own naming pattern; never a link, never a directory.
        if (Option.isNone(st) || !st.value.isFile()) continue
        yield* attempt(() => fs.unlink(oldPath)).pipe(Effect.mapError(wrap("delete old backup", nodePath.join(backupDisplay, old))))
        pruned.push(old)
      }
      return { path, pruned }
    }).pipe(Effect.scoped)

  return { path: sshPath, identity, authorizedKeysPath, readAuthorizedKeys, replaceAuthorizedKeys, writeBackup }
}

/** The real file system. @since 0.1.0 */
export const layer: Layer.Layer<SshFiles> = Layer.succeed(
  SshFiles,
  SshFiles.of({
    open: (account) =>
      Effect.gen(function*() {
        const user = account.name
        const sshPath = nodePath.join(account.home, ".ssh")
        const st = yield* attempt(() => fs.lstat(sshPath)).pipe(
          Effect.mapError((e) =>
            e.code === "ENOENT" || e.code === "ENOTDIR"
              ? new SshDirMissing({ user, path: sshPath, reason: "missing" })
              : new ReadError({ path: sshPath, detail: describeCause(e), cause: e })
          )
        )
        if (st.isSymbolicLink()) return yield* new UnsafePath({ user, path: sshPath, reason: "it is a symbolic link" })
        if (!st.isDirectory()) return yield* new SshDirMissing({ user, path: sshPath, reason: "not-a-directory" })
        const dir = yield* openDirectory(user, sshPath)
        const pinned = yield* attempt(() => dir.stat()).pipe(
          Effect.mapError((e) => new ReadError({ path: sshPath, detail: describeCause(e), cause: e }))
        )
        if (pinned.ino !== st.ino || pinned.dev !== st.dev) {
          return yield* new UnsafePath({ user, path: sshPath, reason: "it was replaced while being opened" })
        }
        return makeSshDir(account, sshPath, dir, `${pinned.dev}:${pinned.ino}`, yield* pin(user, dir, sshPath))
      })
  })
)

// =============================================================================
// Test: an in-memory tree
// =============================================================================

/** @since 0.1.0 */
export interface MemoryFile extends ExistingFile {}

/**
 * A tiny in-memory file system for pipeline tests: directories, files and symlinks by absolute path.
 * Tests set it up, run a sync, and read it back.
 *
 * @since 0.1.0
 */
export class MemoryFs {
  readonly files = new Map<string, MemoryFile>()
  readonly dirs = new Map<string, { mode: number; uid: number; gid: number }>()
  readonly symlinks = new Set<string>()
  /** Paths written, in order (temp files and backups included), to check what a run touched. */
  readonly writes: Array<string> = []
  /** When set, creating any file fails with this errno code (e.g. "ENOSPC"). */
  failWritesWith: string | undefined = undefined
  /** Runs after each read of authorized_keys, e.g. a sleep that opens a window between read and write. */
  afterRead: Effect.Effect<void> = Effect.void

  mkdir(path: string, owner: Owner = { uid: 0, gid: 0 }, mode = 0o700): this {
    this.dirs.set(path, { mode, ...owner })
    return this
  }

  writeFile(path: string, content: string, owner: Owner = { uid: 0, gid: 0 }, mode = 0o600): this {
    this.files.set(path, { content, mode, ...owner })
    return this
  }

  read(path: string): string | undefined {
    return this.files.get(path)?.content
  }

  list(dir: string): Array<string> {
    const prefix = dir.endsWith("/") ? dir : `${dir}/`
    return [...this.files.keys(), ...this.dirs.keys()]
      .filter((p) => p.startsWith(prefix) && !p.slice(prefix.length).includes("/"))
      .map((p) => p.slice(prefix.length))
      .sort()
  }
}

/** @since 0.1.0 */
export const layerMemory = (memory: MemoryFs): Layer.Layer<SshFiles> =>
  Layer.succeed(
    SshFiles,
    SshFiles.of({
      open: (account) =>
        Effect.suspend((): Effect.Effect<SshDir, SshDirMissing | UnsafePath> => {
          const user = account.name
          const sshPath = nodePath.join(account.home, ".ssh")
          if (memory.symlinks.has(sshPath)) return Effect.fail(new UnsafePath({ user, path: sshPath, reason: "it is a symbolic link" }))
          if (memory.files.has(sshPath)) return Effect.fail(new SshDirMissing({ user, path: sshPath, reason: "not-a-directory" }))
          if (!memory.dirs.has(sshPath)) return Effect.fail(new SshDirMissing({ user, path: sshPath, reason: "missing" }))
          const authorizedKeysPath = nodePath.join(sshPath, AUTHORIZED_KEYS)
          const create = (path: string, content: string, owner: Owner) =>
            Effect.suspend(() => {
              if (memory.failWritesWith !== undefined) {
                return Effect.fail(new WriteError({ path, operation: "write", detail: `${memory.failWritesWith}: simulated` }))
              }
              memory.writes.push(path)
              memory.files.set(path, { content, mode: 0o600, ...owner })
              return Effect.void
            })
          const sshDir: SshDir = {
            path: sshPath,
            identity: sshPath,
            authorizedKeysPath,
            readAuthorizedKeys: Effect.suspend(() => {
              if (memory.symlinks.has(authorizedKeysPath)) {
                return Effect.fail(new UnsafePath({ user, path: authorizedKeysPath, reason: "it is a symbolic link" }))
              }
              if (memory.dirs.has(authorizedKeysPath)) {
                return Effect.fail(new UnsafePath({ user, path: authorizedKeysPath, reason: "it is a directory" }))
              }
              const file = memory.files.get(authorizedKeysPath)
              return memory.afterRead.pipe(Effect.as(file ? Option.some({ ...file }) : Option.none()))
            }),
            replaceAuthorizedKeys: (content, owner, tempName) => {
              const temp = nodePath.join(sshPath, tempName)
              return create(temp, content, owner).pipe(
                Effect.tap(() =>
                  Effect.sync(() => {
                    const file = memory.files.get(temp)!
                    memory.files.delete(temp)
                    memory.files.set(authorizedKeysPath, file)
                  })
                )
              )
            },
            writeBackup: (content, owner, name, retention) =>
              Effect.gen(function*() {
                const dir = nodePath.join(sshPath, BACKUP_DIR)
                if (memory.symlinks.has(dir)) return yield* new UnsafePath({ user, path: dir, reason: "it is a symbolic link" })
                if (!memory.dirs.has(dir)) memory.mkdir(dir, owner, 0o700)
                const path = nodePath.join(dir, name)
                yield* create(path, content, owner)
                const pruned = backupsToDelete(memory.list(dir), retention)
                for (const old of pruned) memory.files.delete(nodePath.join(dir, old))
                return { path, pruned }
              })
          }
          return Effect.succeed(sshDir)
        })
    })
  )
