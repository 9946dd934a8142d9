import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { untrustedStep } from "../../src/services/internal/trustedPath.js"

const isRoot = process.getuid?.() === 0
const NOBODY = 65534

describe("untrustedStep: can anyone but root swap a directory on the way?", () => {
  const dirs: Array<string> = []
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  })
  /** A fresh directory of ours, 0755, in the system's temp directory (sticky, like /tmp). */
  const base = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "aks-trust-"))
    chmodSync(dir, 0o755)
    dirs.push(dir)
    return dir
  }
  const mkdir = (p: string, mode = 0o755) => {
    mkdirSync(p)
    chmodSync(p, mode)
    return p
  }

  it("directories of ours that nobody else may write: nothing to say", () => {
    const b = base()
    expect(untrustedStep(mkdir(path.join(b, "state"), 0o700))).toBeUndefined()
  })

  it("a step that does not exist yet ends the check (nobody else could create it)", () => {
    expect(untrustedStep(path.join(base(), "not", "yet"))).toBeUndefined()
  })

  it("a directory on the way that its group or others may write (not sticky)", () => {
    const open = mkdir(path.join(base(), "open"), 0o777)
    expect(untrustedStep(path.join(open, "state"))).toBe(
      `${open}, a directory on the way to it, is writable by group or others (mode 0777), who could replace ${open}/state`
    )
  })

  it("a sticky directory anyone may write (like /tmp) is fine for an entry of ours", () => {
    const sticky = mkdir(path.join(base(), "sticky"), 0o1777)
    expect(untrustedStep(mkdir(path.join(sticky, "ours"), 0o700))).toBeUndefined()
  })

  it.skipIf(!isRoot)("a directory on the way owned by another account (needs root to chown)", () => {
    const theirs = mkdir(path.join(base(), "theirs"))
    chownSync(theirs, NOBODY, NOBODY)
    expect(untrustedStep(path.join(theirs, "state"))).toBe(
      `${theirs}, a directory on the way to it, is owned by uid ${NOBODY}, not root`
    )
  })

  it.skipIf(!isRoot)("in a sticky directory, an entry owned by another account (needs root to chown)", () => {
    const sticky = mkdir(path.join(base(), "sticky"), 0o1777)
    const theirs = mkdir(path.join(sticky, "theirs"))
    chownSync(theirs, NOBODY, NOBODY)
    expect(untrustedStep(path.join(theirs, "state"))).toBe(
      `${sticky}, a directory on the way to it, is writable by group or others (mode 1777), who could replace ${theirs}`
    )
  })

  it.skipIf(!isRoot)(
    "a link on the way is followed, and the way to its target checked too (needs root to chown)",
    () => {
      const b = base()
      const theirs = mkdir(path.join(b, "theirs"))
      chownSync(theirs, NOBODY, NOBODY)
      // A root-owned directory inside theirs: its own checks pass, but they can rename it away.
      const inside = mkdir(path.join(theirs, "inside"))
      const link = path.join(b, "link")
      symlinkSync(inside, link)
      expect(untrustedStep(path.join(link, "state"))).toBe(
        `${theirs}, a directory on the way to it, is owned by uid ${NOBODY}, not root`
      )
    }
  )

  it("a loop of links is refused", () => {
    const b = base()
    symlinkSync(path.join(b, "b"), path.join(b, "a"))
    symlinkSync(path.join(b, "a"), path.join(b, "b"))
    expect(untrustedStep(path.join(b, "a", "state"))).toBe("more than 40 symbolic links on the way to it")
  })
})
