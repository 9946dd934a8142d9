/**
 * Private mount namespaces (`unshare -m`, root with CAP_SYS_ADMIN): a test changes what one command sees of the file
 * system (its own /etc/passwd or /etc/resolv.conf, a directory made read-only) without touching the host's.
 */
import { spawn, spawnSync } from "node:child_process"

export const canUnshareMounts = process.platform === "linux" && spawnSync("unshare", ["-m", "true"]).status === 0

export interface NamespacedRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Run `command` in a private mount namespace once `setup` (a sh script whose `$1`, `$2`, ... are `setupArgs`) has
 * succeeded; killed after `killAfterMs`.
 */
export const runInMountNamespace = (
  setup: string,
  setupArgs: ReadonlyArray<string>,
  command: ReadonlyArray<string>,
  killAfterMs = 60_000
): Promise<NamespacedRun> =>
  new Promise((resolve, reject) => {
    const script = `${setup} && shift ${setupArgs.length} && exec "$@"`
    const child = spawn("unshare", ["-m", "sh", "-c", script, "sh", ...setupArgs, ...command], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" }
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    const killer = setTimeout(() => child.kill("SIGKILL"), killAfterMs)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(killer)
      resolve({ code, stdout, stderr })
    })
  })
