/**
 * A home whose filesystem stops answering (an NFS server gone away, here a FUSE filesystem whose server never
 * answers, in a private mount namespace): the run must not hang on it. Its user fails after the probe's deadline
 * without this process ever touching the home; the other users are synced and the run ends.
 */
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { expect, it } from "vitest"
import { assertBuilt, CLI_PATH, config, E2E_LOCK_FILE, parseLogs, userWith, writeConfig } from "../support/cli.js"
import { expectSyncedFile } from "../support/files.js"
import { useServer } from "../support/httpServer.js"
import { key } from "../support/keys.js"
import { canUnshareMounts, runInMountNamespace } from "../support/namespaces.js"
import { describeAsRoot, removeUser, unusedUserName, useUsers } from "../support/users.js"

const run = promisify(execFile)

describeAsRoot("a home on a filesystem that never answers (e2e)", () => {
  const server = useServer()
  const users = useUsers()

  it("its user fails after the probe's 10 s without the home being touched; the others are synced", async (context) => {
    if (!canUnshareMounts || !existsSync("/dev/fuse")) {
      console.warn("skipped: needs `unshare -m` and /dev/fuse to mount a filesystem that never answers")
      return context.skip()
    }
    assertBuilt()
    // The mount point is made on the host's disk; inside the run's namespace a FUSE filesystem whose server never
    // reads its requests is mounted over it, so every look inside waits forever (as on a hard NFS mount).
    const mountPoint = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-hung-"))
    const name = await unusedUserName()
    const home = path.join(mountPoint, "home")
    await run("useradd", ["-M", "-d", home, "-s", "/usr/sbin/nologin", name])
    try {
      const fine = await users.create({ ssh: true })
      server.keys("/hung", [key("hung")])
      server.keys("/fine", [key("fine")])
      const cfg = await writeConfig(
        config([userWith(name, server.url("/hung")), userWith(fine.name, server.url("/fine"))])
      )
      try {
        const started = Date.now()
        const out = await runInMountNamespace(
          "exec 3<>/dev/fuse && mount -t fuse -o fd=3,rootmode=40000,user_id=0,group_id=0 akse2e-hang \"$1\"",
          [mountPoint],
          [process.execPath, CLI_PATH, "--config", cfg.path, "--lock-file", E2E_LOCK_FILE],
          45_000
        )
        const seconds = (Date.now() - started) / 1000
        expect(out.code, out.stdout + out.stderr).toBe(1)
        const logs = parseLogs(out.stdout)
        expect(logs.find((line) => line.msg.startsWith("user not synced") && line["user"] === name)?.msg).toBe(
          `user not synced, authorized_keys left untouched: cannot read ${home}: its home ${home} is on fuse ` +
            "(akse2e-hang), which did not answer within 10s; nothing there was touched"
        )
        await expectSyncedFile(fine, [{ source: server.url("/fine"), keys: [key("fine")] }])
        expect(logs.find((line) => line.msg === "sync finished")).toMatchObject({
          updated: "1",
          failed: "1",
          exit_code: "1"
        })
        // The hung user's sources were never fetched: nothing is done for a home that cannot be reached.
        expect(server.requestsTo("/hung")).toHaveLength(0)
        // It ended with the probe's deadline, not never (the test would time out at 45 s otherwise).
        expect(seconds).toBeLessThan(30)
      } finally {
        await cfg.remove()
      }
    } finally {
      await removeUser(name)
      await fs.rm(mountPoint, { recursive: true, force: true })
    }
  }, 60_000)
})
