/**
 * One user's sync, top to bottom:
 *
 *   resolve account -> fetch every source in parallel -> open ~/.ssh -> parse -> read local file -> merge/dedup
 *   -> render -> decide (unchanged / write) -> backup -> atomic write
 *
 * The fetch goes first only for an account that passed the Go original's whole system check when the run began (the
 * account exists and its ~/.ssh is a directory): its requests leave without waiting for the thorough checks of opening
 * ~/.ssh, which run when the answers are in and still decide first. Each arrow is a named step below. Nothing is written unless every source answered; `syncUserOutcome` turns every
 * error (and any defect) into a result row so that one user can never stop another.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Effect, Exit, FiberRef, List, LogLevel, LogSpan, Option } from "effect"
import * as nodePath from "node:path"
import { type AccountLookup, Accounts } from "../services/Accounts.js"
import { KeySource } from "../services/KeySource.js"
import { ManagedKeys, type ManagedRecord } from "../services/ManagedKeys.js"
import { RandomId } from "../services/RandomId.js"
import { type ExistingFile, MAX_LOCAL_FILE_BYTES, type SshDir, SshFiles } from "../services/SshFiles.js"
import { boundedParallel } from "./boundedParallel.js"
import { bytesToText, textToBytes } from "./Bytes.js"
import type { Policy, Source, User } from "./Config.js"
import { allKeys, type Duplicate, LOCAL_LABEL, type MergedKeys, mergeKeys } from "./Dedup.js"
import { diffKeys, type KeyDiff } from "./Diff.js"
import { shortened } from "./Display.js"
import {
  describeCause,
  ReadError,
  SourceFetchError,
  type SourceTimeout,
  type SshDirMissing,
  UnsafeAccount,
  UnsafePath,
  type UserSkipReason,
  UserSyncAborted,
  type UserSyncError,
  WriteError
} from "./Errors.js"
import { backupFileName, tempFileName } from "./FileNames.js"
import { checkGuards, type GuardCounts } from "./Guards.js"
import { identityFrom, keyFingerprint, keyIdentity, keyMaterial } from "./KeyIdentity.js"
import { parseKeys, rejectedLineCount } from "./Parse.js"
import { redactUrl } from "./Redact.js"
import { type BuildInfo, managedBody, renderBody, renderHeader } from "./Render.js"
import { identitiesOf, type LocalSelection, markedManagedLines, selectLocalKeys } from "./Revocation.js"

// =============================================================================
// Results
// =============================================================================

/** @since 0.1.0 */
export interface SyncOptions {
  readonly dryRun: boolean
  readonly build: BuildInfo
  /** When the run started: temp files left in `.ssh` from before then are a crashed run's. Default: the user's start. */
  readonly startedAt?: Date
  /**
   * Configured accounts by home directory (as resolved); an account whose home also belongs to another one is
   * refused. `runAll` provides it.
   */
  readonly accountsByHome?: ReadonlyMap<string, ReadonlyArray<string>>
  /**
   * Record that `user` works in the `.ssh` directory `identity` (device and inode); returns the other account that
   * already did, if any. Catches homes that are different paths to one directory (a link), which the path
   * comparison of `accountsByHome` cannot see. `runAll` provides it.
   */
  readonly claimDirectory?: (identity: string, user: string) => string | undefined
  /** For each account, the other configured accounts whose `.ssh` is the same directory; `runAll` provides it. */
  readonly accountsBySshDir?: ReadonlyMap<string, ReadonlyArray<string>>
  /** Accounts already looked up (by `runAll`, all at once); a user not in it is looked up on its own. */
  readonly resolved?: ReadonlyMap<string, AccountLookup>
  /**
   * Accounts whose `~/.ssh` was a directory when `runAll` first looked (the Go original's whole system check): their
   * sources are fetched before the thorough checks of the home and `.ssh` (which still decide first), so that their
   * requests do not wait for those. Anyone else is checked first, and nothing is fetched for a user skipped there.
   */
  readonly sshDirsSeen?: ReadonlySet<string>
  /**
   * Shared by the users of a run: a user whose sources sent, and whose own file holds (estimated from its size), more
   * than BREATHE_ABOVE_KEYS keys together takes that many permits (at most all of them) for its merge and write, so
   * that several users with huge answers or files are not all held in memory at once. `runAll` provides it
   * (KEY_BUDGET permits).
   */
  readonly keyBudget?: { readonly semaphore: Effect.Semaphore; readonly permits: number }
  /**
   * Accounts whose home's filesystem did not answer (SshFiles.unresponsiveHomes), with why: such a user fails
   * without its home being touched. `runAll` provides it.
   */
  readonly unresponsiveHomes?: ReadonlyMap<string, string>
}

