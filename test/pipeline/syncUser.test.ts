/**
 * The per-user program and the run-all aggregate, driven through test Layers only: accounts from a table,
 * an in-memory file system, canned HTTP answers, the TestClock and predictable ids.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, FiberId, Layer, LogLevel, Ref, TestClock } from "effect"
import { textToBytes } from "../../src/pipeline/Bytes.js"
import { type Config, decodeConfigValue } from "../../src/pipeline/Config.js"
import { SourceTimeout, UnsafePath } from "../../src/pipeline/Errors.js"
import { keyIdentity } from "../../src/pipeline/KeyIdentity.js"
import { renderHeader } from "../../src/pipeline/Render.js"
import { runAll } from "../../src/pipeline/runAll.js"
import { DUPLICATES_NAMED, KEYS_NAMED, type UserOutcome } from "../../src/pipeline/syncUser.js"
import * as Accounts from "../../src/services/Accounts.js"
import * as KeySource from "../../src/services/KeySource.js"
import * as Logging from "../../src/services/Logging.js"
import * as ManagedKeys from "../../src/services/ManagedKeys.js"
import * as RandomId from "../../src/services/RandomId.js"
import * as SshFiles from "../../src/services/SshFiles.js"

const build = { version: "v9.9.9", commit: "abc123", built: "2026-01-01T00:00:00Z" }
const NOW = Date.parse("2026-03-04T05:06:07Z")

const alice = { name: "alice", uid: 1001, gid: 1011, home: "/home/alice" }
const bob = { name: "bob", uid: 1002, gid: 1003, home: "/home/bob" }

const K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1 one@example"
const K2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2 two@example"
const K3 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQK3 three@example"
const LOCAL = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILO local@host"

const config = (raw: unknown): Config => {
  const decoded = decodeConfigValue("test.yaml", raw)
  if (decoded._tag === "Left") throw new Error(decoded.left.message)
  return decoded.right.config
}

interface World {
  readonly fs: SshFiles.MemoryFs
  readonly logs: Array<Logging.LogRecord>
  /** What the run recorded as managed, by user. */
  readonly records: Map<string, ManagedKeys.ManagedRecord>
  readonly layer: Layer.Layer<
    Accounts.Accounts | SshFiles.SshFiles | KeySource.KeySource | RandomId.RandomId | ManagedKeys.ManagedKeys
  >
}

const world = (
  responses: Readonly<Record<string, KeySource.CannedResponse>>,
  setup: (fs: SshFiles.MemoryFs) => void = () => {},
  managed: Record<string, ReadonlyArray<string>> = {}
): World => {
  const fs = new SshFiles.MemoryFs()
  fs.mkdir("/home/alice/.ssh", alice).mkdir("/home/bob/.ssh", bob)
  setup(fs)
  const logs: Array<Logging.LogRecord> = []
  const records = new Map<string, ManagedKeys.ManagedRecord>()
  const layer = Layer.mergeAll(
    ManagedKeys.layerMemory(managed, records),
    Accounts.layerTest([alice, bob]),
    SshFiles.layerMemory(fs),
    KeySource.layerTest(responses),
    RandomId.layerTest(["aaaaaa", "bbbbbb", "cccccc", "dddddd"]),
    Logging.layerCapture(logs, LogLevel.Debug)
  )
  return { fs, logs, records, layer }
}

const run = <
  Override extends Accounts.Accounts | KeySource.KeySource | SshFiles.SshFiles | ManagedKeys.ManagedKeys = never
>(
  w: World,
  cfg: Config,
  options: { dryRun?: boolean; concurrency?: number } = {},
  override?: Layer.Layer<Override>
) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(NOW)
    return yield* runAll(cfg, { dryRun: options.dryRun ?? false, concurrency: options.concurrency ?? 4, build })
  }).pipe(Effect.provide(override ? Layer.merge(w.layer, override) : w.layer))

const header = renderHeader(build, new Date(NOW))

/** alice from a.example, bob from b.example; no backups. */
const aliceAndBob = () =>
  config({
    policy: { backup_enabled: false },
    users: [
      { username: "alice", sources: [{ url: "https://a.example/keys" }] },
      { username: "bob", sources: [{ url: "https://b.example/keys" }] }
    ]
  })

/** runAll of both users at once, with a key budget of `permits` keys. */
const runWithKeyBudget = (w: World, cfg: Config, permits: number) =>
  Effect.gen(function*() {
    yield* TestClock.setTime(NOW)
    const keyBudget = { semaphore: yield* Effect.makeSemaphore(permits), permits }
    return yield* runAll(cfg, { dryRun: false, concurrency: 2, build, keyBudget })
  }).pipe(Effect.provide(w.layer))

const BUDGET_WAIT = "waiting for other users with many keys to finish (memory budget)"

