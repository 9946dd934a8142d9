/**
 * Homes on filesystems that may hang (NFS, CIFS, FUSE, automounts) are looked at from another process first.
 */
import { execFileSync } from "node:child_process"
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import {
  answersWithin,
  firstRiskyStep,
  type LocalLinks,
  mayHang,
  type Mount,
  mountOf,
  parseMountInfo,
  unresponsiveHomes
} from "../../src/services/internal/homeProbe.js"

const MOUNTINFO = [
  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
  "40 22 0:40 / /home rw,relatime shared:20 - autofs systemd-1 rw,fd=50",
  "41 40 0:41 / /home/alice rw,relatime shared:21 - nfs4 files.example:/export/alice rw,vers=4.2",
  "42 22 0:42 / /srv/with\\040space rw - cifs //nas/share rw",
  "43 22 0:43 / /mnt/sshfs rw,nosuid - fuse.sshfs bob@host: rw",
  "44 22 0:44 / /tmp rw shared:5 - tmpfs tmpfs rw",
  "not a mountinfo line",
  ""
].join("\n")

describe("parseMountInfo and mountOf", () => {
  const mounts = parseMountInfo(MOUNTINFO)

  it("reads mount point, type and source, octal escapes undone, unreadable lines skipped", () => {
    expect(mounts.map((m) => [m.mountPoint, m.fsType, m.source])).toEqual([
      ["/", "ext4", "/dev/sda1"],
      ["/home", "autofs", "systemd-1"],
      ["/home/alice", "nfs4", "files.example:/export/alice"],
      ["/srv/with space", "cifs", "//nas/share"],
      ["/mnt/sshfs", "fuse.sshfs", "bob@host:"],
      ["/tmp", "tmpfs", "tmpfs"]
    ])
  })

  it("a path lives on the longest mount point that holds it (the last mounted of equal ones)", () => {
    expect(mountOf("/home/alice", mounts)?.fsType).toBe("nfs4")
    expect(mountOf("/home/alice/.ssh", mounts)?.fsType).toBe("nfs4")
    expect(mountOf("/home/alicia", mounts)?.fsType).toBe("autofs")
    expect(mountOf("/var/lib/x", mounts)?.fsType).toBe("ext4")
    const over: ReadonlyArray<Mount> = [...mounts, { mountPoint: "/tmp", fsType: "nfs", source: "later" }]
    expect(mountOf("/tmp/x", over)?.source).toBe("later")
  })

  it("network filesystems, automounts and FUSE may hang; local ones do not", () => {
    expect(["nfs", "nfs4", "cifs", "autofs", "fuse.sshfs", "fuse", "ceph"].every(mayHang)).toBe(true)
    expect(["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs"].some(mayHang)).toBe(false)
  })
})

describe("unresponsiveHomes", () => {
  it("probes only homes that may hang, and names those that did not answer, with their mount", async () => {
    const probed: Array<string> = []
    const hung = await unresponsiveHomes(
      [
        { name: "alice", home: "/home/alice" },
        { name: "carol", home: "/srv/with space/carol" },
        { name: "root", home: "/root" },
        { name: "tmp", home: "/tmp/t" }
      ],
      {
        mounts: () => parseMountInfo(MOUNTINFO),
        probe: async (path) => {
          probed.push(path)
          return path === "/home/alice" ? "hung" : "answered"
        }
      }
    )
    expect(probed.sort()).toEqual(["/home/alice", "/srv/with space/carol"])
    expect([...hung]).toEqual([[
      "alice",
      "its home /home/alice is on nfs4 (files.example:/export/alice), which did not answer within 10s; nothing there was touched"
    ]])
  })

  it("no home at risk: no probe at all (an ordinary host pays one read of the mount table)", async () => {
    let probes = 0
    const hung = await unresponsiveHomes([{ name: "root", home: "/root" }], {
      mounts: () => parseMountInfo(MOUNTINFO),
      probe: async () => (++probes > 0 ? "answered" : "hung")
    })
    expect([hung.size, probes]).toEqual([0, 0])
  })
})