/**
 * Keys that users with huge answers may have in their merge and write at the same time (about 1 KB of memory each
 * while a user is merged): a source sending 200,000 keys to many users, or one user with several such sources, would
 * otherwise bring the whole run down with an out-of-memory abort.
 *
 * @since 0.1.0
 */
export const KEY_BUDGET = 500_000

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
export const decideWrite = (
  existing: ExistingFile | undefined,
  body: string,
  owner: { uid: number; gid: number }
): WriteDecision => {
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
const ROOT = { uid: 0, gid: 0 }

const preview = (key: string) => shortened(bytesToText(key), 60)

interface FetchedSource {
  readonly url: string
  readonly keys: ReadonlyArray<string>
  /** No key, only lines of an HTML/JSON error page: a server's error sent with status 200, not an empty key list. */
  readonly errorPageOnly: boolean
}

/**
 * Pure: the most key lines a local file may hold: as many as the tool could write (each source at
 * `max_keys_per_source`, and the pins) plus as many of the user's own. Within its 16 MiB a file of two-field lines
 * holds millions of "keys", whose merge would hold the run's one thread long enough for every other user's fetch to
 * time out.
 *
 * @since 0.1.0
 */
export const maxLocalKeys = (policy: Policy, user: User): number =>
  policy.max_keys_per_source * (user.sources.length + 1) + policy.pinned_keys.length + user.pinned_keys.length

/** Longer lines are not keys anybody uses (a 16384-bit RSA key is about 2.8 KB); a source sending one is broken. */
export const MAX_LINE_BYTES = 16 * 1024

/** Pure: why a source's body breaks the line-length or key-count cap, if it does. @since 0.1.0 */
export const sourceLimitProblem = (
  body: string,
  keyCount: number,
  maxKeys: number
): { readonly reason: "LineTooLong" | "TooManyKeys"; readonly detail: string } | undefined => {
  let start = 0
  for (let line = 1; start <= body.length; line++) {
    const end = body.indexOf("\n", start)
    let length = (end < 0 ? body.length : end) - start
    // A CRLF line is the same line: its "\r" is not counted.
    if (length > 0 && body.charCodeAt(start + length - 1) === 13) length--
    if (length > MAX_LINE_BYTES) {
      return { reason: "LineTooLong", detail: `line ${line} is ${length} bytes long, more than ${MAX_LINE_BYTES}` }
    }
    if (end < 0) break
    start = end + 1
  }
  if (keyCount > maxKeys) {
    return { reason: "TooManyKeys", detail: `it sent more than policy.max_keys_per_source (${maxKeys}) keys` }
  }
  return undefined
}

/**
 * A log line about one source: its `source` field and how long its fetch has taken so far (`fetch_ms`). Built only
 * when its level is logged at all: with hundreds of sources, wrapping every fetch in log annotations cost more CPU
 * than the lines that are printed.
 */
const logSource = (
  level: LogLevel.LogLevel,
  message: string,
  source: Source,
  fetchStartedAt: number,
  annotations: Record<string, unknown>
) =>
  Effect.flatMap(FiberRef.get(FiberRef.currentMinimumLogLevel), (minimum) =>
    LogLevel.greaterThan(minimum, level)
      ? Effect.void
      : Effect.logWithLevel(level, message).pipe(
        Effect.annotateLogs({ source: redactUrl(source.url), ...annotations }),
        Effect.locallyWith(FiberRef.currentLogSpan, List.prepend(LogSpan.make("fetch", fetchStartedAt)))
      ))

const fetchSource = (source: Source, policy: Policy) =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const keySource = yield* KeySource
    const body = yield* keySource.fetch(source, {
      maxResponseBytes: policy.max_response_bytes,
      caFile: source.ca_file ?? policy.ca_file
    })
    const parsed = parseKeys(body, policy.max_keys_per_source)
    const problem = sourceLimitProblem(body, parsed.keys.length, policy.max_keys_per_source)
    if (problem !== undefined) {
      return yield* new SourceFetchError({ url: redactUrl(source.url), reason: problem.reason, detail: problem.detail })
    }
    yield* logSource(LogLevel.Info, "fetched source", source, startedAt, {
      keys: parsed.keys.length,
      discarded: rejectedLineCount(parsed)
    })
    if (parsed.discarded["error-page"] > 0) {
      yield* logSource(
        LogLevel.Warning,
        "source returned lines that look like an HTML/JSON error page; they were ignored",
        source,
        startedAt,
        { lines: parsed.discarded["error-page"] }
      )
    }
    const errorPageOnly = parsed.keys.length === 0 && parsed.discarded["error-page"] > 0
    return { url: source.url, keys: parsed.keys, errorPageOnly } satisfies FetchedSource
  })

