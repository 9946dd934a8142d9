/**
 * The HTTP stack under KeySource: @effect/platform's HttpClient over Node's own `http` and `https` modules, with
 * proxies taken from the environment, certificates checked against the host's CA store (found where the Go original
 * finds it; see internal/systemCa.ts), and an extra client per `ca_file` that trusts that file's certificates instead.
 *
 * Proxies are read as the Go original reads them (see internal/proxies.ts). An http request goes to the proxy as an
 * ordinary proxy request (absolute URL), an https one through a CONNECT tunnel.
 *
 * Why not undici (which @effect/platform-node also offers): on a run of hundreds of sources its requests cost about
 * twice the CPU of Node's built-in client, and loading it was a tenth of the start-up time.
 *
 * @since 0.1.0
 */
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
import { Context, Effect, Either, Inspectable, Layer, Option, Stream } from "effect"
import { constants as C } from "node:fs"
import { open } from "node:fs/promises"
import * as http from "node:http"
import * as https from "node:https"
import { isIP, type Socket } from "node:net"
import { type Duplex, Readable } from "node:stream"
import * as tls from "node:tls"
import { CaFileError, describeCause } from "../pipeline/Errors.js"
import { HostLookup, type LookupFunction } from "./internal/hostLookup.js"
import {
  bareHost,
  defaultPort,
  type ProxyChoice,
  proxyFor,
  type ProxySettings,
  proxySettings
} from "./internal/proxies.js"
import { loadSystemCaCertificates } from "./internal/systemCa.js"

/** HttpClients that trust a given CA file. Optional: without it, a source with `ca_file` fails. @since 0.1.0 */
export class TrustedCaClients extends Context.Tag("authkeysync/TrustedCaClients")<TrustedCaClients, {
  /** The client for `caFile`, made once per file and run; its `message` is a one-line reason. */
  readonly forCaFile: (caFile: string) => Effect.Effect<HttpClient.HttpClient, CaFileError>
}>() {}

export { type NoProxyEntry, type ProxyChoice, proxyFor, type ProxySettings, proxySettings } from "./internal/proxies.js"

// =============================================================================
// Transport
// =============================================================================

/**
 * The name a TLS peer is checked against (and sent as SNI): always the host of the URL being connected to. Node would
 * otherwise take it from a Host header, which names the origin even on a connection to a proxy (and a source may
 * configure its own). An address gets no SNI and is checked as an address.
 */
const tlsName = (url: URL): string => {
  const host = bareHost(url.hostname)
  return isIP(host) === 0 ? host : ""
}

/** `host:port` for a CONNECT line, IPv6 in brackets. */
const authority = (host: string, port: number) => `${isIP(host) === 6 ? `[${host}]` : host}:${port}`

/**
 * An https agent whose connections are CONNECT tunnels through `proxy`; TLS to the origin runs inside the tunnel with
 * the agent's own options (its CA, the origin's name). Pending CONNECTs are ended with the agent.
 */
