/**
 * Structured log lines on stdout, one per event, for journald and log shippers: `time`, `level`, `msg`, then the
 * annotations (`user`, `source`, …). Text is logfmt (the Go original's slog text layout); `--log-format json` gives one
 * JSON object per line. Which logger and which minimum level is chosen here, by layer, never in the pipeline.
 *
 * @since 0.1.0
 */
import { Cause, HashMap, Layer, List, Logger, LogLevel } from "effect"
import { hasInvisible, jsonWithoutInvisible } from "../pipeline/Display.js"

/** @since 0.1.0 */
export type LogFormat = "text" | "json"

/** @since 0.1.0 */
export type Verbosity = "debug" | "info" | "quiet" | "silent"

/** One log event as plain data, before formatting. @since 0.1.0 */
export interface LogRecord {
  readonly time: Date
  readonly level: string
  readonly msg: string
  readonly fields: ReadonlyArray<readonly [string, unknown]>
}

const levelName = (level: LogLevel.LogLevel): string => (level._tag === "Warning" ? "WARN" : level.label)

const messageText = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((part) => (typeof part === "string" ? part : JSON.stringify(part))).join(" ")
}

/** `user` and `source` lead, the rest follow by name: the same event always prints the same way. */
const FIELD_ORDER = ["user", "source"]
const byFieldOrder = ([a]: readonly [string, unknown], [b]: readonly [string, unknown]) => {
  const ia = FIELD_ORDER.indexOf(a)
  const ib = FIELD_ORDER.indexOf(b)
  if (ia !== ib) return (ia < 0 ? FIELD_ORDER.length : ia) - (ib < 0 ? FIELD_ORDER.length : ib)
  return a < b ? -1 : a > b ? 1 : 0
}

const toRecord = (options: Logger.Logger.Options<unknown>): LogRecord => {
  const fields: Array<readonly [string, unknown]> = [...HashMap.toEntries(options.annotations)].sort(byFieldOrder)
  if (!Cause.isEmpty(options.cause)) fields.push(["cause", Cause.pretty(options.cause).split("\n")[0]])
  for (const span of List.toArray(options.spans)) {
    fields.push([`${span.label}_ms`, options.date.getTime() - span.startTime])
  }
  return { time: options.date, level: levelName(options.logLevel), msg: messageText(options.message), fields }
}

const logfmtValue = (value: unknown): string => {
  const text = typeof value === "string"
    ? value
    : value instanceof Date
    ? value.toISOString()
    : JSON.stringify(value) ?? "null"
  // Quoted (and escaped) whenever a reader could take part of it for another field or another line.
  return text === "" || /[\s"=\\\x00-\x1f\x7f]/.test(text) || hasInvisible(text)
    ? jsonWithoutInvisible(JSON.stringify(text))
    : text
}

/** `time=… level=INFO msg="…" user=bob`. @since 0.1.0 */
export const formatText = (record: LogRecord): string =>
  [
    `time=${record.time.toISOString()}`,
    `level=${record.level}`,
    `msg=${logfmtValue(record.msg)}`,
    ...record.fields.map(([key, value]) => `${key}=${logfmtValue(value)}`)
  ].join(" ")

/** `{"time":…,"level":"INFO","msg":…,"user":"bob"}`. @since 0.1.0 */
export const formatJson = (record: LogRecord): string => {
  const out: Record<string, unknown> = { time: record.time.toISOString(), level: record.level, msg: record.msg }
  // An annotation never overwrites the three fixed fields.
  for (const [key, value] of record.fields) out[RESERVED.has(key) ? `field_${key}` : key] = value
  return jsonWithoutInvisible(JSON.stringify(out))
}

const RESERVED = new Set(["time", "level", "msg"])

/** A logger that writes formatted lines with `write` (stdout in the CLI). @since 0.1.0 */
export const makeLogger = (format: LogFormat, write: (line: string) => void): Logger.Logger<unknown, void> =>
  Logger.make((options) => write((format === "json" ? formatJson : formatText)(toRecord(options))))

const minimumLevel = (verbosity: Verbosity): LogLevel.LogLevel =>
  verbosity === "debug"
    ? LogLevel.Debug
    : verbosity === "info"
    ? LogLevel.Info
    : verbosity === "quiet"
    ? LogLevel.Warning
    : LogLevel.Error

/**
 * Lines to stdout for as long as someone reads them. When the reader goes away (journald restarting, `| head`), the
 * writes fail with EPIPE; the sync must go on without its logs rather than crash half way through the users. Installs
 * one 'error' listener on process.stdout, once per process.
 *
 * @since 0.1.0
 */
export const stdoutLines = (): (line: string) => void => {
  if (!watchingStdout) {
    watchingStdout = true
    process.stdout.on("error", () => void (stdoutClosed = true))
  }
  return (line) => {
    if (!stdoutClosed) process.stdout.write(line + "\n")
  }
}

// One listener for the process, however many loggers are made (a program may build the layer once per run).
let watchingStdout = false
let stdoutClosed = false

/** Replace Effect's default logger with ours, at the chosen level. @since 0.1.0 */
export const layer = (options: {
  readonly format: LogFormat
  readonly verbosity: Verbosity
  readonly write?: (line: string) => void
}): Layer.Layer<never> =>
  Layer.merge(
    Logger.replace(
      Logger.defaultLogger,
      makeLogger(options.format, options.write ?? stdoutLines())
    ),
    Logger.minimumLogLevel(minimumLevel(options.verbosity))
  )

/** Collects records in memory; for tests that assert log lines. @since 0.1.0 */
export const layerCapture = (
  records: Array<LogRecord>,
  level: LogLevel.LogLevel = LogLevel.Debug
): Layer.Layer<never> =>
  Layer.merge(
    Logger.replace(Logger.defaultLogger, Logger.make((options) => void records.push(toRecord(options)))),
    Logger.minimumLogLevel(level)
  )
