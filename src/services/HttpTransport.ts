/**
 * The HTTP stack under KeySource: @effect/platform's HttpClient over undici, with proxies taken from the environment
 * (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, lower case too) by undici's own EnvHttpProxyAgent, and an extra client
 * per `ca_file` that trusts that file's certificates instead of the system's.
 *
 * @since 0.2.0
 */
import { readFile } from "node:fs/promises"
import type { HttpClient } from "@effect/platform"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Context, Effect, Layer, Scope } from "effect"
import { EnvHttpProxyAgent } from "undici"
import { describeCause } from "../pipeline/Errors.js"

/** HttpClients that trust a given CA file. Optional: without it, a source with `ca_file` fails. @since 0.2.0 */
export class TrustedCaClients extends Context.Tag("authkeysync/TrustedCaClients")<TrustedCaClients, {
  /** The client for `caFile`, made once per file and run; fails with a one-line reason. */
  readonly forCaFile: (caFile: string) => Effect.Effect<HttpClient.HttpClient, string>
}>() {}

/** Agent options that make every connection (direct or through a proxy's CONNECT tunnel) trust only `ca`. */
const agentOptions = (ca: string | undefined): EnvHttpProxyAgent.Options =>
  ca === undefined ? {} : { connect: { ca }, requestTls: { ca } }

const makeAgent = (ca: string | undefined) =>
  Effect.acquireRelease(
    Effect.sync(() => new EnvHttpProxyAgent(agentOptions(ca))),
    (agent) => Effect.promise(() => agent.destroy().catch(() => {}))
  )

/** The default client: system CAs, proxies from the environment. @since 0.2.0 */
export const layerHttpClient: Layer.Layer<HttpClient.HttpClient> = NodeHttpClient.layerUndiciWithoutDispatcher.pipe(
  Layer.provide(Layer.scoped(NodeHttpClient.Dispatcher, makeAgent(undefined)))
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
        Effect.map((agent) => NodeHttpClient.makeUndici(agent))
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
