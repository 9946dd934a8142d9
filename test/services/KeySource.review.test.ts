/**
 * Found in reviews of the HTTP fetch path: compressed bodies (Content-Encoding), password-like query parameters, a
 * body cut off by a connection reset, percent escapes in URL credentials, kept-alive connections reset on reuse, and
 * non-ASCII header values.
 * Each test failed before its fix, but F5's POST case, which guards the limit of that fix. (The http -> https upgrade
 * redirect is in KeySource.test.ts.)
 *
 * Only loopback traffic: every server here listens on 127.0.0.1.
 */
import { Cause, Effect, Exit, Layer, LogLevel, Schema } from "effect"
import * as http from "node:http"
import * as net from "node:net"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Config, decodeConfigValue, Source } from "../../src/pipeline/Config.js"
import { redactUrl } from "../../src/pipeline/Redact.js"
import { runAll } from "../../src/pipeline/runAll.js"
import * as Accounts from "../../src/services/Accounts.js"
import * as HttpTransport from "../../src/services/HttpTransport.js"
import * as KeySource from "../../src/services/KeySource.js"
import * as Logging from "../../src/services/Logging.js"
import * as ManagedKeys from "../../src/services/ManagedKeys.js"
import * as RandomId from "../../src/services/RandomId.js"
import * as SshFiles from "../../src/services/SshFiles.js"

const K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl one@example"
const K2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2 two@example"
const alice = { name: "alice", uid: 1001, gid: 1001, home: "/home/alice" }
const build = { version: "v9.9.9", commit: "abc123", built: "2026-01-01T00:00:00Z" }

const config = (raw: unknown): Config => {
  const decoded = decodeConfigValue("test.yaml", raw)
  if (decoded._tag === "Left") throw new Error(decoded.left.message)
  return decoded.right.config
}

// A loopback key server. `/gz` answers like an S3/CloudFront object stored pre-compressed (Content-Encoding: gzip
// metadata): the gzip bytes whatever the request's Accept-Encoding says.
let server: http.Server
let base = ""
const requests: Array<http.IncomingHttpHeaders> = []
beforeAll(async () => {
  server = http.createServer((req, res) => {
    requests.push(req.headers)
    if (req.url === "/gz") {
      const gz = zlib.gzipSync(`${K1}\n`)
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip", "content-length": gz.length })
      return void res.end(gz)
    }
    if (req.url === "/gz-chunked") {
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip" })
      return void res.end(zlib.gzipSync(`${K1}\n`))
    }
    if (req.url === "/gz-bomb") {
      // 1 KiB on the wire, 64 MiB once decompressed.
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip" })
      return void res.end(zlib.gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x61), { level: 9 }))
    }
    if (req.url === "/br") {
      const br = zlib.brotliCompressSync(`${K1}\n`)
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "br", "content-length": br.length })
      return void res.end(br)
    }
    if (req.url === "/utf8") {
      // A common server misconfiguration: a charset in Content-Encoding. Go's net/http ignores it and reads the body.
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "UTF-8" })
      return void res.end(`${K1}\n`)
    }
    if (req.url === "/plain") {
      res.writeHead(200, { "content-type": "text/plain" })
      return void res.end(`${K2}\n`)
    }
    res.writeHead(404).end()
  })
  server.keepAliveTimeout = 500
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

const liveKeySource = KeySource.layer.pipe(Layer.provide(HttpTransport.layer))

/** alice's ~/.ssh in memory (with `file` as her authorized_keys, if given), and every other service but the keys. */
const aliceWorld = (keySource: Layer.Layer<KeySource.KeySource>, file?: string) => {
  const fs = new SshFiles.MemoryFs()
  fs.mkdir("/home/alice/.ssh", alice)
  if (file !== undefined) fs.writeFile("/home/alice/.ssh/authorized_keys", file, alice)
  const logs: Array<Logging.LogRecord> = []
  const layer = Layer.mergeAll(
    ManagedKeys.layerMemory({}, new Map()),
    Accounts.layerTest([alice]),
    SshFiles.layerMemory(fs),
    keySource,
    RandomId.layerTest(["aaaaaa", "bbbbbb", "cccccc", "dddddd"]),
    Logging.layerCapture(logs, LogLevel.Debug)
  )
  return { fs, logs, layer }
}

const fetchLive = (raw: Record<string, unknown>, options?: KeySource.FetchOptions) =>
  Effect.runPromise(
    Effect.flatMap(KeySource.KeySource, (ks) => ks.fetch(Schema.decodeUnknownSync(Source)(raw), options)).pipe(
      Effect.exit,
      Effect.provide(liveKeySource),
      Effect.scoped
    )
  )

// =============================================================================
// F1: Content-Encoding is ignored
// =============================================================================

