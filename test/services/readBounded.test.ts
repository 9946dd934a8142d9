/**
 * Reading authorized_keys never takes more than the cap, even when the file grows after its size was checked (a
 * user can extend it between the fstat and the read): the read gives up instead of following it.
 */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readBounded } from "../../src/services/SshFiles.js"

describe("readBounded", () => {
  let dir = ""
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "aks-read-"))
  })
  afterAll(() => fs.rm(dir, { recursive: true, force: true }))

  it("reads a file within the limit byte for byte (latin1)", async () => {
    const file = path.join(dir, "small")
    await fs.writeFile(file, Buffer.from([0x61, 0x20, 0x62, 0xe9, 0x0a]))
    const handle = await fs.open(file)
    try {
      expect(await readBounded(handle.fd, 5, 100)).toBe("a b\xe9\n")
    } finally {
      await handle.close()
    }
  })

  it("reads a file of exactly the limit, and one that grew but stays within it", async () => {
    const file = path.join(dir, "exact")
    await fs.writeFile(file, "x".repeat(10_000))
    const handle = await fs.open(file)
    try {
      // The size seen earlier (10) is only a hint.
      expect((await readBounded(handle.fd, 10, 10_000))?.length).toBe(10_000)
    } finally {
      await handle.close()
    }
  })

  it("gives up on a file that grew past the limit after it was checked", async () => {
    const file = path.join(dir, "grows")
    await fs.writeFile(file, "ssh-ed25519 AAAA k\n")
    const handle = await fs.open(file)
    try {
      // The user extends it (sparse) after the size check: the read must not follow it to 512 MiB.
      await fs.truncate(file, 512 * 1024 * 1024)
      expect(await readBounded(handle.fd, 19, 64 * 1024)).toBeUndefined()
    } finally {
      await handle.close()
    }
  })
})
