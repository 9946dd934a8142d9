/**
 * Closing the HTTP layer ends what could keep a program alive: here a CONNECT that a proxy accepted and never
 * answered. Runs the library (its source, through tsx: no build to go stale) in a child process, which must exit on
 * its own once its fetch has timed out.
 */
import { spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const ROOT = path.join(import.meta.dirname, "..", "..")
const LIBRARY = pathToFileURL(path.join(ROOT, "src", "index.ts")).href

describe("HttpTransport layer release", () => {
  let proxy: net.Server
  const connections = new Set<net.Socket>()
  let port = 0

  beforeAll(async () => {
    // Reads the CONNECT line and says nothing, ever.
    proxy = net.createServer((socket) => {
      connections.add(socket)
      socket.on("data", () => {})
      socket.on("close", () => connections.delete(socket))
    })
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve))
    port = (proxy.address() as net.AddressInfo).port
  })
  afterAll(() => {
    for (const socket of connections) socket.destroy()
    proxy.close()
  })

  it("a program whose fetch timed out waiting for a CONNECT exits once the layer is closed", async () => {
    const script = `
      import { Effect, Layer, Schema } from "effect"
      import { HttpTransport, KeySource, Source } from ${JSON.stringify(LIBRARY)}
      const source = Schema.decodeUnknownSync(Source)({ url: "https://keys.proxied.test/k", timeout_seconds: 1 })
      const exit = await Effect.runPromise(Effect.exit(Effect.flatMap(KeySource.KeySource, (k) => k.fetch(source)).pipe(
        Effect.provide(KeySource.layer.pipe(Layer.provide(HttpTransport.layer))))))
      console.log(JSON.stringify({ tag: exit._tag, error: exit._tag === "Failure" ? String(exit.cause) : "" }))`
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: ROOT,
      env: { ...process.env, HTTPS_PROXY: `http://127.0.0.1:${port}`, NO_PROXY: "" },
      stdio: ["ignore", "pipe", "inherit"]
    })
    let stdout = ""
    child.stdout.on("data", (chunk: Buffer) => void (stdout += chunk.toString()))
    const killer = setTimeout(() => child.kill("SIGKILL"), 10_000)
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve))
    clearTimeout(killer)
    expect(JSON.parse(stdout.trim())).toMatchObject({ tag: "Failure" })
    expect(stdout).toContain("SourceTimeout")
    // It timed out after 1 s and then ended by itself: a hang is killed at 10 s, and a killed process has no exit code.
    expect(code).toBe(0)
  })
})
