import { describe, expect, it } from "vitest"
import type { Section } from "../../src/pipeline/Dedup.js"
import { renderAuthorizedKeys, renderBody, renderHeader } from "../../src/pipeline/Render.js"
import { decideWrite, type WriteDecision } from "../../src/pipeline/syncUser.js"
import type { ExistingFile } from "../../src/services/SshFiles.js"

const build = { version: "v1.0.0", commit: "abc", built: "2025-01-01T00:00:00Z" }
const owner = { uid: 1000, gid: 1000 }
const sections: ReadonlyArray<Section> = [
  { _tag: "Source", url: "https://a.example/keys", keys: ["ssh-ed25519 AAAA k1"] },
  { _tag: "Local", keys: ["ssh-rsa BBBB k2"] }
]
const body = renderBody(sections)
// Written by an earlier run: same body, older "Last sync" (and another version).
const managed = renderAuthorizedKeys({ ...build, version: "v0.9.0" }, new Date("2024-06-01T12:00:00Z"), sections)

const file = (content: string, overrides: Partial<Omit<ExistingFile, "content">> = {}): ExistingFile => ({
  content,
  mode: 0o600,
  uid: 1000,
  gid: 1000,
  ...overrides
})

describe("decideWrite", () => {
  const cases: ReadonlyArray<readonly [string, ExistingFile | undefined, string, WriteDecision]> = [
    ["no file -> content", undefined, body, "content"],
    ["no file, nothing to write -> content", undefined, "", "content"],
    ["same body, right mode and owner -> unchanged", file(managed), body, "unchanged"],
    ["different body -> content", file(managed), renderBody([{ _tag: "Local", keys: ["ssh-rsa BBBB k2"] }]), "content"],
    [
      "different body and wrong mode -> content",
      file(managed, { mode: 0o644 }),
      "\n# Local (preserved)\nx y\n",
      "content"
    ],
    ["same body, mode 0644 -> metadata", file(managed, { mode: 0o644 }), body, "metadata"],
    ["same body, mode 0400 -> metadata", file(managed, { mode: 0o400 }), body, "metadata"],
    ["same body, mode 0700 -> metadata", file(managed, { mode: 0o700 }), body, "metadata"],
    ["same body, wrong uid -> metadata", file(managed, { uid: 0 }), body, "metadata"],
    ["same body, wrong gid -> metadata", file(managed, { gid: 0 }), body, "metadata"],
    ["same body, wrong uid and gid -> metadata", file(managed, { uid: 0, gid: 0 }), body, "metadata"],
    // Not written by AuthKeySync: must be rewritten even if its keys are exactly the ones we would write.
    ["foreign unmanaged file -> content", file("ssh-ed25519 AAAA k1\nssh-rsa BBBB k2\n"), body, "content"],
    ["foreign file equal to the body -> content", file(body), body, "content"],
    ["empty foreign file, empty body -> content", file(""), "", "content"],
    [
      "header-only file, nothing to write -> unchanged",
      file(renderAuthorizedKeys(build, new Date(0), [])),
      "",
      "unchanged"
    ],
    ["header-only file, keys to write -> content", file(renderAuthorizedKeys(build, new Date(0), [])), body, "content"],
    ["hand-edited managed file -> content", file(managed + "ssh-ed25519 CCCC added-by-hand\n"), body, "content"]
  ]
  it.each(cases)("%s", (_name, existing, newBody, expected) => {
    expect(decideWrite(existing, newBody, owner)).toBe(expected)
  })
})

describe("decideWrite: a key hidden in the header block", () => {
  it("is not 'unchanged' (the whole file's keys must match, not only the body)", () => {
    const body = "\n# Source: https://k.example/a\nssh-ed25519 AAAA a\n"
    const header = renderHeader({ version: "v1", commit: "c", built: "b" }, new Date(0))
    const lines = header.split("\n")
    lines.splice(3, 0, "ssh-ed25519 AAAAintruder evil@x")
    const smuggled = lines.join("\n") + body
    expect(decideWrite({ content: header + body, mode: 0o600, uid: 1, gid: 1 }, body, { uid: 1, gid: 1 })).toBe(
      "unchanged"
    )
    expect(decideWrite({ content: smuggled, mode: 0o600, uid: 1, gid: 1 }, body, { uid: 1, gid: 1 })).toBe("content")
  })
})
