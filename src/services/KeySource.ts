/**
 * Fetching one source over HTTP(S) with @effect/platform's HttpClient: the spec's rules (200 only, default
 * User-Agent, request body, per-source timeout) plus a body cap and careful redirects.
 *
 * @since 0.1.0
 */
import { FetchHttpClient, HttpBody, HttpClient, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { Chunk, Context, Effect, Exit, Fiber, FiberRef, Layer, Option, Stream } from "effect"
import { constTrue } from "effect/Function"
import { constants as bufferConstants } from "node:buffer"
import * as zlib from "node:zlib"
import { textToBytes } from "../pipeline/Bytes.js"
import { REQUEST_OWN_HEADERS, type Source } from "../pipeline/Config.js"
import { describeCause, SourceFetchError, SourceTimeout } from "../pipeline/Errors.js"
import { redactUrl } from "../pipeline/Redact.js"
import { discardBody, isOwnResponse, transferCodingProblem, TrustedCaClients } from "./HttpTransport.js"

/** @since 0.1.0 */
export interface FetchOptions {
  /** The body cap (policy.max_response_bytes); default 10 MiB. */
  readonly maxResponseBytes?: number
  /** Trust this PEM file's CAs instead of the system's (the source's or the policy's `ca_file`). */
  readonly caFile?: string | undefined
}

/** @since 0.1.0 */
export class KeySource extends Context.Tag("authkeysync/KeySource")<KeySource, {
  /** The body of a 200 answer as text, or why there is none. */
  readonly fetch: (source: Source, options?: FetchOptions) => Effect.Effect<string, SourceFetchError | SourceTimeout>
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

/**
 * Configured headers, plus `User-Agent: AuthKeySync` unless one is configured (names compare case-insensitively);
 * without Host, Content-Length, Transfer-Encoding and Trailer, which the request sets itself, as in the Go original.
 */
export const requestHeaders = (source: Source): Record<string, string> => {
  // Values go out as their UTF-8 bytes, as Go sends its strings (Node writes a header value one byte per character, and
  // refuses one above U+00FF): `é` is C3 A9 on the wire, not E9, and `€` is sent rather than failing the source.
  const configured = Object.fromEntries(
    Object.entries(source.headers)
      .filter(([name]) => !REQUEST_OWN_HEADERS.has(name.toLowerCase()))
      .map(([name, value]) => [name, textToBytes(value)])
  )
  const userAgent = headerValue(configured, "user-agent")
  if (userAgent === undefined) return { "User-Agent": DEFAULT_USER_AGENT, ...configured }
  // An empty one means none at all, as in Go's client (which then writes no User-Agent line).
  return userAgent === ""
    ? Object.fromEntries(Object.entries(configured).filter(([name]) => name.toLowerCase() !== "user-agent"))
    : configured
}

/** A header's value by case-insensitive name. */
const headerValue = (headers: Readonly<Record<string, string>>, lowerCaseName: string) =>
  Object.entries(headers).find(([key]) => key.toLowerCase() === lowerCaseName)?.[1]

const tooLarge = (url: string, limit: number) =>
  new SourceFetchError({
    url,
    reason: "TooLarge",
    detail: `the body is larger than ${limit} bytes; refusing to use a truncated key list`
  })

/** Key lines are kept as a byte string (one char per byte, see pipeline/Bytes.ts): what a source sends is kept. */
const toByteString = (bytes: Uint8Array) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")

/**
 * The body as sent on the wire, at most `limit` bytes. With a Content-Length within the limit the body is read in one
 * go (the HTTP client enforces the length); otherwise it is streamed and counted, and the download stops at the limit.
 */
const readRawCapped = (response: HttpClientResponse.HttpClientResponse, url: string, limit: number) => {
  const declared = Number(response.headers["content-length"] ?? Number.NaN)
  if (Number.isSafeInteger(declared) && declared >= 0) {
    if (declared > limit) {
      discardBody(response)
      return Effect.fail(tooLarge(url, limit))
    }
    return response.arrayBuffer.pipe(
      Effect.mapError((cause) =>
        new SourceFetchError({
          url,
          reason: "Body",
          detail: `reading the body failed: ${describeCause(cause.cause ?? cause)}`,
          cause
        })
      ),
      Effect.map((buffer) => new Uint8Array(buffer))
    )
  }
  return response.stream.pipe(
    Stream.mapError((cause) =>
      new SourceFetchError({
        url,
        reason: "Body",
        detail: `reading the body failed: ${describeCause(cause.cause ?? cause)}`,
        cause
      })
    ),
    Stream.runFoldEffect({ size: 0, chunks: Chunk.empty<Uint8Array>() }, (acc, bytes) => {
      const size = acc.size + bytes.length
      return size > limit
        ? Effect.fail(tooLarge(url, limit))
        : Effect.succeed({ size, chunks: Chunk.append(acc.chunks, bytes) })
    }),
    Effect.map(({ chunks }): Uint8Array => Buffer.concat(Chunk.toReadonlyArray(chunks)))
  )
}

/** A gzip body decompressed, at most `limit` bytes of it (a small body that inflates past the cap fails). */
const gunzipCapped = (bytes: Uint8Array, url: string, limit: number) =>
  Effect.async<Uint8Array, SourceFetchError>((resume) => {
    // zlib refuses (throws, a defect) a maxOutputLength above the largest Buffer; the config allows any positive cap.
    zlib.gunzip(bytes, { maxOutputLength: Math.min(limit, bufferConstants.MAX_LENGTH) }, (error, result) => {
      if (error === null) return resume(Effect.succeed(result))
      resume(Effect.fail(
        (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE"
          ? tooLarge(url, limit)
          : new SourceFetchError({
            url,
            reason: "Body",
            detail: `the gzip body cannot be decompressed: ${describeCause(error)}`
          })
      ))
    })
  })

/** Content codings that compress (gzip handled on its own); a body in one of them is no key text. */
const COMPRESSING_CODINGS = new Set([
  "gzip",
  "x-gzip",
  "deflate",
  "br",
  "compress",
  "x-compress",
  "zstd",
  "pack200-gzip",
  "exi",
  "aes128gcm"
])

/**
 * The body, at most `limit` bytes. A gzip-encoded body (a pre-compressed object on S3 or a CDN is sent so whatever
 * the request asked for) is decompressed, as Go's net/http does for the Go original, and the cap applies to what it
 * decompresses to; any other compressing encoding fails the source rather than being read as key text (0 keys, keys
 * revoked).
 */
const readCapped = (response: HttpClientResponse.HttpClientResponse, url: string, limit: number) => {
  // Our own client checks this when the body is read; another (fetch) may hand on gzip bytes as if they were the body.
  const transfer = isOwnResponse(response) ? undefined : transferCodingProblem(response.headers["transfer-encoding"])
  if (transfer !== undefined) return Effect.fail(new SourceFetchError({ url, reason: "Body", detail: transfer }))
  const encoding = (response.headers["content-encoding"] ?? "").trim().toLowerCase()
  // Only a coding that compresses makes the body unreadable as text; anything else (a charset put there by a
  // misconfigured server, "none", "binary") is read as it is, as the Go original (net/http) and earlier builds read it.
  const compressed = encoding.split(",").some((coding) => COMPRESSING_CODINGS.has(coding.trim()))
  if (!compressed) return Effect.map(readRawCapped(response, url, limit), toByteString)
  if (encoding === "gzip" || encoding === "x-gzip") {
    return readRawCapped(response, url, limit).pipe(
      Effect.flatMap((bytes) => gunzipCapped(bytes, url, limit)),
      Effect.map(toByteString)
    )
  }
  discardBody(response)
  return Effect.fail(
    new SourceFetchError({
      url,
      reason: "Body",
      detail: "the body has a Content-Encoding other than gzip; refusing to read it as keys"
    })
  )
}

/** What one hop of a fetch sends. */
interface Hop {
  readonly url: string
  readonly method: "GET" | "POST"
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

const buildRequest = (hop: Hop) => {
  let request = HttpClientRequest.make(hop.method)(hop.url)
  // Like the Go original, a configured body is sent with whatever method is configured (GET included).
  if (hop.body !== "") {
    // A raw body carries no Content-Type of its own: like the Go original, only a configured header sets one.
    const bytes = new TextEncoder().encode(hop.body)
    request = HttpClientRequest.setBody(request, HttpBody.raw(bytes, { contentLength: bytes.length }))
  }
  return HttpClientRequest.setHeaders(request, hop.headers)
}

/**
 * `%XX` escapes as the bytes they stand for, as Go's url package unescapes user info (`%E0` is the byte 0xE0, whatever
 * UTF-8 says); undefined for a `%` not followed by two hex digits, which Go refuses as an invalid URL escape.
 */
const percentDecodeBytes = (text: string): Buffer | undefined => {
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) return undefined
  const bytes: Array<number> = []
  for (let i = 0; i < text.length;) {
    if (text[i] === "%") {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16))
      i += 3
    } else {
      const char = String.fromCodePoint(text.codePointAt(i)!)
      bytes.push(...Buffer.from(char, "utf8"))
      i += char.length
    }
  }
  return Buffer.from(bytes)
}

/**
 * The first hop, or why the source's URL cannot be sent. Credentials in the URL (`https://user:pass@host/…`) become
 * Basic auth, as Go's client sends them, unless an Authorization header is configured; the URL itself is sent without
 * them.
 */
const firstHop = (source: Source): Hop | string => {
  const headers = requestHeaders(source)
  if (!source.url.includes("@")) return { url: source.url, method: source.method, headers, body: source.body }
  const url = new URL(source.url)
  if (url.username === "" && url.password === "") {
    return { url: source.url, method: source.method, headers, body: source.body }
  }
  const user = percentDecodeBytes(url.username)
  const pass = percentDecodeBytes(url.password)
  // The credentials themselves are never part of the message.
  if (user === undefined || pass === undefined) return "the URL's user name or password has an invalid % escape"
  url.username = ""
  url.password = ""
  const basic = Buffer.concat([user, Buffer.from(":"), pass]).toString("base64")
  const withAuth = headerValue(headers, "authorization") === undefined
    ? { ...headers, Authorization: `Basic ${basic}` }
    : headers
  return { url: url.toString(), method: source.method, headers: withAuth, body: source.body }
}

/**
 * Where a redirect leads, or why it is not followed. 301/302/303 continue as a GET without body (as browsers and Go
 * do); 307/308 keep method and body but never carry the body to another origin. Configured headers (tokens)
 * stay with the configured origin; only the User-Agent follows.
 */
const nextHop = (hop: Hop, status: number, location: string | undefined): Hop | string => {
  const next = location === undefined ? undefined : parseUrl(location, hop.url)
  if (next === undefined) return `HTTP ${status} without a usable Location header`
  if (next.protocol !== "http:" && next.protocol !== "https:") return `refusing a redirect to a ${next.protocol} URL`
  const current = new URL(hop.url)
  if (current.protocol === "https:" && next.protocol === "http:") return "refusing a redirect from https to plain http"
  // The usual upgrade of a plain http URL to https on the same host (default ports) is the same server over a safer
  // channel: the headers and body it was already sent in clear go along, as Go's net/http keeps Authorization there.
  const upgrade = current.protocol === "http:" && next.protocol === "https:" && current.hostname === next.hostname &&
    current.port === "" && next.port === ""
  const sameOrigin = next.origin === current.origin || upgrade
  const keepsMethod = status === 307 || status === 308
  const method = keepsMethod ? hop.method : "GET"
  const body = keepsMethod ? hop.body : ""
  if (!sameOrigin && body !== "") return "refusing to send the request body to another origin on a redirect"
  const headers = sameOrigin
    ? hop.headers
    : { "User-Agent": headerValue(hop.headers, "user-agent") ?? DEFAULT_USER_AGENT }
  return { url: next.toString(), method, headers, body }
}

/**
 * `self`, or `onTimeout()` once `millis` have passed, with `self` interrupted (its finalizers run) before the failure
 * is returned. Effect.timeoutFail races two forked fibers; one child and a timer do the same job, and on a run of
 * hundreds of sources that difference was a large share of the CPU time.
 */
const withDeadline = <A, E, R, E2>(self: Effect.Effect<A, E, R>, millis: number, onTimeout: () => E2) =>
  Effect.uninterruptibleMask((restore) =>
    // The child ends with its result as a value: a failed source is an answer here, not a fiber that died (which
    // Effect would log at debug level as "Fiber terminated with an unhandled error").
    Effect.flatMap(Effect.fork(Effect.exit(restore(self))), (fiber) =>
      restore(Effect.async<A, E | E2>((resume) => {
        let settled = false
        const settle = (result: Effect.Effect<A, E | E2>) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          resume(result)
        }
        // setTimeout fires at once for delays past 2^31-1 ms (about 24 days); no deadline is that long in practice.
        const delay = Math.min(millis, 2 ** 31 - 1)
        const timer = setTimeout(() => settle(Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(onTimeout()))), delay)
        fiber.addObserver((exit) => settle(Exit.isSuccess(exit) ? exit.value : Exit.failCause(exit.cause)))
        // The caller was interrupted: stop the timer and the work.
        return Effect.suspend(() => {
          settled = true
          clearTimeout(timer)
          return Fiber.interrupt(fiber)
        })
      })))
  )

