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
import { Context, Effect, Layer, Option, type Scope } from "effect"
import * as fs from "node:fs"
import { type BigIntStats, constants as C } from "node:fs"
import * as nodePath from "node:path"
import { describeCause, ReadError, SshDirMissing, UnsafePath, WriteError } from "../pipeline/Errors.js"
import { AUTHORIZED_KEYS, BACKUP_DIR, BACKUP_NAME_PATTERN, backupsToDelete } from "../pipeline/FileNames.js"
import type { Account } from "./Accounts.js"
import { unresponsiveHomes } from "./internal/homeProbe.js"
import {
  attempt,
  closeQuietly,
  fsyncFd,
  listDirectory,
  MAX_DIRECTORY_ENTRIES,
  openFile,
  REFUSED_BEFORE_WRITING,
  removeStaleFiles,
  throwIfRefusesWrites,
  unlinkQuietly
} from "./internal/syscalls.js"
import { stepProblem } from "./internal/trustedPath.js"

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
  /** Same value for two accounts that share one `.ssh` (device and inode), so that they can be refused. */
  readonly identity: string
  readonly authorizedKeysPath: string
  readonly readAuthorizedKeys: Effect.Effect<Option.Option<ExistingFile>, UnsafePath | ReadError>
  /**
   * authorized_keys' size in bytes as lstat sees it now (0 when it is missing or cannot be looked at): only a hint,
   * for budgeting memory before the file is read; readAuthorizedKeys makes the checks.
   */
  readonly authorizedKeysSize: Effect.Effect<number>
  /**
   * Atomically replace authorized_keys with `content`, via a temp file called `tempName` in the same directory.
   * Before the rename the temp file is read back and given to `verify`, which returns why it is wrong, if it is.
   */
  readonly replaceAuthorizedKeys: (
    content: string,
    owner: Owner,
    tempName: string,
    verify?: (writtenBack: string) => string | undefined
  ) => Effect.Effect<void, WriteError | UnsafePath>
  /**
   * Remove temp files a crashed run left behind, in `.ssh` and in `authorized_keys_backups/` (a backup it was still
   * writing): our own name patterns, regular files, last modified before `before`. Returns their paths under `.ssh`.
   */
  readonly removeStaleTemps: (before: Date) => Effect.Effect<ReadonlyArray<string>>
  /**
   * What a dry run can know of the backup a real run would write: fails as `writeBackup` would when
   * `authorized_keys_backups/` is there but unusable (a link, a file, another account's, read-only, immutable).
   * Changes nothing.
   */
  readonly checkBackups: (owner: Owner) => Effect.Effect<void, WriteError | UnsafePath>
  /**
   * What a dry run can know of the write a real run would make in `.ssh`: fails as the write would when the directory
   * or authorized_keys refuses writes whoever asks (a read-only mount, the immutable flag). Changes nothing.
   */
  readonly checkWritable: Effect.Effect<void, WriteError>
  /** Write `content` as backup `name` in `authorized_keys_backups/` (created 0700), then keep the newest `retention`. */
  readonly writeBackup: (
    content: string,
    owner: Owner,
    name: string,
    retention: number,
    /** Who owns the backup file itself (default `owner`): root for a file root owned, so the user cannot read it. */
    fileOwner?: Owner
  ) => Effect.Effect<BackupResult, WriteError | UnsafePath>
}

/** @since 0.1.0 */
export class SshFiles extends Context.Tag("authkeysync/SshFiles")<SshFiles, {
  /**
   * Open `~/.ssh` of the account; fails with `SshDirMissing` (a skip) or `UnsafePath` (a failure). With
   * `primaryGroupMayWrite`, `~` and `~/.ssh` may be writable by the account's primary group (which the caller found to
   * be the account's own alone).
   */
  readonly open: (
    account: Account,
    options?: { readonly primaryGroupMayWrite?: boolean }
  ) => Effect.Effect<SshDir, SshDirMissing | UnsafePath | ReadError, Scope.Scope>
  /**
   * Which directory `~/.ssh` is (device and inode, like `SshDir.identity`), reached and checked as `open` does; none
   * when `open` would not give it (missing, a link, an unsafe home). Only used to find accounts that share one `.ssh`
   * before any of them is synced.
   */
  readonly identify: (account: Account) => Effect.Effect<Option.Option<string>>
  /**
   * Why the account has no `~/.ssh` directory, when it has none (looked at without following `.ssh` itself): such an
   * account is skipped, as the Go original skips it, whatever else about its home would be refused.
   */
  readonly sshDirAbsent: (account: Account) => Effect.Effect<Option.Option<SshDirMissing>>
  /**
   * The accounts (by name) whose home is on a filesystem that did not answer a look from another process in time
   * (a network or FUSE filesystem whose server is away), with why: touching those from here could block the run.
   */
  readonly unresponsiveHomes: (accounts: ReadonlyArray<Account>) => Effect.Effect<ReadonlyMap<string, string>>
}>() {}

/** A larger "authorized_keys" is not a key file; refusing it keeps memory bounded. */
export const MAX_LOCAL_FILE_BYTES = 16 * 1024 * 1024

// =============================================================================
// Live
// =============================================================================

type Errno = NodeJS.ErrnoException

// Each operation below is one plain sequence of syscalls, wrapped once at the service boundary: the safety rules
// read top to bottom, and a sync of hundreds of users does not pay Effect's per-step cost for every syscall. The
// calls are synchronous, fsync aside (see internal/syscalls.ts).

const PROC_FD = "/proc/self/fd"

/** A directory opened without following links, and how later paths reach it. */
interface OpenedDirectory {
  readonly fd: number
  // bigint: overlayfs (xino) and NFS inode numbers do not fit a double; two directories must never look alike.
  readonly dev: bigint
  readonly ino: bigint
  /** Owner and mode as they were when it was opened. */
  readonly ownerAndMode: { readonly uid: number; readonly gid: number; readonly mode: number }
  /** `/proc/self/fd/N` on Linux: exactly the opened directory, whatever happens to its path later. */
  readonly base: string
  /** Where pinning is impossible (macOS): re-check that the path is still the opened directory. No-op when pinned. */
  readonly guard: () => void
}

