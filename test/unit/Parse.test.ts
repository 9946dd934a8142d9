import { describe, expect, it } from "vitest"
import { classifyLine, type LineClass, parseKeys, rejectedLineCount, trimLine } from "../../src/pipeline/Parse.js"

const noDiscards = { empty: 0, comment: 0, "error-page": 0, malformed: 0 }

describe("classifyLine", () => {
  const cases: ReadonlyArray<readonly [string, string, LineClass]> = [
    ["empty string", "", "empty"],
    ["spaces only", "    ", "empty"],
    ["tabs and spaces only", " \t \t ", "empty"],
    ["lone carriage return", "\r", "empty"],
    ["comment", "# a comment", "comment"],
    ["comment without space", "#ssh-ed25519 AAAA", "comment"],
    ["indented comment", "   # indented", "comment"],
    ["commented-out key", "# ssh-ed25519 AAAAC3Nza user@host", "comment"],
    ["HTML doctype", "<!DOCTYPE html>", "error-page"],
    ["HTML tag with text", "<html><body>404 Not Found</body></html>", "error-page"],
    ["indented HTML", "  <p>error page</p>", "error-page"],
    ["JSON object", "{\"error\": \"not found\"}", "error-page"],
    ["JSON array", "[\"ssh-ed25519 AAAA\"]", "error-page"],
    ["lone bracket", "[", "error-page"],
    ["single field", "ssh-ed25519", "malformed"],
    ["single field with padding", "  AAAAC3NzaC1lZDI1NTE5  ", "malformed"],
    ["single word", "garbage", "malformed"],
    ["two fields", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "key"],
    ["three fields", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 user@host", "key"],
    ["four fields", "ssh-rsa AAAAB3NzaC1yc2E alice laptop", "key"],
    ["many fields", "a b c d e f g", "key"],
    ["unknown key type is still a key", "future-algo-v9 Zm9vYmFy", "key"],
    ["not actually a key but two fields", "hello world", "key"],
    ["security key type", "sk-ssh-ed25519@openssh.com AAAAGnNr user", "key"],
    ["options prefix", "restrict,command=\"x y\" ssh-ed25519 AAAA c", "key"],
    ["options without spaces", "no-pty,from=\"10.0.0.1\" ssh-ed25519 AAAA", "key"],
    ["tab separated", "ssh-ed25519\tAAAA\tuser@host", "key"],
    ["mixed separators", "ssh-ed25519 \t  AAAA", "key"],
    ["leading and trailing white space", "  \tssh-ed25519 AAAA user@host \t ", "key"],
    ["trailing carriage return", "ssh-ed25519 AAAA user@host\r", "key"],
    ["hash inside the line is not a comment", "ssh-ed25519 AAAA #not-a-comment", "key"],
    ["angle bracket inside the line", "ssh-ed25519 AAAA <user>", "key"],
    // Go's strings.Fields splits on the UTF-8 white space of unicode.IsSpace too (see trimLine); sshd would not read
    // such a line, which is harmless, and the Go original keeps it.
    ["UTF-8 no-break space between the fields", "ssh-ed25519\xc2\xa0AAAA", "key"],
    ["ideographic space between the fields", "ssh-ed25519\xe3\x80\x80AAAA", "key"],
    ["a lone 0xa0 byte is no separator", "ssh-ed25519\xa0AAAA", "malformed"],
    ["UTF-8 white space only", "\xc2\xa0\xe2\x80\xa8", "empty"],
    ["UTF-8 no-break space before a comment marker", "\xc2\xa0# not a key", "comment"]
  ]
  it.each(cases)("%s", (_name, line, expected) => {
    expect(classifyLine(line)).toBe(expected)
  })
})

describe("parseKeys", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly text: string
    readonly keys: ReadonlyArray<string>
    readonly discarded: typeof noDiscards
  }> = [
    { name: "empty text", text: "", keys: [], discarded: noDiscards },
    {
      name: "one key without trailing newline",
      text: "ssh-ed25519 AAAA user@host",
      keys: ["ssh-ed25519 AAAA user@host"],
      discarded: noDiscards
    },
    {
      name: "two keys without trailing newline",
      text: "ssh-ed25519 AAAA a\nssh-rsa BBBB b",
      keys: ["ssh-ed25519 AAAA a", "ssh-rsa BBBB b"],
      discarded: noDiscards
    },
    {
      name: "blank line between keys",
      text: "ssh-ed25519 AAAA a\n\nssh-rsa BBBB b",
      keys: ["ssh-ed25519 AAAA a", "ssh-rsa BBBB b"],
      discarded: { ...noDiscards, empty: 1 }
    },
    {
      name: "CRLF line endings",
      text: "ssh-ed25519 AAAA a\r\nssh-rsa BBBB b\r\n# note\r\n\r\nssh-ed25519 CCCC c",
      keys: ["ssh-ed25519 AAAA a", "ssh-rsa BBBB b", "ssh-ed25519 CCCC c"],
      discarded: { ...noDiscards, comment: 1, empty: 1 }
    },
    {
      name: "white space around keys is trimmed",
      text: "   ssh-ed25519 AAAA a   \n\tssh-rsa BBBB b\t",
      keys: ["ssh-ed25519 AAAA a", "ssh-rsa BBBB b"],
      discarded: noDiscards
    },
    {
      name: "inner white space is kept as is",
      text: "ssh-ed25519\tAAAA  two  spaces",
      keys: ["ssh-ed25519\tAAAA  two  spaces"],
      discarded: noDiscards
    },
    {
      name: "options prefix kept whole",
      text: "restrict,command=\"x y\" ssh-ed25519 AAAA c",
      keys: ["restrict,command=\"x y\" ssh-ed25519 AAAA c"],
      discarded: noDiscards
    },
    {
      name: "HTML error page",
      text: "<!DOCTYPE html>\n<html>\n<body>Rate limited</body>\n</html>",
      keys: [],
      discarded: { ...noDiscards, "error-page": 4 }
    },
    {
      name: "JSON error body",
      text: "{\"message\": \"Not Found\"}",
      keys: [],
      discarded: { ...noDiscards, "error-page": 1 }
    },
    {
      name: "every class once",
      text: [
        "# comment",
        "",
        "   ",
        "<html>",
        "{\"a\":1}",
        "[1,2]",
        "justoneword",
        "ssh-ed25519 AAAA k1",
        "ssh-rsa BBBB k2 extra words"
      ].join("\n"),
      keys: ["ssh-ed25519 AAAA k1", "ssh-rsa BBBB k2 extra words"],
      discarded: { empty: 2, comment: 1, "error-page": 3, malformed: 1 }
    },
    {
      name: "duplicates are kept (dedup is a later step)",
      text: "ssh-ed25519 AAAA a\n  ssh-ed25519 AAAA a  ",
      keys: ["ssh-ed25519 AAAA a", "ssh-ed25519 AAAA a"],
      discarded: noDiscards
    }
  ]
  it.each(cases)("$name", ({ discarded, keys, text }) => {
    expect(parseKeys(text)).toEqual({ keys, discarded })
  })

  // A trailing newline terminates the last line; it does not start a new, empty one (the Go original reads lines
  // with bufio.Scanner, and `wc -l` agrees). The keys are the same either way.
  const terminated: ReadonlyArray<readonly [string, string, ReadonlyArray<string>, typeof noDiscards]> = [
    ["one key with trailing LF", "ssh-ed25519 AAAA a\n", ["ssh-ed25519 AAAA a"], noDiscards],
    ["one key with trailing CRLF", "ssh-ed25519 AAAA a\r\n", ["ssh-ed25519 AAAA a"], noDiscards],
    [
      "two keys with trailing LF",
      "ssh-ed25519 AAAA a\nssh-rsa BBBB b\n",
      ["ssh-ed25519 AAAA a", "ssh-rsa BBBB b"],
      noDiscards
    ],
    ["just a newline", "\n", [], { ...noDiscards, empty: 1 }],
    ["comment with trailing LF", "# only a comment\n", [], { ...noDiscards, comment: 1 }]
  ]
  it.each(terminated)("%s", (_name, text, keys, discarded) => {
    expect(parseKeys(text)).toEqual({ keys, discarded })
  })

  it("keys are identical with or without a trailing newline", () => {
    const body = "ssh-ed25519 AAAA a\nssh-rsa BBBB b"
    expect(parseKeys(body + "\n").keys).toEqual(parseKeys(body).keys)
    expect(parseKeys(body + "\r\n").keys).toEqual(parseKeys(body).keys)
  })
})

