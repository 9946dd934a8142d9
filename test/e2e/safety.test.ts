/**
 * Working as root in directories users control: modes and owners of everything written, no temp files left, planted
 * symlinks / hard links / FIFOs refused without touching their targets, concurrent runs, and secrets kept out of
 * the output.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { beforeAll, expect, it } from "vitest"
import { assertBuilt, config, logsWith, runCli, runWithConfig, userWith, writeConfig } from "../support/cli.js"
import {
  BACKUP_NAME,
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
import { refusedUrl, useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { describeAsRoot, useUsers } from "../support/users.js"

const exec = promisify(execFile)

const CANARY = "root canary: must never change\n"

describeAsRoot("safety (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  /** A root-owned 0644 file outside every home. */
  const rootCanary = async () => {
    const dir = await users.tempDir()
    const file = path.join(dir, "canary")
    await fs.writeFile(file, CANARY)
    await fs.chmod(file, 0o644)
    return { dir, file }
  }

  const expectRefused = (
    run: Awaited<ReturnType<typeof runCli>>,
    user: string,
    refusedPath: string,
    reason: RegExp
  ) => {
    expect(run.code, run.stdout + run.stderr).toBe(1)
    const err = logsWith(run, /^user not synced, authorized_keys left untouched: /, user)
    expect(err).toHaveLength(1)
    expect(err[0]?.level).toBe("ERROR")
    expect(err[0]?.msg).toContain(`refusing to use ${refusedPath}: `)
    expect(err[0]?.msg).toMatch(reason)
    expect(logsWith(run, "updated authorized_keys", user)).toHaveLength(0)
    expect(logsWith(run, "sync finished")[0]).toMatchObject({ failed: "1", exit_code: "1" })
  }

  it("a user's 400,000-line authorized_keys does not make another user's source miss its deadline", async () => {
    // Found in review: the big file's steps held the event loop for seconds in one go (about 5 s here), so an answer
    // that arrived at 1 s for another user stayed unread until that user's deadline had fired: that user failed on
    // every run. Now no step of the big user holds it for more than a fraction of a second.
    // 399,990 lines: with the source's key the new file stays within the 400,000 lines a run reads back.
    const many = Array.from({ length: 399_990 }, (_, i) => `ssh-ed25519 AAAAC3Nz${i.toString(36).padStart(6, "0")} u`)
    const big = await users.create({ authorizedKeys: many.map((line) => `${line}\n`).join("") })
    const victim = await users.create({ ssh: true })
    server.keys("/big", [key("big-new")])
    server.route("/victim", { body: lines(key("victim")), delayMs: 1_000 })

    const run = await runWithConfig(config([
      userWith(big.name, server.url("/big")),
      userWith(victim.name, { url: server.url("/victim"), timeout_seconds: 3 })
    ]))

    expect(run.code, run.stdout.slice(-2000)).toBe(0)
    await expectSyncedFile(victim, [{ source: server.url("/victim"), keys: [key("victim")] }])
    expect(logsWith(run, "updated authorized_keys", big.name)[0]).toMatchObject({ keys: "399991", added: "1" })
  }, 60_000)

  it("a root-owned 0644 file: the new file is the user's 0600; its backup stays root's 0600; only key lines are kept from it", async () => {
    const oldKey = key("perm-old")
    // An administrator's file, or a root-owned file the user moved here: its non-key lines are not the user's to read.
    const previous = lines(oldKey, "db_password hunter2", "# a comment")
    const bob = await users.create({ ssh: true })
    await fs.writeFile(bob.authorizedKeys, previous)
    await fs.chmod(bob.authorizedKeys, 0o644) // root-owned, world-readable
    const k = key("perm-new")
    server.keys("/perm", [k])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/perm"))]))

    expect(run.code, run.stdout).toBe(0)
    const content = await expectSyncedFile(bob, [{ source: server.url("/perm"), keys: [k] }, { local: [oldKey] }], run)
    expect(content).not.toContain("hunter2")
    expect(await statOf(bob.backupDir)).toEqual({ mode: 0o700, uid: bob.uid, gid: bob.gid })
    const [backup, ...more] = await backupsOf(bob)
    expect(more).toEqual([])
    const backupPath = path.join(bob.backupDir, backup ?? "")
    expect(await statOf(backupPath)).toEqual({ mode: 0o600, uid: 0, gid: 0 })
    expect(await fs.readFile(backupPath, "utf8")).toBe(previous)
    // Nothing else appeared in .ssh: no temp files, no stray names.
    expect((await fs.readdir(bob.sshDir)).sort()).toEqual(["authorized_keys", "authorized_keys_backups"])
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
  })

  it("a user's own 0644 file: file and backup end up 0600 and owned by the user", async () => {
    const previous = lines(key("perm-own-old"))
    const bob = await users.create({ authorizedKeys: previous })
    await fs.chmod(bob.authorizedKeys, 0o644)
    const k = key("perm-own-new")
    server.keys("/perm-own", [k])

    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/perm-own"))], { preserve_local_keys: false })
    )

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [{ source: server.url("/perm-own"), keys: [k] }], run)
    const [backup] = await backupsOf(bob)
    const backupPath = path.join(bob.backupDir, backup ?? "")
    expect(await statOf(backupPath)).toEqual({ mode: 0o600, uid: bob.uid, gid: bob.gid })
    expect(await fs.readFile(backupPath, "utf8")).toBe(previous)
  })

  it("right content but wrong mode/owner: rewritten with 0600 and the user's owner, without a new backup", async () => {
    const bob = await users.create({ ssh: true })
    const k = key("meta")
    server.keys("/meta", [k])
    const cfg = config([userWith(bob.name, server.url("/meta"))])
    expect((await runWithConfig(cfg)).code).toBe(0)
    await fs.chmod(bob.authorizedKeys, 0o664)
    await fs.chown(bob.authorizedKeys, 0, 0)

    const run = await runWithConfig(cfg)

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [{ source: server.url("/meta"), keys: [k] }], run)
    expect(await exists(bob.backupDir)).toBe(false)
  })

  it("authorized_keys planted as a symlink to a root file: refused, the target is untouched, exit 1", async () => {
    const { dir, file } = await rootCanary()
    const bob = await users.create({ ssh: true })
    await fs.symlink(file, bob.authorizedKeys)
    await fs.lchown(bob.authorizedKeys, bob.uid, bob.gid)
    const canaryBefore = await snapshotTree(dir)
    const sshBefore = await snapshotTree(bob.sshDir)
    server.keys("/link", [key("attacker")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/link"))]))

    expectRefused(run, bob.name, bob.authorizedKeys, /symbolic link/)
    expect(await fs.readFile(file, "utf8")).toBe(CANARY)
    expect(await statOf(file)).toEqual({ mode: 0o644, uid: 0, gid: 0 })
    expect(await snapshotTree(dir)).toEqual(canaryBefore)
    expect(await snapshotTree(bob.sshDir)).toEqual(sshBefore)
    expect(await fs.readlink(bob.authorizedKeys)).toBe(file)
  })

  it(".ssh planted as a symlink to a root-owned directory: refused, nothing written there, exit 1", async () => {
    const { dir } = await rootCanary()
    await fs.chmod(dir, 0o700)
    await fs.writeFile(path.join(dir, "authorized_keys"), lines(key("root-only")), { mode: 0o600 })
    const bob = await users.create()
    await fs.symlink(dir, bob.sshDir)
    await fs.lchown(bob.sshDir, bob.uid, bob.gid)
    const before = await snapshotTree(dir)
    server.keys("/sshlink", [key("attacker")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/sshlink"))]))

    expectRefused(run, bob.name, bob.sshDir, /symbolic link/)
    expect(await snapshotTree(dir)).toEqual(before)
  })

  it("authorized_keys_backups planted as a symlink to a root-owned directory: nothing written there or to the file", async () => {
    const { dir } = await rootCanary()
    await fs.chmod(dir, 0o700)
    const bob = await users.create({ authorizedKeys: lines(key("bk-link-old")) })
    await fs.symlink(dir, bob.backupDir)
    await fs.lchown(bob.backupDir, bob.uid, bob.gid)
    const before = await snapshotTree(dir)
    const original = await fs.readFile(bob.authorizedKeys, "utf8")
    server.keys("/bklink", [key("bk-link-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/bklink"))]))

    // Safety first (these must hold whatever the message says), then the report.
    expect(await snapshotTree(dir)).toEqual(before)
    expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(original)
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    expectRefused(run, bob.name, bob.backupDir, /symbolic link/)
  })

  it("authorized_keys_backups owned by another account: refused, not taken over, nothing written", async () => {
    const alice = await users.create()
    const bob = await users.create({ authorizedKeys: lines(key("bk-other-old")) })
    await fs.mkdir(bob.backupDir, { mode: 0o700 })
    const theirs = path.join(bob.backupDir, "authorized_keys_20200101_000000_abcdef")
    await fs.writeFile(theirs, CANARY, { mode: 0o600 })
    await fs.chown(theirs, alice.uid, alice.gid)
    await fs.chown(bob.backupDir, alice.uid, alice.gid)
    const original = await fs.readFile(bob.authorizedKeys, "utf8")
    server.keys("/bkother", [key("bk-other-new")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/bkother"))]))

    expect(await statOf(bob.backupDir)).toEqual({ mode: 0o700, uid: alice.uid, gid: alice.gid })
    expect(await fs.readdir(bob.backupDir)).toEqual(["authorized_keys_20200101_000000_abcdef"])
    expect(await fs.readFile(theirs, "utf8")).toBe(CANARY)
    expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(original)
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    expectRefused(run, bob.name, bob.backupDir, new RegExp(`owned by uid ${alice.uid}`))
  })

  it("authorized_keys hard-linked to a root file: refused, the other link is untouched", async () => {
    const bob = await users.create({ ssh: true })
    // Same file system as .ssh, outside it and root-only.
    const rootFile = path.join(bob.home, "root-owned-hardlink-target")
    await fs.writeFile(rootFile, CANARY, { mode: 0o600 })
    await fs.link(rootFile, bob.authorizedKeys)
    server.keys("/hardlink", [key("attacker")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/hardlink"))]))

    expectRefused(run, bob.name, bob.authorizedKeys, /hard links/)
    expect(await fs.readFile(rootFile, "utf8")).toBe(CANARY)
    expect(await statOf(rootFile)).toEqual({ mode: 0o600, uid: 0, gid: 0 })
    expect((await fs.stat(rootFile)).nlink).toBe(2)
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
  })

  it("authorized_keys that is a FIFO, a directory or a socket: refused at once, no hang, saying what it is", async () => {
    const fifoUser = await users.create({ ssh: true })
    await exec("mkfifo", [fifoUser.authorizedKeys])
    const dirUser = await users.create({ ssh: true })
    await fs.mkdir(dirUser.authorizedKeys)
    const socketUser = await users.create({ ssh: true })
    // A listening process that exits without closing leaves its socket file behind.
    await exec(process.execPath, [
      "-e",
      "require('net').createServer().listen(process.argv[1], () => process.exit(0))",
      socketUser.authorizedKeys
    ])
    server.keys("/special", [key("special")])

    const run = await runWithConfig(config([
      userWith(fifoUser.name, server.url("/special")),
      userWith(dirUser.name, server.url("/special")),
      userWith(socketUser.name, server.url("/special"))
    ]))

    expect(run.code, run.stdout).toBe(1)
    expect(run.durationMs).toBeLessThan(10_000)
    expect(logsWith(run, /refusing to use .*FIFO/, fifoUser.name)).toHaveLength(1)
    expect(logsWith(run, /refusing to use .*directory/, dirUser.name)).toHaveLength(1)
    expect(logsWith(run, /^user not synced/, socketUser.name)[0]?.msg).toBe(
      `user not synced, authorized_keys left untouched: refusing to use ${socketUser.authorizedKeys}: it is a socket, not a regular file`
    )
    expect((await fs.lstat(fifoUser.authorizedKeys)).isFIFO()).toBe(true)
    expect((await fs.lstat(dirUser.authorizedKeys)).isDirectory()).toBe(true)
    expect((await fs.lstat(socketUser.authorizedKeys)).isSocket()).toBe(true)
    expect(logsWith(run, "sync finished")[0]).toMatchObject({ failed: "3", exit_code: "1" })
  })

  it("two runs at once: the file ends complete and valid, no temp files remain, backups are whole files", async () => {
    const previous = lines(key("race-old"))
    const bob = await users.create({ authorizedKeys: previous })
    const many = Array.from({ length: 200 }, (_, i) => key(`race-${i}`))
    // A short delay so both processes are in flight at the same time.
    server.route("/race", { body: lines(...many), delayMs: 150 })
    const cfg = await writeConfig(config([userWith(bob.name, server.url("/race"))], { preserve_local_keys: false }))
    try {
      for (let round = 0; round < 3; round++) {
        const [a, b] = await Promise.all([runCli(["--config", cfg.path]), runCli(["--config", cfg.path])])
        expect(a.code, a.stdout + a.stderr).toBe(0)
        expect(b.code, b.stdout + b.stderr).toBe(0)
        await expectSyncedFile(bob, [{ source: server.url("/race"), keys: many }])
      }
    } finally {
      await cfg.remove()
    }
    expect(server.requestsTo("/race")).toHaveLength(6)
    // Every backup is a complete copy of some earlier file: the original, or a complete generated file.
    const body = expectedBody([{ source: server.url("/race"), keys: many }])
    for (const name of await fs.readdir(bob.backupDir)) {
      expect(name).toMatch(BACKUP_NAME)
      const content = await fs.readFile(path.join(bob.backupDir, name), "utf8")
      if (content !== previous) {
        expectHeader(content)
        expect(splitGenerated(content).body).toBe(body)
      }
    }
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
  })

  it("secrets never reach the output: Authorization header value and token query parameters, even with --debug", async () => {
    const bob = await users.create({ ssh: true })
    const secret = "Bearer SUPERSECRET-header-4f1c9e"
    const urlSecret = "QUERYSECRET7d3a"
    server
      .keys(`/secret/ok?access_token=${urlSecret}&team=ops`, [key("secret-ok")])
      .route("/secret/denied", { status: 401, body: `invalid credentials: ${secret}\n` })
    const good = config([userWith(bob.name, {
      url: server.url(`/secret/ok?access_token=${urlSecret}&team=ops`),
      headers: { Authorization: secret, "X-Api-Key": "XKEYSECRET" },
      timeout_seconds: 5
    })])
    const bad = config([userWith(bob.name, {
      url: server.url("/secret/denied"),
      method: "POST",
      headers: { Authorization: secret },
      body: "{\"password\":\"BODYSECRET\"}",
      timeout_seconds: 5
    })])

    const refused = new URL(await refusedUrl(`/keys?token=${urlSecret}`))
    refused.username = "admin"
    refused.password = "PASSWORDSECRET"
    const unreachable = config([userWith(bob.name, { url: refused.toString(), timeout_seconds: 2 })])

    const runs = [
      await runWithConfig(good, ["--debug"]),
      await runWithConfig(good, ["--debug", "--log-format", "json"]),
      await runWithConfig(bad, ["--debug"]),
      await runWithConfig(bad, ["--debug", "--dry-run", "--log-format", "json"]),
      await runWithConfig(unreachable, ["--debug"])
    ]

    expect(runs.map((r) => r.code)).toEqual([0, 0, 1, 1, 1])
    for (const run of runs) {
      const output = run.stdout + run.stderr
      expect(output.length).toBeGreaterThan(0)
      for (const s of ["SUPERSECRET", urlSecret, "XKEYSECRET", "BODYSECRET", "PASSWORDSECRET"]) {
        expect(output).not.toContain(s)
      }
    }
    // The server did get them.
    const okReq = server.requests.find((r) => r.url.startsWith("/secret/ok"))
    expect(okReq?.headers["authorization"]).toBe(secret)
    expect(okReq?.headers["x-api-key"]).toBe("XKEYSECRET")
  })
})