/**
 * Open `path` as a directory with O_NOFOLLOW and pin it. Without /proc on Linux a user could swap the directory for
 * a symlink during the (long) network fetch and steer root's writes into another account, so such a host is refused.
 * On macOS the path is used and re-checked against the descriptor before each operation (README: a small window).
 */
const openDirectory = (user: string, path: string, display: string): OpenedDirectory => {
  let fd: number
  try {
    fd = fs.openSync(path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW)
  } catch (error) {
    const e = error as Errno
    if (e.code !== "ELOOP" && e.code !== "ENOTDIR") {
      throw new ReadError({ path: display, detail: describeCause(e), cause: e })
    }
    // Linux answers ENOTDIR for a symlink opened with O_DIRECTORY|O_NOFOLLOW; lstat tells which it was.
    const st = attempt(() => fs.lstatSync(path))
    // Gone between the caller's check and the open: the caller treats that as missing.
    if (st === undefined) throw new ReadError({ path: display, detail: describeCause(e), cause: { code: "ENOENT" } })
    throw new UnsafePath({
      user,
      path: display,
      reason: st.isSymbolicLink() ? "it is a symbolic link" : "it is not a directory"
    })
  }
  try {
    const opened = fs.fstatSync(fd, { bigint: true })
    const viaProc = attempt(() => fs.statSync(`${PROC_FD}/${fd}`, { bigint: true }))
    if (viaProc?.isDirectory() && viaProc.ino === opened.ino && viaProc.dev === opened.dev) {
      return {
        fd,
        dev: opened.dev,
        ino: opened.ino,
        ownerAndMode: numeric(opened),
        base: `${PROC_FD}/${fd}`,
        guard: () => {}
      }
    }
    if (process.platform === "linux") {
      throw new UnsafePath({
        user,
        path: display,
        reason: "cannot pin the directory through /proc/self/fd (is /proc mounted?); refusing path-based writes as root"
      })
    }
    const guard = () => {
      const now = attempt(() => fs.lstatSync(path, { bigint: true }))
      if (!now?.isDirectory() || now.ino !== opened.ino || now.dev !== opened.dev) {
        throw new UnsafePath({ user, path: display, reason: "it was replaced during the run" })
      }
    }
    return { fd, dev: opened.dev, ino: opened.ino, ownerAndMode: numeric(opened), base: path, guard }
  } catch (error) {
    closeQuietly(fd)
    throw error
  }
}

/** The temp file did not read back as what was meant to be written. */
class VerifyFailed extends Error {}

/**
 * Create `path` exclusively (never through a link), set mode and owner on the descriptor, write, fsync, read back
 * and verify, close.
 */
const createFile = async (
  path: string,
  content: string,
  owner: Owner,
  mode: number,
  verify?: (writtenBack: string) => string | undefined
) => {
  // Only a file this call created is ever unlinked: a failed O_EXCL open throws before the try. On the thread pool:
  // creating a file waits for the file system's journal while other users' fsyncs commit it (on ext4, most of a
  // millisecond per file on a busy run), and the other users' work need not wait with it.
  const fd = await openFile(path, C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode)
  let open = true
  try {
    // Written and verified while still root's 0600, so the user cannot open it before it is complete; then handed
    // over on the descriptor and synced (data and owner) before anything renames it.
    const bytes = Buffer.from(content, "latin1")
    for (let written = 0; written < bytes.length;) {
      written += fs.writeSync(fd, bytes, written, bytes.length - written, written)
    }
    if (verify !== undefined) {
      // One read of one byte more than was written: a short or a long answer is a failed check (nothing is renamed).
      const back = Buffer.alloc(bytes.length + 1)
      const bytesRead = fs.readSync(fd, back, 0, back.length, 0)
      const problem = bytesRead !== bytes.length
        ? `read back ${bytesRead} bytes, expected ${bytes.length}`
        : verify(back.toString("latin1", 0, bytesRead))
      if (problem !== undefined) throw new VerifyFailed(`the temp file did not read back as intended: ${problem}`)
    }
    fs.fchmodSync(fd, mode)
    fs.fchownSync(fd, owner.uid, owner.gid)
    await fsyncFd(fd)
    open = false
    // NFS may report a write error (EDQUOT, EIO) only here.
    fs.closeSync(fd)
  } catch (error) {
    if (open) closeQuietly(fd)
    unlinkQuietly(path)
    throw error
  }
}

/**
 * At most `limit` bytes, whatever the file does meanwhile (the user can grow it after the size check): reads into a
 * buffer of `limit + 1` bytes at the most and gives up (undefined) when it fills. latin1: one char per byte, so the
 * bytes are written back (and backed up) exactly as they were.
 */
export const readBounded = (fd: number, sizeHint: number, limit: number): string | undefined => {
  let buffer = Buffer.alloc(Math.min(Math.max(sizeHint, 4096), limit) + 1)
  let length = 0
  for (;;) {
    if (length === buffer.length) {
      if (buffer.length > limit) return undefined
      const bigger = Buffer.alloc(Math.min(buffer.length * 2, limit + 1))
      buffer.copy(bigger, 0, 0, length)
      buffer = bigger
    }
    const bytesRead = fs.readSync(fd, buffer, length, buffer.length - length, length)
    if (bytesRead === 0) return buffer.toString("latin1", 0, length)
    length += bytesRead
  }
}

/** authorized_keys in the opened `.ssh`, for reading: never through a link, and a FIFO cannot hang the open. */
const openAuthorizedKeys = (dir: OpenedDirectory): number =>
  fs.openSync(`${dir.base}/${AUTHORIZED_KEYS}`, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY)