/** How many keys a user's sources sent, all together. */
const fetchedKeyCount = (fetched: ReadonlyArray<FetchedSource>): number =>
  fetched.reduce((n, f) => n + f.keys.length, 0)

/** What a user's sources gave: every source's keys, or the failures. */
interface FetchResults {
  readonly fetched: ReadonlyArray<FetchedSource>
  readonly failures: ReadonlyArray<SourceFetchError | SourceTimeout>
}

/**
 * Every source in parallel, at most SOURCE_CONCURRENCY at a time (see boundedParallel). The failures are returned, not
 * yet logged: `reportFetch` does that, once the user's checks have passed (a refused user's failed sources are not
 * news). A defect (a bug) fails the user at once.
 */
const fetchAllSources = (sources: ReadonlyArray<Source>, policy: Policy) =>
  Effect.gen(function*() {
    const exits = yield* boundedParallel(sources, SOURCE_CONCURRENCY, (source) => fetchSource(source, policy))
    const failures: Array<SourceFetchError | SourceTimeout> = []
    const fetched: Array<FetchedSource> = []
    for (const [index, exit] of exits.entries()) {
      if (exit !== undefined && Exit.isSuccess(exit)) {
        fetched.push(exit.value)
        continue
      }
      // A defect is a bug, not a source's answer: it fails the user as it is.
      if (exit !== undefined && Cause.isDie(exit.cause)) return yield* Effect.failCause(exit.cause)
      const failure = exit === undefined ? Option.none() : Cause.failureOption(exit.cause)
      // Interrupted by something other than this user's own end (which would not get here): that source failed.
      failures.push(Option.getOrElse(failure, () =>
        new SourceFetchError({
          url: redactUrl(sources[index]!.url),
          reason: "Transport",
          detail: "the fetch was interrupted"
        })))
    }
    return { fetched, failures } satisfies FetchResults
  })

/** All must have succeeded: each failure is logged with its source, then the user fails with the first. */
const reportFetch = (results: FetchResults) =>
  Effect.gen(function*() {
    for (const failure of results.failures) {
      yield* Effect.logError(failure.message).pipe(Effect.annotateLogs({ source: failure.url }))
    }
    const first: SourceFetchError | SourceTimeout | undefined = results.failures[0]
    if (first !== undefined) return yield* Effect.fail(first)
    return results.fetched
  })

const readLocalFile = (sshDir: SshDir) => sshDir.readAuthorizedKeys.pipe(Effect.map(Option.getOrUndefined))

/** A line for each of the first `named` items, then one line for how many more there were (if any). */
const logFirstThenCount = <A>(
  items: ReadonlyArray<A>,
  named: number,
  logOne: (item: A) => Effect.Effect<void>,
  logRest: (count: number) => Effect.Effect<void>
) =>
  Effect.zipRight(
    Effect.forEach(items.slice(0, named), logOne, { discard: true }),
    items.length > named ? logRest(items.length - named) : Effect.void
  )

/**
 * Duplicates named one line each, up to this many per user and level; the rest in one line with their count. A broken
 * source that repeats one key 200,000 times must not write 200,000 log lines (and the run's time into writing them).
 */
export const DUPLICATES_NAMED = 20

/** Between sources a duplicate is news (info); a local line that a source also serves is the normal case (debug). */
const logDuplicates = (duplicates: ReadonlyArray<Duplicate>) =>
  Effect.forEach([LogLevel.Info, LogLevel.Debug], (level) =>
    logFirstThenCount(
      duplicates.filter((dup) => (dup.droppedFrom === LOCAL_LABEL ? LogLevel.Debug : LogLevel.Info) === level),
      DUPLICATES_NAMED,
      (dup) =>
        Effect.logWithLevel(level, "duplicate key dropped").pipe(
          Effect.annotateLogs({
            key: preview(dup.key),
            kept_in: redactUrl(dup.keptIn),
            dropped_from: redactUrl(dup.droppedFrom)
          })
        ),
      (count) =>
        Effect.logWithLevel(level, "more duplicate keys dropped, not listed one by one").pipe(
          Effect.annotateLogs({ count })
        )
    ), { discard: true })

const redactSections = (merged: MergedKeys) =>
  merged.sections.map((section) => (section._tag === "Source" ? { ...section, url: redactUrl(section.url) } : section))

const backupExisting = (
  sshDir: SshDir,
  existing: ExistingFile,
  owner: { uid: number; gid: number },
  fileOwner: { uid: number; gid: number },
  now: Date,
  retention: number
) =>
  Effect.gen(function*() {
    const id = yield* RandomId
    const name = backupFileName(now, yield* id.next)
    const result = yield* sshDir.writeBackup(existing.content, owner, name, retention, fileOwner)
    yield* Effect.logInfo("created backup").pipe(Effect.annotateLogs({ path: result.path }))
    if (result.pruned.length > 0) {
      yield* Effect.logInfo("removed old backups").pipe(
        Effect.annotateLogs({ count: result.pruned.length, retention })
      )
    }
    return result.path
  })

