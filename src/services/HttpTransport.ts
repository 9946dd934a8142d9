/**
 * The HTTP stack under KeySource: @effect/platform's HttpClient over undici, with proxies taken from the environment
 * by undici's own proxy agents, and an extra client per `ca_file` that trusts that file's certificates instead of
 * the system's.
 *
 * Proxies are read as the Go original (net/http) reads them: `HTTP_PROXY` for http URLs only, `HTTPS_PROXY` for https
 * URLs only, `NO_PROXY` for both (upper case first, then lower case). An http request goes to the proxy as an
 * ordinary proxy request (absolute URL), an https one through a CONNECT tunnel.
 *
 * @since 0.2.0
 */
import { readFile } from "node:fs/promises"
import {
  Cookies,
  Headers,
  HttpClient,
  HttpClientError,
  type HttpClientRequest,
  HttpClientResponse,
  HttpIncomingMessage,
  UrlParams
} from "@effect/platform"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Context, Effect, Inspectable, Layer, Option, Scope, type Stream } from "effect"
import { Agent, Dispatcher, EnvHttpProxyAgent } from "undici"
import { describeCause } from "../pipeline/Errors.js"

/** HttpClients that trust a given CA file. Optional: without it, a source with `ca_file` fails. @since 0.2.0 */
export class TrustedCaClients extends Context.Tag("authkeysync/TrustedCaClients")<TrustedCaClients, {
  /** The client for `caFile`, made once per file and run; fails with a one-line reason. */
  readonly forCaFile: (caFile: string) => Effect.Effect<HttpClient.HttpClient, string>
}>() {}

/** Agent options that make every connection (direct or through a proxy's CONNECT tunnel) trust only `ca`. */
const tlsOptions = (ca: string | undefined): EnvHttpProxyAgent.Options =>
  ca === undefined ? {} : { connect: { ca }, requestTls: { ca } }

/** The first of the variables that is set, in Go's order (`HTTPS_PROXY` before `https_proxy`). */
const fromEnv = (name: string): string | undefined => {
  const value = process.env[name.toUpperCase()] || process.env[name.toLowerCase()]
  return value === "" ? undefined : value
}

/** Sends each request to the agent for its scheme, or fails it when that scheme's proxy variable is unusable. */
class SchemeRouter extends Dispatcher {
  constructor(
    private readonly forHttp: Dispatcher,
    private readonly forHttps: Dispatcher,
    private readonly problems: { readonly http?: string | undefined; readonly https?: string | undefined } = {}
  ) {
    super()
  }
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const https = String(options.origin ?? "").startsWith("https:")
    const problem = https ? this.problems.https : this.problems.http
    // Thrown here, undici fails just this request with it: every source of that scheme fails, saying why.
    if (problem !== undefined) throw new Error(problem)
    return (https ? this.forHttps : this.forHttp).dispatch(options, handler)
  }
  // The base class declares callback and promise overloads; only the promise form is used here.
  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | void {
    const done = Promise.all([this.forHttp.close(), this.forHttps.close()]).then(() => undefined)
    if (callback === undefined) return done
    void done.then(callback, callback)
  }
  override destroy(): Promise<void>
  override destroy(err: Error | null): Promise<void>
  override destroy(callback: () => void): void
  override destroy(err: Error | null, callback: () => void): void
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const error = typeof a === "function" ? null : a ?? null
    const callback = typeof a === "function" ? a : b
    const done = Promise.all([this.forHttp.destroy(error), this.forHttps.destroy(error)]).then(() => undefined)
    if (callback === undefined) return done
    void done.then(callback, callback)
  }
}

/** `proxy.corp:3128` means `http://proxy.corp:3128`, as the Go original reads a proxy variable without a scheme. */
const withScheme = (value: string): string => (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value) ? value : `http://${value}`)

/**
 * The agent for one scheme: direct when its proxy variable is unset, through the proxy otherwise. A value undici
 * cannot use becomes a problem that fails that scheme's requests, named by its variable and never quoted (a proxy URL
 * may hold credentials); the direct agent stands in meanwhile but is never used for them.
 */
const agentFor = (
  variable: string,
  value: string | undefined,
  make: (uri: string) => Dispatcher,
  tls: EnvHttpProxyAgent.Options
): { readonly agent: Dispatcher; readonly problem?: string } => {
  if (value === undefined) return { agent: new Agent(tls) }
  const uri = withScheme(value)
  const protocol = URL.canParse(uri) ? new URL(uri).protocol : undefined
  if (protocol !== "http:" && protocol !== "https:") {
    return { agent: new Agent(tls), problem: `${variable} is set but is not a usable http:// or https:// proxy URL` }
  }
  try {
    return { agent: make(uri) }
  } catch {
    return { agent: new Agent(tls), problem: `${variable} is set but is not a usable proxy URL` }
  }
}

/** Proxies from the environment (read once, when the layer is built), trusting `ca` when given. @since 0.2.0 */
export const makeDispatcher = (ca: string | undefined): Dispatcher => {
  const tls = tlsOptions(ca)
  const noProxy = fromEnv("no_proxy") ?? ""
  const httpProxy = fromEnv("http_proxy")
  const httpsProxy = fromEnv("https_proxy")
  // Empty strings (not undefined) stop EnvHttpProxyAgent from falling back to the other variable.
  const http = agentFor("HTTP_PROXY", httpProxy, (uri) =>
    new EnvHttpProxyAgent({ ...tls, httpProxy: uri, httpsProxy: "", noProxy, proxyTunnel: false }), tls)
  const https = agentFor("HTTPS_PROXY", httpsProxy, (uri) =>
    new EnvHttpProxyAgent({ ...tls, httpProxy: "", httpsProxy: uri, noProxy }), tls)
  const forHttp = http.agent
  const forHttps = https.agent
  const problems = { http: http.problem, https: https.problem }
  return new SchemeRouter(forHttp, forHttps, problems)
}