const readExisting = (user: string, uid: number, dir: OpenedDirectory, display: string): ExistingFile | undefined => {
  dir.guard()
  let fd: number
  try {
    fd = openAuthorizedKeys(dir)
  } catch (error) {
    const e = error as Errno
    if (e.code === "ENOENT") return undefined
    if (e.code === "ELOOP") throw new UnsafePath({ user, path: display, reason: "it is a symbolic link" })
    // A socket cannot be opened at all (ENXIO); say what it is rather than "no such device or address".
    if (e.code === "ENXIO") throw new UnsafePath({ user, path: display, reason: "it is a socket, not a regular file" })
    throw new ReadError({ path: display, detail: describeCause(e), cause: e })
  }
  try {
    // Checked on the open descriptor, so what is checked is what is read.
    const st = fs.fstatSync(fd)
    if (!st.isFile()) {
      const what = st.isDirectory() ? "a directory" : st.isFIFO() ? "a FIFO" : "not a regular file"
      throw new UnsafePath({ user, path: display, reason: `it is ${what}` })
    }
    if (st.nlink > 1) throw new UnsafePath({ user, path: display, reason: `it has ${st.nlink} hard links` })
    if (st.uid !== uid && st.uid !== 0) {
      throw new UnsafePath({ user, path: display, reason: `it is owned by uid ${st.uid}, not by ${user} or root` })
    }
    if (st.size > MAX_LOCAL_FILE_BYTES) {
      throw new UnsafePath({ user, path: display, reason: `it is larger than ${MAX_LOCAL_FILE_BYTES} bytes` })
    }
    const content = readBounded(fd, st.size, MAX_LOCAL_FILE_BYTES)
    if (content === undefined) {
      throw new UnsafePath({
        user,
        path: display,
        reason: `it grew past ${MAX_LOCAL_FILE_BYTES} bytes while being read`
      })
    }
    return { content, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid }
  } finally {
    closeQuietly(fd)
  }
}

/** Temp file, fsync, rename over authorized_keys, fsync the directory. Returns a warning when only the last fails. */
const replaceFile = async (
  dir: OpenedDirectory,
  sshPath: string,
  content: string,
  owner: Owner,
  tempName: string,
  verify: ((writtenBack: string) => string | undefined) | undefined
): Promise<string | undefined> => {
  const temp = `${dir.base}/${tempName}`
  const display = nodePath.join(sshPath, AUTHORIZED_KEYS)
  dir.guard()
  try {
    await createFile(temp, content, owner, 0o600, verify)
  } catch (error) {
    if (error instanceof VerifyFailed) {
      throw new WriteError({ path: nodePath.join(sshPath, tempName), operation: "verify", detail: error.message })
    }
    throw new WriteError({
      path: nodePath.join(sshPath, tempName),
      operation: "write",
      detail: describeCause(error),
      cause: error
    })
  }
  try {
    dir.guard()
    fs.renameSync(temp, `${dir.base}/${AUTHORIZED_KEYS}`)
  } catch (error) {
    unlinkQuietly(temp)
    if (error instanceof UnsafePath) throw error
    throw new WriteError({ path: display, operation: "replace", detail: describeCause(error), cause: error })
  }
  // The file is already replaced: a failed directory fsync is worth a warning, not a "left untouched" failure.
  return fsyncFd(dir.fd).then(
    () => undefined,
    (error) => `fsync of ${sshPath} failed after the rename: ${describeCause(error)}`
  )
}

/** `.authorized_keys_<stamp>_<id>.tmp`: a backup being written. */
const BACKUP_TEMP_PATTERN = /^\.authorized_keys_\d{8}_\d{6}_[a-z]{6}\.tmp$/

/**
 * A backup in authorized_keys_backups/ (made the user's, 0700), then retention. Problems after the backup is safely
 * written (pruning old ones) are returned as warnings: they must not stop the sync.
 */
const backupFile = async (
  user: string,
  dir: OpenedDirectory,
  sshPath: string,
  content: string,
  owner: Owner,
  name: string,
  retention: number,
  fileOwner: Owner
): Promise<BackupResult & { readonly warnings: ReadonlyArray<string> }> => {
  const display = nodePath.join(sshPath, BACKUP_DIR)
  const failed = (operation: string, path: string) => (error: unknown): never => {
    if (error instanceof UnsafePath || error instanceof WriteError) throw error
    throw new WriteError({ path, operation, detail: describeCause(error), cause: error })
  }
  /** `fn()`, with a failure reported as `operation` on `path`. */
  const step = <A>(operation: string, path: string, fn: () => A): A => {
    try {
      return fn()
    } catch (error) {
      return failed(operation, path)(error)
    }
  }
  dir.guard()
  try {
    fs.mkdirSync(`${dir.base}/${BACKUP_DIR}`, { mode: 0o700 })
  } catch (error) {
    if ((error as Errno).code !== "EEXIST") failed("create directory", display)(error)
  }
  const backups = openBackupDirectory(user, dir, display, owner)
  try {
    // Spec: the directory belongs to the user, mode 0700. One made by root (this tool as root, the Go original) is
    // handed over on the pinned descriptor.
    const st = step("stat", display, () => fs.fstatSync(backups.fd))
    if (st.uid !== owner.uid || st.gid !== owner.gid) {
      step("chown", display, () => fs.fchownSync(backups.fd, owner.uid, owner.gid))
    }
    if ((st.mode & 0o7777) !== 0o700) step("chmod", display, () => fs.fchmodSync(backups.fd, 0o700))

    const path = nodePath.join(display, name)
    // Like authorized_keys itself: a temp name, then a rename, so a run killed mid-write never leaves a truncated
    // file under a backup name (it would count towards retention and push out a good one).
    const temp = `${backups.base}/.${name}.tmp`
    backups.guard()
    await createFile(temp, content, fileOwner, 0o600).catch(failed("write", path))
    try {
      fs.renameSync(temp, `${backups.base}/${name}`)
    } catch (error) {
      unlinkQuietly(temp)
      failed("write", path)(error)
    }
    await fsyncFd(backups.fd).catch(failed("fsync", display))

    const pruned: Array<string> = []
    const warnings: Array<string> = []
    let listing: ReturnType<typeof listDirectory> = { names: [], complete: true }
    try {
      listing = listDirectory(backups.base)
    } catch (error) {
      warnings.push(`cannot list ${display} for retention: ${describeCause(error)}`)
    }
    // Judged on part of the directory, retention could delete a newer backup than it keeps.
    if (!listing.complete) {
      warnings.push(`${display} holds more than ${MAX_DIRECTORY_ENTRIES} entries: old backups were not removed`)
    }
    // Only regular files of our own naming pattern count, and are ever deleted: never a link or a directory, which
    // would otherwise take the places of real backups and have them deleted as soon as they are written.
    const files = listing.complete
      ? listing.names.filter((old) =>
        BACKUP_NAME_PATTERN.test(old) && attempt(() => fs.lstatSync(`${backups.base}/${old}`))?.isFile() === true
      )
      : []
    for (const old of backupsToDelete(files, retention, name)) {
      const oldPath = `${backups.base}/${old}`
      try {
        fs.unlinkSync(oldPath)
        pruned.push(old)
      } catch (error) {
        warnings.push(`cannot delete old backup ${nodePath.join(display, old)}: ${describeCause(error)}`)
      }
    }
    return { path, pruned, warnings }
  } finally {
    closeQuietly(backups.fd)
  }
}