/** @since 0.1.0 */
export const make = Effect.gen(function*() {
  const defaultClient = yield* HttpClient.HttpClient
  const caClients = yield* Effect.serviceOption(TrustedCaClients)

  const clientFor = (source: Source, caFile: string | undefined) => {
    if (caFile === undefined) return Effect.succeed(defaultClient)
    const fail = (detail: string) => new SourceFetchError({ url: redactUrl(source.url), reason: "Transport", detail })
    return Option.match(caClients, {
      onNone: () => Effect.fail(fail(`ca_file ${caFile} is set, but this HTTP layer cannot load CA files`)),
      onSome: (clients) => clients.forCaFile(caFile).pipe(Effect.mapError((error) => fail(error.detail)))
    })
  }

  // Runs in withDeadline's own fiber, so the two settings below end with the fetch. No traceparent/b3 headers (key
  // servers get the request the Go original sends) and no per-request span, whatever HttpClient is provided: on a
  // 600-request run the spans cost more CPU than the requests themselves.
  const fetchOnce = (source: Source, options: FetchOptions) =>
    Effect.gen(function*() {
      yield* FiberRef.set(HttpClient.currentTracerPropagation, false)
      yield* FiberRef.set(HttpClient.currentTracerDisabledWhen, constTrue)
      const client = yield* clientFor(source, options.caFile)
      // Redirects are followed here, under this module's rules (at most 5, never https to http, headers kept to their
      // origin). A fetch-based client would follow them itself, past every rule, unless told not to.
      const requestInit = {
        ...Option.getOrUndefined(yield* Effect.serviceOption(FetchHttpClient.RequestInit)),
        redirect: "manual" as const
      }
      const shown = redactUrl(source.url)
      const fail = (status: number, detail: string) =>
        new SourceFetchError({ url: shown, reason: "Status", status, detail })
      const first = firstHop(source)
      if (typeof first === "string") {
        return yield* new SourceFetchError({ url: shown, reason: "Transport", detail: first })
      }
      let hop = first
      for (let hops = 0;; hops++) {
        // After a redirect, a failure says where it happened: the configured URL alone sends one looking in vain.
        const at = hops === 0 ? "" : ` (at ${redactUrl(hop.url)}, after ${hops} redirect${hops === 1 ? "" : "s"})`
        const request = buildRequest(hop)
        const response = yield* client.execute(request).pipe(
          Effect.provideService(FetchHttpClient.RequestInit, requestInit),
          Effect.mapError((error) =>
            new SourceFetchError({
              url: shown,
              reason: "Transport",
              detail: describeCause(error.cause ?? error) + at,
              cause: error
            })
          )
        )
        if (response.request.url !== request.url) {
          // A client wrapped in HttpClient.followRedirects answered for another request than the one sent.
          discardBody(response)
          return yield* new SourceFetchError({
            url: shown,
            reason: "Transport",
            detail: "the HttpClient followed a redirect by itself; provide one that does not (redirects are followed " +
              `by this tool, under its own rules)${at}`
          })
        }
        if (response.status !== 200) {
          discardBody(response)
        }
        if (REDIRECT_STATUSES.has(response.status)) {
          if (hops >= MAX_REDIRECTS) return yield* fail(response.status, `more than ${MAX_REDIRECTS} redirects`)
          const next = nextHop(hop, response.status, response.headers["location"])
          if (typeof next === "string") return yield* fail(response.status, next + at)
          hop = next
          continue
        }
        if (response.status !== 200) {
          return yield* fail(response.status, `HTTP ${response.status} (only 200 is accepted)${at}`)
        }
        return yield* readCapped(response, shown, options.maxResponseBytes ?? MAX_RESPONSE_BYTES).pipe(
          Effect.mapError((error) =>
            at === ""
              ? error
              : new SourceFetchError({
                url: error.url,
                reason: error.reason,
                detail: error.detail + at,
                ...(error.status === undefined ? {} : { status: error.status }),
                ...(error.cause === undefined ? {} : { cause: error.cause })
              })
          )
        )
      }
    })

  const fetch = (source: Source, options: FetchOptions = {}) =>
    // One deadline for connecting, redirects and the whole body: a slow-drip server cannot hold the run.
    withDeadline(
      fetchOnce(source, options),
      source.timeout_seconds * 1000,
      () => new SourceTimeout({ url: redactUrl(source.url), timeoutSeconds: source.timeout_seconds })
    )

  return KeySource.of({ fetch })
})