class TunnelAgent extends https.Agent {
  private readonly connecting = new Set<http.ClientRequest>()
  /** Finds the proxy's address for the CONNECT (the origin's name is the proxy's business). */
  private readonly lookupProxy: LookupFunction
  constructor(
    private readonly proxy: Extract<ProxyChoice, { _tag: "Proxy" }>,
    options: https.AgentOptions & { readonly lookup: LookupFunction },
    /** What an https proxy's own certificate is checked against (the host's store). */
    private readonly proxyTrust: () => tls.SecureContext
  ) {
    super(options)
    this.lookupProxy = options.lookup
  }
  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void
  ): Duplex | null | undefined {
    const done = callback ?? (() => {})
    const host = String(options.host ?? "localhost")
    const target = authority(host, Number(options.port ?? 443))
    const { url } = this.proxy
    // Not tied to the request that wants the connection (Node does not pass its signal here): a CONNECT the proxy
    // never answers is ended with the agent, at the end of the run.
    const request = (url.protocol === "https:" ? https : http).request({
      host: bareHost(url.hostname),
      port: defaultPort(url),
      ...(url.protocol === "https:"
        ? { servername: tlsName(url), rejectUnauthorized: true, secureContext: this.proxyTrust() }
        : {}),
      method: "CONNECT",
      path: target,
      headers: {
        host: target,
        ...(this.proxy.authorization === undefined ? {} : { "proxy-authorization": this.proxy.authorization })
      },
      agent: false,
      lookup: this.lookupProxy
    })
    this.connecting.add(request)
    request.once("connect", (response, socket, head) => {
      this.connecting.delete(request)
      if (response.statusCode !== 200) {
        socket.destroy()
        done(new Error(`the proxy refused a tunnel to ${target}: HTTP ${response.statusCode}`), socket)
        return
      }
      if (head.length > 0) socket.unshift(head)
      // SNI carries names only; an address is checked against the certificate without it.
      const name = options.servername || host
      done(
        null,
        tls.connect({
          ...(options as tls.ConnectionOptions),
          socket,
          servername: isIP(name) === 0 ? name : undefined,
          rejectUnauthorized: true
        })
      )
    })
    request.once("error", (error) => {
      this.connecting.delete(request)
      done(error, request.socket ?? (undefined as unknown as Duplex))
    })
    request.end()
    return undefined
  }
  /** End the CONNECTs still waiting for the proxy. */
  endConnecting(): void {
    for (const request of this.connecting) request.destroy()
    this.connecting.clear()
  }
  override destroy(): void {
    this.endConnecting()
    super.destroy()
  }
}

/** What one request sends. @since 0.1.0 */
export interface Outgoing {
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: Uint8Array | undefined
}

/** One TLS context for every connection that trusts `certificates` (Node's own list when undefined). */
const contextTrusting = (certificates: TrustedCertificates): tls.SecureContext =>
  tls.createSecureContext(
    certificates === undefined ? {} : { ca: typeof certificates === "string" ? certificates : [...certificates] }
  )

/** The CA certificates a connection trusts: a PEM text, a list of PEM blocks, or Node's own list (undefined). */
export type TrustedCertificates = string | ReadonlyArray<string> | undefined

/**
 * Connections for one run: keep-alive agents for direct requests, for an http proxy, and for CONNECT tunnels, all
 * finding hosts through one HostLookup (each name looked up once per run, few at a time; see internal/hostLookup.ts).
 * Key servers are checked against `ca` (a PEM, from `ca_file`) when it is given, otherwise against the host's store;
 * an https proxy always against the host's store. The store is read, and each set of CAs parsed, once per transport
 * and only when an https connection needs it: a TLS context made per connection would parse every CA again.
 *
 * @since 0.1.0
 */
export class Transport {
  private readonly direct: http.Agent
  private readonly forward: http.Agent
  private readonly lookup: LookupFunction
  private systemContext: tls.SecureContext | undefined
  private tlsMade: {
    readonly directTls: https.Agent
    readonly forwardTls: https.Agent
    readonly tunnel: TunnelAgent | undefined
  } | undefined

  constructor(
    private readonly settings: ProxySettings,
    private readonly ca: string | undefined,
    private readonly hosts: HostLookup = new HostLookup(),
    private readonly systemCertificates: () => TrustedCertificates = loadSystemCaCertificates
  ) {
    this.lookup = hosts.lookup
    this.direct = new http.Agent({ keepAlive: true, lookup: this.lookup })
    this.forward = new http.Agent({ keepAlive: true, lookup: this.lookup })
  }

  private system(): tls.SecureContext {
    return (this.systemContext ??= contextTrusting(this.systemCertificates()))
  }