describe("rejectedLineCount", () => {
  const cases: ReadonlyArray<readonly [string, string, number]> = [
    ["nothing rejected", "ssh-ed25519 AAAA a", 0],
    ["blank lines and comments do not count", "# c\n\n   \nssh-ed25519 AAAA a", 0],
    ["error-page lines count", "<html>\n{}\n[]", 3],
    ["malformed lines count", "one\ntwo\nssh-ed25519 AAAA a", 2],
    ["both count", "<p>\nword\n# c", 2]
  ]
  it.each(cases)("%s", (_name, text, expected) => {
    expect(rejectedLineCount(parseKeys(text))).toBe(expected)
  })
})

describe("parseKeys with a limit", () => {
  it("stops at the key line after the limit: limit + 1 keys, the lines before it counted", () => {
    const parsed = parseKeys("# c\na b\n\nc d\ne f\n# never read\ng h\n", 2)
    expect(parsed.keys).toEqual(["a b", "c d", "e f"])
    expect(parsed.discarded).toEqual({ ...noDiscards, comment: 1, empty: 1 })
  })

  it("a text within the limit is parsed whole, as without one", () => {
    const text = "a b\r\n# c\nc d\n"
    expect(parseKeys(text, 2)).toEqual(parseKeys(text))
  })

  it("10 MiB of two-field lines with a limit of 1000: 1001 keys, not 2.6 million", () => {
    const text = "a b\n".repeat(10 * 1024 * 1024 / 4)
    expect(parseKeys(text, 1000).keys.length).toBe(1001)
  })
})