describe("F1: a compressed 200 body is never used as key text", () => {
  it("a gzip-encoded body (Content-Length) gives the keys, as the Go original (net/http) gives them", async () => {
    const exit = await fetchLive({ url: `${base}/gz` })
    expect(exit).toStrictEqual(Exit.succeed(`${K1}\n`))
  })

  it("a gzip-encoded chunked body gives the keys too", async () => {
    const exit = await fetchLive({ url: `${base}/gz-chunked` })
    expect(exit).toStrictEqual(Exit.succeed(`${K1}\n`))
  })

  it("the body cap counts decompressed bytes: a gzip bomb fails as TooLarge", async () => {
    const exit = await fetchLive({ url: `${base}/gz-bomb` })
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).toContain("TooLarge")
  })

  it("a policy max_response_bytes above 4 GiB (allowed by the config schema) still reads a gzip body, no defect", async () => {
    const exit = await fetchLive({ url: `${base}/gz` }, { maxResponseBytes: 8 * 1024 ** 3 })
    if (Exit.isFailure(exit)) expect(Cause.pretty(exit.cause)).toBe("<no failure>")
    expect(exit).toStrictEqual(Exit.succeed(`${K1}\n`))
  })

  it("Content-Encoding: UTF-8 (a charset put in the wrong header) is read as the Go original and earlier builds read it", async () => {
    const exit = await fetchLive({ url: `${base}/utf8` })
    expect(exit).toStrictEqual(Exit.succeed(`${K1}\n`))
  })

  it("an encoding the client cannot decode (br) fails the source instead of yielding 0 keys", async () => {
    const exit = await fetchLive({ url: `${base}/br` })
    expect(Exit.isFailure(exit)).toBe(true)
  })

  it("end to end: a source served gzip-encoded does not make the tool delete its keys from authorized_keys", async () => {
    // The file as a previous run wrote it: K1 from the gzip source, K2 from the plain one.
    const { fs, layer } = aliceWorld(liveKeySource, `${K1}\n${K2}\n`)
    const cfg = config({
      policy: { preserve_local_keys: false, backup_enabled: false },
      users: [{ username: "alice", sources: [{ url: `${base}/gz` }, { url: `${base}/plain` }] }]
    })
    await Effect.runPromise(
      runAll(cfg, { dryRun: false, concurrency: 1, build }).pipe(Effect.provide(layer), Effect.scoped)
    )
    // K1 must still be there: either the source was decoded (Go behaviour) or it failed and the file was left alone.
    expect(fs.read("/home/alice/.ssh/authorized_keys")).toContain(K1)
  })
})

// =============================================================================
// F2: token-like query parameters that redactUrl does not mask
// =============================================================================

describe("F2: password-like query parameters are masked", () => {
  it.each([
    ["https://k.example/raw?pass=hunter2", "hunter2"],
    ["https://k.example/raw?passphrase=hunter2", "hunter2"],
    ["https://k.example/raw?user=bob&pw=hunter2", "hunter2"],
    ["https://k.example/raw?jwt=eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"],
    ["https://k.example/raw?bearer=tok_ABC", "tok_ABC"]
  ])("%s", (url, secret) => {
    expect(redactUrl(url)).not.toContain(secret)
  })

  it("end to end: the `# Source:` line of authorized_keys (readable by the user) and the logs do not show ?pass=", async () => {
    const url = "https://keys.example/raw?user=alice&pass=hunter2"
    const { fs, layer, logs } = aliceWorld(KeySource.layerTest({ [url]: `${K2}\n` }))
    const cfg = config({ users: [{ username: "alice", sources: [{ url }] }] })
    await Effect.runPromise(runAll(cfg, { dryRun: false, concurrency: 1, build }).pipe(Effect.provide(layer)))
    const written = fs.read("/home/alice/.ssh/authorized_keys")
    expect(written).toContain(K2)
    expect(written).not.toContain("hunter2")
    expect(JSON.stringify(logs)).not.toContain("hunter2")
  })
})

// =============================================================================
// F3: a connection reset in the middle of a body that runs to the close of the connection
// =============================================================================

