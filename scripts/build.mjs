// Bundle the CLI into one file, dist/authkeysync.mjs, that runs with plain `node` and no node_modules.
// Version, commit and build date are baked in here; SOURCE_DATE_EPOCH makes the date reproducible.
import { build } from "esbuild"
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { brotliCompressSync, constants as zlib } from "node:zlib"
import { SCRIPT_NAME, scriptText } from "./program.mjs"

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
const commit = (() => {
  try {
    return execFileSync("git", ["rev-parse", "--short=12", "HEAD"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"]
    }).trim()
  } catch {
    return "unknown"
  }
})()
const epoch = process.env.SOURCE_DATE_EPOCH
const built = (epoch ? new Date(Number(epoch) * 1000) : new Date()).toISOString().replace(/\.\d{3}Z$/, "Z")
const outfile = "dist/authkeysync.mjs"

// The program: a CommonJS bundle, kept as text inside the shipped file (see scripts/program.mjs).
// What both builds share: Node 20, everything bundled, version, commit and build date baked in.
const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  define: {
    __AUTHKEYSYNC_VERSION__: JSON.stringify(`v${pkg.version}`),
    __AUTHKEYSYNC_COMMIT__: JSON.stringify(commit),
    __AUTHKEYSYNC_BUILT__: JSON.stringify(built)
  },
  logLevel: "warning"
}

const bundled = await build({
  ...common,
  entryPoints: ["src/cli.ts"],
  format: "cjs",
  write: false,
  outdir: "dist",
  minify: process.env.AUTHKEYSYNC_MINIFY !== "0",
  legalComments: "external"
})
const bundle = bundled.outputFiles.find((f) => f.path.endsWith(".js")).text
// Third-party license comments, when any bundled package has them.
const legal = bundled.outputFiles.find((f) => f.path.endsWith(".LEGAL.txt"))?.text

// V8's code cache for that program, made by running it once. Node 20 takes a code cache only for scripts compiled
// through node:vm, not for ES modules; with it each run skips compiling about 1 MB of JavaScript (about 0.1 s of CPU).
// Another Node version, or any V8 option (`--max-old-space-size` in NODE_OPTIONS included), rejects the cache, and
// the text is then compiled as usual. AUTHKEYSYNC_CODE_CACHE_NODE_ARGS makes the cache under given V8 options instead
// (space-separated), e.g. to compare a V8 flag fairly in `npm run bench`.
const codeCache = (() => {
  if (process.env.AUTHKEYSYNC_CODE_CACHE === "0") return undefined
  const nodeArgs = (process.env.AUTHKEYSYNC_CODE_CACHE_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== "")
  const dir = mkdtempSync(join(tmpdir(), "authkeysync-build-"))
  try {
    writeFileSync(join(dir, "authkeysync.cjs"), bundle)
    execFileSync(process.execPath, [
      ...nodeArgs,
      "scripts/code-cache.mjs",
      join(dir, "authkeysync.cjs"),
      join(dir, "cache")
    ], { stdio: "ignore" })
    return readFileSync(join(dir, "cache"))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})()

const program = scriptText(bundle)

// V8 checks only the length of the text a cache belongs to: the loader checks the text itself, so that an edited
// program (a hot fix of the same length) runs as written instead of as cached. Without a cache there is nothing to check.
// Shipped brotli-compressed: a third of the size, and Node reads and V8 scans a third as much text on every start,
// which saves more than the decompression costs.
const cachedData = codeCache === undefined
  ? "undefined"
  : `createHash("sha256").update(program).digest("hex") !== ${
    JSON.stringify(createHash("sha256").update(program).digest("hex"))
  } ? undefined :
  brotliDecompressSync(Buffer.from(${
    JSON.stringify(
      brotliCompressSync(codeCache, {
        params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: codeCache.length }
      }).toString("base64")
    )
  }, "base64"))`

const loader = `#!/usr/bin/env node
// AuthKeySync ${pkg.version} (${commit}, built ${built}): the whole program in one file, with no dependencies.
// The program is the script text below; V8 compiles it from the code cache that follows (brotli-compressed) when this
// Node made the cache.
${
  legal === undefined
    ? ""
    : "// Third-party license notes: authkeysync.mjs.LEGAL.txt.\n"
}import { createRequire } from "node:module"
import { dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { Script } from "node:vm"
import { createHash } from "node:crypto"
import { brotliDecompressSync } from "node:zlib"
const filename = fileURLToPath(import.meta.url)
const program = ${JSON.stringify(program)}
const cachedData = ${cachedData}
const module = { exports: {} }
new Script(program, { filename: ${
  JSON.stringify(SCRIPT_NAME)
}, cachedData }).runInThisContext()(module.exports, createRequire(import.meta.url), module, filename, dirname(filename))
`
mkdirSync("dist", { recursive: true })
writeFileSync(outfile, loader)
if (legal === undefined) rmSync(`${outfile}.LEGAL.txt`, { force: true })
else writeFileSync(`${outfile}.LEGAL.txt`, legal)
chmodSync(outfile, 0o755)
console.log(`built ${outfile} (v${pkg.version}, ${commit}, ${built})`)

// The library entry for other programs: ESM with its dependencies left as imports, plus type declarations.
await build({
  ...common,
  entryPoints: ["src/index.ts"],
  outfile: "dist/index.mjs",
  packages: "external",
  format: "esm"
})
if (process.env.AUTHKEYSYNC_SKIP_TYPES !== "1") {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" })
}
console.log("built dist/index.mjs and dist/types (library)")
