/**
 * The TLS connection to an https:// proxy is checked against the proxy's own name, never against the origin named in
 * the Host header (which would let anyone with a certificate for a source's name pose as the proxy). Runs the library
 * (its source, through tsx: no build to go stale) in a child process so that the test certificate can be trusted
 * through NODE_EXTRA_CA_CERTS.
 */
import { spawn } from "node:child_process"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeSelfSigned, opensslMissing, type SelfSigned } from "../support/net.js"

const LIBRARY = pathToFileURL(path.join(import.meta.dirname, "..", "..", "src", "index.ts")).href

const fetchVia = (proxy: string, target: string, ca: string) => {
  const script = `
    import { HttpTransport } from ${JSON.stringify(LIBRARY)}
    const t = new HttpTransport.Transport(HttpTransport.proxySettings(process.env), undefined)
    const signal = AbortSignal.timeout(5000)
    try {
      const res = await t.send(new URL(${
    JSON.stringify(target)
  }), { method: "GET", headers: {}, body: undefined, signal })
      let body = ""
      for await (const chunk of res) body += chunk
      console.log(JSON.stringify({ status: res.statusCode, body }))
    } catch (e) {
      console.log(JSON.stringify({ error: String(e.code ?? e.message) }))
    } finally { t.destroy() }`
  // Asynchronously: the proxy lives in this process.
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca, HTTP_PROXY: proxy, HTTPS_PROXY: proxy, NO_PROXY: "" },
    stdio: ["ignore", "pipe", "inherit"]
  })
  let stdout = ""
  child.stdout.on("data", (chunk: Buffer) => void (stdout += chunk.toString()))
  return new Promise<{ status?: number; body?: string; error?: string }>((resolve) =>
    child.on(
      "close",
      () => resolve(JSON.parse(stdout.trim() || "{}") as { status?: number; body?: string; error?: string })
    )
  )
}

describe.skipIf(opensslMissing !== undefined)("https:// proxy: its certificate is checked against its own name", () => {
  let cert: SelfSigned
  let proxy: https.Server
  const seen: Array<string> = []
  let url = ""

  beforeAll(async () => {
    cert = makeSelfSigned("authkeysync test proxy")
    proxy = https.createServer({ key: cert.key, cert: cert.cert }, (req, res) => {
      seen.push(`${req.method} ${req.url} auth=${req.headers["proxy-authorization"] ?? "none"}`)
      res.end("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIproxied k\n")
    })
    proxy.on("connect", (req, socket) => {
      seen.push(`CONNECT ${req.url} auth=${req.headers["proxy-authorization"] ?? "none"}`)
      socket.end("HTTP/1.1 403 Forbidden\r\n\r\n")
    })
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve))
    url = `https://ops:pw@127.0.0.1:${(proxy.address() as AddressInfo).port}`
  })
  afterAll(() => {
    proxy?.close()
    cert?.remove()
  })

  it("http source through the proxy: accepted although the source's name is not in the proxy's certificate", async () => {
    seen.length = 0
    const result = await fetchVia(url, "http://keys.example.test:8080/alice", cert.certFile)
    expect(result).toEqual({ status: 200, body: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIproxied k\n" })
    expect(seen).toEqual([
      `GET http://keys.example.test:8080/alice auth=Basic ${Buffer.from("ops:pw").toString("base64")}`
    ])
  })

  it("https source: the CONNECT reaches the proxy over TLS checked against the proxy's address", async () => {
    seen.length = 0
    const result = await fetchVia(url, "https://keys.example.test/alice", cert.certFile)
    expect(result.error).toMatch(/refused a tunnel to keys\.example\.test:443: HTTP 403/)
    expect(seen).toEqual([`CONNECT keys.example.test:443 auth=Basic ${Buffer.from("ops:pw").toString("base64")}`])
  })
})