const makeAgent = (ca: string | undefined) =>
  Effect.acquireRelease(
    Effect.sync(() => makeDispatcher(ca)),
    (agent) => Effect.promise(() => agent.destroy().catch(() => {}))
  )

/** An undici answer as an HttpClientResponse; the body is read only through the effects below. */
class UndiciResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    private readonly source: Dispatcher.ResponseData
  ) {
    super()
    // A body nobody reads may still fail (the request is aborted); that must not become an unhandled error.
    source.body.on("error", () => {})
  }
  private decodeError(cause: unknown): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }
  private read<A>(consume: () => Promise<A>): Effect.Effect<A, HttpClientError.ResponseError> {
    return Effect.async<A, HttpClientError.ResponseError>((resume) => {
      consume().then(
        (value) => resume(Effect.succeed(value)),
        (cause) => resume(Effect.fail(this.decodeError(cause)))
      )
    })
  }
  get status() {
    return this.source.statusCode
  }
  get headers() {
    return Headers.fromInput(this.source.headers)
  }
  get cookies() {
    const header = this.source.headers["set-cookie"]
    return header === undefined ? Cookies.empty : Cookies.fromSetCookie(Array.isArray(header) ? header : [header])
  }
  get remoteAddress() {
    return Option.none<string>()
  }
  get arrayBuffer() {
    return this.read(() => this.source.body.arrayBuffer())
  }
  get text() {
    return this.read(() => this.source.body.text())
  }
  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({ try: () => (text === "" ? null : JSON.parse(text) as unknown), catch: (cause) => this.decodeError(cause) }))
  }
  get urlParamsBody() {
    return Effect.map(this.text, (text) => UrlParams.fromInput(new URLSearchParams(text)))
  }
  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return Effect.fail(this.decodeError(new Error("form data bodies are not read by this client")))
  }
  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    return NodeStream.fromReadable<HttpClientError.ResponseError>(() => this.source.body, (cause) => this.decodeError(cause))
  }
  toJSON() {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

/**
 * An HttpClient over an undici dispatcher. One callback per request and no per-request fibers or cached effects:
 * on a run of hundreds of sources, @effect/platform-node's generic undici client cost more CPU than the requests.
 * Interruption aborts the request through the signal HttpClient.make hands over.
 *
 * @since 0.3.0
 */
export const makeClient = (dispatcher: Dispatcher): HttpClient.HttpClient =>
  HttpClient.make((request, url, signal) => {
    const body = request.body
    if (body._tag !== "Empty" && body._tag !== "Raw" && body._tag !== "Uint8Array") {
      return Effect.fail(
        new HttpClientError.RequestError({ request, reason: "Encode", description: `a ${body._tag} body is not supported` })
      )
    }
    return Effect.async<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError>((resume) => {
      dispatcher.request({
        signal,
        method: request.method,
        headers: request.headers,
        origin: url.origin,
        path: url.pathname + url.search,
        body: body._tag === "Empty" ? null : body.body as Uint8Array,
        // The caller's deadline covers connecting, headers and body; undici's own timers would only fire later.
        headersTimeout: 0,
        bodyTimeout: 0
      }).then(
        (response) => resume(Effect.succeed(new UndiciResponse(request, response))),
        (cause) => resume(Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause })))
      )
    })
  })

/** The default client: system CAs, proxies from the environment. @since 0.2.0 */
export const layerHttpClient: Layer.Layer<HttpClient.HttpClient> = Layer.scoped(
  HttpClient.HttpClient,
  Effect.map(makeAgent(undefined), makeClient)
)

/** One client per CA file, made on first use; the agents are closed with the layer. @since 0.2.0 */
export const layerTrustedCaClients: Layer.Layer<TrustedCaClients> = Layer.scoped(
  TrustedCaClients,
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const clients = new Map<string, Effect.Effect<HttpClient.HttpClient, string>>()
    const make = (caFile: string) =>
      Effect.tryPromise({
        try: () => readFile(caFile, "utf8"),
        catch: (error) => `cannot read ca_file ${caFile}: ${describeCause(error)}`
      }).pipe(
        Effect.filterOrFail(
          (pem) => pem.includes("-----BEGIN CERTIFICATE-----"),
          () => `ca_file ${caFile} holds no PEM certificate`
        ),
        Effect.flatMap((pem) => Scope.extend(makeAgent(pem), scope)),
        Effect.map(makeClient)
      )
    return TrustedCaClients.of({
      forCaFile: (caFile) =>
        Effect.gen(function*() {
          let client = clients.get(caFile)
          if (client === undefined) {
            client = yield* Effect.cached(make(caFile))
            clients.set(caFile, client)
          }
          return yield* client
        })
    })
  })
)

/** Both, as the CLI uses them. @since 0.2.0 */
export const layer: Layer.Layer<HttpClient.HttpClient | TrustedCaClients> = Layer.merge(
  layerHttpClient,
  layerTrustedCaClients
)
