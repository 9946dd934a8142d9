/**
 * Fetching one source over HTTP(S) with @effect/platform's HttpClient: the spec's rules (200 only, default
 * User-Agent, POST body, per-source timeout) plus a body cap and careful redirects.
 *
 * @since 0.1.0
 */
import { HttpBody, HttpClient, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { Chunk, Context, Duration, Effect, Layer, Stream } from "effect"
import type { Source } from "../pipeline/Config.js"
import { describeCause, SourceFetchError, SourceTimeout } from "../pipeline/Errors.js"
import { redactUrl } from "../pipeline/Redact.js"

/** @since 0.1.0 */
export class KeySource extends Context.Tag("authkeysync/KeySource")<KeySource, {
  /** The body of a 200 answer as text, or why there is none. */
  readonly fetch: (source: Source) => Effect.Effect<string, SourceFetchError | SourceTimeout>
}>() {}

/** The Go original reads at most 10 MiB of a body; past that we fail rather than keep a truncated list. */
export const MAX_RESPONSE_BYTES = 10 * 1024 * 1024
export const MAX_REDIRECTS = 5
export const DEFAULT_USER_AGENT = "AuthKeySync"

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])

const parseUrl = (location: string, base: string): URL | undefined => {
  try {
    return new URL(location, base)
  } catch {
    return undefined
  }
}

/** Configured headers, plus `User-Agent: AuthKeySync` unless one is configured (names compare case-insensitively). */
export const requestHeaders = (source: Source): Record<string, string> => {
  const hasUserAgent = Object.keys(source.headers).some((name) => name.toLowerCase() === "user-agent")
  return hasUserAgent ? { ...source.headers } : { "User-Agent": DEFAULT_USER_AGENT, ...source.headers }
}

const buildRequest = (source: Source, url: string, method: "GET" | "POST", headers: Record<string, string>) => {
  let request = HttpClientRequest.make(method)(url)
  if (method === "POST" && source.body !== "") {
    // A raw body carries no Content-Type of its own: like the Go original, only a configured header sets one.
    const bytes = new TextEncoder().encode(source.body)
    request = HttpClientRequest.setBody(request, HttpBody.raw(bytes, { contentLength: bytes.length }))
  }
  return HttpClientRequest.setHeaders(request, headers)
}

const tooLarge = (url: string, limit: number) =>
  new SourceFetchError({ url, reason: "TooLarge", detail: `the body is larger than ${limit} bytes; refusing to use a truncated key list` })

/** Key lines are kept as bytes (one char per byte), so whatever a source sends is written back unchanged. */
const bytesToText = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")

/**
 * The body, at most `limit` bytes. With a Content-Length within the limit the body is read in one go (the HTTP
 * client enforces the length); otherwise it is streamed and counted, and the download stops at the limit.
 */
const readCapped = (response: HttpClientResponse.HttpClientResponse, url: string, limit: number) => {
  const declared = Number(response.headers["content-length"] ?? Number.NaN)
  if (Number.isSafeInteger(declared) && declared >= 0) {
    if (declared > limit) return Effect.fail(tooLarge(url, limit))
    return response.arrayBuffer.pipe(
      Effect.mapError((cause) =>
        new SourceFetchError({ url, reason: "Body", detail: `reading the body failed: ${describeCause(cause.cause ?? cause)}`, cause })
      ),
      Effect.map((buffer) => bytesToText(new Uint8Array(buffer)))
    )
  }
  return response.stream.pipe(
    Stream.mapError((cause) =>
      new SourceFetchError({ url, reason: "Body", detail: `reading the body failed: ${describeCause(cause.cause ?? cause)}`, cause })
    ),
    Stream.runFoldEffect({ size: 0, chunks: Chunk.empty<Uint8Array>() }, (acc, bytes) => {
      const size = acc.size + bytes.length
      return size > limit ? Effect.fail(tooLarge(url, limit)) : Effect.succeed({ size, chunks: Chunk.append(acc.chunks, bytes) })
    }),
    Effect.map(({ chunks }) => bytesToText(Buffer.concat(Chunk.toReadonlyArray(chunks))))
  )
}

