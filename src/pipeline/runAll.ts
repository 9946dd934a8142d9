/**
 * The whole run: every configured user in parallel (bounded), each isolated, then one summary and the exit code.
 *
 * @since 0.1.0
 */
import { Clock, Effect, Either, Exit, Option } from "effect"
import * as nodePath from "node:path"
import { buildInfo } from "../Build.js"
import { Accounts } from "../services/Accounts.js"
import { SshFiles } from "../services/SshFiles.js"
import { boundedParallel } from "./boundedParallel.js"
import type { Config } from "./Config.js"
import { UserSyncAborted } from "./Errors.js"
import type { BuildInfo } from "./Render.js"
import { KEY_BUDGET, type SyncOptions, syncUserOutcome, type UserOutcome } from "./syncUser.js"

/**
 * What a caller decides about a run; everything else a user's sync needs (the accounts and directories of all the
 * users, their shared checks) `runAll` works out itself.
 *
 * @since 0.1.0
 */
export interface RunOptions {
  readonly dryRun: boolean
  /** How many users are synced at the same time; DEFAULT_CONCURRENCY unless given. */
  readonly concurrency?: number
  /** What the file header names as the writer (version, commit, build date); this package's `buildInfo` unless given. */
  readonly build?: BuildInfo
  /** The memory budget users with huge inputs share (see SyncOptions.keyBudget); KEY_BUDGET permits unless given. */
  readonly keyBudget?: SyncOptions["keyBudget"]
}

/** @since 0.1.0 */
export const DEFAULT_CONCURRENCY = 64

/** @since 0.1.0 */
export interface RunSummary {
  readonly outcomes: ReadonlyArray<UserOutcome>
  readonly counts: Readonly<Record<UserOutcome["_tag"], number>>
  /** 0 when every user was synced, unchanged or skipped; 1 when any user failed (the spec's exit codes). */
  readonly exitCode: 0 | 1
}

/** Pure: count outcomes and pick the exit code. @since 0.1.0 */
export const summarize = (outcomes: ReadonlyArray<UserOutcome>): RunSummary => {
  const counts = { Updated: 0, Unchanged: 0, WouldUpdate: 0, Skipped: 0, Failed: 0 }
  for (const outcome of outcomes) counts[outcome._tag]++
  return { outcomes, counts, exitCode: counts.Failed > 0 ? 1 : 0 }
}

/** Pure: configured accounts grouped by (resolved) home directory. @since 0.1.0 */
export const groupByHome = (
  accounts: ReadonlyArray<{ readonly name: string; readonly home: string }>
): ReadonlyMap<string, ReadonlyArray<string>> => {
  const byHome = new Map<string, Array<string>>()
  for (const account of accounts) {
    const home = nodePath.resolve(account.home)
    byHome.set(home, [...(byHome.get(home) ?? []), account.name])
  }
  return byHome
}

/** Pure: for each account, the other accounts whose `.ssh` is the same directory. @since 0.1.0 */
export const groupBySshDir = (
  identities: ReadonlyArray<readonly [name: string, identity: string]>
): ReadonlyMap<string, ReadonlyArray<string>> => {
  const byIdentity = new Map<string, Array<string>>()
  for (const [name, id] of identities) byIdentity.set(id, [...(byIdentity.get(id) ?? []), name])
  const others = new Map<string, ReadonlyArray<string>>()
  for (const names of byIdentity.values()) {
    if (names.length > 1) { for (const name of names) others.set(name, names.filter((n) => n !== name)) }
  }
  return others
}

/**
 * Sync every user of `config`. Never fails: per-user errors are outcomes, and the summary carries the exit code.
 *
 * @since 0.1.0
 */
export const runAll = Effect.fn("runAll")(function*(config: Config, options: RunOptions) {
  yield* Effect.logInfo("sync started").pipe(
    Effect.annotateLogs({
      users: config.users.length,
      dry_run: options.dryRun,
      backup_enabled: config.policy.backup_enabled,
      backup_retention: config.policy.backup_retention_count,
      preserve_local_keys: config.policy.preserve_local_keys
    })
  )
  const startedAt = new Date(yield* Clock.currentTimeMillis)
  // Every account first, in one lookup, so that homes shared by two configured accounts are seen; each user's
  // own answer (found, missing, or failed) is handed to that user's sync.
  const accounts = yield* Accounts
  const resolved = yield* accounts.lookupAll(config.users.map((user) => user.username))
  const found = [...resolved.values()].flatMap((r) => (Either.isRight(r) ? [r.right] : []))
  const accountsByHome = groupByHome(found)
  // Homes that are different paths to one .ssh (a link) are found by what the directory is, before anyone is synced,
  // so that every account involved is refused whatever order the users run in.
  const files = yield* SshFiles
  // Homes on a filesystem that may hang (NFS, CIFS, FUSE) are looked at from other processes first; those that did
  // not answer are not touched from here at all (their users fail).
  const unresponsiveHomes = yield* files.unresponsiveHomes(found)
  // A checked walk to each .ssh (synchronous syscalls on the local disk): no use running them side by side.
  const identities = yield* Effect.forEach(
    found.filter((account) => !unresponsiveHomes.has(account.name)),
    (account) => files.identify(account).pipe(Effect.map((id) => [account.name, id] as const))
  )
  const accountsBySshDir = groupBySshDir(
    identities.flatMap(([name, id]) => (Option.isSome(id) ? [[name, id.value] as const] : []))
  )
  const sshDirsSeen = new Set(identities.flatMap(([name, id]) => (Option.isSome(id) ? [name] : [])))
  const claimed = new Map<string, string>()
  const claimDirectory = (identity: string, user: string) => {
    const first = claimed.get(identity)
    if (first === undefined) claimed.set(identity, user)
    return first === undefined || first === user ? undefined : first
  }
  const keyBudget = options.keyBudget ?? { semaphore: yield* Effect.makeSemaphore(KEY_BUDGET), permits: KEY_BUDGET }
  const exits = yield* boundedParallel(
    config.users,
    options.concurrency ?? DEFAULT_CONCURRENCY,
    (user) =>
      syncUserOutcome(user, config.policy, {
        dryRun: options.dryRun,
        build: options.build ?? buildInfo,
        claimDirectory,
        startedAt,
        accountsByHome,
        accountsBySshDir,
        sshDirsSeen,
        resolved,
        keyBudget,
        unresponsiveHomes
      })
  )
  const outcomes: Array<UserOutcome> = []
  for (const [index, exit] of exits.entries()) {
    if (exit !== undefined && Exit.isSuccess(exit)) {
      outcomes.push(exit.value)
      continue
    }
    // syncUserOutcome turns every failure into a row; only an interruption of that user alone gets here.
    const user = config.users[index]!.username
    const error = new UserSyncAborted({ user, detail: "the sync was interrupted" })
    yield* Effect.logError(`user not synced, authorized_keys left untouched: ${error.message}`).pipe(
      Effect.annotateLogs({ user })
    )
    outcomes.push({ _tag: "Failed", user, error })
  }
  const summary = summarize(outcomes)
  const { counts } = summary
  const line = summary.exitCode === 0 ? Effect.logInfo : Effect.logError
  yield* line("sync finished").pipe(
    Effect.annotateLogs({
      updated: counts.Updated,
      unchanged: counts.Unchanged,
      ...(options.dryRun ? { would_update: counts.WouldUpdate } : {}),
      skipped: counts.Skipped,
      failed: counts.Failed,
      exit_code: summary.exitCode
    })
  )
  return summary
})
