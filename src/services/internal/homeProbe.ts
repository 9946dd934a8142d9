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
import { Either } from "effect"
import { spawn } from "node:child_process"
import { lstatSync, readFileSync, readlinkSync } from "node:fs"
import { posix } from "node:path"
import { limitConcurrency } from "./limitConcurrency.js"
import { findCommand, SYSTEM_COMMAND_DIRS } from "./systemCommands.js"

/** One line of /proc/self/mountinfo, the parts that matter here. */
export interface Mount {
  readonly mountPoint: string
  readonly fsType: string
  readonly source: string
}

/** mountinfo writes a space, tab, newline and backslash in a path as an octal escape (`\040`). */
const unescapeMountPath = (text: string) =>
  text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))

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
  "nfs",
  "nfs4",
  "cifs",
  "smb3",
  "smbfs",
  "ceph",
  "glusterfs",
  "9p",
  "afs",
  "lustre",
  "gpfs",
  "beegfs",
  "ocfs2",
  "gfs2",
  // An automount point: the home is mounted (from a server) when it is first looked at.
  "autofs"
])

/** Whether a filesystem type can stop answering with its server: the network ones, automounts and FUSE. */
export const mayHang = (fsType: string): boolean => NETWORK_FS_TYPES.has(fsType) || fsType.startsWith("fuse")

/** How long a home's filesystem has to answer a `stat`. */
export const HOME_PROBE_TIMEOUT_MS = 10_000

/** Probes at a time: each is a process (a long list of network homes must not run into the host's process limit). */
const MAX_CONCURRENT_PROBES = 32

/** How a probe ended: it answered (however), it did not in time, or it could not be started. */
export type ProbeAnswer = "answered" | "hung" | { readonly failed: string }

/**
 * Whether `stat -L -- path`, run by `stat`, ends within `timeoutMs` (how it ends does not matter: an error is the main
 * thread's to report). A child that does not end, or that is still running when `signal` aborts, is killed and let
 * go: one stuck in a hung mount may not die, and the run must not wait for it.
 */
export const answersWithin = (
  stat: string,
  path: string,
  timeoutMs: number,
  signal?: AbortSignal
): Promise<ProbeAnswer> =>
  new Promise((resolve) => {
    if (signal?.aborted === true) return resolve("hung")
    const child = spawn(stat, ["-L", "--", path], { stdio: "ignore", env: { LC_ALL: "C" } })
    const settle = (answer: ProbeAnswer) => {
      clearTimeout(timer)
      signal?.removeEventListener("abort", giveUp)
      resolve(answer)
    }
    const giveUp = () => {
      child.kill("SIGKILL")
      child.unref()
      settle("hung")
    }
    const timer = setTimeout(giveUp, timeoutMs)
    signal?.addEventListener("abort", giveUp, { once: true })
    // Not started (EAGAIN at the process limit, say): the home was not looked at, so it is not touched either.
    child.once("error", (error) => settle({ failed: error.message }))
    child.once("exit", () => settle("answered"))
  })

/** How the walk below reads the local part of the way. */
export interface LocalLinks {
  readonly isSymbolicLink: (path: string) => boolean | undefined
  readonly readlink: (path: string) => string
}

const hostLinks: LocalLinks = {
  isSymbolicLink: (path) => lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink(),
  readlink: (path) => readlinkSync(path)
}

/** More links than this on the way is a loop: the main walk refuses it; nothing to probe. */
const MAX_LINKS = 40

/**
 * Where the way to `home` first reaches a filesystem that may hang, and what is left of the way from there (to probe
 * it from another process, links included), or undefined when the whole way is on filesystems that cannot hang.
 * Walks one name at a time from `/`, as the kernel does, following links (read with lstat and readlink, which is
 * safe: only on the filesystems that cannot hang); a name that does not exist ends the walk (the main walk reports it).
 */
