/**
 * A DNS resolver that never answers, black box. Host lookups (getaddrinfo) run on libuv's small thread pool and cannot
 * be cancelled, and the same pool runs the run's fsyncs: the tool must look each name up once per run and leave the
 * pool room for the files, so one dead name costs one lookup, not one per source, and the other users are still
 * written.
 *
 * The run is given its own /etc/resolv.conf (127.0.0.1, where this test listens and never replies) in a private mount
 * namespace (`unshare -m`): nothing on the host changes, and no query leaves the machine.
 */
import * as dgram from "node:dgram"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { expect, it } from "vitest"
import { assertBuilt, CLI_PATH, config, E2E_LOCK_FILE, parseLogs, userWith, writeConfig } from "../support/cli.js"
import { expectSyncedFile } from "../support/files.js"
import { useServer } from "../support/httpServer.js"
import { key, lines } from "../support/keys.js"
import { canUnshareMounts, runInMountNamespace } from "../support/namespaces.js"
import { describeAsRoot, useUsers } from "../support/users.js"

/** The name of a query packet (RFC 1035 §4.1.2), or undefined for anything else. */
const queryName = (packet: Buffer): string | undefined => {
  const labels: Array<string> = []
  for (let at = 12; at < packet.length;) {
    const length = packet[at]!
    if (length === 0) return labels.join(".")
    labels.push(packet.subarray(at + 1, at + 1 + length).toString("latin1"))
    at += 1 + length
  }
  return undefined
}

/**
 * A UDP socket on 127.0.0.1:53 that counts the queries for each name and answers none; undefined, with a warning, when
 * that port is taken (the test then skips).
 */
const silentResolver = async () => {
  const socket = dgram.createSocket("udp4")
  const queries = new Map<string, number>()
  socket.on("message", (packet) => {
    const name = queryName(packet)
    if (name !== undefined) queries.set(name, (queries.get(name) ?? 0) + 1)
  })
  const bound = await new Promise<boolean>((resolve) => {
    socket.once("error", () => resolve(false))
    socket.bind(53, "127.0.0.1", () => resolve(true))
  })
  if (!bound) {
    console.warn("skipped: 127.0.0.1:53 (UDP) is in use, so the test cannot play a silent resolver there")
    return undefined
  }
  return { queries, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) }
}

/** `name` was looked up once: glibc asks for A and AAAA in one lookup, so one or two queries. */
const expectLookedUpOnce = (queries: ReadonlyMap<string, number>, name: string) => {
  const asked = queries.get(name) ?? 0
  expect(asked).toBeGreaterThan(0)
  expect(asked).toBeLessThanOrEqual(2)
}

/** Run the built CLI on `cfgPath` with `resolvConf` bound over /etc/resolv.conf in a private mount namespace. */
const runWithResolvConf = (resolvConf: string, cfgPath: string) =>
  runInMountNamespace(`mount --bind "$1" /etc/resolv.conf`, [resolvConf], [
    process.execPath,
    CLI_PATH,
    "--config",
    cfgPath,
    "--lock-file",
    E2E_LOCK_FILE
  ])

/**
 * Run `body` with the silent resolver listening and a resolv.conf (`options` as given) pointing at it, or skip the
 * test, saying why, where the run cannot get its own /etc/resolv.conf or 127.0.0.1:53 is taken.
 */
const withSilentResolver = async (
  context: { skip: () => void },
  dir: () => Promise<string>,
  options: string,
  body: (dns: { readonly queries: ReadonlyMap<string, number> }, resolvConf: string) => Promise<void>
): Promise<void> => {
  if (!canUnshareMounts) {
    console.warn("skipped: needs `unshare -m` (root with CAP_SYS_ADMIN) to give the run its own /etc/resolv.conf")
    return context.skip()
  }
  const dns = await silentResolver()
  if (dns === undefined) return context.skip()
  try {
    assertBuilt()
    const resolvConf = path.join(await dir(), "resolv.conf")
    await fs.writeFile(resolvConf, `nameserver 127.0.0.1\noptions ${options}\n`)
    await body(dns, resolvConf)
  } finally {
    await dns.close()
  }
}

