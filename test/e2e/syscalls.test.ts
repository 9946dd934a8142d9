/**
 * The spec's atomic write procedure and backup rules, checked at the system-call level: the built CLI runs under
 * strace, and the trace must show, for the temp file and the backup, an exclusive no-follow create with mode 0600,
 * fchmod 0600, fchown to the user, fsync, and (for the temp file) a rename over authorized_keys followed by an fsync
 * of the directory, all through the pinned /proc/self/fd/N directory, and no path-based chmod/chown anywhere.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { assertBuilt, config, userWith, writeConfig } from "../support/cli.js"
import { expectSyncedFile } from "../support/files.js"
import { useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { describeAsRoot, useUsers } from "../support/users.js"

// strace must be installed and allowed to trace (some containers forbid ptrace).
const hasStrace = spawnSync("strace", ["-f", "-o", "/dev/null", "true"], { stdio: "ignore" }).status === 0
if (!hasStrace) console.warn("syscalls (e2e): skipped, strace is missing or may not trace here (.ci/run installs it)")

interface Call {
  readonly name: string
  readonly args: string
  readonly result: string
}

/** `1234 openat(AT_FDCWD, "/x", O_RDONLY) = 3` -> { name, args, result }, in trace order (all threads). */
const parseTrace = (text: string): Array<Call> =>
  text.split("\n").flatMap((line) => {
    const m = /^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?)/.exec(line)
    return m ? [{ name: m[1]!, args: m[2]!, result: m[3]! }] : []
  })