describe("syncUser", () => {
  // alice's group is not her uid: an owner set from the wrong field shows. (Modes are the file layer's: e2e tests.)
  it.effect("writes sections in config order with local keys preserved, owned by the user and her group", () =>
    Effect.gen(function*() {
      const w = world(
        { "https://a.example/keys": `${K1}\n${K2}\n`, "https://b.example/keys": `${K2}\n${K3}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n${K1}\n`, alice, 0o644)
      )
      const cfg = config({
        users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }, { url: "https://b.example/keys" }] }]
      })
      const summary = yield* run(w, cfg)
      expect(summary.exitCode).toBe(0)
      expect(summary.counts.Updated).toBe(1)
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(
        header +
          `\n# Source: https://a.example/keys\n${K1}\n${K2}\n` +
          `\n# Source: https://b.example/keys\n${K3}\n` +
          `\n# Local (preserved)\n${LOCAL}\n`
      )
      const owners = (path: string) => {
        const entry = w.fs.files.get(path) ?? w.fs.dirs.get(path)
        return [entry?.uid, entry?.gid]
      }
      expect(owners("/home/alice/.ssh/authorized_keys")).toEqual([1001, 1011])
      expect(owners("/home/alice/.ssh/authorized_keys_backups")).toEqual([1001, 1011])
      expect(owners("/home/alice/.ssh/authorized_keys_backups/authorized_keys_20260304_050607_aaaaaa")).toEqual([
        1001,
        1011
      ])
      // Backup first (the old bytes), then the temp file named per the spec, renamed over the target.
      expect(w.fs.writes).toEqual([
        "/home/alice/.ssh/authorized_keys_backups/authorized_keys_20260304_050607_aaaaaa",
        "/home/alice/.ssh/.authkeysync_20260304_050607_bbbbbb"
      ])
      expect(w.fs.read("/home/alice/.ssh/authorized_keys_backups/authorized_keys_20260304_050607_aaaaaa")).toBe(
        `${LOCAL}\n${K1}\n`
      )
      const dup = w.logs.filter((l) => l.msg === "duplicate key dropped" && l.level === "INFO")
      expect(dup.map((l) => Object.fromEntries(l.fields))).toEqual([
        { user: "alice", key: K2, kept_in: "https://a.example/keys", dropped_from: "https://b.example/keys" }
      ])
    }))

  it.effect("a source repeating keys thousands of times: 20 duplicate lines per user and level, then one count", () =>
    Effect.gen(function*() {
      const many = Array.from({ length: 30 }, (_, i) => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5dup${i} dup${i}`)
      const w = world({
        "https://a.example/keys": `${K1}\n`.repeat(5000) + many.join("\n") + "\n" + many.join("\n") + "\n"
      })
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      const summary = yield* run(w, cfg)
      expect(summary.exitCode).toBe(0)
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(
        `${header}\n# Source: https://a.example/keys\n${K1}\n${many.join("\n")}\n`
      )
      const named = w.logs.filter((l) => l.msg === "duplicate key dropped")
      expect(named).toHaveLength(DUPLICATES_NAMED)
      expect(named.every((l) => l.level === "INFO")).toBe(true)
      const rest = w.logs.filter((l) => l.msg === "more duplicate keys dropped, not listed one by one")
      expect(rest.map((l) => [l.level, Object.fromEntries(l.fields)])).toEqual([
        ["INFO", { user: "alice", count: 4999 + 30 - DUPLICATES_NAMED }]
      ])
    }))

  it.effect("revoked and adopted keys: 20 lines per user naming them, then one count (a file may hold 400,000)", () =>
    Effect.gen(function*() {
      const old = Array.from({ length: 25 }, (_, i) => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5old${i} old${i}`)
      const file = `${header}\n# Source: https://gone.example/keys\n${old.join("\n")}\n`
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      const counted = (w: World, msg: string) =>
        w.logs.filter((l) => l.msg === msg).map((l) => Object.fromEntries(l.fields))

      // No record yet (e.g. right after the Go original): kept, with a warning each, up to 20.
      const first = world(
        { "https://a.example/keys": `${K1}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", file, alice)
      )
      expect((yield* run(first, cfg)).exitCode).toBe(0)
      expect(first.logs.filter((l) => l.msg.startsWith("kept a key under a # Source: line"))).toHaveLength(KEYS_NAMED)
      expect(counted(first, "kept more keys under # Source: lines that no source provides, not listed one by one"))
        .toEqual([{ user: "alice", count: 25 - KEYS_NAMED }])

      // With a record that they were the tool's: revoked, one line each up to 20.
      const second = world(
        { "https://a.example/keys": `${K1}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", file, alice),
        { alice: old.map((line) => line.split(" ").slice(0, 2).join(" ")) }
      )
      expect((yield* run(second, cfg)).exitCode).toBe(0)
      expect(second.fs.read("/home/alice/.ssh/authorized_keys")).toBe(
        `${header}\n# Source: https://a.example/keys\n${K1}\n`
      )
      expect(second.logs.filter((l) => l.msg === "revoked key: no source provides it any more")).toHaveLength(
        KEYS_NAMED
      )
      expect(counted(second, "revoked more keys, not listed one by one")).toEqual([{
        user: "alice",
        count: 25 - KEYS_NAMED
      }])
    }))

  it.effect("a record written by an earlier version (rsa-sha2-512 kept as written) still revokes that key (found in review)", () =>
    Effect.gen(function*() {
      const rsaBlob = Buffer.concat([
        Buffer.from([0, 0, 0, 7]),
        Buffer.from("ssh-rsa"),
        Buffer.from([0, 0, 0, 3, 1, 0, 1, 0, 0, 0, 3, 0, 0xc5, 0x11])
      ]).toString("base64")
      const line = `rsa-sha2-512 ${rsaBlob} k2`
      const file = `${header}\n# Source: https://a.example/keys\n${K1}\n${line}\n`
      const w = world(
        { "https://a.example/keys": `${K1}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", file, alice),
        // What 0.3.0 before this fix recorded: the line's own type.
        { alice: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1", `rsa-sha2-512 ${rsaBlob}`] }
      )
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      expect((yield* run(w, cfg)).exitCode).toBe(0)
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${header}\n# Source: https://a.example/keys\n${K1}\n`)
      expect(w.logs.filter((l) => l.msg === "revoked key: no source provides it any more")).toHaveLength(1)
    }))

  it.effect("users with huge answers share a key budget: the second waits for the first instead of both in memory", () =>
    Effect.gen(function*() {
      const many = (tag: string) =>
        Array.from({ length: 25_000 }, (_, i) => `ssh-ed25519 AAAAC3Nz${tag}${i.toString(36)} k`).join("\n") + "\n"
      const w = world({ "https://a.example/keys": many("a"), "https://b.example/keys": many("b") })
      const cfg = aliceAndBob()
      // Room for one of them at a time (each brings 25,000 keys).
      const summary = yield* runWithKeyBudget(w, cfg, 30_000)
      expect(summary.counts.Updated).toBe(2)
      const waited = w.logs.filter((l) => l.msg === BUDGET_WAIT)
      expect(waited.map((l) => Object.fromEntries(l.fields))).toHaveLength(1)
      expect(Object.fromEntries(waited[0]!.fields)).toMatchObject({ keys: 25_000 })
      // The one that waited started its merge after the other had written.
      const waiter = String(Object.fromEntries(waited[0]!.fields)["user"])
      const order = w.logs.filter((l) => l.msg === "updated authorized_keys").map((l) =>
        String(Object.fromEntries(l.fields)["user"])
      )
      expect(order).toEqual(waiter === "bob" ? ["alice", "bob"] : ["bob", "alice"])
      // Without huge answers nobody takes from the budget, nobody waits.
      const small = world({ "https://a.example/keys": `${K1}\n`, "https://b.example/keys": `${K2}\n` })
      yield* runWithKeyBudget(small, cfg, 1)
      expect(small.logs.filter((l) => l.msg.startsWith("waiting for other users"))).toEqual([])
    }))

  it.effect("huge files of their own count toward the key budget too, though the answers are small (found in review)", () =>
    Effect.gen(function*() {
      const own = (tag: string) =>
        Array.from({ length: 25_000 }, (_, i) => `ssh-ed25519 AAAAC3Nz${tag}${i.toString(36)} mine@a-laptop-here`).join(
          "\n"
        ) + "\n"
      const w = world({ "https://a.example/keys": `${K1}\n`, "https://b.example/keys": `${K2}\n` }, (fs) => {
        fs.writeFile("/home/alice/.ssh/authorized_keys", own("a"), alice)
        fs.writeFile("/home/bob/.ssh/authorized_keys", own("b"), bob)
      })
      const summary = yield* runWithKeyBudget(w, aliceAndBob(), 40_000)
      expect(summary.counts.Updated).toBe(2)
      const waited = w.logs.filter((l) => l.msg === BUDGET_WAIT)
      expect(waited).toHaveLength(1)
      // The estimate from the file's size (about 40 bytes a line), plus the one key fetched.
      const keys = Number(Object.fromEntries(waited[0]!.fields)["keys"])
      expect(keys).toBeGreaterThan(25_000)
      expect(keys).toBeLessThan(40_000)
    }))

  it.effect("a home whose filesystem did not answer: that user fails without its home being touched; others sync", () =>
    Effect.gen(function*() {
      const w = world(
        { "https://a.example/keys": `${K1}\n`, "https://b.example/keys": `${K2}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice)
      )
      w.fs.unresponsive.add("/home/alice")
      const cfg = config({
        users: [
          { username: "alice", sources: [{ url: "https://a.example/keys" }] },
          { username: "bob", sources: [{ url: "https://b.example/keys" }] }
        ]
      })
      const summary = yield* run(w, cfg)
      expect(summary.exitCode).toBe(1)
      expect(summary.outcomes.map((o) => [o.user, o._tag])).toEqual([["alice", "Failed"], ["bob", "Updated"]])
      expect(w.logs.filter((l) => l.level === "ERROR" && l.msg.startsWith("user not synced")).map((l) => l.msg))
        .toEqual([
          "user not synced, authorized_keys left untouched: cannot read /home/alice: its home /home/alice did not answer"
        ])
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${LOCAL}\n`)
      expect(w.fs.writes.filter((path) => path.startsWith("/home/alice"))).toEqual([])
    }))

  it.effect("a file larger than the tool reads back is not written: the user fails, the old file stays (found in review)", () =>
    Effect.gen(function*() {
      // 45,000 keys of 400 bytes: 18 MB, more than the 16 MiB a run reads back; written once, it would fail every run.
      const long = (i: number) => `ssh-rsa AAAAB3NzaC1yc2E${i.toString(36).padStart(8, "0")}${"A".repeat(370)} k${i}`
      const w = world(
        { "https://a.example/keys": Array.from({ length: 45_000 }, (_, i) => long(i)).join("\n") + "\n" },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice)
      )
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      const summary = yield* run(w, cfg)
      expect(summary.exitCode).toBe(1)
      const error = w.logs.find((l) => l.msg.startsWith("user not synced"))?.msg
      expect(error).toMatch(
        /^user not synced, authorized_keys left untouched: cannot write \/home\/alice\/\.ssh\/authorized_keys: the new file would be \d+ bytes, more than the 16777216 this tool reads back \(the next run would refuse it\); nothing was written$/
      )
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${LOCAL}\n`)
      expect(w.fs.writes).toEqual([])
    }))

  it.effect("a file with more key lines than a run reads back is not written either (it would fail every later run)", () =>
    Effect.gen(function*() {
      // max_keys_per_source 10 and one source: a run reads at most 20 key lines back; the file already holds 20.
      const local = Array.from({ length: 20 }, (_, i) => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5local${i} l${i}`).join("\n") +
        "\n"
      const w = world(
        { "https://a.example/keys": `${K1}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", local, alice)
      )
      const cfg = config({
        policy: { max_keys_per_source: 10 },
        users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }]
      })
      const summary = yield* run(w, cfg)
      expect(summary.exitCode).toBe(1)
      expect(w.logs.find((l) => l.msg.startsWith("user not synced"))?.msg).toBe(
        "user not synced, authorized_keys left untouched: cannot write /home/alice/.ssh/authorized_keys: the new file " +
          "would hold 21 key lines, more than the 20 this tool reads back (the next run would refuse it); nothing was written"
      )
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(local)
      expect(w.fs.writes).toEqual([])
    }))

  it.effect("preserve_local_keys: false drops keys no source serves", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": `${K1}\n` }, (fs) =>
        fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice))
      const cfg = config({
        policy: { preserve_local_keys: false, backup_enabled: false },
        users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }]
      })
      yield* run(w, cfg)
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${header}\n# Source: https://a.example/keys\n${K1}\n`)
      expect(w.fs.list("/home/alice/.ssh")).toEqual(["authorized_keys"])
    }))

  it.effect("a source's log lines carry the source and fetch_ms, the time since its fetch started", () =>
    Effect.gen(function*() {
      const w = world({})
      const slow = Layer.succeed(
        KeySource.KeySource,
        KeySource.KeySource.of({ fetch: () => Effect.as(Effect.sleep("250 millis"), `${K1}\n<html>oops</html>\n`) })
      )
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      yield* TestClock.setTime(NOW)
      const fiber = yield* Effect.fork(run(w, cfg, {}, slow))
      while (Chunk.isEmpty(yield* TestClock.sleeps())) yield* Effect.yieldNow()
      yield* TestClock.adjust("250 millis")
      expect((yield* Fiber.join(fiber)).exitCode).toBe(0)
      const lines = w.logs.filter((l) => l.fields.some(([name]) => name === "source"))
      expect(lines.map((l) => [l.level, l.msg, l.fields])).toEqual([
        ["INFO", "fetched source", [
          ["user", "alice"],
          ["source", "https://a.example/keys"],
          ["discarded", 1],
          ["keys", 1],
          ["fetch_ms", 250]
        ]],
        ["WARN", "source returned lines that look like an HTML/JSON error page; they were ignored", [
          ["user", "alice"],
          ["source", "https://a.example/keys"],
          ["lines", 1],
          ["fetch_ms", 250]
        ]]
      ])
    }))

  it.effect("a failing source fails the user and leaves the file and directory untouched", () =>
    Effect.gen(function*() {
      const w = world(
        { "https://a.example/keys": `${K1}\n`, "https://b.example/keys": { status: 500, body: "<html>oops</html>" } },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice)
      )
      const cfg = config({
        users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }, { url: "https://b.example/keys" }] }]
      })
      const summary = yield* run(w, cfg)
      expect(summary.exitCode).toBe(1)
      expect(summary.outcomes[0]?._tag).toBe("Failed")
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${LOCAL}\n`)
      expect(w.fs.writes).toEqual([])
      expect(
        w.logs.some((l) =>
          l.level === "ERROR" && l.msg === "source https://b.example/keys: HTTP 500 (only 200 is accepted)"
        )
      ).toBe(true)
    }))

  it.effect("a local file with more key lines than its sources and pins could account for fails the user, untouched", () =>
    Effect.gen(function*() {
      // max_keys_per_source 1, one source, one pin: at most 1 + 1 (the user's own) + 1 key lines.
      const local = [K2, K3, LOCAL, "a b"].map((k) => `${k}\n`).join("")
      const w = world(
        { "https://a.example/keys": `${K1}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", local, alice)
      )
      const cfg = config({
        policy: { max_keys_per_source: 1 },
        users: [{ username: "alice", pinned_keys: [K1], sources: [{ url: "https://a.example/keys" }] }]
      })
      const summary = yield* run(w, cfg)
      expect(summary.outcomes[0]).toMatchObject({
        _tag: "Failed",
        error: new UnsafePath({
          user: "alice",
          path: "/home/alice/.ssh/authorized_keys",
          reason: "it holds more than 3 key lines " +
            "(policy.max_keys_per_source for each source and for the user's own keys, plus the pinned keys)"
        })
      })
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(local)
      expect(w.fs.writes).toEqual([])
      // Within the bound, and so is the file written from it (the pin and two lines of the user's).
      w.fs.writeFile("/home/alice/.ssh/authorized_keys", [K2, LOCAL].map((k) => `${k}\n`).join(""), alice)
      expect((yield* run(w, cfg)).outcomes[0]?._tag).toBe("Updated")
    }))

  it.effect("unchanged keys: no rewrite, no backup, logged as unchanged", () =>
    Effect.gen(function*() {
      const existing = textToBytes(
        `# ${"─".repeat(66)}\n# Generated by AuthKeySync\n# Version:   v0.0.1\n# Commit:    old\n` +
          `# Built:     x\n# Last sync: 2020-01-01T00:00:00Z\n# More info: https://github.com/eduardolat/authkeysync\n` +
          `# ${"─".repeat(66)}\n\n# Source: https://a.example/keys\n${K1}\n`
      )
      const w = world({ "https://a.example/keys": `${K1}\n` }, (fs) =>
        fs.writeFile("/home/alice/.ssh/authorized_keys", existing, alice, 0o600))
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      const summary = yield* run(w, cfg)
      expect(summary.counts.Unchanged).toBe(1)
      expect(w.fs.writes).toEqual([])
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(existing)
      expect(w.logs.some((l) =>
        l.msg === "authorized_keys unchanged"
      )).toBe(true)
    }))

  it.effect("dry run computes the diff and writes nothing", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": `${K1}\n` }, (fs) =>
        fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice))
      const cfg = config({
        policy: { preserve_local_keys: false },
        users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }]
      })
      const summary = yield* run(w, cfg, { dryRun: true })
      expect(summary.exitCode).toBe(0)
      const outcome = summary.outcomes[0]
      expect(outcome?._tag).toBe("WouldUpdate")
      if (outcome?._tag === "WouldUpdate") {
        expect(outcome.diff.added.map((c) =>
          c.key
        )).toEqual([K1])
        expect(outcome.diff.removed.map((c) => c.key)).toEqual([LOCAL])
      }
      expect(w.fs.writes).toEqual([])
      expect(w.fs.dirs.has("/home/alice/.ssh/authorized_keys_backups")).toBe(false)
    }))

  it.effect("a write failure fails only that user; the old file stays", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": `${K1}\n` }, (fs) => {
        fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice)
        fs.failWritesWith = "ENOSPC"
      })
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      const summary = yield* run(w, cfg)
      expect(summary.exitCode).toBe(1)
      const outcome = summary.outcomes[0]
      expect(outcome?._tag === "Failed" && outcome.error._tag).toBe("WriteError")
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${LOCAL}\n`)
    }))

  // As the Go original: a backup keeps something worth keeping; an empty file has nothing.
  it.effect("an empty authorized_keys is replaced without a backup; a missing one is created without one", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": `${K1}\n` }, (fs) => {
        fs.writeFile("/home/alice/.ssh/authorized_keys", "", alice)
      })
      const cfg = config({
        users: [
          { username: "alice", sources: [{ url: "https://a.example/keys" }] },
          { username: "bob", sources: [{ url: "https://a.example/keys" }] }
        ]
      })
      const summary = yield* run(w, cfg)
      expect(summary.outcomes.map((o) => o._tag)).toEqual(["Updated", "Updated"])
      expect(w.fs.writes.filter((p) => p.includes("authorized_keys_backups"))).toEqual([])
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${header}\n# Source: https://a.example/keys\n${K1}\n`)
    }))

  it.effect("a dry run fails as the real run does on a read-only state_dir, exactly when the record must be written", () =>
    Effect.gen(function*() {
      const url = "https://a.example/keys"
      const w = world({ [url]: `${K1}\n` })
      const cfg = config({ policy: { backup_enabled: false }, users: [{ username: "alice", sources: [{ url }] }] })
      expect((yield* run(w, cfg)).counts.Updated).toBe(1)
      // The same record store from now on, on a read-only file system.
      const readOnly = (answer: string) =>
        Layer.merge(
          ManagedKeys.layerMemory({}, w.records, { failWritesWith: "EROFS" }),
          KeySource.layerTest({ [url]: answer })
        )
      const both = (answer: string) =>
        Effect.all([run(w, cfg, { dryRun: true }, readOnly(answer)), run(w, cfg, {}, readOnly(answer))])
      const failures = (summary: { readonly outcomes: ReadonlyArray<UserOutcome> }) =>
        summary.outcomes.flatMap((o) => (o._tag === "Failed" ? [o.error.message] : []))

      // Unchanged, and the record is current: nothing to write, both pass.
      const [dryUnchanged, realUnchanged] = yield* both(`${K1}\n`)
      expect([dryUnchanged.exitCode, realUnchanged.exitCode]).toEqual([0, 0])
      expect(dryUnchanged.outcomes[0]?._tag).toBe("Unchanged")

      // A new key: the real run writes the record first and fails there; so does the dry run.
      const [dryChanged, realChanged] = yield* both(`${K1}\n${K2}\n`)
      expect([dryChanged.exitCode, realChanged.exitCode]).toEqual([1, 1])
      expect(failures(dryChanged)).toEqual(["state /var/lib/authkeysync/managed-keys: EROFS: simulated"])
      expect(failures(realChanged)).toEqual(["state /var/lib/authkeysync/managed-keys/alice.json: EROFS: simulated"])

      // The file is unchanged but the record is missing (an earlier version, a lost state_dir): written even then.
      w.records.delete("alice")
      const [dryNoRecord, realNoRecord] = yield* both(`${K1}\n`)
      expect([dryNoRecord.exitCode, realNoRecord.exitCode]).toEqual([1, 1])
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${header}\n# Source: ${url}\n${K1}\n`)
    }))

  it.effect("a temp file that does not read back as the keys meant is never renamed: the user fails, the file stays", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [(written: string) => string, string]> = [
        [
          (written) => written.replace(K2, K2.replace("AAAAIK2", "AAAAIK9")),
          "key 2 differs from the one meant to be written"
        ],
        [(written) => written.replace(`${LOCAL}\n`, ""), "it holds 2 keys, expected 3"]
      ]
      for (const [readBackAs, problem] of cases) {
        const w = world({ "https://a.example/keys": `${K1}\n${K2}\n` }, (fs) => {
          fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice)
          fs.readBackAs = readBackAs
        })
        const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
        const summary = yield* run(w, cfg)
        expect(summary.exitCode).toBe(1)
        const outcome = summary.outcomes[0]
        expect(outcome?._tag === "Failed" && outcome.error.message).toBe(
          `cannot verify /home/alice/.ssh/.authkeysync_20260304_050607_bbbbbb: ${problem}`
        )
        expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${LOCAL}\n`)
      }
    }))

  it.effect("a dry run fails as the real run does where .ssh refuses writes before any is made (a read-only mount)", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": `${K1}\n` }, (fs) => {
        fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice)
        fs.failWritesWith = "EROFS"
      })
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      const dry = yield* run(w, cfg, { dryRun: true })
      const real = yield* run(w, cfg)
      expect([dry.exitCode, real.exitCode]).toEqual([1, 1])
      const outcome = dry.outcomes[0]
      expect(outcome?._tag === "Failed" && outcome.error.message).toBe(
        "cannot write in /home/alice/.ssh: EROFS: simulated"
      )
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${LOCAL}\n`)
      expect(w.fs.writes).toEqual([])

      // A full disk is found only by writing: the dry run cannot see it.
      w.fs.failWritesWith = "ENOSPC"
      expect((yield* run(w, cfg, { dryRun: true })).exitCode).toBe(0)
    }))

  it.effect("missing user and missing .ssh are skips (exit 0); the other user is still written", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": `${K1}\n` })
      w.fs.dirs.delete("/home/bob/.ssh")
      const cfg = config({
        users: [
          { username: "ghost", sources: [{ url: "https://a.example/keys" }] },
          { username: "bob", sources: [{ url: "https://a.example/keys" }] },
          { username: "alice", sources: [{ url: "https://a.example/keys" }] }
        ]
      })
      const summary = yield* run(w, cfg)
      expect(summary.outcomes.map((o) => o._tag)).toEqual(["Skipped", "Skipped", "Updated"])
      expect(summary.exitCode).toBe(0)
      expect(w.fs.dirs.has("/home/bob/.ssh")).toBe(false)
      const warnings = w.logs.filter((l) => l.level === "WARN").map((l) => l.msg)
      expect(warnings).toEqual([
        "skipping user: user ghost does not exist on this host",
        "skipping user: /home/bob/.ssh does not exist; create it (mode 0700, owned by bob) to manage this user"
      ])
    }))

  it.effect("a defect in one user's sync fails that user only", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": `${K1}\n` })
      const crashing = Layer.succeed(KeySource.KeySource, {
        fetch: (source) => source.url.includes("crash") ? Effect.die(new Error("boom")) : Effect.succeed(`${K2}\n`)
      })
      const cfg = config({
        users: [
          { username: "alice", sources: [{ url: "https://crash.example/keys" }] },
          { username: "bob", sources: [{ url: "https://fine.example/keys" }] }
        ]
      })
      const summary = yield* run(w, cfg, {}, crashing)
      expect(summary.outcomes.map((o) => o._tag)).toEqual(["Failed", "Updated"])
      expect(summary.exitCode).toBe(1)
      expect(w.fs.read("/home/bob/.ssh/authorized_keys")).toBe(
        `${header}\n# Source: https://fine.example/keys\n${K2}\n`
      )
      expect(w.fs.files.has("/home/alice/.ssh/authorized_keys")).toBe(false)
    }))

  it.effect("a stop that arrives while authorized_keys is being replaced still gets the replacement logged", () =>
    Effect.gen(function*() {
      const w = world({ "https://fine.example/keys": `${K2}\n` })
      // SIGTERM's interruption, as it lands: a signal to the user's fiber while the replacement is under way.
      const stopDuringWrite = Layer.effect(
        SshFiles.SshFiles,
        Effect.map(SshFiles.SshFiles, (files) =>
          SshFiles.SshFiles.of({
            ...files,
            open: (account) =>
              Effect.map(files.open(account), (dir) => ({
                ...dir,
                replaceAuthorizedKeys: (...args: Parameters<typeof dir.replaceAuthorizedKeys>) =>
                  Effect.zipLeft(
                    dir.replaceAuthorizedKeys(...args),
                    Effect.withFiberRuntime<void>((fiber) => {
                      fiber.unsafeInterruptAsFork(FiberId.none)
                      return Effect.void
                    })
                  )
              }))
          }))
      ).pipe(Layer.provide(SshFiles.layerMemory(w.fs)))
      const cfg = config({
        policy: { backup_enabled: false },
        users: [{ username: "alice", sources: [{ url: "https://fine.example/keys" }] }]
      })
      yield* run(w, cfg, {}, stopDuringWrite)
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(
        `${header}\n# Source: https://fine.example/keys\n${K2}\n`
      )
      const updated = w.logs.filter((l) => l.msg === "updated authorized_keys")
      expect(updated.map((l) => Object.fromEntries(l.fields))).toMatchObject([{
        user: "alice",
        keys: 1,
        added: 1,
        removed: 0
      }])
    }))

  it.effect.each([1, 4])(
    "a user whose sync interrupts itself fails alone (concurrency %i); the others are synced",
    (concurrency) =>
      Effect.gen(function*() {
        const w = world({ "https://fine.example/keys": `${K2}\n` })
        const interrupting = Layer.effect(
          SshFiles.SshFiles,
          Effect.map(SshFiles.SshFiles, (files) =>
            SshFiles.SshFiles.of({
              ...files,
              open: (account) => (account.name === "alice" ? Effect.interrupt : files.open(account))
            }))
        ).pipe(Layer.provide(SshFiles.layerMemory(w.fs)))
        const cfg = config({
          users: [
            { username: "alice", sources: [{ url: "https://fine.example/keys" }] },
            { username: "bob", sources: [{ url: "https://fine.example/keys" }] }
          ]
        })
        const summary = yield* run(w, cfg, { concurrency }, interrupting)
        expect(summary.outcomes.map((o) => o._tag)).toEqual(["Failed", "Updated"])
        expect(summary.exitCode).toBe(1)
        const failed = w.logs.filter((l) => l.level === "ERROR" && l.msg !== "sync finished")
        expect(failed.map((l) => [l.msg, Object.fromEntries(l.fields)])).toEqual([[
          "user not synced, authorized_keys left untouched: cannot sync user alice: the sync was interrupted",
          { user: "alice" }
        ]])
        expect(w.fs.read("/home/bob/.ssh/authorized_keys")).toBe(
          `${header}\n# Source: https://fine.example/keys\n${K2}\n`
        )
        expect(w.logs.some((l) => l.msg === "sync finished")).toBe(true)
      })
  )

  it.effect("a user whose ~/.ssh is there is fetched before the thorough checks; one without it is never fetched", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": `${K1}\n` })
      const calls: Array<string> = []
      const recording = Layer.effect(
        SshFiles.SshFiles,
        Effect.map(SshFiles.SshFiles, (files) =>
          SshFiles.SshFiles.of({
            ...files,
            open: (account) => Effect.suspend(() => (calls.push(`open ${account.name}`), files.open(account)))
          }))
      ).pipe(Layer.provide(SshFiles.layerMemory(w.fs)))
      const fetching = Layer.succeed(KeySource.KeySource, {
        fetch: (source) => Effect.sync(() => (calls.push(`fetch ${source.url}`), `${K1}\n`))
      })
      w.fs.dirs.delete("/home/bob/.ssh")
      const cfg = config({
        users: [
          { username: "alice", sources: [{ url: "https://a.example/keys" }] },
          { username: "bob", sources: [{ url: "https://b.example/keys" }] }
        ]
      })
      const summary = yield* run(w, cfg, { concurrency: 1 }, Layer.merge(recording, fetching))
      expect(summary.outcomes.map((o) => o._tag)).toEqual(["Updated", "Skipped"])
      expect(calls).toEqual(["fetch https://a.example/keys", "open alice", "open bob"])
    }))

  it.effect("when the thorough checks refuse a user whose source also failed, the refusal is what is reported", () =>
    Effect.gen(function*() {
      const w = world({ "https://a.example/keys": { status: 500 } })
      const refusing = Layer.effect(
        SshFiles.SshFiles,
        Effect.map(SshFiles.SshFiles, (files) =>
          SshFiles.SshFiles.of({
            ...files,
            open: (account) =>
              new UnsafePath({ user: account.name, path: "/home/alice/.ssh", reason: "it is a symbolic link" })
          }))
      ).pipe(Layer.provide(SshFiles.layerMemory(w.fs)))
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://a.example/keys" }] }] })
      const summary = yield* run(w, cfg, {}, refusing)
      expect(summary.outcomes).toMatchObject([{ _tag: "Failed", error: { _tag: "UnsafePath" } }])
      // Only the refusal is reported: the source's failure is not news for a user that is refused anyway.
      const errors = w.logs.filter((l) => l.level === "ERROR" && l.msg !== "sync finished").map((l) => l.msg)
      expect(errors).toEqual([
        "user not synced, authorized_keys left untouched: refusing to use /home/alice/.ssh: it is a symbolic link"
      ])
    }))

  it.effect("a source whose fetch is interrupted from elsewhere fails that user only; the run still ends with a summary", () =>
    Effect.gen(function*() {
      const w = world({})
      const interrupted = Layer.succeed(KeySource.KeySource, {
        fetch: (source) => source.url.includes("cut") ? Effect.interrupt : Effect.succeed(`${K2}\n`)
      })
      const cfg = config({
        users: [
          { username: "alice", sources: [{ url: "https://fine.example/a" }, { url: "https://cut.example/keys" }] },
          { username: "bob", sources: [{ url: "https://fine.example/keys" }] }
        ]
      })
      const summary = yield* run(w, cfg, {}, interrupted)
      expect(summary.outcomes.map((o) => o._tag)).toEqual(["Failed", "Updated"])
      expect(
        w.logs.some((l) =>
          l.level === "ERROR" && l.msg === "source https://cut.example/keys: the fetch was interrupted"
        )
      ).toBe(true)
      expect(w.fs.files.has("/home/alice/.ssh/authorized_keys")).toBe(false)
    }))

  it.effect("a timed-out source is reported with its timeout", () =>
    Effect.gen(function*() {
      const w = world({
        "https://slow.example/keys": new SourceTimeout({ url: "https://slow.example/keys", timeoutSeconds: 3 })
      })
      const cfg = config({ users: [{ username: "alice", sources: [{ url: "https://slow.example/keys" }] }] })
      const summary = yield* run(w, cfg)
      const outcome = summary.outcomes[0]
      expect(outcome?._tag === "Failed" && outcome.error.message).toBe(
        "source https://slow.example/keys: no complete answer within 3s (timeout_seconds)"
      )
    }))
})