/** The temp file must parse back to exactly the keys meant to be written, in order, before it replaces anything. */
const sameKeysAs = (intended: ReadonlyArray<string>) => (writtenBack: string): string | undefined => {
  const got = parseKeys(writtenBack).keys
  if (got.length !== intended.length) return `it holds ${got.length} keys, expected ${intended.length}`
  const at = got.findIndex((key, i) => key !== intended[i])
  return at < 0 ? undefined : `key ${at + 1} differs from the one meant to be written`
}

const writeAtomically = (
  sshDir: SshDir,
  content: string,
  intendedKeys: ReadonlyArray<string>,
  owner: { uid: number; gid: number },
  now: Date
) =>
  Effect.gen(function*() {
    const id = yield* RandomId
    yield* sshDir.replaceAuthorizedKeys(content, owner, tempFileName(now, yield* id.next), sameKeysAs(intendedKeys))
  })

/** Keys named one line each (revoked, kept without a record), up to this many per user; the rest counted in one. */
export const KEYS_NAMED = 20

/**
 * One line per key, naming it by its fingerprint and the start of its line, for the first KEYS_NAMED; then one line
 * with how many more (`more`): a user's file may hold 400,000 such lines.
 */
const logEachKey = (keys: ReadonlyArray<string>, level: LogLevel.LogLevel, message: string, more: string) =>
  logFirstThenCount(
    keys,
    KEYS_NAMED,
    (key) =>
      Effect.logWithLevel(level, message).pipe(
        Effect.annotateLogs({ fingerprint: keyFingerprint(key) ?? "unknown", key: preview(key) })
      ),
    (count) => Effect.logWithLevel(level, more).pipe(Effect.annotateLogs({ count }))
  )

const logRevoked = (revoked: ReadonlyArray<string>, dryRun: boolean) =>
  // A dry run says what would happen: a grep for revocations must not find ones that never happened.
  logEachKey(
    revoked,
    LogLevel.Info,
    dryRun
      ? "dry run: would revoke key: no source provides it any more"
      : "revoked key: no source provides it any more",
    dryRun ? "dry run: would revoke more keys, not listed one by one" : "revoked more keys, not listed one by one"
  )

/** Keys a first run (no record yet) found under a `# Source:` line that no source provides: kept, and said so. */
const logAdopted = (keys: ReadonlyArray<string>) =>
  logEachKey(
    keys,
    LogLevel.Warning,
    "kept a key under a # Source: line that no source provides: no record yet of the keys the tool wrote " +
      "(first run, e.g. after the Go original), and it may have been added by hand; remove it if it should go",
    "kept more keys under # Source: lines that no source provides, not listed one by one"
  )

/** Leftovers named one line each, up to this many; the rest in one line with their count. */
const STALE_TEMPS_NAMED = 10

const removeStaleTemps = (sshDir: SshDir, before: Date) =>
  sshDir.removeStaleTemps(before).pipe(
    Effect.flatMap((names) =>
      logFirstThenCount(
        names,
        STALE_TEMPS_NAMED,
        (name) =>
          Effect.logInfo("removed a temp file left by an earlier run").pipe(
            Effect.annotateLogs({ path: nodePath.join(sshDir.path, name) })
          ),
        (count) =>
          Effect.logInfo("removed more temp files left by earlier runs").pipe(
            Effect.annotateLogs({ count, dir: sshDir.path })
          )
      )
    )
  )

const sameSet = (a: ReadonlySet<string>, b: ReadonlySet<string>) => a.size === b.size && [...a].every((x) => b.has(x))

const sameRecord = (a: ManagedRecord, b: ManagedRecord) =>
  sameSet(a.identities, b.identities) &&
  (a.lines === undefined ? b.lines === undefined : b.lines !== undefined && sameSet(a.lines, b.lines))

/**
 * Pure: what the guards compare, counted by key (type and blob), not by line. With `managed` (the record of keys the
 * tool wrote last time), the shrink guard compares those with what is written now, whatever the file holds: lines a
 * user added by hand cannot be used to trip it and freeze the file (with `preserve_local_keys: false` they are
 * removed on every run, by policy), nor managed lines the user deleted to make a revocation look like a large one.
 *
 * @since 0.1.0
 */
export const guardCounts = (
  before: ReadonlyArray<string>,
  after: ReadonlyArray<string>,
  managed?: ReadonlySet<string>
): GuardCounts => guardCountsOf(guardIdentities(before), guardIdentities(after), managed)

