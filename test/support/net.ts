/**
 * Network fixtures for the hardening tests: a self-signed certificate made at test time with `openssl`, a tiny
 * forward proxy on 127.0.0.1 that records what it is asked (absolute-form requests and CONNECT tunnels), and
 * hand-written bodies (endless, dripping) that count what they sent and see when the client hung up.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, afterEach, beforeAll } from "vitest"
import { LOOPBACK } from "./httpServer.js"

// =============================================================================
// TLS material
// =============================================================================

/** Why the TLS tests cannot run here (no openssl), or undefined when they can. */
export const opensslMissing = ((): string | undefined => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" })
    return undefined
  } catch {
    return "the `openssl` command is not available, so no test certificate can be made"
  }
})()

export interface SelfSigned {
  readonly dir: string
  /** PEM files: the certificate (also its own CA) and its private key. */
  readonly certFile: string
  readonly keyFile: string
  readonly cert: string
  readonly key: string
  readonly remove: () => void
}

/**
 * The name proxy tests give their key servers (all on 127.0.0.1). Like Go's net/http, the tool never sends requests for
 * localhost or a loopback address through a proxy; it never resolves this name either (the proxy does, to 127.0.0.1),
 * so no lookup leaves the machine.
 */
export const PROXIED_HOST = "keys.proxied.test"

/** A test server's URL (on 127.0.0.1) as proxy tests name it. */
export const proxiedUrl = (url: string): string => url.replace("://127.0.0.1:", `://${PROXIED_HOST}:`)

/** Where the test proxy connects for a host name. */
const resolveForProxy = (host: string): string => (host === PROXIED_HOST ? LOOPBACK : host)

/** A self-signed certificate for 127.0.0.1 (also `localhost` and PROXIED_HOST), valid for a day, in a root-only temp directory. */
export const makeSelfSigned = (commonName = "authkeysync e2e"): SelfSigned => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "akse2e-tls-"))
  const certFile = path.join(dir, "cert.pem")
  const keyFile = path.join(dir, "key.pem")
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "1",
    "-subj",
    `/CN=${commonName}`,
    "-addext",
    `subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:${PROXIED_HOST}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,digitalSignature,keyCertSign"
  ], { stdio: ["ignore", "ignore", "pipe"] })
  return {
    dir,
    certFile,
    keyFile,
    cert: fs.readFileSync(certFile, "utf8"),
    key: fs.readFileSync(keyFile, "utf8"),
    remove: () => fs.rmSync(dir, { recursive: true, force: true })
  }
}

// =============================================================================
// Forward proxy
// =============================================================================

/** One request the proxy received: `GET http://host:port/path` (absolute form) or `CONNECT host:port`. */
export interface ProxiedRequest {
  readonly method: string
  /** The request target exactly as sent: an absolute URL, or `host:port` for CONNECT. */
  readonly target: string
  readonly headers: http.IncomingHttpHeaders
}

/** A forward proxy on 127.0.0.1: forwards absolute-form requests, tunnels CONNECT, records both. */
export class ForwardProxy {
  private server: http.Server | undefined
  private readonly sockets = new Set<net.Socket>()
  private port = 0
  readonly requests: Array<ProxiedRequest> = []

  async start(): Promise<void> {
    if (this.server !== undefined) return
    const server = http.createServer((req, res) => this.forward(req, res))
    server.on(
      "connect",
      (req: http.IncomingMessage, client: net.Socket, head: Buffer) => this.tunnel(req, client, head)
    )
    server.on("connection", (socket: net.Socket) => this.track(socket))
    server.keepAliveTimeout = 1_000
    await new Promise<void>((resolve) => server.listen(0, LOOPBACK, () => resolve()))
    this.port = (server.address() as net.AddressInfo).port
    this.server = server
  }

  /** `http://127.0.0.1:<port>`, for HTTP_PROXY / HTTPS_PROXY. */
  get url(): string {
    return `http://${LOOPBACK}:${this.port}`
  }

  reset(): void {
    this.requests.length = 0
  }

