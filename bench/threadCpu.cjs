// Preloaded (node --require) into each benchmarked CLI run: when the process exits, writes the CPU time of its main
// thread and of all its other threads (V8's compiler and GC helpers, libuv's pool) to $BENCH_CPU_FILE, read from
// /proc. Unlike the wall time, these hardly move with the load on a shared machine, and they show where a run is bound.
"use strict"
const fs = require("node:fs")

const file = process.env.BENCH_CPU_FILE
if (file !== undefined && fs.existsSync("/proc/self/task")) {
  const ticksPerMs = 100 / 1000 // USER_HZ is 100 on Linux.
  process.on("exit", () => {
    let main = 0
    let other = 0
    for (const tid of fs.readdirSync("/proc/self/task")) {
      try {
        const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8")
        // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
        const ms = (Number(fields[11]) + Number(fields[12])) / ticksPerMs
        if (tid === String(process.pid)) main += ms
        else other += ms
      } catch {
        // A thread that ended meanwhile.
      }
    }
    fs.writeFileSync(file, JSON.stringify({ main, other }))
  })
}
