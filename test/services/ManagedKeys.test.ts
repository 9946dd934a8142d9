import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import * as ManagedKeys from "../../src/services/ManagedKeys.js"

const dirs: Array<string> = []
afterEach(async () => {
  for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true })
})

const stateDir = async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "aks-managed-"))
  dirs.push(dir)
  await fs.chmod(dir, 0o700)
  await fs.mkdir(path.join(dir, "managed-keys"), { mode: 0o700 })
  return dir
}

const write = (dir: string, user: string) =>
  Effect.runPromise(
    Effect.flatMap(ManagedKeys.ManagedKeys, (records) =>
      Effect.all([
        records.write(dir, user, {
          identities: new Set(["ssh-ed25519 AAAA1"]),
          lines: new Set(["ssh-ed25519 AAAA1 a"])
        }),
        records.write(dir, `${user}2`, { identities: new Set(["ssh-ed25519 AAAA2"]), lines: undefined })
      ])).pipe(Effect.provide(ManagedKeys.layer))
  )

describe("ManagedKeys (live): temp records of killed runs", () => {
  it("the first write of a run removes the temp records older runs left; a live run's, and other files, stay", async () => {
    const dir = await stateDir()
    const records = path.join(dir, "managed-keys")
    const hourAgo = new Date(Date.now() - 3600_000)
    const leftover = path.join(records, "bob.json.4242.tmp")
    const fresh = path.join(records, "carol.json.4343.tmp")
    const unrelated = path.join(records, "notes.tmp")
    for (const file of [leftover, fresh, unrelated]) await fs.writeFile(file, "{}\n", { mode: 0o600 })
    await fs.utimes(leftover, hourAgo, hourAgo)
    await fs.utimes(unrelated, hourAgo, hourAgo)

    await write(dir, "alice")

    expect((await fs.readdir(records)).sort()).toEqual([
      "alice.json",
      "alice2.json",
      "carol.json.4343.tmp",
      "notes.tmp"
    ])
    expect(JSON.parse(await fs.readFile(path.join(records, "alice.json"), "utf8"))).toEqual({
      version: 2,
      user: "alice",
      keys: ["ssh-ed25519 AAAA1"],
      lines: ["ssh-ed25519 AAAA1 a"]
    })
  })
})
