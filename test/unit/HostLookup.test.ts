import { execFileSync } from "node:child_process"
import type { LookupAddress, LookupOptions } from "node:dns"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it, vi } from "vitest"
import { Transport } from "../../src/services/HttpTransport.js"
import {
  ANSWER_LIFETIME_MS,
  getentResolve,
  HostLookup,
  parseAhosts,
  type ResolveHost
} from "../../src/services/internal/hostLookup.js"
import { limitConcurrency } from "../../src/services/internal/limitConcurrency.js"

/** A resolver the test answers by hand, recording every name it was asked for. */
const scriptedResolver = () => {
  const asked: Array<string> = []
  const pending = new Map<string, { resolve: (a: ReadonlyArray<LookupAddress>) => void; reject: (e: Error) => void }>()
  const resolve: ResolveHost = (hostname) => {
    asked.push(hostname)
    return new Promise((res, rej) => pending.set(hostname, { resolve: res, reject: rej }))
  }
  const answer = (hostname: string, addresses: ReadonlyArray<LookupAddress>) =>
    pending.get(hostname)!.resolve(addresses)
  const fail = (hostname: string, error: Error) => pending.get(hostname)!.reject(error)
  return { resolve, asked, answer, fail }
}

type Outcome = { error: NodeJS.ErrnoException | null; address: unknown; family: number | undefined }

const lookupOnce = (hosts: HostLookup, hostname: string, options: LookupOptions = {}) =>
  new Promise<Outcome>((resolve) =>
    hosts.lookup(hostname, options, (error, address, family) => resolve({ error, address, family }))
  )

const settled = () => new Promise((resolve) => setImmediate(resolve))

const V4: LookupAddress = { address: "192.0.2.10", family: 4 }
const V6: LookupAddress = { address: "2001:db8::10", family: 6 }

