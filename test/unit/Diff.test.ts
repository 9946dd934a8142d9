import { describe, expect, it } from "vitest"
import type { Section } from "../../src/pipeline/Dedup.js"
import { diffKeys, type KeyDiff, renderDiff } from "../../src/pipeline/Diff.js"

const A = "https://a.example/keys"
const B = "https://b.example/keys"

describe("diffKeys", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly before: ReadonlyArray<string>
    readonly after: ReadonlyArray<Section>
    readonly expected: KeyDiff
  }> = [
    { name: "nothing before or after", before: [], after: [], expected: { added: [], removed: [] } },
    {
      name: "all keys new (no file before)",
      before: [],
      after: [{ _tag: "Source", url: A, keys: ["k1 a", "k2 b"] }, { _tag: "Local", keys: [] }],
      expected: {
        added: [{ key: "k1 a", section: `Source: ${A}` }, { key: "k2 b", section: `Source: ${A}` }],
        removed: []
      }
    },
    {
      name: "no change",
      before: ["k1 a", "k2 b"],
      after: [{ _tag: "Source", url: A, keys: ["k1 a"] }, { _tag: "Local", keys: ["k2 b"] }],
      expected: { added: [], removed: [] }
    },
    {
      name: "a key moving from Local to a source is not a change",
      before: ["k1 a"],
      after: [{ _tag: "Source", url: B, keys: ["k1 a"] }],
      expected: { added: [], removed: [] }
    },
    {
      name: "added and removed, in file order",
      before: ["old1 x", "k1 a", "old2 y"],
      after: [
        { _tag: "Source", url: A, keys: ["k1 a", "new1 p"] },
        { _tag: "Source", url: B, keys: ["new2 q"] },
        { _tag: "Local", keys: ["new3 r"] }
      ],
      expected: {
        added: [
          { key: "new1 p", section: `Source: ${A}` },
          { key: "new2 q", section: `Source: ${B}` },
          { key: "new3 r", section: "Local (preserved)" }
        ],
        removed: [{ key: "old1 x" }, { key: "old2 y" }]
      }
    },
    {
      name: "everything removed",
      before: ["k1 a", "k2 b"],
      after: [{ _tag: "Source", url: A, keys: [] }],
      expected: { added: [], removed: [{ key: "k1 a" }, { key: "k2 b" }] }
    },
    {
      name: "a key duplicated in the old file is removed once",
      before: ["gone z", "k1 a", "gone z"],
      after: [{ _tag: "Source", url: A, keys: ["k1 a"] }],
      expected: { added: [], removed: [{ key: "gone z" }] }
    },
    {
      name: "a key duplicated in the old file and kept is not a change",
      before: ["k1 a", "k1 a"],
      after: [{ _tag: "Source", url: A, keys: ["k1 a"] }],
      expected: { added: [], removed: [] }
    },
    {
      name: "a different comment is a different key",
      before: ["ssh-ed25519 AAAA user@laptop"],
      after: [{ _tag: "Source", url: A, keys: ["ssh-ed25519 AAAA user@host"] }],
      expected: {
        added: [{ key: "ssh-ed25519 AAAA user@host", section: `Source: ${A}` }],
        removed: [{ key: "ssh-ed25519 AAAA user@laptop" }]
      }
    }
  ]
  it.each(cases)("$name", ({ after, before, expected }) => {
    expect(diffKeys(before, after)).toEqual(expected)
  })
})

describe("renderDiff", () => {
  const path = "/home/bob/.ssh/authorized_keys"
  const cases: ReadonlyArray<readonly [string, KeyDiff, string]> = [
    [
      "no changes",
      { added: [], removed: [] },
      "--- /home/bob/.ssh/authorized_keys\n+++ /home/bob/.ssh/authorized_keys (after sync)\n (no key changes)\n"
    ],
    [
      "removed before added",
      { added: [{ key: "new1 p", section: `Source: ${A}` }, { key: "new2 q" }], removed: [{ key: "old1 x" }] },
      "--- /home/bob/.ssh/authorized_keys\n+++ /home/bob/.ssh/authorized_keys (after sync)\n-old1 x\n+new1 p\n+new2 q\n"
    ],
    [
      "only added",
      { added: [{ key: "k a", section: "Local (preserved)" }], removed: [] },
      "--- /home/bob/.ssh/authorized_keys\n+++ /home/bob/.ssh/authorized_keys (after sync)\n+k a\n"
    ],
    [
      "only removed",
      { added: [], removed: [{ key: "k a" }, { key: "k b" }] },
      "--- /home/bob/.ssh/authorized_keys\n+++ /home/bob/.ssh/authorized_keys (after sync)\n-k a\n-k b\n"
    ]
  ]
  it.each(cases)("%s", (_name, diff, expected) => {
    expect(renderDiff(path, diff)).toBe(expected)
  })

  it("renders what diffKeys computes", () => {
    const diff = diffKeys(["old x", "same y"], [{ _tag: "Source", url: A, keys: ["same y", "new z"] }])
    expect(renderDiff("ak", diff)).toBe("--- ak\n+++ ak (after sync)\n-old x\n+new z\n")
  })
})
