// Bundle the CLI into one file, dist/authkeysync.mjs, that runs with plain `node` and no node_modules.
// Version, commit and build date are baked in here; SOURCE_DATE_EPOCH makes the date reproducible.
import { execFileSync } from "node:child_process"
import { chmodSync, readFileSync } from "node:fs"
import { build } from "esbuild"

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
const commit = (() => {
  try {
    return execFileSync("git", ["rev-parse", "--short=12", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return "unknown"
  }
})()
const epoch = process.env.SOURCE_DATE_EPOCH
const built = (epoch ? new Date(Number(epoch) * 1000) : new Date()).toISOString().replace(/\.\d{3}Z$/, "Z")
const outfile = "dist/authkeysync.mjs"

await build({
  entryPoints: ["src/cli.ts"],
  outfile,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  minify: process.env.AUTHKEYSYNC_MINIFY !== "0",
  legalComments: "linked",
  // yaml is CommonJS inside; an ESM bundle needs a require() for it.
  banner: { js: "import{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);" },
  define: {
    __AUTHKEYSYNC_VERSION__: JSON.stringify(`v${pkg.version}`),
    __AUTHKEYSYNC_COMMIT__: JSON.stringify(commit),
    __AUTHKEYSYNC_BUILT__: JSON.stringify(built)
  },
  logLevel: "warning"
})
chmodSync(outfile, 0o755)
console.log(`built ${outfile} (v${pkg.version}, ${commit}, ${built})`)

// The library entry for other programs: ESM with its dependencies left as imports, plus type declarations.
await build({
  entryPoints: ["src/index.ts"],
  outfile: "dist/index.mjs",
  bundle: true,
  packages: "external",
  platform: "node",
  target: "node20",
  format: "esm",
  define: {
    __AUTHKEYSYNC_VERSION__: JSON.stringify(`v${pkg.version}`),
    __AUTHKEYSYNC_COMMIT__: JSON.stringify(commit),
    __AUTHKEYSYNC_BUILT__: JSON.stringify(built)
  },
  logLevel: "warning"
})
if (process.env.AUTHKEYSYNC_SKIP_TYPES !== "1") {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" })
}
console.log("built dist/index.mjs and dist/types (library)")
