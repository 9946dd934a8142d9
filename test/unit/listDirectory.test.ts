import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { listDirectory, removeStaleFiles } from "../../src/services/internal/syscalls.js"

describe("listDirectory / removeStaleFiles: a directory is read only up to a bound", () => {
  const dirs: Array<string> = []
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  })
  const dirWith = (names: ReadonlyArray<string>, mtime?: Date) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "aks-list-"))
    dirs.push(dir)
    for (const name of names) {
      writeFileSync(path.join(dir, name), "x")
      if (mtime !== undefined) utimesSync(path.join(dir, name), mtime, mtime)
    }
    return dir
  }
  const names = (n: number) => Array.from({ length: n }, (_, i) => `.tmp_${String(i).padStart(4, "0")}`)

  it("all names when there are no more than the bound, and says so", () => {
    const listing = listDirectory(dirWith(names(5)), 5)
    expect([...listing.names].sort()).toEqual(names(5))
    expect(listing.complete).toBe(true)
  })

  it("the bound's worth of names, and incomplete, when there are more", () => {
    const listing = listDirectory(dirWith(names(6)), 5)
    expect(listing.names).toHaveLength(5)
    expect(names(6)).toEqual(expect.arrayContaining([...listing.names]))
    expect(listing.complete).toBe(false)
  })

  it("removeStaleFiles removes only among the names it looked at, and says the look was partial", () => {
    const dir = dirWith(names(8), new Date("2020-01-01T00:00:00Z"))
    const result = removeStaleFiles(dir, /^\.tmp_\d{4}$/, Date.now(), 3)
    expect(result.removed).toHaveLength(3)
    expect(result.complete).toBe(false)
    const whole = removeStaleFiles(dir, /^\.tmp_\d{4}$/, Date.now(), 100)
    expect(whole).toEqual({ removed: expect.any(Array), complete: true })
    expect(whole.removed).toHaveLength(5)
  })
})
