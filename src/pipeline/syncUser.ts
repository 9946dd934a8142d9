/**
 * One user's sync, top to bottom:
 *
 *   resolve account -> open ~/.ssh -> fetch every source in parallel -> parse -> read local file -> merge/dedup
 *   -> render -> decide (unchanged / write) -> backup -> atomic write
 *
 * Each arrow is a named step below. Nothing is written unless every source answered; `syncUserOutcome` turns every
 * error (and any defect) into a result row so that one user can never stop another.
 *
 * @since 0.1.0
 */
import { Clock, Effect, LogLevel, Option } from "effect"
import { Accounts } from "../services/Accounts.js"
import { KeySource } from "../services/KeySource.js"
import { RandomId } from "../services/RandomId.js"
import { type ExistingFile, type SshDir, SshFiles } from "../services/SshFiles.js"
import type { Policy, Source, User } from "./Config.js"
import { type Duplicate, LOCAL_LABEL, type MergedKeys, mergeKeys } from "./Dedup.js"
import { bytesToText } from "./Bytes.js"
import { diffKeys, type KeyDiff } from "./Diff.js"
import {
  describeCause,
  type SourceFetchError,
  type SourceTimeout,
  type UserSkipReason,
  type UserSyncError,
  WriteError
} from "./Errors.js"
import { backupFileName, tempFileName } from "./FileNames.js"
import { parseKeys, rejectedLineCount } from "./Parse.js"
import { redactUrl } from "./Redact.js"
import { type BuildInfo, managedBody, renderBody, renderHeader } from "./Render.js"

// =============================================================================
// Results
// =============================================================================

