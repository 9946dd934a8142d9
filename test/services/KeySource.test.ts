/**
 * The live KeySource over a scripted HttpClient: status handling, headers, POST bodies, redirects and the body cap.
 */
import { HttpClient, type HttpClientRequest, HttpClientResponse } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Schema } from "effect"
import { Source } from "../../src/pipeline/Config.js"
import * as KeySource from "../../src/services/KeySource.js"

type Handler = (request: HttpClientRequest.HttpClientRequest) => Response

const withClient = (handler: Handler, requests: Array<HttpClientRequest.HttpClientRequest> = []) =>
  KeySource.layer.pipe(
    Layer.provide(
      Layer.succeed(
        HttpClient.HttpClient,
        HttpClient.make((request) =>
          Effect.sync(() => {
            requests.push(request)
            return HttpClientResponse.fromWeb(request, handler(request))
          })
        )
      )
    )
  )

const source = (raw: Record<string, unknown>) => Schema.decodeUnknownSync(Source)(raw)
const K2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2 two@example"

const fetchWith = (
  handler: Handler,
  raw: Record<string, unknown>,
  requests?: Array<HttpClientRequest.HttpClientRequest>
) =>
  Effect.flatMap(KeySource.KeySource, (ks) => ks.fetch(source(raw))).pipe(Effect.provide(withClient(handler, requests)))