describe("accounts sharing one home", () => {
  it.effect("are both refused, and the shared file is not touched", () =>
    Effect.gen(function*() {
      const w = world({})
      const app1 = { name: "app1", uid: 4001, gid: 4001, home: "/srv/app" }
      const app2 = { name: "app2", uid: 4002, gid: 4002, home: "/srv/app/" }
      const app3 = { name: "app3", uid: 4003, gid: 4003, home: "/srv/app3" }
      w.fs.mkdir("/srv/app/.ssh", app1).mkdir("/srv/app3/.ssh", app3)
      w.fs.writeFile("/srv/app/.ssh/authorized_keys", `${LOCAL}\n`, app1)
      const cfg = config({
        users: ["app1", "app2", "app3"].map((username) => ({ username, sources: [{ url: "https://one.example/k" }] }))
      })
      const summary = yield* run(
        w,
        cfg,
        { concurrency: 2 },
        Layer.merge(Accounts.layerTest([app1, app2, app3]), KeySource.layerTest({ "https://one.example/k": `${K1}\n` }))
      )
      expect(summary.outcomes.map((o) => [o.user, o._tag])).toEqual([["app1", "Failed"], ["app2", "Failed"], [
        "app3",
        "Updated"
      ]])
      const first = summary.outcomes[0]
      expect(first?._tag === "Failed" && first.error.message).toBe(
        "refusing account \"app1\": its home /srv/app is also the home of app2"
      )
      expect(w.fs.read("/srv/app/.ssh/authorized_keys")).toBe(`${LOCAL}\n`)
      expect(summary.exitCode).toBe(1)
    }))
  it.effect("without a .ssh in the shared home (or without the home), both are skipped as the Go original skips them", () =>
    Effect.gen(function*() {
      const w = world({})
      const app1 = { name: "app1", uid: 4001, gid: 4001, home: "/srv/app" }
      const app2 = { name: "app2", uid: 4002, gid: 4002, home: "/srv/app" }
      const svc1 = { name: "svc1", uid: 4004, gid: 4004, home: "/nonexistent" }
      const svc2 = { name: "svc2", uid: 4005, gid: 4005, home: "/nonexistent" }
      const rooted = { name: "rooted", uid: 4006, gid: 4006, home: "/" }
      w.fs.mkdir("/srv/app", app1)
      const cfg = config({
        users: ["app1", "app2", "svc1", "svc2", "rooted"].map((username) => ({
          username,
          sources: [{ url: "https://one.example/k" }]
        }))
      })
      const summary = yield* run(
        w,
        cfg,
        { concurrency: 2 },
        Layer.merge(
          Accounts.layerTest([app1, app2, svc1, svc2, rooted]),
          KeySource.layerTest({ "https://one.example/k": `${K1}\n` })
        )
      )
      expect(summary.outcomes.map((o) => [o.user, o._tag])).toEqual([
        ["app1", "Skipped"],
        ["app2", "Skipped"],
        ["svc1", "Skipped"],
        ["svc2", "Skipped"],
        ["rooted", "Skipped"]
      ])
      expect(summary.exitCode).toBe(0)
      expect(w.fs.writes).toEqual([])
    }))

  it.effect("a home of / with a .ssh is still refused", () =>
    Effect.gen(function*() {
      const w = world({})
      const rooted = { name: "rooted", uid: 4006, gid: 4006, home: "/" }
      w.fs.mkdir("/.ssh", rooted)
      const cfg = config({ users: [{ username: "rooted", sources: [{ url: "https://one.example/k" }] }] })
      const summary = yield* run(
        w,
        cfg,
        { concurrency: 1 },
        Layer.merge(Accounts.layerTest([rooted]), KeySource.layerTest({ "https://one.example/k": `${K1}\n` }))
      )
      const only = summary.outcomes[0]
      expect(only?._tag === "Failed" && only.error.message).toBe("refusing account \"rooted\": its home directory is /")
      expect(summary.exitCode).toBe(1)
    }))
})

