/**
 * The happy paths a user sees: keys from HTTP sources land in ~user/.ssh/authorized_keys with the documented layout,
 * merged with local keys, deduplicated, in config order, with the right mode and owner.
 */
import * as fs from "node:fs/promises"
import { beforeAll, expect, it } from "vitest"
import { assertBuilt, config, logsWith, runWithConfig, userWith } from "../support/cli.js"
import {
  backupsOf,
  exists,
  expectedBody,
  expectHeader,
  expectSyncedFile,
  splitGenerated,
  statOf,
  tempFilesIn
} from "../support/files.js"
import { useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { describeAsRoot, useUsers } from "../support/users.js"

describeAsRoot("sync (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  it("basic sync: writes the source's keys under a header, 0600, owned by the user, no backup of a missing file", async () => {
    const bob = await users.create({ ssh: true })
    const k1 = key("basic-1", "alice@laptop")
    const k2 = key("basic-2", "alice@desktop", "ssh-rsa")
    server.keys("/basic", [k1, k2])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/basic"))]))

    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.stderr).toBe("")
    const content = await expectSyncedFile(bob, [{ source: server.url("/basic"), keys: [k1, k2] }], run)
    // The whole file, to the byte (header values aside).
    const lastSync = expectHeader(content)
    expect(content).toBe(
      [
        ...splitGenerated(content).header.slice(0, 5),
        `# Last sync: ${lastSync}`,
        "# More info: https://github.com/eduardolat/authkeysync",
        splitGenerated(content).header[7],
        "",
        `# Source: ${server.url("/basic")}`,
        k1,
        k2,
        ""
      ].join("\n")
    )
    expect(await exists(bob.backupDir)).toBe(false)
    expect(await statOf(bob.sshDir)).toEqual({ mode: 0o700, uid: bob.uid, gid: bob.gid })

    const updated = logsWith(run, "updated authorized_keys", bob.name)
    expect(updated).toHaveLength(1)
    expect(updated[0]).toMatchObject({ level: "INFO", path: bob.authorizedKeys, keys: "2", added: "2", removed: "0" })
    expect(logsWith(run, "fetched source", bob.name)[0]).toMatchObject({ source: server.url("/basic"), keys: "2" })
    expect(logsWith(run, "sync finished")[0]).toMatchObject({
      level: "INFO",
      updated: "1",
      failed: "0",
      exit_code: "0"
    })
    expect(server.requestsTo("/basic")).toHaveLength(1)
    expect(server.requestsTo("/basic")[0]?.method).toBe("GET")
  })

  it("several users: each gets only their own keys, owned by them", async () => {
    const [a, b, c] = [
      await users.create({ ssh: true }),
      await users.create({ ssh: true }),
      await users.create({ ssh: true })
    ]
    const ka = key("multi-a")
    const kb = key("multi-b")
    const kc = key("multi-c")
    server.keys("/multi/a", [ka]).keys("/multi/b", [kb]).keys("/multi/c", [kc])

    const run = await runWithConfig(config([
      userWith(a.name, server.url("/multi/a")),
      userWith(b.name, server.url("/multi/b")),
      userWith(c.name, server.url("/multi/c"))
    ]))

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(a, [{ source: server.url("/multi/a"), keys: [ka] }], run)
    await expectSyncedFile(b, [{ source: server.url("/multi/b"), keys: [kb] }], run)
    await expectSyncedFile(c, [{ source: server.url("/multi/c"), keys: [kc] }], run)
    for (const u of [a, b, c]) expect(logsWith(run, "updated authorized_keys", u.name)).toHaveLength(1)
    expect(logsWith(run, "sync finished")[0]).toMatchObject({ updated: "3", skipped: "0", failed: "0", exit_code: "0" })
  })

  it("several sources: one section per source in config order, even when the first answers last", async () => {
    const bob = await users.create({ ssh: true })
    const [k1, k2, k3] = [key("order-1"), key("order-2"), key("order-3")]
    server
      .route("/order/zeta", { body: lines(k1), delayMs: 400 })
      .route("/order/alpha", { body: lines(k2, k3) })

    const run = await runWithConfig(config([userWith(bob.name, server.url("/order/zeta"), server.url("/order/alpha"))]))

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [
      { source: server.url("/order/zeta"), keys: [k1] },
      { source: server.url("/order/alpha"), keys: [k2, k3] }
    ], run)
  })

  it("preserve_local_keys true (default): local keys the sources lack are kept in a Local (preserved) section", async () => {
    const local1 = key("local-1", "manual@admin")
    const local2 = key("local-2", "restrict", "ssh-rsa")
    const optioned = `from="10.0.0.0/8",no-pty ${key("local-3")}`
    const remote = key("remote-1")
    const bob = await users.create({
      authorizedKeys: lines("# my hand-written file", local1, "", `   ${optioned}   `, "not-a-key", local2)
    })
    server.keys("/preserve", [remote])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/preserve"))]))

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [
      { source: server.url("/preserve"), keys: [remote] },
      { local: [local1, optioned, local2] }
    ], run)
    expect(logsWith(run, "updated authorized_keys", bob.name)[0]).toMatchObject({ keys: "4", added: "1", removed: "0" })
  })

  it("preserve_local_keys false: the file matches the sources exactly, local-only keys are removed", async () => {
    const local = key("gone-local")
    const shared = key("shared")
    const remote = key("fresh-remote")
    const bob = await users.create({ authorizedKeys: lines(local, shared) })
    server.keys("/exact", [shared, remote])

    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/exact"))], { preserve_local_keys: false })
    )

    expect(run.code, run.stdout).toBe(0)
    const content = await expectSyncedFile(bob, [{ source: server.url("/exact"), keys: [shared, remote] }], run)
    expect(content).not.toContain(local)
    expect(content).not.toContain("Local (preserved)")
    expect(logsWith(run, "updated authorized_keys", bob.name)[0]).toMatchObject({ keys: "2", added: "1", removed: "1" })
  })

  it("dedup: first source wins across sources, remote wins over local, duplicates inside a file collapse", async () => {
    const k1 = key("dup-1")
    const k2 = key("dup-2")
    const k3 = key("dup-3")
    const k4 = key("dup-4")
    const k2OtherComment = key("dup-2", "someone@else")
    const bob = await users.create({
      // k3 (served by B) and k4 twice, with stray white space around them.
      authorizedKeys: lines(`\t${k3}`, k4, `  ${k4}  `, k1)
    })
    server
      .route("/dedup/a", { body: lines(k1, k2, `  ${k1}`, k1) })
      .route("/dedup/b", { body: `${k2}\t\r\n   ${k3}   \n${k2OtherComment}\n${k3}\n` })

    const run = await runWithConfig(config([userWith(bob.name, server.url("/dedup/a"), server.url("/dedup/b"))]), [
      "--debug"
    ])

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [
      { source: server.url("/dedup/a"), keys: [k1, k2] },
      // Same key blob with a different comment is a different line (spec 3.3).
      { source: server.url("/dedup/b"), keys: [k3, k2OtherComment] },
      { local: [k4] }
    ], run)

    // Every duplicate, in merge order: inside a source, across sources (INFO), then the local file's (DEBUG).
    const [a, b, local] = [server.url("/dedup/a"), server.url("/dedup/b"), "local authorized_keys"]
    const dups = logsWith(run, "duplicate key dropped", bob.name)
    expect(dups.map((d) => [d.level, d["key"], d["kept_in"], d["dropped_from"]])).toEqual([
      ["INFO", k1, a, a],
      ["INFO", k1, a, a],
      ["INFO", k2, a, b],
      ["INFO", k3, b, b],
      ["DEBUG", k3, b, local],
      ["DEBUG", k4, local, local],
      ["DEBUG", k1, a, local]
    ])
  })

  it("HTML and JSON error bodies with status 200: those lines are discarded, real keys kept, a warning logged", async () => {
    const bob = await users.create({ ssh: true })
    const real = key("behind-html")
    const real2 = key("behind-json")
    server
      .route("/err/html", {
        body: `<!DOCTYPE html>\n<html>\n  <body>Rate limited, try later</body>\n</html>\n${real}\n`,
        headers: { "Content-Type": "text/html" }
      })
      .route("/err/json", {
        body: `{"error": "unauthorized", "detail": "token expired"}\n[1, 2]\n${real2}\n`,
        headers: { "Content-Type": "application/json" }
      })
      .route("/err/only-html", { body: "<html><body>502 Bad Gateway</body></html>\n" })

    const run = await runWithConfig(config([
      userWith(bob.name, server.url("/err/html"), server.url("/err/only-html"), server.url("/err/json"))
    ]))

    expect(run.code, run.stdout).toBe(0)
    const content = await expectSyncedFile(bob, [
      { source: server.url("/err/html"), keys: [real] },
      { source: server.url("/err/json"), keys: [real2] }
    ], run)
    expect(content).not.toMatch(/^[<{[]/m)
    expect(content).not.toContain("/err/only-html")
    const warnings = logsWith(run, /look like an HTML\/JSON error page/, bob.name)
    expect(warnings.map((w) => w["source"]).sort()).toEqual(
      [server.url("/err/html"), server.url("/err/json"), server.url("/err/only-html")].sort()
    )
    expect(warnings.every((w) => w.level === "WARN")).toBe(true)
  })

  it("empty sources: a source with no keys gets no section", async () => {
    const bob = await users.create({ ssh: true })
    const k = key("non-empty")
    server
      .route("/empty/blank", { body: "" })
      .route("/empty/comments", { body: "# no keys today\n\n   \n# still none\n" })
      .keys("/empty/full", [k])

    const run = await runWithConfig(config([
      userWith(bob.name, server.url("/empty/blank"), server.url("/empty/full"), server.url("/empty/comments"))
    ]))

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [{ source: server.url("/empty/full"), keys: [k] }], run)
  })

  it("all sources empty and nothing local: the file is the header alone", async () => {
    const bob = await users.create({ ssh: true })
    server.route("/empty/all", { body: "\n" })

    const run = await runWithConfig(config([userWith(bob.name, server.url("/empty/all"))]))

    expect(run.code, run.stdout).toBe(0)
    const content = await expectSyncedFile(bob, [], run)
    expect(splitGenerated(content).body).toBe("")
  })

  it("comment lines, blank lines, CRLF and malformed lines in a source are dropped; keys are trimmed", async () => {
    const bob = await users.create({ ssh: true })
    const k1 = key("crlf-1")
    const k2 = key("crlf-2", "with  two   spaces")
    const k3 = `sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t`
    server.route("/comments", {
      body: `# keys for team ops\r\n\r\n${k1}\r\n   # indented comment\r\n\t${k2} \t\r\nlonelytoken\r\n${k3}`
    })

    const run = await runWithConfig(config([userWith(bob.name, server.url("/comments"))]))

    expect(run.code, run.stdout).toBe(0)
    const content = await expectSyncedFile(bob, [{ source: server.url("/comments"), keys: [k1, k2, k3] }], run)
    expect(content).not.toContain("\r")
    expect(content).not.toContain("lonelytoken")
    expect(content).not.toContain("team ops")
  })

  it("white space the Go original trims (UTF-8 no-break and ideographic spaces) goes: the key is one line, not two", async () => {
    const k1 = key("nbsp-1", "bob@laptop")
    const bob = await users.create({ authorizedKeys: lines(k1) })
    // As a web page's copy and paste brings it: U+3000 before, U+00A0 after (UTF-8 on the wire).
    server.route("/nbsp", { body: `\u3000${k1}\u00a0\n` })

    const run = await runWithConfig(config([userWith(bob.name, server.url("/nbsp"))]))

    expect(run.code, run.stdout).toBe(0)
    // The local copy of the same line is the source's (no "Local (preserved)" section), and no space is kept.
    const content = await expectSyncedFile(bob, [{ source: server.url("/nbsp"), keys: [k1] }], run)
    expect(content).not.toMatch(/[\u00a0\u3000]/)
  })

  it("unchanged content: a second run leaves the file byte for byte (Last sync too), makes no backup, logs unchanged", async () => {
    const k = key("stable")
    const bob = await users.create({ authorizedKeys: lines(key("old-local")) })
    server.keys("/stable", [k])
    const cfg = config([userWith(bob.name, server.url("/stable"))])

    const first = await runWithConfig(cfg)
    expect(first.code, first.stdout).toBe(0)
    const before = await fs.readFile(bob.authorizedKeys)
    const beforeStat = await fs.stat(bob.authorizedKeys)
    const backupsBefore = await backupsOf(bob)
    expect(backupsBefore).toHaveLength(1)
    // Make sure a rewrite would show a different Last sync.
    await new Promise((r) => setTimeout(r, 1100))

    const second = await runWithConfig(cfg)

    expect(second.code, second.stdout).toBe(0)
    expect(await fs.readFile(bob.authorizedKeys)).toEqual(before)
    const afterStat = await fs.stat(bob.authorizedKeys)
    expect(afterStat.ino).toBe(beforeStat.ino)
    expect(afterStat.mtimeMs).toBe(beforeStat.mtimeMs)
    expect(await backupsOf(bob)).toEqual(backupsBefore)
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    expect(logsWith(second, "authorized_keys unchanged", bob.name)).toHaveLength(1)
    expect(logsWith(second, "updated authorized_keys", bob.name)).toHaveLength(0)
    expect(logsWith(second, "sync finished")[0]).toMatchObject({ updated: "0", unchanged: "1", exit_code: "0" })
  })

  it("a key that moves between sources is rewritten under its new source", async () => {
    const k = key("moving")
    const bob = await users.create({ ssh: true })
    server.keys("/move/a", [k]).keys("/move/b", [])
    const cfg = config([userWith(bob.name, server.url("/move/a"), server.url("/move/b"))], {
      preserve_local_keys: true
    })
    expect((await runWithConfig(cfg)).code).toBe(0)

    server.keys("/move/a", []).keys("/move/b", [k])
    const run = await runWithConfig(cfg)

    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [{ source: server.url("/move/b"), keys: [k] }], run)
    expect(splitGenerated(await fs.readFile(bob.authorizedKeys, "utf8")).body).toBe(
      expectedBody([{ source: server.url("/move/b"), keys: [k] }])
    )
  })
})
