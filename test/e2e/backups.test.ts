/**
 * Backups (spec section 4): the previous file byte for byte in ~/.ssh/authorized_keys_backups (0700, owned by the
 * user), files named authorized_keys_<UTC stamp>_<6 a-z> (0600, owned by the user), rotation by retention count,
 * and nothing else in that directory is ever deleted.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { beforeAll, expect, it } from "vitest"
import { assertBuilt, config, logsWith, runWithConfig, userWith } from "../support/cli.js"
import { BACKUP_NAME, backupsOf, backupTime, exists, expectSyncedFile, statOf } from "../support/files.js"
import { useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { describeAsRoot, type TestUser, useUsers } from "../support/users.js"

const floorSecond = (d: Date) => Math.floor(d.getTime() / 1000) * 1000

/** Pre-create the backup directory (0700, the user's) with the given files. */
const seedBackups = async (user: TestUser, files: Record<string, string>) => {
  await fs.mkdir(user.backupDir, { mode: 0o700 })
  await fs.chown(user.backupDir, user.uid, user.gid)
  let i = 0
  for (const [name, content] of Object.entries(files)) {
    const p = path.join(user.backupDir, name)
    await fs.writeFile(p, content, { mode: 0o600 })
    await fs.chown(p, user.uid, user.gid)
    const old = new Date(Date.UTC(2019, 0, 1 + i++))
    await fs.utimes(p, old, old)
  }
}