describe("HostLookup: each name once per run, few at a time", () => {
  it("connections to one name share one lookup, in progress or done; the answer has the shape each asked for", async () => {
    const dns = scriptedResolver()
    const hosts = new HostLookup(dns.resolve)
    const first = lookupOnce(hosts, "keys.example")
    const second = lookupOnce(hosts, "keys.example", { all: true })
    await settled()
    dns.answer("keys.example", [V4, V6])
    expect(await first).toEqual({ error: null, address: "192.0.2.10", family: 4 })
    expect(await second).toEqual({ error: null, address: [V4, V6], family: undefined })
    expect(await lookupOnce(hosts, "keys.example")).toEqual({ error: null, address: "192.0.2.10", family: 4 })
    expect(dns.asked).toEqual(["keys.example"])
  })

  it("a failure is shared too: every connection to the name gets it, the resolver is asked once", async () => {
    const dns = scriptedResolver()
    const hosts = new HostLookup(dns.resolve)
    const outcomes = [lookupOnce(hosts, "gone.example"), lookupOnce(hosts, "gone.example")]
    await settled()
    dns.fail("gone.example", Object.assign(new Error("getaddrinfo EAI_AGAIN gone.example"), { code: "EAI_AGAIN" }))
    for (const outcome of await Promise.all(outcomes)) {
      expect(outcome.error?.code).toBe("EAI_AGAIN")
      expect(outcome.error?.message).toBe("getaddrinfo EAI_AGAIN gone.example")
    }
    expect((await lookupOnce(hosts, "gone.example")).error?.code).toBe("EAI_AGAIN")
    expect(dns.asked).toEqual(["gone.example"])
  })

  it("an answer or failure is shared for a minute, then the name is asked again (a layer kept for many runs)", async () => {
    const dns = scriptedResolver()
    const hosts = new HostLookup(dns.resolve)
    const start = Date.now()
    const clock = vi.spyOn(Date, "now").mockReturnValue(start)
    try {
      const first = lookupOnce(hosts, "flaky.example")
      await settled()
      dns.fail("flaky.example", Object.assign(new Error("getaddrinfo EAI_AGAIN flaky.example"), { code: "EAI_AGAIN" }))
      expect((await first).error?.code).toBe("EAI_AGAIN")
      clock.mockReturnValue(start + ANSWER_LIFETIME_MS - 1)
      expect((await lookupOnce(hosts, "flaky.example")).error?.code).toBe("EAI_AGAIN")
      expect(dns.asked).toEqual(["flaky.example"])
      clock.mockReturnValue(start + ANSWER_LIFETIME_MS)
      const again = lookupOnce(hosts, "flaky.example")
      await settled()
      dns.answer("flaky.example", [V4])
      expect(await again).toEqual({ error: null, address: "192.0.2.10", family: 4 })
      expect(dns.asked).toEqual(["flaky.example", "flaky.example"])
    } finally {
      clock.mockRestore()
    }
  })

  it("at most two lookups run at once; the third starts when one ends", async () => {
    const dns = scriptedResolver()
    const hosts = new HostLookup(dns.resolve)
    const a = lookupOnce(hosts, "a.example")
    const b = lookupOnce(hosts, "b.example")
    const c = lookupOnce(hosts, "c.example")
    await settled()
    expect(dns.asked).toEqual(["a.example", "b.example"])
    dns.answer("b.example", [V4])
    await b
    await settled()
    expect(dns.asked).toEqual(["a.example", "b.example", "c.example"])
    dns.answer("a.example", [V6])
    dns.answer("c.example", [V4])
    expect((await a).address).toBe("2001:db8::10")
    expect((await c).address).toBe("192.0.2.10")
  })

  it("closing drops the lookups still waiting for a turn (they never reach the resolver); running ones still answer", async () => {
    const dns = scriptedResolver()
    const hosts = new HostLookup(dns.resolve)
    const running = [lookupOnce(hosts, "a.example"), lookupOnce(hosts, "b.example")]
    const waiting = lookupOnce(hosts, "c.example")
    await settled()
    hosts.close()
    expect((await waiting).error?.code).toBe("ECANCELLED")
    expect((await lookupOnce(hosts, "d.example")).error?.code).toBe("ECANCELLED")
    dns.answer("a.example", [V4])
    dns.answer("b.example", [V4])
    for (const outcome of await Promise.all(running)) expect(outcome.address).toBe("192.0.2.10")
    await settled()
    expect(dns.asked).toEqual(["a.example", "b.example"])
  })

  it("asks for the family and hints a connection wants, keeping them apart", async () => {
    const seen: Array<string> = []
    const hosts = new HostLookup(async (hostname, { family, hints }) => {
      seen.push(`${hostname} ${family} ${hints}`)
      return family === 6 ? [V6] : [V4]
    })
    expect((await lookupOnce(hosts, "k.example", { family: 6 })).address).toBe("2001:db8::10")
    expect((await lookupOnce(hosts, "k.example", { family: 4, hints: 32 })).address).toBe("192.0.2.10")
    expect(seen).toEqual(["k.example 6 0", "k.example 4 32"])
  })
})

