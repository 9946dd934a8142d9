/**
 * Property tests (fast-check) for the pure steps that see untrusted input: the line parser and renderer, key
 * identity, dedup, revocation's local-key selection, the guards, and the config decoder (YAML text and values).
 */
import { Either } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { stringify } from "yaml"
import { decodeConfig, decodeConfigValue } from "../../src/pipeline/Config.js"
import { allKeys, mergeKeys, type Section } from "../../src/pipeline/Dedup.js"
import { checkGuards } from "../../src/pipeline/Guards.js"
import { keyIdentity, keyMaterial } from "../../src/pipeline/KeyIdentity.js"
import { classifyLine, type LineClass, parseKeys, trimLine } from "../../src/pipeline/Parse.js"
import { managedBody, renderBody, renderHeader } from "../../src/pipeline/Render.js"
import { markedManagedIdentities, selectLocalKeys } from "../../src/pipeline/Revocation.js"

const FILE = "/etc/authkeysync/config.yaml"
const BUILD = { version: "v0.0.0-test", commit: "0123456789ab", built: "2026-01-01T00:00:00Z" }
/** Go's unicode.IsSpace, as UTF-8 bytes in a byte string (see Parse.ts). */
const GO_SPACE = String
  .raw`[ \t\n\v\f\r]|\xC2[\x85\xA0]|\xE1\x9A\x80|\xE2\x80[\x80-\x8A\xA8\xA9\xAF]|\xE2\x81\x9F|\xE3\x80\x80`
const LEADING_SPACE = new RegExp(`^(?:${GO_SPACE})`)
const TRAILING_SPACE = new RegExp(`(?:${GO_SPACE})$`)
const INNER_SPACE = new RegExp(GO_SPACE)
const CLASSES: ReadonlyArray<LineClass> = ["empty", "comment", "error-page", "key", "malformed"]

// =============================================================================
// Arbitraries
// =============================================================================

/** Text that stresses the parser: white space of every kind, CR/LF, markers, key-like words, any code point. */
const messyText = fc
  .array(
    fc.oneof(
      fc.constantFrom(" ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\u00a0", "\u2028", "#", "<", "{", "[", "\"", "\\"),
      // UTF-8 white space (and a near miss) as byte strings hold them: see Parse.ts.
      fc.constantFrom(
        "\xc2\xa0",
        "\xc2\x85",
        "\xe2\x80\xa8",
        "\xe3\x80\x80",
        "\xe1\x9a\x80",
        "\xe2\x80\xa0",
        "\xe2",
        "\xa0"
      ),
      fc.constantFrom("ssh-ed25519", "ssh-rsa", "AAAAC3NzaC1lZDI1NTE5", "user@host", "# Source: x", "no-pty"),
      fc.string({ unit: "binary", maxLength: 8 }),
      fc.string({ unit: "binary-ascii", maxLength: 8 })
    ),
    { maxLength: 40 }
  )
  .map((parts) => parts.join(""))

const anyText = fc.oneof(messyText, fc.string({ unit: "binary" }), fc.string({ unit: "binary-ascii" }))

/** A line with no "\n" (it may hold "\r" and any other character). */
const lineWithoutLf = anyText.map((s) => s.replace(/\n/g, ""))

const KEY_TYPES = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "sk-ssh-ed25519@openssh.com", "ssh-dss"] as const
const keyType = fc.constantFrom(...KEY_TYPES)
const blob = fc.uint8Array({ minLength: 1, maxLength: 48 }).map((b) => Buffer.from(b).toString("base64"))
/** A comment: anything on one line (may hold spaces, quotes, key-like text). */
const comment = fc.oneof(
  fc.string({ unit: "grapheme-ascii", maxLength: 30 }),
  fc.tuple(keyType, blob).map(([t, b]) => `${t} ${b}`)
).map((s) => s.replace(/[\r\n]/g, ""))

const keyLine = fc.tuple(keyType, blob, fc.option(comment, { nil: undefined })).map(([t, b, c]) =>
  trimLine(c === undefined || trimLine(c) === "" ? `${t} ${b}` : `${t} ${b} ${c}`)
)