describeAsRoot("backups (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  it("creates a 0700 backup dir and a 0600 backup, owned by the user, holding the previous file byte for byte", async () => {
    // An odd hand-written file: CRLF, comments, trailing spaces, no final newline, non-ASCII.
    const previous = `# managed by hand — José\r\n${key("prev-1")}  \r\n\r\nssh-rsa AAAAB3Nza prev@äöü\n# end`
    // Primary group `users` (useradd -g users, as many sites do): a gid taken from the uid would show.
    const bob = await users.create({ authorizedKeys: previous, group: "users" })
    expect(bob.gid).not.toBe(bob.uid)
    const k = key("new-1")
    server.keys("/bk/create", [k])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/bk/create"))]))

    expect(run.code, run.stdout).toBe(0)
    expect(await statOf(bob.backupDir)).toEqual({ mode: 0o700, uid: bob.uid, gid: bob.gid })
    const backups = await fs.readdir(bob.backupDir)
    expect(backups).toHaveLength(1)
    const name = backups[0] ?? ""
    expect(name).toMatch(BACKUP_NAME)
    const stamp = backupTime(name).getTime()
    expect(stamp).toBeGreaterThanOrEqual(floorSecond(run.startedAt))
    expect(stamp).toBeLessThanOrEqual(run.endedAt.getTime())
    const backupPath = path.join(bob.backupDir, name)
    expect(await fs.readFile(backupPath)).toEqual(Buffer.from(previous, "utf8"))
    expect(await statOf(backupPath)).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })

    await expectSyncedFile(bob, [
      { source: server.url("/bk/create"), keys: [k] },
      { local: [key("prev-1"), "ssh-rsa AAAAB3Nza prev@äöü"] }
    ], run)
    expect(logsWith(run, "created backup", bob.name)[0]).toMatchObject({ level: "INFO", path: backupPath })
  })

  it("the backup is byte for byte even when the old file is not valid UTF-8 (e.g. a Latin-1 comment)", async () => {
    const bob = await users.create({ ssh: true })
    // "# clé de José" in Latin-1, and a key whose comment has a Latin-1 byte.
    const previous = Buffer.concat([
      Buffer.from("# cl\xe9 de Jos\xe9\n", "latin1"),
      Buffer.from(`${key("latin1")} jos\xe9@host\n`, "latin1")
    ])
    await fs.writeFile(bob.authorizedKeys, previous, { mode: 0o600 })
    await fs.chown(bob.authorizedKeys, bob.uid, bob.gid)
    server.keys("/bk/latin1", [key("latin1-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/bk/latin1"))]))

    expect(run.code, run.stdout).toBe(0)
    const [name] = await backupsOf(bob)
    expect(await fs.readFile(path.join(bob.backupDir, name ?? ""))).toEqual(previous)
  })

  it("a preserved local key keeps its exact bytes, even non-UTF-8 ones", async () => {
    const bob = await users.create({ ssh: true })
    const localLine = Buffer.from(`${key("latin1-local")} jos\xe9@host`, "latin1")
    await fs.writeFile(bob.authorizedKeys, Buffer.concat([localLine, Buffer.from("\n")]), { mode: 0o600 })
    await fs.chown(bob.authorizedKeys, bob.uid, bob.gid)
    server.keys("/bk/latin1-local", [key("latin1-remote")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/bk/latin1-local"))]))

    expect(run.code, run.stdout).toBe(0)
    const after = await fs.readFile(bob.authorizedKeys)
    expect(after.includes(Buffer.concat([Buffer.from("# Local (preserved)\n"), localLine, Buffer.from("\n")]))).toBe(
      true
    )
  })

  it("an existing root-owned backup directory: backups still end up owned by the user, and so does the directory", async () => {
    const bob = await users.create({ authorizedKeys: lines(key("rootdir-old")) })
    await fs.mkdir(bob.backupDir, { mode: 0o755 })
    server.keys("/bk/rootdir", [key("rootdir-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/bk/rootdir"))]))

    expect(run.code, run.stdout).toBe(0)
    const [name] = await backupsOf(bob)
    expect(await statOf(path.join(bob.backupDir, name ?? ""))).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })
    // Spec section 4: "The backup directory and all backup files must be owned by the target user (UID:GID), not root."
    const dir = await statOf(bob.backupDir)
    expect({ uid: dir.uid, gid: dir.gid }).toEqual({ uid: bob.uid, gid: bob.gid })
  })

  it("every change adds a backup of the file it replaces; names are unique", async () => {
    const bob = await users.create({ authorizedKeys: lines(key("gen-0")) })
    const cfg = config([userWith(bob.name, server.url("/bk/gen"))], { preserve_local_keys: false })
    const generations: Array<Buffer> = [await fs.readFile(bob.authorizedKeys)]
    for (let i = 1; i <= 3; i++) {
      server.keys("/bk/gen", [key(`gen-${i}`)])
      const run = await runWithConfig(cfg)
      expect(run.code, run.stdout).toBe(0)
      generations.push(await fs.readFile(bob.authorizedKeys))
    }

    const backups = await backupsOf(bob)
    expect(backups).toHaveLength(3)
    expect(new Set(backups).size).toBe(3)
    // Same-second backups share a stamp; compare as a set of contents.
    const contents = await Promise.all(backups.map((b) => fs.readFile(path.join(bob.backupDir, b), "utf8")))
    expect(contents.sort()).toEqual(generations.slice(0, 3).map((g) => g.toString("utf8")).sort())
    for (const b of backups) {
      expect(await statOf(path.join(bob.backupDir, b))).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })
    }
  })

  it("rotation keeps the N newest backups and never deletes foreign files or links", async () => {
    const bob = await users.create({ authorizedKeys: lines(key("rot-prev")) })
    const canaryDir = await users.tempDir()
    const canary = path.join(canaryDir, "canary")
    await fs.writeFile(canary, "do not delete\n", { mode: 0o644 })
    const old = [
      "authorized_keys_20200101_000000_aaaaaa",
      "authorized_keys_20210615_093000_bbbbbb",
      "authorized_keys_20220101_000000_cccccc",
      "authorized_keys_20230909_090909_dddddd",
      "authorized_keys_20240101_235959_eeeeee"
    ]
    const foreign = ["notes.txt", "authorized_keys_manual_copy", "authorized_keys_20000101_000000_abcdef.bak", "README"]
    await seedBackups(bob, Object.fromEntries([...old, ...foreign].map((n) => [n, `content of ${n}\n`])))
    // A link with a backup-shaped name pointing outside: must be neither followed nor deleted.
    await fs.symlink(canary, path.join(bob.backupDir, "authorized_keys_19990101_000000_linkzz"))
    server.keys("/bk/rot", [key("rot-new")])

    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/bk/rot"))], { backup_retention_count: 3 })
    )

    expect(run.code, run.stdout).toBe(0)
    const after = (await fs.readdir(bob.backupDir)).sort()
    const created = after.filter((n) => BACKUP_NAME.test(n) && !old.includes(n) && !n.includes("linkzz"))
    expect(created).toHaveLength(1)
    expect(after).toEqual(
      [...foreign, "authorized_keys_19990101_000000_linkzz", old[3], old[4], created[0]].sort()
    )
    // The three real backups left are the three newest.
    expect((await backupsOf(bob)).filter((n) => !n.includes("linkzz"))).toEqual([old[3], old[4], created[0]].sort())
    for (const f of [...foreign, old[3] ?? "", old[4] ?? ""]) {
      expect(await fs.readFile(path.join(bob.backupDir, f), "utf8")).toBe(`content of ${f}\n`)
    }
    expect(await fs.readFile(canary, "utf8")).toBe("do not delete\n")
    expect(await fs.readlink(path.join(bob.backupDir, "authorized_keys_19990101_000000_linkzz"))).toBe(canary)
    expect(logsWith(run, "removed old backups", bob.name)[0]).toMatchObject({ count: "3", retention: "3" })
  })

  it("directories and names from the future with backup names take no real backup's place in the retention count", async () => {
    // Found in review: three directories named like backups from the year 9999 were "the newest three", so with
    // retention 3 every new backup was deleted as soon as it was written, with the real ones before it.
    const bob = await users.create({ authorizedKeys: lines(key("fut-prev")) })
    const real = ["authorized_keys_20200101_000000_aaaaaa", "authorized_keys_20210101_000000_bbbbbb"]
    const future = "authorized_keys_99991231_235959_ffffff"
    await seedBackups(bob, Object.fromEntries([...real, future].map((n) => [n, `content of ${n}\n`])))
    const dirs = ["authorized_keys_99991231_235959_dddddd", "authorized_keys_99991231_235959_eeeeee"]
    for (const d of dirs) {
      await fs.mkdir(path.join(bob.backupDir, d))
      await fs.chown(path.join(bob.backupDir, d), bob.uid, bob.gid)
    }
    server.keys("/bk/future", [key("fut-new")])

    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/bk/future"))], { backup_retention_count: 2 })
    )

    expect(run.code, run.stdout).toBe(0)
    const after = (await fs.readdir(bob.backupDir)).sort()
    const created = after.filter((n) => BACKUP_NAME.test(n) && ![...real, future, ...dirs].includes(n))
    expect(created).toHaveLength(1)
    // The new backup and the newest real one are kept (retention 2); the planted names are neither counted nor touched.
    expect(after).toEqual([real[1], created[0], future, ...dirs].sort())
    expect(await fs.readFile(path.join(bob.backupDir, created[0] ?? ""), "utf8")).toBe(lines(key("fut-prev")))
    expect(logsWith(run, "removed old backups", bob.name)[0]).toMatchObject({ count: "1", retention: "2" })
  })

  it("a dry run fails as the real run does when authorized_keys_backups is a file (same exit code and error)", async () => {
    // Found in review: the dry run did not look at the backups directory, said "would update" and exit 0, and the real
    // run then failed.
    const bob = await users.create({ authorizedKeys: lines(key("bkfile-old")) })
    await fs.writeFile(bob.backupDir, "not a directory\n", { mode: 0o600 })
    await fs.chown(bob.backupDir, bob.uid, bob.gid)
    server.keys("/bk/file", [key("bkfile-new")])
    const cfg = config([userWith(bob.name, server.url("/bk/file"))])

    const dry = await runWithConfig(cfg, ["--dry-run"])
    const real = await runWithConfig(cfg)

    const failure = (run: typeof dry) =>
      logsWith(run, /^user not synced, authorized_keys left untouched: /, bob.name)[0]?.msg
    expect(real.code, real.stdout).toBe(1)
    expect(dry.code, dry.stdout).toBe(1)
    expect(failure(dry)).toBe(failure(real))
    expect(failure(real)).toContain("it is not a directory")
    expect(logsWith(dry, "dry run: would update authorized_keys", bob.name)).toHaveLength(0)
    expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(lines(key("bkfile-old")))
  })

  it("backup names use UTC whatever the host's time zone", async () => {
    const bob = await users.create({ authorizedKeys: lines(key("tz-old")) })
    server.keys("/bk/tz", [key("tz-new")])

    // UTC+14: a local-time stamp would be hours away from the UTC run window.
    const run = await runWithConfig(config([userWith(bob.name, server.url("/bk/tz"))]), [], {
      env: { TZ: "Pacific/Kiritimati" }
    })

    expect(run.code, run.stdout).toBe(0)
    const [name] = await backupsOf(bob)
    const stamp = backupTime(name ?? "").getTime()
    expect(stamp).toBeGreaterThanOrEqual(floorSecond(run.startedAt))
    expect(stamp).toBeLessThanOrEqual(run.endedAt.getTime())
  })

  it("default retention is 10", async () => {
    const bob = await users.create({ authorizedKeys: lines(key("ret-prev")) })
    const old = Array.from(
      { length: 12 },
      (_, i) => `authorized_keys_2020${String(i + 1).padStart(2, "0")}01_120000_oldold`
    )
    await seedBackups(bob, Object.fromEntries(old.map((n) => [n, "x\n"])))
    server.keys("/bk/default", [key("ret-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/bk/default"))]))

    expect(run.code, run.stdout).toBe(0)
    const backups = await backupsOf(bob)
    expect(backups).toHaveLength(10)
    expect(backups.slice(0, 9)).toEqual(old.slice(3))
    expect(backups[9]).not.toContain("oldold")
  })

  it("backup_enabled false: the file is replaced and no backup directory appears", async () => {
    const bob = await users.create({ authorizedKeys: lines(key("nobk-prev")) })
    server.keys("/bk/off", [key("nobk-new")])

    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/bk/off"))], { backup_enabled: false, preserve_local_keys: false })
    )

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [{ source: server.url("/bk/off"), keys: [key("nobk-new")] }], run)
    expect(await exists(bob.backupDir)).toBe(false)
    expect(logsWith(run, "created backup")).toHaveLength(0)
  })
})
