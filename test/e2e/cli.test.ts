/**
 * The command line as an operator sees it: HTTP requests as the key server sees them (method, body, headers,
 * User-Agent, redirects), --dry-run, config errors on stderr, log formats and verbosity flags.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { beforeAll, expect, it } from "vitest"
import { stringify } from "yaml"
import {
  assertBuilt,
  CLI_PATH,
  config,
  logsWith,
  runCli,
  runWithConfig,
  userWith,
  writeConfig
} from "../support/cli.js"
import { exists, expectSyncedFile, snapshotTree, tempFilesIn } from "../support/files.js"
import { TestServer, useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { describeAsRoot, useUsers } from "../support/users.js"

/** How many times a header name appears in the raw request (case-insensitive). */
const headerCount = (raw: ReadonlyArray<string>, name: string) =>
  raw.filter((v, i) => i % 2 === 0 && v.toLowerCase() === name.toLowerCase()).length

describeAsRoot("cli (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  // ===========================================================================
  // Requests
  // ===========================================================================

  it("POST with Authorization, body and a custom User-Agent; the default User-Agent is AuthKeySync", async () => {
    const bob = await users.create({ ssh: true })
    const kPost = key("post-1")
    const kGet = key("get-1")
    server.keys("/api/keys", [kPost]).keys("/plain.keys", [kGet])
    const body = "{\"role\": \"deployment\", \"env\": \"prod\"}"

    const run = await runWithConfig(config([{
      username: bob.name,
      sources: [
        {
          url: server.url("/api/keys"),
          method: "POST",
          timeout_seconds: 5,
          headers: {
            Authorization: "Bearer SECRET_TOKEN_XYZ",
            "Content-Type": "application/json",
            "User-Agent": "MyCompany-KeySync/2.0"
          },
          body
        },
        { url: server.url("/plain.keys") }
      ]
    }]))

    expect(run.code, run.stdout).toBe(0)
    const [post, ...morePosts] = server.requestsTo("/api/keys")
    expect(morePosts).toEqual([])
    expect(post?.method).toBe("POST")
    expect(post?.body).toBe(body)
    expect(post?.headers["authorization"]).toBe("Bearer SECRET_TOKEN_XYZ")
    expect(post?.headers["content-type"]).toBe("application/json")
    expect(post?.headers["content-length"]).toBe(String(Buffer.byteLength(body)))
    expect(post?.headers["user-agent"]).toBe("MyCompany-KeySync/2.0")
    expect(headerCount(post?.rawHeaders ?? [], "user-agent")).toBe(1)

    const [get, ...moreGets] = server.requestsTo("/plain.keys")
    expect(moreGets).toEqual([])
    expect(get?.method).toBe("GET")
    expect(get?.body).toBe("")
    expect(get?.headers["user-agent"]).toBe("AuthKeySync")
    expect(get?.headers["authorization"]).toBeUndefined()

    await expectSyncedFile(bob, [
      { source: server.url("/api/keys"), keys: [kPost] },
      { source: server.url("/plain.keys"), keys: [kGet] }
    ], run)
  })

  it("a lower-case user-agent header replaces the default instead of adding a second one", async () => {
    const bob = await users.create({ ssh: true })
    server.keys("/ua", [key("ua")])

    const run = await runWithConfig(config([userWith(bob.name, {
      url: server.url("/ua"),
      headers: { "user-agent": "lower/1.0" }
    })]))

    expect(run.code, run.stdout).toBe(0)
    const req = server.requestsTo("/ua")[0]
    expect(req?.headers["user-agent"]).toBe("lower/1.0")
    expect(headerCount(req?.rawHeaders ?? [], "user-agent")).toBe(1)
  })

  it("redirects: followed; Authorization kept on the same origin, dropped for another origin", async () => {
    const bob = await users.create({ ssh: true })
    const other = new TestServer()
    await other.start()
    try {
      const k1 = key("redir-same")
      const k2 = key("redir-other")
      server
        .route("/r/same", { status: 302, headers: { Location: "/r/same-target" } })
        .keys("/r/same-target", [k1])
        .route("/r/away", { status: 301, headers: { Location: other.url("/r/away-target") } })
      other.keys("/r/away-target", [k2])
      const headers = { Authorization: "Bearer redirect-token" }

      const run = await runWithConfig(
        config([
          userWith(bob.name, { url: server.url("/r/same"), headers, timeout_seconds: 5 }, {
            url: server.url("/r/away"),
            headers,
            timeout_seconds: 5
          })
        ])
      )

      expect(run.code, run.stdout).toBe(0)
      expect(server.requestsTo("/r/same-target")[0]?.headers["authorization"]).toBe("Bearer redirect-token")
      const away = other.requestsTo("/r/away-target")[0]
      expect(away?.headers["authorization"]).toBeUndefined()
      expect(away?.headers["user-agent"]).toBe("AuthKeySync")
      // Sections carry the configured URL, not where it redirected to.
      await expectSyncedFile(bob, [
        { source: server.url("/r/same"), keys: [k1] },
        { source: server.url("/r/away"), keys: [k2] }
      ], run)
    } finally {
      await other.close()
    }
  })

  // ===========================================================================
  // Dry run
  // ===========================================================================

  it("--dry-run: prints the diff, changes nothing, creates no backup dir, exits like a real run", async () => {
    const kept = key("dry-kept")
    const removed = key("dry-removed")
    const added1 = key("dry-added-1")
    const added2 = key("dry-added-2")
    const bob = await users.create({ authorizedKeys: lines(kept, removed) })
    const before = await snapshotTree(bob.home)
    server.keys("/dry", [kept, added1, added2])
    const cfg = config([userWith(bob.name, server.url("/dry"))], { preserve_local_keys: false })

    const run = await runWithConfig(cfg, ["--dry-run"])

    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.stdout).toContain(
      [
        `--- ${bob.authorizedKeys}`,
        `+++ ${bob.authorizedKeys} (after sync)`,
        `-${removed}`,
        `+${added1}`,
        `+${added2}`
      ].join("\n") + "\n"
    )
    expect(run.stdout).not.toContain(`+${kept}`)
    expect(run.stdout).not.toContain(`-${kept}`)
    expect(await snapshotTree(bob.home)).toEqual(before)
    expect(await exists(bob.backupDir)).toBe(false)
    expect(await tempFilesIn(bob.sshDir)).toEqual([])
    expect(logsWith(run, "dry run: would update authorized_keys", bob.name)[0]).toMatchObject({
      level: "INFO",
      path: bob.authorizedKeys,
      added: "2",
      removed: "1",
      keys: "3"
    })
    expect(logsWith(run, "sync finished")[0]).toMatchObject({ would_update: "1", updated: "0", exit_code: "0" })

    // A real run afterwards writes exactly what the dry run announced.
    const real = await runWithConfig(cfg)
    expect(real.code, real.stdout).toBe(0)
    await expectSyncedFile(bob, [{ source: server.url("/dry"), keys: [kept, added1, added2] }], real)
  })

  it("the Go original's flag spellings work: -config PATH -dry-run, -config=PATH -dry-run=false, -version", async () => {
    const k = key("goflags")
    const bob = await users.create({ ssh: true })
    server.keys("/goflags", [k])
    const cfg = await writeConfig(config([userWith(bob.name, server.url("/goflags"))]))
    try {
      const dry = await runCli(["-config", cfg.path, "-dry-run"])
      expect(dry.code, dry.stdout + dry.stderr).toBe(0)
      expect(logsWith(dry, "dry run: would update authorized_keys", bob.name)).toHaveLength(1)
      expect(await exists(bob.authorizedKeys)).toBe(false)

      // A repeated flag counts once, with its last value, as in Go: this is a real run with this config.
      const real = await runCli([
        "-config",
        "/nonexistent/akse2e/other.yaml",
        "-dry-run",
        `-config=${cfg.path}`,
        "-dry-run=false"
      ])
      expect(real.code, real.stdout + real.stderr).toBe(0)
      await expectSyncedFile(bob, [{ source: server.url("/goflags"), keys: [k] }], real)

      const version = await runCli(["-version"])
      expect(version.code).toBe(0)
      expect(version.stdout).toMatch(
        /^Version: v\d+\.\d+\.\d+\nCommit: {2}\S+\nBuilt: {3}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/
      )
    } finally {
      await cfg.remove()
    }
  })

  it("the single-file build runs from a directory with no node_modules anywhere above it", async () => {
    const k = key("solo")
    const bob = await users.create({ ssh: true })
    server.keys("/solo", [k])
    const dir = await users.tempDir()
    const solo = `${dir}/authkeysync.mjs`
    await fs.copyFile(CLI_PATH, solo)
    await fs.chmod(solo, 0o755)
    const cfg = await writeConfig(config([userWith(bob.name, server.url("/solo"))]))
    try {
      const version = spawnSync(solo, ["--version"], { cwd: dir, encoding: "utf8" })
      expect(version.status, version.stderr).toBe(0)
      expect(version.stdout).toMatch(/^Version: v\d+\.\d+\.\d+\n/)
      const code = await new Promise<number>((resolve) => {
        // Async: the key server lives in this process.
        spawn(process.execPath, [solo, "--config", cfg.path, "--quiet"], { cwd: dir, stdio: "ignore" })
          .on("close", (c) => resolve(c ?? -1))
      })
      expect(code).toBe(0)
      await expectSyncedFile(bob, [{ source: server.url("/solo"), keys: [k] }])
    } finally {
      await cfg.remove()
    }
  })

  it("--dry-run for a user without authorized_keys creates nothing", async () => {
    const bob = await users.create({ ssh: true })
    const before = await snapshotTree(bob.home)
    const k = key("dry-new")
    server.keys("/dry-new", [k])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/dry-new"))]), ["--dry-run"])

    expect(run.code, run.stdout).toBe(0)
    expect(run.stdout).toContain(`--- ${bob.authorizedKeys}\n+++ ${bob.authorizedKeys} (after sync)\n+${k}\n`)
    expect(await snapshotTree(bob.home)).toEqual(before)
  })

  it("--dry-run exit code follows a real run: a failing source gives 1, and still nothing is written", async () => {
    const ok = await users.create({ authorizedKeys: lines(key("dry-ok-old")) })
    const broken = await users.create({ authorizedKeys: lines(key("dry-broken-old")) })
    const before = [await snapshotTree(ok.home), await snapshotTree(broken.home)]
    server.keys("/dry-ok", [key("dry-ok-new")]).route("/dry-broken", { status: 500 })

    const run = await runWithConfig(
      config([
        userWith(ok.name, server.url("/dry-ok")),
        userWith(broken.name, server.url("/dry-broken"))
      ]),
      ["--dry-run"]
    )

    expect(run.code, run.stdout).toBe(1)
    expect([await snapshotTree(ok.home), await snapshotTree(broken.home)]).toEqual(before)
    expect(logsWith(run, "sync finished")[0]).toMatchObject({ failed: "1", would_update: "1", exit_code: "1" })
  })

  it("--dry-run with --log-format json reports the diff as a JSON record", async () => {
    const old = key("dryjson-old")
    const k = key("dryjson-new")
    const bob = await users.create({ authorizedKeys: lines(old) })
    server.keys("/dry-json", [k])

    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/dry-json"))], { preserve_local_keys: false }),
      ["--dry-run", "--log-format", "json"]
    )

    expect(run.code, run.stdout).toBe(0)
    expect(run.stdout).not.toContain("+++")
    expect(logsWith(run, "dry run diff", bob.name)[0]).toMatchObject({
      path: bob.authorizedKeys,
      added: [k],
      removed: [old]
    })
    expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(lines(old))

    // The diff is the answer a dry run was asked for: printed with --quiet too, as the text diff is (--silent, errors
    // only, prints no diff in either format).
    const dry = (...flags: ReadonlyArray<string>) =>
      runWithConfig(config([userWith(bob.name, server.url("/dry-json"))], { preserve_local_keys: false }), [
        "--dry-run",
        ...flags
      ])
    const quiet = await dry("--log-format", "json", "--quiet")
    expect(quiet.code, quiet.stdout).toBe(0)
    expect(quiet.stdout.trim().split("\n").map((line) => JSON.parse(line).msg)).toEqual(["dry run diff"])
    const quietText = await dry("--quiet")
    expect(quietText.stdout).toContain(`\n+${k}\n`)
    for (const format of ["json", "text"]) expect((await dry("--log-format", format, "--silent")).stdout).toBe("")
  })

  // ===========================================================================
  // Configuration errors
  // ===========================================================================

  it("invalid config: exit 1, one stderr line naming the file and the field path, nothing fetched", async () => {
    const bob = await users.create({ authorizedKeys: lines(key("cfg-old")) })
    const before = await snapshotTree(bob.home)
    server.keys("/cfg", [key("cfg-new")])
    const cfg = await writeConfig(
      `users:\n  - username: ${bob.name}\n    sources:\n      - url: ${
        server.url("/cfg")
      }\n        timeout_seconds: 0\n`
    )
    try {
      const run = await runCli(["--config", cfg.path])

      expect(run.code).toBe(1)
      const errLines = run.stderr.split("\n").filter((l) => l !== "")
      expect(errLines).toHaveLength(1)
      expect(errLines[0]).toMatch(
        new RegExp(`^authkeysync: config ${cfg.path}: users\\[0\\]\\.sources\\[0\\]\\.timeout_seconds: `)
      )
      expect(errLines[0]).toContain("must be a positive whole number of seconds, got 0")
      expect(logsWith(run, "cannot load configuration")[0]?.level).toBe("ERROR")
      expect(server.requests).toEqual([])
      expect(await snapshotTree(bob.home)).toEqual(before)
      // Only the real problem: no schema-internal noise such as "Expected null, actual 0".
      expect(errLines[0]).not.toContain("Expected null")
    } finally {
      await cfg.remove()
    }
  })

  it("config errors name every bad field: unsupported method, bad URL scheme, user without sources", async () => {
    const cfg = await writeConfig([
      "users:",
      "  - username: alice",
      "    sources:",
      "      - url: http://127.0.0.1:9/keys",
      "        method: PUT",
      "      - url: ftp://127.0.0.1/keys",
      "  - username: carol",
      "    sources: []",
      ""
    ].join("\n"))
    try {
      const run = await runCli(["--config", cfg.path])

      expect(run.code).toBe(1)
      const errLines = run.stderr.split("\n").filter((l) => l !== "")
      expect(errLines).toHaveLength(1)
      const line = errLines[0] ?? ""
      expect(line.startsWith(`authkeysync: config ${cfg.path}: `)).toBe(true)
      expect(line).toContain("users[0].sources[0].method: unsupported method \"PUT\"")
      expect(line).toContain("users[0].sources[1].url: ")
      expect(line).toContain("users[1].sources: every user needs at least one source")
    } finally {
      await cfg.remove()
    }
  })

  it("a username listed twice is a config error naming the second entry", async () => {
    const cfg = await writeConfig(
      config([userWith("alice", "http://127.0.0.1:9/a"), userWith("alice", "http://127.0.0.1:9/b")])
    )
    try {
      const run = await runCli(["--config", cfg.path])
      expect(run.code).toBe(1)
      expect(run.stderr).toBe(
        `authkeysync: config ${cfg.path}: users[1].username: duplicate username "alice" (already at users[0])\n`
      )
    } finally {
      await cfg.remove()
    }
  })

  it("an unknown key is a warning, not an error", async () => {
    const bob = await users.create({ ssh: true })
    const k = key("typo")
    server.keys("/typo", [k])
    // Written as text to keep the typo; the revocation record goes to the test's own state dir, not the host's.
    const cfg = await writeConfig(
      `${stringify({ policy: config([]).policy ?? {} })}users:\n  - username: ${bob.name}\n    sources:\n      - url: ${
        server.url("/typo")
      }\n        timeout_second: 5\n`
    )
    try {
      const run = await runCli(["--config", cfg.path])
      expect(run.code, run.stdout).toBe(0)
      expect(run.stderr).toBe("")
      expect(logsWith(run, `config ${cfg.path}: unknown key users[0].sources[0].timeout_second is ignored`)[0]?.level)
        .toBe("WARN")
      await expectSyncedFile(bob, [{ source: server.url("/typo"), keys: [k] }], run)
    } finally {
      await cfg.remove()
    }
  })

  it("missing config file and invalid YAML: exit 1 with one stderr line", async () => {
    const missing = await runCli(["--config", "/nonexistent/akse2e/config.yaml"])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toBe("authkeysync: config /nonexistent/akse2e/config.yaml: cannot read: file not found\n")

    const cfg = await writeConfig("users: [\n  - username: bob\n")
    try {
      const bad = await runCli(["--config", cfg.path])
      expect(bad.code).toBe(1)
      const errLines = bad.stderr.split("\n").filter((l) => l !== "")
      expect(errLines).toHaveLength(1)
      // The message points at where the YAML breaks.
      expect(errLines[0]).toMatch(
        new RegExp(`^authkeysync: config ${cfg.path}: invalid YAML at line \\d+, column \\d+: `)
      )
    } finally {
      await cfg.remove()
    }
  })

  it("a config that is not valid UTF-8 is refused (as yaml.v3 refuses it), not read with its bytes replaced", async () => {
    // Found in review: a Latin-1 header value (caf\xe9) was sent as EF BF BD, silently.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-latin1-"))
    try {
      const file = path.join(dir, "config.yaml")
      await fs.writeFile(
        file,
        Buffer.concat([
          Buffer.from(
            "users:\n  - username: nobody\n    sources:\n      - url: http://127.0.0.1:9/k\n        headers:\n          X-Name: caf"
          ),
          Buffer.from([0xe9]),
          Buffer.from("\n")
        ]),
        { mode: 0o600 }
      )
      const run = await runCli(["--config", file])
      expect(run.code).toBe(1)
      expect(run.stderr).toBe(
        `authkeysync: config ${file}: invalid YAML: the file is not valid UTF-8 (or UTF-16 with a byte-order mark) text\n`
      )
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
  })

  it("a config saved as UTF-16 with a byte-order mark (a Windows editor's \"Unicode\") is read, as yaml.v3 reads it", async () => {
    const bob = await users.create({ ssh: true })
    const k = key("utf16-config")
    server.keys("/utf16", [k])
    const text = stringify(config([userWith(bob.name, server.url("/utf16"))]))
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-utf16-"))
    try {
      const little = path.join(dir, "le.yaml")
      await fs.writeFile(little, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]), {
        mode: 0o600
      })
      const run = await runCli(["--config", little])
      expect(run.code, run.stdout + run.stderr).toBe(0)
      await expectSyncedFile(bob, [{ source: server.url("/utf16"), keys: [k] }], run)
      const big = path.join(dir, "be.yaml")
      await fs.writeFile(big, Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, "utf16le").swap16()]), {
        mode: 0o600
      })
      expect((await runCli(["--config", big, "--dry-run"])).code).toBe(0)
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
  })

  it("--config naming a directory or a device is a one-line config error at once; a config read from a pipe works", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-dir-"))
    try {
      const run = await runCli(["--config", dir])
      expect(run.code).toBe(1)
      expect(run.stderr).toBe(
        `authkeysync: config ${dir}: refusing to read it: it is a directory, not a regular file\n`
      )
      expect(run.logs.map((l) => l.msg)).toContain("cannot load configuration")
      // A root-only device that reads for ever (/dev/zero's numbers): refused, not read until the run is killed.
      const zero = path.join(dir, "zero")
      expect(spawnSync("mknod", ["-m", "600", zero, "c", "1", "5"]).status).toBe(0)
      const device = await runCli(["--config", zero])
      expect(device.code).toBe(1)
      expect(device.stderr).toBe(
        `authkeysync: config ${zero}: refusing to read it: it is a character device, not a regular file\n`
      )
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
    // As `--config <(generate-config)` gives it: a pipe (here a named one, mode 0600), not a regular file.
    const bob = await users.create({ ssh: true })
    const k = key("from-a-pipe")
    server.keys("/pipe", [k])
    const fifoDir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-fifo-"))
    try {
      const fifo = path.join(fifoDir, "config")
      expect(spawnSync("mkfifo", ["-m", "600", fifo]).status).toBe(0)
      const writer = fs.writeFile(fifo, stringify(config([userWith(bob.name, server.url("/pipe"))])))
      const fromPipe = await runCli(["--config", fifo])
      await writer
      expect(fromPipe.code, fromPipe.stderr).toBe(0)
      await expectSyncedFile(bob, [{ source: server.url("/pipe"), keys: [k] }], fromPipe)
    } finally {
      await fs.rm(fifoDir, { recursive: true, force: true })
    }
  })

  it("--silent still prints a config error's stderr line (a mistyped path must not fail without a word)", async () => {
    const run = await runCli(["--config", "/nonexistent/akse2e/config.yaml", "--silent"])
    expect(run.code).toBe(1)
    expect(run.stderr).toBe("authkeysync: config /nonexistent/akse2e/config.yaml: cannot read: file not found\n")
    expect(run.logs.map((l) => [l.level, l.msg])).toEqual([["ERROR", "cannot load configuration"]])
  })

  it("--debug wins over --silent, which wins over --quiet (the Go original's order)", async () => {
    const bob = await users.create({ ssh: true })
    server.keys("/order", [key("order")])
    const cfg = config([userWith(bob.name, server.url("/order"))])
    const debug = await runWithConfig(cfg, ["--silent", "--debug"])
    expect(debug.logs.some((l) => l.level === "DEBUG")).toBe(true)
    const silent = await runWithConfig(cfg, ["--quiet", "--silent"])
    expect(silent.code).toBe(0)
    expect(silent.stdout).toBe("")
  })

  it("--debug shows no 'Fiber terminated' noise for a failing or timed-out source (the failure is handled)", async () => {
    const bob = await users.create({ ssh: true })
    server.route("/debug-500", { status: 500 })
    server.route("/debug-slow", { body: lines(key("slow")), delayMs: 3_000 })
    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/debug-500"), { url: server.url("/debug-slow"), timeout_seconds: 1 })]),
      ["--debug"]
    )
    expect(run.code).toBe(1)
    expect(run.logs.some((l) => l.level === "DEBUG")).toBe(true)
    expect(run.stdout).not.toContain("Fiber terminated")
  })

  it("--help to a pipe or file has no terminal colour codes, and lists the flags", async () => {
    const run = await runCli(["--help"], { env: { NO_COLOR: "" } })
    expect(run.code).toBe(0)
    expect(run.stdout).not.toContain("\x1b")
    const flags = [
      "--config",
      "--dry-run",
      "--debug",
      "--quiet",
      "--silent",
      "--log-format",
      "--concurrency",
      "--lock-timeout",
      "--lock-file",
      "--version",
      "--help"
    ]
    for (const flag of flags) {
      expect(run.stdout).toContain(flag)
    }
    // The usage line names what each value is, as the README's synopsis does.
    expect(run.stdout).toContain(
      "$ authkeysync [--config PATH] [--dry-run] [--debug] [--quiet] [--silent] [--log-format text | json]" +
        " [--concurrency N] [--lock-timeout SECONDS] [--lock-file PATH]"
    )
  })

  it("a bad flag is one `authkeysync:` stderr line and exit 2 (Go's flag package), whatever @effect/cli found wrong", async () => {
    for (
      const [args, message] of [
        [["--bogus"], "Received unknown argument: '--bogus'"],
        [["--concurrency", "abc"], "'abc' is not a integer"],
        [["--log-format", "xml"], "Expected one of the following cases: text, json"],
        // (The lock file first: the test helper otherwise appends one, which would become -config's value.)
        [["--lock-file", "/nonexistent/akse2e/lock", "--dry-run", "-config"], "flag needs an argument: -config"],
        // Go's strconv.ParseBool words only: `-dry-run=no` was a real run here, `-dry-run=yes` a dry run.
        [["-dry-run=no"], "invalid boolean value \"no\" for -dry-run: parse error"],
        [
          ["--lock-file", "/nonexistent/akse2e/lock", "--dry-run=yes"],
          "invalid boolean value \"yes\" for -dry-run: parse error"
        ]
      ] as const
    ) {
      const run = await runCli(args)
      expect(run.code).toBe(2)
      expect(run.stderr).toBe(`authkeysync: ${message}\n`)
    }
  })

  it("`-dry-run false` is a dry run with a stray argument for Go: refused here, never a real run that writes", async () => {
    // Found in review: @effect/cli took `false` as the boolean flag's value, and the run wrote the file.
    const bob = await users.create({ ssh: true })
    server.keys("/stray", [key("stray")])
    for (const args of [["-dry-run", "false"], ["--dry-run", "no"], ["--dry-run=true", "0"]]) {
      const run = await runWithConfig(config([userWith(bob.name, server.url("/stray"))]), args)
      expect(run.code).toBe(2)
      expect(run.stderr).toBe(`authkeysync: Received unknown argument: '${args[1]}'\n`)
      expect(server.requestsTo("/stray")).toHaveLength(0)
      expect(await exists(bob.authorizedKeys)).toBe(false)
    }
  })

  it("--version beside an unknown flag is refused (exit 2), as Go fails on the unknown flag first", async () => {
    const run = await runCli(["--version", "--bogus"])
    expect(run.code).toBe(2)
    expect(run.stderr).toBe("authkeysync: Received unknown argument: '--bogus'\n")
    expect(run.stdout).not.toContain("Version: v")
  })

  it("--config --version reads a config named --version, as Go does; it does not print the version", async () => {
    const run = await runCli(["--config", "--version"])
    expect(run.code).toBe(1)
    expect(run.stderr).toBe("authkeysync: config --version: cannot read: file not found\n")
  })

  it("--help after other flags prints the help, exit 0, as Go's -help anywhere does", async () => {
    const run = await runCli(["--config", "/nonexistent/akse2e/config.yaml", "--dry-run", "--help"])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain("--lock-timeout")
    // With any value too, as Go's flag package reads -help and -h (found in review: `-help=false` ran a sync).
    for (const args of [["-help=false", "--config=/nonexistent/akse2e/config.yaml"], ["-h=maybe", "-dry-run=no"]]) {
      const help = await runCli(args)
      expect(help.code, help.stderr).toBe(0)
      expect(help.stdout).toContain("--lock-timeout")
      expect(help.stdout).not.toContain("AuthKeySync starting")
    }
  })

  it("--concurrency 0 and --lock-timeout -1 are refused with exit 2, before the config is read", async () => {
    const run = await runCli(["--config", "/nonexistent/akse2e/config.yaml", "--concurrency", "0"])
    expect(run.code).toBe(2)
    expect(run.stderr).toBe("authkeysync: --concurrency must be 1 or more\n")
    const lock = await runCli(["--config", "/nonexistent/akse2e/config.yaml", "--lock-timeout=-1"])
    expect(lock.code).toBe(2)
    expect(lock.stderr).toBe("authkeysync: --lock-timeout must be 0 or more\n")
  })

  // ===========================================================================
  // Log output
  // ===========================================================================

  it("--log-format json: every stdout line is a JSON object with time, level, msg; user events carry user", async () => {
    const bob = await users.create({ ssh: true })
    server.keys("/json", [key("json")]).route("/json-html", { body: "<html>oops</html>\n" })

    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/json"), server.url("/json-html"))]),
      ["--log-format", "json", "--debug"]
    )

    expect(run.code, run.stdout).toBe(0)
    const out = run.stdout.split("\n").filter((l) => l !== "")
    expect(out.length).toBeGreaterThanOrEqual(5)
    const records = out.map((l) => JSON.parse(l) as Record<string, unknown>)
    for (const r of records) {
      expect(typeof r["time"]).toBe("string")
      expect(new Date(r["time"] as string).toISOString()).toBe(r["time"])
      expect(["DEBUG", "INFO", "WARN", "ERROR"]).toContain(r["level"])
      expect(typeof r["msg"]).toBe("string")
    }
    const userEvents = records.filter((r) =>
      ["fetched source", "updated authorized_keys", "processing user"].includes(r["msg"] as string)
    )
    expect(userEvents.length).toBeGreaterThanOrEqual(4)
    for (const r of userEvents) expect(r["user"]).toBe(bob.name)
    expect(records.find((r) => r["msg"] === "updated authorized_keys")).toMatchObject({
      level: "INFO",
      keys: 1,
      added: 1
    })
    expect(records.find((r) => r["level"] === "WARN")).toMatchObject({
      user: bob.name,
      source: server.url("/json-html")
    })
  })

  it("text logs are logfmt: time, level, msg first, then user and source", async () => {
    const bob = await users.create({ ssh: true })
    server.keys("/logfmt", [key("logfmt")])

    const run = await runWithConfig(config([userWith(bob.name, server.url("/logfmt"))]))

    expect(run.code).toBe(0)
    const out = run.stdout.split("\n").filter((l) => l !== "")
    for (const l of out) {
      expect(l).toMatch(/^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(DEBUG|INFO|WARN|ERROR) msg=/)
    }
    expect(out.length).toBe(run.logs.length)
    const fetched = out.find((l) => l.includes("msg=\"fetched source\"")) ?? ""
    expect(fetched).toMatch(
      new RegExp(
        `^time=\\S+ level=INFO msg="fetched source" user=${bob.name} source=${
          server.url("/logfmt").replace(/[.]/g, "\\.")
        } `
      )
    )
  })

  it("a reader that goes away (closed stdout and stderr) does not stop the run: every user is still synced", async () => {
    const [bob, carol] = [await users.create({ ssh: true }), await users.create({ ssh: true })]
    const [kBob, kCarol] = [key("epipe-bob"), key("epipe-carol")]
    // Slow enough that the run logs long after its reader is gone.
    server.route("/epipe-bob", { body: lines(kBob), delayMs: 300 })
    server.route("/epipe-carol", { body: lines(kCarol), delayMs: 300 })
    const run = await runWithConfig(
      config([userWith(bob.name, server.url("/epipe-bob")), userWith(carol.name, server.url("/epipe-carol"))]),
      ["--debug"],
      {
        onSpawn: (child) => {
          // Like journald restarting or `| head`: the pipes' other ends are closed; writes now fail with EPIPE.
          child.stdout?.destroy()
          child.stderr?.destroy()
        }
      }
    )
    expect(run.code).toBe(0)
    await expectSyncedFile(bob, [{ source: server.url("/epipe-bob"), keys: [kBob] }])
    await expectSyncedFile(carol, [{ source: server.url("/epipe-carol"), keys: [kCarol] }])
  })

  it("--quiet logs only warnings and errors; --silent only errors; exit codes unchanged", async () => {
    const bob = await users.create({ ssh: true })
    server.route("/quiet", { status: 500 })
    const cfg = config([userWith(bob.name, server.url("/quiet"))])

    const quiet = await runWithConfig(cfg, ["--quiet"])
    expect(quiet.code).toBe(1)
    expect(quiet.logs.length).toBeGreaterThan(0)
    expect(quiet.logs.every((l) => l.level === "WARN" || l.level === "ERROR")).toBe(true)
    expect(quiet.stdout.split("\n").filter((l) => l !== "")).toHaveLength(quiet.logs.length)

    const silent = await runWithConfig(cfg, ["--silent"])
    expect(silent.code).toBe(1)
    expect(silent.logs.length).toBeGreaterThan(0)
    expect(silent.logs.every((l) => l.level === "ERROR")).toBe(true)
    expect(silent.stderr).toBe("")
  })
})