/** The text inside a quoted option: anything but a bare quote, backslash or line break; `\"` escapes allowed. */
const quotedValue = fc
  .array(
    fc.oneof(
      fc.string({ unit: "grapheme-ascii", maxLength: 12 }).map((s) => s.replace(/["\\\r\n]/g, "")),
      fc.constantFrom(" ", "\t", "  ", "\\\"", ","),
      fc.tuple(keyType, blob).map(([t, b]) => ` ${t} ${b} `)
    ),
    { maxLength: 6 }
  )
  .map((parts) => parts.join(""))

const option = fc.oneof(
  fc.constantFrom(
    "no-pty",
    "restrict",
    "cert-authority",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-X11-forwarding"
  ),
  fc
    .tuple(fc.constantFrom("from", "command", "environment", "permitopen", "principals", "expiry-time"), quotedValue)
    .map(([name, value]) => `${name}="${value}"`)
)
const options = fc.array(option, { minLength: 1, maxLength: 4 }).map((os) => os.join(","))

const url = fc.webUrl({ withQueryParameters: true })

/** Sections as the pipeline builds them: keys are what parseKeys returned for some (possibly hostile) text. */
const parsedKeys = anyText.map((t) => parseKeys(t).keys)
const sections: fc.Arbitrary<ReadonlyArray<Section>> = fc.tuple(
  fc.option(fc.array(keyLine, { maxLength: 3 }), { nil: undefined }),
  fc.array(fc.tuple(url, fc.oneof(parsedKeys, fc.array(keyLine, { maxLength: 4 }))), { maxLength: 4 }),
  fc.option(fc.oneof(parsedKeys, fc.array(keyLine, { maxLength: 4 })), { nil: undefined })
).map(([pinned, sources, local]) => [
  ...(pinned === undefined ? [] : [{ _tag: "Pinned" as const, keys: pinned }]),
  ...sources.map(([u, keys]) => ({ _tag: "Source" as const, url: u, keys })),
  ...(local === undefined ? [] : [{ _tag: "Local" as const, keys: local }])
])

// =============================================================================
// Parse / Render
// =============================================================================

describe("parseKeys / classifyLine (properties)", () => {
  it("never throw, and classify every line as one of the five classes", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        expect(CLASSES).toContain(classifyLine(text))
        const parsed = parseKeys(text)
        expect(Array.isArray(parsed.keys)).toBe(true)
      }),
      { numRuns: 1000 }
    )
  })

  it("every key returned is trimmed, has at least two fields, no line break, and classifies as a key", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        for (const k of parseKeys(text).keys) {
          expect(k).toBe(trimLine(k))
          expect(LEADING_SPACE.test(k)).toBe(false)
          expect(TRAILING_SPACE.test(k)).toBe(false)
          expect(INNER_SPACE.test(k)).toBe(true)
          expect(k).not.toContain("\n")
          expect(classifyLine(k)).toBe("key")
        }
      }),
      { numRuns: 1000 }
    )
  })

  it("keys + discarded lines account for every line of the text", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const parsed = parseKeys(text)
        const lineCount = text === "" ? 0 : text.split("\n").length - (text.endsWith("\n") ? 1 : 0)
        const discarded = Object.values(parsed.discarded).reduce((a, b) => a + b, 0)
        expect(parsed.keys.length + discarded).toBe(lineCount)
      }),
      { numRuns: 500 }
    )
  })

  it("CRLF and LF line endings give the same keys", () => {
    fc.assert(
      fc.property(fc.array(lineWithoutLf, { maxLength: 12 }), fc.boolean(), (lines, finalNewline) => {
        const end = finalNewline ? "\n" : ""
        const lf = lines.join("\n") + end
        const crlf = lines.join("\r\n") + (finalNewline ? "\r\n" : "")
        expect(parseKeys(crlf).keys).toEqual(parseKeys(lf).keys)
      }),
      { numRuns: 500 }
    )
  })

  it("parseKeys(renderBody(sections)) gives back the sections' keys, in order (also under a header)", () => {
    fc.assert(
      fc.property(sections, fc.date({ min: new Date(0), max: new Date(4102444800000) }), (secs, when) => {
        const body = renderBody(secs)
        expect(parseKeys(body).keys).toEqual(allKeys(secs))
        const file = renderHeader(BUILD, when) + body
        expect(parseKeys(file).keys).toEqual(allKeys(secs))
        expect(managedBody(file)).toBe(body)
      }),
      { numRuns: 500 }
    )
  })

  it("parse is idempotent: re-parsing the keys joined by newlines gives the same keys", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const keys = parseKeys(text).keys
        expect(parseKeys(keys.join("\n")).keys).toEqual(keys)
      }),
      { numRuns: 500 }
    )
  })
})

