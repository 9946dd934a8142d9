/**
 * Black-box hardening of the file-system side, as root in directories users control: planted links and special files
 * pointing at root-owned canaries, sshd StrictModes ownership and mode rules, dangerous homes (`/`, shared), stale
 * temp files, a user swapping `~/.ssh` during runs, SIGTERM and SIGKILL at random points, and a full disk.
 *
 * Every refusal is checked for: exit code, the one ERROR line naming the path and the reason, the user's files left
 * as they were, the canary untouched, and another user of the same run still synced.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterEach, beforeAll, expect, it } from "vitest"
import { type Canary, makeCanary } from "../support/canary.js"
import { assertBuilt, config, logsWith, type RunResult, runWithConfig, userWith } from "../support/cli.js"
import {
  backupsOf,
  exists,
  expectedBody,
  expectHeader,
  expectSyncedFile,
  snapshotTree,
  splitGenerated,
  statOf,
  tempFilesIn
} from "../support/files.js"
import { useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { describeAsRoot, lookupUser, type TestUser, unusedUserName, USER_PREFIX, useUsers } from "../support/users.js"

const exec = promisify(execFile)

const UNTOUCHED = "user not synced, authorized_keys left untouched: "

describeAsRoot("hardening: file system (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  /** Canaries made by a test, removed after it whatever happens. */
  const canaries: Array<Canary> = []
  const canary = async (): Promise<Canary> => {
    const c = await makeCanary()
    canaries.push(c)
    return c
  }
  afterEach(async () => {
    for (const c of canaries.splice(0)) await c.remove()
  })

  /** Another user in the same run, with its own source: must be synced whatever happens to the user under test. */
  const bystander = async () => {
    const user = await users.create({ ssh: true })
    const k = key(`bystander-${user.name}`)
    const route = `/bystander/${user.name}`
    server.keys(route, [k])
    return {
      user,
      config: userWith(user.name, server.url(route)),
      expectSynced: async (run: RunResult) => {
        expect(logsWith(run, "updated authorized_keys", user.name), run.stdout).toHaveLength(1)
        await expectSyncedFile(user, [{ source: server.url(route), keys: [k] }], run)
      }
    }
  }

  /** `user` failed with exactly `message` (path and reason), logged once as an ERROR, and nothing was written. */
  const expectUserRefused = (run: RunResult, user: string, message: string) => {
    const errors = logsWith(run, /^user not synced, authorized_keys left untouched: /, user)
    expect(errors, run.stdout).toHaveLength(1)
    expect(errors[0]?.level).toBe("ERROR")
    expect(errors[0]?.msg).toBe(UNTOUCHED + message)
    expect(logsWith(run, "updated authorized_keys", user)).toHaveLength(0)
    expect(logsWith(run, "created backup", user)).toHaveLength(0)
  }

  const expectSummary = (run: RunResult, counts: { updated: number; failed: number; skipped?: number }) => {
    expect(run.code, run.stdout + run.stderr).toBe(counts.failed > 0 ? 1 : 0)
    expect(logsWith(run, "sync finished")[0]).toMatchObject({
      updated: String(counts.updated),
      failed: String(counts.failed),
      skipped: String(counts.skipped ?? 0),
      exit_code: String(counts.failed > 0 ? 1 : 0)
    })
  }

  /** A user with `.ssh` and an authorized_keys of one local key; returns the file's bytes. */
  const userWithFile = async (id: string) => {
    const content = lines(key(`${id}-old`), "# a comment the tool must not rewrite")
    const user = await users.create({ authorizedKeys: content })
    return { user, content }
  }

  const expectFileUnchanged = async (user: TestUser, content: string) => {
    expect(await fs.readFile(user.authorizedKeys, "utf8")).toBe(content)
    expect(await statOf(user.authorizedKeys)).toEqual({ mode: 0o600, uid: user.uid, gid: user.gid })
    expect(await tempFilesIn(user.sshDir)).toEqual([])
  }

  // ===========================================================================
  // Planted links and special files
  // ===========================================================================

  it("1. authorized_keys is a symlink to a root file: refused, the target untouched, others synced", async () => {
    const c = await canary()
    const bob = await users.create({ ssh: true })
    await fs.symlink(c.file, bob.authorizedKeys)
    await fs.lchown(bob.authorizedKeys, bob.uid, bob.gid)
    const sshBefore = await snapshotTree(bob.sshDir)
    const other = await bystander()
    server.keys("/attacker", [key("attacker")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/attacker")), other.config]))

    await c.expectUntouched()
    expect(await snapshotTree(bob.sshDir)).toEqual(sshBefore)
    expectUserRefused(run, bob.name, `refusing to use ${bob.authorizedKeys}: it is a symbolic link`)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("2. ~/.ssh is a symlink to a root directory: refused, nothing written there, others synced", async () => {
    const c = await canary()
    const bob = await users.create()
    await fs.symlink(c.dir, bob.sshDir)
    await fs.lchown(bob.sshDir, bob.uid, bob.gid)
    const other = await bystander()
    server.keys("/attacker", [key("attacker")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/attacker")), other.config]))

    await c.expectUntouched()
    expect(await fs.readlink(bob.sshDir)).toBe(c.dir)
    expectUserRefused(run, bob.name, `refusing to use ${bob.sshDir}: it is a symbolic link`)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("2b. ~/.ssh is a symlink to another configured user's .ssh: only the user with the link is refused", async () => {
    // It used to make the two accounts look like one (same .ssh) and get the other one refused on every run.
    const victim = await bystander()
    const bob = await users.create()
    await fs.symlink(victim.user.sshDir, bob.sshDir)
    await fs.lchown(bob.sshDir, bob.uid, bob.gid)
    server.keys("/attacker", [key("attacker")])

    for (const concurrency of ["1", "8"]) {
      await fs.rm(victim.user.authorizedKeys, { force: true })
      const run = await runWithConfig(config([userWith(bob.name, server.url("/attacker")), victim.config]), [
        "--concurrency",
        concurrency
      ])
      expectUserRefused(run, bob.name, `refusing to use ${bob.sshDir}: it is a symbolic link`)
      expectSummary(run, { updated: 1, failed: 1 })
      await victim.expectSynced(run)
      expect(await fs.readFile(victim.user.authorizedKeys, "utf8")).not.toContain(key("attacker"))
    }
  })

  it("3. authorized_keys_backups is a symlink to a root directory: the backup is refused, the file not replaced", async () => {
    const c = await canary()
    const { user: bob, content } = await userWithFile("bklink")
    await fs.symlink(c.dir, bob.backupDir)
    await fs.lchown(bob.backupDir, bob.uid, bob.gid)
    const other = await bystander()
    // A new key: the file must change, so a backup is attempted.
    server.keys("/bklink", [key("bklink-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/bklink")), other.config]))

    await c.expectUntouched()
    await expectFileUnchanged(bob, content)
    expect(await fs.readlink(bob.backupDir)).toBe(c.dir)
    expectUserRefused(run, bob.name, `refusing to use ${bob.backupDir}: it is a symbolic link`)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("4. authorized_keys is a hard link to a root file: refused, the other link untouched", async () => {
    const c = await canary()
    const bob = await users.create({ ssh: true })
    // Same file system: the homes and the canary (tmpdir) must share a device for link() to work.
    expect((await fs.stat(os.tmpdir())).dev).toBe((await fs.stat(bob.sshDir)).dev)
    await fs.link(c.file, bob.authorizedKeys)
    const canaryIno = (await fs.stat(c.file)).ino
    const other = await bystander()
    server.keys("/attacker", [key("attacker")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/attacker")), other.config]))

    // Still the same inode, still two links; nothing appeared next to it.
    const st = await fs.lstat(bob.authorizedKeys)
    expect(st.ino).toBe(canaryIno)
    expect(st.nlink).toBe(2)
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    expect(await exists(bob.backupDir)).toBe(false)
    // Drop our link: the canary is then exactly as it was made (bytes, mode, owner, nlink 1, listing).
    await fs.unlink(bob.authorizedKeys)
    await c.expectUntouched()
    expectUserRefused(run, bob.name, `refusing to use ${bob.authorizedKeys}: it has 2 hard links`)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("5. authorized_keys is a FIFO: refused at once (no hang), others synced", async () => {
    const bob = await users.create({ ssh: true })
    await exec("mkfifo", ["-m", "0600", bob.authorizedKeys])
    await fs.lchown(bob.authorizedKeys, bob.uid, bob.gid)
    const other = await bystander()
    server.keys("/fifo", [key("fifo")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/fifo")), other.config]))

    expect(run.durationMs).toBeLessThan(10_000)
    expect((await fs.lstat(bob.authorizedKeys)).isFIFO()).toBe(true)
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    expectUserRefused(run, bob.name, `refusing to use ${bob.authorizedKeys}: it is a FIFO`)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("5b. authorized_keys of 16 MiB of two-field lines: refused at once, another user's fetch in flight meanwhile still synced", async () => {
    const bob = await users.create({ ssh: true })
    // Millions of "keys" within the 16 MiB cap: merging them held the one thread long enough for every other user's
    // fetch to time out, so one user's file failed the whole run.
    const junk: Array<string> = []
    for (let n = 0, size = 0;; n++) {
      const line = `a ${n.toString(36)}\n`
      if (size + line.length > 16 * 1024 * 1024) break
      junk.push(line)
      size += line.length
    }
    await fs.writeFile(bob.authorizedKeys, junk.join(""), { mode: 0o600 })
    await fs.chown(bob.authorizedKeys, bob.uid, bob.gid)
    const before = await snapshotTree(bob.sshDir)
    const other = await bystander()
    // Still on its way while bob's file is handled.
    server.route(`/bystander/${other.user.name}`, { body: `${key(`bystander-${other.user.name}`)}\n`, delayMs: 300 })
    server.keys("/junk", [key("junk")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/junk")), other.config]))

    expectUserRefused(
      run,
      bob.name,
      `refusing to use ${bob.authorizedKeys}: it holds more than 400000 key lines ` +
        `(policy.max_keys_per_source for each source and for the user's own keys, plus the pinned keys)`
    )
    expect(await snapshotTree(bob.sshDir)).toEqual(before)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("6. authorized_keys is a directory: refused, the directory and its content untouched, others synced", async () => {
    const bob = await users.create({ ssh: true })
    await fs.mkdir(bob.authorizedKeys, { mode: 0o700 })
    await fs.writeFile(path.join(bob.authorizedKeys, "inside"), "keep me\n")
    const before = await snapshotTree(bob.sshDir)
    const other = await bystander()
    server.keys("/dir", [key("dir")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/dir")), other.config]))

    expect(await snapshotTree(bob.sshDir)).toEqual(before)
    expectUserRefused(run, bob.name, `refusing to use ${bob.authorizedKeys}: it is a directory`)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  // ===========================================================================
  // StrictModes: owners and modes of ~, ~/.ssh and authorized_keys
  // ===========================================================================

  it("7. a group-writable home (0775) is refused when its group has another member, others synced", async () => {
    const { user: bob, content } = await userWithFile("home775")
    await fs.chmod(bob.home, 0o775)
    const other = await bystander()
    // bob's group (named bob, as useradd makes it) gets another member: that account could replace bob's .ssh.
    await exec("usermod", ["-a", "-G", bob.name, other.user.name])
    server.keys("/home775", [key("home775-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/home775")), other.config]))

    await expectFileUnchanged(bob, content)
    expect(await exists(bob.backupDir)).toBe(false)
    expectUserRefused(run, bob.name, `refusing to use ${bob.home}: it is writable by group or others (mode 0775)`)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("7b. on Debian, a group-writable home (0775) and ~/.ssh (0770) whose group is the user's own alone are used, as its sshd accepts them", async () => {
    const bob = await users.create({ ssh: true })
    const { stdout } = await exec("getent", ["group", String(bob.gid)])
    expect(stdout.split(":")[0], "useradd made a group of the user's own (USERGROUPS_ENAB)").toBe(bob.name)
    await fs.chmod(bob.home, 0o775)
    await fs.chmod(bob.sshDir, 0o770)
    server.keys("/own-group", [key("own-group")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/own-group"))]))

    if (!existsSync("/etc/debian_version")) {
      // Stock OpenSSH refuses such a directory, and so does the tool.
      expectUserRefused(run, bob.name, `refusing to use ${bob.home}: it is writable by group or others (mode 0775)`)
      return
    }
    expectSummary(run, { updated: 1, failed: 0 })
    await expectSyncedFile(bob, [{ source: server.url("/own-group"), keys: [key("own-group")] }], run)
    expect(await statOf(bob.authorizedKeys)).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })

    // The same ~/.ssh in another group that may write to it (users, gid 100) is refused; the file stays as written.
    const written = await fs.readFile(bob.authorizedKeys, "utf8")
    await fs.chown(bob.sshDir, bob.uid, 100)
    server.keys("/own-group", [key("own-group-2")])
    const refused = await runWithConfig(config([userWith(bob.name, server.url("/own-group"))]))
    expectUserRefused(refused, bob.name, `refusing to use ${bob.sshDir}: it is writable by group or others (mode 0770)`)
    expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(written)
  })

  it("7c. a group-writable ~/.ssh (0770) whose group is another account's primary group too is refused (found in review)", async () => {
    const { user: bob, content } = await userWithFile("ssh770-shared-gid")
    await fs.chmod(bob.sshDir, 0o770)
    const other = await unusedUserName()
    await exec("useradd", ["-M", "-g", String(bob.gid), "-s", "/usr/sbin/nologin", other])
    try {
      server.keys("/shared-gid", [key("shared-gid")])
      const run = await runWithConfig(config([userWith(bob.name, server.url("/shared-gid"))]))
      await expectFileUnchanged(bob, content)
      expectUserRefused(run, bob.name, `refusing to use ${bob.sshDir}: it is writable by group or others (mode 0770)`)
    } finally {
      await exec("userdel", [other]).catch(() => undefined)
    }
  })

  it("8. a world-writable ~/.ssh (0777) is refused, others synced", async () => {
    const { user: bob, content } = await userWithFile("ssh777")
    await fs.chmod(bob.sshDir, 0o777)
    const other = await bystander()
    server.keys("/ssh777", [key("ssh777-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/ssh777")), other.config]))

    await expectFileUnchanged(bob, content)
    expect(await exists(bob.backupDir)).toBe(false)
    expectUserRefused(run, bob.name, `refusing to use ${bob.sshDir}: it is writable by group or others (mode 0777)`)
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("9. ~/.ssh owned by another (non-root) account is refused, others synced", async () => {
    const mallory = await users.create()
    const { user: bob, content } = await userWithFile("sshother")
    await fs.chown(bob.sshDir, mallory.uid, mallory.gid)
    const other = await bystander()
    server.keys("/sshother", [key("sshother-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/sshother")), other.config]))

    await expectFileUnchanged(bob, content)
    expect(await statOf(bob.sshDir)).toEqual({ mode: 0o700, uid: mallory.uid, gid: mallory.gid })
    expect(await exists(bob.backupDir)).toBe(false)
    expectUserRefused(
      run,
      bob.name,
      `refusing to use ${bob.sshDir}: it is owned by uid ${mallory.uid}, not by ${bob.name} or root`
    )
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("10. authorized_keys owned by another (non-root) account is refused, the file untouched, others synced", async () => {
    const mallory = await users.create()
    const { user: bob, content } = await userWithFile("akother")
    await fs.chown(bob.authorizedKeys, mallory.uid, mallory.gid)
    const other = await bystander()
    server.keys("/akother", [key("akother-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/akother")), other.config]))

    expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(content)
    expect(await statOf(bob.authorizedKeys)).toEqual({ mode: 0o600, uid: mallory.uid, gid: mallory.gid })
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    expect(await exists(bob.backupDir)).toBe(false)
    expectUserRefused(
      run,
      bob.name,
      `refusing to use ${bob.authorizedKeys}: it is owned by uid ${mallory.uid}, not by ${bob.name} or root`
    )
    expectSummary(run, { updated: 1, failed: 1 })
    await other.expectSynced(run)
  })

  it("11. ~ and ~/.ssh owned by root (0755) are accepted, as sshd accepts them", async () => {
    const old = key("rootowned-old")
    const bob = await users.create({ authorizedKeys: lines(old) })
    await fs.chown(bob.home, 0, 0)
    await fs.chmod(bob.home, 0o755)
    await fs.chown(bob.sshDir, 0, 0)
    await fs.chmod(bob.sshDir, 0o755)
    const k = key("rootowned-new")
    server.keys("/rootowned", [k])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/rootowned"))]))

    expectSummary(run, { updated: 1, failed: 0 })
    await expectSyncedFile(bob, [{ source: server.url("/rootowned"), keys: [k] }, { local: [old] }], run)
    // The directories are left as they were; the backup directory is the user's.
    expect(await statOf(bob.home)).toEqual({ mode: 0o755, uid: 0, gid: 0 })
    expect(await statOf(bob.sshDir)).toEqual({ mode: 0o755, uid: 0, gid: 0 })
    expect(await statOf(bob.backupDir)).toEqual({ mode: 0o700, uid: bob.uid, gid: bob.gid })
    expect(await backupsOf(bob)).toHaveLength(1)
  })

  // ===========================================================================
  // Homes that cannot be handled safely
  // ===========================================================================

  it("12. an account whose home is / is refused (skipped without a /.ssh, as in Go); nothing is created under /.ssh; others synced", async () => {
    const name = await unusedUserName()
    const rootSshBefore = await exists("/.ssh")
    const rootSnapshot = rootSshBefore ? await snapshotTree("/.ssh") : undefined
    const rootListing = (await fs.readdir("/")).sort()
    const other = await bystander()
    server.keys("/slash", [key("slash")])
    await exec("useradd", ["-M", "-d", "/", "-s", "/usr/sbin/nologin", name])
    try {
      expect((await lookupUser(name))?.home).toBe("/")

      const run = await runWithConfig(config([userWith(name, server.url("/slash")), other.config]))

      expect(await exists("/.ssh")).toBe(rootSshBefore)
      if (rootSnapshot !== undefined) expect(await snapshotTree("/.ssh")).toEqual(rootSnapshot)
      expect((await fs.readdir("/")).sort()).toEqual(rootListing)
      if (rootSshBefore) {
        expectUserRefused(run, name, `refusing account ${JSON.stringify(name)}: its home directory is /`)
        expectSummary(run, { updated: 1, failed: 1 })
      } else {
        // No /.ssh (this test never makes one on the host): nothing to manage there, so a skip, as in the Go original.
        expect(logsWith(run, /^skipping user: /, name)[0]?.msg).toBe(
          "skipping user: /.ssh does not exist, and the home would be refused with one: its home directory is /"
        )
        expectSummary(run, { updated: 1, failed: 0, skipped: 1 })
      }
      // Refused or skipped before anything is fetched for it.
      expect(server.requestsTo("/slash")).toHaveLength(0)
      await other.expectSynced(run)
    } finally {
      // Never `userdel -r` here: its home is /.
      await exec("userdel", [name]).catch(() => undefined)
      await exec("groupdel", [name]).catch(() => undefined)
    }
  })

  it("13. two configured accounts sharing one home: both refused, the shared file untouched, a third synced", async () => {
    const c = await canary()
    const { user: alice, content } = await userWithFile("shared")
    const bob = await users.create()
    await exec("usermod", ["-d", alice.home, bob.name])
    try {
      const before = await snapshotTree(alice.sshDir)
      const other = await bystander()
      server.keys("/shared-a", [key("shared-a")]).keys("/shared-b", [key("shared-b")])

      const run = await runWithConfig(config([
        userWith(alice.name, server.url("/shared-a")),
        userWith(bob.name, server.url("/shared-b")),
        other.config
      ]))

      await c.expectUntouched()
      expect(await snapshotTree(alice.sshDir)).toEqual(before)
      expect(await fs.readFile(alice.authorizedKeys, "utf8")).toBe(content)
      expectUserRefused(
        run,
        alice.name,
        `refusing account ${JSON.stringify(alice.name)}: its home ${alice.home} is also the home of ${bob.name}`
      )
      expectUserRefused(
        run,
        bob.name,
        `refusing account ${JSON.stringify(bob.name)}: its home ${alice.home} is also the home of ${alice.name}`
      )
      expectSummary(run, { updated: 1, failed: 2 })
      await other.expectSynced(run)
    } finally {
      // Give bob its own home back, so that `userdel -r` in the cleanup removes bob's home, not alice's.
      await exec("usermod", ["-d", bob.home, bob.name]).catch(() => undefined)
    }
  })

  // ===========================================================================
  // Leftovers of an earlier run
  // ===========================================================================

  it("14b. a .ssh filled with thousands of leftover-named links is looked at in part, in one warning and two log lines", async () => {
    // Found in review: a user's ~/.ssh of two million hard links (no inodes needed) held the run's one thread for
    // seconds on every run, long enough for other users' fetches to time out, and logged a line per removed name.
    const { user: bob } = await userWithFile("many")
    const target = path.join(bob.sshDir, ".authkeysync_20200101_000000_aaaaaa")
    await fs.writeFile(target, "leftover\n", { mode: 0o600 })
    await fs.chown(target, bob.uid, bob.gid)
    const old = new Date("2020-01-01T00:00:00Z")
    await fs.utimes(target, old, old)
    const letters = (i: number) =>
      Array.from({ length: 6 }, (_, d) => String.fromCharCode(97 + (Math.floor(i / 26 ** d) % 26))).join("")
    const planted = 5000
    for (let i = 1; i < planted; i++) {
      await fs.link(target, path.join(bob.sshDir, `.authkeysync_20200101_000000_${letters(i)}`))
    }
    const k = key("many-new")
    server.keys("/many", [k])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/many"))], { preserve_local_keys: false }))

    expectSummary(run, { updated: 1, failed: 0 })
    expect(
      logsWith(
        run,
        `${bob.sshDir} holds more than 4096 entries: only that many were looked at for temp files left by an earlier run`,
        bob.name
      )
    ).toHaveLength(1)
    const named = logsWith(run, "removed a temp file left by an earlier run", bob.name)
    expect(named).toHaveLength(10)
    const more = logsWith(run, "removed more temp files left by earlier runs", bob.name)
    expect(more).toHaveLength(1)
    const removed = 10 + Number(more[0]?.["count"])
    // At most as many as were looked at; those left are still there for a later run.
    expect(removed).toBeGreaterThan(4000)
    expect(removed).toBeLessThanOrEqual(4096)
    const left = (await fs.readdir(bob.sshDir)).filter((n) => n.startsWith(".authkeysync_"))
    expect(left).toHaveLength(planted - removed)
    expect(splitGenerated(await fs.readFile(bob.authorizedKeys, "utf8")).body).toBe(
      expectedBody([{ source: server.url("/many"), keys: [k] }])
    )
  })

  it("14. stale temp files: our own old regular file is removed; a symlink with our name and other names are not", async () => {
    const c = await canary()
    const { user: bob, content } = await userWithFile("stale")
    const old = new Date("2020-01-01T00:00:00Z")
    const stale = path.join(bob.sshDir, ".authkeysync_20200101_000000_abcdef")
    const staleLink = path.join(bob.sshDir, ".authkeysync_20200101_000000_ghijkl")
    const notOurs = path.join(bob.sshDir, ".authkeysync_notours")
    await fs.writeFile(stale, "half-written leftover\n", { mode: 0o600 })
    await fs.chown(stale, bob.uid, bob.gid)
    await fs.utimes(stale, old, old)
    await fs.writeFile(notOurs, "not ours\n", { mode: 0o600 })
    await fs.chown(notOurs, bob.uid, bob.gid)
    await fs.utimes(notOurs, old, old)
    await fs.symlink(c.file, staleLink)
    await fs.lchown(staleLink, bob.uid, bob.gid)
    await fs.lutimes(staleLink, old, old)
    const k = key("stale-new")
    server.keys("/stale", [k])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/stale"))], { preserve_local_keys: false }))

    expectSummary(run, { updated: 1, failed: 0 })
    await c.expectUntouched()
    const removed = logsWith(run, "removed a temp file left by an earlier run", bob.name)
    expect(removed).toHaveLength(1)
    expect(removed[0]?.["path"]).toBe(stale)
    expect(await exists(stale)).toBe(false)
    expect(await fs.readlink(staleLink)).toBe(c.file)
    expect(await fs.readFile(notOurs, "utf8")).toBe("not ours\n")
    expect((await fs.readdir(bob.sshDir)).sort()).toEqual([
      ".authkeysync_20200101_000000_ghijkl",
      ".authkeysync_notours",
      "authorized_keys",
      "authorized_keys_backups"
    ])
    const written = await fs.readFile(bob.authorizedKeys, "utf8")
    expectHeader(written, run)
    expect(splitGenerated(written).body).toBe(expectedBody([{ source: server.url("/stale"), keys: [k] }]))
    const [backup] = await backupsOf(bob)
    expect(await fs.readFile(path.join(bob.backupDir, backup ?? ""), "utf8")).toBe(content)
  })

  // ===========================================================================
  // A user swapping ~/.ssh while runs are in flight
  // ===========================================================================

  it("15. ~/.ssh swapped between a directory and a symlink to a root directory in a tight loop: nothing escapes", async () => {
    const c = await canary()
    const bob = await users.create({ authorizedKeys: lines(key("swap-old")) })
    const other = await bystander()
    const homeBefore = (await fs.readdir(bob.home)).filter((n) => !n.startsWith(".ssh")).sort()
    // Other test runs on this host add and remove their own akse2e_ accounts in /home at the same time.
    const otherHomes = async () =>
      (await fs.readdir(path.dirname(bob.home))).filter((n) => !n.startsWith(USER_PREFIX)).sort()
    const homesBefore = await otherHomes()
    const control = await users.tempDir()
    await fs.chmod(control, 0o755)
    const stopFile = path.join(control, "stop")

    // Served keys change on every request; remember every set served, to recognise a complete file.
    const served: Array<string> = []
    server.route("/swap", () => {
      const k = key(`swap-${served.length}`)
      served.push(k)
      return { body: lines(k), delayMs: 30 }
    })

    // The user itself (setpriv to its uid) renames .ssh away, plants a symlink, removes it, puts .ssh back: every
    // other cycle as fast as it can, the others holding each state for up to 20 ms, so that runs also open the real
    // directory and then see it swapped for the link during the (30 ms) fetch.
    const racerCode = `
      const fs = require("fs")
      const [target, stop] = process.argv.slice(1)
      const cell = new Int32Array(new SharedArrayBuffer(4))
      const nap = (hold) => hold && Atomics.wait(cell, 0, 0, Math.random() * 20)
      let swaps = 0
      process.stdout.write("ready\\n")
      for (let i = 0; ; i++) {
        if (i % 16 === 0 && fs.existsSync(stop)) break
        const hold = i % 2 === 0
        try { fs.renameSync(".ssh", ".ssh_real") } catch {}
        try { fs.symlinkSync(target, ".ssh") } catch {}
        nap(hold)
        try { fs.unlinkSync(".ssh") } catch {}
        try { fs.renameSync(".ssh_real", ".ssh"); swaps++ } catch {}
        nap(hold)
      }
      process.stdout.write("swaps=" + swaps + "\\n")
    `
    const racer = spawn(
      "setpriv",
      [
        `--reuid=${bob.uid}`,
        `--regid=${bob.gid}`,
        "--clear-groups",
        process.execPath,
        "-e",
        racerCode,
        c.dir,
        stopFile
      ],
      { cwd: bob.home, stdio: ["ignore", "pipe", "pipe"] }
    )
    let racerOut = ""
    racer.stdout.on("data", (d: Buffer) => void (racerOut += d.toString()))
    racer.stderr.on("data", (d: Buffer) => void (racerOut += d.toString()))
    const racerExit = new Promise<number | null>((resolve) => racer.on("close", (code) => resolve(code)))
    const outcomes: Record<string, number> = {}
    try {
      await waitFor(() => racerOut.includes("ready"), 5_000, () => `racer did not start: ${racerOut}`)
      const cfg = config([userWith(bob.name, server.url("/swap")), other.config], { preserve_local_keys: false })
      for (let i = 0; i < 20; i++) {
        const run = await runWithConfig(cfg)
        const output = run.stdout + run.stderr
        expect([0, 1], output).toContain(run.code)
        expect(output).not.toContain("internal error")
        // The bystander is written by the first run and unchanged afterwards, never failed.
        expect(
          logsWith(run, i === 0 ? "updated authorized_keys" : "authorized_keys unchanged", other.user.name),
          output
        )
          .toHaveLength(1)
        const bobLine = run.logs.find((l) => l["user"] === bob.name && (l.level === "ERROR" || l.level === "WARN"))
        const outcome = logsWith(run, "updated authorized_keys", bob.name).length > 0
          ? "updated"
          : bobLine === undefined
          ? "other"
          : bobLine.msg.replace(/\/home\/\S+/g, "PATH")
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
        await c.expectUntouched()
      }
    } finally {
      await fs.writeFile(stopFile, "")
      const stopped = await Promise.race([racerExit, sleep(5_000).then(() => "timeout" as const)])
      if (stopped === "timeout") racer.kill("SIGKILL")
    }
    console.log(`[swap race] racer: ${racerOut.trim().split("\n").pop()}; runs for ${bob.name}:`, outcomes)
    expect(racerOut).toMatch(/swaps=[1-9]\d*/)

    // Put the real directory back where it belongs (the racer stops at any point of its cycle).
    if ((await fs.lstat(bob.sshDir).catch(() => undefined))?.isSymbolicLink()) await fs.unlink(bob.sshDir)
    if (await exists(path.join(bob.home, ".ssh_real"))) await fs.rename(path.join(bob.home, ".ssh_real"), bob.sshDir)

    await c.expectUntouched()
    expect((await fs.readdir(bob.home)).filter((n) => !n.startsWith(".ssh")).sort()).toEqual(homeBefore)
    expect(await otherHomes()).toEqual(homesBefore)
    expect((await fs.lstat(bob.sshDir)).isDirectory()).toBe(true)
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    // Whatever was written landed in the real directory, complete: the original, or one full generated file.
    const now = await fs.readFile(bob.authorizedKeys, "utf8")
    if (now !== lines(key("swap-old"))) {
      expectHeader(now)
      const body = splitGenerated(now).body
      expect(served.map((k) => expectedBody([{ source: server.url("/swap"), keys: [k] }]))).toContain(body)
    }
    expect(await statOf(bob.authorizedKeys)).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })
  })

  // ===========================================================================
  // Signals
  // ===========================================================================

  /** A user whose every run changes the file: each request serves the next of `sets` (many keys, so writes take time). */
  const churningUser = async (id: string, rounds: number, keysPerSet: number) => {
    const bob = await users.create({ ssh: true })
    const sets = Array.from(
      { length: rounds + 1 },
      (_, i) => Array.from({ length: keysPerSet }, (_, j) => key(`${id}-${i}-${j}`))
    )
    const route = `/${id}`
    const state = { current: 0, onAnswer: undefined as (() => void) | undefined }
    server.route(route, () => {
      state.onAnswer?.()
      return { body: lines(...(sets[state.current] ?? [])) }
    })
    const bodyOf = (i: number) => expectedBody([{ source: server.url(route), keys: sets[i] ?? [] }])
    const cfg = config([userWith(bob.name, server.url(route))], {
      preserve_local_keys: false,
      backup_retention_count: 1000
    })
    return { bob, sets, state, bodyOf, cfg }
  }

  /** The file is exactly `old`, or a complete generated file with body `newBody`. Returns which. */
  const oldOrNew = (content: string, old: string, newBody: string): "old" | "new" => {
    if (content === old) return "old"
    expectHeader(content)
    expect(splitGenerated(content).body, "authorized_keys is neither the old file nor the complete new one").toBe(
      newBody
    )
    return "new"
  }

  it("16. SIGTERM in the parse/backup/write window: the file is the old or the complete new one, no temp file is left", async () => {
    // failures.test.ts covers SIGTERM while a source is still pending; this is the window after it answered.
    const rounds = 5
    const { bob, state, bodyOf, cfg } = await churningUser("term", rounds, 2_000)
    const lockDir = await users.tempDir()
    expect((await runWithConfig(cfg)).code).toBe(0)
    let previous = await fs.readFile(bob.authorizedKeys, "utf8")
    const versions = new Set([previous])
    const seen: Record<string, number> = {}
    for (let i = 1; i <= rounds; i++) {
      state.current = i
      let child: ChildProcess | undefined
      // The signal lands right after the source answered: while the run parses, backs up, writes and renames.
      state.onAnswer = () => void setTimeout(() => child?.kill("SIGTERM"), Math.random() * 60)
      const run = await runWithConfig(cfg, ["--lock-file", path.join(lockDir, `lock-${i}`)], {
        onSpawn: (c) => void (child = c)
      })
      state.onAnswer = undefined
      const content = await fs.readFile(bob.authorizedKeys, "utf8")
      const which = oldOrNew(content, previous, bodyOf(i))
      // Exit 0 only for a run that finished before the signal, and then the file is the new one.
      if (run.code === 0) expect(which).toBe("new")
      expect(await tempFilesIn(bob.sshDir), run.stdout).toEqual([])
      expect(await statOf(bob.authorizedKeys)).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })
      const outcome = `${which}/exit ${run.code}${run.signal === null ? "" : ` ${run.signal}`}`
      seen[outcome] = (seen[outcome] ?? 0) + 1
      versions.add(content)
      previous = content
    }
    console.log("[SIGTERM loop] outcomes:", seen)
    // Every backup is a whole copy of a version the file had.
    for (const name of await backupsOf(bob)) {
      expect(versions).toContain(await fs.readFile(path.join(bob.backupDir, name), "utf8"))
    }
  })

  // An interruption that arrives after the source answered, before anything is written, stops the user there (it
  // used to be lost while account lookups went through a batched Effect.request).
  it("16b. SIGTERM after the source answered but before anything is written: the old file stays", async () => {
    const rounds = 3
    const { bob, state, cfg } = await churningUser("termbefore", rounds, 2_000)
    const lockDir = await users.tempDir()
    expect((await runWithConfig(cfg)).code).toBe(0)
    const backupsBefore = await backupsOf(bob)
    for (let i = 1; i <= rounds; i++) {
      const before = await fs.readFile(bob.authorizedKeys, "utf8")
      state.current = i
      let child: ChildProcess | undefined
      // Parsing, merging and the state record take tens of milliseconds for 2,000 keys before the first write.
      state.onAnswer = () => void setTimeout(() => child?.kill("SIGTERM"), 5)
      const run = await runWithConfig(cfg, ["--lock-file", path.join(lockDir, `lock-${i}`)], {
        onSpawn: (c) => void (child = c)
      })
      state.onAnswer = undefined
      expect(run.code === 0 && run.signal === null, run.stdout).toBe(false)
      expect(logsWith(run, "updated authorized_keys", bob.name), run.stdout).toHaveLength(0)
      expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(before)
      expect(await backupsOf(bob)).toEqual(backupsBefore)
      expect(await tempFilesIn(bob.sshDir)).toEqual([])
    }
  })

  it("17. SIGKILL at random points, 30 times: the file is always the old or the complete new one, never partial", async () => {
    const rounds = 30
    const { bob, state, bodyOf, cfg } = await churningUser("kill", rounds + 1, 500)
    const lockDir = await users.tempDir()
    const first = await runWithConfig(cfg)
    expect(first.code, first.stdout).toBe(0)
    const normalMs = first.durationMs
    let previous = await fs.readFile(bob.authorizedKeys, "utf8")
    const versions = new Set([previous])
    const seen = { old: 0, new: 0 }
    for (let i = 1; i <= rounds; i++) {
      state.current = i
      let child: ChildProcess | undefined
      const kill = () => void child?.kill("SIGKILL")
      if (i % 2 === 1) {
        // Anywhere in a normal run (mostly start-up and fetch) ...
        state.onAnswer = undefined
      } else {
        // ... or right after the source answered (parse, backup, temp file, rename).
        state.onAnswer = () => void setTimeout(kill, Math.random() * 60)
      }
      // A fresh lock file per run keeps the rounds independent of each other.
      const run = await runWithConfig(cfg, ["--lock-file", path.join(lockDir, `lock-${i}`)], {
        onSpawn: (c) => {
          child = c
          if (i % 2 === 1) setTimeout(kill, Math.random() * normalMs)
        }
      })
      state.onAnswer = undefined
      const content = await fs.readFile(bob.authorizedKeys, "utf8")
      const which = oldOrNew(content, previous, bodyOf(i))
      if (run.signal === null) expect(run.code, run.stdout).toBe(0)
      seen[which]++
      versions.add(content)
      previous = content
      expect(await statOf(bob.authorizedKeys)).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })
    }
    // A killed run may leave its temp file, or a backup's; the next run removes them.
    const backupTemps = async () =>
      (await fs.readdir(bob.backupDir).catch(() => [] as Array<string>)).filter((name) =>
        /^\.authorized_keys_.*\.tmp$/.test(name)
      )
    const leftovers = [...await tempFilesIn(bob.sshDir), ...await backupTemps()]
    state.current = rounds + 1
    const last = await runWithConfig(cfg)
    expect(last.code, last.stdout).toBe(0)
    expect(oldOrNew(await fs.readFile(bob.authorizedKeys, "utf8"), previous, bodyOf(rounds + 1))).toBe("new")
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    expect(await backupTemps()).toEqual([])
    expect(logsWith(last, "removed a temp file left by an earlier run", bob.name)).toHaveLength(leftovers.length)
    const backups = await backupsOf(bob)
    const partial: Array<string> = []
    for (const name of backups) {
      const text = await fs.readFile(path.join(bob.backupDir, name), "utf8")
      if (!versions.has(text)) partial.push(`${name} (${text.length} bytes)`)
    }
    console.log(
      `[SIGKILL loop] old: ${seen.old}, new: ${seen.new}, temp files left: ${leftovers.length}, backups: ${backups.length}`
    )
    // A kill during the backup write can leave a truncated backup under a final name: asserted in 17b, only reported
    // here (whether a random kill lands in that window is luck).
    if (partial.length > 0) {
      console.warn(`[SIGKILL loop] backups that are not a whole earlier version: ${partial.join(", ")}`)
    }
  })

  // Backups are written under a temp name and renamed into place, like authorized_keys itself: a run killed while
  // writing one never leaves a truncated file that looks like a valid backup.
  it("17b. SIGKILL while the backup is being written: no truncated file is left under a backup name", async () => {
    // A large existing file (about 8 MiB, under the 16 MiB cap) makes the backup write take a while.
    const bob = await users.create({ ssh: true })
    const line = `${key("big-old")}\n`
    const old = line.repeat(Math.floor((8 * 1024 * 1024) / line.length))
    await fs.writeFile(bob.authorizedKeys, old, { mode: 0o600 })
    await fs.chown(bob.authorizedKeys, bob.uid, bob.gid)
    await fs.mkdir(bob.backupDir, { mode: 0o700 })
    await fs.chown(bob.backupDir, bob.uid, bob.gid)
    server.keys("/bigbackup", [key("big-new")])
    let child: ChildProcess | undefined
    // Kill the run the moment a backup name appears (inotify), while its bytes are still being written.
    const watcher = (await import("node:fs")).watch(bob.backupDir, () => void child?.kill("SIGKILL"))
    try {
      const run = await runWithConfig(
        config([userWith(bob.name, server.url("/bigbackup"))], { preserve_local_keys: false }),
        [],
        { onSpawn: (c) => void (child = c) }
      )
      expect(run.signal).toBe("SIGKILL")
    } finally {
      watcher.close()
    }
    expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(old)
    for (const name of await backupsOf(bob)) {
      const size = (await fs.stat(path.join(bob.backupDir, name))).size
      expect(size, `backup ${name} is ${size} bytes, the file was ${old.length}`).toBe(old.length)
    }
  })

  // A killed run may leave a backup it was still writing (`.authorized_keys_<stamp>_<id>.tmp`, a whole copy of the old
  // file) in authorized_keys_backups/. The next run removes it, like the temp files in .ssh: also a run that was
  // already waiting for the lock when the other one was killed, and a run that writes no backup itself.
  it("17c. a backup temp file a killed run left is removed by the next run, even one that waited for its lock", async () => {
    const bob = await users.create({ authorizedKeys: lines(key("bt-old")) })
    await fs.mkdir(bob.backupDir, { mode: 0o700 })
    await fs.chown(bob.backupDir, bob.uid, bob.gid)
    const carol = await users.create({ authorizedKeys: lines(key("bt-carol")) })
    await fs.mkdir(carol.backupDir, { mode: 0o700 })
    await fs.chown(carol.backupDir, carol.uid, carol.gid)
    server.keys("/bt-bob", [key("bt-old")])
    server.keys("/bt-carol", [key("bt-carol")])
    const cfg = config([userWith(bob.name, server.url("/bt-bob")), userWith(carol.name, server.url("/bt-carol"))], {
      preserve_local_keys: false
    })
    expect((await runWithConfig(cfg)).code).toBe(0)
    server.keys("/bt-bob", [key("bt-new")])
    // The killed run: alive and holding the lock while the next one starts and waits for it.
    const holder = spawn("sleep", ["30"], { stdio: "ignore" })
    const stat = await fs.readFile(`/proc/${holder.pid}/stat`, "utf8")
    const lockDir = await users.tempDir()
    await fs.chmod(lockDir, 0o700)
    const lockFile = path.join(lockDir, "authkeysync.lock")
    await fs.writeFile(lockFile, `${holder.pid} ${stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]}\n`, {
      mode: 0o600
    })
    const leftovers = [
      path.join(bob.backupDir, ".authorized_keys_20260101_000000_killed.tmp"),
      path.join(carol.backupDir, ".authorized_keys_20260101_000000_killed.tmp")
    ]
    try {
      const running = runWithConfig(cfg, ["--lock-file", lockFile, "--lock-timeout", "20"])
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      // What it was writing when it was killed: a whole copy of the old file, root's 0600 until complete.
      for (const leftover of leftovers) await fs.writeFile(leftover, lines(key("bt-old")), { mode: 0o600 })
      holder.kill("SIGKILL")
      const run = await running
      expect(run.code, run.stdout + run.stderr).toBe(0)
      // bob's file changed (a new backup was written), carol's did not (no backup at all): both are tidied up.
      expect(logsWith(run, "created backup", bob.name)).toHaveLength(1)
      expect(logsWith(run, "authorized_keys unchanged", carol.name)).toHaveLength(1)
      for (const leftover of leftovers) expect(await exists(leftover), leftover).toBe(false)
      expect(logsWith(run, "removed a temp file left by an earlier run").map((l) => l["path"]).sort()).toEqual(
        leftovers.sort()
      )
    } finally {
      holder.kill("SIGKILL")
    }
  })

  // ===========================================================================
  // A full disk
  // ===========================================================================

  it("18. a full file system: the write fails, exit 1, the old file intact, no temp file left", async (ctx) => {
    const { user: bob } = await userWithFile("full")
    // A 64 KiB tmpfs over the home, owned by the user; skipped where mounting is not allowed.
    const mounted = await exec("mount", [
      "-t",
      "tmpfs",
      "-o",
      `size=64k,mode=0755,uid=${bob.uid},gid=${bob.gid}`,
      "tmpfs",
      bob.home
    ]).then(() => true, (error: Error) => {
      console.warn(`[e2e] skipping the full-disk test: mount -t tmpfs is not permitted here (${error.message.trim()})`)
      return false
    })
    if (!mounted) return ctx.skip()
    try {
      await fs.mkdir(bob.sshDir, { mode: 0o700 })
      await fs.chown(bob.sshDir, bob.uid, bob.gid)
      const content = lines(key("full-old"))
      await fs.writeFile(bob.authorizedKeys, content, { mode: 0o600 })
      await fs.chown(bob.authorizedKeys, bob.uid, bob.gid)
      // Fill it, leaving two pages: room for a small backup, not for the new file.
      const { bavail, bsize } = await fs.statfs(bob.home)
      await fs.writeFile(path.join(bob.home, "filler"), Buffer.alloc(Math.max(0, (bavail - 2) * bsize)))
      const other = await bystander()
      const many = Array.from({ length: 1_000 }, (_, i) => key(`full-${i}`))
      server.keys("/full", many)

      const run = await runWithConfig(config([userWith(bob.name, server.url("/full")), other.config]))

      expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(content)
      expect(await statOf(bob.authorizedKeys)).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })
      expect(await tempFilesIn(bob.sshDir)).toEqual([])
      const errors = logsWith(run, /^user not synced, authorized_keys left untouched: /, bob.name)
      expect(errors, run.stdout).toHaveLength(1)
      expect(errors[0]?.msg).toMatch(/^user not synced, authorized_keys left untouched: cannot \S+ .*ENOSPC/)
      expect(errors[0]?.msg).toContain(bob.sshDir)
      expect(logsWith(run, "updated authorized_keys", bob.name)).toHaveLength(0)
      expectSummary(run, { updated: 1, failed: 1 })
      await other.expectSynced(run)
    } finally {
      await exec("umount", [bob.home]).catch((error: Error) => console.warn(`umount ${bob.home}: ${error.message}`))
    }
  })
})

// =============================================================================
// Helpers
// =============================================================================

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const waitFor = async (condition: () => boolean, timeoutMs: number, message: () => string): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(message())
    await sleep(10)
  }
}
