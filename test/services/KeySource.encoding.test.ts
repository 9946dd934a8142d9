/**
 * Content-Encoding of a source's body, beyond KeySource.review.test.ts (found in a second review): a gzip body under
 * a body cap larger than zlib accepts, and a Content-Encoding that is no compression. Only loopback traffic.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Cause, Effect, Exit, Layer, Schema } from "effect"
import { Source } from "../../src/pipeline/Config.js"
import * as HttpTransport from "../../src/services/HttpTransport.js"
import * as KeySource from "../../src/services/KeySource.js"

const K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl one@example"

let server: http.Server
let base = ""
beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === "/gz") {
      const gz = zlib.gzipSync(`${K1}\n`)
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "gzip", "content-length": gz.length })
      return void res.end(gz)
    }
    if (req.url === "/utf8") {
      // A common server misconfiguration: a charset in Content-Encoding. Go's net/http ignores it and reads the body.
      res.writeHead(200, { "content-type": "text/plain", "content-encoding": "UTF-8" })
      return void res.end(`${K1}\n`)
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

const fetchLive = (raw: Record<string, unknown>, options?: KeySource.FetchOptions) =>
  Effect.runPromise(
    Effect.flatMap(KeySource.KeySource, (ks) => ks.fetch(Schema.decodeUnknownSync(Source)(raw), options)).pipe(
      Effect.exit,
      Effect.provide(KeySource.layer.pipe(Layer.provide(HttpTransport.layer))),
      Effect.scoped
    )
  )

describe("gzip bodies", () => {
  it("a policy max_response_bytes above 4 GiB (allowed by the config schema) still reads a gzip body, no defect", async () => {
    const exit = await fetchLive({ url: `${base}/gz` }, { maxResponseBytes: 8 * 1024 ** 3 })
    if (Exit.isFailure(exit)) expect(Cause.pretty(exit.cause)).toBe("<no failure>")
    expect(exit).toStrictEqual(Exit.succeed(`${K1}\n`))
  })
})

describe("a Content-Encoding that is no compression", () => {
  it("Content-Encoding: UTF-8 (a charset put in the wrong header) is read as the Go original and the previous build read it", async () => {
    const exit = await fetchLive({ url: `${base}/utf8` })
    expect(exit).toStrictEqual(Exit.succeed(`${K1}\n`))
  })
})