/**
 * sshd's StrictModes rule for `~` and `~/.ssh`: owned by the user or root, not writable by group or others; with
 * `ownGroup` (the account's primary group, which is its own alone), writable by that group too, as Debian's and
 * Ubuntu's sshd accept. `primaryGroupWritable` when only the primary group's write access is in the way.
 */
const strictModesProblem = (
  st: { readonly uid: number; readonly gid: number; readonly mode: number },
  account: Account,
  ownGroup: boolean
): { readonly reason: string; readonly primaryGroupWritable?: true } | undefined => {
  if (st.uid !== account.uid && st.uid !== 0) {
    return { reason: `it is owned by uid ${st.uid}, not by ${account.name} or root` }
  }
  const reason = `it is writable by group or others (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")})`
  if ((st.mode & 0o002) !== 0) return { reason }
  if ((st.mode & 0o020) === 0 || (ownGroup && st.gid === account.gid)) return undefined
  return st.gid === account.gid ? { reason, primaryGroupWritable: true } : { reason }
}

/**
 * Nobody but root may be able to replace a directory entry on the way to the home, the home's own entry included:
 * whoever can (another account owning a directory on the way, the user themself for a home inside a directory they
 * own or in a shared /tmp, a group with write access) could swap the home for a link to, say, /root, whose root-owned
 * `.ssh` passes every later check. So each step must pass stepProblem trusting root alone (sshd stops its checks at
 * the home; this goes further).
 */
const rootOnly = (uid: number) => uid === 0

const entryProblem = (
  parent: { readonly uid: number; readonly mode: number },
  entry: { readonly uid: number },
  parentPath: string,
  entryPath: string
): string | undefined => stepProblem(parent, parentPath, entry, entryPath, rootOnly)

class HomePathProblem extends Error {}

/** uid, gid and mode of a bigint stat, as plain numbers (they always fit). */
const numeric = (st: { readonly uid: bigint; readonly gid: bigint; readonly mode: bigint }) => ({
  uid: Number(st.uid),
  gid: Number(st.gid),
  mode: Number(st.mode)
})

const MAX_LINK_HOPS = 40

/** fstat of a descriptor just opened, which is closed when even that fails. */
const statOrClose = (fd: number): BigIntStats => {
  try {
    return fs.fstatSync(fd, { bigint: true })
  } catch (error) {
    closeQuietly(fd)
    throw error
  }
}

/**
 * Open the home by walking to it one entry at a time from /, each directory opened with O_NOFOLLOW inside the one
 * before (through /proc/self/fd), every entry checked against its directory before it is used. A symbolic link on
 * the way (an administrator's `/home -> /data/home`) is read and its target walked the same way, so no directory the
 * kernel would pass through goes unchecked, and what is checked is what is opened. Returns the home's descriptor and
 * its stat.
 */
const walkToHome = (home: string): { readonly fd: number; readonly stat: BigIntStats } => {
  // Each directory's stat, read once when it was opened: a directory used as a parent must be root's, so only root can
  // change its owner and mode afterwards. The home's is returned with it (openSsh checks it, without a second fstat).
  const stack: Array<{ readonly fd: number; readonly path: string; readonly stat: BigIntStats }> = []
  try {
    const rootFd = fs.openSync("/", C.O_RDONLY | C.O_DIRECTORY)
    stack.push({ fd: rootFd, path: "/", stat: statOrClose(rootFd) })
    const pending = home.split("/")
    let hops = 0
    while (pending.length > 0) {
      const part = pending.shift()!
      if (part === "" || part === ".") continue
      if (part === "..") {
        if (stack.length > 1) closeQuietly(stack.pop()!.fd)
        continue
      }
      const parent = stack[stack.length - 1]!
      const entryPath = `${PROC_FD}/${parent.fd}/${part}`
      const shown = nodePath.join(parent.path, part)
      const parentStat = numeric(parent.stat)
      // The directory first: nothing is looked up inside one that is not root's.
      const parentProblem = entryProblem(parentStat, { uid: 0 }, parent.path, shown)
      if (parentProblem !== undefined) throw new HomePathProblem(parentProblem)
      const entry = fs.lstatSync(entryPath, { bigint: true })
      const problem = entryProblem(parentStat, numeric(entry), parent.path, shown)
      if (problem !== undefined) throw new HomePathProblem(problem)
      if (entry.isSymbolicLink()) {
        if (++hops > MAX_LINK_HOPS) {
          throw new HomePathProblem(`more than ${MAX_LINK_HOPS} symbolic links on the way to it`)
        }
        const target = fs.readlinkSync(entryPath)
        if (target.startsWith("/")) { while (stack.length > 1) closeQuietly(stack.pop()!.fd) }
        pending.unshift(...target.split("/"))
        continue
      }
      const fd = fs.openSync(entryPath, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW)
      const opened = statOrClose(fd)
      stack.push({ fd, path: shown, stat: opened })
      if (opened.ino !== entry.ino || opened.dev !== entry.dev) {
        // An automount (autofs, x-systemd.automount) is mounted by the open, not by lstat: a look at the entry again
        // must now show exactly the opened directory, on another device than the placeholder, and pass the rule.
        const again = fs.lstatSync(entryPath, { bigint: true })
        const mounted = again.ino === opened.ino && again.dev === opened.dev && entry.dev !== opened.dev
        if (!mounted || entryProblem(parentStat, numeric(again), parent.path, shown) !== undefined) {
          throw new HomePathProblem(`${shown} changed while being opened`)
        }
      }
      const openedProblem = entryProblem(parentStat, numeric(opened), parent.path, shown)
      if (openedProblem !== undefined) throw new HomePathProblem(openedProblem)
    }
    if (stack.length === 1) throw new HomePathProblem("it is the root directory")
    return stack.pop()!
  } finally {
    for (const dir of stack) closeQuietly(dir.fd)
  }
}

