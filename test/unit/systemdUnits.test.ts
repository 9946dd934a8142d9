/**
 * The shipped systemd units (examples/systemd/) as systemd itself reads them: `systemd-analyze verify` finds unknown
 * or misspelled settings and bad values, which would otherwise show only when a host loads the unit.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const UNITS = path.join(import.meta.dirname, "..", "..", "examples", "systemd")
const hasSystemdAnalyze = spawnSync("systemd-analyze", ["--version"]).status === 0

describe("examples/systemd", () => {
  it("the service and the timer pass systemd-analyze verify", async (context) => {
    if (!hasSystemdAnalyze) {
      console.warn("skipped: systemd-analyze is not installed")
      return context.skip()
    }
    // verify also checks that ExecStart's program exists: point it at one that does, in a copy.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "authkeysync-units-"))
    try {
      const service = await fs.readFile(path.join(UNITS, "authkeysync.service"), "utf8")
      expect(service).toMatch(/^ExecStart=\/usr\/local\/bin\/authkeysync /m)
      await fs.writeFile(
        path.join(dir, "authkeysync.service"),
        service.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`)
      )
      await fs.copyFile(path.join(UNITS, "authkeysync.timer"), path.join(dir, "authkeysync.timer"))
      const verify = spawnSync("systemd-analyze", ["verify", "authkeysync.service", "authkeysync.timer"], {
        cwd: dir,
        encoding: "utf8"
      })
      expect({ status: verify.status, output: (verify.stdout + verify.stderr).trim() }).toEqual({
        status: 0,
        output: ""
      })
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
  })
})
