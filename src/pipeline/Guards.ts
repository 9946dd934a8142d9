/**
 * The "never lock anyone out" rules, checked on every write before anything is touched (and in a dry run, so that
 * it reports what a real run would do). Pure.
 *
 * @since 0.2.0
 */
import type { Policy } from "./Config.js"
import { GuardRefused } from "./Errors.js"

/**
 * `before`: the keys of the file on disk; `after`: the keys about to be written; `removed`: how many of `before`
 * are not in `after`. Returns the refusal, or `undefined` when the write may go ahead.
 *
 * @since 0.2.0
 */
export const checkGuards = (
  user: string,
  path: string,
  counts: { readonly before: number; readonly after: number; readonly removed: number },
  policy: Pick<Policy, "allow_empty" | "max_removed_keys" | "max_removed_percent">
): GuardRefused | undefined => {
  const { after, before, removed } = counts
  if (before > 0 && after === 0 && !policy.allow_empty) {
    return new GuardRefused({
      user,
      path,
      guard: "lockout",
      detail: `the new file would have no keys (it has ${before}); set policy.allow_empty: true to allow this`
    })
  }
  if (policy.max_removed_keys !== undefined && removed > policy.max_removed_keys) {
    return new GuardRefused({
      user,
      path,
      guard: "shrink",
      detail: `${removed} of ${before} keys would be removed, more than policy.max_removed_keys (${policy.max_removed_keys})`
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
