/**
 * Run a command asynchronously (the test's own servers keep answering meanwhile) and collect what it printed.
 */
import { type ChildProcess, spawn } from "node:child_process"

export interface ProcessRun {
  readonly code: number | null
  /** The signal that ended it, when one did (then `code` is null). */
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * `file` with `args`; killed (SIGKILL) after `killAfterMs` when given; `onSpawn` gets the child as soon as it starts
 * (e.g. to signal it). Rejects only when it cannot be started.
 */
export const runProcess = (
  file: string,
  args: ReadonlyArray<string>,
  options: {
    readonly cwd?: string
    readonly env?: NodeJS.ProcessEnv
    readonly killAfterMs?: number
    readonly onSpawn?: (child: ChildProcess) => void
  } = {}
): Promise<ProcessRun> =>
  new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      ...(options.env === undefined ? {} : { env: options.env })
    })
    options.onSpawn?.(child)
    // Decoded once at the end: a character split between two chunks stays whole.
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk))
    const killer = options.killAfterMs === undefined
      ? undefined
      : setTimeout(() => child.kill("SIGKILL"), options.killAfterMs)
    child.on("error", (error) => {
      clearTimeout(killer)
      reject(error)
    })
    child.on("close", (code, signal) => {
      clearTimeout(killer)
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8")
      })
    })
  })
