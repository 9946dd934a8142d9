import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { layerTrustedCaClients, TrustedCaClients } from "../../src/services/HttpTransport.js"

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

describe("TrustedCaClients", () => {
  it("a first caller cut short while the CA file is read does not break the callers after it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "aks-ca-"))
    const fifo = path.join(dir, "ca.pem")
    // A FIFO: reading it waits until something writes, like a stalled network file system.
    execFileSync("mkfifo", [fifo])
    try {
      const program = Effect.gen(function*() {
        const clients = yield* TrustedCaClients
        const first = yield* Effect.exit(Effect.timeout(clients.forCaFile(fifo), "100 millis"))
        expect(Exit.isFailure(first)).toBe(true)
        // The file becomes readable; the read started by the first caller finishes and serves the next one.
        yield* Effect.promise(() => fs.promises.writeFile(fifo, PEM))
        const second = yield* Effect.exit(clients.forCaFile(fifo))
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
})
