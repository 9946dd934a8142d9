/**
 * The shipped file: a loader holding the program's script text and a V8 code cache made by the build (brotli-compressed
 * in the file). The cache must
 * be one this Node accepts (or the speed-up is lost silently), and a cache Node rejects must not change what the
 * program does.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Script } from "node:vm"
import { brotliCompressSync, brotliDecompressSync } from "node:zlib"
import { beforeAll, describe, expect, it } from "vitest"
import { assertBuilt, CLI_PATH } from "../support/cli.js"

const read = async () => {
  const text = await fs.readFile(CLI_PATH, "utf8")
  const program = /^const program = (".*")$/m.exec(text)?.[1]
  const cache = /^ {2}brotliDecompressSync\(Buffer\.from\(("[^"]*"), "base64"\)\)$/m.exec(text)?.[1]
  return {
    text,
    program: program === undefined ? undefined : (JSON.parse(program) as string),
    cache: cache === undefined ? undefined : brotliDecompressSync(Buffer.from(JSON.parse(cache) as string, "base64"))
  }
}

describe("the single-file build", () => {
  beforeAll(() => assertBuilt())

  it("starts with a shebang and holds the program with a code cache this Node accepts", async () => {
    const { text, program, cache } = await read()
    expect(text.startsWith("#!/usr/bin/env node\n")).toBe(true)
    expect(program).toMatch(/^\(function \(exports, require, module, __filename, __dirname\) \{"use strict";/)
    expect(cache?.length).toBeGreaterThan(100_000)
    const script = new Script(program!, { filename: "authkeysync.mjs", cachedData: cache! })
    expect(script.cachedDataRejected).toBe(false)
  })

  it("runs the same when Node rejects the cache (one made by another V8 version)", async () => {
    const { text, program, cache } = await read()
    // Bytes 4-7 of V8's code cache header hold the hash of the V8 version that made it.
    const corrupted = Buffer.from(cache!)
    corrupted.writeUInt32LE(~corrupted.readUInt32LE(4) >>> 0, 4)
    expect(new Script(program!, { filename: "authkeysync.mjs", cachedData: corrupted }).cachedDataRejected).toBe(true)
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "aks-build-"))
    try {
      const copy = path.join(dir, "authkeysync.mjs")
      const packed = brotliCompressSync(corrupted).toString("base64")
      const withCorrupted = text.replace(
        /^ {2}brotliDecompressSync\(.*$/m,
        () => `  brotliDecompressSync(Buffer.from("${packed}", "base64"))`
      )
      expect(withCorrupted).toContain(packed)
      await fs.writeFile(copy, withCorrupted)
      const ours = spawnSync(process.execPath, [CLI_PATH, "--version"], { encoding: "utf8" })
      const theirs = spawnSync(process.execPath, [copy, "--version"], { encoding: "utf8" })
      expect(theirs.status, theirs.stderr).toBe(0)
      expect(theirs.stdout).toBe(ours.stdout)
      expect(theirs.stdout).toMatch(/^Version: v\d+\.\d+\.\d+\nCommit: {2}\S+\nBuilt: {3}\S+\n$/)
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
  })

  it("an edited program of the same length runs as edited, not as cached (V8 itself checks only the length)", async () => {
    const { text } = await read()
    expect(text).toContain("Commit: ")
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "aks-build-"))
    try {
      const copy = path.join(dir, "authkeysync.mjs")
      await fs.writeFile(copy, text.replaceAll("Commit: ", "CXmmit: "))
      const edited = spawnSync(process.execPath, [copy, "--version"], { encoding: "utf8" })
      expect(edited.status, edited.stderr).toBe(0)
      expect(edited.stdout).toContain("CXmmit:  ")
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
  })

  it("a V8 option the build did not use makes V8 reject the cache, and the bench's probe says so", () => {
    const probe = path.join(import.meta.dirname, "..", "..", "bench", "codeCacheStatus.cjs")
    const plain = spawnSync(process.execPath, ["--require", probe, CLI_PATH, "--version"], { encoding: "utf8" })
    // NODE_OPTIONS=--max-old-space-size=... is common on servers: it costs every start the cache.
    const flagged = spawnSync(process.execPath, [
      "--require",
      probe,
      "--max-old-space-size=4096",
      CLI_PATH,
      "--version"
    ], { encoding: "utf8" })
    expect(plain.stderr).toBe("code cache: accepted\n")
    expect(flagged.stderr).toBe("code cache: rejected\n")
    expect(flagged.status).toBe(0)
    expect(flagged.stdout).toBe(plain.stdout)
  })

  it("the cache names the program authkeysync.mjs (as stack traces will), not the build's temp directory", async () => {
    const { cache } = await read()
    expect(cache!.includes("authkeysync.mjs")).toBe(true)
    expect(cache!.includes("authkeysync-build-")).toBe(false)
  })
})
