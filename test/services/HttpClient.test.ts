/**
 * Our HttpClient (HttpTransport.makeClient) under KeySource, against a real server on 127.0.0.1: what happens to a
 * connection whose body is not wanted, cut short or read twice, and that a fully read one is reused.
 */
import { HttpClientRequest } from "@effect/platform"
import { Effect, Exit, Schema, Stream } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest"
import { Source } from "../../src/pipeline/Config.js"
import * as HttpTransport from "../../src/services/HttpTransport.js"
import * as KeySource from "../../src/services/KeySource.js"
import { fetchSource, runWithTransport } from "../support/keySource.js"

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIclient k\n"

let server: http.Server
let base = ""
let routes: Record<string, (res: http.ServerResponse) => void> = {}
let opened = 0
let closed = 0
const headersSeen: Array<http.IncomingHttpHeaders> = []
let closedWaiters: Array<() => void> = []
let generation = 0

beforeAll(async () => {
  server = http.createServer((req, res) => {
    headersSeen.push(req.headers)
    const route = routes[req.url ?? ""]
    if (route === undefined) return void res.writeHead(404).end()
    route(res)
  })
  server.on("connection", (socket) => {
    opened++
    // Connections of an earlier test that close late are not this test's.
    const test = generation
    socket.on("close", () => {
      if (test !== generation) return
      closed++
      // Swapped out first: a waiter that is not done yet puts itself back for the next close.
      const waiters = closedWaiters
      closedWaiters = []
      waiters.forEach((wake) => wake())
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterEach(() => {
  generation++
  server.closeAllConnections()
  routes = {}
  opened = 0
  closed = 0
  headersSeen.length = 0
})
afterAll(() => {
  server.closeAllConnections()
  server.close()
})

/** Resolves once the server has seen `count` connections close (or fails the test after 5 s). */
const connectionsClosed = (count: number) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${closed} of ${count} connections closed`)), 5000)
    const check = () => {
      if (closed >= count) {
        clearTimeout(timer)
        resolve()
      } else closedWaiters.push(check)
    }
    check()
  })

/** A body that starts and never ends. */
const endless = (status: number, headers: Record<string, string> = {}) => (res: http.ServerResponse) => {
  res.writeHead(status, { "content-type": "text/html", ...headers })
  res.write("<html>")
}

const run = runWithTransport

const fetch = (path: string, timeoutSeconds = 5) => fetchSource(`${base}${path}`, timeoutSeconds)

/** The fetch, then the server's view: one connection closed while the client (and its agents) still live. */
const fetchThenClosed = (path: string, timeoutSeconds = 5) =>
  Effect.flatten(Effect.zipLeft(Effect.exit(fetch(path, timeoutSeconds)), Effect.promise(() => connectionsClosed(1))))

describe("HttpTransport's client", () => {
  it("an error status fails the source at once, without waiting for its body, and closes that connection", async () => {
    routes["/keys"] = endless(500)
    const exit = await run(fetchThenClosed("/keys"))
    expect(exit).toMatchObject({ _tag: "Failure" })
    // The status, not the deadline: waiting for the body that never ends would have ended as a SourceTimeout.
    expect(JSON.stringify(exit)).toContain("HTTP 500 (only 200 is accepted)")
    expect(JSON.stringify(exit)).not.toContain("SourceTimeout")
  })

  it("a redirect is followed without waiting for its body", async () => {
    routes["/old"] = endless(302, { location: "/new" })
    routes["/new"] = (res) => res.writeHead(200, { "content-length": String(KEY.length) }).end(KEY)
    const exit = await run(fetchThenClosed("/old"))
    expect(exit).toEqual(Exit.succeed(KEY))
  })

  it("a body larger than the cap (by Content-Length) is refused without reading it, and its connection closed", async () => {
    routes["/big"] = (res) => {
      res.writeHead(200, { "content-length": String(11 * 1024 * 1024) })
      res.write("ssh-ed25519 ")
    }
    const exit = await run(fetchThenClosed("/big"))
    expect(JSON.stringify(exit)).toContain("larger than 10485760 bytes")
  })

  it("a body cut short by the source's deadline closes its connection", async () => {
    routes["/slow"] = (res) => {
      res.writeHead(200, { "content-length": "1000" })
      res.write("ssh-ed25519 ")
    }
    const exit = await run(fetchThenClosed("/slow", 1))
    expect(exit).toMatchObject({ _tag: "Failure", cause: { error: { _tag: "SourceTimeout" } } })
  })

  it("a short error or redirect body that came with its headers is drained: its connection goes back to the pool", async () => {
    routes["/gone"] = (res) => res.writeHead(404, { "content-length": "9" }).end("not found")
    routes["/moved"] = (res) => res.writeHead(302, { location: "/keys", "content-length": "5" }).end("moved")
    routes["/keys"] = (res) => res.writeHead(200, { "content-length": String(KEY.length) }).end(KEY)
    const fetches = Effect.forEach(
      Array.from({ length: 10 }),
      () => Effect.zip(Effect.flip(fetch("/gone")), fetch("/moved"))
    )
    const exit = await run(fetches)
    expect(exit).toMatchObject({ _tag: "Success" })
    // 30 requests, one after the other: had any connection been kept waiting for a reader, each would need its own.
    expect(headersSeen).toHaveLength(30)
    expect(opened).toBeLessThanOrEqual(3)
  })

  it("a header value Node will not send fails that source with a message, not the run with a defect", async () => {
    const exit = await run(Effect.flatMap(KeySource.KeySource, (keys) =>
      // A control character (sent as UTF-8 like any other, but refused by Node's header check).
      keys.fetch(Schema.decodeUnknownSync(Source)({ url: `${base}/keys`, headers: { "X-Token": "price \u0001" } }))))
    expect(exit).toMatchObject({
      _tag: "Failure",
      cause: { _tag: "Fail", error: { _tag: "SourceFetchError", reason: "Transport" } }
    })
    expect(JSON.stringify(exit)).toContain("ERR_INVALID_CHAR")
  })

  it("connections of bodies read to the end are reused, and no trace headers are sent", async () => {
    routes["/keys"] = (res) => res.writeHead(200, { "content-length": String(KEY.length) }).end(KEY)
    const exit = await run(Effect.zip(fetch("/keys"), fetch("/keys")))
    expect(exit).toEqual(Exit.succeed([KEY, KEY]))
    expect(opened).toBe(1)
    expect(headersSeen).toHaveLength(2)
    for (const headers of headersSeen) {
      expect(Object.keys(headers).sort()).toEqual(["connection", "host", "user-agent"])
    }
  })

  it("a body is read once: a second read fails instead of waiting forever", async () => {
    routes["/keys"] = (res) => res.writeHead(200, { "content-length": String(KEY.length) }).end(KEY)
    const program = Effect.gen(function*() {
      const transport = yield* HttpTransport.makeTransport(undefined)
      const response = yield* HttpTransport.makeClient(transport).execute(HttpClientRequest.get(`${base}/keys`))
      const first = yield* response.text
      const second = yield* Effect.flip(response.text)
      const streamed = yield* Effect.flip(Stream.runCollect(response.stream))
      return { first, second: String(second.cause), streamed: String(streamed.cause) }
    })
    const exit = await Effect.runPromise(Effect.scoped(Effect.exit(program)))
    expect(exit).toMatchObject({ _tag: "Success", value: { first: KEY } })
    if (Exit.isSuccess(exit)) {
      expect(exit.value.second).toContain("the body was already read")
      expect(exit.value.streamed).toContain("the body was already read")
    }
  })

  it("closing the transport ends a request under way at once, and its idle connections too", async () => {
    routes["/keys"] = (res) => res.writeHead(200, { "content-length": String(KEY.length) }).end(KEY)
    routes["/hang"] = () => {} // Never answers.
    const transport = new HttpTransport.Transport(HttpTransport.proxySettings({}), undefined)
    const get = (path: string, signal: AbortSignal) =>
      transport.send(new URL(`${base}${path}`), { method: "GET", headers: {}, body: undefined, signal })
    const hanging = get("/hang", new AbortController().signal)
    const settledHanging = hanging.then(() => "answered", (error: unknown) => `failed: ${String(error)}`)
    // A second connection, answered and read to the end: idle in the pool.
    const answered = await get("/keys", AbortSignal.timeout(5_000))
    for await (const _ of answered) void _
    expect(headersSeen.map((h) => h.host)).toHaveLength(2)
    // The idle connection is closed on a later turn of the event loop: held back here, to see what close() does itself.
    const deferred: Array<() => void> = []
    const spy = vi.spyOn(globalThis, "setImmediate").mockImplementation(
      ((callback: () => void) => {
        deferred.push(callback)
        return { unref: () => {} }
      }) as unknown as typeof setImmediate
    )
    try {
      transport.close()
    } finally {
      spy.mockRestore()
    }
    // The busy connection was destroyed by close() itself, or the request would wait for ever.
    const stillWaiting = new Promise<string>((resolve) => setTimeout(() => resolve("still waiting after 3 s"), 3000))
    expect(await Promise.race([settledHanging, stillWaiting])).toMatch(/^failed: /)
    await connectionsClosed(1)
    expect(deferred).toHaveLength(1)
    deferred.forEach((callback) => callback())
    await connectionsClosed(2)
  })
})
