/**
 * Found in reviews, end to end: the dry-run diff shows a key line's control characters as escapes; all-digit account
 * names are looked up by name; getent is the system's, never the first on root's PATH.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { beforeAll, expect, it } from "vitest"
import { assertBuilt, config, REPO_ROOT, runWithConfig, userWith } from "../support/cli.js"
import { exists, expectSyncedFile } from "../support/files.js"
import { useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { canUnshareMounts, runInMountNamespace } from "../support/namespaces.js"
import { runProcess } from "../support/process.js"
import { describeAsRoot, useUsers } from "../support/users.js"

describeAsRoot("dry-run output (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  it("--dry-run shows a key line's control characters as escapes (\\x1b), never sends them to the terminal", async () => {
    // Found in review: the diff printed them raw, so a source, or a user through their own file (shown when it is
    // removed), could hide lines (ESC[8m conceals, ESC[2K erases) or write the reader's clipboard (OSC 52).
    const kept = key("esc-kept")
    const added = `${key("esc-added")} \x1b[8mconcealed\x1b[0m`
    const removed = `${key("esc-removed")} me\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2K`
    const bob = await users.create({ authorizedKeys: lines(kept, removed) })
    server.keys("/esc", [kept, added])
    const cfg = config([userWith(bob.name, server.url("/esc"))], { preserve_local_keys: false })
    const run = await runWithConfig(cfg, ["--dry-run", "--quiet"])
    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/)
    expect(run.stdout).toContain(`+${key("esc-added")} \\x1b[8mconcealed\\x1b[0m\n`)
    expect(run.stdout).toContain(`-${key("esc-removed")} me\\x1b]52;c;ZWNobyBwd25lZA==\\x07\\x1b[2K\n`)
  })
})

/**
 * Run `program` (lines of an ES module using the built library's Accounts, with `Effect` imported) with `entry` added
 * to /etc/passwd in a private mount namespace: nothing on the host changes. Returns what it printed as JSON.
 *
 * The copy is laid over /etc with overlayfs rather than bound over the file: a `useradd` on the host meanwhile (another
 * job on the machine) replaces /etc/passwd by a rename, and a path lookup then finds the new file, not the bound one.
 */
const lookupWithPasswdEntry = async (entry: string, program: ReadonlyArray<string>): Promise<unknown> => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "aks-ns-"))
  const scriptPath = path.join(REPO_ROOT, `.accounts-ns-${process.pid}-${path.basename(dir)}.mjs`)
  try {
    const upper = path.join(dir, "upper")
    const work = path.join(dir, "work")
    await fs.mkdir(upper)
    await fs.mkdir(work)
    const passwd = path.join(upper, "passwd")
    await fs.writeFile(passwd, (await fs.readFile("/etc/passwd", "utf8")) + entry)
    await fs.writeFile(
      scriptPath,
      [
        `import { Accounts } from ${JSON.stringify(path.join(REPO_ROOT, "dist", "index.mjs"))}`,
        `import { Effect } from "effect"`,
        ...program
      ].join("\n")
    )
    const out = await runInMountNamespace(
      `{ mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc 2>/dev/null || mount --bind "$3" /etc/passwd; }`,
      [upper, work, passwd],
      [process.execPath, scriptPath]
    )
    expect(out.code, out.stderr).toBe(0)
    return JSON.parse(out.stdout)
  } finally {
    await fs.rm(scriptPath, { force: true })
    await fs.rm(dir, { recursive: true, force: true })
  }
}

describeAsRoot("all-digit account names (Linux getent)", () => {
  it("an account named 20231234 is found, as Go's user.Lookup (getpwnam) finds it", async (context) => {
    if (!canUnshareMounts) {
      console.warn(
        "skipped: needs `unshare -m` (root with CAP_SYS_ADMIN) to add an account without touching /etc/passwd"
      )
      return context.skip()
    }
    assertBuilt()
    expect(
      await lookupWithPasswdEntry("20231234:x:4242:4242::/nonexistent-aks:/bin/sh\n", [
        `const program = Effect.flatMap(Accounts.Accounts, (a) => Effect.all([Effect.either(a.lookup("20231234")), a.lookupAll(["20231234", "root"])]))`,
        `const [one, all] = await Effect.runPromise(Effect.provide(program, Accounts.layer))`,
        `console.log(JSON.stringify({ one: one._tag, all: all.get("20231234")._tag, uid: one._tag === "Right" ? one.right.uid : null }))`
      ])
    ).toEqual({ one: "Right", all: "Right", uid: 4242 })
  })

  it("an all-digit name that is in no account list fails the user (not a silent skip)", async () => {
    assertBuilt()
    const script = [
      `import { Accounts } from ${JSON.stringify(path.join(REPO_ROOT, "dist", "index.mjs"))}`,
      `import { Effect } from "effect"`,
      `const program = Effect.flatMap(Accounts.Accounts, (a) => Effect.all([Effect.either(a.lookup("987654321")), a.lookupAll(["987654321", "root"])]))`,
      `const [one, all] = await Effect.runPromise(Effect.provide(program, Accounts.layer))`,
      `console.log(JSON.stringify({ one: one.left?._tag, all: all.get("987654321").left?._tag, root: all.get("root")._tag }))`
    ].join("\n")
    const scriptPath = path.join(REPO_ROOT, `.accounts-digits-${process.pid}.mjs`)
    await fs.writeFile(scriptPath, script)
    try {
      const out = spawnSync(process.execPath, [scriptPath], { encoding: "utf8" })
      expect(out.status, out.stderr).toBe(0)
      expect(JSON.parse(out.stdout)).toEqual({ one: "AccountLookupError", all: "AccountLookupError", root: "Right" })
    } finally {
      await fs.rm(scriptPath, { force: true })
    }
  })
})