/** @since 0.1.0 */
export const make = Effect.gen(function*() {
  // No traceparent/b3 headers (key servers get the request the Go original sends), and no per-request span: on a
  // 600-request run the spans cost more CPU than the requests themselves.
  const client = (yield* HttpClient.HttpClient).pipe(
    HttpClient.withTracerPropagation(false),
    HttpClient.withTracerDisabledWhen(() => true)
  )

  const fetchOnce = (source: Source) =>
    Effect.gen(function*() {
      const shown = redactUrl(source.url)
      let url = source.url
      let method = source.method
      let headers = requestHeaders(source)
      for (let hop = 0;; hop++) {
        const response = yield* client.execute(buildRequest(source, url, method, headers)).pipe(
          Effect.mapError((error) =>
            new SourceFetchError({ url: shown, reason: "Transport", detail: describeCause(error.cause ?? error), cause: error })
          )
        )
        if (REDIRECT_STATUSES.has(response.status)) {
          const location = response.headers["location"]
          const next = location === undefined ? undefined : parseUrl(location, url)
          if (next === undefined) {
            return yield* new SourceFetchError({ url: shown, reason: "Status", status: response.status, detail: `HTTP ${response.status} without a usable Location header` })
          }
          if (hop >= MAX_REDIRECTS) {
            return yield* new SourceFetchError({ url: shown, reason: "Status", status: response.status, detail: `more than ${MAX_REDIRECTS} redirects` })
          }
          if (next.protocol !== "http:" && next.protocol !== "https:") {
            return yield* new SourceFetchError({ url: shown, reason: "Status", status: response.status, detail: `refusing a redirect to a ${next.protocol} URL` })
          }
          if (new URL(url).protocol === "https:" && next.protocol === "http:") {
            return yield* new SourceFetchError({ url: shown, reason: "Status", status: response.status, detail: "refusing a redirect from https to plain http" })
          }
          // Configured headers (Authorization, tokens) are for the configured origin only.
          if (next.origin !== new URL(url).origin) headers = { "User-Agent": requestHeaders(source)["User-Agent"] ?? DEFAULT_USER_AGENT }
          if (response.status === 303) method = "GET"
          url = next.toString()
          continue
        }
        if (response.status !== 200) {
          return yield* new SourceFetchError({ url: shown, reason: "Status", status: response.status, detail: `HTTP ${response.status} (only 200 is accepted)` })
        }
        return yield* readCapped(response, shown, MAX_RESPONSE_BYTES)
      }
    }).pipe(Effect.scoped)

  const fetch = (source: Source) =>
    fetchOnce(source).pipe(
      // One deadline for connecting, redirects and the whole body: a slow-drip server cannot hold the run.
      Effect.timeoutFail({
        duration: Duration.seconds(source.timeout_seconds),
        onTimeout: () => new SourceTimeout({ url: redactUrl(source.url), timeoutSeconds: source.timeout_seconds })
      })
    )

  return KeySource.of({ fetch })
})

/** Needs an `HttpClient` (e.g. `NodeHttpClient.layer` from @effect/platform-node). @since 0.1.0 */
export const layer: Layer.Layer<KeySource, never, HttpClient.HttpClient> = Layer.effect(KeySource, make)

/** A canned answer per URL: a body (status 200), or a status and body, or a failure. @since 0.1.0 */
export type CannedResponse = string | { readonly status: number; readonly body?: string } | SourceFetchError | SourceTimeout

/** Answers from a table, without any network. Unknown URLs fail like a refused connection. @since 0.1.0 */
export const layerTest = (responses: Readonly<Record<string, CannedResponse>>): Layer.Layer<KeySource> =>
  Layer.succeed(
    KeySource,
    KeySource.of({
      fetch: (source) => {
        const answer = responses[source.url]
        if (answer === undefined) {
          return Effect.fail(new SourceFetchError({ url: source.url, reason: "Transport", detail: "ECONNREFUSED: connection refused" }))
        }
        if (typeof answer === "string") return Effect.succeed(answer)
        if (answer instanceof SourceFetchError || answer instanceof SourceTimeout) return Effect.fail(answer)
        return answer.status === 200
          ? Effect.succeed(answer.body ?? "")
          : Effect.fail(new SourceFetchError({ url: source.url, reason: "Status", status: answer.status, detail: `HTTP ${answer.status} (only 200 is accepted)` }))
      }
    })
  )