/** @since 0.1.0 */
export interface SyncOptions {
  readonly dryRun: boolean
  readonly build: BuildInfo
  /**
   * Runs the read-merge-write of one `.ssh` directory (by identity) exclusively. Accounts that share a home would
   * otherwise race, and the last rename would win. `runAll` provides one; alone, `syncUser` needs none.
   */
  readonly exclusive?: (identity: string) => <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** What happened to one configured user. @since 0.1.0 */
export type UserOutcome =
  | {
    readonly _tag: "Updated"
    readonly user: string
    readonly path: string
    readonly keys: number
    readonly diff: KeyDiff
    readonly backup: string | undefined
  }
  | { readonly _tag: "Unchanged"; readonly user: string; readonly path: string; readonly keys: number }
  | {
    readonly _tag: "WouldUpdate"
    readonly user: string
    readonly path: string
    readonly keys: number
    readonly diff: KeyDiff
  }
  | { readonly _tag: "Skipped"; readonly user: string; readonly reason: UserSkipReason }
  | { readonly _tag: "Failed"; readonly user: string; readonly error: UserSyncError }

/** Whether the file on disk already says what we would write. */
export type WriteDecision = "unchanged" | "content" | "metadata"

/**
 * Pure: compare the existing file with the body we would write. The header's "Last sync" always differs, so only the
 * body counts; a file with the right body but a wrong mode or owner is rewritten (without a backup: no key changes).
 * The keys of the whole file must match too, so that a key line slipped into the header block is not kept.
 *
 * @since 0.1.0
 */
export const decideWrite = (existing: ExistingFile | undefined, body: string, owner: { uid: number; gid: number }): WriteDecision => {
  if (existing === undefined || managedBody(existing.content) !== body) return "content"
  const before = parseKeys(existing.content).keys
  const after = parseKeys(body).keys
  if (before.length !== after.length || before.some((key, i) => key !== after[i])) return "content"
  return existing.mode === 0o600 && existing.uid === owner.uid && existing.gid === owner.gid ? "unchanged" : "metadata"
}

// =============================================================================
// Steps
// =============================================================================

const SOURCE_CONCURRENCY = 16

const preview = (key: string) => {
  const text = bytesToText(key)
  return text.length <= 60 ? text : `${text.slice(0, 57)}...`
}

interface FetchedSource {
  readonly url: string
  readonly keys: ReadonlyArray<string>
}

const fetchSource = (source: Source) =>
  Effect.gen(function*() {
    const keySource = yield* KeySource
    const body = yield* keySource.fetch(source)
    const parsed = parseKeys(body)
    yield* Effect.logInfo("fetched source").pipe(
      Effect.annotateLogs({ keys: parsed.keys.length, discarded: rejectedLineCount(parsed) })
    )
    if (parsed.discarded["error-page"] > 0) {
      yield* Effect.logWarning("source returned lines that look like an HTML/JSON error page; they were ignored").pipe(
        Effect.annotateLogs({ lines: parsed.discarded["error-page"] })
      )
    }
    return { url: source.url, keys: parsed.keys } satisfies FetchedSource
  }).pipe(Effect.annotateLogs({ source: redactUrl(source.url) }), Effect.withLogSpan("fetch"))

/** Every source in parallel; all must succeed. Each failure is logged with its source before the user fails. */
const fetchAllSources = (sources: ReadonlyArray<Source>) =>
  Effect.gen(function*() {
    const [failures, fetched] = yield* Effect.partition(sources, fetchSource, { concurrency: SOURCE_CONCURRENCY })
    for (const failure of failures) {
      yield* Effect.logError(failure.message).pipe(Effect.annotateLogs({ source: failure.url }))
    }
    const first: SourceFetchError | SourceTimeout | undefined = failures[0]
    if (first !== undefined) return yield* Effect.fail(first)
    return fetched
  })

const readLocalFile = (sshDir: SshDir) =>
  sshDir.readAuthorizedKeys.pipe(Effect.map(Option.getOrUndefined))

/** Between sources a duplicate is news; a local line that a source also serves is the normal case on every run. */
const logDuplicates = (duplicates: ReadonlyArray<Duplicate>) =>
  Effect.forEach(duplicates, (dup) =>
    Effect.logWithLevel(dup.droppedFrom === LOCAL_LABEL ? LogLevel.Debug : LogLevel.Info, "duplicate key dropped").pipe(
      Effect.annotateLogs({ key: preview(dup.key), kept_in: redactUrl(dup.keptIn), dropped_from: redactUrl(dup.droppedFrom) })
    ), { discard: true })

const redactSections = (merged: MergedKeys) =>
  merged.sections.map((section) => (section._tag === "Source" ? { ...section, url: redactUrl(section.url) } : section))

const backupExisting = (
  sshDir: SshDir,
  existing: ExistingFile,
  owner: { uid: number; gid: number },
  now: Date,
  retention: number
) =>
  Effect.gen(function*() {
    const id = yield* RandomId
    const name = backupFileName(now, yield* id.next)
    const result = yield* sshDir.writeBackup(existing.content, owner, name, retention)
    yield* Effect.logInfo("created backup").pipe(Effect.annotateLogs({ path: result.path }))
    if (result.pruned.length > 0) {
      yield* Effect.logInfo("removed old backups").pipe(
        Effect.annotateLogs({ count: result.pruned.length, retention })
      )
    }
    return result.path
  })

const writeAtomically = (sshDir: SshDir, content: string, owner: { uid: number; gid: number }, now: Date) =>
  Effect.gen(function*() {
    const id = yield* RandomId
    yield* sshDir.replaceAuthorizedKeys(content, owner, tempFileName(now, yield* id.next))
  })

// =============================================================================
// The per-user program
// =============================================================================

/**
 * Sync one user. Fails with a skip reason or a sync error; never writes unless every source answered.
 *
 * @since 0.1.0
 */
export const syncUser = Effect.fn("syncUser")(function*(user: User, policy: Policy, options: SyncOptions) {
  const accounts = yield* Accounts
  const files = yield* SshFiles

  yield* Effect.logDebug("processing user")
  const account = yield* accounts.lookup(user.username)
  const owner = { uid: account.uid, gid: account.gid }
  const sshDir = yield* files.open(account)
  const exclusive = options.exclusive?.(sshDir.identity) ?? identity
  return yield* exclusive(syncDirectory(user, policy, options, owner, sshDir))
}, Effect.scoped)

const identity = <A, E, R>(self: Effect.Effect<A, E, R>) => self

/** Everything after the system check: fetch, merge, decide, back up, write. */
const syncDirectory = (
  user: User,
  policy: Policy,
  options: SyncOptions,
  owner: { uid: number; gid: number },
  sshDir: SshDir
) =>
  Effect.gen(function*() {
    const fetched = yield* fetchAllSources(user.sources)
    const existing = yield* readLocalFile(sshDir)
    const local = parseKeys(existing?.content ?? "")
    const merged = mergeKeys(fetched, policy.preserve_local_keys ? local.keys : undefined)
    yield* logDuplicates(merged.duplicates)

    const sections = redactSections(merged)
    const body = renderBody(sections)
    const diff = diffKeys(local.keys, sections)
    const keys = sections.reduce((n, s) => n + s.keys.length, 0)
    const path = sshDir.authorizedKeysPath
    const decision = decideWrite(existing, body, owner)

    if (decision === "unchanged") {
      yield* Effect.logInfo("authorized_keys unchanged").pipe(Effect.annotateLogs({ keys }))
      return { _tag: "Unchanged", user: user.username, path, keys } satisfies UserOutcome
    }
    if (options.dryRun) {
      yield* Effect.logInfo("dry run: would update authorized_keys").pipe(
        Effect.annotateLogs({ path, keys, added: diff.added.length, removed: diff.removed.length })
      )
      return { _tag: "WouldUpdate", user: user.username, path, keys, diff } satisfies UserOutcome
    }

    const now = new Date(yield* Clock.currentTimeMillis)
    const content = renderHeader(options.build, now) + body
    const backup = decision === "content" && policy.backup_enabled && existing !== undefined && existing.content !== ""
      ? yield* backupExisting(sshDir, existing, owner, now, policy.backup_retention_count)
      : undefined
    yield* writeAtomically(sshDir, content, owner, now)
    yield* Effect.logInfo("updated authorized_keys").pipe(
      Effect.annotateLogs({ path, keys, added: diff.added.length, removed: diff.removed.length })
    )
    return { _tag: "Updated", user: user.username, path, keys, diff, backup } satisfies UserOutcome
  })

const isSkip = (error: UserSkipReason | UserSyncError): error is UserSkipReason =>
  error._tag === "UserNotFound" || error._tag === "SshDirMissing"

/**
 * `syncUser` with every failure turned into an outcome row and logged once: skips as warnings, failures as errors.
 * A defect (a bug) fails only this user, with the old file in place.
 *
 * @since 0.1.0
 */
export const syncUserOutcome = (user: User, policy: Policy, options: SyncOptions): Effect.Effect<
  UserOutcome,
  never,
  Accounts | SshFiles | KeySource | RandomId
> =>
  syncUser(user, policy, options).pipe(
    Effect.catchAll((error) =>
      isSkip(error)
        ? Effect.logWarning(`skipping user: ${error.message}`).pipe(
          Effect.as<UserOutcome>({ _tag: "Skipped", user: user.username, reason: error })
        )
        : Effect.logError(`user not synced, authorized_keys left untouched: ${error.message}`).pipe(
          Effect.as<UserOutcome>({ _tag: "Failed", user: user.username, error })
        )
    ),
    Effect.catchAllDefect((defect) => {
      const error = new WriteError({ path: user.username, operation: "sync user", detail: `internal error: ${describeCause(defect)}` })
      return Effect.logError(`user not synced, authorized_keys left untouched: ${error.message}`).pipe(
        Effect.as<UserOutcome>({ _tag: "Failed", user: user.username, error })
      )
    }),
    Effect.annotateLogs({ user: user.username })
  )
