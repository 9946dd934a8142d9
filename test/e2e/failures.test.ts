/**
 * Blast-radius containment (spec 3.1 and 3.6): a failing source leaves that user's file untouched byte for byte and
 * makes the run exit 1; missing users and missing .ssh directories are skipped with a warning and exit 0; one
 * user's failure never stops another user's sync.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import { promisify } from "node:util"
import { beforeAll, expect, it } from "vitest"
import { assertBuilt, config, logsWith, type RunResult, runWithConfig, userWith } from "../support/cli.js"
import { exists, expectSyncedFile, snapshotTree, tempFilesIn } from "../support/files.js"
import { refusedUrl, useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { describeAsRoot, type TestUser, unusedUserName, useUsers } from "../support/users.js"

const exec = promisify(execFile)

/** The user's run failed: error lines for the source and the user, a failing summary, nothing written. */
const expectUserFailed = (run: RunResult, user: string, sourceMessage: RegExp) => {
  expect(run.code, run.stdout + run.stderr).toBe(1)
  const userError = logsWith(run, /^user not synced, authorized_keys left untouched: /, user)
  expect(userError).toHaveLength(1)
  expect(userError[0]?.level).toBe("ERROR")
  expect(userError[0]?.msg).toMatch(sourceMessage)
  expect(logsWith(run, "updated authorized_keys", user)).toHaveLength(0)
  const finished = logsWith(run, "sync finished")[0]
  expect(finished).toMatchObject({ level: "ERROR", exit_code: "1" })
  expect(Number(finished?.["failed"])).toBeGreaterThanOrEqual(1)
}

const ORIGINAL = lines("# hand made, keep me", key("orig-1"), key("orig-2", "ops@bastion"))

