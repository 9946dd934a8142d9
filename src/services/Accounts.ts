/**
 * Local account lookup: uid, primary gid and home directory of a login name.
 * Linux asks `getent passwd` so that NSS sources (LDAP, SSSD, systemd-homed) are honoured; macOS asks `dscl`.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Either, Layer } from "effect"
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { AccountLookupError, UserNotFound } from "../pipeline/Errors.js"
import { findCommand, SYSTEM_COMMAND_DIRS } from "./internal/systemCommands.js"

/** @since 0.1.0 */
export interface Account {
  readonly name: string
  readonly uid: number
  readonly gid: number
  readonly home: string
}

/** One name's answer. @since 0.1.0 */
export type AccountLookup = Either.Either<Account, UserNotFound | AccountLookupError>

/** @since 0.1.0 */
export class Accounts extends Context.Tag("authkeysync/Accounts")<Accounts, {
  readonly lookup: (name: string) => Effect.Effect<Account, UserNotFound | AccountLookupError>
  /** Every name at once (on Linux one `getent` call for all of them); each name gets its own answer. */
  readonly lookupAll: (names: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, AccountLookup>>
  /**
   * Whether sshd on this host accepts a `~` and `~/.ssh` that the account's primary group may write: on Debian and its
   * derivatives (Ubuntu; their sshd carries that exception, and their umask for such accounts is 002) when the group is
   * the account's own alone, as that sshd rules it: named as the account, no other member listed, and no other account
   * with it as primary group. False elsewhere (stock OpenSSH refuses such a directory) and when it cannot be told.
   */
  readonly sshdAcceptsGroupWritable: (account: Account) => Effect.Effect<boolean>
}>() {}

// =============================================================================
// Parsing (pure)
// =============================================================================

/** Parse one `passwd(5)` line: `name:x:uid:gid:gecos:home:shell`. @since 0.1.0 */
export const parsePasswdLine = (line: string): Account | undefined => {
  const fields = line.replace(/\r?\n$/, "").split(":")
  if (fields.length < 7) return undefined
  const [name, , uid, gid, , home] = fields
  if (name === undefined || home === undefined || !/^\d+$/.test(uid ?? "") || !/^\d+$/.test(gid ?? "")) return undefined
  // An empty or relative home would make "~/.ssh" relative to wherever root happens to run the tool.
  if (!home.startsWith("/")) return undefined
  return { name, uid: Number(uid), gid: Number(gid), home }
}

/** Parse `dscl . -read /Users/NAME UniqueID PrimaryGroupID NFSHomeDirectory`. @since 0.1.0 */
export const parseDsclRecord = (name: string, text: string): Account | undefined => {
  const field = (key: string) => text.match(new RegExp(`^${key}:\\s*(.+)$`, "m"))?.[1]?.trim()
  const uid = field("UniqueID")
  const gid = field("PrimaryGroupID")
  const home = field("NFSHomeDirectory")
  if (uid === undefined || gid === undefined || home === undefined || !home.startsWith("/")) return undefined
  if (!/^-?\d+$/.test(uid) || !/^-?\d+$/.test(gid)) return undefined
  return { name, uid: Number(uid), gid: Number(gid), home }
}

// =============================================================================
// Live
// =============================================================================

interface CommandResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const LOOKUP_TIMEOUT_MS = 15_000

/**
 * The command did not end on its own: killed at the lookup timeout (`timedOut`: a hung NSS source) or by a signal
 * (a crash, SIGSEGV or SIGABRT, is one it raised itself).
 */
class CommandKilled extends Error {
  constructor(message: string, readonly timedOut: boolean, options: ErrorOptions) {
    super(message, options)
  }
}

/** A command, what it printed, and how it exited. */
type RunCommand = (file: string, args: ReadonlyArray<string>) => Effect.Effect<CommandResult, Error>

// Part of this module's API since 0.3.0; they live with the other system-command code.
export { findCommand, SYSTEM_COMMAND_DIRS }

const runIn = (dirs: ReadonlyArray<string>, timeoutMs: number): RunCommand => (file, args) =>
  Effect.suspend(() => {
    const found = findCommand(file, dirs)
    return Either.isLeft(found) ? Effect.fail(new Error(found.left)) : run(found.right, args, dirs, timeoutMs)
  })

/** What one getent may print; the whole account list of a large directory (sssd, NIS) is far more than one entry. */
const MAX_OUTPUT_BYTES = 256 * 1024 * 1024

const run = (file: string, args: ReadonlyArray<string>, dirs: ReadonlyArray<string>, timeoutMs: number) =>
  Effect.async<CommandResult, Error>((resume, signal) => {
    execFile(
      file,
      args,
      {
        timeout: timeoutMs,
        signal,
        encoding: "utf8",
        maxBuffer: MAX_OUTPUT_BYTES,
        env: { PATH: dirs.join(":"), LC_ALL: "C" }
      },
      (error, stdout, stderr) => {
        if (!error || typeof error.code === "number") {
          return resume(Effect.succeed({ code: error ? Number(error.code) : 0, stdout, stderr }))
        }
        // Ended by a signal: execFile says only "Command failed: <argv>" and a newline. A hung NSS source (LDAP down)
        // is killed at the timeout; the log line must say so.
        if (error.killed) {
          resume(
            Effect.fail(
              new CommandKilled(`it did not answer within ${timeoutMs / 1000}s and was killed`, true, { cause: error })
            )
          )
        } else if (error.signal) {
          resume(Effect.fail(new CommandKilled(`it was killed by ${error.signal}`, false, { cause: error })))
        } else {
          resume(Effect.fail(new Error(error.message, { cause: error })))
        }
      }
    )
  })

/** An account whose name is not the name asked for (getent treats "1000" as a uid) is no match. */
const exactMatch = (name: string, account: Account | undefined): account is Account => account?.name === name

/**
 * getent(1) looks an all-digit key up as a uid (getpwuid), never as a name, so an account named `20231234` (which the
 * Go original's user.Lookup, getpwnam, finds) is never found by `getent passwd -- 20231234`.
 */
const numericName = (name: string) => /^[0-9]+$/.test(name)

/**
 * `getent` run for `name`'s lookup: whether it found the key(s) (exit 0) or not (exit 2), and what it printed. A
 * failure to run it, or any other exit code (an NSS failure), fails the lookup.
 */
const getent = (run: RunCommand, name: string, args: ReadonlyArray<string>) =>
  run("getent", args).pipe(
    Effect.mapError((cause) =>
      new AccountLookupError({ user: name, detail: `getent failed: ${cause.message}`, cause })
    ),
    Effect.flatMap(({ code, stderr, stdout }) =>
      code === 0 || code === 2
        ? Effect.succeed({ found: code === 0, stdout })
        : Effect.fail(
          new AccountLookupError({ user: name, detail: `getent exited with ${code}: ${stderr.trim() || "no output"}` })
        )
    )
  )

/**
 * An all-digit name: the whole database (`getent passwd`), matched by name. Not there is a failure, not a skip: a
 * directory that does not list its accounts (SSSD without enumeration) may still have it, and a skipped user's
 * revocations would silently not happen.
 */
const lookupNumericLinux = (run: RunCommand, name: string): Effect.Effect<Account, AccountLookupError> =>
  Effect.flatMap(getent(run, name, ["passwd"]), ({ stdout }) => {
    const account = stdout.split("\n").map(parsePasswdLine).find((a) => exactMatch(name, a))
    return account !== undefined ? Effect.succeed(account) : Effect.fail(
      new AccountLookupError({
        user: name,
        detail: "an all-digit account name cannot be looked up by name (getent takes it as a uid), and the account " +
          "list (getent passwd) does not have it"
      })
    )
  })

const lookupLinux = (run: RunCommand, name: string): Effect.Effect<Account, UserNotFound | AccountLookupError> =>
  numericName(name) ? lookupNumericLinux(run, name) : Effect.flatMap(
    getent(run, name, ["passwd", "--", name]),
    ({ found, stdout }): Effect.Effect<Account, UserNotFound | AccountLookupError> => {
      // getent(1): exit 2 means "key not found in database".
      if (!found) return Effect.fail(new UserNotFound({ user: name }))
      const account = parsePasswdLine(stdout.split("\n")[0] ?? "")
      if (account === undefined) {
        return Effect.fail(new AccountLookupError({ user: name, detail: "getent printed an unreadable passwd entry" }))
      }
      return exactMatch(name, account) ? Effect.succeed(account) : Effect.fail(new UserNotFound({ user: name }))
    }
  )

interface BatchAnswer {
  readonly found: ReadonlyMap<string, Account>
  /** Printed, but with an entry that cannot be used. */
  readonly unreadable: ReadonlySet<string>
  /** Whether a name not in `found` does not exist. */
  readonly complete: boolean
  readonly killed?: CommandKilled
}

const NO_ANSWER: BatchAnswer = { found: new Map(), unreadable: new Set(), complete: false }

/**
 * Many names, one `getent passwd -- a b c` (a process per user costs more CPU than the rest of a sync).
 * getent exits 0 when it found every name and 2 when some were not found, so after either a name it did not print
 * does not exist. Any other exit (an NSS failure) answers nothing, and the names are asked one by one so that one
 * broken lookup never hides behind another; so is a getent that died of a signal (an NSS module that crashes on one
 * entry). A getent that had to be killed at the timeout (`killed`: a hung NSS source, LDAP down for one name) is
 * asked again too, each name in its own getent and all at once (see lookupAll): a name that hangs then fails alone,
 * one timeout later, and the others (local accounts among them) are answered.
 */
const lookupManyLinux = (run: RunCommand, names: ReadonlyArray<string>): Effect.Effect<BatchAnswer> =>
  run("getent", ["passwd", "--", ...names]).pipe(
    Effect.map(({ code, stdout }): BatchAnswer => {
      const found = new Map<string, Account>()
      // Names getent printed an entry for that cannot be used (an empty or relative home): they exist, so they are
      // asked again on their own, which fails them, as the Go original fails an account without a home.
      const unreadable = new Set<string>()
      if (code !== 0 && code !== 2) return { found, unreadable, complete: false }
      const asked = new Set(names)
      for (const line of stdout.split("\n")) {
        const account = parsePasswdLine(line)
        if (account !== undefined && asked.has(account.name) && !found.has(account.name)) {
          found.set(account.name, account)
        }
        const name = line.split(":")[0]
        if (account === undefined && name !== undefined && asked.has(name)) unreadable.add(name)
      }
      return { found, unreadable, complete: true }
    }),
    Effect.catchAll((error) =>
      Effect.succeed(error instanceof CommandKilled && error.timedOut ? { ...NO_ANSWER, killed: error } : NO_ANSWER)
    )
  )

const lookupDarwin = (run: RunCommand, name: string): Effect.Effect<Account, UserNotFound | AccountLookupError> =>
  run("dscl", [".", "-read", `/Users/${name}`, "UniqueID", "PrimaryGroupID", "NFSHomeDirectory"]).pipe(
    Effect.mapError((cause) => new AccountLookupError({ user: name, detail: `dscl failed: ${cause.message}`, cause })),
    Effect.flatMap(({ code, stderr, stdout }): Effect.Effect<Account, UserNotFound | AccountLookupError> => {
      if (code !== 0) {
        return /eDSRecordNotFound|not found/i.test(stderr + stdout)
          ? Effect.fail(new UserNotFound({ user: name }))
          : Effect.fail(new AccountLookupError({ user: name, detail: `dscl exited with ${code}: ${stderr.trim()}` }))
      }
      const account = parseDsclRecord(name, stdout)
      return account === undefined
        ? Effect.fail(new AccountLookupError({ user: name, detail: "dscl printed an unreadable record" }))
        : Effect.succeed(account)
    })
  )

/**
 * Pure: whether a `group(5)` line (`name:x:gid:member,member`) is the account's own group alone: its primary group,
 * named as the account, with no member but the account itself.
 *
 * @since 0.1.0
 */
export const isOwnGroupLine = (line: string, account: Account): boolean => {
  const [name, , gid, members] = line.split(":")
  if (name !== account.name || gid !== String(account.gid) || members === undefined) return false
  return members.split(",").every((member) => member === "" || member === account.name)
}

/** Debian and its derivatives say so here; their sshd has the group-writable exception (user-group-modes). */
const DEBIAN_VERSION_FILE = "/etc/debian_version"

/** `accountList`: `getent passwd`, the whole account list, asked at most once a minute whatever many users need it. */
const ownsPrimaryGroupLinux = (
  run: RunCommand,
  accountList: Effect.Effect<CommandResult, Error>,
  account: Account
): Effect.Effect<boolean> =>
  run("getent", ["group", "--", String(account.gid)]).pipe(
    Effect.flatMap(({ code, stdout }) =>
      code === 0 && isOwnGroupLine(stdout.split("\n")[0] ?? "", account)
        // Members by primary group are not in the group's line: the whole account list is, as sshd reads it.
        ? Effect.map(accountList, ({ code: listed, stdout: accounts }) =>
          listed === 0 && accounts.split("\n").every((line) => {
            // As sshd counts them: any entry with the group as primary, by uid (an entry without a usable home too).
            const [, , uid, gid] = line.split(":")
            return gid !== String(account.gid) || uid === String(account.uid)
          }))
        : Effect.succeed(false)
    ),
    Effect.orElseSucceed(() => false)
  )

/** A name that can never be an account and must not reach a path or an argv. */
const impossibleName = (name: string) => name === "" || /[/:\0-\x1f\x7f]/.test(name) || name.startsWith("-")

const lookupOne = (run: RunCommand, name: string): Effect.Effect<Account, UserNotFound | AccountLookupError> =>
  impossibleName(name)
    ? Effect.fail(new UserNotFound({ user: name }))
    : process.platform === "darwin"
    ? lookupDarwin(run, name)
    : lookupLinux(run, name)

/** getent processes at a time when a killed batch is asked again name by name. */
const RETRY_AFTER_KILL_CONCURRENCY = 128

// Plain effects, not Effect.request: request batching delayed interruption (SIGTERM) of the users waiting on it.
const lookupAll = (
  run: RunCommand,
  names: ReadonlyArray<string>,
  timeoutMs: number
): Effect.Effect<ReadonlyMap<string, AccountLookup>> =>
  Effect.gen(function*() {
    const unique = [...new Set(names)]
    // All-digit names are asked one by one (lookupNumericLinux): in the batch getent would take them as uids.
    const batchable = (name: string) => !impossibleName(name) && !numericName(name)
    const possible = unique.filter(batchable)
    const batch = process.platform === "linux" && possible.length > 1
      ? yield* lookupManyLinux(run, possible)
      : NO_ANSWER
    const killed = batch.killed
    // After a killed batch the names are asked again within one more timeout in all, however many hang: a name whose
    // turn has not come, or whose own getent still runs, when it is up fails as the batch did (LDAP down for every
    // name must not cost one timeout per 128 names).
    const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
    const again = (name: string): Effect.Effect<Account, UserNotFound | AccountLookupError> => {
      if (killed === undefined) return lookupOne(run, name)
      const failed = new AccountLookupError({ user: name, detail: `getent failed: ${killed.message}`, cause: killed })
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        now >= deadline
          ? Effect.fail(failed)
          : lookupOne(run, name).pipe(Effect.timeoutFail({ duration: deadline - now, onTimeout: () => failed })))
    }
    const answers = yield* Effect.forEach(unique, (name) => {
      const hit = batch.found.get(name)
      const answer = hit !== undefined
        ? Effect.succeed(hit)
        : batch.complete && !batch.unreadable.has(name) && batchable(name)
        ? Effect.fail(new UserNotFound({ user: name }))
        : again(name)
      return Effect.either(answer).pipe(Effect.map((either) => [name, either] as const))
    }, {
      // After a killed batch, names that hang hold their getent until the deadline: enough at a time that the others
      // are not queued behind them.
      concurrency: killed === undefined ? 8 : Math.min(unique.length, RETRY_AFTER_KILL_CONCURRENCY)
    })
    return new Map(answers)
  })