describeAsRoot("accounts without a usable home (Linux getent)", () => {
  // The Go original (userinfo.Lookup) fails an account whose home is empty (ErrNoHomeDir): exit code 1, not a skip.
  it("an account with an empty home fails in the all-at-once lookup too, not skipped as if it did not exist", async (context) => {
    if (!canUnshareMounts) {
      console.warn(
        "skipped: needs `unshare -m` (root with CAP_SYS_ADMIN) to add an account without touching /etc/passwd"
      )
      return context.skip()
    }
    assertBuilt()
    expect(
      await lookupWithPasswdEntry("akshomeless:x:4244:4244:::/bin/sh\n", [
        `const program = Effect.flatMap(Accounts.Accounts, (a) => Effect.all([Effect.either(a.lookup("akshomeless")), a.lookupAll(["akshomeless", "root"])]))`,
        `const [one, all] = await Effect.runPromise(Effect.provide(program, Accounts.layer))`,
        `console.log(JSON.stringify({ one: one.left?._tag, all: all.get("akshomeless").left?._tag, root: all.get("root")._tag }))`
      ])
    ).toEqual({ one: "AccountLookupError", all: "AccountLookupError", root: "Right" })
  })
})

describeAsRoot("getent is the system's, not the first on $PATH (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  it("a getent planted first on root's PATH is never run: the account is the system's, and its file is synced", async () => {
    const planted = await fs.mkdtemp(path.join(os.tmpdir(), "aks-path-"))
    try {
      const bob = await users.create({ ssh: true })
      const marker = path.join(planted, "ran")
      // What a planted getent would do: answer with a home of its choosing (here a directory root would then write in).
      await fs.writeFile(
        path.join(planted, "getent"),
        `#!/bin/sh\ntouch "${marker}"\necho "${bob.name}:x:0:0::${planted}:/bin/sh"\n`,
        { mode: 0o755 }
      )
      const k = key("path-planted")
      server.keys("/path", [k])
      const run = await runWithConfig(config([userWith(bob.name, server.url("/path"))]), [], {
        env: { PATH: `${planted}:${process.env["PATH"] ?? "/usr/bin:/bin"}` }
      })
      expect(run.code, run.stdout + run.stderr).toBe(0)
      expect(await exists(marker)).toBe(false)
      await expectSyncedFile(bob, [{ source: server.url("/path"), keys: [k] }], run)
    } finally {
      await fs.rm(planted, { recursive: true, force: true })
    }
  })
})

describeAsRoot("run by the account itself, not root (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  it("an account syncs its own file with the default config paths: the record goes to its own state directory", async () => {
    // Found in review: the Go original, run by an account for its own keys, works; here every user failed on the
    // system's state directory (/var/lib/authkeysync, root's), which such a run can never write.
    const bob = await users.create({ ssh: true })
    const k = key("self-run")
    server.keys("/self", [k])
    // The CLI and the config where the account can read them (the repository may not be readable by others).
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-self-"))
    try {
      await fs.chmod(dir, 0o755)
      const cli = path.join(dir, "authkeysync.mjs")
      await fs.copyFile(path.join(REPO_ROOT, "dist", "authkeysync.mjs"), cli)
      await fs.chmod(cli, 0o755)
      const cfgPath = path.join(dir, "config.yaml")
      // No policy.state_dir: the default for the account is its own.
      await fs.writeFile(
        cfgPath,
        `users:\n  - username: ${bob.name}\n    sources:\n      - url: "${server.url("/self")}"\n`
      )
      await fs.chmod(cfgPath, 0o644)
      const runtime = path.join(dir, "runtime")
      await fs.mkdir(runtime, { mode: 0o700 })
      await fs.chown(runtime, bob.uid, bob.gid)
      const run = await runProcess(
        "setpriv",
        [
          `--reuid=${bob.uid}`,
          `--regid=${bob.gid}`,
          "--clear-groups",
          "--",
          process.execPath,
          cli,
          "--config",
          cfgPath
        ],
        { env: { PATH: "/usr/bin:/bin", HOME: bob.home, XDG_RUNTIME_DIR: runtime } }
      )
      expect(run.code, run.stdout + run.stderr).toBe(0)
      await expectSyncedFile(bob, [{ source: server.url("/self"), keys: [k] }])
      const record = path.join(bob.home, ".local", "state", "authkeysync", "managed-keys", `${bob.name}.json`)
      const st = await fs.stat(record)
      expect([st.uid, st.mode & 0o777]).toEqual([bob.uid, 0o600])
      // The lock went to the account's runtime directory.
      expect(await fs.readdir(path.join(runtime, "authkeysync"))).toEqual([])
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
  })
})