describe("KeySource (live, scripted HttpClient)", () => {
  it.effect("returns the body of a 200", () =>
    Effect.gen(function*() {
      const body = yield* fetchWith(() => new Response("ssh-ed25519 AAAA k\n"), { url: "https://k.example/a" })
      expect(body).toBe("ssh-ed25519 AAAA k\n")
    }))

  it.effect.each([201, 204, 404, 500])("status %i fails the source", (status) =>
    Effect.gen(function*() {
      const error = yield* fetchWith(() => new Response(status === 204 ? null : "x", { status }), {
        url: "https://k.example/a"
      }).pipe(Effect.flip)
      expect(error).toMatchObject({ _tag: "SourceFetchError", reason: "Status", status, url: "https://k.example/a" })
      expect(error.message).toBe(`source https://k.example/a: HTTP ${status} (only 200 is accepted)`)
    }))

  it.effect("POST sends the body without an invented Content-Type, and configured headers win", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      yield* fetchWith(() => new Response("k k\n"), {
        url: "https://k.example/a",
        method: "post",
        body: "{\"role\":\"deploy\"}",
        headers: { "user-agent": "Corp/2.0", Authorization: "Bearer s3cret" }
      }, requests)
      const request = requests[0]!
      expect(request.method).toBe("POST")
      expect(request.headers["user-agent"]).toBe("Corp/2.0")
      expect(request.headers["authorization"]).toBe("Bearer s3cret")
      expect(request.headers["content-type"]).toBeUndefined()
      expect(request.body._tag).toBe("Raw")
      if (request.body._tag === "Raw") {
        expect(new TextDecoder().decode(request.body.body as Uint8Array)).toBe("{\"role\":\"deploy\"}")
      }
    }))

  it.effect("a configured Host, Content-Length or Transfer-Encoding is not sent: the request's own are, as by net/http", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      yield* fetchWith(() => new Response("k k\n"), {
        url: "https://k.example/a",
        method: "POST",
        body: "x=1",
        headers: { Host: "other.example", "Content-Length": "999", "transfer-encoding": "chunked", "X-Team": "ops" }
      }, requests)
      // The body's own length (x=1), not the configured one.
      expect(requests[0]!.headers).toEqual({ "user-agent": "AuthKeySync", "x-team": "ops", "content-length": "3" })
    }))

  it.effect("follows a same-origin redirect with headers, drops them across origins", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      const body = yield* fetchWith(
        (request) => {
          if (request.url === "https://k.example/a") {
            return new Response(null, { status: 302, headers: { location: "/b" } })
          }
          if (request.url === "https://k.example/b") {
            return new Response(null, { status: 307, headers: { location: "https://other.example/c" } })
          }
          return new Response("k k\n")
        },
        { url: "https://k.example/a", headers: { Authorization: "Bearer s3cret" } },
        requests
      )
      expect(body).toBe("k k\n")
      expect(requests.map((r) => [r.url, r.headers["authorization"], r.headers["user-agent"]])).toEqual([
        ["https://k.example/a", "Bearer s3cret", "AuthKeySync"],
        ["https://k.example/b", "Bearer s3cret", "AuthKeySync"],
        ["https://other.example/c", undefined, "AuthKeySync"]
      ])
    }))

  it.effect.each([
    ["file:///etc/passwd", "refusing a redirect to a file: URL"],
    ["http://k.example/plain", "refusing a redirect from https to plain http"]
  ])("refuses a redirect to %s", ([location, detail]) =>
    Effect.gen(function*() {
      const error = yield* fetchWith(
        () => new Response(null, { status: 301, headers: { location: location! } }),
        { url: "https://k.example/a" }
      ).pipe(Effect.flip)
      expect(error.message).toBe(`source https://k.example/a: ${detail}`)
    }))

  it.effect("a failure after a redirect names the hop where it happened, masked", () =>
    Effect.gen(function*() {
      const error = yield* fetchWith(
        (request) =>
          request.url.startsWith("https://k.example/a")
            ? new Response(null, { status: 302, headers: { location: "https://k.example/b?token=s3cret" } })
            : new Response("gone", { status: 404 }),
        { url: "https://k.example/a" }
      ).pipe(Effect.flip)
      expect(error).toMatchObject({
        _tag: "SourceFetchError",
        reason: "Status",
        status: 404,
        url: "https://k.example/a"
      })
      expect(error.message).toBe(
        "source https://k.example/a: HTTP 404 (only 200 is accepted) (at https://k.example/b?token=***, after 1 redirect)"
      )
    }))

  it.effect("stops after 5 redirects", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      const error = yield* fetchWith(
        (request) => new Response(null, { status: 302, headers: { location: `${request.url}x` } }),
        { url: "https://k.example/a" },
        requests
      ).pipe(Effect.flip)
      expect(error.message).toBe("source https://k.example/a: more than 5 redirects")
      expect(requests).toHaveLength(6)
    }))

  it.effect("a body over 10 MiB fails instead of being truncated", () =>
    Effect.gen(function*() {
      const big = "ssh-ed25519 AAAA k\n".repeat(Math.ceil((10 * 1024 * 1024 + 1) / 19))
      const error = yield* fetchWith(() => new Response(big), { url: "https://k.example/a" }).pipe(Effect.flip)
      expect(error._tag).toBe("SourceFetchError")
      expect(error.message).toContain("larger than 10485760 bytes")
    }))

  it.effect("URL credentials and token parameters never appear in errors", () =>
    Effect.gen(function*() {
      const error = yield* fetchWith(() => new Response("x", { status: 403 }), {
        url: "https://bot:hunter2@k.example/a?access_token=abc123&team=ops"
      }).pipe(Effect.flip)
      expect(error.message).toBe(
        "source https://***@k.example/a?access_token=***&team=ops: HTTP 403 (only 200 is accepted)"
      )
    }))

  it.effect("URL credentials are sent as Basic auth, not in the URL; a configured Authorization wins", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      yield* fetchWith(() => new Response("k k\n"), { url: "https://bot:p%40ss@k.example/a" }, requests)
      expect(requests[0]!.url).toBe("https://k.example/a")
      expect(requests[0]!.headers["authorization"]).toBe(`Basic ${Buffer.from("bot:p@ss").toString("base64")}`)
      yield* fetchWith(() => new Response("k k\n"), {
        url: "https://bot:pw@k.example/a",
        headers: { authorization: "Bearer t" }
      }, requests)
      expect(requests[1]!.headers["authorization"]).toBe("Bearer t")
    }))

  it.effect("a POST redirected with 302 becomes a GET without body; 307 on the same origin keeps both", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      const handler = (request: HttpClientRequest.HttpClientRequest) =>
        request.url.endsWith("/a")
          ? new Response(null, { status: 302, headers: { location: "/b" } })
          : request.url.endsWith("/b")
          ? new Response(null, { status: 307, headers: { location: "/c" } })
          : new Response("k k\n")
      yield* fetchWith(handler, { url: "https://k.example/a", method: "POST", body: "secret=1" }, requests)
      expect(requests.map((r) => [r.url, r.method, r.body._tag])).toEqual([
        ["https://k.example/a", "POST", "Raw"],
        ["https://k.example/b", "GET", "Empty"],
        ["https://k.example/c", "GET", "Empty"]
      ])
      const kept: Array<HttpClientRequest.HttpClientRequest> = []
      yield* fetchWith(
        (request) =>
          request.url.endsWith("/a")
            ? new Response(null, { status: 307, headers: { location: "/c" } })
            : new Response("k k\n"),
        { url: "https://k.example/a", method: "POST", body: "secret=1" },
        kept
      )
      expect(kept.map((r) => [r.url, r.method, r.body._tag])).toEqual([
        ["https://k.example/a", "POST", "Raw"],
        ["https://k.example/c", "POST", "Raw"]
      ])
    }))

  it.effect("a POST body is never carried to another origin by a 307/308", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      const error = yield* fetchWith(
        () => new Response(null, { status: 308, headers: { location: "https://evil.example/x" } }),
        { url: "https://k.example/a", method: "POST", body: "token=secret" },
        requests
      ).pipe(Effect.flip)
      expect(error.message).toBe(
        "source https://k.example/a: refusing to send the request body to another origin on a redirect"
      )
      expect(requests).toHaveLength(1)
    }))

  it.effect("a custom User-Agent (any case) follows a cross-origin redirect; other headers do not", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      yield* fetchWith(
        (request) =>
          request.url.startsWith("https://k.example")
            ? new Response(null, { status: 301, headers: { location: "https://cdn.example/k" } })
            : new Response("k k\n"),
        { url: "https://k.example/a", headers: { "user-agent": "Corp/2.0", "X-Token": "t0k" } },
        requests
      )
      expect(requests.map((r) => [r.headers["user-agent"], r.headers["x-token"]])).toEqual([["Corp/2.0", "t0k"], [
        "Corp/2.0",
        undefined
      ]])
    }))

  it.effect("a body configured with GET is sent too, as the Go original does", () =>
    Effect.gen(function*() {
      const requests: Array<HttpClientRequest.HttpClientRequest> = []
      yield* fetchWith(() => new Response("k k\n"), { url: "https://k.example/a", body: "q=1" }, requests)
      expect(requests[0]!.method).toBe("GET")
      expect(requests[0]!.body._tag).toBe("Raw")
      const none: Array<HttpClientRequest.HttpClientRequest> = []
      yield* fetchWith(() => new Response("k k\n"), { url: "https://k.example/a" }, none)
      expect(none[0]!.body._tag).toBe("Empty")
    }))
})