/**
 * The host's account database, asking the `getent` (macOS: `dscl`) found first in `commandDirs` (absolute
 * directories). `lookupAll` (what `runAll` uses) asks one `getent` call for every name.
 *
 * @since 0.1.0
 */
export const layerWith = (options: {
  readonly commandDirs: ReadonlyArray<string>
  /** How long one `getent` may take before it is killed (a hung NSS source); 15 s unless given. */
  readonly lookupTimeoutMs?: number
  /** Whether sshd here is Debian's (see sshdAcceptsGroupWritable); unless given, whether /etc/debian_version exists. */
  readonly debianFamily?: boolean
}): Layer.Layer<Accounts> => {
  const timeoutMs = options.lookupTimeoutMs ?? LOOKUP_TIMEOUT_MS
  const run = runIn([...options.commandDirs], timeoutMs)
  // On an Ubuntu host many users may have a group-writable ~/.ssh: one account list serves them all.
  return Layer.effect(
    Accounts,
    Effect.map(Effect.cachedWithTTL(run("getent", ["passwd"]), "1 minute"), (accountList) =>
      Accounts.of({
        lookup: (name) => lookupOne(run, name),
        lookupAll: (names) => lookupAll(run, names, timeoutMs),
        sshdAcceptsGroupWritable: (account) =>
          process.platform === "linux" && options.debianFamily !== false &&
            (options.debianFamily === true || existsSync(DEBIAN_VERSION_FILE))
            ? ownsPrimaryGroupLinux(run, accountList, account)
            : Effect.succeed(false)
      }))
  )
}