// =============================================================================
// Key identity
// =============================================================================

/** A key blob of `name` and fields of any bytes: what a source or a user could write inside the base64. */
const hostileBlob = fc
  .tuple(
    fc.oneof(
      fc.constantFrom(
        "ssh-rsa",
        "RSA",
        "ssh-ed25519",
        "ED25519",
        "ecdsa-sha2-nistp256",
        "ECDSA",
        "ecdsa-sk",
        "sk-ssh-ed25519@openssh.com",
        "ssh-dss",
        "rsa-sha2-512-cert-v01@openssh.com",
        "ssh-ed25519-cert-v01@openssh.com"
      ),
      fc.string({ unit: "binary", maxLength: 12 })
    ),
    fc.array(
      fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        fc.constantFrom("nistp256", "nistp384", "nistp256 AAAAC3NzaC1lZDI1NTE5", "nistp256\nx", "ssh:").map((t) =>
          Buffer.from(t)
        )
      ),
      { maxLength: 4 }
    )
  )
  .map(([name, fields]) =>
    Buffer.concat([name, ...fields].map((f) => {
      const bytes = typeof f === "string" ? Buffer.from(f, "latin1") : Buffer.from(f)
      const length = Buffer.alloc(4)
      length.writeUInt32BE(bytes.length)
      return Buffer.concat([length, bytes])
    })).toString("base64")
  )

describe("keyIdentity / keyMaterial (properties)", () => {
  it("an identity read again is the same identity (records are re-read through it; found in review)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("ssh-rsa", "ssh-ed25519", "rsa-sha2-512", "ECDSA", "ed25519"),
        hostileBlob,
        (type, b) => {
          const id = keyIdentity(`${type} ${b} comment`)
          expect(keyIdentity(id)).toBe(id)
        }
      ),
      { numRuns: 2000 }
    )
    fc.assert(fc.property(lineWithoutLf, (line) => {
      expect(keyIdentity(keyIdentity(line))).toBe(keyIdentity(line))
    }))
  })

  it("the identity of a key line is its type and blob, whatever the comment", () => {
    fc.assert(
      fc.property(keyType, blob, comment, (t, b, c) => {
        expect(keyMaterial(`${t} ${b} ${c}`)).toEqual({ type: t, blob: b })
        expect(keyIdentity(`${t} ${b} ${c}`)).toBe(`${t} ${b}`)
        expect(keyIdentity(`${t} ${b}`)).toBe(`${t} ${b}`)
      }),
      { numRuns: 500 }
    )
  })

  it("options (quoted spaces, escaped quotes, key-like text inside quotes) never change the identity", () => {
    fc.assert(
      fc.property(options, keyType, blob, fc.option(comment, { nil: undefined }), (opts, t, b, c) => {
        const bare = c === undefined ? `${t} ${b}` : `${t} ${b} ${c}`
        expect(keyIdentity(`${opts} ${bare}`)).toBe(keyIdentity(bare))
        expect(keyMaterial(`${opts} ${bare}`)).toEqual({ type: t, blob: b })
      }),
      { numRuns: 1000 }
    )
  })

  it("a fake key inside a quoted option never becomes the identity", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("command", "from", "environment", "principals"),
        keyType,
        blob,
        fc.string({ unit: "grapheme-ascii", maxLength: 10 }).map((s) => s.replace(/["\\\r\n]/g, "")),
        keyType,
        blob,
        (name, fakeType, fakeBlob, filler, realType, realBlob) => {
          fc.pre(`${fakeType} ${fakeBlob}` !== `${realType} ${realBlob}`)
          for (
            const opt of [
              `${name}="${fakeType} ${fakeBlob}"`,
              `${name}="${fakeType} ${fakeBlob} ${filler}"`,
              `${name}="${filler} ${fakeType} ${fakeBlob}",no-pty`,
              `no-pty,${name}="x \\" ${fakeType} ${fakeBlob} \\" y"`
            ]
          ) {
            const line = `${opt} ${realType} ${realBlob} victim@host`
            expect(keyIdentity(line)).toBe(`${realType} ${realBlob}`)
            expect(keyIdentity(line)).not.toBe(`${fakeType} ${fakeBlob}`)
          }
        }
      ),
      { numRuns: 500 }
    )
  })

  it("never throws on any text, and the identity of a line without a key is the line itself", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const id = keyIdentity(text)
        const material = keyMaterial(text)
        if (material === undefined) expect(id).toBe(text)
        else expect(id).toBe(`${material.type} ${material.blob}`)
      }),
      { numRuns: 1000 }
    )
  })
})

