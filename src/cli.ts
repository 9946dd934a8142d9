#!/usr/bin/env node
/**
 * The `authkeysync` command: flags in, one run of the sync pipeline, exit code out. Everything else lives in
 * `pipeline/` and `services/`.
 *
 * @since 0.1.0
 */
import { CliConfig, Command, Options, ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Duration, Effect, Exit, Layer, Logger, LogLevel } from "effect"
import { buildInfo } from "./Build.js"
import { asksForVersion, goFlagError, normalizeGoFlags } from "./goFlags.js"
import { bytesToText } from "./pipeline/Bytes.js"
import { DEFAULT_CONFIG_PATH } from "./pipeline/Config.js"
import { renderDiff } from "./pipeline/Diff.js"
import { visibleText } from "./pipeline/Display.js"
import { loadConfig } from "./pipeline/loadConfig.js"
import { DEFAULT_CONCURRENCY, runAll, type RunSummary } from "./pipeline/runAll.js"
import * as HttpTransport from "./services/HttpTransport.js"
import * as Logging from "./services/Logging.js"
import { defaultLockPath, layer as RunLockLive, RunLock } from "./services/RunLock.js"
import { SyncLive } from "./SyncLive.js"

const DEFAULT_LOCK_TIMEOUT = 60
/** A wrong flag or argument: exit 2, as the Go original's flag package (and most Unix tools) exit on a usage error. */
const USAGE_ERROR = 2

// =============================================================================
// Flags
// =============================================================================

// Plain text, not Options.file: loadConfig reports a missing or unreadable file in the tool's own one-line format, and
// a config from a pipe (`--config <(…)`, as the Go original reads it) is not refused for not being a regular file.
const config = Options.text("config").pipe(
  Options.withPseudoName("PATH"),
  Options.withDescription(`Path to the configuration file (default ${DEFAULT_CONFIG_PATH})`),
  Options.withDefault(DEFAULT_CONFIG_PATH)
)
const dryRun = Options.boolean("dry-run").pipe(
  Options.withDescription("Fetch and compare, print what would change, write nothing; exit code as a real run")
)
const debug = Options.boolean("debug").pipe(Options.withDescription("Log debug details too"))
const quiet = Options.boolean("quiet").pipe(Options.withDescription("Log only warnings and errors"))
const silent = Options.boolean("silent").pipe(
  Options.withDescription("Log only errors (as the Go original's --silent)")
)
const logFormat = Options.choice("log-format", ["text", "json"]).pipe(
  Options.withDescription("Log line format: text (logfmt, default) or json"),
  Options.withDefault("text" as const)
)
const concurrency = Options.integer("concurrency").pipe(
  Options.withPseudoName("N"),
  Options.withDescription(`How many users to sync at the same time (default ${DEFAULT_CONCURRENCY})`),
  Options.withDefault(DEFAULT_CONCURRENCY)
)
const lockTimeout = Options.integer("lock-timeout").pipe(
  Options.withPseudoName("SECONDS"),
  Options.withDescription(
    `Seconds to wait for another run to finish before giving up (default ${DEFAULT_LOCK_TIMEOUT})`
  ),
  Options.withDefault(DEFAULT_LOCK_TIMEOUT)
)
const lockFile = Options.text("lock-file").pipe(
  Options.withPseudoName("PATH"),
  Options.withDescription(`The run lock; its directory must be root's alone (default ${defaultLockPath()})`),
  Options.withDefault(defaultLockPath())
)

// =============================================================================
// Handler
// =============================================================================

/**
 * A dry run's answer: the diff of every file that would change, whatever the log level (it is the output asked for,
 * not a log line): plain text, or with `--log-format json` one record per file.
 */
const printDryRun = (summary: RunSummary, format: Logging.LogFormat) =>
  Effect.forEach(summary.outcomes, (outcome) => {
    if (outcome._tag !== "WouldUpdate") return Effect.void
    return format === "json"
      ? Effect.logInfo("dry run diff").pipe(
        Effect.annotateLogs({
          user: outcome.user,
          path: outcome.path,
          added: outcome.diff.added.map((c) => bytesToText(c.key)),
          removed: outcome.diff.removed.map((c) => bytesToText(c.key))
        }),
        Logger.withMinimumLogLevel(LogLevel.All)
      )
      // Straight to stdout, not through Console (withPlainOutput would strip escape sequences without a trace): a
      // control character in a key line (an ESC in a comment, from a source or a user's own file) is shown as `\x1b`,
      // so that the diff says what would be written without doing what it says to the terminal reading it.
      : Effect.sync(() =>
        void globalThis.console.log(
          bytesToText(renderDiff(outcome.path, outcome.diff)).trimEnd().split("\n").map(visibleText).join("\n")
        )
      )
  }, { discard: true })

/** An error that stops the whole run before any user is synced: one log line, one stderr line, exit 1. */
const fatal = (logMessage: string) => (error: { readonly message: string }) =>
  Effect.logError(logMessage).pipe(
    Effect.annotateLogs({ error: error.message }),
    Effect.zipRight(Console.error(`authkeysync: ${error.message}`)),
    Effect.as(1)
  )

