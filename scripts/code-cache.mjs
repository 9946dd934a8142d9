// Build step: run the bundled CLI once (`--version`) and write V8's code cache for it, functions compiled during that
// start-up included. Usage: node scripts/code-cache.mjs <bundle.cjs> <out.cache>
import { readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, resolve } from "node:path"
import { Script } from "node:vm"
import { SCRIPT_NAME, scriptText } from "./program.mjs"

const [bundleFile, cacheFile] = process.argv.slice(2).map((p) => resolve(p))
const script = new Script(scriptText(readFileSync(bundleFile, "utf8")), { filename: SCRIPT_NAME })
process.on("exit", () => writeFileSync(cacheFile, script.createCachedData()))
process.argv = [process.argv[0], bundleFile, "--version"]
const module = { exports: {} }
script.runInThisContext()(module.exports, createRequire(bundleFile), module, bundleFile, dirname(bundleFile))