/** Pure: the identities of `keys` (see KeyIdentity.ts), all and those of lines that hold a usable key. @since 0.1.0 */
export const guardIdentities = (keys: ReadonlyArray<string>): GuardIdentities => {
  // One look at each line: a user's own file may hold hundreds of thousands.
  const all = new Set<string>()
  const usable = new Set<string>()
  for (const key of keys) {
    const material = keyMaterial(key)
    const id = identityFrom(key, material)
    all.add(id)
    if (material !== undefined) usable.add(id)
  }
  return { all, usable }
}

/** The identities guardCounts compares. @since 0.1.0 */
export interface GuardIdentities {
  readonly all: ReadonlySet<string>
  readonly usable: ReadonlySet<string>
}

/** Pure: guardCounts from the identities before and after (each computed once, maybe with a pause between). @since 0.1.0 */
export const guardCountsOf = (
  was: GuardIdentities,
  is: GuardIdentities,
  managed?: ReadonlySet<string>
): GuardCounts => {
  // With a record, the share is taken of what the tool wrote last time, whatever the user deleted since: over the
  // managed keys left in the file, a user who deleted all but one could make its revocation "100%" and keep a revoked
  // key working. What is removed is what this rewrite takes out of the file (of those, with a record): a key the user
  // deleted by hand is not removed again.
  const beforeIds = managed ?? was.all
  let removed = 0
  for (const id of beforeIds) if (was.all.has(id) && !is.all.has(id)) removed++
  return {
    before: beforeIds.size,
    after: is.all.size,
    removed,
    usableBefore: was.usable.size,
    usableAfter: is.usable.size
  }
}

/** Pure: why an account cannot be handled safely, before anything is looked up or opened. @since 0.1.0 */
export const unsafeUsernameReason = (name: string): string | undefined => {
  if (name.includes("/")) return "the name contains a slash"
  if (/[\x00-\x1f\x7f]/.test(name)) return "the name contains a control character"
  if (name === "." || name === "..") return "the name is a path component"
  return undefined
}

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
  const badName = unsafeUsernameReason(user.username)
  if (badName !== undefined) return yield* new UnsafeAccount({ user: user.username, reason: badName })
  const startedAt = options.startedAt ?? new Date(yield* Clock.currentTimeMillis)
  const known = options.resolved?.get(user.username)
  const account = known === undefined ? yield* accounts.lookup(user.username) : yield* known
  const home = nodePath.resolve(account.home)
  const hung = options.unresponsiveHomes?.get(user.username)
  if (hung !== undefined) return yield* new ReadError({ path: home, detail: hung })
  // An account without ~/.ssh is skipped, as the Go original skips it, before any of these refusals.
  const refuse = (reason: string): Effect.Effect<never, UnsafeAccount | SshDirMissing> =>
    Effect.flatMap(
      files.sshDirAbsent(account),
      (absent) =>
        Effect.fail(
          Option.isNone(absent)
            ? new UnsafeAccount({ user: user.username, reason })
            : absent.value.becauseHomeRefused(reason)
        )
    )
  if (home === "/") return yield* refuse("its home directory is /")
  const sharing = (options.accountsByHome?.get(home) ?? []).filter((name) => name !== user.username)
  if (sharing.length > 0) return yield* refuse(`its home ${home} is also the home of ${sharing.join(", ")}`)
  const sameSsh = options.accountsBySshDir?.get(user.username) ?? []
  if (sameSsh.length > 0) {
    return yield* refuse(`its ~/.ssh is the same directory as the ~/.ssh of ${sameSsh.join(", ")}`)
  }
  const owner = { uid: account.uid, gid: account.gid }
  // Fetched before the checks below (which then run on a warm path while other users' requests are under way), but
  // reported after them: they decide first, as when they run first.
  const fetchedEarly = options.sshDirsSeen?.has(user.username) === true
    ? yield* fetchAllSources(user.sources, policy)
    : undefined
  const sshDir = yield* files.open(account).pipe(
    // A group-writable ~ or ~/.ssh is fine when the group is the user's own alone on a host whose sshd (Debian's)
    // accepts that: asked only then, since it takes a getent or two.
    Effect.catchIf(
      (error) => error._tag === "UnsafePath" && error.primaryGroupWritable === true,
      (refused) =>
        Effect.flatMap(
          accounts.sshdAcceptsGroupWritable(account),
          (accepted) => accepted ? files.open(account, { primaryGroupMayWrite: true }) : Effect.fail(refused)
        )
    )
  )
  const other = options.claimDirectory?.(sshDir.identity, user.username)
  if (other !== undefined) {
    return yield* new UnsafeAccount({
      user: user.username,
      reason: `its ${sshDir.path} is the same directory as ${other}'s .ssh`
    })
  }
  // Every real run tidies up after a crashed one, whatever happens to this user afterwards.
  if (!options.dryRun) yield* removeStaleTemps(sshDir, startedAt)
  const fetched = yield* reportFetch(fetchedEarly ?? (yield* fetchAllSources(user.sources, policy)))
  // The user's own file counts too (a 16 MiB one holds 400,000 two-field lines), estimated from its size before it is
  // read: found in review, a few such files made a run of users with small answers use gigabytes.
  const localKeys = Math.min(
    maxLocalKeys(policy, user),
    Math.ceil((yield* sshDir.authorizedKeysSize) / BYTES_PER_KEY_LINE)
  )
  return yield* withinKeyBudget(
    fetchedKeyCount(fetched) + localKeys,
    options.keyBudget,
    syncDirectory(user, policy, { ...options, startedAt }, owner, sshDir, fetched)
  )
}, Effect.scoped)

