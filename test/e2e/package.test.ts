/**
 * The package as another project installs it: `npm pack`, then `npm install` of the tarball into a throwaway consumer
 * project (offline, from the npm cache the project's own install filled). The consumer's program imports
 * "authkeysync", syncs one account against a real HTTP server on 127.0.0.1 with the package's live HTTP transport, and
 * must share the consumer's copy of `effect` (a second copy would make the two programs' services and fibers
 * strangers to each other).
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { assertBuilt, REPO_ROOT } from "../support/cli.js"
import { runProcess } from "../support/process.js"

const run = promisify(execFile)
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPkgConsumer consumer@test"

const manifest = JSON.parse(await fs.readFile(path.join(REPO_ROOT, "package.json"), "utf8")) as {
  readonly version: string
  readonly dependencies: Record<string, string>
  readonly peerDependencies: Record<string, string>
  readonly devDependencies: Record<string, string>
}

const CONSUMER = `
import { Effect, Layer, Schema } from "effect"
import { Accounts, bytesToText, Config, HttpTransport, KeySource, ManagedKeys, RandomId, runAll, SshFiles } from "authkeysync"

const memory = new SshFiles.MemoryFs().mkdir("/srv/deploy/.ssh", { uid: 3000, gid: 3000 })
const services = Layer.mergeAll(
  KeySource.layer.pipe(Layer.provide(HttpTransport.layer)),
  SshFiles.layerMemory(memory),
  Accounts.layerTest([{ name: "deploy", uid: 3000, gid: 3000, home: "/srv/deploy" }]),
  ManagedKeys.layerMemory(),
  RandomId.layer
)
const program = Effect.gen(function*() {
  const config = yield* Schema.decodeUnknown(Config)({ users: [{ username: "deploy", sources: [{ url: process.argv[2] }] }] })
  return yield* runAll(config, { dryRun: false, concurrency: 2, build: { version: "v9", commit: "c", built: "b" } })
}).pipe(Effect.provide(services))

const summary = await Effect.runPromise(program)
process.stdout.write(JSON.stringify({ exitCode: summary.exitCode, file: bytesToText(memory.read("/srv/deploy/.ssh/authorized_keys") ?? "") }))
`

const node = (cwd: string, args: ReadonlyArray<string>) => runProcess(process.execPath, args, { cwd })

describe("the published package", () => {
  let dir = ""
  let consumer = ""
  let server: http.Server | undefined

  beforeAll(async () => {
    assertBuilt()
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-package-"))
    consumer = path.join(dir, "consumer")
    await fs.mkdir(consumer)
    const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: REPO_ROOT })
    const tarball = path.join(dir, stdout.trim().split("\n").at(-1)!)
    await fs.writeFile(
      path.join(consumer, "package.json"),
      JSON.stringify({
        name: "consumer",
        private: true,
        type: "module",
        // The consumer's own effect, as a project that already uses Effect has it; the peers it does not list
        // (@effect/platform-node) npm installs by itself.
        dependencies: {
          authkeysync: `file:${tarball}`,
          effect: manifest.devDependencies["effect"],
          "@effect/platform": manifest.devDependencies["@effect/platform"]
        }
      })
    )
    await fs.writeFile(path.join(consumer, "sync.mjs"), CONSUMER)
    await run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], {
      cwd: consumer
    }).catch((error: { stderr?: string }) => {
      throw new Error(
        `npm install --offline of the packed tarball failed (the npm cache lacks a package? run npm ci first): ${
          error.stderr ?? String(error)
        }`
      )
    })
  }, 120_000)

  afterAll(async () => {
    server?.close()
    if (dir !== "") await fs.rm(dir, { recursive: true, force: true })
  })

  it("declares Effect as a peer, so that a consumer's effect 3.x is the one the package uses", async () => {
    expect(manifest.peerDependencies).toEqual({
      "@effect/platform": expect.stringMatching(/^\^0\.\d+\.\d+$/),
      "@effect/platform-node": expect.stringMatching(/^\^0\.\d+\.\d+$/),
      effect: expect.stringMatching(/^\^3\.\d+\.\d+$/)
    })
    // Only what the library imports at run time is a dependency; the CLI's own (@effect/cli) are bundled into it.
    expect(Object.keys(manifest.dependencies).sort()).toEqual(["nanoid", "yaml"])
    const installed = path.join(consumer, "node_modules", "authkeysync")
    await expect(fs.stat(path.join(installed, "node_modules", "effect"))).rejects.toThrow(/ENOENT/)
    const resolved = await node(consumer, [
      "--input-type=module",
      "-e",
      `import { createRequire } from "node:module"; process.stdout.write(createRequire(${
        JSON.stringify(path.join(installed, "dist", "index.mjs"))
      }).resolve("effect"))`
    ])
    expect(resolved.stdout).toBe(path.join(consumer, "node_modules", "effect", "dist", "cjs", "index.js"))
    await expect(fs.stat(path.join(consumer, "node_modules", "@effect", "cli"))).rejects.toThrow(/ENOENT/)
    // What the README links to ships with it.
    for (const doc of ["README.md", "CHANGELOG.md", "SECURITY.md"]) {
      expect((await fs.stat(path.join(installed, doc))).isFile()).toBe(true)
    }
  })

  it("syncs a user from a real HTTP source through the installed library", async () => {
    const requests: Array<string> = []
    server = http.createServer((req, res) => {
      requests.push(`${req.method} ${req.url} ${req.headers["user-agent"]}`)
      res.writeHead(200, { "content-type": "text/plain" })
      res.end(`${KEY}\n`)
    })
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/deploy.keys`

    const result = await node(consumer, ["sync.mjs", url])
    expect(result.stderr).toBe("")
    expect(result.code).toBe(0)
    const { exitCode, file } = JSON.parse(result.stdout.slice(result.stdout.lastIndexOf("{\"exitCode\""))) as {
      exitCode: number
      file: string
    }
    expect(exitCode).toBe(0)
    expect(requests).toEqual(["GET /deploy.keys AuthKeySync"])
    expect(file.split("\n").slice(2, 4)).toEqual(["# Version:   v9", "# Commit:    c"])
    expect(file.endsWith(`# Source: ${url}\n${KEY}\n`)).toBe(true)
  })

  it("ships the CLI as one file that runs from the installed package", async () => {
    const result = await node(consumer, [path.join("node_modules", ".bin", "authkeysync"), "--version"])
    expect(result.code).toBe(0)
    expect(result.stdout.split("\n")[0]).toBe(`Version: v${manifest.version}`)
  })
})
