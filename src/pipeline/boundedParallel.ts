/**
 * The one way the pipeline runs many things at once (users, a user's sources).
 *
 * @since 0.1.0
 */
import { Effect, type Exit, Fiber } from "effect"

/** Waits for a turn of the event loop, in which network and disk events are handled. */
const nextTurn = Effect.async<void>((resume) => void setImmediate(() => resume(Effect.void)))

/** A usable number of workers: at least 1, a whole number; Infinity is as many as there are items. */
const workerLimit = (limit: number): number =>
  Number.isFinite(limit) ? Math.max(1, Math.ceil(limit)) : limit > 0 ? Number.MAX_SAFE_INTEGER : 1

/** Workers started between two turns of the event loop. */
const WORKERS_PER_TURN = 8

/**
 * `f` over every item, at most `limit` at a time, each of `limit` worker fibers taking the next item as it finishes
 * one (a slow item holds one worker, not a batch). The workers are awaited rather than joined: nothing of their state
 * needs merging back, and on hundreds of items Effect.forEach's fiber per item and the merging of its state were a
 * measurable share of a run. An item that interrupts its own fiber ends only its worker: the caller is never one, and
 * items left over when every worker has ended get new workers. Returns every item's Exit, in item order; undefined
 * for an item whose worker was interrupted while on it.
 *
 * Interrupting the caller interrupts the workers (they are its children).
 *
 * @since 0.1.0
 */
export const boundedParallel = <A, B, E, R>(
  items: ReadonlyArray<A>,
  limit: number,
  f: (item: A, index: number) => Effect.Effect<B, E, R>
): Effect.Effect<ReadonlyArray<Exit.Exit<B, E> | undefined>, never, R> =>
  Effect.gen(function*() {
    const exits = new Array<Exit.Exit<B, E> | undefined>(items.length).fill(undefined)
    let next = 0
    const worker = Effect.gen(function*() {
      while (next < items.length) {
        const index = next++
        exits[index] = yield* Effect.exit(f(items[index]!, index))
      }
    })
    while (next < items.length) {
      const workers: Array<Fiber.RuntimeFiber<void>> = []
      const count = Math.min(workerLimit(limit), items.length - next)
      for (let i = 0; i < count; i++) {
        // Forked fibers all run before the event loop gets a turn: started all at once, 64 users would set up (and
        // ask for) everything before the first request left. A few at a time, requests are under way while the rest
        // start.
        if (i > 0 && i % WORKERS_PER_TURN === 0) yield* nextTurn
        workers.push(yield* Effect.fork(worker))
      }
      for (const fiber of workers) yield* Fiber.await(fiber)
    }
    return exits
  })
