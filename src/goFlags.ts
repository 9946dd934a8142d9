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

/**
 * Rewrite Go-style flags in `args` (the arguments after the program name). A flag given more than once counts once,
 * with its last value, as Go's `flag` package takes it (`-config a -config b` reads b; `-dry-run -dry-run=false` is a
 * real run); @effect/cli would refuse the repeat.
 *
 * @since 0.1.0
 */
export const normalizeGoFlags = (args: ReadonlyArray<string>): Array<string> => {
  // Each known flag's rewritten tokens (none for a boolean set to false), in the order of their last occurrence;
  // anything else keeps its place.
  const entries: Array<{ readonly name: string | undefined; readonly tokens: ReadonlyArray<string> }> = []
  const set = (name: string, tokens: ReadonlyArray<string>) => {
    const earlier = entries.findIndex((entry) => entry.name === name)
    if (earlier >= 0) entries.splice(earlier, 1)
    entries.push({ name, tokens })
  }
  let rest: ReadonlyArray<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      rest = args.slice(i)
      break
    }
    const match = /^--?([a-z][a-z-]*)(?:=(.*))?$/s.exec(arg)
    const name = match?.[1]
    const value = match?.[2]
    if (match === null || name === undefined || (!BOOLEAN.has(name) && !VALUED.has(name))) {
      entries.push({ name: undefined, tokens: [arg] })
      continue
    }
    if (name === "h" || name === "help") {
      // Go's flag package answers -help and -h, whatever value follows (`-help=false` too), with the usage text.
      set("help", ["--help"])
    } else if (BOOLEAN.has(name)) {
      if (value === undefined || GO_TRUE.has(value)) set(name, [`--${name}`])
      else if (GO_FALSE.has(value)) set(name, [])
      else entries.push({ name: undefined, tokens: [`--${name}=${value}`] })
    } else if (value !== undefined) {
      set(name, [`--${name}=${value}`])
    } else {
      // The next argument is this flag's value, whatever it looks like.
      set(name, i + 1 < args.length ? [`--${name}`, args[++i]!] : [`--${name}`])
    }
  }
  // Boolean flags go last: @effect/cli reads a word after one (`true`, `false`, `yes`, `0`, …) as its value, so
  // `-dry-run false`, a dry run and a stray argument for Go, would otherwise be a real run. Last, such a word is the
  // stray argument it is, and refused.
  // --help first: @effect/cli takes its built-in flags only there (Go's -help works anywhere).
  const isHelp = (entry: (typeof entries)[number]) => entry.name === "help"
  const isBoolean = (entry: (typeof entries)[number]) =>
    entry.name !== undefined && BOOLEAN.has(entry.name) && !isHelp(entry)
  return [
    ...entries.filter(isHelp).flatMap((entry) => entry.tokens),
    ...entries.filter((entry) => !isBoolean(entry) && !isHelp(entry)).flatMap((entry) => entry.tokens),
    ...entries.filter(isBoolean).flatMap((entry) => entry.tokens),
    ...rest
  ]
}

/**
 * What Go's flag package would stop on in `args` (as written), in its words, or undefined: a boolean flag given a value
 * strconv.ParseBool refuses (`-dry-run=no`: `invalid boolean value "no" for -dry-run: parse error`) or a flag at the
 * end that needs a value (`flag needs an argument: -config`). Like Go, it reads flags from the left and stops at the
 * first word that is not one (a stray argument) and at an unknown flag, which @effect/cli then refuses.
 *
 * @since 0.1.0
 */
export const goFlagError = (args: ReadonlyArray<string>): string | undefined => {
  for (let i = 0; i < args.length; i++) {
    const match = /^--?([a-z][a-z-]*)(?:=(.*))?$/s.exec(args[i]!)
    const name = match?.[1]
    if (name === undefined || (!BOOLEAN.has(name) && !VALUED.has(name))) return undefined
    // Go stops at -help or -h (with any value) and prints the usage: nothing after it is an error.
    if (name === "help" || name === "h") return undefined
    const value = match?.[2]
    if (BOOLEAN.has(name)) {
      if (value !== undefined && !GO_TRUE.has(value) && !GO_FALSE.has(value)) {
        return `invalid boolean value ${JSON.stringify(value)} for -${name}: parse error`
      }
    } else if (value === undefined) {
      if (i + 1 >= args.length) return `flag needs an argument: -${name}`
      i++ // Its value, whatever it looks like.
    }
  }
  return undefined
}

/**
 * Whether normalized `args` (see normalizeGoFlags) ask for `--version`: as a flag, not as the value of another flag
 * (`--config --version` reads a config file named `--version`, as Go's flag package does) nor after `--`.
 *
 * @since 0.1.0
 */
export const asksForVersion = (args: ReadonlyArray<string>): boolean => {
  let version = false
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    // After `--`, or beside a word that is no flag of ours (`--version --bogus`): @effect/cli refuses the arguments,
    // as Go's flag package fails on the unknown flag before -version is looked at.
    if (arg === "--") return false
    if (arg === "--version") {
      version = true
      continue
    }
    const name = /^--([a-z][a-z-]*)(=.*)?$/s.exec(arg)
    if (name === null || (!BOOLEAN.has(name[1]!) && !VALUED.has(name[1]!))) return false
    if (VALUED.has(name[1]!) && name[2] === undefined) i++ // Its value, whatever it looks like.
  }
  return version
}