  /** The https agents, made on first use (a run with http sources only never reads the CA store). */
  private tlsAgents() {
    if (this.tlsMade !== undefined) return this.tlsMade
    // Certificates are always checked, explicitly: Node's default yields to NODE_TLS_REJECT_UNAUTHORIZED=0 in root's
    // environment (a debugging leftover in a cron file or unit), which would turn the checks off for every source.
    const common = { keepAlive: true, lookup: this.lookup, rejectUnauthorized: true }
    const origin = { ...common, secureContext: this.ca === undefined ? this.system() : contextTrusting(this.ca) }
    const proxy = this.settings.https
    this.tlsMade = {
      directTls: new https.Agent(origin),
      // Connections to an https proxy itself.
      forwardTls: new https.Agent({ ...common, secureContext: this.system() }),
      tunnel: proxy?._tag === "Proxy" ? new TunnelAgent(proxy, origin, () => this.system()) : undefined
    }
    return this.tlsMade
  }

  /** The ClientRequest for `url`: direct, through an http proxy (absolute form), or through a CONNECT tunnel. */
  private request(
    url: URL,
    proxy: Extract<ProxyChoice, { _tag: "Proxy" }> | undefined,
    outgoing: Outgoing
  ): http.ClientRequest {
    const options = { method: outgoing.method, headers: { ...outgoing.headers } }
    if (url.protocol === "https:") {
      return https.request(url, {
        ...options,
        servername: tlsName(url),
        agent: proxy === undefined ? this.tlsAgents().directTls : this.tlsAgents().tunnel
      })
    } else if (proxy === undefined) {
      return http.request(url, { ...options, agent: this.direct })
    } else {
      // Absolute form, as Go and curl send plain http through a proxy (no CONNECT).
      const viaTls = proxy.url.protocol === "https:"
      return (viaTls ? https : http).request({
        ...options,
        host: bareHost(proxy.url.hostname),
        port: defaultPort(proxy.url),
        ...(viaTls ? { servername: tlsName(proxy.url) } : {}),
        path: `${url.protocol}//${url.host}${url.pathname}${url.search}`,
        headers: {
          ...options.headers,
          host: url.host,
          ...(proxy.authorization === undefined ? {} : { "proxy-authorization": proxy.authorization })
        },
        agent: viaTls ? this.tlsAgents().forwardTls : this.forward
      })
    }
  }

  /**
   * Send one request. Exactly one of the callbacks is called, once the response's headers are in or the request
   * failed, unless the returned function aborts the request first (then neither is).
   */
  start(
    url: URL,
    outgoing: Outgoing,
    onResponse: (response: http.IncomingMessage) => void,
    onError: (cause: unknown) => void
  ): () => void {
    const proxy = proxyFor(this.settings, url)
    if (proxy?._tag === "Unusable") {
      onError(new Error(proxy.problem))
      return () => {}
    }
    let settled = false
    let current: http.ClientRequest | undefined
    // A kept-alive connection the server closed just as it was reused fails before any answer: the request never
    // reached the server, and Go's client sends a GET (or HEAD) again on a new connection, once. So does this one.
    let mayRetry = outgoing.method === "GET" || outgoing.method === "HEAD"
    const send = (): void => {
      let request: http.ClientRequest
      try {
        request = this.request(url, proxy, outgoing)
      } catch (cause) {
        // Node refuses some requests on the spot (a header value with a character it does not send): that source fails.
        settled = true
        onError(cause)
        return
      }
      current = request
      let answer: http.IncomingMessage | undefined
      request.once("response", (response) => {
        if (settled) return void response.destroy()
        settled = true
        answer = response
        onResponse(response)
      })
      // A 101 hands the connection to another protocol: no answer with keys will come on it.
      request.once("upgrade", (_response, socket: Socket) => {
        socket.destroy()
        if (settled) return
        settled = true
        onError(new Error("the server switched protocols (HTTP 101) instead of answering"))
      })
      // Kept for the request's life: a socket error after the response (or after an abort) also lands here.
      request.on("error", (cause) => {
        // The connection failed (a reset) before the body's end: its reader must fail. A body that runs to the close
        // of the connection (no Content-Length, not chunked) would otherwise end as if complete, and a cut-off key list
        // be written, as the Go original never does (its read fails with "connection reset").
        if (answer !== undefined && !answer.complete) return void answer.destroy(cause)
        if (settled || current !== request) return
        const code = (cause as NodeJS.ErrnoException).code
        if (mayRetry && request.reusedSocket && (code === "ECONNRESET" || code === "EPIPE")) {
          mayRetry = false
          return send()
        }
        settled = true
        onError(cause)
      })
      // Node validates the request when it is created, not here; the guard keeps a future Node's throw (or a body it
      // refuses) a failed source rather than a defect.
      try {
        request.end(outgoing.body)
      } catch (cause) {
        settled = true
        request.destroy()
        onError(cause)
      }
    }
    send()
    // A request that has no socket yet (a proxy still answering its CONNECT) ends here too.
    return () => {
      settled = true
      current?.destroy()
    }
  }