describe("parallelism (deterministic, on the TestClock)", () => {
  // Each source answers after one (virtual) second. A sync that waited for them one after the other could not be
  // done after one second; a parallel one is.
  const slowSources = (started: Ref.Ref<number>) =>
    Layer.succeed(KeySource.KeySource, {
      fetch: (source) =>
        Ref.update(started, (n) => n + 1).pipe(
          Effect.zipRight(Effect.sleep("1 second")),
          Effect.as(`ssh-ed25519 AAAA${source.url.replace(/\W/g, "")} k\n`)
        )
    })

  /** Let forked fibers run until `count` fetches have started (and so registered their sleeps). */
  const untilStarted = (started: Ref.Ref<number>, count: number) =>
    Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))).pipe(
      Effect.zipRight(Ref.get(started)),
      Effect.repeat({ until: (n) => n >= count, times: 2000 })
    )

  it.effect("all sources of a user, and users up to --concurrency, are fetched at the same time", () =>
    Effect.gen(function*() {
      const w = world({})
      const started = yield* Ref.make(0)
      const users = Array.from(
        { length: 8 },
        (_, i) => ({ name: `u${i}`, uid: 2000 + i, gid: 2000 + i, home: `/home/u${i}` })
      )
      for (const u of users) w.fs.mkdir(`${u.home}/.ssh`, u)
      const cfg = config({
        users: users.map((u) => ({
          username: u.name,
          sources: [1, 2, 3].map((n) => ({ url: `https://s${n}.example/${u.name}` }))
        }))
      })
      const fiber = yield* run(w, cfg, { concurrency: 8 }, Layer.merge(Accounts.layerTest(users), slowSources(started)))
        .pipe(
          Effect.fork
        )
      yield* untilStarted(started, 24)
      // Before any virtual time has passed, every one of the 24 requests is already in flight.
      expect(yield* Ref.get(started)).toBe(24)
      yield* TestClock.adjust("1 second")
      const summary = yield* Fiber.join(fiber)
      expect(summary.counts.Updated).toBe(8)
    }))

  it.effect("a user with 20 sources: 16 are fetched at once, then the rest; the file keeps config order", () =>
    Effect.gen(function*() {
      const w = world({})
      const started = yield* Ref.make(0)
      const alice = { name: "alice", uid: 2000, gid: 2000, home: "/home/alice" }
      w.fs.mkdir(`${alice.home}/.ssh`, alice)
      const urls = Array.from({ length: 20 }, (_, i) => `https://s${i}.example/alice`)
      const cfg = config({ users: [{ username: "alice", sources: urls.map((url) => ({ url })) }] })
      const fiber = yield* run(
        w,
        cfg,
        { concurrency: 1 },
        Layer.merge(Accounts.layerTest([alice]), slowSources(started))
      ).pipe(
        Effect.fork
      )
      yield* untilStarted(started, 16)
      expect(yield* Ref.get(started)).toBe(16)
      yield* TestClock.adjust("1 second")
      yield* untilStarted(started, 20)
      expect(yield* Ref.get(started)).toBe(20)
      yield* TestClock.adjust("1 second")
      const summary = yield* Fiber.join(fiber)
      expect(summary.counts.Updated).toBe(1)
      const file = w.fs.read("/home/alice/.ssh/authorized_keys") ?? ""
      const order = [...file.matchAll(/^# Source: (\S+)$/gm)].map((m) => m[1])
      expect(order).toEqual(urls)
    }))

  it.effect("a slow source holds one of the 16 slots, not the others: the 17th starts when any one is done", () =>
    Effect.gen(function*() {
      const w = world({})
      const started = yield* Ref.make<Array<string>>([])
      const alice = { name: "alice", uid: 2000, gid: 2000, home: "/home/alice" }
      w.fs.mkdir(`${alice.home}/.ssh`, alice)
      const urls = Array.from({ length: 17 }, (_, i) => `https://s${i}.example/alice`)
      const sources = Layer.succeed(KeySource.KeySource, {
        fetch: (source) =>
          Ref.update(started, (list) => [...list, source.url]).pipe(
            Effect.zipRight(Effect.sleep(source.url === urls[0] ? "10 seconds" : "1 second")),
            Effect.as(`ssh-ed25519 AAAA${source.url.replace(/\W/g, "")} k\n`)
          )
      })
      const cfg = config({ users: [{ username: "alice", sources: urls.map((url) => ({ url })) }] })
      const fiber = yield* run(w, cfg, { concurrency: 1 }, Layer.merge(Accounts.layerTest([alice]), sources)).pipe(
        Effect.fork
      )
      const count = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))).pipe(
        Effect.zipRight(Ref.get(started)),
        Effect.map((list) => list.length)
      )
      yield* Effect.repeat(count, { until: (n) => n >= 16, times: 2000 })
      expect(yield* count).toBe(16)
      yield* TestClock.adjust("1 second")
      yield* Effect.repeat(count, { until: (n) => n >= 17, times: 2000 })
      expect(yield* Ref.get(started)).toEqual(urls)
      yield* TestClock.adjust("9 seconds")
      const summary = yield* Fiber.join(fiber)
      expect(summary.counts.Updated).toBe(1)
    }))

  it.effect("--concurrency 1 syncs users one after the other", () =>
    Effect.gen(function*() {
      const w = world({})
      const started = yield* Ref.make(0)
      const cfg = config({
        users: ["alice", "bob"].map((name) => ({ username: name, sources: [{ url: `https://s.example/${name}` }] }))
      })
      const fiber = yield* run(w, cfg, { concurrency: 1 }, slowSources(started)).pipe(Effect.fork)
      yield* untilStarted(started, 2)
      expect(yield* Ref.get(started)).toBe(1)
      yield* TestClock.adjust("1 second")
      yield* untilStarted(started, 2)
      expect(yield* Ref.get(started)).toBe(2)
      expect((yield* Fiber.poll(fiber))._tag).toBe("None")
      yield* TestClock.adjust("1 second")
      const summary = yield* Fiber.join(fiber)
      expect(summary.counts.Updated).toBe(2)
    }))
})

