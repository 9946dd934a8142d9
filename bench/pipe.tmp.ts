import { Effect, Layer, Logger, LogLevel } from "effect"
import { decodeConfigValue } from "../src/pipeline/Config.js"
import { runAll } from "../src/pipeline/runAll.js"
import * as Accounts from "../src/services/Accounts.js"
import * as KeySource from "../src/services/KeySource.js"
import * as RandomId from "../src/services/RandomId.js"
import * as SshFiles from "../src/services/SshFiles.js"
const N = 200
const users = Array.from({ length: N }, (_, i) => ({ name: `u${i}`, uid: 1000 + i, gid: 1000 + i, home: `/h/u${i}` }))
const raw = { policy: { backup_enabled: false }, users: users.map((u) => ({ username: u.name, sources: [0, 1, 2].map((s) => ({ url: `http://x/${u.name}/${s}` })) })) }
const cfg = (decodeConfigValue("x", raw) as any).right.config
const responses: Record<string, string> = {}
for (const u of users) for (const s of [0, 1, 2]) responses[`http://x/${u.name}/${s}`] = `ssh-ed25519 AAAA${u.name}${s} c\n`
const once = async () => {
  const fs = new SshFiles.MemoryFs(); for (const u of users) fs.mkdir(`${u.home}/.ssh`, u)
  const layer = Layer.mergeAll(Accounts.layerTest(users), SshFiles.layerMemory(fs), KeySource.layerTest(responses), RandomId.layer, Logger.minimumLogLevel(LogLevel.Warning))
  const c = process.cpuUsage()
  await Effect.runPromise(runAll(cfg, { dryRun: false, concurrency: 64, build: { version: "v", commit: "c", built: "b" } }).pipe(Effect.provide(layer)))
  const u = process.cpuUsage(c); return (u.user + u.system) / 1000 / N
}
for (let i = 0; i < 4; i++) console.log("pipeline cpu per user ms", (await once()).toFixed(3))
