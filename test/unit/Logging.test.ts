import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { formatJson, formatText, layer, layerCapture, type LogRecord } from "../../src/services/Logging.js"

const time = new Date("2025-09-03T04:05:06.789Z")
const record = (msg: string, fields: ReadonlyArray<readonly [string, unknown]> = [], level = "INFO"): LogRecord => ({
  time,
  level,
  msg,
  fields
})

describe("formatText", () => {
  const cases: ReadonlyArray<readonly [string, LogRecord, string]> = [
    ["bare message", record("done"), "time=2025-09-03T04:05:06.789Z level=INFO msg=done"],
    [
      "message with spaces is quoted",
      record("sync started"),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=\"sync started\""
    ],
    ["level as given", record("x", [], "WARN"), "time=2025-09-03T04:05:06.789Z level=WARN msg=x"],
    [
      "plain string field",
      record("fetched", [["user", "bob"]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=fetched user=bob"
    ],
    [
      "field order as given, not sorted",
      record("m", [["zeta", "1"], ["user", "bob"], ["alpha", "2"]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m zeta=1 user=bob alpha=2"
    ],
    ["value with a space", record("m", [["k", "a b"]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m k=\"a b\""],
    ["value with a tab", record("m", [["k", "a\tb"]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m k=\"a\\tb\""],
    [
      "value with a newline",
      record("m", [["k", "a\nb"]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m k=\"a\\nb\""
    ],
    [
      "value with quotes",
      record("m", [["k", "say \"hi\""]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m k=\"say \\\"hi\\\"\""
    ],
    ["value with =", record("m", [["k", "a=b"]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m k=\"a=b\""],
    [
      "value with a backslash",
      record("m", [["k", "a\\b"]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m k=\"a\\\\b\""
    ],
    ["empty string", record("m", [["k", ""]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m k=\"\""],
    ["empty message", record(""), "time=2025-09-03T04:05:06.789Z level=INFO msg=\"\""],
    [
      "URL with a query string is quoted (it has =)",
      record("m", [["source", "https://k.example/raw?team=ops"]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m source=\"https://k.example/raw?team=ops\""
    ],
    [
      "path needs no quotes",
      record("m", [["path", "/home/bob/.ssh/authorized_keys"]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m path=/home/bob/.ssh/authorized_keys"
    ],
    ["number", record("m", [["keys", 3]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m keys=3"],
    ["zero", record("m", [["keys", 0]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m keys=0"],
    ["boolean", record("m", [["dry_run", false]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m dry_run=false"],
    ["null", record("m", [["x", null]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m x=null"],
    ["undefined", record("m", [["x", undefined]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m x=null"],
    [
      "date",
      record("m", [["at", new Date("2025-01-02T03:04:05Z")]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m at=2025-01-02T03:04:05.000Z"
    ],
    [
      "non-ASCII is not quoted",
      record("m", [["user", "jürgen"]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m user=jürgen"
    ],
    [
      "object as JSON, quoted",
      record("m", [["o", { a: 1 }]]),
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m o=\"{\\\"a\\\":1}\""
    ],
    ["array as JSON", record("m", [["l", [1, 2]]]), "time=2025-09-03T04:05:06.789Z level=INFO msg=m l=[1,2]"]
  ]
  it.each(cases)("%s", (_name, input, expected) => {
    expect(formatText(input)).toBe(expected)
  })
})

describe("formatText quoting rule", () => {
  const quoted: ReadonlyArray<string> = ["", " ", "a b", "a=b", "a\"b", "a\\b", "a\tb", "a\rb", "a\u0000b", "a\u007fb"]
  it.each(quoted)("quotes %j", (value) => {
    expect(formatText(record("m", [["k", value]]))).toBe(
      `time=2025-09-03T04:05:06.789Z level=INFO msg=m k=${JSON.stringify(value)}`
    )
  })
  const bare: ReadonlyArray<string> = ["bob", "a-b_c.d", "/home/bob", "https://k.example/keys", "ssh-ed25519", "42"]
  it.each(bare)("leaves %j bare", (value) => {
    expect(formatText(record("m", [["k", value]]))).toBe(`time=2025-09-03T04:05:06.789Z level=INFO msg=m k=${value}`)
  })
})

describe("formatJson", () => {
  const cases: ReadonlyArray<readonly [string, LogRecord, string]> = [
    ["bare message", record("done"), "{\"time\":\"2025-09-03T04:05:06.789Z\",\"level\":\"INFO\",\"msg\":\"done\"}"],
    [
      "fields in the order given",
      record("fetched source", [["user", "bob"], ["source", "https://k.example/k"], ["keys", 2], ["dry_run", true]]),
      "{\"time\":\"2025-09-03T04:05:06.789Z\",\"level\":\"INFO\",\"msg\":\"fetched source\",\"user\":\"bob\"," +
      "\"source\":\"https://k.example/k\",\"keys\":2,\"dry_run\":true}"
    ],
    [
      "not sorted",
      record("m", [["zeta", 1], ["alpha", 2]], "ERROR"),
      "{\"time\":\"2025-09-03T04:05:06.789Z\",\"level\":\"ERROR\",\"msg\":\"m\",\"zeta\":1,\"alpha\":2}"
    ],
    [
      "strings escaped as JSON",
      record("say \"hi\"", [["k", "a\nb"], ["e", ""]]),
      "{\"time\":\"2025-09-03T04:05:06.789Z\",\"level\":\"INFO\",\"msg\":\"say \\\"hi\\\"\",\"k\":\"a\\nb\",\"e\":\"\"}"
    ],
    [
      "null and nested values",
      record("m", [["n", null], ["o", { a: [1] }]]),
      "{\"time\":\"2025-09-03T04:05:06.789Z\",\"level\":\"INFO\",\"msg\":\"m\",\"n\":null,\"o\":{\"a\":[1]}}"
    ]
  ]
  it.each(cases)("%s", (_name, input, expected) => {
    expect(formatJson(input)).toBe(expected)
  })

  it("is one line of valid JSON", () => {
    const line = formatJson(record("multi\nline", [["k", "a\nb"]]))
    expect(line.includes("\n")).toBe(false)
    expect(JSON.parse(line)).toEqual({ time: "2025-09-03T04:05:06.789Z", level: "INFO", msg: "multi\nline", k: "a\nb" })
  })
})

describe("layerCapture (record building)", () => {
  const capture = (program: Effect.Effect<void>) => {
    const records: Array<LogRecord> = []
    Effect.runSync(program.pipe(Effect.provide(layerCapture(records))))
    return records
  }

  it("puts user and source first, then the other annotations by name", () => {
    const [rec] = capture(
      Effect.logInfo("fetched source").pipe(
        Effect.annotateLogs({ zeta: 1, source: "https://k.example/k", alpha: "a", user: "bob" })
      )
    )
    expect(rec?.msg).toBe("fetched source")
    expect(rec?.level).toBe("INFO")
    expect(rec?.fields).toEqual([["user", "bob"], ["source", "https://k.example/k"], ["alpha", "a"], ["zeta", 1]])
  })

  it("names the warning level WARN", () => {
    const [rec] = capture(Effect.logWarning("careful"))
    expect(rec?.level).toBe("WARN")
  })

  const levels: ReadonlyArray<readonly [string, Effect.Effect<void>, string]> = [
    ["debug", Effect.logDebug("x"), "DEBUG"],
    ["info", Effect.logInfo("x"), "INFO"],
    ["warning", Effect.logWarning("x"), "WARN"],
    ["error", Effect.logError("x"), "ERROR"]
  ]
  it.each(levels)("%s -> %s", (_name, program, expected) => {
    expect(capture(program).map((r) => r.level)).toEqual([expected])
  })
})

describe("layer (stdout)", () => {
  it("adds one 'error' listener to stdout however many loggers are built", async () => {
    const before = process.stdout.listenerCount("error")
    for (let i = 0; i < 5; i++) {
      await Effect.runPromise(
        Effect.logDebug("quiet").pipe(Effect.provide(layer({ format: "text", verbosity: "silent" })))
      )
    }
    expect(process.stdout.listenerCount("error") - before).toBeLessThanOrEqual(1)
  })
})

describe("log lines never carry a character that breaks a line for a reader or drives a terminal", () => {
  // Found in review: JSON.stringify leaves U+2028, U+2029, NEL and the other C1 controls (CSI) and bidirectional
  // overrides raw, in both formats; a source's key comment or a username could start a fake line for a log shipper.
  const nasty = "c\u2028level=ERROR msg=fake\u0085x\u009b2J\u202etxt"
  it("logfmt: quoted, with those characters as \\u escapes", () => {
    expect(formatText(record("m", [["key", nasty]]))).toBe(
      "time=2025-09-03T04:05:06.789Z level=INFO msg=m key=\"c\\u2028level=ERROR msg=fake\\u0085x\\u009b2J\\u202etxt\""
    )
  })
  it("JSON: the same value, escaped", () => {
    const line = formatJson(record("m", [["key", nasty]]))
    expect(line).not.toMatch(/[\u0080-\u009f\u2028\u2029\u202a-\u202e]/)
    expect(JSON.parse(line).key).toBe(nasty)
  })
})
