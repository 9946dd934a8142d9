import { Effect, Exit, Fiber } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it, vi } from "vitest"
import { layerTrustedCaClients, TrustedCaClients } from "../../src/services/HttpTransport.js"

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

describe("TrustedCaClients", () => {
  it("a first caller cut short while the CA file is read does not break the callers after it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aks-ca-"))
    const ca = path.join(dir, "ca.pem")
    fs.writeFileSync(ca, PEM)
    try {
      const program = Effect.gen(function*() {
        const clients = yield* TrustedCaClients
        // Started, and interrupted while its read is still on the thread pool.
        const first = yield* Effect.fork(clients.forCaFile(ca))
        yield* Effect.yieldNow()
        yield* Fiber.interrupt(first)
        // The read the first caller started finishes and serves the next one.
        const second = yield* Effect.exit(clients.forCaFile(ca))
        expect(Exit.isSuccess(second)).toBe(true)
        const missing = yield* Effect.exit(clients.forCaFile(path.join(dir, "missing.pem")))
        expect(missing).toMatchObject({ _tag: "Failure" })
        expect(JSON.stringify(missing)).toContain(`cannot read ca_file ${path.join(dir, "missing.pem")}`)
      })
      await Effect.runPromise(Effect.scoped(program.pipe(Effect.provide(layerTrustedCaClients))))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a ca_file that is a FIFO or a device fails at once instead of waiting for a writer (exit would wait too)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aks-ca-"))
    const fifo = path.join(dir, "ca.pem")
    execFileSync("mkfifo", [fifo])
    try {
      const program = Effect.gen(function*() {
        const clients = yield* TrustedCaClients
        for (const file of [fifo, "/dev/zero"]) {
          const result = yield* Effect.exit(Effect.timeout(clients.forCaFile(file), "5 seconds"))
          expect(JSON.stringify(result)).toContain(`cannot read ca_file ${file}: it is not a regular file`)
        }
      })
      await Effect.runPromise(Effect.scoped(program.pipe(Effect.provide(layerTrustedCaClients))))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a CA file that could not be used is read again after a minute, not kept failed for the layer's life", async () => {
    // Found in review: a library user's daemon keeps one layer for many runs; a CA file installed after a failed run
    // was never read again.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aks-ca-"))
    const ca = path.join(dir, "ca.pem")
    const start = Date.now()
    const clock = vi.spyOn(Date, "now").mockReturnValue(start)
    try {
      const program = Effect.gen(function*() {
        const clients = yield* TrustedCaClients
        expect(Exit.isFailure(yield* Effect.exit(clients.forCaFile(ca)))).toBe(true)
        fs.writeFileSync(ca, PEM)
        // Within the run's minute the failure is shared (one read per run)...
        clock.mockReturnValue(start + 59_000)
        expect(Exit.isFailure(yield* Effect.exit(clients.forCaFile(ca)))).toBe(true)
        // ...after it, the file is read again.
        clock.mockReturnValue(start + 60_000)
        expect(Exit.isSuccess(yield* Effect.exit(clients.forCaFile(ca)))).toBe(true)
      })
      await Effect.runPromise(Effect.scoped(program.pipe(Effect.provide(layerTrustedCaClients))))
    } finally {
      clock.mockRestore()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