// =============================================================================
// Dedup
// =============================================================================

/** A small pool, so that sources, the local file and the pins share keys often. */
const pooledKeys = fc.array(fc.constantFrom(...Array.from({ length: 8 }, (_, i) => `ssh-ed25519 AAAAPOOL${i} k${i}`)), {
  maxLength: 10
})

describe("mergeKeys (properties)", () => {
  const input = fc.record({
    sources: fc.array(fc.record({ url: url, keys: pooledKeys }), { maxLength: 4 }),
    local: fc.option(pooledKeys, { nil: undefined }),
    pinned: pooledKeys
  })

  it("no line twice; pins present, first; every source (and local) key exactly once; nothing else", () => {
    fc.assert(
      fc.property(input, ({ local, pinned, sources }) => {
        const merged = mergeKeys(sources, local, pinned)
        const out = allKeys(merged.sections)
        expect(new Set(out).size).toBe(out.length)
        const count = (k: string) => out.filter((x) => x === k).length
        for (const p of pinned) expect(count(p)).toBe(1)
        if (pinned.length > 0) {
          expect(merged.sections[0]?._tag).toBe("Pinned")
          expect(merged.sections[0]?.keys).toEqual([...new Set(pinned)])
        }
        for (const s of sources) for (const k of s.keys) expect(count(k)).toBe(1)
        for (const k of local ?? []) expect(count(k)).toBe(1)
        const union = new Set([...pinned, ...sources.flatMap((s) => s.keys), ...(local ?? [])])
        expect(new Set(out)).toEqual(union)
        // Every dropped line is reported once as a duplicate.
        const inputCount = pinned.length + sources.reduce((n, s) => n + s.keys.length, 0) + (local?.length ?? 0)
        expect(merged.duplicates.length).toBe(inputCount - out.length)
        // One section per source, in config order, each holding its own keys in their order.
        const sourceSections = merged.sections.filter((x) => x._tag === "Source")
        expect(sourceSections.map((x) => x._tag === "Source" && x.url)).toEqual(sources.map((x) => x.url))
        sourceSections.forEach((section, i) => {
          const own = sources[i]?.keys ?? []
          let at = 0
          for (const k of section.keys) {
            at = own.indexOf(k, at)
            expect(at).toBeGreaterThanOrEqual(0)
            at++
          }
        })
        // The local section is last and holds only keys that no pin and no source has.
        const localSection = merged.sections.find((s) => s._tag === "Local")
        if (local === undefined) expect(localSection).toBeUndefined()
        else {
          const provided = new Set([...pinned, ...sources.flatMap((s) => s.keys)])
          for (const k of localSection?.keys ?? []) expect(provided.has(k)).toBe(false)
        }
      }),
      { numRuns: 500 }
    )
  })
})

// =============================================================================
// Revocation
// =============================================================================