/** Without /proc (macOS): the same rule, checked on the path as given and as resolved, then opened by path. */
const pathProblem = (path: string): string | undefined => {
  let dir = "/"
  for (const part of path.split("/").filter((p) => p !== "")) {
    const entry = nodePath.join(dir, part)
    const problem = entryProblem(fs.statSync(dir), fs.lstatSync(entry), dir, entry)
    if (problem !== undefined) return problem
    dir = entry
  }
  return undefined
}

let procChecked: boolean | undefined
const procAvailable = (): boolean => (procChecked ??= fs.existsSync(PROC_FD))

const homePathProblem = (home: string): string | undefined => {
  const given = nodePath.resolve(home)
  const problem = pathProblem(given)
  if (problem !== undefined) return problem
  const real = fs.realpathSync(given)
  return real === given ? undefined : pathProblem(real)
}

/**
 * Why `~/.ssh` is not there, if it is not: an lstat by path, which only reads (links on the way to the home are
 * followed, `.ssh` itself is not). A home that would be refused but holds no `.ssh` is a skip, as in the Go original.
 */
const sshDirAbsence = (account: Account): SshDirMissing | undefined => {
  const sshPath = nodePath.join(account.home, ".ssh")
  try {
    const st = fs.lstatSync(sshPath)
    return st.isDirectory() || st.isSymbolicLink()
      ? undefined
      : new SshDirMissing({ user: account.name, path: sshPath, reason: "not-a-directory" })
  } catch (error) {
    const code = (error as Errno).code
    // Not ENOTDIR: a home that is a file is an error, as in the Go original (whose os.IsNotExist is false for it).
    return code === "ENOENT" ? new SshDirMissing({ user: account.name, path: sshPath, reason: "missing" }) : undefined
  }
}

/** The refusal of a home, unless it holds no `.ssh` (then a skip that says why the home would be refused). */
const homeRefusal = (
  account: Account,
  problem: { readonly reason: string; readonly primaryGroupWritable?: true }
): SshDirMissing | UnsafePath =>
  sshDirAbsence(account)?.becauseHomeRefused(`${account.home}: ${problem.reason}`) ??
    new UnsafePath({ user: account.name, path: account.home, ...problem })

/**
 * Open the home (a path root's passwd gave, so links in it are followed once the directories above it are known to
 * be root's), check it, then open `.ssh` inside the opened home without following a link, pin it and check it too.
 */
const openSsh = (account: Account, primaryGroupMayWrite = false): OpenedDirectory => {
  const user = account.name
  const sshPath = nodePath.join(account.home, ".ssh")
  let home: number
  let homeStat: BigIntStats
  try {
    if (procAvailable()) {
      const reached = walkToHome(account.home)
      home = reached.fd
      homeStat = reached.stat
    } else {
      const problem = homePathProblem(account.home)
      if (problem !== undefined) throw new HomePathProblem(problem)
      home = fs.openSync(account.home, C.O_RDONLY | C.O_DIRECTORY)
      homeStat = statOrClose(home)
    }
  } catch (error) {
    if (error instanceof HomePathProblem) throw homeRefusal(account, { reason: error.message })
    const e = error as Errno
    if (e.code === "ENOENT") throw new SshDirMissing({ user, path: sshPath, reason: "missing" })
    if (e.code === "ENOTDIR" || e.code === "ELOOP") {
      throw homeRefusal(account, { reason: "the home is not a directory" })
    }
    throw new ReadError({ path: account.home, detail: describeCause(e), cause: e })
  }
  try {
    const homeProblem = strictModesProblem(numeric(homeStat), account, primaryGroupMayWrite)
    if (homeProblem !== undefined) throw homeRefusal(account, homeProblem)
    const viaProc = `${PROC_FD}/${home}`
    const viaProcStat = attempt(() => fs.statSync(viaProc, { bigint: true }))
    const pinnedHome = viaProcStat !== undefined && viaProcStat.ino === homeStat.ino && viaProcStat.dev === homeStat.dev
    if (!pinnedHome && procAvailable()) {
      throw new UnsafePath({ user, path: account.home, reason: "cannot pin the home through /proc/self/fd" })
    }
    const base = pinnedHome ? `${viaProc}/.ssh` : sshPath

    let st: BigIntStats
    try {
      st = fs.lstatSync(base, { bigint: true })
    } catch (error) {
      const e = error as Errno
      if (e.code === "ENOENT" || e.code === "ENOTDIR") {
        throw new SshDirMissing({ user, path: sshPath, reason: "missing" })
      }
      throw new ReadError({ path: sshPath, detail: describeCause(e), cause: e })
    }
    if (st.isSymbolicLink()) throw new UnsafePath({ user, path: sshPath, reason: "it is a symbolic link" })
    if (!st.isDirectory()) throw new SshDirMissing({ user, path: sshPath, reason: "not-a-directory" })
    let dir: OpenedDirectory
    try {
      dir = openDirectory(user, base, sshPath)
    } catch (error) {
      // Removed between lstat and open: the same as missing.
      if (error instanceof ReadError && (error.cause as Errno | undefined)?.code === "ENOENT") {
        throw new SshDirMissing({ user, path: sshPath, reason: "missing" })
      }
      throw error
    }
    try {
      if (dir.ino !== st.ino || dir.dev !== st.dev) {
        throw new UnsafePath({ user, path: sshPath, reason: "it was replaced while being opened" })
      }
      const sshProblem = strictModesProblem(dir.ownerAndMode, account, primaryGroupMayWrite)
      if (sshProblem !== undefined) throw new UnsafePath({ user, path: sshPath, ...sshProblem })
      return dir
    } catch (error) {
      closeQuietly(dir.fd)
      throw error
    }
  } finally {
    closeQuietly(home)
  }
}

