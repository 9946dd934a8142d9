import { describe, expect, it } from "vitest"
import { SourceFetchError, SourceTimeout, SshDirMissing, UserNotFound } from "../../src/pipeline/Errors.js"
import { summarize } from "../../src/pipeline/runAll.js"
import type { UserOutcome } from "../../src/pipeline/syncUser.js"

const noDiff = { added: [], removed: [] }
const updated: UserOutcome = {
  _tag: "Updated",
  user: "a",
  path: "/home/a/.ssh/authorized_keys",
  keys: 2,
  diff: noDiff,
  backup: undefined
}
const unchanged: UserOutcome = { _tag: "Unchanged", user: "b", path: "/home/b/.ssh/authorized_keys", keys: 1 }
const wouldUpdate: UserOutcome = {
  _tag: "WouldUpdate",
  user: "c",
  path: "/home/c/.ssh/authorized_keys",
  keys: 3,
  diff: noDiff
}
const skippedNoUser: UserOutcome = { _tag: "Skipped", user: "ghost", reason: new UserNotFound({ user: "ghost" }) }
const skippedNoSsh: UserOutcome = {
  _tag: "Skipped",
  user: "d",
  reason: new SshDirMissing({ user: "d", path: "/home/d/.ssh", reason: "missing" })
}
const failedFetch: UserOutcome = {
  _tag: "Failed",
  user: "e",
  error: new SourceFetchError({ url: "https://k.example/e", reason: "Status", status: 500, detail: "HTTP 500" })
}
const failedTimeout: UserOutcome = {
  _tag: "Failed",
  user: "f",
  error: new SourceTimeout({ url: "https://k.example/f", timeoutSeconds: 5 })
}

const zero = { Updated: 0, Unchanged: 0, WouldUpdate: 0, Skipped: 0, Failed: 0 }

describe("summarize", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<UserOutcome>, typeof zero, 0 | 1]> = [
    ["no users", [], zero, 0],
    ["one updated", [updated], { ...zero, Updated: 1 }, 0],
    ["one unchanged", [unchanged], { ...zero, Unchanged: 1 }, 0],
    ["one skipped (missing user)", [skippedNoUser], { ...zero, Skipped: 1 }, 0],
    ["one skipped (missing .ssh)", [skippedNoSsh], { ...zero, Skipped: 1 }, 0],
    ["dry run would update", [wouldUpdate], { ...zero, WouldUpdate: 1 }, 0],
    [
      "every non-failure kind together",
      [updated, unchanged, skippedNoUser, wouldUpdate, skippedNoSsh, updated],
      { Updated: 2, Unchanged: 1, WouldUpdate: 1, Skipped: 2, Failed: 0 },
      0
    ],
    ["one failed", [failedFetch], { ...zero, Failed: 1 }, 1],
    ["one failure among successes", [updated, unchanged, failedTimeout, skippedNoUser], {
      ...zero,
      Updated: 1,
      Unchanged: 1,
      Skipped: 1,
      Failed: 1
    }, 1],
    ["all failed", [failedFetch, failedTimeout], { ...zero, Failed: 2 }, 1],
    ["failure last", [updated, updated, failedFetch], { ...zero, Updated: 2, Failed: 1 }, 1]
  ]
  it.each(cases)("%s", (_name, outcomes, counts, exitCode) => {
    const summary = summarize(outcomes)
    expect(summary.counts).toEqual(counts)
    expect(summary.exitCode).toBe(exitCode)
    expect(summary.outcomes).toEqual(outcomes)
  })
})
