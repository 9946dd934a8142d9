/**
 * Host name lookups for one run's connections.
 *
 * Node resolves a name with getaddrinfo on libuv's thread pool (4 threads by default), and a lookup there cannot be
 * cancelled: against a resolver that never answers, each one holds a thread until the resolver gives up (resolv.conf's
 * timeout x attempts x nameservers, up to 30 s), long after its source's deadline. The same pool runs this tool's
 * fsyncs and file creations. So on Linux a name is looked up by `getent ahosts` (the same getaddrinfo, the same
 * nsswitch order, /etc/hosts first as usual) in a process of its own, which holds no thread of the pool and is killed
 * when the run ends: two names that never resolve no longer hold the lookups of every other user's sources behind
 * them. Without a usable getent (macOS, a system without one) Node's own lookup is used, at most two at a time so that
 * the pool always has threads for the files.
 *
 * Either way each name is looked up once per run (concurrent and later connections share the answer, or the failure),
 * and the lookups still waiting for their turn when the run ends are dropped.
 */
import { Either } from "effect"
import { execFile } from "node:child_process"
import * as dns from "node:dns"
import { setMaxListeners } from "node:events"
import { isIP } from "node:net"
import { limitConcurrency } from "./limitConcurrency.js"
import { findCommand, SYSTEM_COMMAND_DIRS } from "./systemCommands.js"

/** How a name becomes addresses; `signal` is aborted when the run ends (a lookup that can be stopped stops then). */
export type ResolveHost = (
  hostname: string,
  options: { readonly family: number; readonly hints: number; readonly signal: AbortSignal }
) => Promise<ReadonlyArray<dns.LookupAddress>>

/** Node's getaddrinfo on the thread pool; it cannot be stopped. */
export const nodeResolve: ResolveHost = (hostname, { family, hints }) =>
  dns.promises.lookup(hostname, { all: true, family, hints })

/** How long one `getent ahosts` may run: past every resolver's own give-up time (resolv.conf allows up to 30 s x 3). */
const GETENT_TIMEOUT_MS = 60_000

const lookupError = (code: string, hostname: string, detail?: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`getaddrinfo ${code} ${hostname}${detail === undefined ? "" : ` (${detail})`}`), {
    code,
    hostname
  })

/**
 * The addresses `getent ahosts` printed (`ADDRESS STREAM name`, `ADDRESS DGRAM`, `ADDRESS RAW` per address), each
 * once, in getaddrinfo's order.
 */
export const parseAhosts = (stdout: string): ReadonlyArray<dns.LookupAddress> => {
  const seen = new Set<string>()
  const addresses: Array<dns.LookupAddress> = []
  for (const line of stdout.split("\n")) {
    const address = line.split(/\s+/)[0] ?? ""
    const family = isIP(address)
    if (family === 0 || seen.has(address)) continue
    seen.add(address)
    addresses.push({ address, family })
  }
  return addresses
}

/** The variables glibc's resolver reads (search domain, options, aliases), passed on as the in-process lookup sees them. */
const resolverEnv = (): Record<string, string> => {
  const env: Record<string, string> = { LC_ALL: "C" }
  for (const name of ["LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES"]) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return env
}

/**
 * Lookups by `getent` (`ahosts`, `ahostsv4`, `ahostsv6` by the family asked for), killed when the run ends. A getent
 * that does not know those databases (exit 1: not glibc's, say musl's) hands the name to `fallback`, and so every
 * later name, without asking that getent again.
 */
export const getentResolve = (
  getent: string,
  fallback: ResolveHost = limitConcurrency(nodeResolve, MAX_CONCURRENT_LOOKUPS)
): ResolveHost => {
  let unsupported = false
  return (hostname, options) =>
    unsupported ? fallback(hostname, options) : new Promise((resolve, reject) => {
      const database = options.family === 4 ? "ahostsv4" : options.family === 6 ? "ahostsv6" : "ahosts"
      execFile(
        getent,
        [database, "--", hostname],
        {
          timeout: GETENT_TIMEOUT_MS,
          signal: options.signal,
          encoding: "utf8",
          maxBuffer: 1024 * 1024,
          env: resolverEnv()
        },
        (error, stdout) => {
          const code = error === null ? 0 : error.code
          if (code === 0) {
            const addresses = parseAhosts(stdout)
            return addresses.length > 0 ? resolve(addresses) : reject(lookupError("ENOTFOUND", hostname))
          }
          // getent(1): 2 is "not found", which glibc's getent also says when the resolver did not answer; 1 is a
          // database it does not know.
          if (code === 2) {
            return reject(lookupError("ENOTFOUND", hostname, "no such name, or no answer from the resolver"))
          }
          if (code === 1) {
            unsupported = true
            return void fallback(hostname, options).then(resolve, reject)
          }
          if (options.signal.aborted) return reject(lookupError("ECANCELLED", hostname, "the run has ended"))
          reject(
            error?.killed === true
              ? lookupError("EAI_AGAIN", hostname, `no answer within ${GETENT_TIMEOUT_MS / 1000}s`)
              : lookupError("EAI_FAIL", hostname, `getent ${database} failed: ${String(error?.message).split("\n")[0]}`)
          )
        }
      )
    })
}