describe("selectLocalKeys / markedManagedIdentities (properties)", () => {
  /** Lines from a small pool of keys, each written with or without options and with any comment. */
  const materials = Array.from({ length: 6 }, (_, i) => `ssh-ed25519 AAAAREV${i}`)
  const localLine = fc
    .tuple(
      fc.constantFrom(...materials),
      fc.option(options, { nil: undefined }),
      fc.option(comment, { nil: undefined })
    )
    .map(([m, o, c]) => trimLine([o, m, c].filter((x) => x !== undefined).join(" ")))
  const localLines = fc.array(fc.oneof(localLine, keyLine), { maxLength: 12 })
  const idSet = fc.subarray([...materials, "not-a-key line", "ssh-rsa AAAAELSE"]).map((xs) => new Set(xs))

  const isSubsequence = (sub: ReadonlyArray<string>, of: ReadonlyArray<string>) => {
    let i = 0
    for (const x of of) if (i < sub.length && sub[i] === x) i++
    return i === sub.length
  }

  it("kept and revoked come from the input (in order); a key never managed is always kept", () => {
    fc.assert(
      fc.property(localLines, idSet, idSet, (lines, managed, provided) => {
        const { kept, revoked } = selectLocalKeys(lines, managed, provided)
        expect(isSubsequence(kept, lines)).toBe(true)
        expect(isSubsequence(revoked, lines)).toBe(true)
        expect(kept.length + revoked.length).toBeLessThanOrEqual(lines.length)
        const neverManaged = lines.filter((l) => !managed.has(keyIdentity(l)))
        expect(kept).toEqual(neverManaged)
        for (const r of revoked) {
          expect(managed.has(keyIdentity(r))).toBe(true)
          expect(provided.has(keyIdentity(r))).toBe(false)
        }
        // Managed keys still provided are neither kept nor revoked (the provider's line is written instead).
        const stillProvided = lines.filter((l) => managed.has(keyIdentity(l)) && provided.has(keyIdentity(l)))
        expect(kept.length + revoked.length + stillProvided.length).toBe(lines.length)
      }),
      { numRuns: 500 }
    )
  })

  it("a file without an AuthKeySync header marks nothing as managed, whatever its comments say", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(lineWithoutLf, keyLine, url.map((u) => `# Source: ${u}`)), { maxLength: 10 }),
        (ls) => {
          const text = ls.join("\n")
          fc.pre(managedBody(text) === undefined)
          expect(markedManagedIdentities(text).size).toBe(0)
        }
      ),
      { numRuns: 300 }
    )
  })

  it("in a header file, only keys under # Source: / # Pinned markers count as managed, never Local ones", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("source", "pinned", "local"), fc.array(keyLine, { maxLength: 3 })), {
          maxLength: 5
        }),
        (blocks) => {
          const secs: Array<Section> = blocks.map(([kind, keys]) =>
            kind === "source"
              ? { _tag: "Source", url: "https://keys.example/x", keys }
              : kind === "pinned"
              ? { _tag: "Pinned", keys }
              : { _tag: "Local", keys }
          )
          const ids = markedManagedIdentities(renderHeader(BUILD, new Date(0)) + renderBody(secs))
          const expected = new Set(secs.filter((s) => s._tag !== "Local").flatMap((s) => s.keys.map(keyIdentity)))
          expect(ids).toEqual(expected)
        }
      ),
      { numRuns: 300 }
    )
  })
})

// =============================================================================
// Guards
// =============================================================================

describe("checkGuards (properties)", () => {
  const counts = fc.nat({ max: 50 }).chain((before) =>
    fc.record({ before: fc.constant(before), after: fc.nat({ max: 60 }), removed: fc.nat({ max: before }) })
  )
  const policy = fc.record({
    allow_empty: fc.boolean(),
    max_removed_keys: fc.option(fc.nat({ max: 60 }), { nil: undefined }),
    max_removed_percent: fc.option(fc.double({ min: 0, max: 100, noNaN: true }), { nil: undefined })
  })

  it("lockout iff before > 0, after == 0 and not allow_empty; otherwise shrink iff a limit is exceeded", () => {
    fc.assert(
      fc.property(counts, policy, (c, p) => {
        const refused = checkGuards("bob", "/home/bob/.ssh/authorized_keys", c, p)
        const lockout = c.before > 0 && c.after === 0 && !p.allow_empty
        expect(refused?.guard === "lockout").toBe(lockout)
        if (lockout) return
        const shrink = (p.max_removed_keys !== undefined && c.removed > p.max_removed_keys) ||
          (p.max_removed_percent !== undefined && c.before > 0 && (c.removed / c.before) * 100 > p.max_removed_percent)
        expect(refused?.guard).toBe(shrink ? "shrink" : undefined)
        if (refused !== undefined) {
          expect(refused.user).toBe("bob")
          expect(refused.message).toContain("/home/bob/.ssh/authorized_keys")
        }
      }),
      { numRuns: 2000 }
    )
  })

  it("removing nothing is never refused by the shrink guard", () => {
    fc.assert(
      fc.property(counts, policy, (c, p) => {
        const refused = checkGuards("bob", "/p", { ...c, removed: 0 }, p)
        expect(refused === undefined || refused.guard === "lockout").toBe(true)
      })
    )
  })
})

