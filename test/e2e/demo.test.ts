/**
 * The README's first command: `npm ci && npm run demo` must show a real sync on a fresh machine (as root: a throwaway
 * account synced from the bundled key server, twice), not only a skip, and leave nothing behind.
 */
import * as path from "node:path"
import { expect, it } from "vitest"
import { assertBuilt, REPO_ROOT } from "../support/cli.js"
import { runProcess } from "../support/process.js"
import { describeAsRoot, lookupUser } from "../support/users.js"

describeAsRoot("npm run demo (e2e)", () => {
  it(
    "syncs a throwaway account from the bundled key server, then finds it unchanged, and removes the account",
    async () => {
      assertBuilt()
      const run = await runProcess(process.execPath, [path.join(REPO_ROOT, "examples", "demo", "run-demo.mjs")], {
        cwd: REPO_ROOT
      })
      expect(run.code, run.stdout + run.stderr).toBe(0)
      const account = /throwaway account (akdemo[a-z]+),/.exec(run.stdout)?.[1]
      expect(account).toBeDefined()
      // A dry run with a diff, a real update with a backup, then nothing to do.
      expect(run.stdout).toContain("msg=\"dry run: would update authorized_keys\"")
      expect(run.stdout).toContain("msg=\"updated authorized_keys\"")
      expect(run.stdout).toContain("msg=\"created backup\"")
      expect(run.stdout).toContain("msg=\"authorized_keys unchanged\"")
      expect(run.stdout).toMatch(/^# Source: http:\/\/127\.0\.0\.1:\d+\/alice\.keys$/m)
      expect(run.stdout).toContain("# Local (preserved)")
      expect(run.stdout.match(/\(exit code (\d+)\)/g)).toEqual(["(exit code 0)", "(exit code 0)", "(exit code 0)"])
      expect(await lookupUser(account!)).toBeUndefined()
    },
    60_000
  )
})
