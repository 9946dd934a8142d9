/**
 * A real HTTP key server for end-to-end tests: node:http on 127.0.0.1, an ephemeral port, canned routes
 * (status, body, headers, delay) and a record of every request it received.
 *
 * The CLI runs in a child process, so this server keeps answering while a test awaits the run.
 */
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { afterAll, afterEach, beforeAll } from "vitest"

export const LOOPBACK = "127.0.0.1"

/** What one route answers. Defaults: status 200, empty body, `Content-Type: text/plain`, no delay. */
export interface Route {
  readonly status?: number
  readonly body?: string | Buffer
  readonly headers?: Readonly<Record<string, string>>
  /** Wait this long before sending anything (status line included). */
  readonly delayMs?: number
  /** Send the status line and headers at once, then wait this long before sending the body. */
  readonly bodyDelayMs?: number
  /**
   * Answer by hand (after `delayMs`): status, headers, body framing and timing are all up to this function
   * (e.g. an endless or dripping body). The other fields are ignored.
   */
  readonly respond?: (res: http.ServerResponse, request: RecordedRequest) => void
}

/** One request as the server saw it. */
export interface RecordedRequest {
  readonly method: string
  /** Path and query, as sent (`/keys?x=1`). */
  readonly url: string
  /** Lower-cased header names (node's parsed form; duplicates of some headers are joined or dropped). */
  readonly headers: http.IncomingHttpHeaders
  /** Header names and values exactly as received, in order (`[name, value, name, value, …]`). */
  readonly rawHeaders: ReadonlyArray<string>
  readonly body: string
}

type RouteSpec = Route | ((request: RecordedRequest) => Route)

/** Serve HTTPS with this key and certificate (PEM) instead of plain HTTP. */
export interface TlsOptions {
  readonly key: string
  readonly cert: string
}

export class TestServer {
  constructor(private tls?: TlsOptions) {}

  private server: http.Server | undefined
  private port = 0
  private readonly routes = new Map<string, RouteSpec>()
  private readonly timers = new Set<NodeJS.Timeout>()
  /** Every request received since the last `reset()`, in arrival order. */
  readonly requests: Array<RecordedRequest> = []

  /** Listen on an ephemeral loopback port; `tls` (here or in the constructor) makes it an HTTPS server. */
  async start(tls?: TlsOptions): Promise<void> {
    if (this.server !== undefined) return
    if (tls !== undefined) this.tls = tls
    const server: http.Server = this.tls === undefined
      ? http.createServer((req, res) => this.handle(req, res))
      : https.createServer({ key: this.tls.key, cert: this.tls.cert }, (req, res) => this.handle(req, res))
    // Never let an idle keep-alive connection hold the test process open.
    server.keepAliveTimeout = 1_000
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(0, LOOPBACK, () => {
        server.off("error", reject)
        resolve()
      })
    })
    this.port = (server.address() as AddressInfo).port
    this.server = server
  }

  /** `http://127.0.0.1:<port><path>` (`https://` for a TLS server). */
  url(path: string): string {
    if (this.server === undefined) throw new Error("TestServer: url() called before start()")
    const scheme = this.tls === undefined ? "http" : "https"
    return `${scheme}://${LOOPBACK}:${this.port}${path.startsWith("/") ? path : `/${path}`}`
  }

  /** `127.0.0.1:<port>`, as a CONNECT request names it. */
  get authority(): string {
    if (this.server === undefined) throw new Error("TestServer: authority read before start()")
    return `${LOOPBACK}:${this.port}`
  }

  get origin(): string {
    return this.url("/").slice(0, -1)
  }

  /** Answer requests for `path` (path and query, exactly as requested) with `spec`. Replaces an earlier route. */
  route(path: string, spec: RouteSpec): this {
    this.routes.set(path, spec)
    return this
  }

  /** Shorthand: 200 with `lines` joined by "\n" plus a final newline. */
  keys(path: string, lines: ReadonlyArray<string>): this {
    return this.route(path, { body: lines.map((l) => `${l}\n`).join("") })
  }

  requestsTo(path: string): Array<RecordedRequest> {
    return this.requests.filter((r) => r.url === path)
  }

  /** Forget routes and recorded requests (between tests). */
  reset(): void {
    this.routes.clear()
    this.requests.length = 0
  }

  async close(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const recorded: RecordedRequest = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        rawHeaders: [...req.rawHeaders],
        body: Buffer.concat(chunks).toString("utf8")
      }
      this.requests.push(recorded)
      const spec = this.routes.get(recorded.url)
      const route: Route = spec === undefined
        ? { status: 404, body: "no such route\n" }
        : typeof spec === "function"
        ? spec(recorded)
        : spec
      const later = (ms: number, f: () => void) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer)
          f()
        }, ms)
        this.timers.add(timer)
        // The client gave up (timeout) or exited: drop the pending answer so nothing keeps the process alive.
        res.on("close", () => {
          clearTimeout(timer)
          this.timers.delete(timer)
        })
      }
      const send = () => {
        if (res.destroyed) return
        if (route.respond !== undefined) return route.respond(res, recorded)
        const body = route.body ?? ""
        res.writeHead(route.status ?? 200, {
          "Content-Type": "text/plain; charset=utf-8",
          "Content-Length": String(Buffer.byteLength(body)),
          ...route.headers
        })
        if (route.bodyDelayMs === undefined || route.bodyDelayMs <= 0) return void res.end(body)
        res.flushHeaders()
        later(route.bodyDelayMs, () => void (res.destroyed || res.end(body)))
      }
      if (route.delayMs === undefined || route.delayMs <= 0) return send()
      later(route.delayMs, send)
    })
  }
}

/** A server started before the file's tests, reset after each test and closed after all of them. */
export const useServer = (tls?: () => TlsOptions): TestServer => {
  const server = new TestServer()
  // A function, so that a certificate made in an earlier beforeAll can be used.
  beforeAll(() => server.start(tls?.()))
  afterEach(() => server.reset())
  afterAll(() => server.close())
  return server
}

/** A loopback URL on a port nothing listens on (bound, then released), for "connection refused". */
export const refusedUrl = async (path = "/keys"): Promise<string> => {
  const probe = http.createServer()
  await new Promise<void>((resolve) => probe.listen(0, LOOPBACK, () => resolve()))
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return `http://${LOOPBACK}:${port}${path}`
}