describe("Transport: connections find hosts through the run's HostLookup", () => {
  it("a request to a name is sent to the address the lookup gave", async () => {
    const server = http.createServer((_req, res) => res.end("ssh-ed25519 AAAA via-lookup\n"))
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const port = (server.address() as AddressInfo).port
    const asked: Array<string> = []
    const transport = new Transport(
      { http: undefined, https: undefined, noProxy: [] },
      undefined,
      new HostLookup(async (hostname) => {
        asked.push(hostname)
        return [{ address: "127.0.0.1", family: 4 }]
      })
    )
    try {
      // localhost: were the lookup not wired in, the system would answer from /etc/hosts (no query leaves the host).
      const response = await transport.send(new URL(`http://localhost:${port}/k`), {
        method: "GET",
        headers: {},
        body: undefined,
        signal: new AbortController().signal
      })
      let body = ""
      for await (const chunk of response) body += String(chunk)
      expect(response.statusCode).toBe(200)
      expect(body).toBe("ssh-ed25519 AAAA via-lookup\n")
      expect(asked).toEqual(["localhost"])
    } finally {
      transport.close()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe("parseAhosts (what `getent ahosts` prints)", () => {
  it("each address once, in getaddrinfo's order, whatever the socket types and the canonical name", () => {
    const stdout = [
      "2001:db8::10    STREAM keys.example",
      "2001:db8::10    DGRAM  ",
      "2001:db8::10    RAW    ",
      "192.0.2.10      STREAM ",
      "192.0.2.10      DGRAM  ",
      "192.0.2.10      RAW    ",
      ""
    ].join("\n")
    expect(parseAhosts(stdout)).toEqual([V6, V4])
    expect(parseAhosts("")).toEqual([])
  })
})

/**
 * `getent ahosts` in a process of its own (found in review: two names whose resolver never answers held both of the
 * thread-pool lookups, and every other user's sources waited past their deadlines behind them).
 */
describe.skipIf(process.platform !== "linux")("getentResolve and HostLookup over a getent of the test's own", () => {
  let dir = ""
  afterEach(() => {
    if (dir !== "") rmSync(dir, { recursive: true, force: true })
    dir = ""
  })
  /** A getent that logs its arguments, answers `alive.example` and `v4.example`, says 2 for `gone.example`, and never answers for dead*. */
  const fakeGetent = () => {
    dir = mkdtempSync(join(tmpdir(), "aks-getent-hosts-"))
    const log = join(dir, "calls")
    const pids = join(dir, "pids")
    writeFileSync(
      join(dir, "getent"),
      [
        "#!/bin/sh",
        `echo "$*" >> "${log}"`,
        `echo $$ >> "${pids}"`,
        "case \"$3\" in",
        "  alive.example) printf \"2001:db8::10    STREAM alive.example\\n2001:db8::10    DGRAM\\n192.0.2.10      STREAM\\n\"; exit 0 ;;",
        "  v4.example) [ \"$1\" = ahostsv4 ] && printf \"192.0.2.10      STREAM v4.example\\n\" && exit 0; exit 2 ;;",
        "  gone.example) exit 2 ;;",
        "  musl*) exit 1 ;;",
        "  dead*) exec sleep 60 ;;",
        "esac",
        "exit 3",
        ""
      ].join("\n"),
      { mode: 0o755 }
    )
    return {
      getent: join(dir, "getent"),
      calls: () => readFileSync(log, "utf8").split("\n").filter((l) => l !== ""),
      alive: () =>
        readFileSync(pids, "utf8").split("\n").filter((l) => l !== "").filter((pid) => {
          try {
            process.kill(Number(pid), 0)
            return true
          } catch {
            return false
          }
        })
    }
  }

  it("answers from getent's output, by the family asked for; 2 is ENOTFOUND; a getent without ahosts hands over", async () => {
    const fake = fakeGetent()
    const fallback: ResolveHost = async (hostname) => (hostname === "musl.example" ? [V4] : [])
    const resolve = getentResolve(fake.getent, fallback)
    const signal = new AbortController().signal
    expect(await resolve("alive.example", { family: 0, hints: 0, signal })).toEqual([V6, V4])
    expect(await resolve("v4.example", { family: 4, hints: 0, signal })).toEqual([V4])
    // glibc's getent says 2 for a name that does not exist and for a resolver that did not answer alike.
    await expect(resolve("gone.example", { family: 0, hints: 0, signal })).rejects.toMatchObject({
      code: "ENOTFOUND",
      message: "getaddrinfo ENOTFOUND gone.example (no such name, or no answer from the resolver)"
    })
    expect(await resolve("musl.example", { family: 0, hints: 0, signal })).toEqual([V4])
    // Once getent has said it does not know ahosts, it is not asked again.
    expect(await resolve("alive.example", { family: 0, hints: 0, signal })).toEqual([])
    expect(fake.calls()).toEqual([
      "ahosts -- alive.example",
      "ahostsv4 -- v4.example",
      "ahosts -- gone.example",
      "ahosts -- musl.example"
    ])
  })

  it("a getent without ahosts (musl's): Node's lookups take over, still at most two at a time (found in review)", async () => {
    const fake = fakeGetent()
    let running = 0
    let peak = 0
    const slow: ResolveHost = async () => {
      peak = Math.max(peak, ++running)
      await new Promise((resolve) => setTimeout(resolve, 20))
      running--
      return [V4]
    }
    const hosts = new HostLookup(getentResolve(fake.getent, limitConcurrency(slow, 2)), 16)
    const names = Array.from({ length: 8 }, (_, i) => lookupOnce(hosts, `musl${i}.example`))
    for (const outcome of await Promise.all(names.map((p) => p))) expect(outcome.address).toBe("192.0.2.10")
    expect(peak).toBe(2)
    hosts.close()
  })

  it("many lookups under way at once listen for the end of the run without a listener-leak warning", async () => {
    const fake = fakeGetent()
    const warnings: Array<string> = []
    const onWarning = (warning: Error) => warnings.push(warning.name)
    process.on("warning", onWarning)
    try {
      const hosts = new HostLookup(getentResolve(fake.getent), 16)
      const dead = Array.from({ length: 14 }, (_, i) => lookupOnce(hosts, `dead${i}.example`))
      await new Promise((resolve) => setTimeout(resolve, 200))
      hosts.close()
      await Promise.all(dead)
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings).toEqual([])
    } finally {
      process.off("warning", onWarning)
    }
  })

  it("two names that never resolve do not hold up a third; closing the run kills their getent", async () => {
    const fake = fakeGetent()
    const hosts = new HostLookup(getentResolve(fake.getent), 16)
    const dead = [lookupOnce(hosts, "dead1.example"), lookupOnce(hosts, "dead2.example")]
    expect(await lookupOnce(hosts, "alive.example")).toEqual({ error: null, address: "2001:db8::10", family: 6 })
    // Both dead lookups are under way (their shells may still be starting when the third has answered).
    for (let i = 0; i < 100 && fake.alive().length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(fake.alive()).toHaveLength(2)
    hosts.close()
    for (const outcome of await Promise.all(dead)) {
      expect(outcome.error?.code).toBe("ECANCELLED")
      expect(outcome.error?.message).toMatch(/^getaddrinfo ECANCELLED dead[12]\.example \(the run has ended\)$/)
    }
    // Killed (SIGTERM) at once; the processes are gone once reaped.
    for (let i = 0; i < 100 && fake.alive().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(fake.alive()).toEqual([])
  })
})

describe.skipIf(
  process.platform !== "linux" || (() => {
    try {
      execFileSync("getent", ["ahosts", "localhost"], { stdio: "ignore" })
      return false
    } catch {
      return true
    }
  })()
)("HostLookup, the host's way (this machine's getent)", () => {
  it("localhost comes from /etc/hosts through getent, with no DNS query", async () => {
    const hosts = new HostLookup()
    try {
      const outcome = await lookupOnce(hosts, "localhost", { all: true })
      expect(outcome.error).toBeNull()
      expect((outcome.address as Array<LookupAddress>).map((a) => a.address)).toContain("127.0.0.1")
    } finally {
      hosts.close()
    }
  })
})

describe("limitConcurrency", () => {
  it("never runs more than `max` at once, also when every call comes in the same turn; each call gets its answer", async () => {
    let running = 0
    let peak = 0
    const work = async (n: number) => {
      peak = Math.max(peak, ++running)
      await new Promise((resolve) => setTimeout(resolve, 5))
      running--
      if (n === 3) throw new Error("three")
      return n * 2
    }
    const limited = limitConcurrency(work, 2)
    const results = await Promise.allSettled([1, 2, 3, 4, 5, 6].map((n) => limited(n)))
    expect(peak).toBe(2)
    expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual([
      2,
      4,
      "three",
      8,
      10,
      12
    ])
  })

  it("a call that throws at once still hands its place on", async () => {
    const limited = limitConcurrency((n: number): Promise<number> => {
      if (n === 1) throw new Error("at once")
      return Promise.resolve(n)
    }, 1)
    await expect(limited(1)).rejects.toThrow("at once")
    await expect(limited(2)).resolves.toBe(2)
  })

  it("aborting `until` drops the calls waiting and those made later; the running one finishes", async () => {
    const ended = new AbortController()
    const started: Array<number> = []
    let finishFirst = (_: number) => {}
    const limited = limitConcurrency(
      (n: number) => {
        started.push(n)
        return n === 1 ? new Promise<number>((resolve) => (finishFirst = resolve)) : Promise.resolve(n)
      },
      1,
      { signal: ended.signal, dropped: () => new Error("dropped") }
    )
    const first = limited(1)
    const waiting = [limited(2), limited(3)]
    ended.abort()
    await expect(Promise.allSettled(waiting)).resolves.toEqual([
      { status: "rejected", reason: new Error("dropped") },
      { status: "rejected", reason: new Error("dropped") }
    ])
    await expect(limited(4)).rejects.toThrow("dropped")
    finishFirst(1)
    await expect(first).resolves.toBe(1)
    expect(started).toEqual([1])
  })
})
