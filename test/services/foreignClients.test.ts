/**
 * KeySource over HttpClients a library user may provide instead of ours: the redirect rules (at most 5, headers kept
 * to their origin) must hold whichever client it is. Found in review: with FetchHttpClient, fetch followed redirects
 * itself (21 hops of a loop, Authorization sent to another origin).
 */
import { FetchHttpClient, HttpClient } from "@effect/platform"
import { Effect, Exit, Layer, Schema } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { gzipSync } from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Source } from "../../src/pipeline/Config.js"
import * as KeySource from "../../src/services/KeySource.js"

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIforeign k\n"
const seen: Array<{ readonly url: string; readonly authorization: string | undefined }> = []
let server: http.Server
let port = 0

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? "", authorization: req.headers.authorization })
    const url = req.url ?? ""
    if (url.startsWith("/loop")) return void res.writeHead(302, { location: `${url}x` }).end()
    // 127.0.0.1 and localhost are two origins.
    if (url === "/cross") return void res.writeHead(302, { location: `http://localhost:${port}/land` }).end()
    if (url === "/land") return void res.writeHead(200, { "content-length": String(KEY.length) }).end(KEY)
    if (url === "/te-gzip") return void res.writeHead(200, { "transfer-encoding": "gzip, chunked" }).end(gzipSync(KEY))
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  port = (server.address() as AddressInfo).port
})
afterAll(() => server.close())

const fetchThrough = (client: Layer.Layer<HttpClient.HttpClient>, path: string) => {
  seen.length = 0
  return Effect.runPromise(Effect.exit(
    Effect.flatMap(KeySource.KeySource, (keys) =>
      keys.fetch(
        Schema.decodeUnknownSync(Source)({
          url: `http://127.0.0.1:${port}${path}`,
          headers: { Authorization: "Bearer s3cret" },
          timeout_seconds: 10
        })
      )).pipe(Effect.provide(KeySource.layer.pipe(Layer.provide(client))))
  ))
}

describe("KeySource over FetchHttpClient", () => {
  it("a redirect loop stops after 5 redirects (fetch is told not to follow them itself)", async () => {
    const exit = await fetchThrough(FetchHttpClient.layer, "/loop")
    expect(JSON.stringify(exit)).toContain("more than 5 redirects")
    expect(seen).toHaveLength(6)
  })

  it("Authorization is not sent to another origin", async () => {
    const exit = await fetchThrough(FetchHttpClient.layer, "/cross")
    expect(exit).toEqual(Exit.succeed(KEY))
    expect(seen).toEqual([
      { url: "/cross", authorization: "Bearer s3cret" },
      { url: "/land", authorization: undefined }
    ])
  })
})

describe("KeySource over FetchHttpClient: transfer codings", () => {
  it("Transfer-Encoding gzip, chunked fails the source, as over this package's own client (found in review)", async () => {
    const exit = await fetchThrough(FetchHttpClient.layer, "/te-gzip")
    expect(JSON.stringify(exit)).toContain("the answer has Transfer-Encoding \\\"gzip, chunked\\\"")
  })
})

describe("KeySource over a client that follows redirects itself", () => {
  it("fails the source instead of using an answer for a request it did not send", async () => {
    const following = Layer.effect(
      HttpClient.HttpClient,
      Effect.map(HttpClient.HttpClient, HttpClient.followRedirects(10))
    ).pipe(Layer.provide(FetchHttpClient.layer))
    const exit = await fetchThrough(following, "/cross")
    expect(JSON.stringify(exit)).toContain("the HttpClient followed a redirect by itself")
  })
})