/** `self` holding `keys` permits of `budget` when the user's answers are huge; otherwise (or without a budget) as is. */
const withinKeyBudget = <A, E, R>(keys: number, budget: SyncOptions["keyBudget"], self: Effect.Effect<A, E, R>) => {
  if (budget === undefined || keys <= BREATHE_ABOVE_KEYS) return self
  const permits = Math.min(keys, budget.permits)
  return Effect.flatMap(
    budget.semaphore.withPermitsIfAvailable(permits)(self),
    Option.match({
      onSome: Effect.succeed,
      onNone: () =>
        Effect.logInfo("waiting for other users with many keys to finish (memory budget)").pipe(
          Effect.annotateLogs({ keys }),
          Effect.zipRight(budget.semaphore.withPermits(permits)(self))
        )
    })
  )
}

/** A low guess at a key line's length in a large local file (real keys are 80 to 750 bytes), for the budget. */
const BYTES_PER_KEY_LINE = 40

/** Past this many key lines (the user's file and sources together), the steps below take long enough to share. */
export const BREATHE_ABOVE_KEYS = 20_000

/**
 * Lets the event loop run once (a macrotask, after I/O) when `keys` is above BREATHE_ABOVE_KEYS: the steps of a user
 * with hundreds of thousands of keys take seconds of CPU, and without a turn in between, what the other users'
 * sources sent meanwhile stays unread until their deadlines have passed (found in review: a user's 400,000-line
 * authorized_keys made another user's source, answering at 1 s with a 2 s deadline, fail every time).
 */
const breathe = (keys: number): Effect.Effect<void> =>
  keys <= BREATHE_ABOVE_KEYS ? Effect.void : Effect.async<void>((resume) => {
    const turn = setImmediate(() => resume(Effect.void))
    return Effect.sync(() => clearImmediate(turn))
  })