describeAsRoot("syscalls (e2e)", () => {
  const server = useServer()
  const users = useUsers()
  let traceDir = ""
  beforeAll(async () => {
    assertBuilt()
    traceDir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-strace-"))
  })
  afterAll(() => fs.rm(traceDir, { recursive: true, force: true }))

  it.skipIf(!hasStrace)("temp file and backup follow the spec's procedure on descriptors, never by path", async () => {
    const oldKey = key("sys-old")
    const newKey = key("sys-new")
    const bob = await users.create({ authorizedKeys: lines(oldKey) })
    server.keys("/sys", [newKey])
    const trace = path.join(traceDir, "trace.txt")

    // The CLI runs as `strace … node dist/authkeysync.mjs`, through a small wrapper script.
    const wrapper = path.join(traceDir, "traced-cli.sh")
    await fs.writeFile(
      wrapper,
      [
        "#!/bin/sh",
        // libuv may hand file operations to io_uring, which strace cannot see; force plain syscalls.
        `UV_USE_IO_URING=0 exec strace -f -qq -o ${trace} \\`,
        "  -e trace=openat,open,creat,fchmod,fchmodat,chmod,fchown,fchownat,chown,lchown,fsync,pread64,rename,renameat,renameat2 \\",
        `  -e signal=none ${process.execPath} ${path.resolve("dist/authkeysync.mjs")} "$@"`,
        ""
      ].join("\n"),
      { mode: 0o700 }
    )
    const run = await (async () => {
      const cfg = await writeConfig(config([userWith(bob.name, server.url("/sys"))]))
      try {
        return await new Promise<{ code: number; stdout: string }>((resolve) => {
          const child = spawn(wrapper, ["--config", cfg.path], { stdio: ["ignore", "pipe", "inherit"] })
          const out: Array<Buffer> = []
          child.stdout.on("data", (c: Buffer) => out.push(c))
          child.on("close", (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString("utf8") }))
        })
      } finally {
        await cfg.remove()
      }
    })()
    expect(run.code, run.stdout).toBe(0)
    await expectSyncedFile(bob, [{ source: server.url("/sys"), keys: [newKey] }, { local: [oldKey] }])

    const calls = parseTrace(await fs.readFile(trace, "utf8"))
    // The home is reached one directory at a time from /, each opened inside the one before without following a
    // link (checked on its descriptor), then .ssh inside that very directory.
    expect(calls.some((c) => c.name === "openat" && c.args.includes(`"${bob.home}"`)), "the home was opened by path")
      .toBe(false)
    const homeBase = path.basename(bob.home)
    const home = calls.find((c) =>
      c.name === "openat" && new RegExp(`"/proc/self/fd/\\d+/${homeBase}"`).test(c.args) &&
      c.args.includes("O_DIRECTORY")
    )
    expect(home, "home opened as a directory inside its parent").toBeDefined()
    expect(home?.args).toContain("O_NOFOLLOW")
    const ssh = calls.find((c) => c.name === "openat" && c.args.includes(`"/proc/self/fd/${home!.result}/.ssh"`))
    expect(ssh?.args).toContain("O_NOFOLLOW")
    expect(ssh?.args).toContain("O_DIRECTORY")
    const sshFd = ssh!.result
    const pinned = `/proc/self/fd/${sshFd}`

    /** The calls on the descriptor returned by `open`, up to the next time that descriptor number is reused. */
    const lifeOf = (open: Call) => {
      const start = calls.indexOf(open)
      const fd = open.result
      const rest = calls.slice(start + 1)
      const reused = rest.findIndex((c) => (c.name === "openat" || c.name === "open") && c.result === fd)
      return (reused < 0 ? rest : rest.slice(0, reused)).filter((c) => c.args.startsWith(`${fd},`) || c.args === fd)
    }
    const createdWithSpecMode = (open: Call | undefined, readBack: boolean) => {
      expect(open, "file created").toBeDefined()
      for (const flag of ["O_RDWR", "O_CREAT", "O_EXCL", "O_NOFOLLOW"]) expect(open!.args).toContain(flag)
      expect(open!.args.endsWith(", 0600")).toBe(true)
      const life = lifeOf(open!).map((c) => `${c.name}(${c.args.replace(/^(\d+), ".*"(\.\.\.)?, /, "$1, …, ")})`)
      const fd = open!.result
      const spec = [`fchmod(${fd}, 0600)`, `fchown(${fd}, ${bob.uid}, ${bob.gid})`, `fsync(${fd})`]
      // The temp file is read back from offset 0 (and re-parsed) while still root's, before it is handed over.
      expect(life).toEqual(
        readBack ? [expect.stringMatching(new RegExp(`^pread64\\(${fd}, …, \\d+, 0\\)$`)), ...spec] : spec
      )
    }

    // The backup: in authorized_keys_backups (itself opened without following links), pinned through /proc. The last
    // open of it: the run looks in it once before, for a backup a killed run left half written.
    const backupDir = calls.filter((c) => c.name === "openat" && c.args.includes(`"${pinned}/authorized_keys_backups"`))
      .at(-1)
    expect(backupDir?.args).toContain("O_NOFOLLOW")
    // Written under a temp name, then renamed to its final name: a killed run never leaves a truncated backup.
    const backupBase = `/proc/self/fd/${backupDir!.result}`
    const backup = calls.find((c) =>
      c.name === "openat" && new RegExp(`"${backupBase}/\\.authorized_keys_\\d{8}_\\d{6}_[a-z]{6}\\.tmp"`).test(c.args)
    )
    createdWithSpecMode(backup, false)
    const backupTemp = /"([^"]+)"/.exec(backup!.args)![1]!
    const backupRename = calls.find((c) => c.name.startsWith("rename") && c.args.includes(`"${backupTemp}"`))
    expect(backupRename?.args).toMatch(new RegExp(`"${backupBase}/authorized_keys_\\d{8}_\\d{6}_[a-z]{6}"`))

    // The temp file in .ssh, then the rename over authorized_keys, then the directory's fsync.
    const temp = calls.find((c) =>
      c.name === "openat" && new RegExp(`"${pinned}/\\.authkeysync_\\d{8}_\\d{6}_[a-z]{6}"`).test(c.args)
    )
    createdWithSpecMode(temp, true)
    const tempPath = /"([^"]+)"/.exec(temp!.args)![1]!
    const renameAt = calls.findIndex((c) => c.name.startsWith("rename") && c.args.includes(`"${tempPath}"`))
    expect(calls[renameAt]?.args).toContain(`"${pinned}/authorized_keys"`)
    expect(calls.indexOf(temp!)).toBeLessThan(renameAt)
    expect(calls.slice(renameAt + 1).some((c) => c.name === "fsync" && c.args === sshFd)).toBe(true)

    // Nothing is ever chmod-ed or chown-ed by path (a path can be swapped for a link; a descriptor cannot).
    expect(calls.filter((c) => ["chmod", "fchmodat", "chown", "fchownat", "lchown"].includes(c.name))).toEqual([])
  })
})