describeAsRoot("failures (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  const userWithFile = async (): Promise<{ user: TestUser; before: Awaited<ReturnType<typeof snapshotTree>> }> => {
    const user = await users.create({ authorizedKeys: ORIGINAL })
    return { user, before: await snapshotTree(user.home) }
  }

  const expectUntouched = async (user: TestUser, before: Awaited<ReturnType<typeof snapshotTree>>) => {
    expect(await fs.readFile(user.authorizedKeys, "utf8")).toBe(ORIGINAL)
    expect(await tempFilesIn(user.sshDir)).toEqual([])
    expect(await exists(user.backupDir)).toBe(false)
    // Whole home, modes, owners and mtimes (a temp file created and removed would change .ssh's mtime).
    expect(await snapshotTree(user.home)).toEqual(before)
  }

  it.each([
    { status: 500, body: "internal error\n" },
    { status: 404, body: "not found\n" },
    { status: 403, body: lines(key("forbidden-but-keylike")) },
    { status: 204, body: "" }
  ])("a source answering $status fails the user and leaves the file untouched", async ({ status, body }) => {
    const { user, before } = await userWithFile()
    server.route("/status", { status, body })

    const run = await runWithConfig(config([userWith(user.name, server.url("/status"))]))

    expectUserFailed(run, user.name, new RegExp(`source ${server.url("/status")}: HTTP ${status}`))
    const sourceError = run.logs.find((l) => l.level === "ERROR" && l["source"] === server.url("/status"))
    expect(sourceError?.["user"]).toBe(user.name)
    await expectUntouched(user, before)
  })

  it("one failing source among good ones: nothing is written", async () => {
    const { user, before } = await userWithFile()
    server.keys("/mixed/ok1", [key("m1")]).route("/mixed/bad", { status: 500 }).keys("/mixed/ok2", [key("m2")])

    const run = await runWithConfig(config([
      userWith(user.name, server.url("/mixed/ok1"), server.url("/mixed/bad"), server.url("/mixed/ok2"))
    ]))

    expectUserFailed(run, user.name, /HTTP 500/)
    await expectUntouched(user, before)
  })

  it("timeout: a server slower than timeout_seconds fails the user within about that time", async () => {
    const { user, before } = await userWithFile()
    server.route("/slow", { body: lines(key("too-late")), delayMs: 8_000 })

    const run = await runWithConfig(config([
      userWith(user.name, { url: server.url("/slow"), timeout_seconds: 1 })
    ]))

    expectUserFailed(run, user.name, /no complete answer within 1s/)
    expect(run.durationMs).toBeLessThan(5_000)
    await expectUntouched(user, before)
  })

  it("timeout covers the body: headers at once, body after the deadline", async () => {
    const { user, before } = await userWithFile()
    server.route("/drip", { body: lines(key("too-late")), bodyDelayMs: 8_000 })

    const run = await runWithConfig(config([
      userWith(user.name, { url: server.url("/drip"), timeout_seconds: 1 })
    ]))

    expectUserFailed(run, user.name, /no complete answer within 1s/)
    expect(run.durationMs).toBeLessThan(5_000)
    await expectUntouched(user, before)
  })

  it("a body larger than 10 MiB fails the user instead of using a truncated list", async () => {
    const { user, before } = await userWithFile()
    const line = `${key("big")}\n`
    server.route("/huge", { body: line.repeat(Math.ceil((10 * 1024 * 1024 + 1) / line.length)) })

    const run = await runWithConfig(config([userWith(user.name, server.url("/huge"))]))

    expectUserFailed(run, user.name, /larger than/)
    await expectUntouched(user, before)
  })

  it("SIGTERM while a source is pending: the run stops with a non-zero code and the file is untouched", async () => {
    const { user, before } = await userWithFile()
    server.route("/hang", { body: lines(key("never")), delayMs: 20_000 })

    const run = await runWithConfig(
      config([userWith(user.name, { url: server.url("/hang"), timeout_seconds: 30 })]),
      [],
      {
        onSpawn: (child) => void setTimeout(() => child.kill("SIGTERM"), 1_000)
      }
    )

    expect(run.code === 0 && run.signal === null).toBe(false)
    expect(run.durationMs).toBeLessThan(10_000)
    await expectUntouched(user, before)
    // The journal says why the run ended, instead of stopping after "sync started".
    expect(run.logs.at(-1)).toMatchObject({
      level: "ERROR",
      msg: "run interrupted by a signal; files not yet written were left untouched"
    })
  })

  it("connection refused fails the user", async () => {
    const { user, before } = await userWithFile()
    const url = await refusedUrl("/nothing-here")

    const run = await runWithConfig(config([userWith(user.name, url)]))

    expectUserFailed(run, user.name, new RegExp(`source ${url}: `))
    await expectUntouched(user, before)
  })

  it("missing user: skipped with a warning, exit 0, its sources are not fetched, others still synced", async () => {
    const ghost = await unusedUserName()
    const bob = await users.create({ ssh: true })
    const k = key("present")
    server.keys("/ghost", [key("ghost")]).keys("/present", [k])

    const run = await runWithConfig(
      config([userWith(ghost, server.url("/ghost")), userWith(bob.name, server.url("/present"))])
    )

    expect(run.code, run.stdout).toBe(0)
    const warn = logsWith(run, /^skipping user: /, ghost)
    expect(warn).toHaveLength(1)
    expect(warn[0]).toMatchObject({ level: "WARN", msg: `skipping user: user ${ghost} does not exist on this host` })
    expect(server.requestsTo("/ghost")).toHaveLength(0)
    expect(await exists(`/home/${ghost}`)).toBe(false)
    await expectSyncedFile(bob, [{ source: server.url("/present"), keys: [k] }], run)
    expect(logsWith(run, "sync finished")[0]).toMatchObject({
      level: "INFO",
      skipped: "1",
      updated: "1",
      failed: "0",
      exit_code: "0"
    })
  })

  it("missing .ssh: skipped with a warning, exit 0, nothing created", async () => {
    const bob = await users.create()
    const before = await snapshotTree(bob.home)
    server.keys("/nossh", [key("nossh")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/nossh"))]))

    expect(run.code, run.stdout).toBe(0)
    const warn = logsWith(run, /^skipping user: /, bob.name)
    expect(warn).toHaveLength(1)
    expect(warn[0]?.level).toBe("WARN")
    expect(warn[0]?.msg).toContain(bob.sshDir)
    expect(await exists(bob.sshDir)).toBe(false)
    expect(await snapshotTree(bob.home)).toEqual(before)
    expect(logsWith(run, "sync finished")[0]).toMatchObject({ skipped: "1", failed: "0", exit_code: "0" })
  })

  // The Go original skips every account without ~/.ssh before it looks at anything else; so does this tool, also when
  // the home is one it would refuse if there were a .ssh to write in.
  it("missing .ssh in a home that would be refused (world-writable, shared, nonexistent): skipped, exit 0 (found in review)", async () => {
    const loose = await users.create()
    await fs.chmod(loose.home, 0o777)
    const sharedA = await users.create()
    const sharedB = await users.create()
    await exec("usermod", ["-d", sharedA.home, sharedB.name])
    const homeless = await users.create()
    const nowhere = `/nonexistent-${homeless.name}`
    await exec("usermod", ["-d", nowhere, homeless.name])
    try {
      const before = await Promise.all([loose.home, sharedA.home].map((home) => snapshotTree(home)))
      server.keys("/skip", [key("skip")])
      const names = [loose.name, sharedA.name, sharedB.name, homeless.name]

      const run = await runWithConfig(config(names.map((name) => userWith(name, server.url("/skip")))))

      expect(run.code, run.stdout).toBe(0)
      for (const name of names) expect(logsWith(run, /^skipping user: /, name)[0]?.level, name).toBe("WARN")
      // Not "create it": with a .ssh the home would be refused, and the line says why.
      expect(logsWith(run, /^skipping user: /, loose.name)[0]?.msg).toBe(
        `skipping user: ${loose.sshDir} does not exist, and the home would be refused with one: ` +
          `${loose.home}: it is writable by group or others (mode 0777)`
      )
      expect(logsWith(run, "sync finished")[0]).toMatchObject({ skipped: "4", failed: "0", exit_code: "0" })
      expect(await Promise.all([loose.home, sharedA.home].map((home) => snapshotTree(home)))).toEqual(before)
      expect(await exists(nowhere)).toBe(false)
      expect(server.requestsTo("/skip")).toHaveLength(0)

      // With a .ssh, the same world-writable home is refused as before.
      await fs.mkdir(loose.sshDir, { mode: 0o700 })
      await fs.chown(loose.sshDir, loose.uid, loose.gid)
      const refused = await runWithConfig(config([userWith(loose.name, server.url("/skip"))]))
      expect(refused.code, refused.stdout).toBe(1)
      expect(logsWith(refused, /^user not synced/, loose.name)[0]?.msg).toBe(
        `user not synced, authorized_keys left untouched: refusing to use ${loose.home}: it is writable by group or others (mode 0777)`
      )
      expect(await fs.readdir(loose.sshDir)).toEqual([])
    } finally {
      // Their own homes back, so that the cleanup's `userdel -r` removes each account's own home.
      await exec("usermod", ["-d", sharedB.home, sharedB.name])
      await exec("usermod", ["-d", homeless.home, homeless.name])
    }
  })

  it("a home that is a regular file fails its user (as in the Go original), it is not skipped (found in review)", async () => {
    const bob = await users.create()
    const dir = await fs.mkdtemp("/tmp/akse2e-homefile-")
    const file = `${dir}/home`
    await fs.writeFile(file, "not a directory\n")
    await exec("usermod", ["-d", file, bob.name])
    try {
      server.keys("/homefile", [key("homefile")])
      const run = await runWithConfig(config([userWith(bob.name, server.url("/homefile"))]))
      expect(run.code, run.stdout).toBe(1)
      expect(logsWith(run, /^user not synced/, bob.name)[0]?.msg).toBe(
        `user not synced, authorized_keys left untouched: refusing to use ${file}: the home is not a directory`
      )
      expect(await fs.readFile(file, "utf8")).toBe("not a directory\n")
    } finally {
      await exec("usermod", ["-d", bob.home, bob.name])
      await fs.rm(dir, { recursive: true, force: true })
    }
  })

  it(".ssh that is a regular file: skipped with a warning, exit 0, file untouched", async () => {
    const bob = await users.create()
    await fs.writeFile(bob.sshDir, "not a directory\n")
    await fs.chown(bob.sshDir, bob.uid, bob.gid)
    const before = await snapshotTree(bob.home)
    server.keys("/sshfile", [key("sshfile")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/sshfile"))]))

    expect(run.code, run.stdout).toBe(0)
    expect(logsWith(run, /^skipping user: /, bob.name)[0]?.level).toBe("WARN")
    expect(await snapshotTree(bob.home)).toEqual(before)
  })

  it("partial failure: one user's source fails, another user is written, exit 1", async () => {
    const { user: broken, before } = await userWithFile()
    const fine = await users.create({ authorizedKeys: lines(key("fine-old")) })
    const k = key("fine-new")
    server.route("/partial/broken", { status: 502, body: "<html>bad gateway</html>" }).keys("/partial/fine", [k])

    const run = await runWithConfig(config([
      userWith(broken.name, server.url("/partial/broken")),
      userWith(fine.name, server.url("/partial/fine"))
    ], { preserve_local_keys: false }))

    expectUserFailed(run, broken.name, /HTTP 502/)
    await expectUntouched(broken, before)
    await expectSyncedFile(fine, [{ source: server.url("/partial/fine"), keys: [k] }], run)
    expect(logsWith(run, "updated authorized_keys", fine.name)).toHaveLength(1)
    expect(logsWith(run, "sync finished")[0]).toMatchObject({ updated: "1", failed: "1", exit_code: "1" })
  })
})
