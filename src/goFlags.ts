/**
 * The Go original parses flags with Go's `flag` package, which accepts `-config x`, `-config=x`, `--config x` and
 * `-dry-run=true`. Cron lines and unit files written for it must keep working, so its spellings are rewritten to
 * the `--flag` form before @effect/cli parses them.
 *
 * @since 0.1.0
 */

const BOOLEAN = new Set(["dry-run", "debug", "quiet", "silent", "version", "help", "h"])
/** What Go's strconv.ParseBool (behind `-flag=value`) accepts. */
const GO_TRUE = new Set(["1", "t", "T", "true", "TRUE", "True"])
const GO_FALSE = new Set(["0", "f", "F", "false", "FALSE", "False"])
const VALUED = new Set(["config", "log-format", "concurrency", "lock-timeout", "lock-file"])

/** Rewrite Go-style flags in `args` (the arguments after the program name). @since 0.1.0 */
export const normalizeGoFlags = (args: ReadonlyArray<string>): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      out.push(...args.slice(i))
      break
    }
    const match = /^--?([a-z][a-z-]*)(?:=(.*))?$/s.exec(arg)
    const name = match?.[1]
    const value = match?.[2]
    if (match === null || name === undefined || (!BOOLEAN.has(name) && !VALUED.has(name))) {
      out.push(arg)
      continue
    }
    if (name === "h") {
      out.push("--help")
    } else if (BOOLEAN.has(name)) {
      if (value === undefined || GO_TRUE.has(value)) out.push(`--${name}`)
      else if (!GO_FALSE.has(value)) out.push(`--${name}=${value}`)
    } else if (value !== undefined) {
      out.push(`--${name}=${value}`)
    } else {
      // The next argument is this flag's value, whatever it looks like.
      out.push(`--${name}`)
      if (i + 1 < args.length) out.push(args[++i]!)
    }
  }
  return out
}