  /** `start` as a promise, aborted by `signal`. */
  send(url: URL, outgoing: Outgoing & { readonly signal: AbortSignal }): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      if (outgoing.signal.aborted) return reject(outgoing.signal.reason)
      const abort = this.start(url, outgoing, (response) => {
        outgoing.signal.removeEventListener("abort", onAbort)
        resolve(response)
      }, (cause) => {
        outgoing.signal.removeEventListener("abort", onAbort)
        reject(cause)
      })
      const onAbort = () => {
        abort()
        reject(outgoing.signal.reason)
      }
      outgoing.signal.addEventListener("abort", onAbort, { once: true })
    })
  }

  destroy(): void {
    for (const agent of this.agents()) agent.destroy()
  }

  /**
   * Close now what could keep the process alive (requests under way, CONNECTs a proxy has not answered), and the idle
   * connections, which do not, on the next turn of the event loop unless the process ends first: closing hundreds of
   * them one by one took longer than the exit, which closes them all at once.
   */
  close(): void {
    for (const agent of this.agents()) {
      for (const sockets of Object.values(agent.sockets)) for (const socket of sockets ?? []) socket.destroy()
    }
    this.tlsMade?.tunnel?.endConnecting()
    this.hosts.close()
    setImmediate(() => this.destroy()).unref()
  }

  private agents(): Array<http.Agent> {
    const made = this.tlsMade
    const tlsAgents = made === undefined
      ? []
      : [made.directTls, made.forwardTls, ...(made.tunnel === undefined ? [] : [made.tunnel])]
    return [this.direct, this.forward, ...tlsAgents]
  }
}

// =============================================================================
// HttpClient
// =============================================================================

/**
 * Drops a response's body without reading it, where the client supports that (ours does): the connection is closed
 * rather than left waiting for a reader. Use it on a response whose body is not wanted (an error status, a redirect).
 *
 * @since 0.1.0
 */
/**
 * Why a body sent with this Transfer-Encoding is not read, if it is not: a parser takes off a last coding that is
 * chunked and hands on the rest (gzip bytes, as if they were the body); Go's net/http refuses any transfer coding but
 * chunked alone. Our client asks it when its body is read (it knows the HTTP version); KeySource for other clients.
 */
export const transferCodingProblem = (transfer: string | undefined): string | undefined =>
  transfer === undefined || transfer.trim().toLowerCase() === "chunked"
    ? undefined
    : `the answer has Transfer-Encoding ${JSON.stringify(transfer)}; only chunked is read, as in the Go original`

/** Whether `response` came from this module's client (which checks the framing of its bodies itself). */
export const isOwnResponse = (response: HttpClientResponse.HttpClientResponse): boolean =>
  response instanceof NodeResponse

export const discardBody = (response: HttpClientResponse.HttpClientResponse): void => {
  if (response instanceof NodeResponse) response.discard()
}

/**
 * A body nobody reads holds its connection. A response dropped unread is closed when it is garbage-collected, as
 * @effect/platform's own clients do; reading or discarding it ends that watch.
 */
const unreadBodies = new FinalizationRegistry<http.IncomingMessage>((source) => source.destroy())

