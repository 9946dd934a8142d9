/**
 * Every failure a user of authkeysync can act on, one tagged class each. The `message` of each says what happened,
 * to which user, file or source, so a log line built from it needs nothing else.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

// =============================================================================
// Configuration
// =============================================================================

/** The config file could not be read, is not YAML, or does not match the schema. Fatal for the whole run. */
export class ConfigError extends Data.TaggedError("ConfigError")<{
  readonly file: string
  readonly reason: "Read" | "Yaml" | "Schema"
  readonly detail: string
}> {
  override get message() {
    return `config ${this.file}: ${this.detail}`
  }
}

// =============================================================================
// Accounts and the .ssh directory (the spec's "system check")
// =============================================================================

/** The configured username does not exist on this host. The user is skipped, not failed. */
export class UserNotFound extends Data.TaggedError("UserNotFound")<{
  readonly user: string
}> {
  override get message() {
    return `user ${this.user} does not exist on this host`
  }
}

/** The account exists but `~/.ssh` is missing or not a directory. The user is skipped, not failed. */
export class SshDirMissing extends Data.TaggedError("SshDirMissing")<{
  readonly user: string
  readonly path: string
  readonly reason: "missing" | "not-a-directory"
  /** Why the home itself would be refused once it had a `.ssh` (then creating one is not the whole fix). */
  readonly homeRefused?: string
}> {
  /** The same skip, saying why the home would be refused once it had a `.ssh`. */
  becauseHomeRefused(homeRefused: string): SshDirMissing {
    return new SshDirMissing({ user: this.user, path: this.path, reason: this.reason, homeRefused })
  }
  override get message() {
    const what = this.reason === "missing" ? "does not exist" : "is not a directory"
    if (this.homeRefused !== undefined) {
      return `${this.path} ${what}, and the home would be refused with one: ${this.homeRefused}`
    }
    return this.reason === "missing"
      ? `${this.path} ${what}; create it (mode 0700, owned by ${this.user}) to manage this user`
      : `${this.path} ${what}`
  }
}

/** The account database could not be asked (getent/dscl failed or printed something unparseable). */
export class AccountLookupError extends Data.TaggedError("AccountLookupError")<{
  readonly user: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `cannot look up account ${this.user}: ${this.detail}`
  }
}

/**
 * A path inside a user-controlled directory is something the tool must not touch as root: a symbolic link, a file
 * with several hard links, a FIFO or device, a directory where a file belongs. The user fails; nothing is touched.
 */
export class UnsafePath extends Data.TaggedError("UnsafePath")<{
  readonly user: string
  readonly path: string
  readonly reason: string
  /**
   * Refused only because the user's primary group may write to it: allowed after all when sshd here accepts that
   * (see `Accounts.sshdAcceptsGroupWritable`).
   */
  readonly primaryGroupWritable?: true
}> {
  override get message() {
    return `refusing to use ${this.path}: ${this.reason}`
  }
}

/** An account the tool will not write for: a name or home that cannot be handled safely. */
export class UnsafeAccount extends Data.TaggedError("UnsafeAccount")<{
  readonly user: string
  readonly reason: string
}> {
  override get message() {
    return `refusing account ${JSON.stringify(this.user)}: ${this.reason}`
  }
}

/** A write refused by the lockout or shrink guard (policy.allow_empty, max_removed_keys, max_removed_percent). */
export class GuardRefused extends Data.TaggedError("GuardRefused")<{
  readonly user: string
  readonly path: string
  readonly guard: "lockout" | "shrink"
  readonly detail: string
}> {
  override get message() {
    return `${this.guard} guard refused to rewrite ${this.path}: ${this.detail}`
  }
}

/** The root-only record of which keys the tool wrote from sources could not be read or written. */
export class StateError extends Data.TaggedError("StateError")<{
  readonly path: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `state ${this.path}: ${this.detail}`
  }
}

// =============================================================================
// Sources
// =============================================================================

/** A source answered with something other than 200, could not be reached, or sent an unusable body. */
export class SourceFetchError extends Data.TaggedError("SourceFetchError")<{
  readonly url: string
  readonly reason: "Status" | "Transport" | "Body" | "TooLarge" | "LineTooLong" | "TooManyKeys"
  readonly status?: number
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `source ${this.url}: ${this.detail}`
  }
}

/** A source did not answer completely within its `timeout_seconds`. */
export class SourceTimeout extends Data.TaggedError("SourceTimeout")<{
  readonly url: string
  readonly timeoutSeconds: number
}> {
  override get message() {
    return `source ${this.url}: no complete answer within ${this.timeoutSeconds}s (timeout_seconds)`
  }
}

// =============================================================================
// Files
// =============================================================================

/** Reading the existing authorized_keys (or a directory listing) failed. */
export class ReadError extends Data.TaggedError("ReadError")<{
  readonly path: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `cannot read ${this.path}: ${this.detail}`
  }
}

/** Writing the new file, a backup or a temp file failed; the old authorized_keys is still in place. */
export class WriteError extends Data.TaggedError("WriteError")<{
  readonly path: string
  readonly operation: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `cannot ${this.operation} ${this.path}: ${this.detail}`
  }
}

/**
 * A user's sync ended by neither a result nor one of the errors above: a bug (a defect), or the user's fiber was
 * interrupted on its own. The file was left as it was.
 */
export class UserSyncAborted extends Data.TaggedError("UserSyncAborted")<{
  readonly user: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `cannot sync user ${this.user}: ${this.detail}`
  }
}

/** The run lock could not be taken: another run holds it past `--lock-timeout`, or its directory is unsafe. */
export class RunLockError extends Data.TaggedError("RunLockError")<{
  readonly path: string
  readonly detail: string
}> {
  override get message() {
    return `run lock ${this.path}: ${this.detail}`
  }
}

/** A `ca_file` that cannot be used: unreadable, not a regular file, too large, or without a PEM certificate. */
export class CaFileError extends Data.TaggedError("CaFileError")<{
  readonly caFile: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return this.detail
  }
}

/** What stops one user's sync without touching its file. */
export type UserSyncError =
  | AccountLookupError
  | UnsafeAccount
  | UnsafePath
  | GuardRefused
  | StateError
  | SourceFetchError
  | SourceTimeout
  | ReadError
  | WriteError
  | UserSyncAborted

/** What makes the tool leave a user alone on purpose (the spec logs a warning and exits 0 for these). */
export type UserSkipReason = UserNotFound | SshDirMissing

/** A one-line description of a Node.js system error, e.g. `ENOSPC: no space left on device`. */
export const describeCause = (cause: unknown): string => {
  if (cause instanceof Error) {
    const { code, syscall } = cause as NodeJS.ErrnoException
    let text = cause.message.replace(/\s+/g, " ").trim()
    // Node appends ", open '/proc/self/fd/19/x'": the caller already names the real path, the pinned one confuses.
    if (syscall !== undefined) text = text.replace(new RegExp(`, ${syscall}( '.*)?$`), "")
    return code !== undefined && !text.startsWith(code) ? `${code}: ${text}` : text
  }
  return String(cause)
}