const command = Command.make(
  "authkeysync",
  { config, dryRun, debug, quiet, silent, logFormat, concurrency, lockTimeout, lockFile },
  (flags) => {
    // The Go original's order: --debug wins over --silent, which wins over --quiet.
    const verbosity: Logging.Verbosity = flags.debug
      ? "debug"
      : flags.silent
      ? "silent"
      : flags.quiet
      ? "quiet"
      : "info"
    return Effect.gen(function*() {
      if (flags.concurrency < 1) {
        yield* Console.error("authkeysync: --concurrency must be 1 or more")
        return USAGE_ERROR
      }
      if (flags.lockTimeout < 0) {
        yield* Console.error("authkeysync: --lock-timeout must be 0 or more")
        return USAGE_ERROR
      }
      yield* Effect.logInfo("AuthKeySync starting").pipe(
        Effect.annotateLogs({ version: buildInfo.version, config: flags.config, dry_run: flags.dryRun })
      )
      const cfg = yield* loadConfig(flags.config)
      // A dry run changes nothing, so it neither waits for nor blocks a real run.
      if (!flags.dryRun) yield* (yield* RunLock).hold(flags.lockFile, Duration.seconds(flags.lockTimeout))
      const summary = yield* runAll(cfg, {
        dryRun: flags.dryRun,
        concurrency: flags.concurrency,
        build: buildInfo
      })
      if (flags.dryRun && verbosity !== "silent") yield* printDryRun(summary, flags.logFormat)
      return summary.exitCode
    }).pipe(
      Effect.scoped,
      Effect.catchTags({
        ConfigError: fatal("cannot load configuration"),
        RunLockError: fatal("cannot take the run lock; nothing was synced")
      }),
      Effect.tap((code) => Effect.sync(() => void (process.exitCode = code))),
      // SIGTERM/SIGINT (systemd stop, cron's timeout): say so, or the run just ends after "sync started" with exit 1.
      Effect.onInterrupt(() =>
        Effect.logError("run interrupted by a signal; files not yet written were left untouched").pipe(
          Effect.annotateLogs({ exit_code: 1 })
        )
      ),
      Effect.provide(Logging.layer({ format: flags.logFormat, verbosity }))
    )
  }
).pipe(Command.withDescription(
  "Sync SSH authorized_keys files from remote sources (AuthKeySync compatible). --version prints the version, commit " +
    "and build date; --help prints this text."
))

const cli = Command.run(command, { name: "authkeysync", version: buildInfo.version })

const MainLive = Layer.mergeAll(
  SyncLive.pipe(Layer.provide(HttpTransport.layer)),
  RunLockLive,
  NodeContext.layer,
  CliConfig.layer({ showBuiltIns: false }),
  // The CLI installs no tracer, so spans would be recorded for nobody.
  Layer.setTracerEnabled(false)
)

const args = normalizeGoFlags(process.argv.slice(2))

// Output whose reader is gone fails writes with EPIPE: that must not crash a run half way through the users (the exit
// code still tells). Logging.stdoutLines also stops writing log lines then.
for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {})

const ANSI_STYLE = /\x1b\[[0-9;]*m/g

/**
 * @effect/cli prints a flag error as a help document (`'abc' is not a integer`, then a blank line, no program name)
 * and `--help` with terminal colours: every line the command writes to stderr is one `authkeysync: ...` line, as the
 * config errors are, and colours go only to a terminal (not into `--help | less`, a file or a log).
 */
const withPlainOutput = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.console, (console) =>
    Effect.withConsole(self, {
      ...console,
      log: (...args: ReadonlyArray<unknown>) =>
        process.stdout.isTTY
          ? console.log(...args)
          : console.log(...args.map((a) => typeof a === "string" ? a.replace(ANSI_STYLE, "") : a)),
      error: (...args: ReadonlyArray<unknown>) => {
        const text = args.map(String).join(" ").replace(ANSI_STYLE, "").trim().replace(/\s*\n\s*/g, " ")
        return console.error(text.startsWith("authkeysync: ") ? text : `authkeysync: ${text}`)
      }
    }))

// The Go original's --version lines (`Version:`, `Commit:`, `Built:`, as scripts grep them; its banner left out),
// wherever the flag stands.
const flagError = goFlagError(process.argv.slice(2))
const main = flagError !== undefined
  ? Effect.zipRight(
    Console.error(`authkeysync: ${flagError}`),
    Effect.sync(() => void (process.exitCode = USAGE_ERROR))
  )
  : asksForVersion(args)
  ? Console.log(`Version: ${buildInfo.version}\nCommit:  ${buildInfo.commit}\nBuilt:   ${buildInfo.built}`)
  : withPlainOutput(cli([...process.argv.slice(0, 2), ...args])).pipe(
    // @effect/cli has printed what is wrong with the flags by now.
    Effect.catchIf(ValidationError.isValidationError, () => Effect.sync(() => void (process.exitCode = USAGE_ERROR)))
  )

main.pipe(
  Effect.provide(MainLive),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // Interrupted (SIGINT/SIGTERM) or crashed: non-zero. Otherwise the handler has set process.exitCode.
    teardown: (exit, onExit) => onExit(Exit.isFailure(exit) ? 1 : 0)
  })
)
