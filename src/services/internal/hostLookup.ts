/**
 * Host name lookups for one run's connections.
 *
 * Node resolves a name with getaddrinfo on libuv's thread pool (4 threads by default), and a lookup there cannot be
 * cancelled: against a resolver that never answers, each one holds a thread until the resolver gives up (resolv.conf's
 * timeout x attempts x nameservers, up to 30 s), long after its source's deadline. The same pool runs this tool's
 * fsyncs and file creations, so a few hundred sources on one unreachable name used to queue every user's write behind
 * minutes of lookups. Here each name is looked up once per run (concurrent and later connections share the answer, or
 * the failure), at most `maxConcurrent` lookups run at a time so the pool always has threads for the files, and the
 * lookups still waiting for their turn when the run ends are dropped.
 */
import * as dns from "node:dns"

/** How a name becomes addresses; getaddrinfo (dns.lookup) unless a test supplies another. */
export type ResolveHost = (
  hostname: string,
  options: { readonly family: number; readonly hints: number }
) => Promise<ReadonlyArray<dns.LookupAddress>>

const systemResolve: ResolveHost = (hostname, { family, hints }) =>
  dns.promises.lookup(hostname, { all: true, family, hints })

/** The `lookup` option of net, tls, http and https connections. */
export type LookupFunction = (
  hostname: string,
  options: dns.LookupOptions,
  callback: (error: NodeJS.ErrnoException | null, address: string | Array<dns.LookupAddress>, family?: number) => void
) => void

/** Two of libuv's four threads: the others stay free for fsync and file creation. */
const MAX_CONCURRENT_LOOKUPS = 2

/** A copy per caller: Node's connection code may add to the error it is given (host, port). */
const copyError = (error: unknown): NodeJS.ErrnoException =>
  error instanceof Error ? Object.assign(new Error(error.message), error) : new Error(String(error))

const familyNumber = (family: dns.LookupOptions["family"]): number =>
  family === "IPv4" ? 4 : family === "IPv6" ? 6 : typeof family === "number" ? family : 0

export class HostLookup {
  private readonly answers = new Map<string, Promise<ReadonlyArray<dns.LookupAddress>>>()
  private readonly queue: Array<{ readonly start: () => void; readonly drop: (error: Error) => void }> = []
  private running = 0
  private closed = false

  constructor(
    private readonly resolve: ResolveHost = systemResolve,
    private readonly maxConcurrent: number = MAX_CONCURRENT_LOOKUPS
  ) {}

  /** For the `lookup` option of a connection. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    const family = familyNumber(options.family)
    const hints = options.hints ?? 0
    const key = `${family}/${hints}/${hostname}`
    let answer = this.answers.get(key)
    if (answer === undefined) {
      answer = this.turn().then(() => this.resolve(hostname, { family, hints }).finally(() => this.release()))
      this.answers.set(key, answer)
    }
    answer.then(
      (addresses) => {
        const first = addresses[0]
        if (options.all === true) callback(null, [...addresses])
        else if (first === undefined) callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" }), "")
        else callback(null, first.address, first.family)
      },
      (error) => callback(copyError(error), "")
    )
  }

  /** The run is over: lookups still waiting for their turn fail now, without ever reaching the resolver. */
  close(): void {
    this.closed = true
    for (const waiting of this.queue.splice(0)) waiting.drop(this.cancelled())
  }

  private cancelled(): Error {
    return Object.assign(new Error("host name lookup cancelled: the run has ended"), { code: "ECANCELLED" })
  }

  private turn(): Promise<void> {
    if (this.closed) return Promise.reject(this.cancelled())
    if (this.running < this.maxConcurrent) {
      this.running++
      return Promise.resolve()
    }
    return new Promise((start, drop) => this.queue.push({ start, drop }))
  }

  /** A lookup ended: its slot goes to the next one waiting. */
  private release(): void {
    const next = this.queue.shift()
    if (next === undefined) this.running--
    else next.start()
  }
}