describe("firstRiskyStep (where the way to a home first reaches a filesystem that may hang)", () => {
  const mounts = parseMountInfo(MOUNTINFO)
  /** Links on the local disk: `/srv/bob` -> `/mnt/sshfs/bob`, `/srv/up` -> `../home/alice` (relative). */
  const links: LocalLinks = {
    isSymbolicLink: (
      path
    ) => (path === "/srv/bob" || path === "/srv/up" ? true : path.startsWith("/nonexistent") ? undefined : false),
    readlink: (path) => (path === "/srv/bob" ? "/mnt/sshfs/bob" : "../home/alice")
  }

  it("a home reached through a link on a local disk is found on the filesystem the link leads to (found in review)", () => {
    expect(firstRiskyStep("/srv/bob/work", mounts, links)).toMatchObject({
      path: "/mnt/sshfs/bob/work",
      mount: { fsType: "fuse.sshfs" }
    })
    expect(firstRiskyStep("/srv/up", mounts, links)).toMatchObject({ path: "/home/alice", mount: { fsType: "nfs4" } })
  })

  it("paths not written plainly are walked as the kernel walks them", () => {
    for (const home of ["//home/alice", "/home/./alice", "/var/../home/alice/"]) {
      expect(firstRiskyStep(home, mounts, links), home).toMatchObject({
        path: "/home/alice",
        mount: { fsType: "nfs4" }
      })
    }
  })

  it("a link that changes between the look and the read ends the walk, never throws (found in review)", () => {
    const racing: LocalLinks = {
      isSymbolicLink: (path) => path === "/srv/bob",
      readlink: () => {
        throw Object.assign(new Error("ENOENT: no such file or directory, readlink '/srv/bob'"), { code: "ENOENT" })
      }
    }
    expect(firstRiskyStep("/srv/bob/home", mounts, racing)).toBeUndefined()
  })

  it("a way on local disks only, or one that ends at a missing name, has nothing to probe", () => {
    expect(firstRiskyStep("/var/lib/alice", mounts, links)).toBeUndefined()
    expect(firstRiskyStep("/nonexistent/alice", mounts, links)).toBeUndefined()
  })
})

describe("unresponsiveHomes: a probe that could not start", () => {
  it("fails the user too (the home was not looked at), saying why", async () => {
    const hung = await unresponsiveHomes([{ name: "alice", home: "/home/alice" }], {
      mounts: () => parseMountInfo(MOUNTINFO),
      probe: async () => ({ failed: "spawn EAGAIN" })
    })
    expect([...hung]).toEqual([[
      "alice",
      "its home /home/alice is on nfs4 (files.example:/export/alice) and could not be looked at from another process " +
      "first (spawn EAGAIN); nothing there was touched"
    ]])
  })
})

describe.skipIf(process.platform !== "linux")("answersWithin (a stat in a process of its own)", () => {
  let dir = ""
  afterEach(() => {
    if (dir !== "") rmSync(dir, { recursive: true, force: true })
    dir = ""
  })

  it("a stat that ends answers, whatever it found", async () => {
    const stat = execFileSync("sh", ["-c", "command -v stat"], { encoding: "utf8" }).trim()
    expect(await answersWithin(stat, "/", 5_000)).toBe("answered")
    expect(await answersWithin(stat, "/nonexistent/akse2e", 5_000)).toBe("answered")
    // No such program: not an answer.
    expect(await answersWithin("/nonexistent/akse2e/stat", "/", 5_000)).toMatchObject({
      failed: expect.stringMatching(/ENOENT/)
    })
  })

  it("one that does not end in time is killed and let go: the caller goes on at the deadline", async () => {
    dir = mkdtempSync(join(tmpdir(), "aks-probe-"))
    const pidFile = join(dir, "pid")
    const hanging = join(dir, "stat")
    writeFileSync(hanging, `#!/bin/sh\necho $$ > "${pidFile}"\nexec sleep 60\n`)
    chmodSync(hanging, 0o755)
    expect(await answersWithin(hanging, "/home/hung", 300)).toBe("hung")
    const pid = Number(readFileSync(pidFile, "utf8"))
    let alive = true
    for (let i = 0; i < 100 && alive; i++) {
      try {
        process.kill(pid, 0)
        await new Promise((resolve) => setTimeout(resolve, 20))
      } catch {
        alive = false
      }
    }
    expect(alive).toBe(false)
  })

  it("a probe asked for after the run was stopped does not start", async () => {
    const stop = new AbortController()
    stop.abort()
    expect(await answersWithin("/nonexistent/akse2e/stat", "/home/x", 60_000, stop.signal)).toBe("hung")
  })

  it("a stopped run lets its probes go at once (the child is killed)", async () => {
    dir = mkdtempSync(join(tmpdir(), "aks-probe-"))
    const hanging = join(dir, "stat")
    writeFileSync(hanging, "#!/bin/sh\nexec sleep 60\n")
    chmodSync(hanging, 0o755)
    const stop = new AbortController()
    const answer = answersWithin(hanging, "/home/hung", 60_000, stop.signal)
    setTimeout(() => stop.abort(), 100)
    expect(await answer).toBe("hung")
  })
})
