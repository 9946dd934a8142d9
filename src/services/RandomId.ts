/**
 * Random suffixes for temp and backup file names (spec section 5.2): NanoID, alphabet a-z, length 6.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Ref } from "effect"
import { customAlphabet } from "nanoid"

/** @since 0.1.0 */
export class RandomId extends Context.Tag("authkeysync/RandomId")<RandomId, {
  readonly next: Effect.Effect<string>
}>() {}

export const ALPHABET = "abcdefghijklmnopqrstuvwxyz"
export const LENGTH = 6

/** nanoid with the spec's alphabet and length, from the system CSPRNG. @since 0.1.0 */
export const layer: Layer.Layer<RandomId> = Layer.sync(RandomId, () => {
  const generate = customAlphabet(ALPHABET, LENGTH)
  return RandomId.of({ next: Effect.sync(() => generate()) })
})

/** Hands out the given ids in order, then `zzzzza`, `zzzzzb`, …; for tests that assert file names. @since 0.1.0 */
export const layerTest = (ids: ReadonlyArray<string> = []): Layer.Layer<RandomId> =>
  Layer.effect(
    RandomId,
    Effect.map(Ref.make(0), (counter) =>
      RandomId.of({
        next: Ref.getAndUpdate(counter, (n) => n + 1).pipe(
          Effect.map((n) => ids[n] ?? `zzzzz${String.fromCharCode(97 + ((n - ids.length) % 26))}`)
        )
      }))
  )
