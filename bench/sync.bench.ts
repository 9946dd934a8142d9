/**
 * `npm run bench`: N users x M sources against a local HTTP server that answers every request after a fixed latency,
 * run once with `--concurrency 1` and once with the default. Prints both wall times and the speed-up.
 *
 * Needs root (it creates N throwaway accounts with useradd and removes them afterwards).
 * Knobs: BENCH_USERS (200), BENCH_SOURCES (3), BENCH_LATENCY_MS (100), BENCH_MIN_SPEEDUP (20),
 * BENCH_NODE_ARGS (extra node flags for the CLI, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`), BENCH_REPEAT (runs of
 * the parallel mode, 5 by default: a one-second run moves with whatever else the machine does, so the median is
 * shown), BENCH_SEQUENTIAL_REPEAT (runs of the sequential mode, 1 by default: it takes 20 s and moves little),
 * BENCH_CONCURRENCY (the parallel run's --concurrency; default: the CLI's default), BENCH_VERBOSE=1 (every run's time).
 *
 * Beside the wall times it prints the parallel run's CPU time on its main thread and on its other threads (Linux,
 * from /proc, through bench/threadCpu.cjs): they move far less than wall time with the load on a shared machine. It
 * also says whether V8 used the build's code cache (bench/codeCacheStatus.cjs): V8 options the build did not use
 * (in BENCH_NODE_ARGS or NODE_OPTIONS) make V8 reject it, and each run then compiles the whole program.
 */
import { execFile, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import http from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)
const USERS = Number(process.env["BENCH_USERS"] ?? 200)
const SOURCES = Number(process.env["BENCH_SOURCES"] ?? 3)
const LATENCY_MS = Number(process.env["BENCH_LATENCY_MS"] ?? 100)
const MIN_SPEEDUP = Number(process.env["BENCH_MIN_SPEEDUP"] ?? 20)
const REPEAT = Math.max(1, Number(process.env["BENCH_REPEAT"] ?? 5))
const SEQUENTIAL_REPEAT = Math.max(1, Number(process.env["BENCH_SEQUENTIAL_REPEAT"] ?? 1))
const CONCURRENCY = process.env["BENCH_CONCURRENCY"]
const CLI = join(import.meta.dirname, "..", "dist", "authkeysync.mjs")
const THREAD_CPU = join(import.meta.dirname, "threadCpu.cjs")
const CODE_CACHE_STATUS = join(import.meta.dirname, "codeCacheStatus.cjs")
const NODE_ARGS = (process.env["BENCH_NODE_ARGS"] ?? "").split(" ").filter((a) => a !== "")

interface ThreadCpu {
  readonly main: number
  readonly other: number
}