describeAsRoot("a resolver that never answers (e2e)", () => {
  const server = useServer()
  const users = useUsers()

  it("a dead host name is looked up once, not once per source, and the other users are written", (context) =>
    // One try of one second per lookup: the old behaviour (a lookup per source, four at a time) takes six seconds.
    withSilentResolver(context, () => users.tempDir(), "timeout:1 attempts:1", async (dns, resolvConf) => {
      const original = lines(key("stays"))
      const stuck = await users.create({ authorizedKeys: original })
      const fine = await users.create({ ssh: true })
      server.keys("/fine", [key("fine-1")])
      const dead = "keys.authkeysync-dead.test"
      const SOURCES = 24
      const cfg = await writeConfig(config([
        userWith(
          stuck.name,
          ...Array.from({ length: SOURCES }, (_, i) => ({ url: `http://${dead}:8080/${i}`, timeout_seconds: 2 }))
        ),
        userWith(fine.name, server.url("/fine"))
      ]))
      try {
        const run = await runWithResolvConf(resolvConf, cfg.path)
        expect(run.code, run.stderr).toBe(1)
        // A lookup per source would be 2 x 24 queries.
        expectLookedUpOnce(dns.queries, dead)
        expect(await fs.readFile(stuck.authorizedKeys, "utf8")).toBe(original)
        const summary = parseLogs(run.stdout).find((line) => line.msg === "sync finished")
        expect(summary).toMatchObject({ updated: "1", failed: "1", exit_code: "1" })
        await expectSyncedFile(fine, [{ source: server.url("/fine"), keys: [key("fine-1")] }])
      } finally {
        await cfg.remove()
      }
    }), 90_000)

  it(
    "a dead host name is looked up once per run, also by sources with a ca_file (each CA has its own client)",
    (context) => {
      const caFile = "/etc/ssl/certs/ca-certificates.crt"
      if (!existsSync(caFile)) {
        console.warn(`skipped: needs ${caFile}`)
        return context.skip()
      }
      return withSilentResolver(context, () => users.tempDir(), "timeout:1 attempts:1", async (dns, resolvConf) => {
        const original = lines(key("stays"))
        const stuck = await users.create({ authorizedKeys: original })
        const dead = "keys.authkeysync-dead.test"
        // The same name over plain http (the default client) and over https trusting a CA file (that file's client).
        const cfg = await writeConfig(config([
          userWith(stuck.name, { url: `http://${dead}:8080/plain`, timeout_seconds: 2 }, {
            url: `https://${dead}:8443/tls`,
            timeout_seconds: 2,
            ca_file: caFile
          })
        ]))
        try {
          const run = await runWithResolvConf(resolvConf, cfg.path)
          expect(run.code, run.stderr).toBe(1)
          // A lookup per client would be twice that.
          expectLookedUpOnce(dns.queries, dead)
          expect(await fs.readFile(stuck.authorizedKeys, "utf8")).toBe(original)
        } finally {
          await cfg.remove()
        }
      })
    },
    90_000
  )

  it(
    "two host names that never resolve hold up no other user's sources, and the run does not wait for them",
    (context) =>
      // Found in review: two dead names held both of the two thread-pool lookups, so every other name (localhost from
      // /etc/hosts too) queued behind them: the other users' sources failed at their deadlines, and the process lived
      // on until the resolver gave up. Each lookup of a dead name hangs for 30 s here, longer than any deadline.
      withSilentResolver(context, () => users.tempDir(), "timeout:30 attempts:1", async (_dns, resolvConf) => {
        const original = lines(key("stays"))
        const stuck = await users.create({ authorizedKeys: original })
        const [fine1, fine2] = [await users.create({ ssh: true }), await users.create({ ssh: true })]
        server.keys("/fine1", [key("fine-1")])
        server.keys("/fine2", [key("fine-2")])
        const local = (route: string) => server.url(route).replace("://127.0.0.1:", "://localhost:")
        const cfg = await writeConfig(config([
          userWith(
            stuck.name,
            { url: "http://keys1.authkeysync-dead.test:8080/a", timeout_seconds: 2 },
            { url: "http://keys2.authkeysync-dead.test:8080/b", timeout_seconds: 2 }
          ),
          userWith(fine1.name, { url: local("/fine1"), timeout_seconds: 5 }),
          userWith(fine2.name, { url: local("/fine2"), timeout_seconds: 5 })
        ]))
        try {
          const started = Date.now()
          const run = await runWithResolvConf(resolvConf, cfg.path)
          const seconds = (Date.now() - started) / 1000
          expect(run.code, run.stderr).toBe(1)
          expect(await fs.readFile(stuck.authorizedKeys, "utf8")).toBe(original)
          await expectSyncedFile(fine1, [{ source: local("/fine1"), keys: [key("fine-1")] }])
          await expectSyncedFile(fine2, [{ source: local("/fine2"), keys: [key("fine-2")] }])
          const summary = parseLogs(run.stdout).find((line) => line.msg === "sync finished")
          expect(summary).toMatchObject({ updated: "2", failed: "1", exit_code: "1" })
          // The process ends with the run, not when the resolver gives up on the dead names (30 s).
          expect(seconds).toBeLessThan(25)
        } finally {
          await cfg.remove()
        }
      }),
    90_000
  )
})
