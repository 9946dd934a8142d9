/**
 * Where a home lives: the directories above it must be root's (or the account's), or another account could swap
 * the home for a link into root's files. Homes reached through a link an administrator made still work.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { beforeAll, expect, it } from "vitest"
import { assertBuilt, config, logsWith, runWithConfig, userWith } from "../support/cli.js"
import { expectSyncedFile, snapshotTree } from "../support/files.js"
import { useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { describeAsRoot, lookupUser, removeUser, unusedUserName, useUsers } from "../support/users.js"

const exec = promisify(execFile)

describeAsRoot("homes (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  beforeAll(() => assertBuilt())

  /** An account whose home is `home` (not created); removed after `body`. */
  const withAccount = async (home: string, body: (name: string, uid: number) => Promise<void>) => {
    const name = await unusedUserName()
    await exec("useradd", ["-M", "-d", home, "-s", "/usr/sbin/nologin", name])
    try {
      await body(name, (await lookupUser(name))!.uid)
    } finally {
      await removeUser(name, path.join(path.dirname(home), "not-a-home-of-a-test-user"))
    }
  }

  it("refuses a home inside another account's directory, which that account swapped for a link to root's files", async () => {
    const alice = await users.create({ ssh: true })
    const other = await users.create({ ssh: true })
    const rootDir = await users.tempDir()
    await fs.mkdir(path.join(rootDir, ".ssh"), { mode: 0o700 })
    await fs.writeFile(path.join(rootDir, ".ssh", "authorized_keys"), lines(key("root-only")), { mode: 0o600 })
    const before = await snapshotTree(rootDir)
    const bobHome = path.join(alice.home, "bobhome")
    // alice owns her home, so she can put anything at this name: here, a link to a root-only directory with a .ssh.
    await fs.symlink(rootDir, bobHome)
    server.keys("/homes/inside", [key("bob-key")])
    server.keys("/homes/other", [key("other-key")])

    await withAccount(bobHome, async (bob) => {
      const run = await runWithConfig(config([
        userWith(bob, server.url("/homes/inside")),
        userWith(other.name, server.url("/homes/other"))
      ]))
      expect(run.code, run.stdout).toBe(1)
      const err = logsWith(run, /^user not synced, authorized_keys left untouched: /, bob)
      expect(err[0]?.msg).toBe(
        `user not synced, authorized_keys left untouched: refusing to use ${bobHome}: ` +
          `${alice.home}, a directory on the way to it, is owned by uid ${alice.uid}, not root`
      )
      await expectSyncedFile(other, [{ source: server.url("/homes/other"), keys: [key("other-key")] }])
    })
    expect(await snapshotTree(rootDir)).toEqual(before)
  })

  it("a home inside another account's directory, linked to a third account's home, does not get that third account refused", async () => {
    const alice = await users.create({ ssh: true })
    const victim = await users.create({ ssh: true })
    const bobHome = path.join(alice.home, "bobhome")
    // alice's link makes bob's ~/.ssh, as a path, the victim's: only bob's own (refused) home may pay for it.
    await fs.symlink(victim.home, bobHome)
    server.keys("/homes/linked", [key("linked-bob-key")])
    server.keys("/homes/victim", [key("linked-victim-key")])

    await withAccount(bobHome, async (bob) => {
      const run = await runWithConfig(config([
        userWith(victim.name, server.url("/homes/victim")),
        userWith(bob, server.url("/homes/linked"))
      ]))
      expect(run.code, run.stdout).toBe(1)
      expect(logsWith(run, /^user not synced/, bob)[0]?.msg).toBe(
        `user not synced, authorized_keys left untouched: refusing to use ${bobHome}: ` +
          `${alice.home}, a directory on the way to it, is owned by uid ${alice.uid}, not root`
      )
      expect(logsWith(run, /^user not synced/, victim.name)).toEqual([])
      await expectSyncedFile(victim, [{ source: server.url("/homes/victim"), keys: [key("linked-victim-key")] }])
    })
  })

  it("refuses a home inside a directory the account itself owns (it could swap its own home for a link to root's .ssh)", async () => {
    const base = await users.tempDir()
    const rootDir = await users.tempDir()
    await fs.mkdir(path.join(rootDir, ".ssh"), { mode: 0o700 })
    await fs.writeFile(path.join(rootDir, ".ssh", "authorized_keys"), lines(key("root-only-2")), { mode: 0o600 })
    const before = await snapshotTree(rootDir)
    const own = path.join(base, "own")
    const home = path.join(own, "home")
    server.keys("/homes/own", [key("own-key")])
    await withAccount(home, async (name, uid) => {
      await fs.mkdir(own)
      await fs.chown(own, uid, uid)
      // What the account can do to its own home entry: move it away and put a link in its place.
      await fs.symlink(rootDir, home)
      const run = await runWithConfig(config([userWith(name, server.url("/homes/own"))]))
      expect(run.code, run.stdout).toBe(1)
      expect(logsWith(run, /^user not synced/, name)[0]?.msg).toBe(
        `user not synced, authorized_keys left untouched: refusing to use ${home}: ` +
          `${own}, a directory on the way to it, is owned by uid ${uid}, not root`
      )
    })
    expect(await snapshotTree(rootDir)).toEqual(before)
  })

  it("refuses a home reached through a link chain that passes a directory the account owns (neither the path as given nor as resolved shows it)", async () => {
    const base = await users.tempDir()
    const owned = path.join(base, "a")
    const realHome = path.join(base, "b", "c", "home")
    const given = path.join(base, "h", "bob")
    await fs.mkdir(owned)
    await fs.mkdir(realHome, { recursive: true })
    await fs.mkdir(path.join(base, "h"))
    // Root's links: h/bob -> a/link2/home; in the account's own directory: a/link2 -> b/c (which it could repoint).
    await fs.symlink(path.join(owned, "link2", "home"), given)
    await fs.symlink(path.join(base, "b", "c"), path.join(owned, "link2"))
    server.keys("/homes/chain", [key("chain-key")])
    await withAccount(given, async (name, uid) => {
      await fs.chown(owned, uid, uid)
      await fs.chown(realHome, uid, uid)
      await fs.mkdir(path.join(realHome, ".ssh"), { mode: 0o700 })
      await fs.chown(path.join(realHome, ".ssh"), uid, uid)
      const run = await runWithConfig(config([userWith(name, server.url("/homes/chain"))]))
      expect(run.code, run.stdout).toBe(1)
      expect(logsWith(run, /^user not synced/, name)[0]?.msg).toBe(
        `user not synced, authorized_keys left untouched: refusing to use ${given}: ` +
          `${owned}, a directory on the way to it, is owned by uid ${uid}, not root`
      )
      expect(await fs.readdir(path.join(realHome, ".ssh"))).toEqual([])
    })
  })

  it.each([
    ["world-writable with the sticky bit, like /tmp", 0o1777],
    ["group-writable (setgid, no sticky bit)", 0o2775]
  ])("refuses a home whose own entry sits in a directory that is %s", async (_, mode) => {
    const shared = await users.tempDir()
    await fs.chmod(shared, mode)
    const home = path.join(shared, "home")
    server.keys("/homes/shared", [key("shared-key")])
    await withAccount(home, async (name, uid) => {
      await fs.mkdir(path.join(home, ".ssh"), { recursive: true, mode: 0o700 })
      await fs.chown(home, uid, uid)
      await fs.chown(path.join(home, ".ssh"), uid, uid)
      const run = await runWithConfig(config([userWith(name, server.url("/homes/shared"))]))
      expect(run.code, run.stdout).toBe(1)
      expect(logsWith(run, /^user not synced/, name)[0]?.msg).toBe(
        `user not synced, authorized_keys left untouched: refusing to use ${home}: ` +
          `${shared}, a directory on the way to it, is writable by group or others (mode ${
            (mode & 0o7777).toString(8).padStart(4, "0")
          }), who could replace ${home}`
      )
      expect(await fs.readdir(path.join(home, ".ssh"))).toEqual([])
    })
  })

  it("skips, as the Go original does, an account without .ssh whose home sits in a directory it would refuse", async () => {
    const shared = await users.tempDir()
    await fs.chmod(shared, 0o1777)
    const home = path.join(shared, "home")
    server.keys("/homes/no-ssh", [key("no-ssh-key")])
    await withAccount(home, async (name, uid) => {
      await fs.mkdir(home, { mode: 0o755 })
      await fs.chown(home, uid, uid)
      const run = await runWithConfig(config([userWith(name, server.url("/homes/no-ssh"))]))
      expect(run.code, run.stdout).toBe(0)
      expect(logsWith(run, /^skipping user: /, name)[0]?.level).toBe("WARN")
      expect(await fs.readdir(home)).toEqual([])
      expect(server.requestsTo("/homes/no-ssh")).toHaveLength(0)
    })
  })

  it("refuses both accounts when one's home is another path (a link) to the other's, whatever order they run in", async () => {
    const previous = lines(key("same-dir-old"))
    const bob = await users.create({ authorizedKeys: previous })
    const other = await users.create({ ssh: true })
    const linkDir = await users.tempDir()
    const alias = path.join(linkDir, "alias-home")
    await fs.symlink(bob.home, alias)
    server.keys("/homes/bob", [key("same-dir-bob")])
    server.keys("/homes/alias", [key("same-dir-alias")])
    server.keys("/homes/other", [key("same-dir-other")])
    // Same uid (an alias account, like toor for root), so every ownership check passes for both.
    const name = await unusedUserName()
    await exec("useradd", [
      "-o",
      "-u",
      String(bob.uid),
      "-g",
      String(bob.gid),
      "-M",
      "-d",
      alias,
      "-s",
      "/usr/sbin/nologin",
      name
    ])
    try {
      for (const concurrency of ["1", "8"]) {
        const run = await runWithConfig(
          config([
            userWith(bob.name, server.url("/homes/bob")),
            userWith(name, server.url("/homes/alias")),
            userWith(other.name, server.url("/homes/other"))
          ]),
          ["--concurrency", concurrency]
        )
        expect(run.code, run.stdout).toBe(1)
        expect(logsWith(run, /^user not synced/, name)[0]?.msg).toBe(
          `user not synced, authorized_keys left untouched: refusing account "${name}": ` +
            `its ~/.ssh is the same directory as the ~/.ssh of ${bob.name}`
        )
        expect(logsWith(run, /^user not synced/, bob.name)[0]?.msg).toBe(
          `user not synced, authorized_keys left untouched: refusing account "${bob.name}": ` +
            `its ~/.ssh is the same directory as the ~/.ssh of ${name}`
        )
        expect(await fs.readFile(bob.authorizedKeys, "utf8")).toBe(previous)
        await expectSyncedFile(other, [{ source: server.url("/homes/other"), keys: [key("same-dir-other")] }])
      }
    } finally {
      await removeUser(name, path.join(linkDir, "not-a-home-of-a-test-user"))
    }
  })

  it("follows a link an administrator made in a root-owned directory", async () => {
    const linkDir = await users.tempDir()
    const realDir = await users.tempDir()
    const realHome = path.join(realDir, "home")
    await fs.mkdir(realHome)
    await fs.symlink(realHome, path.join(linkDir, "home"))
    await withAccount(path.join(linkDir, "home"), async (name, uid) => {
      await fs.chown(realHome, uid, uid)
      await fs.mkdir(path.join(realHome, ".ssh"), { mode: 0o700 })
      await fs.chown(path.join(realHome, ".ssh"), uid, uid)
      server.keys("/homes/linked", [key("linked")])
      const run = await runWithConfig(config([userWith(name, server.url("/homes/linked"))]))
      expect(run.code, run.stdout).toBe(0)
      const written = await fs.readFile(path.join(realHome, ".ssh", "authorized_keys"), "utf8")
      expect(written.endsWith(`\n# Source: ${server.url("/homes/linked")}\n${key("linked")}\n`)).toBe(true)
      const st = await fs.stat(path.join(realHome, ".ssh", "authorized_keys"))
      expect([st.uid, st.mode & 0o777]).toEqual([uid, 0o600])
    })
  })
})
