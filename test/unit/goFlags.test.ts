import { describe, expect, it } from "vitest"
import { asksForVersion, goFlagError, normalizeGoFlags } from "../../src/goFlags.js"

describe("normalizeGoFlags (the Go original's flag spellings keep working)", () => {
  const cases: ReadonlyArray<readonly [ReadonlyArray<string>, ReadonlyArray<string>]> = [
    [["-config", "/etc/a.yaml"], ["--config", "/etc/a.yaml"]],
    [["-config=/etc/a.yaml"], ["--config=/etc/a.yaml"]],
    [["--config", "/etc/a.yaml", "--dry-run"], ["--config", "/etc/a.yaml", "--dry-run"]],
    [["-dry-run", "-debug"], ["--dry-run", "--debug"]],
    [["-dry-run=true"], ["--dry-run"]],
    [["--dry-run=false", "-debug=0"], []],
    // Every spelling of Go's strconv.ParseBool.
    [["-dry-run=TRUE", "-debug=t", "-quiet=True", "-silent=T"], ["--dry-run", "--debug", "--quiet", "--silent"]],
    [["-dry-run=FALSE", "-debug=f", "-quiet=False", "-silent=F"], []],
    [["-dry-run=yes"], ["--dry-run=yes"]],
    [["-version"], ["--version"]],
    [["-h"], ["--help"]],
    [["-concurrency=4", "-log-format", "json"], ["--concurrency=4", "--log-format", "json"]],
    // Values are never rewritten, even when they look like flags; unknown flags pass through for @effect/cli to reject.
    [["--config", "-dry-run"], ["--config", "-dry-run"]],
    [["-config", "-debug", "-debug"], ["--config", "-debug", "--debug"]],
    // A repeated flag counts once, with its last value (Go's flag package); @effect/cli would refuse the repeat.
    [["-config", "/a", "--config=/b"], ["--config=/b"]],
    [["-dry-run", "-debug", "-dry-run=false"], ["--debug"]],
    [["-dry-run=false", "--dry-run"], ["--dry-run"]],
    [["--quiet", "--config", "/a", "-quiet"], ["--config", "/a", "--quiet"]],
    [["-h", "--help"], ["--help"]],
    // -help and -h with any value are help, as for Go (found in review: `-help=false` ran a sync).
    [["-help=false", "--config=/a"], ["--help", "--config=/a"]],
    [["-h=maybe"], ["--help"]],
    [["-bogus", "x"], ["-bogus", "x"]],
    [["--", "-config"], ["--", "-config"]],
    // Boolean flags last: a word after one (`false`) is a stray argument, as for Go, never the flag's value (found in
    // review: `-dry-run false` was a real run).
    [["-dry-run", "false", "-config", "/a"], ["false", "--config", "/a", "--dry-run"]],
    [["--quiet", "1"], ["1", "--quiet"]],
    // --help first, where @effect/cli takes it (Go's -help works anywhere).
    [["--config", "/a", "--dry-run", "-help"], ["--help", "--config", "/a", "--dry-run"]]
  ]
  it.each(cases)("%j -> %j", (input, expected) => {
    expect(normalizeGoFlags(input)).toEqual(expected)
  })
})

describe("goFlagError (what Go's flag package stops on, in its words)", () => {
  const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string | undefined]> = [
    [["-config"], "flag needs an argument: -config"],
    [["--dry-run", "--config"], "flag needs an argument: -config"],
    [["--concurrency"], "flag needs an argument: -concurrency"],
    [["--config", "/a"], undefined],
    [["--config=/a"], undefined],
    // A value that looks like a flag is still the value.
    [["-config", "-lock-file"], undefined],
    [["--dry-run"], undefined],
    [["--", "--config"], undefined],
    [[], undefined],
    // Only strconv.ParseBool's words (found in review: `-dry-run=no` was a real run, `-dry-run=yes` a dry run).
    [["-dry-run=no"], "invalid boolean value \"no\" for -dry-run: parse error"],
    [["--config", "/a", "--debug=yes"], "invalid boolean value \"yes\" for -debug: parse error"],
    [["-quiet="], "invalid boolean value \"\" for -quiet: parse error"],
    [["-dry-run=true", "-debug=0", "-silent=F"], undefined],
    // Go stops at the first word that is not a flag, and at an unknown flag (which @effect/cli refuses).
    [["-bogus", "-dry-run=no"], undefined],
    [["stray", "-config"], undefined],
    [["--config", "-dry-run=no"], undefined],
    // Go stops at -help/-h whatever their value, and prints the usage (exit 0); a bad flag before it still fails.
    [["-help", "-dry-run=no"], undefined],
    [["-h=maybe"], undefined],
    [["-help=no"], undefined],
    [["-dry-run=no", "-help"], "invalid boolean value \"no\" for -dry-run: parse error"]
  ]
  it.each(cases)("%j -> %j", (input, expected) => {
    expect(goFlagError(input)).toBe(expected)
  })
})

describe("asksForVersion", () => {
  it.each(
    [
      [["--version"], true],
      [["--config", "/a", "--version"], true],
      [["--dry-run", "--version"], true],
      // A flag's value, whatever it looks like (Go's flag package reads a config file named -version here).
      [["--config", "--version"], false],
      [["--lock-file", "--version", "--dry-run"], false],
      [["--", "--version"], false],
      [["--config=/a"], false],
      [["--config=/a", "--version"], true],
      // Beside an unknown flag or a stray word: @effect/cli refuses them (Go fails on the unknown flag first).
      [["--bogus", "--version"], false],
      [["stray", "--version"], false]
    ] as const
  )("%j -> %s", (args, expected) => {
    expect(asksForVersion(args)).toBe(expected)
  })
})
