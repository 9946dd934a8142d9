/**
 * Homes on a network filesystem, looked at from a process of their own before this one touches them.
 *
 * The file layer works with synchronous syscalls on the main thread (see SshFiles.ts). A home on an NFS, CIFS or FUSE
 * server that stopped answering would block such a call for as long as the server is away (a hard NFS mount: in
 * uninterruptible sleep, deaf to SIGTERM), and with it every other user of the run, and every later run waiting for
 * the lock. So the homes that live on such a filesystem (found in /proc/self/mountinfo) are first `stat`ed by a child
 * process with a deadline; a home whose filesystem does not answer in time is left alone for this run (that user
 * fails), and the child is abandoned rather than waited for.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { Either } from "effect"
import { findCommand, SYSTEM_COMMAND_DIRS } from "./systemCommands.js"

/** One line of /proc/self/mountinfo, the parts that matter here. */
export interface Mount {
  readonly mountPoint: string
  readonly fsType: string
  readonly source: string
}

/** mountinfo writes a space, tab, newline and backslash in a path as an octal escape (`\040`). */
const unescapeMountPath = (text: string) => text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))

/** The mounts of a /proc/self/mountinfo text (proc(5)); lines it cannot read are skipped. */
export const parseMountInfo = (text: string): ReadonlyArray<Mount> =>
  text.split("\n").flatMap((line) => {
    const fields = line.split(" ")
    const separator = fields.indexOf("-", 6)
    const mountPoint = fields[4]
    const fsType = fields[separator + 1]
    const source = fields[separator + 2]
    return separator < 0 || mountPoint === undefined || fsType === undefined || source === undefined
      ? []
      : [{ mountPoint: unescapeMountPath(mountPoint), fsType, source: unescapeMountPath(source) }]
  })

/** The mount `path` lives on: the last mounted of the longest mount points that hold it. */
export const mountOf = (path: string, mounts: ReadonlyArray<Mount>): Mount | undefined => {
  let best: Mount | undefined
  for (const mount of mounts) {
    const point = mount.mountPoint
    const holds = point === "/" || path === point || path.startsWith(`${point}/`)
    if (holds && (best === undefined || point.length >= best.mountPoint.length)) best = mount
  }
  return best
}

const NETWORK_FS_TYPES: ReadonlySet<string> = new Set([
  "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "lustre", "gpfs", "beegfs", "ocfs2", "gfs2",
  // An automount point: the home is mounted (from a server) when it is first looked at.
  "autofs"
])

/** Whether a filesystem type can stop answering with its server: the network ones, automounts and FUSE. */
export const mayHang = (fsType: string): boolean => NETWORK_FS_TYPES.has(fsType) || fsType.startsWith("fuse")

/** How long a home's filesystem has to answer a `stat`. */
export const HOME_PROBE_TIMEOUT_MS = 10_000

/**
 * Whether `stat -- path`, run by `stat`, ends within `timeoutMs` (how it ends does not matter: an error is the main
 * thread's to report). A child that does not end is killed and let go: one stuck in a hung mount may not die, and
 * the run must not wait for it.
 */
export const answersWithin = (stat: string, path: string, timeoutMs: number): Promise<boolean> =>
  new Promise((resolve) => {
    const child = spawn(stat, ["--", path], { stdio: "ignore", env: { LC_ALL: "C" } })
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      child.unref()
      resolve(false)
    }, timeoutMs)
    child.once("error", () => {
      clearTimeout(timer)
      resolve(true)
    })
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

/**
 * For each home on a filesystem that may hang, whether it answered: the homes (by account name) that did not, with
 * why. `mounts` and `probe` default to this host's; without a usable `stat` nothing is probed.
 */
export const unresponsiveHomes = async (
  homes: ReadonlyArray<{ readonly name: string; readonly home: string }>,
  options: {
    readonly mounts?: () => ReadonlyArray<Mount>
    readonly probe?: (path: string) => Promise<boolean>
  } = {}
): Promise<ReadonlyMap<string, string>> => {
  const mounts = (options.mounts ?? hostMounts)()
  const atRisk = homes.flatMap(({ home, name }) => {
    const mount = mountOf(home, mounts)
    return mount !== undefined && mayHang(mount.fsType) ? [{ name, home, mount }] : []
  })
  if (atRisk.length === 0) return new Map()
  const probe = options.probe ?? hostProbe()
  if (probe === undefined) return new Map()
  // One probe per home, all at once: each is a process that waits, not work.
  const answers = await Promise.all(atRisk.map(({ home }) => probe(home)))
  return new Map(atRisk.flatMap(({ home, mount, name }, i) =>
    answers[i]
      ? []
      : [[name, `its home ${home} is on ${mount.fsType} (${mount.source}), which did not answer within ` +
        `${HOME_PROBE_TIMEOUT_MS / 1000}s; nothing there was touched`] as const]
  ))
}

const hostMounts = (): ReadonlyArray<Mount> => {
  try {
    return parseMountInfo(readFileSync("/proc/self/mountinfo", "utf8"))
  } catch {
    return [] // Not Linux: no mount table to read, nothing probed.
  }
}

const hostProbe = (): ((path: string) => Promise<boolean>) | undefined => {
  const stat = findCommand("stat", SYSTEM_COMMAND_DIRS)
  return Either.isRight(stat) ? (path) => answersWithin(stat.right, path, HOME_PROBE_TIMEOUT_MS) : undefined
}
