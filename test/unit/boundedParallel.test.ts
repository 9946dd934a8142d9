import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, TestClock } from "effect"
import { boundedParallel } from "../../src/pipeline/boundedParallel.js"

describe("boundedParallel", () => {
  it.effect("runs at most `limit` at once, each worker taking the next item, and keeps item order", () =>
    Effect.gen(function*() {
      let running = 0
      let most = 0
      const started: Array<number> = []
      // Item i takes (10 - i) * 10 ms: later items finish first.
      const work = (i: number) =>
        Effect.gen(function*() {
          started.push(i)
          most = Math.max(most, ++running)
          yield* Effect.sleep(`${(10 - i) * 10} millis`)
          running--
          return i * i
        })
      const fiber = yield* Effect.fork(boundedParallel([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3, (i) => work(i)))
      yield* TestClock.adjust("1 second")
      const exits = yield* Fiber.join(fiber)
      expect(exits).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => Exit.succeed(i * i)))
      expect(most).toBe(3)
      // The first three start together; item 3 starts when the quickest of them (item 2, 80 ms) is done.
      expect(started.slice(0, 4)).toEqual([0, 1, 2, 3])
    }))

  it.effect("failures are kept as exits; a worker interrupted from elsewhere leaves its item out, the rest still run", () =>
    Effect.gen(function*() {
      // "cut": something else interrupts the worker fiber that runs it.
      const cut = Effect.withFiberRuntime<never>((worker) =>
        Effect.zipRight(Effect.forkDaemon(Fiber.interrupt(worker)), Effect.never)
      )
      const exits = yield* boundedParallel(
        ["a", "cut", "b", "fail", "c"],
        1,
        (item) => item === "cut" ? cut : item === "fail" ? Effect.fail("no") : Effect.succeed(item.toUpperCase())
      )
      expect(exits).toEqual([Exit.succeed("A"), undefined, Exit.succeed("B"), Exit.fail("no"), Exit.succeed("C")])
    }))

  it.live("starts workers a few at a time, with a turn of the event loop between, so that I/O is not held back", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const exits = yield* boundedParallel(Array.from({ length: 20 }, (_, i) => i), 20, (i) =>
        Effect.zipRight(
          Effect.sync(() => {
            log.push(`start ${i}`)
            // What the event loop does next, e.g. send the request item 0 has just made.
            if (i === 0) setImmediate(() => log.push("event loop"))
          }),
          Effect.sleep("20 millis")
        ))
      expect(exits.every((exit) => exit !== undefined && Exit.isSuccess(exit))).toBe(true)
      // Started all at once, the 20 would all have started before the event loop's turn.
      expect(log.indexOf("event loop")).toBeGreaterThan(log.indexOf("start 7"))
      expect(log.indexOf("event loop")).toBeLessThan(log.indexOf("start 16"))
    }))

  it.effect.each([Number.NaN, 0, -3, 2.5, Infinity])(
    "a limit of %s still runs every item",
    (limit) =>
      Effect.gen(function*() {
        const exits = yield* boundedParallel([1, 2, 3, 4], limit, (i) => Effect.succeed(i * 10))
        expect(exits).toEqual([10, 20, 30, 40].map((n) => Exit.succeed(n)))
      }),
    5_000
  ) // A limit the pool mishandles can spin or wait forever: fail fast rather than at the 60 s default.

  it.effect("an empty list runs nothing", () =>
    Effect.gen(function*() {
      expect(yield* boundedParallel([], 4, () => Effect.die("never"))).toEqual([])
    }))
})