describe("parseKeys: white space as the Go original reads it", () => {
  it("a line that differs only by trailing UTF-8 white space is the same key line (one entry, no space kept)", () => {
    const text = "ssh-ed25519 AAAA bob\xc2\xa0\r\nssh-ed25519 AAAA bob\n\xe3\x80\x80ssh-ed25519 AAAA bob\n"
    expect(parseKeys(text).keys).toEqual(["ssh-ed25519 AAAA bob", "ssh-ed25519 AAAA bob", "ssh-ed25519 AAAA bob"])
  })
})

describe("trimLine", () => {
  it.each([
    ["", ""],
    ["   ", ""],
    ["\t ssh-ed25519 AAAA a \r", "ssh-ed25519 AAAA a"],
    ["\v\fkey x\n", "key x"],
    ["a  b", "a  b"],
    // Lines are byte strings. A lone 0xa0 byte (Latin-1's no-break space) is not UTF-8 for anything: it stays, as in
    // Go, whose strings.TrimSpace decodes UTF-8 and reads that byte as an error, not as a space.
    ["\u00a0a\u00a0", "\u00a0a\u00a0"],
    // The UTF-8 no-break space (C2 A0) and the other white space of Go's unicode.IsSpace go, as in the Go original.
    ["\xc2\xa0ssh-ed25519 AAAA a\xc2\xa0", "ssh-ed25519 AAAA a"],
    ["\xe2\x80\xa8\xe3\x80\x80key x\xe2\x80\x89\xc2\x85 \xe1\x9a\x80", "key x"],
    ["\xe2\x80\xafkey x\xe2\x81\x9f", "key x"],
    // Not white space: U+2020 (E2 80 A0), U+200B zero width space (E2 80 8B), a truncated sequence.
    ["\xe2\x80\xa0key x\xe2\x80\x8b", "\xe2\x80\xa0key x\xe2\x80\x8b"],
    ["key x\xe2\x80", "key x\xe2\x80"],
    // A space's bytes after a lead byte whose character they cannot complete: Go decodes the space all the same.
    ["key x\xe2\xc2\xa0", "key x\xe2"],
    // A comment ending in a multi-byte character keeps all of it.
    ["ssh-ed25519 AAAA jos\xc3\xa9", "ssh-ed25519 AAAA jos\xc3\xa9"]
  ])("%j -> %j", (line, expected) => {
    expect(trimLine(line)).toBe(expected)
  })

  // The regex trim this replaced backtracked over every blank of a run that does not end the line (quadratic: 80,000
  // blanks took it 4.5 s, a 2 MB line in a user's own authorized_keys held the whole run for hours). Not a timed test:
  // this size takes milliseconds now, and such a regression would make it take about half a minute.
  it("a line with a long run of blanks inside is parsed", () => {
    const long = `ssh-ed25519 AAAA${" ".repeat(200_000)}x`
    expect(trimLine(long)).toBe(long)
    expect(parseKeys(`${long}\n`).keys).toEqual([long])
    expect(classifyLine(`a${"\t".repeat(200_000)}b`)).toBe("key")
  })
})