describe("F3: a body cut off by a connection reset is a failed source, never a shorter key list", () => {
  // A raw server: the status line and headers, then a body with no Content-Length and no chunking (it ends when the
  // connection closes), then the second key's first 40 bytes, then a reset (RST) or an orderly close (FIN).
  let raw: net.Server
  let rawBase = ""
  beforeAll(async () => {
    raw = net.createServer((socket) => {
      socket.once("data", (request) => {
        const reset = request.toString("latin1").startsWith("GET /reset ")
        socket.write(
          `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${K1}\n${K2.slice(0, 40)}`
        )
        setTimeout(() => (reset ? socket.resetAndDestroy() : socket.end()), 50)
      })
      socket.on("error", () => {})
    })
    await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve))
    rawBase = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((resolve) => raw.close(() => resolve())))

  it("a reset fails the source (the Go original's read fails with 'connection reset'); nothing of the body is used", async () => {
    const exit = await fetchLive({ url: `${rawBase}/reset` })
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(Cause.pretty(exit.cause)).toContain("ECONNRESET")
  })

  it("an orderly close ends such a body: it is the whole answer, as in HTTP/1.0 and in Go", async () => {
    const exit = await fetchLive({ url: `${rawBase}/close` })
    expect(exit).toStrictEqual(Exit.succeed(`${K1}\n${K2.slice(0, 40)}`))
  })

  it("end to end: the reset leaves authorized_keys as it was, both keys kept, and fails the user", async () => {
    const { fs, layer } = aliceWorld(liveKeySource, `${K1}\n${K2}\n`)
    const cfg = config({
      policy: { preserve_local_keys: false },
      users: [{ username: "alice", sources: [{ url: `${rawBase}/reset` }] }]
    })
    const summary = await Effect.runPromise(
      runAll(cfg, { dryRun: false, concurrency: 1, build }).pipe(Effect.provide(layer))
    )
    expect(summary.exitCode).toBe(1)
    expect(fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${K1}\n${K2}\n`)
  })
})

// =============================================================================
// F4: percent escapes in the URL's credentials
// =============================================================================

describe("F4: credentials in the URL are unescaped as Go does, and a bad escape fails only its source", () => {
  it("%E0 (not UTF-8 on its own) is sent as that byte in Basic auth, as Go's url package unescapes it", async () => {
    requests.length = 0
    const exit = await fetchLive({ url: `${base.replace("http://", "http://u%201:p%E0ss@")}/plain` })
    expect(exit).toStrictEqual(Exit.succeed(`${K2}\n`))
    const expected = Buffer.concat([Buffer.from("u 1:p"), Buffer.from([0xe0]), Buffer.from("ss")]).toString("base64")
    expect(requests.at(-1)?.authorization).toBe(`Basic ${expected}`)
  })

  it("a % not followed by two hex digits fails the source with a message that does not show the credentials", async () => {
    const exit = await fetchLive({ url: `${base.replace("http://", "http://user:SECRET%zz@")}/plain` })
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) {
      // A failure of the source (SourceFetchError), not a defect ("internal error").
      expect(Cause.isDie(exit.cause)).toBe(false)
      const pretty = Cause.pretty(exit.cause)
      expect(pretty).toContain("the URL's user name or password has an invalid % escape")
      expect(pretty).not.toContain("SECRET")
    }
  })
})

// =============================================================================
// F5: a kept-alive connection that the server closes as it is reused
// =============================================================================

describe("F5: a GET on a reused connection that the server reset is sent again once, on a new connection", () => {
  // Answers the first request of each connection (keep-alive, with a Content-Length) and resets the connection when
  // a second request arrives on it: what a server whose idle timeout fires just as the client reuses the connection
  // looks like to the client.
  let raw: net.Server
  let rawBase = ""
  let connections = 0
  beforeAll(async () => {
    raw = net.createServer((socket) => {
      connections++
      let seen = 0
      socket.on("data", () => {
        if (++seen === 1) {
          socket.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${K1.length + 1}\r\n\r\n${K1}\n`)
        } else {
          socket.resetAndDestroy()
        }
      })
      socket.on("error", () => {})
    })
    await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve))
    rawBase = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((resolve) => raw.close(() => resolve())))

  const twice = (method: string) =>
    Effect.runPromise(
      Effect.gen(function*() {
        const ks = yield* KeySource.KeySource
        const source = Schema.decodeUnknownSync(Source)({ url: `${rawBase}/keys`, method })
        const first = yield* Effect.exit(ks.fetch(source))
        const second = yield* Effect.exit(ks.fetch(source))
        return [first, second] as const
      }).pipe(Effect.provide(liveKeySource), Effect.scoped)
    )

  it("GET: both fetches give the keys; the second took a new connection", async () => {
    connections = 0
    const [first, second] = await twice("GET")
    expect(first).toStrictEqual(Exit.succeed(`${K1}\n`))
    expect(second).toStrictEqual(Exit.succeed(`${K1}\n`))
    expect(connections).toBe(2)
  })

  it("POST is not sent twice (it may not be safe to repeat, and Go does not either): the source fails", async () => {
    connections = 0
    const [first, second] = await twice("POST")
    expect(first).toStrictEqual(Exit.succeed(`${K1}\n`))
    expect(Exit.isFailure(second)).toBe(true)
    if (Exit.isFailure(second)) expect(Cause.pretty(second.cause)).toContain("ECONNRESET")
    expect(connections).toBe(1)
  })
})

// =============================================================================
// F6: non-ASCII header values
// =============================================================================

describe("F6: a header value goes out as its UTF-8 bytes, as the Go original sends it", () => {
  it("`Zürich €`: the server receives the UTF-8 bytes (not Latin-1 for ü, and € is sent rather than refused)", async () => {
    requests.length = 0
    const exit = await fetchLive({ url: `${base}/plain`, headers: { "X-Team": "Zürich €" } })
    expect(exit).toStrictEqual(Exit.succeed(`${K2}\n`))
    // Node's server gives header values one character per byte.
    expect(Buffer.from(String(requests.at(-1)?.["x-team"]), "latin1")).toEqual(Buffer.from("Zürich €", "utf8"))
  })
})