/** Needs an `HttpClient` (e.g. `NodeHttpClient.layer` from @effect/platform-node). @since 0.1.0 */
export const layer: Layer.Layer<KeySource, never, HttpClient.HttpClient> = Layer.effect(KeySource, make)

/** A canned answer per URL: a body (status 200), or a status and body, or a failure. @since 0.1.0 */
export type CannedResponse =
  | string
  | { readonly status: number; readonly body?: string }
  | SourceFetchError
  | SourceTimeout

/** Answers from a table, without any network. Unknown URLs fail like a refused connection. @since 0.1.0 */
export const layerTest = (responses: Readonly<Record<string, CannedResponse>>): Layer.Layer<KeySource> =>
  Layer.succeed(
    KeySource,
    KeySource.of({
      fetch: (source) => {
        const answer = responses[source.url]
        if (answer === undefined) {
          return Effect.fail(
            new SourceFetchError({ url: source.url, reason: "Transport", detail: "ECONNREFUSED: connection refused" })
          )
        }
        if (typeof answer === "string") return Effect.succeed(answer)
        if (answer instanceof SourceFetchError || answer instanceof SourceTimeout) return Effect.fail(answer)
        return answer.status === 200
          ? Effect.succeed(answer.body ?? "")
          : Effect.fail(
            new SourceFetchError({
              url: source.url,
              reason: "Status",
              status: answer.status,
              detail: `HTTP ${answer.status} (only 200 is accepted)`
            })
          )
      }
    })
  )
