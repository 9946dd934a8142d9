/**
 * An async function with at most `max` of its calls under way at a time; the others wait their turn, in order. A
 * call that ends hands its place straight to the next one waiting.
 */
export const limitConcurrency = <A extends ReadonlyArray<unknown>, B>(
  f: (...args: A) => Promise<B>,
  max: number
): ((...args: A) => Promise<B>) => {
  let running = 0
  const waiting: Array<() => void> = []
  const acquire = (): Promise<void> => {
    if (running < max) {
      running++
      return Promise.resolve()
    }
    return new Promise((start) => waiting.push(start))
  }
  const release = () => {
    const next = waiting.shift()
    if (next === undefined) running--
    else next()
  }
  return (...args) => acquire().then(() => f(...args)).finally(release)
}
