// Preloaded (node --require) into one run of the CLI by `npm run bench`: prints whether V8 accepted the code cache the
// shipped file carries ("accepted", "rejected" or "none"). V8 rejects it under any V8 option the build did not use
// (BENCH_NODE_ARGS or NODE_OPTIONS: `--no-opt`, `--max-old-space-size`, ...), and the run then compiles the whole
// program: about 0.1 s more CPU, enough to make a flag look worse than it is.
"use strict"
const vm = require("node:vm")

let status = "none"
const Script = vm.Script
vm.Script = class extends Script {
  constructor(code, options) {
    super(code, options)
    if (options !== undefined && options.cachedData !== undefined) {
      status = this.cachedDataRejected
        ? "rejected"
        : "accepted"
    }
  }
}
process.on("exit", () => process.stderr.write(`code cache: ${status}\n`))
