import { describe, expect, it } from "vitest"
import { hasInvisible, jsonWithoutInvisible, shortened, visibleText } from "../../src/pipeline/Display.js"

describe("visibleText", () => {
  it.each([
    ["plain text and tabs stay", "ssh-ed25519 AAAA me\tlaptop", "ssh-ed25519 AAAA me\tlaptop"],
    ["ESC sequences become \\x1b", "me\x1b[8mhidden\x1b[0m", "me\\x1b[8mhidden\\x1b[0m"],
    ["OSC 52 with BEL", "\x1b]52;c;ZWNobw==\x07", "\\x1b]52;c;ZWNobw==\\x07"],
    ["CR, DEL, NUL", "a\rb\x7fc\x00", "a\\x0db\\x7fc\\x00"],
    ["C1 CSI and NEL", "a\u009b2J\u0085", "a\\x9b2J\\x85"],
    ["line separator and a bidirectional override", "a\u2028b\u202ec", "a\\u2028b\\u202ec"],
    ["other non-ASCII text stays", "José Łukasz 東京", "José Łukasz 東京"]
  ])("%s", (_name, input, expected) => {
    expect(visibleText(input)).toBe(expected)
  })
})

describe("jsonWithoutInvisible", () => {
  it("escapes what JSON.stringify leaves raw, and the value is unchanged", () => {
    const value = { k: "a\u2028b\u0085c\u202ed", n: 1 }
    const json = jsonWithoutInvisible(JSON.stringify(value))
    expect(hasInvisible(json)).toBe(false)
    expect(JSON.parse(json)).toEqual(value)
  })
  it("leaves other text alone", () => {
    expect(jsonWithoutInvisible("{\"k\":\"José\"}")).toBe("{\"k\":\"José\"}")
  })
})

describe("shortened", () => {
  it("leaves text up to the limit as it is", () => {
    expect(shortened("a".repeat(60), 60)).toBe("a".repeat(60))
  })
  it("cuts longer text and marks the cut", () => {
    expect(shortened("a".repeat(61), 60)).toBe(`${"a".repeat(57)}...`)
  })
  it("never splits a surrogate pair: an emoji counts as one character", () => {
    const text = `${"a".repeat(56)}😀😀😀😀😀`
    const cut = shortened(text, 60)
    expect(cut).toBe(`${"a".repeat(56)}😀...`)
    expect(/\p{Cs}/u.test(cut)).toBe(false) // no lone surrogate
    expect(shortened(`${"a".repeat(55)}😀😀😀😀😀`, 60)).toBe(`${"a".repeat(55)}😀😀😀😀😀`)
  })
})
