/**
 * The "never lock anyone out" rules, checked on every write before anything is touched (and in a dry run, so that
 * it reports what a real run would do). Pure.
 *
 * @since 0.1.0
 */
import type { Policy } from "./Config.js"
import { GuardRefused } from "./Errors.js"

/** @since 0.1.0 */
export interface GuardCounts {
  /** Keys in the file on disk (distinct keys). */
  readonly before: number
  /** Keys about to be written. */
  readonly after: number
  /** Keys of `before` that are not in `after` (a key whose comment or options changed is not removed). */
  readonly removed: number
  /**
   * Of those, lines that hold a recognisable SSH key: a source that answers 200 with "Service Unavailable" yields a
   * two-field "key" by the spec's parser, which must not pass for a usable key. Default: `before` / `after`.
   */
  readonly usableBefore?: number
  readonly usableAfter?: number
}

/**
 * Returns the refusal, or `undefined` when the write may go ahead.
 *
 * @since 0.1.0
 */
export const checkGuards = (
  user: string,
  path: string,
  counts: GuardCounts,
  policy: Pick<Policy, "allow_empty" | "max_removed_keys" | "max_removed_percent">
): GuardRefused | undefined => {
  const { after, before, removed } = counts
  const usableBefore = counts.usableBefore ?? before
  const usableAfter = counts.usableAfter ?? after
  if (usableBefore > 0 && usableAfter === 0 && !policy.allow_empty) {
    const what = after === 0 ? "no keys" : `no usable keys (${after} line${after === 1 ? "" : "s"} without an SSH key)`
    return new GuardRefused({
      user,
      path,
      guard: "lockout",
      detail: `the new file would have ${what} (it has ${usableBefore}); set policy.allow_empty: true to allow this`
    })
  }
  if (policy.max_removed_keys !== undefined && removed > policy.max_removed_keys) {
    return new GuardRefused({
      user,
      path,
      guard: "shrink",
      detail:
        `${removed} of ${before} keys would be removed, more than policy.max_removed_keys (${policy.max_removed_keys})`
    })
  }
  if (policy.max_removed_percent !== undefined && before > 0) {
    const percent = (removed / before) * 100
    if (percent > policy.max_removed_percent) {
      return new GuardRefused({
        user,
        path,
        guard: "shrink",
        detail: `${removed} of ${before} keys (${Math.round(percent * 10) / 10}%) would be removed, ` +
          `more than policy.max_removed_percent (${policy.max_removed_percent}%)`
      })
    }
  }
  return undefined
}
