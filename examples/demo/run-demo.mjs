#!/usr/bin/env node
// `npm run demo`: authkeysync end to end, offline. A key server on 127.0.0.1 serves examples/demo/keys/*.keys.
//
// As root: a throwaway account is created, synced for real twice (the second run is "unchanged"), its
// authorized_keys and backup are shown, and the account is removed again.
// As another user: a --dry-run for your own account (nothing is written; needs ~/.ssh to exist).
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import http from "node:http"
import { tmpdir, userInfo } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const cli = join(here, "..", "..", "dist", "authkeysync.mjs")
if (!existsSync(cli)) {
  console.error("demo: dist/authkeysync.mjs is missing; run `npm run build` first")
  process.exit(1)
}

const server = http.createServer((req, res) => {
  const name = (req.url ?? "").replace(/^\//, "")
  const file = join(here, "keys", name)
  if (!/^[a-z]+\.keys$/.test(name) || !existsSync(file)) {
    res.writeHead(404).end("not found\n")
    return
  }
  res.writeHead(200, { "content-type": "text/plain" }).end(readFileSync(file))
})
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
const base = `http://127.0.0.1:${server.address().port}`
const work = mkdtempSync(join(tmpdir(), "authkeysync-demo-"))

const section = (title) => console.log(`\n\x1b[1m== ${title}\x1b[0m`)
const runCli = (args) => {
  const shown = ["authkeysync", ...args].join(" ")
  section(`$ ${shown}`)
  return new Promise((resolve) => {
    // Async spawn: the key server lives in this process and must keep answering.
    import("node:child_process").then(({ spawn }) => {
      const child = spawn(process.execPath, [cli, ...args], { stdio: "inherit" })
      child.on("exit", (code) => {
        console.log(`(exit code ${code})`)
        resolve(code)
      })
    })
  })
}
const writeConfig = (username) => {
  const path = join(work, "config.yaml")
  writeFileSync(
    path,
    [
      "policy:",
      "  backup_retention_count: 3",
      // The demo's own revocation record, not the host's /var/lib/authkeysync (removed with the rest below).
      `  state_dir: ${JSON.stringify(join(work, "state"))}`,
      "users:",
      `  - username: ${JSON.stringify(username)}`,
      "    sources:",
      `      - url: ${base}/alice.keys`,
      `      - url: ${base}/oncall.keys`,
      ""
    ].join("\n")
  )
  section(`config (${path})`)
  console.log(readFileSync(path, "utf8").trimEnd())
  return path
}

let exitCode = 0
let demoUser
try {
  if (process.getuid?.() === 0) {
    demoUser = `akdemo${Math.random().toString(36).slice(2, 7).replace(/[^a-z]/g, "a")}`
    const home = join(work, "home")
    execFileSync("useradd", ["-M", "-d", home, "-s", "/usr/sbin/nologin", demoUser])
    mkdirSync(join(home, ".ssh"), { recursive: true, mode: 0o700 })
    execFileSync("chown", ["-R", `${demoUser}:`, home])
    const keysFile = join(home, ".ssh", "authorized_keys")
    writeFileSync(
      keysFile,
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoKeyAddedByHandxxxxxxxxxxxxxxxxxxxxxxx break-glass@console\n"
    )
    execFileSync("chown", [`${demoUser}:`, keysFile])
    section(`throwaway account ${demoUser}, home ${home}, one key added by hand`)

    const config = writeConfig(demoUser)
    // The demo's own run lock too, not the host's /run/authkeysync.
    const lock = ["--lock-file", join(work, "run", "authkeysync.lock")]
    exitCode ||= await runCli(["--config", config, "--dry-run"])
    exitCode ||= await runCli(["--config", config, ...lock])
    section(`${keysFile} now`)
    console.log(readFileSync(keysFile, "utf8").trimEnd())
    section("backups")
    for (const name of readdirSync(join(home, ".ssh", "authorized_keys_backups"))) console.log(name)
    exitCode ||= await runCli(["--config", config, ...lock])
  } else {
    const me = userInfo().username
    if (!existsSync(join(userInfo().homedir, ".ssh"))) {
      console.log(`demo: ~/.ssh does not exist, so a dry run for ${me} would only be skipped.`)
      console.log("       Run the demo as root (it then uses a throwaway account) or create ~/.ssh first.")
    }
    const config = writeConfig(me)
    exitCode ||= await runCli(["--config", config, "--dry-run"])
  }
} finally {
  server.close()
  if (demoUser !== undefined) spawnSync("userdel", [demoUser])
  rmSync(work, { recursive: true, force: true })
}
process.exit(exitCode)