describe("hardening in the pipeline", () => {
  const url = "https://a.example/keys"
  const one = (extra: Record<string, unknown> = {}, policy: Record<string, unknown> = {}) =>
    config({
      policy: { backup_enabled: false, ...policy },
      users: [{ username: "alice", sources: [{ url }], ...extra }]
    })
  const keysOf = (w: World) =>
    (w.fs.read("/home/alice/.ssh/authorized_keys") ?? "").split("\n").filter((l) => l.startsWith("ssh-"))

  it.effect("revokes over three runs, even a key the user moved under # Local (preserved)", () =>
    Effect.gen(function*() {
      const responses: Record<string, KeySource.CannedResponse> = { [url]: `${K1}\n${K2}\n` }
      const w = world(responses, (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", `${LOCAL}\n`, alice))
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K1, K2, LOCAL])
      expect([...(w.records.get("alice")?.identities ?? [])].sort()).toEqual(
        [K1, K2].map((k) => k.split(" ").slice(0, 2).join(" ")).sort()
      )

      responses[url] = `${K1}\n`
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K1, LOCAL])
      const revoked = w.logs.filter((l) => l.msg === "revoked key: no source provides it any more")
      expect(revoked.map((l) => Object.fromEntries(l.fields)["key"])).toEqual([K2])

      // The user moves K1 into the local section; the source then drops it.
      const file = w.fs.read("/home/alice/.ssh/authorized_keys")!
      w.fs.writeFile("/home/alice/.ssh/authorized_keys", file.replace(`${K1}\n`, "") + `${K1}\n`, alice)
      responses[url] = `${K3}\n`
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K3, LOCAL])
    }))

  it.effect("a dry run says a key would be revoked, never that it was", () =>
    Effect.gen(function*() {
      // Found in review: the dry run logged "revoked key: …", which an audit grep takes for a revocation.
      const responses: Record<string, KeySource.CannedResponse> = { [url]: `${K1}\n${K2}\n` }
      const w = world(responses)
      yield* run(w, one())
      responses[url] = `${K1}\n`
      const from = w.logs.length
      yield* run(w, one(), { dryRun: true })
      const msgs = w.logs.slice(from).map((l) => l.msg)
      expect(msgs.filter((m) => m.startsWith("revoked key"))).toEqual([])
      expect(msgs.filter((m) => m === "dry run: would revoke key: no source provides it any more")).toHaveLength(1)
      expect(keysOf(w)).toEqual([K1, K2])
    }))

  it.effect("a source that sends only an error page with status 200 revokes nothing; its next real answer does", () =>
    Effect.gen(function*() {
      // Found in review: the page counted as an empty key list, so that source's keys were revoked, exit 0, and only
      // the lockout guard (an empty file) could stop it.
      const other = "https://b.example/keys"
      const two = config({
        policy: { backup_enabled: false },
        users: [{ username: "alice", sources: [{ url }, { url: other }] }]
      })
      const responses: Record<string, KeySource.CannedResponse> = { [url]: `${K1}\n`, [other]: `${K2}\n` }
      const w = world(responses)
      yield* run(w, two)
      expect(keysOf(w)).toEqual([K1, K2])
      const revoked = () => w.logs.filter((l) => l.msg === "revoked key: no source provides it any more")

      responses[url] = "<html>\n<body>503 Service Temporarily Unavailable</body>\n</html>\n"
      const held = yield* run(w, two)
      expect(held.exitCode).toBe(0)
      // K1 stays, as a local line (as the Go original would keep it), and stays recorded as the tool's.
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toContain(`# Local (preserved)\n${K1}\n`)
      expect(revoked()).toEqual([])
      const warning = w.logs.filter((l) => l.msg.startsWith("keys no source provides were kept"))
      expect(warning.map((l) => Object.fromEntries(l.fields))).toEqual([
        expect.objectContaining({ keys: 1, source: url })
      ])
      expect([...(w.records.get("alice")?.identities ?? [])].sort()).toEqual(
        [K1, K2].map((k) => k.split(" ").slice(0, 2).join(" ")).sort()
      )

      responses[url] = `${K3}\n`
      yield* run(w, two)
      expect(keysOf(w)).toEqual([K3, K2])
      expect(revoked().map((l) => Object.fromEntries(l.fields)["key"])).toEqual([K1])
    }))

  it.effect("a rewrite the shrink guard refuses, or that fails, logs no key as revoked: both are still in the file", () =>
    Effect.gen(function*() {
      const responses: Record<string, KeySource.CannedResponse> = { [url]: `${K1}\n${K2}\n` }
      const w = world(responses)
      yield* run(w, one())
      const synced = w.fs.read("/home/alice/.ssh/authorized_keys")
      const revokedSince = (from: number) =>
        w.logs.slice(from).filter((l) => l.msg === "revoked key: no source provides it any more")

      responses[url] = `${K3}\n`
      let from = w.logs.length
      const refused = yield* run(w, one({}, { max_removed_keys: 1 }))
      expect(refused.outcomes[0]?._tag === "Failed" && refused.outcomes[0].error._tag).toBe("GuardRefused")
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(synced)
      expect(revokedSince(from)).toEqual([])

      w.fs.failWritesWith = "ENOSPC"
      from = w.logs.length
      const failed = yield* run(w, one())
      expect(failed.outcomes[0]?._tag).toBe("Failed")
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(synced)
      expect(revokedSince(from)).toEqual([])

      w.fs.failWritesWith = undefined
      from = w.logs.length
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K3])
      expect(revokedSince(from).map((l) => Object.fromEntries(l.fields)["key"])).toEqual([K1, K2])
    }))

  it.effect("the user's own line of a key a source serves (other comment, options) stays run after run", () =>
    Effect.gen(function*() {
      const blob = K1.split(" ").slice(0, 2).join(" ")
      const mine = `${blob} me@laptop`
      const restricted = `from="10.0.0.0/8" ${blob} jump-host`
      const responses: Record<string, KeySource.CannedResponse> = { [url]: `${K1}\n` }
      const w = world(
        responses,
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", `${mine}\n${restricted}\n`, alice)
      )
      const first = yield* run(w, one())
      expect(first.outcomes[0]?._tag).toBe("Updated")
      expect(keysOf(w)).toEqual([K1, mine])
      expect((w.fs.read("/home/alice/.ssh/authorized_keys") ?? "").includes(restricted)).toBe(true)
      expect([...(w.records.get("alice")?.lines ?? [])]).toEqual([K1])

      // Nothing changed anywhere: nothing to rewrite (it used to drop both lines on this run).
      const second = yield* run(w, one())
      expect(second.outcomes[0]?._tag).toBe("Unchanged")

      // The source changes its comment: its old line is the tool's and goes; the user's lines stay.
      const renamed = `${blob} one@rotated`
      responses[url] = `${renamed}\n`
      yield* run(w, one())
      const body = w.fs.read("/home/alice/.ssh/authorized_keys") ?? ""
      expect(body).toContain(`# Source: ${url}\n${renamed}\n`)
      expect(body).not.toContain(K1)
      expect(body).toContain(`# Local (preserved)\n${mine}\n${restricted}\n`)

      // The source drops the key: every line of it goes, the user's included.
      responses[url] = `${K2}\n`
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K2])
    }))

  it.effect("a record from before lines were kept drops every other line of a managed key, then keeps lines", () =>
    Effect.gen(function*() {
      const blob = K1.split(" ").slice(0, 2).join(" ")
      const w = world(
        { [url]: `${K1}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", `${K1}\n${blob} stale-comment\n`, alice),
        { alice: [blob] }
      )
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K1])
      expect(w.records.get("alice")).toEqual({ identities: new Set([blob]), lines: new Set([K1]) })
    }))

  it.effect("a first write that fails leaves a record of what the tool provides; the markers' old line is still replaced", () =>
    Effect.gen(function*() {
      const blob = K1.split(" ").slice(0, 2).join(" ")
      const stale = `${blob} old-comment`
      const goFile = `${header}\n# Source: ${url}\n${stale}\n${K2}\n\n# Local (preserved)\n${LOCAL}\n`
      const w = world({ [url]: `${K1}\n` }, (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", goFile, alice))
      w.fs.failWritesWith = "ENOSPC"
      const first = yield* run(w, one())
      expect(first.outcomes[0]?._tag).toBe("Failed")
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(goFile)

      w.fs.failWritesWith = undefined
      yield* run(w, one())
      // The old line of K1 was the tool's (a marker said so): replaced by the source's, not kept as local. K2, under
      // a marker but provided by no source, was never recorded as the tool's (see the first-run test below): it stays.
      expect(keysOf(w)).toEqual([K1, K2, LOCAL])
    }))

  it.effect("a forged # Source: marker decides nothing once a record exists", () =>
    Effect.gen(function*() {
      const w = world({ [url]: `${K1}\n` }, (fs) =>
        fs.writeFile(
          "/home/alice/.ssh/authorized_keys",
          `${header}\n# Source: https://evil.example\n${LOCAL}\n`,
          alice
        ), {
        alice: [K1.split(" ").slice(0, 2).join(" ")]
      })
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K1, LOCAL])
    }))

  it.effect("without a record, a Go-written file's # Source: keys no source provides are kept, with a warning each", () =>
    Effect.gen(function*() {
      // Found in review: a key appended by hand (`echo … >> authorized_keys`) after the Go original's last section
      // sits under its `# Source:` line, and the first run used to revoke it.
      const goFile = `${header}\n# Source: ${url}\n${K1}\n${K2}\n\n# Local (preserved)\n${LOCAL}\n`
      const w = world({ [url]: `${K1}\n` }, (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", goFile, alice))
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K1, K2, LOCAL])
      expect(w.logs.filter((l) => l.msg.startsWith("revoked key"))).toEqual([])
      const kept = w.logs.filter((l) => l.msg.startsWith("kept a key under a # Source: line that no source provides"))
      expect(kept.map((l) => [l.level, Object.fromEntries(l.fields)["key"]])).toEqual([["WARN", K2]])
      // Not recorded as the tool's: it is a local key from now on, kept run after run without a word.
      expect([...(w.records.get("alice")?.identities ?? [])]).toEqual([K1.split(" ").slice(0, 2).join(" ")])
      const from = w.logs.length
      yield* run(w, one())
      expect(keysOf(w)).toEqual([K1, K2, LOCAL])
      expect(w.logs.slice(from).filter((l) => l.level === "WARN")).toEqual([])
    }))

  it.effect("pinned keys come first and survive a source that returns nothing", () =>
    Effect.gen(function*() {
      const w = world({ [url]: "" }, (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", `${K1}\n`, alice))
      const summary = yield* run(w, one({ pinned_keys: [K3] }, { preserve_local_keys: false, pinned_keys: [K2] }))
      expect(summary.exitCode).toBe(0)
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(`${header}\n# Pinned (break-glass)\n${K2}\n${K3}\n`)
    }))

  it.effect("a pinned key with a non-ASCII comment is written as its UTF-8 bytes, and a second run changes nothing", () =>
    Effect.gen(function*() {
      // Keys are byte strings everywhere else (sources, the file): a pin from the config is text and must be converted,
      // or "Ł" (U+0141) is written as the one byte 0x41 and the read-back check fails the user on every run.
      const pin = `${K2.split(" ").slice(0, 2).join(" ")} Łukasz break-glass`
      const w = world({ [url]: `${K1}\n` })
      const first = yield* run(w, one({}, { pinned_keys: [pin] }))
      expect(first.outcomes[0]?._tag).toBe("Updated")
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(
        `${header}\n# Pinned (break-glass)\n${textToBytes(pin)}\n\n# Source: ${url}\n${K1}\n`
      )
      const second = yield* run(w, one({}, { pinned_keys: [pin] }))
      expect(second.outcomes[0]?._tag).toBe("Unchanged")
    }))

  it.effect("the lockout guard refuses to empty a file, in a dry run too; allow_empty lets it", () =>
    Effect.gen(function*() {
      const before = `${K1}\n`
      const w = world({ [url]: "" }, (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", before, alice))
      for (const dryRun of [false, true]) {
        const summary = yield* run(w, one({}, { preserve_local_keys: false }), { dryRun })
        const outcome = summary.outcomes[0]
        expect(outcome?._tag === "Failed" && outcome.error._tag).toBe("GuardRefused")
        expect(summary.exitCode).toBe(1)
        expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(before)
      }
      yield* run(w, one({}, { preserve_local_keys: false, allow_empty: true }))
      expect(keysOf(w)).toEqual([])
    }))

  it.effect("the shrink guard refuses mass removals", () =>
    Effect.gen(function*() {
      const before = `${K1}\n${K2}\n${K3}\n`
      const w = world({ [url]: `${K1}\n` }, (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", before, alice))
      const summary = yield* run(w, one({}, { preserve_local_keys: false, max_removed_keys: 1 }))
      const outcome = summary.outcomes[0]
      expect(outcome?._tag === "Failed" && outcome.error.message).toBe(
        "shrink guard refused to rewrite /home/alice/.ssh/authorized_keys: 2 of 3 keys would be removed, more than policy.max_removed_keys (1)"
      )
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(before)
    }))

  // In a file root owns, no line is the user's own doing: every key counts, whatever the record says was managed.
  it.effect("the shrink guard counts every key of a root-owned file, not only the record's", () =>
    Effect.gen(function*() {
      const before = `${K1}\n${K2}\n${K3}\n`
      const root = { uid: 0, gid: 0 }
      const w = world(
        { [url]: `${K1}\n` },
        (fs) => fs.writeFile("/home/alice/.ssh/authorized_keys", before, root),
        { alice: [keyIdentity(K1)] }
      )
      const summary = yield* run(w, one({}, { preserve_local_keys: false, max_removed_keys: 1 }))
      const outcome = summary.outcomes[0]
      expect(outcome?._tag === "Failed" && outcome.error.message).toBe(
        "shrink guard refused to rewrite /home/alice/.ssh/authorized_keys: 2 of 3 keys would be removed, more than policy.max_removed_keys (1)"
      )
      expect(w.fs.read("/home/alice/.ssh/authorized_keys")).toBe(before)
    }))

  it.effect("refuses an account whose name holds a slash, before any lookup", () =>
    Effect.gen(function*() {
      const w = world({ [url]: `${K1}\n` })
      const summary = yield* run(
        w,
        config({ users: [{ username: "../alice", sources: [{ url }] }, { username: "bob", sources: [{ url }] }] })
      )
      expect(summary.outcomes.map((o) => o._tag)).toEqual(["Failed", "Updated"])
      const outcome = summary.outcomes[0]
      expect(outcome?._tag === "Failed" && outcome.error.message).toBe(
        "refusing account \"../alice\": the name contains a slash"
      )
    }))

  it.effect("removes leftover temp files of the tool's own pattern only, also when nothing else changes", () =>
    Effect.gen(function*() {
      const w = world(
        { [url]: `${K1}\n` },
        (fs) =>
          fs.writeFile("/home/alice/.ssh/.authkeysync_20200101_000000_abcdef", "partial", alice)
            .writeFile("/home/alice/.ssh/.authkeysync_other", "not ours", alice)
      )
      yield* run(w, one())
      expect(w.fs.list("/home/alice/.ssh")).toEqual([".authkeysync_other", "authorized_keys"])
      expect(w.logs.filter((l) => l.msg === "removed a temp file left by an earlier run")).toHaveLength(1)

      w.fs.writeFile("/home/alice/.ssh/.authkeysync_20200101_000000_ghijkl", "partial", alice)
      const again = yield* run(w, one())
      expect(again.counts.Unchanged).toBe(1)
      expect(w.fs.list("/home/alice/.ssh")).toEqual([".authkeysync_other", "authorized_keys"])

      w.fs.writeFile("/home/alice/.ssh/.authkeysync_20200101_000000_mnopqr", "partial", alice)
      yield* run(w, one(), { dryRun: true })
      expect(w.fs.list("/home/alice/.ssh")).toContain(".authkeysync_20200101_000000_mnopqr")
    }))
})