/**
 * `authorized_keys_backups/` opened (never through a link) and checked to be the user's or root's: one owned by another
 * account is not ours to take. `display` names it in errors.
 */
const openBackupDirectory = (user: string, dir: OpenedDirectory, display: string, owner: Owner): OpenedDirectory => {
  let backups: OpenedDirectory
  try {
    backups = openDirectory(user, `${dir.base}/${BACKUP_DIR}`, display)
  } catch (error) {
    if (error instanceof UnsafePath) throw error
    const cause = (error as { cause?: unknown }).cause ?? error
    throw new WriteError({ path: display, operation: "open", detail: describeCause(cause), cause })
  }
  const { uid } = backups.ownerAndMode
  if (uid !== owner.uid && uid !== 0) {
    closeQuietly(backups.fd)
    throw new UnsafePath({ user, path: display, reason: `it is owned by uid ${uid}, not by ${user} or root` })
  }
  return backups
}

/** The checks backupFile makes before it writes, without making the directory or changing it. */
const checkBackupDirectory = (user: string, dir: OpenedDirectory, sshPath: string, owner: Owner): void => {
  dir.guard()
  // Missing: a real run creates it.
  if (fs.lstatSync(`${dir.base}/${BACKUP_DIR}`, { throwIfNoEntry: false }) === undefined) return
  const backups = openBackupDirectory(user, dir, nodePath.join(sshPath, BACKUP_DIR), owner)
  try {
    throwIfRefusesWrites(backups.base)
  } finally {
    closeQuietly(backups.fd)
  }
}

/**
 * `.ssh`, then authorized_keys when it is there (an immutable file cannot be renamed over). The file is asked through
 * its own descriptor, opened without following a link: by path, access(2) would follow one the user had just put in
 * its place to wherever it points. Without /proc (macOS) only `.ssh` is asked.
 */
const checkWritableDirectory = (dir: OpenedDirectory, sshPath: string): void => {
  dir.guard()
  // Thrown as it is: checkWritable names .ssh for it.
  throwIfRefusesWrites(dir.base)
  if (!dir.base.startsWith(PROC_FD)) return
  // Missing, a link or not openable now: the real run's own checks decide.
  const fd = attempt(() => openAuthorizedKeys(dir))
  if (fd === undefined) return
  try {
    if (fs.fstatSync(fd).isFile()) throwIfRefusesWrites(`${PROC_FD}/${fd}`)
  } catch (error) {
    const path = nodePath.join(sshPath, AUTHORIZED_KEYS)
    throw new WriteError({ path, operation: "replace", detail: describeCause(error), cause: error })
  } finally {
    closeQuietly(fd)
  }
}

/** `.authkeysync_<YYYYMMDD_HHMMSS>_<id>`: only files of this exact shape are ever removed as leftovers. */
const TEMP_NAME_PATTERN = /^\.authkeysync_\d{8}_\d{6}_[a-z]{6}$/

/** What a look for a killed run's leftovers found: their names, and the directories too large to be looked at whole. */
interface StaleFiles {
  readonly removed: ReadonlyArray<string>
  readonly tooLarge: ReadonlyArray<string>
}

const NO_STALE_FILES: StaleFiles = { removed: [], tooLarge: [] }

/** Files a killed run left behind in the opened `dir` (see syscalls' removeStaleFiles); `display` names it. */
const removeStaleFilesIn = (dir: OpenedDirectory, pattern: RegExp, beforeMs: number, display: string): StaleFiles => {
  dir.guard()
  const { complete, removed } = removeStaleFiles(dir.base, pattern, beforeMs)
  return { removed, tooLarge: complete ? [] : [display] }
}

/**
 * Backups a killed run was still writing, in `authorized_keys_backups/` when it is there and the user's or root's
 * (one owned by another account is refused by the backup itself). By the run's start, not this process's: a run
 * killed while the next one waited for the lock wrote them after that one started. Names relative to `.ssh`.
 */
const removeStaleBackupTemps = (
  user: string,
  uid: number,
  dir: OpenedDirectory,
  beforeMs: number,
  sshPath: string
): StaleFiles => {
  dir.guard()
  // Most users have no backups directory (or never a leftover in it): a look first, without an exception to build.
  if (fs.lstatSync(`${dir.base}/${BACKUP_DIR}`, { throwIfNoEntry: false })?.isDirectory() !== true) {
    return NO_STALE_FILES
  }
  const backups = openDirectory(user, `${dir.base}/${BACKUP_DIR}`, BACKUP_DIR)
  try {
    if (backups.ownerAndMode.uid !== uid && backups.ownerAndMode.uid !== 0) return NO_STALE_FILES
    const found = removeStaleFilesIn(backups, BACKUP_TEMP_PATTERN, beforeMs, nodePath.join(sshPath, BACKUP_DIR))
    return { ...found, removed: found.removed.map((name) => `${BACKUP_DIR}/${name}`) }
  } finally {
    closeQuietly(backups.fd)
  }
}

/** The typed errors a sequence may throw as they are (by class); anything else becomes `orElse(error)`. */
type PassThrough<E> = ReadonlyArray<new(...args: never) => E>

const typedOr =
  <E extends Error>(passThrough: PassThrough<E>, orElse: (error: unknown) => E) => (error: unknown): E => {
    for (const typed of passThrough) if (error instanceof typed) return error
    return orElse(error)
  }

