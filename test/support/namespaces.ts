/**
 * Private mount namespaces (`unshare -m`, root with CAP_SYS_ADMIN): a test changes what one command sees of the file
 * system (its own /etc/passwd or /etc/resolv.conf, a directory made read-only) without touching the host's.
 */
import { spawnSync } from "node:child_process"
import { type ProcessRun, runProcess } from "./process.js"

export const canUnshareMounts = process.platform === "linux" && spawnSync("unshare", ["-m", "true"]).status === 0

export type NamespacedRun = ProcessRun

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
  runProcess("unshare", [
    "-m",
    "sh",
    "-c",
    `${setup} && shift ${setupArgs.length} && exec "$@"`,
    "sh",
    ...setupArgs,
    ...command
  ], {
    env: { ...process.env, NO_COLOR: "1" },
    killAfterMs
  })
