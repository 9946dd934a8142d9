/**
 * Run the built CLI (`node dist/authkeysync.mjs`) as a child process, asynchronously so that the test's HTTP server
 * (in this process) keeps answering, and parse what it printed.
 */
import type { ChildProcess } from "node:child_process"
import { existsSync, rmSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { stringify } from "yaml"
import { runProcess } from "./process.js"

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
/**
 * The CLI under test: the built bundle, or `AUTHKEYSYNC_E2E_CLI` (a `.mjs`/`.js` file is run with node, anything else
 * is executed directly, e.g. the Go original's binary).
 */
export const CLI_PATH = process.env["AUTHKEYSYNC_E2E_CLI"] ?? path.join(REPO_ROOT, "dist", "authkeysync.mjs")
const runsWithNode = /\.[cm]?js$/.test(CLI_PATH)

/** Fail loudly (once per call site) when the bundle has not been built. */
export const assertBuilt = (): void => {
  if (!existsSync(CLI_PATH)) {
    throw new Error(
      `${CLI_PATH} is missing: the e2e tests run the built CLI. Run \`npm run build\` first (\`npm test\` does).`
    )
  }
}

/** One parsed log line: logfmt (`--log-format text`) values are strings; JSON values keep their JSON types. */
export interface LogLine {
  readonly time: string
  readonly level: string
  readonly msg: string
  readonly [field: string]: unknown
}

export interface RunResult {
  /** Exit code (-1 when killed by a signal). */
  readonly code: number
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** Log records parsed from stdout (lines that are not log records, like a dry-run diff, are left out). */
  readonly logs: ReadonlyArray<LogLine>
  /** Wall clock around the run: the CLI's "Last sync" and backup names fall between these. */
  readonly startedAt: Date
  readonly endedAt: Date
  readonly durationMs: number
}

// =============================================================================
// logfmt
// =============================================================================

/**
 * Parse one logfmt line as the CLI writes it: `key=value` pairs separated by single spaces, where a value is either a
 * bare token or a JSON string literal. Returns undefined for lines that are not log records.
 */
export const parseLogfmt = (line: string): Record<string, string> | undefined => {
  if (!line.startsWith("time=")) return undefined
  const out: Record<string, string> = {}
  let i = 0
  while (i < line.length) {
    while (line[i] === " ") i++
    if (i >= line.length) break
    const eq = line.indexOf("=", i)
    if (eq < 0) return undefined
    const key = line.slice(i, eq)
    if (!/^[A-Za-z0-9_.-]+$/.test(key)) return undefined
    i = eq + 1
    if (line[i] === "\"") {
      let j = i + 1
      while (j < line.length && line[j] !== "\"") j += line[j] === "\\" ? 2 : 1
      if (j >= line.length) return undefined
      out[key] = JSON.parse(line.slice(i, j + 1)) as string
      i = j + 1
    } else {
      const end = line.indexOf(" ", i)
      out[key] = line.slice(i, end < 0 ? line.length : end)
      i = end < 0 ? line.length : end
    }
  }
  return out
}

const isLogLine = (value: unknown): value is LogLine =>
  typeof value === "object" && value !== null &&
  typeof (value as Record<string, unknown>)["time"] === "string" &&
  typeof (value as Record<string, unknown>)["level"] === "string" &&
  typeof (value as Record<string, unknown>)["msg"] === "string"

/** Every log record in `stdout`, text or JSON. */
export const parseLogs = (stdout: string): Array<LogLine> => {
  const logs: Array<LogLine> = []
  for (const line of stdout.split("\n")) {
    let record: unknown
    if (line.startsWith("{")) {
      try {
        record = JSON.parse(line)
      } catch {
        record = undefined
      }
    } else {
      record = parseLogfmt(line)
    }
    if (isLogLine(record)) logs.push(record)
  }
  return logs
}

/** Records with this message (and, when given, this user). */
export const logsWith = (result: RunResult, msg: string | RegExp, user?: string): Array<LogLine> =>
  result.logs.filter((l) =>
    (typeof msg === "string" ? l.msg === msg : msg.test(l.msg)) && (user === undefined || l["user"] === user)
  )

// =============================================================================
// Running
// =============================================================================

const KILL_AFTER_MS = 30_000

/**
 * Per test run: a root-only directory for the run lock and the revocation state, so that test runs (of other
 * checkouts at the same time) never wait on each other's lock in /run/authkeysync or share state.
 */
export const E2E_RUNTIME_DIR = process.env["AKSE2E_RUNTIME_DIR"] ??
  path.join(os.tmpdir(), `akse2e-runtime-${process.pid}`)
export const E2E_LOCK_FILE = path.join(E2E_RUNTIME_DIR, "authkeysync.lock")
export const E2E_STATE_DIR = path.join(E2E_RUNTIME_DIR, "state")
// Made and removed by test/support/globalSetup.ts; only a file run some other way cleans up after itself.
if (process.env["AKSE2E_RUNTIME_DIR"] === undefined) {
  process.once("exit", () => rmSync(E2E_RUNTIME_DIR, { recursive: true, force: true }))
}

export interface RunOptions {
  /** Extra environment variables (e.g. `TZ`). */
  readonly env?: Readonly<Record<string, string>>
  /** Called with the child process right after it starts (e.g. to signal it). */
  readonly onSpawn?: (child: ChildProcess) => void
}

/** Run the CLI with `args`; resolves when it exits (killed after 30 s so a hang fails the test instead of the run). */
export const runCli = (args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> => {
  assertBuilt()
  const startedAt = new Date()
  // Our CLI takes --lock-file; the Go original (AUTHKEYSYNC_E2E_CLI) has no run lock.
  const lockArgs = runsWithNode && !args.some((a) => a.startsWith("--lock-file")) ? ["--lock-file", E2E_LOCK_FILE] : []
  const [command, argv] = runsWithNode ? [process.execPath, [CLI_PATH, ...args, ...lockArgs]] : [CLI_PATH, [...args]]
  const env = { ...process.env, NO_COLOR: "1", ...options.env }
  const onSpawn = options.onSpawn
  return runProcess(command, argv, { cwd: REPO_ROOT, env, killAfterMs: KILL_AFTER_MS, ...(onSpawn ? { onSpawn } : {}) })
    .then(({ code, signal, stderr, stdout }) => {
      const endedAt = new Date()
      return {
        code: code ?? -1,
        signal,
        stdout,
        stderr,
        logs: parseLogs(stdout),
        startedAt,
        endedAt,
        durationMs: endedAt.getTime() - startedAt.getTime()
      }
    })
}

/** A config file in its own root-only temp directory. `config` is YAML text or a value to serialize as YAML. */
export const writeConfig = async (config: unknown): Promise<{ path: string; remove: () => Promise<void> }> => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-config-"))
  const file = path.join(dir, "config.yaml")
  await fs.writeFile(file, typeof config === "string" ? config : stringify(config), { mode: 0o600 })
  return { path: file, remove: () => fs.rm(dir, { recursive: true, force: true }) }
}

/** Write `config`, run `authkeysync --config <file> ...args`, remove the config. */
export const runWithConfig = async (
  config: unknown,
  args: ReadonlyArray<string> = [],
  options: RunOptions = {}
): Promise<RunResult> => {
  const cfg = await writeConfig(config)
  try {
    return await runCli(["--config", cfg.path, ...args], options)
  } finally {
    await cfg.remove()
  }
}

// =============================================================================
// Config builders
// =============================================================================

export interface SourceConfig {
  readonly url: string
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly body?: string
  readonly timeout_seconds?: number
  readonly ca_file?: string
}

export interface PolicyConfig {
  readonly backup_enabled?: boolean
  readonly backup_retention_count?: number
  readonly preserve_local_keys?: boolean
  readonly allow_empty?: boolean
  readonly max_removed_keys?: number
  readonly max_removed_percent?: number
  readonly pinned_keys?: ReadonlyArray<string>
  readonly max_response_bytes?: number
  readonly max_keys_per_source?: number
  readonly ca_file?: string
  readonly state_dir?: string
}

export interface UserConfig {
  readonly username: string
  readonly pinned_keys?: ReadonlyArray<string>
  readonly sources: ReadonlyArray<SourceConfig>
}

/** A config value; the revocation state goes to this test process's own directory unless `policy.state_dir` is set. */
export const config = (users: ReadonlyArray<UserConfig>, policy?: PolicyConfig) =>
  runsWithNode
    ? { policy: { state_dir: E2E_STATE_DIR, ...policy }, users }
    : policy === undefined
    ? { users }
    : { policy, users }

/** The common case: each source is a URL (GET, short timeout so a broken test fails fast). */
export const userWith = (username: string, ...urls: ReadonlyArray<string | SourceConfig>): UserConfig => ({
  username,
  sources: urls.map((u) => (typeof u === "string" ? { url: u, timeout_seconds: 5 } : u))
})