/**
 * The host's way: getent from the system's directories on Linux, many at a time (each is a process of its own);
 * Node's lookup otherwise, two at a time.
 */
const systemResolver = (): { readonly resolve: ResolveHost; readonly maxConcurrent: number } => {
  if (process.platform === "linux") {
    const getent = findCommand("getent", SYSTEM_COMMAND_DIRS)
    if (Either.isRight(getent)) return { resolve: getentResolve(getent.right), maxConcurrent: MAX_CONCURRENT_GETENT }
  }
  return { resolve: nodeResolve, maxConcurrent: MAX_CONCURRENT_LOOKUPS }
}

/** The `lookup` option of net, tls, http and https connections. */
export type LookupFunction = (
  hostname: string,
  options: dns.LookupOptions,
  callback: (error: NodeJS.ErrnoException | null, address: string | Array<dns.LookupAddress>, family?: number) => void
) => void

/** Two of libuv's four threads: the others stay free for fsync and file creation. */
const MAX_CONCURRENT_LOOKUPS = 2
/** getent processes at a time: enough that a few names that never resolve do not hold up the others. */
const MAX_CONCURRENT_GETENT = 16

/** A copy per caller: Node's connection code may add to the error it is given (host, port). */
const copyError = (error: unknown): NodeJS.ErrnoException =>
  error instanceof Error ? Object.assign(new Error(error.message), error) : new Error(String(error))

const familyNumber = (family: dns.LookupOptions["family"]): number =>
  family === "IPv4" ? 4 : family === "IPv6" ? 6 : typeof family === "number" ? family : 0

/**
 * How long an answer (or a failure) is shared. A run takes seconds, so each name is looked up once per run; a program
 * that keeps one HTTP layer for many runs (a library user's daemon) asks again after this.
 */
export const ANSWER_LIFETIME_MS = 60_000

export class HostLookup {
  private readonly answers = new Map<
    string,
    { readonly answer: Promise<ReadonlyArray<dns.LookupAddress>>; readonly at: number }
  >()
  private readonly ended = new AbortController()
  private readonly resolve: ResolveHost

  /** With no arguments, the host's way (see systemResolver); a test supplies its own. */
  constructor(resolve?: ResolveHost, maxConcurrent?: number) {
    const system = resolve === undefined ? systemResolver() : undefined
    this.resolve = limitConcurrency(
      resolve ?? system!.resolve,
      maxConcurrent ?? system?.maxConcurrent ?? MAX_CONCURRENT_LOOKUPS,
      { signal: this.ended.signal, dropped: cancelled }
    )
    // Every lookup under way listens for the end of the run (up to MAX_CONCURRENT_GETENT at once): no leak warning.
    setMaxListeners(0, this.ended.signal)
  }

  /** For the `lookup` option of a connection. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    const family = familyNumber(options.family)
    const hints = options.hints ?? 0
    const key = `${family}/${hints}/${hostname}`
    const now = Date.now()
    const known = this.answers.get(key)
    let answer = known !== undefined && now - known.at < ANSWER_LIFETIME_MS ? known.answer : undefined
    if (answer === undefined) {
      answer = this.resolve(hostname, { family, hints, signal: this.ended.signal })
      this.answers.set(key, { answer, at: now })
    }
    answer.then(
      (addresses) => {
        const first = addresses[0]
        if (options.all === true) callback(null, [...addresses])
        else if (first === undefined) {
          callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" }), "")
        } else callback(null, first.address, first.family)
      },
      (error) => callback(copyError(error), "")
    )
  }

  /**
   * The run is over: lookups still waiting for their turn fail now, without ever reaching the resolver, and those
   * under way stop where they can (a getent is killed).
   */
  close(): void {
    this.ended.abort()
  }
}

const cancelled = (): Error =>
  Object.assign(new Error("host name lookup cancelled: the run has ended"), { code: "ECANCELLED" })
