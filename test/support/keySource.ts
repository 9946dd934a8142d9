/**
 * KeySource over the CLI's real HTTP transport, for service tests against a local server: one fetch, its Exit.
 */
import { Effect, Layer, Schema } from "effect"
import { Source } from "../../src/pipeline/Config.js"
import * as HttpTransport from "../../src/services/HttpTransport.js"
import * as KeySource from "../../src/services/KeySource.js"

/** Runs `effect` with KeySource.layer over HttpTransport.layer (closed afterwards) and gives its Exit. */
export const runWithTransport = <A, E>(
  effect: Effect.Effect<A, E, KeySource.KeySource | HttpTransport.TrustedCaClients>
) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.exit(effect).pipe(Effect.provide(KeySource.layer.pipe(Layer.provideMerge(HttpTransport.layer))))
    )
  )

/** Fetch `url` as a configured source with the given timeout. */
export const fetchSource = (url: string, timeoutSeconds: number) =>
  Effect.flatMap(
    KeySource.KeySource,
    (keys) => keys.fetch(Schema.decodeUnknownSync(Source)({ url, timeout_seconds: timeoutSeconds }))
  )