export const firstRiskyStep = (
  home: string,
  mounts: ReadonlyArray<Mount>,
  links: LocalLinks = hostLinks
): { readonly path: string; readonly mount: Mount } | undefined => {
  let current = "/"
  const pending = home.split("/").filter((part) => part !== "")
  let hops = 0
  const risky = (path: string) => {
    const mount = mountOf(path, mounts)
    return mount !== undefined && mayHang(mount.fsType) ? mount : undefined
  }
  const atRoot = risky("/")
  if (atRoot !== undefined) return { path: posix.resolve(home), mount: atRoot }
  while (pending.length > 0) {
    const name = pending.shift()!
    if (name === ".") continue
    if (name === "..") {
      current = posix.dirname(current)
      continue
    }
    const next = posix.join(current, name)
    const mount = risky(next)
    if (mount !== undefined) {
      // Named by the filesystem the rest of the way is on as far as the mount table tells (an automount's NFS).
      const path = posix.join(next, ...pending)
      return { path, mount: mountOf(path, mounts) ?? mount }
    }
    let isLink: boolean | undefined
    try {
      isLink = links.isSymbolicLink(next)
    } catch {
      return undefined
    }
    if (isLink === undefined) return undefined
    if (isLink) {
      if (++hops > MAX_LINKS) return undefined
      let target: string
      try {
        target = links.readlink(next)
      } catch {
        return undefined // Changed since the look (a user swapping it): the main walk will see what is there.
      }
      if (target.startsWith("/")) current = "/"
      pending.unshift(...target.split("/").filter((part) => part !== ""))
      continue
    }
    current = next
  }
  return undefined
}

/**
 * For each home on (or reached through) a filesystem that may hang, whether it answered: the homes (by account name)
 * that did not, with why. `mounts`, `links` and `probe` default to this host's; without a usable `stat` nothing is
 * probed. Aborting `signal` (the run is stopped) lets the probes still running go.
 */
export const unresponsiveHomes = async (
  homes: ReadonlyArray<{ readonly name: string; readonly home: string }>,
  options: {
    readonly mounts?: () => ReadonlyArray<Mount>
    readonly links?: LocalLinks
    readonly probe?: (path: string, signal?: AbortSignal) => Promise<ProbeAnswer>
    readonly signal?: AbortSignal
  } = {}
): Promise<ReadonlyMap<string, string>> => {
  const mounts = (options.mounts ?? hostMounts)()
  const atRisk = homes.flatMap(({ home, name }) => {
    const step = mounts.some((mount) => mayHang(mount.fsType)) ? firstRiskyStep(home, mounts, options.links) : undefined
    return step === undefined ? [] : [{ name, home, ...step }]
  })
  if (atRisk.length === 0) return new Map()
  const probe = options.probe ?? hostProbe()
  if (probe === undefined) return new Map()
  const limited = limitConcurrency(probe, MAX_CONCURRENT_PROBES)
  const answered = await Promise.all(
    atRisk.map(async (step) => ({ ...step, answer: await limited(step.path, options.signal) }))
  )
  return new Map(answered.flatMap(({ answer, home, mount, name }) => {
    const on = `its home ${home} is on ${mount.fsType} (${mount.source})`
    return answer === "answered" ? [] : [
      [
        name,
        answer === "hung"
          ? `${on}, which did not answer within ${HOME_PROBE_TIMEOUT_MS / 1000}s; nothing there was touched`
          : `${on} and could not be looked at from another process first (${answer.failed}); nothing there was touched`
      ] as const
    ]
  }))
}

const hostMounts = (): ReadonlyArray<Mount> => {
  try {
    return parseMountInfo(readFileSync("/proc/self/mountinfo", "utf8"))
  } catch {
    return [] // Not Linux: no mount table to read, nothing probed.
  }
}

const hostProbe = (): ((path: string, signal?: AbortSignal) => Promise<ProbeAnswer>) | undefined => {
  const stat = findCommand("stat", SYSTEM_COMMAND_DIRS)
  return Either.isRight(stat)
    ? (path, signal) => answersWithin(stat.right, path, HOME_PROBE_TIMEOUT_MS, signal)
    : undefined
}