/** Everything after the system check and the fetch: merge, guard, decide, back up, write, remember. */
const syncDirectory = (
  user: User,
  policy: Policy,
  options: SyncOptions & { readonly startedAt: Date },
  owner: { uid: number; gid: number },
  sshDir: SshDir,
  fetched: ReadonlyArray<FetchedSource>
) =>
  Effect.gen(function*() {
    const managedKeys = yield* ManagedKeys
    const existing = yield* readLocalFile(sshDir)
    // A file root owns (an administrator's, or one the user moved here from somewhere root wrote) is not the user's to
    // read: only lines that hold an SSH key are kept from it, and its backup stays root's.
    const rootOwned = existing !== undefined && existing.uid !== owner.uid
    const maxLocal = maxLocalKeys(policy, user)
    const parsedLocal = parseKeys(existing?.content ?? "", maxLocal)
    if (parsedLocal.keys.length > maxLocal) {
      return yield* new UnsafePath({
        user: user.username,
        path: sshDir.authorizedKeysPath,
        reason: `it holds more than ${maxLocal} key lines ` +
          `(policy.max_keys_per_source for each source and for the user's own keys, plus the pinned keys)`
      })
    }
    const local = rootOwned
      ? { ...parsedLocal, keys: parsedLocal.keys.filter((key) => keyMaterial(key) !== undefined) }
      : parsedLocal
    const size = local.keys.length + fetchedKeyCount(fetched)
    yield* breathe(size)
    // The config's pins are text; every other key here is a byte string (see Bytes.ts), and so must they be, or a
    // non-ASCII comment is written a byte per character (U+0141 as 0x41) and fails the read-back on every run.
    const pinned = [...policy.pinned_keys, ...user.pinned_keys].map(textToBytes)

    // Revocation: keys the tool itself provided last time are never "local"; see Revocation.ts.
    // Identities as this version reads keys (an older one kept `rsa-sha2-512 …` or a needlessly long blob as written).
    const record = Option.map(yield* managedKeys.read(policy.state_dir, user.username), (stored): ManagedRecord => ({
      ...stored,
      identities: new Set(Array.from(stored.identities, keyIdentity))
    }))
    const previously: ManagedRecord = Option.getOrElse(record, () => {
      const lines = markedManagedLines(existing?.content ?? "")
      return { identities: new Set([...lines].map(keyIdentity)), lines }
    })
    // What the tool provides now: dedup only drops repeated lines, so these are also the identities it will write.
    const managedNow = identitiesOf([pinned, ...fetched.map((f) => f.keys)])
    yield* breathe(size)
    const found = selectLocalKeys(local.keys, previously.identities, managedNow, previously.lines)
    // Without a record (the first run, e.g. right after the Go original) the file's `# Source:` sections say which
    // lines the tool wrote, but a key appended by hand after the last section sits under one too: nothing is revoked
    // on that run (a key someone depends on could go), each such key stays as a local line with a warning, and it
    // is not recorded as the tool's.
    const firstRun = Option.isNone(record)
    // A source that sent only an error page (status 200) has not said that its keys are gone: nothing is revoked on
    // such a run. Those keys stay (as local lines, as the Go original keeps them) and stay recorded as the tool's, so
    // that the first real answer without them revokes them.
    const heldBack = fetched.filter((f) => f.errorPageOnly)
    const holdBack = (): LocalSelection => {
      const stays = new Set([...found.kept, ...found.revoked])
      return { kept: local.keys.filter((key) => stays.has(key)), revoked: [] }
    }
    const selection = heldBack.length > 0 || firstRun ? holdBack() : found
    yield* breathe(size)
    if (firstRun && policy.preserve_local_keys) yield* logAdopted(found.revoked)
    if (!firstRun && heldBack.length > 0 && found.revoked.length > 0) {
      yield* Effect.logWarning(
        "keys no source provides were kept: a source answered with an HTML/JSON error page, not with its keys"
      ).pipe(
        Effect.annotateLogs({ keys: found.revoked.length, source: heldBack.map((f) => redactUrl(f.url)).join(" ") })
      )
    }
    const merged = mergeKeys(fetched, policy.preserve_local_keys ? selection.kept : undefined, pinned)
    // The lines written for them: what a later run may replace with a provider's newer line (see selectLocalKeys).
    const linesNow = new Set(merged.sections.flatMap((section) => (section._tag === "Local" ? [] : section.keys)))
    // What was the tool's before and what is now. Without a record yet, only what the tool provides now is its own
    // (the markers' lines only let a provider's newer line replace the one written before); an old record without
    // lines stays without (every managed line is then the tool's, as before).
    const union: ManagedRecord = {
      identities: new Set([...(firstRun ? [] : previously.identities), ...managedNow]),
      lines: previously.lines === undefined ? undefined : new Set([...previously.lines, ...linesNow])
    }
    const recordNow: ManagedRecord = heldBack.length > 0 && !firstRun
      ? union
      : { identities: managedNow, lines: linesNow }
    yield* breathe(size)
    yield* logDuplicates(merged.duplicates)
    // Logged once the guards let the rewrite go ahead (a real run: once the file is replaced). A refused or failed
    // rewrite leaves every key in the file, and a line saying one was revoked would be false.
    const revokedLines = policy.preserve_local_keys ? logRevoked(selection.revoked, options.dryRun) : Effect.void

    const sections = redactSections(merged)
    const body = renderBody(sections)
    // A file the next run would refuse to read (and so fail this user on every run) is not written in the first place.
    const fileBytes = renderHeader(options.build, options.startedAt).length + body.length
    const intendedKeys = allKeys(sections)
    const keys = intendedKeys.length
    if (fileBytes > MAX_LOCAL_FILE_BYTES || keys > maxLocal) {
      return yield* new WriteError({
        path: sshDir.authorizedKeysPath,
        operation: "write",
        detail: fileBytes > MAX_LOCAL_FILE_BYTES
          ? `the new file would be ${fileBytes} bytes, more than the ${MAX_LOCAL_FILE_BYTES} this tool reads back ` +
            "(the next run would refuse it); nothing was written"
          : `the new file would hold ${keys} key lines, more than the ${maxLocal} this tool reads back ` +
            "(the next run would refuse it); nothing was written"
      })
    }
    const diff = diffKeys(local.keys, sections)
    yield* breathe(size)
    const path = sshDir.authorizedKeysPath
    const decision = decideWrite(existing, body, owner)
    yield* breathe(size)
    const recordIsCurrent = Option.match(record, { onNone: () => false, onSome: (r) => sameRecord(r, recordNow) })
    yield* breathe(size)

    if (decision === "unchanged") {
      if (!recordIsCurrent) {
        yield* options.dryRun
          ? managedKeys.checkWritable(policy.state_dir)
          : managedKeys.write(policy.state_dir, user.username, recordNow)
      }
      yield* Effect.logInfo("authorized_keys unchanged").pipe(Effect.annotateLogs({ keys }))
      return { _tag: "Unchanged", user: user.username, path, keys } satisfies UserOutcome
    }
    // In a root-owned file no line is the user's junk: every key counts for the shrink guard.
    const managedForGuard = rootOwned ? undefined : Option.getOrUndefined(record)?.identities
    const was = guardIdentities(local.keys)
    yield* breathe(size)
    const is = guardIdentities(intendedKeys)
    yield* breathe(size)
    const refused = checkGuards(user.username, path, guardCountsOf(was, is, managedForGuard), policy)
    if (refused !== undefined) return yield* refused
    yield* breathe(size)
    const backsUp = decision === "content" && policy.backup_enabled && existing !== undefined && existing.content !== ""
    const recordsFirst = !Option.isSome(record) || !sameRecord(record.value, union)
    if (options.dryRun) {
      // The writes a real run makes, in its order (record, backup, file), fail the dry run where they are refused
      // before anything is written: a backups directory it would refuse, a read-only mount (a unit without the
      // ReadWritePaths= it needs). A full disk shows only when writing.
      if (recordsFirst) yield* managedKeys.checkWritable(policy.state_dir)
      if (backsUp) yield* sshDir.checkBackups(owner)
      yield* sshDir.checkWritable
      yield* revokedLines
      yield* Effect.logInfo("dry run: would update authorized_keys").pipe(
        Effect.annotateLogs({ path, keys, added: diff.added.length, removed: diff.removed.length })
      )
      return { _tag: "WouldUpdate", user: user.username, path, keys, diff } satisfies UserOutcome
    }

    // Remember the union first: if the rename never happens, keys (and lines) still in the old file stay the tool's.
    if (recordsFirst) yield* managedKeys.write(policy.state_dir, user.username, union)
    const now = new Date(yield* Clock.currentTimeMillis)
    const content = renderHeader(options.build, now) + body
    const backup = backsUp
      ? yield* backupExisting(sshDir, existing, owner, rootOwned ? ROOT : owner, now, policy.backup_retention_count)
      : undefined
    // The line that reports the replacement goes with it: a stop (SIGTERM) arriving between the two would leave a
    // replaced file that no log line mentions.
    yield* Effect.uninterruptible(Effect.zipRight(
      writeAtomically(sshDir, content, intendedKeys, owner, now),
      Effect.zipRight(
        revokedLines,
        Effect.logInfo("updated authorized_keys").pipe(
          Effect.annotateLogs({ path, keys, added: diff.added.length, removed: diff.removed.length })
        )
      )
    ))
    if (!sameRecord(union, recordNow)) {
      // The file is written; a stale (larger) record only means a later run re-checks more keys.
      yield* managedKeys.write(policy.state_dir, user.username, recordNow).pipe(
        Effect.catchAll((error) => Effect.logWarning(error.message))
      )
    }
    return { _tag: "Updated", user: user.username, path, keys, diff, backup } satisfies UserOutcome
  })

