/**
 * Throwaway local accounts for end-to-end tests: `useradd -m` with unique names, a `.ssh` directory and an initial
 * authorized_keys owned by the user, and `userdel -r` cleanup (plus removal of anything left behind) after each test.
 *
 * Everything here needs root; suites use `describeAsRoot`, which skips (and says why) for anyone else.
 */
import { execFile } from "node:child_process"
import { randomInt } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, afterEach, describe } from "vitest"

const exec = promisify(execFile)

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0

export const NOT_ROOT_REASON =
  "end-to-end tests create local users (useradd) and chown files, so they must run as root; skipped because uid is " +
  String(typeof process.getuid === "function" ? process.getuid() : "unknown")

/** `describe`, skipped with a printed reason unless the tests run as root. */
export const describeAsRoot = (name: string, body: () => void): void => {
  if (!isRoot) console.warn(`[e2e] skipping "${name}": ${NOT_ROOT_REASON}`)
  describe.skipIf(!isRoot)(name, body)
}

export const USER_PREFIX = "akse2e_"

export interface TestUser {
  readonly name: string
  readonly uid: number
  readonly gid: number
  readonly home: string
  readonly sshDir: string
  readonly authorizedKeys: string
  readonly backupDir: string
}

const randomLetters = (n: number): string =>
  Array.from({ length: n }, () => String.fromCharCode(97 + randomInt(26))).join("")

/** A name that is not an account on this host (also used for "missing user" scenarios). */
export const unusedUserName = async (): Promise<string> => {
  for (;;) {
    const name = `${USER_PREFIX}${randomLetters(6)}`
    if ((await lookupUser(name)) === undefined) return name
  }
}

export const lookupUser = async (name: string): Promise<{ uid: number; gid: number; home: string } | undefined> => {
  try {
    const { stdout } = await exec("getent", ["passwd", "--", name])
    const fields = stdout.trim().split(":")
    const [, , uid, gid, , home] = fields
    if (uid === undefined || gid === undefined || home === undefined) return undefined
    return { uid: Number(uid), gid: Number(gid), home }
  } catch {
    return undefined
  }
}

/**
 * `useradd -m` a fresh account, with a group of its own or, given `group`, that one as its primary group (so that its
 * gid is not its uid). Prefer `UserPool.create`, which also cleans up.
 */
export const createUser = async (group?: string): Promise<TestUser> => {
  const name = await unusedUserName()
  await exec("useradd", ["-m", "-s", "/usr/sbin/nologin", ...(group === undefined ? [] : ["-N", "-g", group]), name])
  const entry = await lookupUser(name)
  if (entry === undefined) throw new Error(`useradd ${name} succeeded but getent does not know the user`)
  const sshDir = path.join(entry.home, ".ssh")
  return {
    name,
    uid: entry.uid,
    gid: entry.gid,
    home: entry.home,
    sshDir,
    authorizedKeys: path.join(sshDir, "authorized_keys"),
    backupDir: path.join(sshDir, "authorized_keys_backups")
  }
}

/** `userdel -r`, then remove whatever is left (home directory, group). Never throws. */
export const removeUser = async (name: string, home?: string): Promise<void> => {
  if (!name.startsWith(USER_PREFIX)) throw new Error(`refusing to delete ${name}: not a test user`)
  await exec("userdel", ["-r", name]).catch(() => undefined)
  if ((await lookupUser(name)) !== undefined) await exec("userdel", ["-f", "-r", name]).catch(() => undefined)
  await exec("groupdel", [name]).catch(() => undefined)
  const dir = home ?? path.join("/home", name)
  if (path.basename(dir) === name) await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined)
}

/** Create `~/.ssh` owned by the user (mode 0700 unless told otherwise). */
export const createSshDir = async (user: TestUser, mode = 0o700): Promise<void> => {
  await fs.mkdir(user.sshDir)
  await fs.chown(user.sshDir, user.uid, user.gid)
  await fs.chmod(user.sshDir, mode)
}

/** Write `~/.ssh/authorized_keys` with the given bytes, mode and owner (the user by default). */
export const writeAuthorizedKeys = async (
  user: TestUser,
  content: string,
  options: { readonly mode?: number; readonly uid?: number; readonly gid?: number } = {}
): Promise<void> => {
  await fs.writeFile(user.authorizedKeys, content)
  await fs.chown(user.authorizedKeys, options.uid ?? user.uid, options.gid ?? user.gid)
  await fs.chmod(user.authorizedKeys, options.mode ?? 0o600)
}

/** Users and temp directories created by one test file, removed after each test even when it fails. */
export class UserPool {
  private readonly users: Array<TestUser> = []
  private readonly tempDirs: Array<string> = []

  /**
   * A new account; `ssh: true` also creates `.ssh` (0700), `authorizedKeys` an initial file in it; `group` makes an
   * existing group its primary one instead of a group of its own.
   */
  async create(
    options: { readonly ssh?: boolean; readonly authorizedKeys?: string; readonly group?: string } = {}
  ): Promise<TestUser> {
    const user = await createUser(options.group)
    this.users.push(user)
    if (options.ssh === true || options.authorizedKeys !== undefined) await createSshDir(user)
    if (options.authorizedKeys !== undefined) await writeAuthorizedKeys(user, options.authorizedKeys)
    return user
  }

  /** A root-owned temp directory outside every home (for canaries), removed on cleanup. */
  async tempDir(): Promise<string> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-"))
    this.tempDirs.push(dir)
    return dir
  }

  async cleanup(): Promise<void> {
    for (const user of this.users.splice(0)) await removeUser(user.name, user.home)
    for (const dir of this.tempDirs.splice(0)) await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined)
  }
}

/** A pool whose users and temp directories are removed after every test (and after the file, as a backstop). */
export const useUsers = (): UserPool => {
  const pool = new UserPool()
  afterEach(() => pool.cleanup())
  afterAll(() => pool.cleanup())
  return pool
}