// =============================================================================
// The http -> https upgrade on the same host (found in a review: the headers were dropped)
// =============================================================================

describe("the usual http -> https redirect of the same host keeps the source's Authorization (as Go's net/http)", () => {
  it("http://k.example/keys -> 301 https://k.example/keys carries the Authorization header", async () => {
    const seen: Array<HttpClientRequest.HttpClientRequest> = []
    const handler: Handler = (request) =>
      request.url.startsWith("http:")
        ? new Response(null, { status: 301, headers: { location: request.url.replace("http:", "https:") } })
        : request.headers["authorization"] === "Bearer s3cret"
        ? new Response(`${K2}\n`)
        : new Response("unauthorized", { status: 401 })
    const exit = await Effect.runPromise(
      Effect.exit(
        fetchWith(handler, { url: "http://k.example/keys", headers: { Authorization: "Bearer s3cret" } }, seen)
      )
    )
    expect(seen.map((r) => [r.url, r.headers["authorization"]])).toEqual([
      ["http://k.example/keys", "Bearer s3cret"],
      ["https://k.example/keys", "Bearer s3cret"]
    ])
    expect(exit).toStrictEqual(Exit.succeed(`${K2}\n`))
  })

  it("still dropped for another host, another port, or a downgrade", async () => {
    for (
      const [from, to] of [
        ["http://k.example/keys", "https://other.example/keys"],
        ["http://k.example/keys", "https://k.example:8443/keys"],
        ["http://k.example:8080/keys", "https://k.example/keys"]
      ] as const
    ) {
      const seen: Array<HttpClientRequest.HttpClientRequest> = []
      const handler: Handler = (request) =>
        request.url === from ? new Response(null, { status: 302, headers: { location: to } }) : new Response(`${K2}\n`)
      await Effect.runPromise(fetchWith(handler, { url: from, headers: { Authorization: "Bearer s3cret" } }, seen))
      expect(seen.map((r) => r.headers["authorization"])).toEqual(["Bearer s3cret", undefined])
    }
  })
})