/** A user left alone on purpose (the spec's skips): a warning, and a `Skipped` row. */
const skipped = (user: User) => (reason: UserSkipReason) =>
  Effect.logWarning(`skipping user: ${reason.message}`).pipe(
    Effect.as<UserOutcome>({ _tag: "Skipped", user: user.username, reason })
  )

/**
 * `syncUser` with every failure turned into an outcome row and logged once: skips as warnings, failures as errors.
 * A defect (a bug) fails only this user, with the old file in place.
 *
 * @since 0.1.0
 */
export const syncUserOutcome = (user: User, policy: Policy, options: SyncOptions): Effect.Effect<
  UserOutcome,
  never,
  Accounts | SshFiles | KeySource | RandomId | ManagedKeys
> =>
  syncUser(user, policy, options).pipe(
    Effect.catchTags({ UserNotFound: skipped(user), SshDirMissing: skipped(user) }),
    Effect.catchAll((error) =>
      Effect.logError(`user not synced, authorized_keys left untouched: ${error.message}`).pipe(
        Effect.as<UserOutcome>({ _tag: "Failed", user: user.username, error })
      )
    ),
    Effect.catchAllDefect((defect) => {
      const error = new UserSyncAborted({
        user: user.username,
        detail: `internal error: ${describeCause(defect)}`,
        cause: defect
      })
      return Effect.logError(`user not synced, authorized_keys left untouched: ${error.message}`).pipe(
        Effect.as<UserOutcome>({ _tag: "Failed", user: user.username, error })
      )
    }),
    Effect.annotateLogs({ user: user.username })
  )