// =============================================================================
// Config decoding
// =============================================================================

/** A token-looking secret that cannot appear in any message by chance. */
const secret = fc
  .tuple(fc.constantFrom("Bearer ", "token ", "Basic ", ""), fc.stringMatching(/^[A-Za-z0-9]{24,40}$/))
  .map(([scheme, s]) => `${scheme}SECRET${s}`)

const isEither = (value: unknown) => Either.isEither(value) && (Either.isLeft(value) || Either.isRight(value))

describe("decodeConfig / decodeConfigValue (properties)", () => {
  it("arbitrary text never throws and always gives an Either (a ConfigError on the left)", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyText,
          fc.jsonValue().map((v) => stringify(v) ?? ""),
          fc.anything().map((v) => {
            try {
              // yaml's stringify(undefined) is undefined, not text.
              return stringify(v) ?? ""
            } catch {
              return String(v)
            }
          })
        ),
        (text) => {
          const result = decodeConfig(FILE, text)
          expect(isEither(result)).toBe(true)
          if (Either.isLeft(result)) {
            expect(result.left._tag).toBe("ConfigError")
            expect(result.left.message.startsWith(`config ${FILE}: `)).toBe(true)
          }
        }
      ),
      { numRuns: 1000 }
    )
  })

  it("YAML-shaped text built from config words never throws", () => {
    const word = fc.constantFrom(
      "users:",
      "policy:",
      "- username: bob",
      "sources:",
      "- url: https://k.example/a",
      "headers:",
      "body:",
      "timeout_seconds: 0",
      "method: PATCH",
      "pinned_keys:",
      "- x",
      "allow_empty: yes",
      "max_removed_percent: 101",
      "&a [x, *b]",
      "&b {k: v}",
      "*a",
      "*b",
      "!!binary x",
      "? complex",
      "{",
      "}",
      "[",
      "]",
      "'",
      "\"",
      "|",
      ">",
      "---",
      "...",
      "%YAML 1.1",
      "<<: *a",
      "~",
      "null",
      "state_dir: rel"
    )
    const indent = fc.constantFrom("", "  ", "    ", "      ", "\t")
    fc.assert(
      fc.property(fc.array(fc.tuple(indent, word), { maxLength: 20 }), (ls) => {
        const result = decodeConfig(FILE, ls.map(([i, w]) => i + w).join("\n"))
        expect(isEither(result)).toBe(true)
      }),
      { numRuns: 1000 }
    )
  })

  // A YAML alias inside its own anchor (`policy: &p {loop: *p}`) makes doc.toJS() build a circular value.
  it("a self-referencing YAML alias is a ConfigError, not a thrown RangeError", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          "policy: &p\n  backup_enabled: true\n  loop: *p\nusers:\n  - username: bob\n    sources: [{url: https://k.example/}]\n",
          "users: &u [*u]\n",
          "&a [*a, *a]\n",
          "users:\n  - &x {username: bob, sources: [{url: https://k.example/}], again: *x}\n"
        ),
        (text) => {
          const result = decodeConfig(FILE, text)
          expect(Either.isLeft(result)).toBe(true)
        }
      )
    )
  })

  it("arbitrary values never throw and always give an Either", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.jsonValue(), fc.anything(), fc.record({ users: fc.anything(), policy: fc.anything() })),
        (value) => {
          expect(isEither(decodeConfigValue(FILE, value))).toBe(true)
        }
      ),
      { numRuns: 1000 }
    )
  })

  /** A valid config whose one source carries `secret` as a header value and as the body. */
  const configWith = (s: string) => ({
    users: [{
      username: "bob",
      sources: [{ url: "https://keys.example/bob", headers: { Authorization: s, "X-Api-Key": s }, body: s }]
    }]
  })

  /** Breakage that is local to one field, including the secret-bearing ones. */
  const leafBreakage = fc.constantFrom(
    (c: any, _s: string) => void (c.users[0].sources[0].url = "ftp://keys.example"),
    (c: any) => void (c.users[0].sources[0].timeout_seconds = 0),
    (c: any) => void (c.users[0].sources[0].method = "PATCH"),
    (c: any, s: string) => void (c.users[0].sources[0].headers.Authorization = `${s}\r\nX-Injected: 1`),
    (c: any, s: string) => void (c.users[0].sources[0].headers.Authorization = [s]),
    (c: any, s: string) => void (c.users[0].sources[0].headers.Authorization = { value: s }),
    (c: any, s: string) => void (c.users[0].sources[0].headers = s),
    (c: any, s: string) => void (c.users[0].sources[0].headers = [s, s]),
    (c: any, s: string) => void (c.users[0].sources[0].headers["Bad Name"] = s),
    (c: any, s: string) => void (c.users[0].sources[0].body = [s]),
    (c: any, s: string) => void (c.users[0].sources[0].body = { token: s }),
    (c: any) => void (c.users[0].pinned_keys = ["one-field"]),
    (c: any) => void (c.users.push({ username: "bob", sources: c.users[0].sources })),
    (c: any) => void (c.policy = { max_removed_percent: 400, state_dir: "relative" }),
    (c: any) => void (c.users[0].username = " bob ")
  )

  it("errors about a broken field never contain header values or bodies (value and YAML text)", () => {
    fc.assert(
      fc.property(secret, fc.array(leafBreakage, { minLength: 1, maxLength: 4 }), (s, breaks) => {
        const cfg: any = configWith(s)
        for (const b of breaks) {
          try {
            b(cfg, s)
          } catch {
            // An earlier break replaced what this one edits (e.g. headers became a string): skip it.
          }
        }
        const fromValue = decodeConfigValue(FILE, cfg)
        expect(Either.isLeft(fromValue)).toBe(true)
        if (Either.isLeft(fromValue)) expect(fromValue.left.message).not.toContain(s)
        const fromText = decodeConfig(FILE, stringify(cfg))
        expect(Either.isLeft(fromText)).toBe(true)
        if (Either.isLeft(fromText)) expect(fromText.left.message).not.toContain(s)
        // Not even a telling piece of it.
        const core = s.replace(/^.* /, "")
        for (const result of [fromValue, fromText]) {
          if (Either.isLeft(result)) expect(result.left.message).not.toContain(core)
        }
      }),
      { numRuns: 500 }
    )
  })

  /**
   * Breakage of the shape around a source or a user: what a forgotten YAML dash does (`sources:` followed by a map
   * instead of a list). Product bug: Config.ts only hides the "actual" value of issues whose path is under `headers`
   * or ends in `body`; an issue at `users[0].sources` or `users` prints the whole object, tokens included.
   */
  const shapeBreakage = fc.constantFrom(
    (c: any) => void (c.users[0].sources = c.users[0].sources[0]),
    (c: any) => void (c.users = c.users[0]),
    (c: any) => void (c.users[0].sources = [c.users[0].sources]),
    (c: any) => void (c.users[0].sources[0] = [c.users[0].sources[0]]),
    (c: any) => void (c.users[0] = [c.users[0]]),
    (c: any) => void (c.users[0].sources[0] = JSON.stringify(c.users[0].sources[0]))
  )

  it("errors about the shape around a source never contain its header values or body", () => {
    fc.assert(
      fc.property(secret, shapeBreakage, (s, brk) => {
        const cfg: any = configWith(s)
        brk(cfg)
        for (const result of [decodeConfigValue(FILE, cfg), decodeConfig(FILE, stringify(cfg))]) {
          expect(Either.isLeft(result)).toBe(true)
          if (Either.isLeft(result)) expect(result.left.message).not.toContain(s.replace(/^.* /, ""))
        }
      }),
      { numRuns: 200 }
    )
  })

  it("a forgotten dash under sources: does not print the Authorization header", () => {
    const text = [
      "users:",
      "  - username: bob",
      "    sources:",
      "      url: https://keys.example/bob",
      "      headers:",
      "        Authorization: Bearer SECRET_TOKEN_XYZ",
      ""
    ].join("\n")
    const result = decodeConfig(FILE, text)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect(result.left.message).toContain("users[0].sources")
      expect(result.left.message).not.toContain("SECRET_TOKEN_XYZ")
    }
  })
})