/**
 * Let go of a body nobody will read: one that has fully arrived is drained (its end hands the connection back to the
 * pool), one still arriving is cut off with its connection. Either way the connection does not wait for a reader.
 */
const release = (source: http.IncomingMessage): void => {
  if (source.complete) source.resume()
  else source.destroy()
}

/** A Node response as an HttpClientResponse; the body is read once, through the effects below. */
class NodeResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [HttpIncomingMessage.TypeId]: HttpIncomingMessage.TypeId = HttpIncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  private taken = false
  /** The body's first failure, kept: it may come (a reset, a broken chunk) before anyone starts reading. */
  private failure: Error | undefined
  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    private readonly source: http.IncomingMessage
  ) {
    super()
    // Also keeps a failure of a body nobody reads from becoming an unhandled error.
    source.on("error", (cause) => {
      this.failure ??= cause
    })
    unreadBodies.register(this, source, this)
  }
  private decodeError(cause: unknown): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }
  /**
   * Why the body cannot be read whole, if it cannot: it failed, or its connection closed before its end. A reader
   * that started after that would otherwise see an empty body that ended well, and an empty key list be written.
   */
  private cutShort(source: http.IncomingMessage): Error | undefined {
    if (this.failure !== undefined) return this.failure
    // Go ignores the header before HTTP/1.1, and so does this.
    const transfer = source.httpVersionMajor === 1 && source.httpVersionMinor === 0
      ? undefined
      : transferCodingProblem(source.headers["transfer-encoding"])
    if (transfer !== undefined) return new Error(transfer)
    return source.destroyed && !source.complete ? incomplete() : undefined
  }
  /** The body, for its one reader; undefined when it was read or discarded before. */
  private take(): http.IncomingMessage | undefined {
    if (this.taken) return undefined
    this.taken = true
    unreadBodies.unregister(this)
    return this.source
  }
  /** @internal */
  discard(): void {
    if (this.take() !== undefined) release(this.source)
  }
  get status() {
    return this.source.statusCode ?? 0
  }
  private cachedHeaders: Headers.Headers | undefined
  get headers(): Headers.Headers {
    return (this.cachedHeaders ??= Headers.fromInput(this.source.headers))
  }
  get cookies() {
    const header = this.source.headers["set-cookie"]
    return header === undefined ? Cookies.empty : Cookies.fromSetCookie(header)
  }
  get remoteAddress() {
    return Option.fromNullable(this.source.socket?.remoteAddress)
  }
  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return Effect.async<ArrayBuffer, HttpClientError.ResponseError>((resume) => {
      const source = this.take()
      if (source === undefined) return resume(Effect.fail(this.decodeError(new Error("the body was already read"))))
      const short = this.cutShort(source)
      if (short !== undefined) {
        release(source)
        return resume(Effect.fail(this.decodeError(short)))
      }
      const chunks: Array<Buffer> = []
      let settled = false
      const fail = (cause: unknown) => {
        if (settled) return
        settled = true
        resume(Effect.fail(this.decodeError(cause)))
      }
      source.on("data", (chunk: Buffer) => chunks.push(chunk))
      source.once("end", () => {
        if (!source.complete) return fail(incomplete())
        settled = true
        const body = Buffer.concat(chunks)
        resume(Effect.succeed(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) as ArrayBuffer))
      })
      source.once("error", fail)
      // Closed with neither an end nor an error (destroyed without a cause): not a whole body either.
      source.once("close", () => fail(this.failure ?? incomplete()))
      // Interrupted (a deadline): close the connection rather than leave the rest of the body in it.
      return Effect.sync(() => release(source))
    })
  }
  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return Effect.map(this.arrayBuffer, (buffer) => new TextDecoder().decode(buffer))
  }
  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    return Effect.flatMap(
      this.text,
      (text) =>
        Effect.try({
          try: () => (text === "" ? null : JSON.parse(text) as unknown),
          catch: (cause) => this.decodeError(cause)
        })
    )
  }
  get urlParamsBody() {
    return Effect.map(this.text, (text) => UrlParams.fromInput(new URLSearchParams(text)))
  }
  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return Effect.fail(this.decodeError(new Error("form data bodies are not read by this client")))
  }
  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    let source: http.IncomingMessage | undefined
    // The stream closes the connection when it ends early (failed, interrupted, or a reader that stopped).
    return NodeStream.fromReadable<HttpClientError.ResponseError>(
      () => {
        source = this.take()
        if (source === undefined) return failedReadable(new Error("the body was already read"))
        const short = this.cutShort(source)
        if (short === undefined) return source
        release(source)
        return failedReadable(short)
      },
      (cause) => this.decodeError(cause)
    ).pipe(
      // Only a body that arrived to its end counts: an ended stream of a connection that was cut is not one.
      Stream.concat(Stream.suspend(() => {
        const short = source === undefined || source.complete ? undefined : this.failure ?? incomplete()
        return short === undefined ? Stream.empty : Stream.fail(this.decodeError(short))
      }))
    )
  }
  toJSON() {
    return HttpIncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

const incomplete = () => new Error("the connection closed before the whole body arrived")

/** A readable that only fails: what a second reader of a body gets. */
const failedReadable = (error: Error) =>
  new Readable({
    read() {
      this.destroy(error)
    }
  })

/**
 * An HttpClient over a Transport, made with HttpClient.makeWith rather than HttpClient.make: one callback per request,
 * no AbortController, no span, no per-request fibers. On a run of hundreds of sources the generic per-request
 * machinery cost more CPU than the requests. Interrupting a request, or the read of its body, closes its connection.
 * No trace headers are ever sent: key servers get the request the Go original sends.
 *
 * @since 0.1.0
 */
export const makeClient = (transport: Transport): HttpClient.HttpClient =>
  HttpClient.makeWith<never, never, HttpClientError.HttpClientError, never>(
    (effect) => Effect.flatMap(effect, (request) => execute(transport, request)),
    Effect.succeed
  )

const execute = (transport: Transport, request: HttpClientRequest.HttpClientRequest) => {
  const url = UrlParams.makeUrl(request.url, request.urlParams, request.hash)
  if (Either.isLeft(url)) {
    return Effect.fail(new HttpClientError.RequestError({ request, reason: "InvalidUrl", cause: url.left }))
  }
  const body = request.body
  if (body._tag !== "Empty" && body._tag !== "Raw" && body._tag !== "Uint8Array") {
    return Effect.fail(
      new HttpClientError.RequestError({
        request,
        reason: "Encode",
        description: `a ${body._tag} body is not supported`
      })
    )
  }
  const outgoing: Outgoing = {
    method: request.method,
    headers: request.headers,
    body: body._tag === "Empty" ? undefined : body.body as Uint8Array
  }
  return Effect.async<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError>((resume) => {
    const abort = transport.start(
      url.right,
      outgoing,
      (response) => resume(Effect.succeed(new NodeResponse(request, response))),
      (cause) => resume(Effect.fail(new HttpClientError.RequestError({ request, reason: "Transport", cause })))
    )
    return Effect.sync(abort)
  })
}

/** Far more than any CA bundle (the system's is about 200 KB). */
const MAX_CA_FILE_BYTES = 16 * 1024 * 1024

/**
 * The text of a CA file, which must be a regular file: a FIFO or a device would hold a thread of libuv's pool until
 * something writes to it, and the process could then never exit (exit waits for the pool's threads).
 */
const readCaFile = async (caFile: string): Promise<string | { readonly problem: string }> => {
  const handle = await open(caFile, C.O_RDONLY | C.O_NONBLOCK | C.O_NOCTTY)
  try {
    const st = await handle.stat()
    if (!st.isFile()) return { problem: "it is not a regular file" }
    if (st.size > MAX_CA_FILE_BYTES) return { problem: `it is larger than ${MAX_CA_FILE_BYTES} bytes` }
    return await handle.readFile("utf8")
  } finally {
    await handle.close()
  }
}

/**
 * A Transport with proxies from the process environment (read now), closed with the scope; `hosts` when it shares the
 * run's host lookups with other transports. @since 0.1.0
 */
export const makeTransport = (ca: string | undefined, hosts?: HostLookup) =>
  Effect.acquireRelease(
    Effect.sync(() => new Transport(proxySettings(process.env), ca, hosts)),
    (transport) => Effect.sync(() => transport.close())
  )

const makeHttpClient = (hosts?: HostLookup) => Effect.map(makeTransport(undefined, hosts), makeClient)

/** The default client: built-in CAs, proxies from the environment. @since 0.1.0 */
export const layerHttpClient: Layer.Layer<HttpClient.HttpClient> = Layer.scoped(HttpClient.HttpClient, makeHttpClient())

/** How long a CA file that could not be used stays failed before it is read again. */
const CA_FAILURE_LIFETIME_MS = 60_000

/** One client per CA file (see layerTrustedCaClients); `hosts` when they share the run's host lookups. */
const makeTrustedCaClients = (hosts?: HostLookup) =>
  Effect.gen(function*() {
    const transports: Array<Transport> = []
    yield* Effect.addFinalizer(() => Effect.sync(() => transports.forEach((transport) => transport.close())))
    const clients = new Map<
      string,
      { readonly client: Promise<HttpClient.HttpClient | CaFileError>; readonly at: number }
    >()
    const load = async (caFile: string): Promise<HttpClient.HttpClient | CaFileError> => {
      let pem: string
      try {
        const read = await readCaFile(caFile)
        if (typeof read !== "string") {
          return new CaFileError({ caFile, detail: `cannot read ca_file ${caFile}: ${read.problem}` })
        }
        pem = read
      } catch (cause) {
        return new CaFileError({ caFile, detail: `cannot read ca_file ${caFile}: ${describeCause(cause)}`, cause })
      }
      if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
        return new CaFileError({ caFile, detail: `ca_file ${caFile} holds no PEM certificate` })
      }
      const transport = new Transport(proxySettings(process.env), pem, hosts)
      transports.push(transport)
      return makeClient(transport)
    }
    return TrustedCaClients.of({
      forCaFile: (caFile) =>
        Effect.flatMap(
          Effect.promise(async () => {
            const now = Date.now()
            const known = clients.get(caFile)
            // A failure is shared for a run's length, not for the layer's life (a library user's daemon keeps it).
            const stale = known !== undefined && now - known.at >= CA_FAILURE_LIFETIME_MS &&
              (await known.client) instanceof CaFileError
            if (known !== undefined && !stale) {
              return known.client
            }
            const client = load(caFile)
            clients.set(caFile, { client, at: now })
            return client
          }),
          (client) => (client instanceof CaFileError ? Effect.fail(client) : Effect.succeed(client))
        )
    })
  })

/**
 * One client per CA file, made on first use; its connections are closed with the layer. The file is read once per run
 * as a promise that is kept whatever happens to its first caller: a source whose deadline cut the read short must not
 * leave an interruption behind for every later source with that file.
 *
 * @since 0.1.0
 */
export const layerTrustedCaClients: Layer.Layer<TrustedCaClients> = Layer.scoped(
  TrustedCaClients,
  makeTrustedCaClients()
)

/**
 * Both, as the CLI uses them, finding hosts through one HostLookup: a name is looked up once per run and at most two
 * lookups run at a time whichever client (the default one, or a CA file's) makes the connection. @since 0.1.0
 */
export const layer: Layer.Layer<HttpClient.HttpClient | TrustedCaClients> = Layer.unwrapEffect(Effect.sync(() => {
  const hosts = new HostLookup()
  return Layer.merge(
    Layer.scoped(HttpClient.HttpClient, makeHttpClient(hosts)),
    Layer.scoped(TrustedCaClients, makeTrustedCaClients(hosts))
  )
}))