/**
 * The host's account database, with `getent` (macOS: `dscl`) from the system's directories (SYSTEM_COMMAND_DIRS).
 *
 * @since 0.1.0
 */
export const layer: Layer.Layer<Accounts> = layerWith({ commandDirs: SYSTEM_COMMAND_DIRS })

/** A fixed set of accounts; sshd accepts group-writable directories of those named in `groupWritableAccepted`. @since 0.1.0 */
export const layerTest = (
  accounts: ReadonlyArray<Account>,
  groupWritableAccepted: ReadonlyArray<string> = []
): Layer.Layer<Accounts> => {
  const find = (name: string): Effect.Effect<Account, UserNotFound> => {
    const account = accounts.find((a) => a.name === name)
    return account ? Effect.succeed(account) : Effect.fail(new UserNotFound({ user: name }))
  }
  return Layer.succeed(
    Accounts,
    Accounts.of({
      lookup: (name) => find(name),
      lookupAll: (names) =>
        Effect.forEach(names, (name) => Effect.either(find(name)).pipe(Effect.map((e) => [name, e] as const))).pipe(
          Effect.map((entries) => new Map(entries))
        ),
      sshdAcceptsGroupWritable: (account) => Effect.succeed(groupWritableAccepted.includes(account.name))
    })
  )
}
