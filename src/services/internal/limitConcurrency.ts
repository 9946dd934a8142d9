/**
 * An async function with at most `max` of its calls under way at a time; the others wait their turn, in order. A
 * call that ends hands its place straight to the next one waiting.
 *
 * With `until`, aborting that signal drops the calls still waiting (and any made later): they fail with
 * `dropped()` and never run; the calls under way are left to finish or to heed the signal themselves.
 */
export const limitConcurrency = <A extends ReadonlyArray<unknown>, B>(
  f: (...args: A) => Promise<B>,
  max: number,
  until?: { readonly signal: AbortSignal; readonly dropped: () => Error }
): (...args: A) => Promise<B> => {
  let running = 0
  const waiting: Array<{ readonly start: () => void; readonly drop: (error: Error) => void }> = []
  until?.signal.addEventListener("abort", () => {
    for (const call of waiting.splice(0)) call.drop(until.dropped())
  }, { once: true })
  const acquire = (): Promise<void> => {
    if (until?.signal.aborted === true) return Promise.reject(until.dropped())
    if (running < max) {
      running++
      return Promise.resolve()
    }
    return new Promise((start, drop) => waiting.push({ start, drop }))
  }
  const release = () => {
    const next = waiting.shift()
    if (next === undefined) running--
    else next.start()
  }
  return (...args) =>
    acquire().then(async () => {
      try {
        return await f(...args)
      } finally {
        release()
      }
    })
}