/** Run one of the sequences above that waits for the disk (fsync). */
const run = <A, E extends Error>(
  sequence: () => Promise<A>,
  passThrough: PassThrough<E>,
  orElse: (error: unknown) => E
): Effect.Effect<A, E> => Effect.tryPromise({ try: sequence, catch: typedOr(passThrough, orElse) })

/** Run one of the sequences above that never waits (no fsync). */
const runSync = <A, E extends Error>(
  sequence: () => A,
  passThrough: PassThrough<E>,
  orElse: (error: unknown) => E
): Effect.Effect<A, E> => Effect.try({ try: sequence, catch: typedOr(passThrough, orElse) })

const makeSshDir = (account: Account, sshPath: string, dir: OpenedDirectory): SshDir => {
  const user = account.name
  const authorizedKeysPath = nodePath.join(sshPath, AUTHORIZED_KEYS)
  const readFailed = (error: unknown) =>
    new ReadError({ path: authorizedKeysPath, detail: describeCause(error), cause: error })
  const writeFailed = (error: unknown) =>
    new WriteError({ path: authorizedKeysPath, operation: "replace", detail: describeCause(error), cause: error })
  const backupFailed = (error: unknown) =>
    new WriteError({
      path: nodePath.join(sshPath, BACKUP_DIR),
      operation: "back up into",
      detail: describeCause(error),
      cause: error
    })
  return {
    path: sshPath,
    identity: `${dir.dev}:${dir.ino}`,
    authorizedKeysPath,
    // Every sequence runs to its end: the synchronous ones cannot be cut, and the ones that wait for fsync are
    // uninterruptible. None may outlive the scope that closes the pinned descriptor (whose number could then name
    // another directory), nor leave a temp file behind.
    readAuthorizedKeys: runSync<ExistingFile | undefined, UnsafePath | ReadError>(
      () => readExisting(user, account.uid, dir, authorizedKeysPath),
      [UnsafePath, ReadError],
      readFailed
    ).pipe(Effect.map(Option.fromNullable)),
    authorizedKeysSize: Effect.sync(() =>
      attempt(() => {
        dir.guard()
        return fs.lstatSync(`${dir.base}/${AUTHORIZED_KEYS}`).size
      }) ?? 0
    ),
    replaceAuthorizedKeys: (content, owner, tempName, verify) =>
      run<string | undefined, UnsafePath | WriteError>(
        () => replaceFile(dir, sshPath, content, owner, tempName, verify),
        [UnsafePath, WriteError],
        writeFailed
      ).pipe(
        Effect.flatMap((warning) => (warning === undefined ? Effect.void : Effect.logWarning(warning))),
        Effect.uninterruptible
      ),
    removeStaleTemps: (before) =>
      Effect.suspend(() => {
        const inSsh = attempt(() => removeStaleFilesIn(dir, TEMP_NAME_PATTERN, before.getTime(), sshPath)) ??
          NO_STALE_FILES
        const inBackups = attempt(() => removeStaleBackupTemps(user, account.uid, dir, before.getTime(), sshPath)) ??
          NO_STALE_FILES
        return Effect.as(
          Effect.forEach(
            [...inSsh.tooLarge, ...inBackups.tooLarge],
            (path) =>
              Effect.logWarning(
                `${path} holds more than ${MAX_DIRECTORY_ENTRIES} entries: only that many were looked at ` +
                  "for temp files left by an earlier run"
              ),
            { discard: true }
          ),
          [...inSsh.removed, ...inBackups.removed]
        )
      }),
    checkWritable: runSync<void, WriteError>(
      () => checkWritableDirectory(dir, sshPath),
      [WriteError],
      (error) => new WriteError({ path: sshPath, operation: "write in", detail: describeCause(error), cause: error })
    ),
    checkBackups: (owner) =>
      runSync<void, UnsafePath | WriteError>(
        () => checkBackupDirectory(user, dir, sshPath, owner),
        [UnsafePath, WriteError],
        backupFailed
      ),
    writeBackup: (content, owner, name, retention, fileOwner = owner) =>
      run<BackupResult & { readonly warnings: ReadonlyArray<string> }, UnsafePath | WriteError>(
        () => backupFile(user, dir, sshPath, content, owner, name, retention, fileOwner),
        [UnsafePath, WriteError],
        backupFailed
      ).pipe(
        Effect.tap(({ warnings }) =>
          Effect.forEach(warnings, (warning) => Effect.logWarning(warning), { discard: true })
        ),
        Effect.map(({ path, pruned }) => ({ path, pruned })),
        Effect.uninterruptible
      )
  }
}

/** The real file system. @since 0.1.0 */
export const layer: Layer.Layer<SshFiles> = Layer.succeed(
  SshFiles,
  SshFiles.of({
    open: (account, options) =>
      Effect.acquireRelease(
        runSync<OpenedDirectory, SshDirMissing | UnsafePath | ReadError>(
          () => openSsh(account, options?.primaryGroupMayWrite === true),
          [SshDirMissing, UnsafePath, ReadError],
          (error) =>
            new ReadError({ path: nodePath.join(account.home, ".ssh"), detail: describeCause(error), cause: error })
        ),
        (dir) => Effect.sync(() => closeQuietly(dir.fd))
      ).pipe(Effect.map((dir) => makeSshDir(account, nodePath.join(account.home, ".ssh"), dir))),
    unresponsiveHomes: (accounts) =>
      Effect.async<ReadonlyMap<string, string>>((resume, signal) => {
        unresponsiveHomes(accounts, { signal }).then(
          (found) => resume(Effect.succeed(found)),
          (defect: unknown) => resume(Effect.die(defect))
        )
      }),
    sshDirAbsent: (account) => Effect.sync(() => Option.fromNullable(sshDirAbsence(account))),
    identify: (account) =>
      Effect.sync(() => {
        // Reached as `open` reaches it, never by path: a path follows whatever links the user put in `.ssh`'s place,
        // or in a home inside a directory they control (`~/bobhome -> ~victim`), and took the victim's `.ssh` for
        // theirs, which got the victim refused on every run. A home or `.ssh` that `open` refuses has no identity:
        // only its own account is refused (by open).
        // Which directory it is does not depend on who may write to it: with a group-writable `.ssh` allowed here, two
        // accounts that share one are still both found (open decides later whether it may be used).
        const dir = attempt(() => openSsh(account, true))
        if (dir === undefined) return Option.none()
        closeQuietly(dir.fd)
        return Option.some(`${dir.dev}:${dir.ino}`)
      })
  })
)