  async close(): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    for (const socket of this.sockets) socket.destroy()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket)
    socket.on("close", () => this.sockets.delete(socket))
    socket.on("error", () => undefined)
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const target = req.url ?? ""
    this.requests.push({ method: req.method ?? "", target, headers: req.headers })
    let url: URL
    try {
      url = new URL(target)
    } catch {
      res.writeHead(400).end("this proxy wants absolute-form requests\n")
      return
    }
    const headers = { ...req.headers }
    delete headers["proxy-connection"]
    delete headers["proxy-authorization"]
    const upstream = http.request(
      {
        host: resolveForProxy(url.hostname),
        port: url.port,
        path: url.pathname + url.search,
        method: req.method,
        headers
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      }
    )
    upstream.on("error", () => res.headersSent ? res.destroy() : res.writeHead(502).end("upstream failed\n"))
    req.pipe(upstream)
  }

  private tunnel(req: http.IncomingMessage, client: net.Socket, head: Buffer): void {
    const target = req.url ?? ""
    this.requests.push({ method: "CONNECT", target, headers: req.headers })
    const colon = target.lastIndexOf(":")
    const upstream = net.connect(
      Number(target.slice(colon + 1)),
      resolveForProxy(target.slice(0, colon).replace(/^\[|\]$/g, "")),
      () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n")
        if (head.length > 0) upstream.write(head)
        upstream.pipe(client)
        client.pipe(upstream)
      }
    )
    this.track(upstream)
    upstream.on("error", () => client.destroy())
    client.on("error", () => upstream.destroy())
    client.on("close", () => upstream.destroy())
    upstream.on("close", () => client.destroy())
  }
}

/** A proxy started before the file's tests, reset after each test and closed after all of them. */
export const useProxy = (): ForwardProxy => {
  const proxy = new ForwardProxy()
  beforeAll(() => proxy.start())
  afterEach(() => proxy.reset())
  afterAll(() => proxy.close())
  return proxy
}

// =============================================================================
// Hand-written bodies
// =============================================================================

/** What a hand-written body sent, and when the client went away. */
export interface BodyStats {
  /** When the request arrived (ms since the epoch). */
  startedAt: number
  /** Body bytes handed to the socket so far. */
  bytes: number
  /** When the connection closed, or undefined while it is open. */
  closedAt: number | undefined
}

export const newStats = (): BodyStats => ({ startedAt: 0, bytes: 0, closedAt: undefined })

/**
 * An endless 200 body made of `chunk` repeated, written as fast as the client reads it (honouring backpressure),
 * until the client hangs up. Chunked unless `contentLength` is given (then that length is declared, and still
 * more is sent than the client could want).
 */
export const endlessBody =
  (stats: BodyStats, chunk: Buffer, contentLength?: number) => (res: http.ServerResponse): void => {
    stats.startedAt = Date.now()
    res.on("close", () => void (stats.closedAt ??= Date.now()))
    res.writeHead(200, {
      "Content-Type": "text/plain",
      ...(contentLength === undefined ? {} : { "Content-Length": String(contentLength) })
    })
    const pump = (): void => {
      while (!res.destroyed && !res.writableEnded) {
        if (contentLength !== undefined && stats.bytes + chunk.length > contentLength) {
          // Never end a declared-length body: the client must not get it whole, whatever it does.
          return
        }
        stats.bytes += chunk.length
        if (!res.write(chunk)) return void res.once("drain", pump)
      }
    }
    pump()
  }

/** Headers at once, then `data` one byte every `everyMs`, looping forever, until the client hangs up. Chunked. */
export const drippingBody = (stats: BodyStats, data: Buffer, everyMs: number) => (res: http.ServerResponse): void => {
  stats.startedAt = Date.now()
  res.writeHead(200, { "Content-Type": "text/plain" })
  res.flushHeaders()
  let i = 0
  const timer = setInterval(() => {
    if (res.destroyed) return
    stats.bytes += 1
    res.write(data.subarray(i % data.length, (i % data.length) + 1))
    i++
  }, everyMs)
  res.on("close", () => {
    stats.closedAt ??= Date.now()
    clearInterval(timer)
  })
}

/** Wait until `check` holds (polling), at most `ms`. */
export const waitFor = async (check: () => boolean, ms = 5_000): Promise<boolean> => {
  const until = Date.now() + ms
  while (!check()) {
    if (Date.now() > until) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}