const main = async () => {
  if (process.getuid?.() !== 0) {
    console.error("bench: needs root to create throwaway users (useradd); run it as root, e.g. in CI")
    process.exit(2)
  }
  if (!existsSync(CLI)) throw new Error(`bench: ${CLI} is missing; run npm run build`)

  let requests = 0
  const server = http.createServer((req, res) => {
    requests++
    const timer = setTimeout(() => {
      const body = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5${Buffer.from(req.url ?? "").toString("hex")} bench\n`
      // Like a static key file (or GitHub's .keys), with a Content-Length.
      res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) })
      res.end(body)
    }, LATENCY_MS)
    res.on("close", () => clearTimeout(timer))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port

  const root = await mkdtemp(join(tmpdir(), "aks-bench-"))
  const prefix = `aksb${Math.random().toString(36).slice(2, 6)}`
  const names = Array.from({ length: USERS }, (_, i) => `${prefix}${i}`)
  const created: Array<string> = []
  try {
    process.stdout.write(`creating ${USERS} throwaway users…\n`)
    for (const name of names) {
      const home = join(root, name)
      await run("useradd", ["-M", "-d", home, "-s", "/usr/sbin/nologin", name])
      created.push(name)
      const { stdout } = await run("id", ["-u", name])
      const uid = Number(stdout.trim())
      await mkdir(join(home, ".ssh"), { recursive: true, mode: 0o700 })
      await chown(home, uid, uid).catch(() => {})
      await chown(join(home, ".ssh"), uid, uid).catch(() => {})
    }
    const config = join(root, "config.yaml")
    const yaml = ["policy:", "  backup_enabled: false", `  state_dir: ${join(root, "state")}`, "users:"]
    for (const name of names) {
      yaml.push(`  - username: ${name}`, "    sources:")
      for (let s = 0; s < SOURCES; s++) yaml.push(`      - url: http://127.0.0.1:${port}/${name}/${s}`)
    }
    await writeFile(config, yaml.join("\n") + "\n")

    const cpuFile = join(root, "cpu.json")
    const timeRun = async (args: ReadonlyArray<string>) => {
      for (const name of names) await rm(join(root, name, ".ssh", "authorized_keys"), { force: true })
      await rm(cpuFile, { force: true })
      requests = 0
      const started = process.hrtime.bigint()
      const code = await new Promise<number>((resolve) => {
        const quiet = process.env["BENCH_LOG"] === "1" ? [] : ["--quiet"]
        const child = spawn(process.execPath, [
          "--require",
          THREAD_CPU,
          ...NODE_ARGS,
          CLI,
          "--config",
          config,
          ...quiet,
          ...args
        ], {
          stdio: "inherit",
          env: { ...process.env, BENCH_CPU_FILE: cpuFile }
        })
        child.on("exit", (c) => resolve(c ?? 1))
      })
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      const cpu = await readFile(cpuFile, "utf8").then((text) => JSON.parse(text) as ThreadCpu, () => undefined)
      if (process.env["BENCH_VERBOSE"] === "1") {
        const threads = cpu === undefined
          ? ""
          : ` (CPU: main thread ${(cpu.main / 1000).toFixed(2)} s, others ${(cpu.other / 1000).toFixed(2)} s)`
        console.log(`  run ${args.join(" ") || "default"}: ${seconds.toFixed(2)} s${threads}`)
      }
      if (code !== 0) throw new Error(`bench: authkeysync ${args.join(" ")} exited with ${code}`)
      if (requests !== USERS * SOURCES) throw new Error(`bench: expected ${USERS * SOURCES} requests, saw ${requests}`)
      return { seconds, cpu }
    }

    const middle = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
    const median = async (args: ReadonlyArray<string>, repeat: number) => {
      const runs: Array<{ seconds: number; cpu: ThreadCpu | undefined }> = []
      for (let i = 0; i < repeat; i++) runs.push(await timeRun(args))
      const cpus = runs.flatMap((run) => (run.cpu === undefined ? [] : [run.cpu]))
      return {
        seconds: middle(runs.map((run) => run.seconds)),
        cpu: cpus.length === 0
          ? undefined
          : { main: middle(cpus.map((c) => c.main)), other: middle(cpus.map((c) => c.other)) }
      }
    }
    // With V8 options the build did not use, every timed run compiles the whole program: say so before comparing.
    const { stderr: cacheStatus } = await run(process.execPath, [
      "--require",
      CODE_CACHE_STATUS,
      ...NODE_ARGS,
      CLI,
      "--version"
    ])
    const codeCache = /code cache: (\w+)/.exec(cacheStatus)?.[1] ?? "unknown"
    if (codeCache !== "accepted") {
      console.log(
        `warning: V8 did not use the build's code cache (${codeCache}): V8 options in BENCH_NODE_ARGS or NODE_OPTIONS`
      )
      console.log(`  that the build did not use make every run compile the program; for a fair comparison build with`)
      console.log(`  AUTHKEYSYNC_CODE_CACHE_NODE_ARGS set to the same V8 options`)
    }
    const sequential = (await median(["--concurrency", "1"], SEQUENTIAL_REPEAT)).seconds
    const parallelRuns = await median(CONCURRENCY === undefined ? [] : ["--concurrency", CONCURRENCY], REPEAT)
    const parallel = parallelRuns.seconds
    const speedup = sequential / parallel
    console.log("")
    console.log(
      `${USERS} users x ${SOURCES} sources, ${LATENCY_MS} ms per request (median of ${SEQUENTIAL_REPEAT} and ${REPEAT} runs)`
    )
    console.log(`  --concurrency 1   ${sequential.toFixed(2)} s`)
    console.log(
      `  ${(CONCURRENCY === undefined ? "default" : `--concurrency ${CONCURRENCY}`).padEnd(18)}${parallel.toFixed(2)} s`
    )
    if (parallelRuns.cpu !== undefined) {
      const { main, other } = parallelRuns.cpu
      console.log(
        `    CPU (medians)   main thread ${(main / 1000).toFixed(2)} s, other threads ${(other / 1000).toFixed(2)} s`
      )
    }
    console.log(`  code cache        ${codeCache}`)
    console.log(`  speed-up          ${speedup.toFixed(1)}x (required: ${MIN_SPEEDUP}x)`)
    if (speedup < MIN_SPEEDUP) process.exitCode = 1
  } finally {
    server.close()
    for (const name of created) await run("userdel", [name]).catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}

await main()