// =============================================================================
// Test: an in-memory tree
// =============================================================================

/** @since 0.1.0 */
export type MemoryFile = ExistingFile

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
  /**
   * When set, creating any file fails with this errno code (e.g. "ENOSPC"). A dry run's `checkWritable` sees the codes
   * a directory answers before anything is written whoever asks (EROFS, EPERM), not ENOSPC or EIO.
   */
  failWritesWith: string | undefined = undefined
  /** What reading a temp file back gives for what was written (default: the same), e.g. a disk that changed a byte. */
  readBackAs: (written: string) => string = (written) => written
  /** Runs after each read of authorized_keys, e.g. a sleep that opens a window between read and write. */
  afterRead: Effect.Effect<void> = Effect.void
  /** Homes whose filesystem does not answer (see `unresponsiveHomes`). */
  readonly unresponsive = new Set<string>()

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
      unresponsiveHomes: (accounts) =>
        Effect.sync(() =>
          new Map(accounts.flatMap((a) =>
            memory.unresponsive.has(a.home) ? [[a.name, `its home ${a.home} did not answer`] as const] : []
          ))
        ),
      sshDirAbsent: (account) =>
        Effect.sync(() => {
          const sshPath = nodePath.join(account.home, ".ssh")
          const user = account.name
          if (memory.files.has(sshPath)) {
            return Option.some(new SshDirMissing({ user, path: sshPath, reason: "not-a-directory" }))
          }
          return memory.dirs.has(sshPath) || memory.symlinks.has(sshPath)
            ? Option.none()
            : Option.some(new SshDirMissing({ user, path: sshPath, reason: "missing" }))
        }),
      identify: (account) =>
        Effect.sync(() => {
          const sshPath = nodePath.join(account.home, ".ssh")
          return memory.dirs.has(sshPath) && !memory.symlinks.has(sshPath) ? Option.some(sshPath) : Option.none()
        }),
      open: (account) =>
        Effect.suspend((): Effect.Effect<SshDir, SshDirMissing | UnsafePath> => {
          const user = account.name
          const sshPath = nodePath.join(account.home, ".ssh")
          if (memory.symlinks.has(sshPath)) {
            return Effect.fail(new UnsafePath({ user, path: sshPath, reason: "it is a symbolic link" }))
          }
          if (memory.files.has(sshPath)) {
            return Effect.fail(new SshDirMissing({ user, path: sshPath, reason: "not-a-directory" }))
          }
          if (!memory.dirs.has(sshPath)) {
            return Effect.fail(new SshDirMissing({ user, path: sshPath, reason: "missing" }))
          }
          const authorizedKeysPath = nodePath.join(sshPath, AUTHORIZED_KEYS)
          const create = (path: string, content: string, owner: Owner) =>
            Effect.suspend(() => {
              if (memory.failWritesWith !== undefined) {
                return Effect.fail(
                  new WriteError({ path, operation: "write", detail: `${memory.failWritesWith}: simulated` })
                )
              }
              memory.writes.push(path)
              memory.files.set(path, { content, mode: 0o600, ...owner })
              return Effect.void
            })
          const sshDir: SshDir = {
            path: sshPath,
            identity: sshPath,
            authorizedKeysPath,
            authorizedKeysSize: Effect.sync(() =>
              memory.files.get(authorizedKeysPath)?.content.length ?? 0
            ),
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
            replaceAuthorizedKeys: (content, owner, tempName, verify) => {
              const temp = nodePath.join(sshPath, tempName)
              const problem = verify?.(memory.readBackAs(content))
              if (problem !== undefined) {
                return Effect.fail(new WriteError({ path: temp, operation: "verify", detail: problem }))
              }
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
            // In memory there are no modification times: every leftover of the temp name pattern is stale.
            removeStaleTemps: () =>
              Effect.sync(() => {
                const stale = memory.list(sshPath).filter((name) => TEMP_NAME_PATTERN.test(name))
                for (const name of stale) memory.files.delete(nodePath.join(sshPath, name))
                return stale
              }),
            checkWritable: Effect.suspend(() =>
              memory.failWritesWith !== undefined && REFUSED_BEFORE_WRITING.has(memory.failWritesWith)
                ? Effect.fail(
                  new WriteError({
                    path: sshPath,
                    operation: "write in",
                    detail: `${memory.failWritesWith}: simulated`
                  })
                )
                : Effect.void
            ),
            checkBackups: () =>
              Effect.suspend(() => {
                const dir = nodePath.join(sshPath, BACKUP_DIR)
                if (memory.symlinks.has(dir)) {
                  return Effect.fail(new UnsafePath({ user, path: dir, reason: "it is a symbolic link" }))
                }
                if (memory.files.has(dir)) {
                  return Effect.fail(new UnsafePath({ user, path: dir, reason: "it is not a directory" }))
                }
                return Effect.void
              }),
            writeBackup: (content, owner, name, retention, fileOwner = owner) =>
              Effect.gen(function*() {
                const dir = nodePath.join(sshPath, BACKUP_DIR)
                if (memory.symlinks.has(dir)) {
                  return yield* new UnsafePath({ user, path: dir, reason: "it is a symbolic link" })
                }
                if (!memory.dirs.has(dir)) {
                  memory.mkdir(dir, owner, 0o700)
                }
                const path = nodePath.join(dir, name)
                yield* create(path, content, fileOwner)
                const files = memory.list(dir).filter((old) => memory.files.has(nodePath.join(dir, old)))
                const pruned = backupsToDelete(files, retention, name)
                for (const old of pruned) memory.files.delete(nodePath.join(dir, old))
                return { path, pruned }
              })
          }
          return Effect.succeed(sshDir)
        })
    })
  )
