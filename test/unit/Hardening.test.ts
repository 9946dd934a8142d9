/**
 * The pure steps added for hardening: key identity and fingerprints, guards, revocation, source limits, account
 * and config-file checks. Plain values in, plain values out.
 */
import { describe, expect, it } from "vitest"
import { mergeKeys, PINNED_LABEL } from "../../src/pipeline/Dedup.js"
import { checkGuards } from "../../src/pipeline/Guards.js"
import { keyFingerprint, keyIdentity, keyMaterial } from "../../src/pipeline/KeyIdentity.js"
import { configFileProblem, configTypeProblem, MAX_CONFIG_BYTES } from "../../src/pipeline/loadConfig.js"
import { privateDirectoryProblem } from "../../src/pipeline/PrivateDirectory.js"
import { renderAuthorizedKeys, renderBody } from "../../src/pipeline/Render.js"
import {
  identitiesOf,
  markedManagedIdentities,
  markedManagedLines,
  providedIdentities,
  selectLocalKeys
} from "../../src/pipeline/Revocation.js"
import { groupByHome, groupBySshDir } from "../../src/pipeline/runAll.js"
import { guardCounts, MAX_LINE_BYTES, sourceLimitProblem, unsafeUsernameReason } from "../../src/pipeline/syncUser.js"

// A real ed25519 public key (from ssh-keygen) and its fingerprint as `ssh-keygen -lf` prints it.
const REAL = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1mk5hqgl2RJYTdiG87pSjs68yTb7XPHbQVX9zzwanM"
const REAL_FP = "SHA256:j5xG/hhaFrU8SjZmhUpDUIvuTf00Quf8NDf+LRXspwg"
// The start of an ssh-rsa blob: length 7, "ssh-rsa", then the exponent and modulus.
const RSA_BLOB = Buffer.concat([
  Buffer.from([0, 0, 0, 7]),
  Buffer.from("ssh-rsa"),
  Buffer.from([0, 0, 0, 3, 1, 0, 1, 0, 0, 0, 3, 0, 0xc5, 0x11])
]).toString("base64")

describe("keyMaterial / keyIdentity", () => {
  const cases: ReadonlyArray<[string, string, string]> = [
    ["plain key", "ssh-ed25519 AAAAB1 alice@laptop", "ssh-ed25519 AAAAB1"],
    ["comment does not count", "ssh-ed25519 AAAAB1 other comment here", "ssh-ed25519 AAAAB1"],
    ["options before the key", "no-pty,from=\"10.0.0.0/8\" ssh-ed25519 AAAAB1 c", "ssh-ed25519 AAAAB1"],
    ["quoted option with spaces", "command=\"echo hi there\" ssh-rsa AAAAB3== c", "ssh-rsa AAAAB3=="],
    [
      "a key-like text inside quotes is not the key",
      "command=\"x ssh-ed25519 AAAAFAKE y\" ssh-ed25519 AAAAREAL c",
      "ssh-ed25519 AAAAREAL"
    ],
    [
      "escaped quote inside quotes",
      "command=\"a \\\" ssh-ed25519 AAAAFAKE\" ssh-ed25519 AAAAREAL",
      "ssh-ed25519 AAAAREAL"
    ],
    ["ecdsa", "ecdsa-sha2-nistp256 AAAAE2 c", "ecdsa-sha2-nistp256 AAAAE2"],
    ["security key", "sk-ssh-ed25519@openssh.com AAAAGnNr c", "sk-ssh-ed25519@openssh.com AAAAGnNr"],
    ["certificate", "ssh-ed25519-cert-v01@openssh.com AAAAIHNz c", "ssh-ed25519-cert-v01@openssh.com AAAAIHNz"],
    ["unknown type: the whole line", "foo-key AAAAB1 c", "foo-key AAAAB1 c"],
    ["not base64: the whole line", "ssh-ed25519 not!base64 c", "ssh-ed25519 not!base64 c"],
    // sshd's base64 decoder skips these inside the key (found in review: such a line kept a revoked key working).
    [
      "vertical tab, form feed, CR inside the key: the same key, as sshd reads it",
      "ssh-ed25519 AAAA\vB\fB\r1 c",
      "ssh-ed25519 AAAABB1"
    ],
    ["the same inside a key after options", "no-pty ssh-ed25519 AAAA\vBB1 c", "ssh-ed25519 AAAABB1"],
    // The type written inside the blob decides, as for sshd (found in review: rsa-sha2-512 <an ssh-rsa key> works).
    ["an ssh-rsa key written as rsa-sha2-512", `rsa-sha2-512 ${RSA_BLOB} c`, `ssh-rsa ${RSA_BLOB}`],
    ["an ssh-rsa key written as rsa-sha2-256 after options", `no-pty rsa-sha2-256 ${RSA_BLOB}`, `ssh-rsa ${RSA_BLOB}`],
    ["a real ed25519 key keeps its type", `${REAL} me`, REAL]
  ]
  for (const [name, line, identity] of cases) {
    it(name, () => expect(keyIdentity(line)).toBe(identity))
  }

  it("finds nothing in a line without a key", () => {
    expect(keyMaterial("just words")).toBeUndefined()
  })

  it("fingerprints like ssh-keygen -l", () => {
    expect(keyFingerprint(`${REAL} me@host`)).toBe(REAL_FP)
    expect(keyFingerprint(`from="1.2.3.4" ${REAL}`)).toBe(REAL_FP)
    expect(keyFingerprint("no key here")).toBeUndefined()
    const [type, blob] = REAL.split(" ") as [string, string]
    expect(keyFingerprint(`${type} ${blob.slice(0, 10)}\v${blob.slice(10)} me@host`)).toBe(REAL_FP)
  })
})

describe("checkGuards", () => {
  const policy: { allow_empty: boolean; max_removed_keys?: number; max_removed_percent?: number } = {
    allow_empty: false
  }
  const cases: ReadonlyArray<{
    name: string
    counts: { before: number; after: number; removed: number }
    policy?: Partial<typeof policy>
    refused: string | undefined
  }> = [
    { name: "a normal update", counts: { before: 3, after: 3, removed: 1 }, refused: undefined },
    { name: "emptying a file with keys", counts: { before: 2, after: 0, removed: 2 }, refused: "lockout" },
    {
      name: "emptying with allow_empty",
      counts: { before: 2, after: 0, removed: 2 },
      policy: { allow_empty: true },
      refused: undefined
    },
    { name: "an empty file staying empty", counts: { before: 0, after: 0, removed: 0 }, refused: undefined },
    {
      name: "removals at max_removed_keys",
      counts: { before: 5, after: 3, removed: 2 },
      policy: { max_removed_keys: 2 },
      refused: undefined
    },
    {
      name: "removals over max_removed_keys",
      counts: { before: 5, after: 2, removed: 3 },
      policy: { max_removed_keys: 2 },
      refused: "shrink"
    },
    {
      name: "removals at max_removed_percent",
      counts: { before: 4, after: 2, removed: 2 },
      policy: { max_removed_percent: 50 },
      refused: undefined
    },
    {
      name: "removals over max_removed_percent",
      counts: { before: 5, after: 2, removed: 3 },
      policy: { max_removed_percent: 50 },
      refused: "shrink"
    },
    {
      name: "percent with no keys before",
      counts: { before: 0, after: 4, removed: 0 },
      policy: { max_removed_percent: 0 },
      refused: undefined
    },
    {
      name: "max_removed_keys 0 allows additions",
      counts: { before: 2, after: 3, removed: 0 },
      policy: { max_removed_keys: 0 },
      refused: undefined
    }
  ]
  for (const c of cases) {
    it(c.name, () => {
      const result = checkGuards("alice", "/home/alice/.ssh/authorized_keys", c.counts, { ...policy, ...c.policy })
      expect(result?.guard).toBe(c.refused)
    })
  }

  it("says what it refused and how to allow it", () => {
    expect(checkGuards("alice", "/h/a", { before: 2, after: 0, removed: 2 }, policy)?.message).toBe(
      "lockout guard refused to rewrite /h/a: the new file would have no keys (it has 2); set policy.allow_empty: true to allow this"
    )
    expect(
      checkGuards("alice", "/h/a", { before: 5, after: 2, removed: 3 }, { ...policy, max_removed_percent: 50 })?.message
    )
      .toBe(
        "shrink guard refused to rewrite /h/a: 3 of 5 keys (60%) would be removed, more than policy.max_removed_percent (50%)"
      )
  })
})

describe("selectLocalKeys (revocation)", () => {
  const K1 = "ssh-ed25519 AAAAK1 k1"
  const K2 = "ssh-ed25519 AAAAK2 k2"
  const L = "ssh-ed25519 AAAALL laptop"

  it("keeps keys the tool never managed", () => {
    expect(selectLocalKeys([L], new Set(), new Set())).toEqual({ kept: [L], revoked: [] })
  })
  it("revokes a managed key no source provides any more", () => {
    expect(selectLocalKeys([K1, K2, L], new Set([keyIdentity(K1), keyIdentity(K2)]), new Set([keyIdentity(K1)])))
      .toEqual({ kept: [L], revoked: [K2] })
  })
  it("revokes by key, whatever options or comment the user put around it", () => {
    const disguised = "no-pty ssh-ed25519 AAAAK2 my-own-key-honest"
    expect(selectLocalKeys([disguised], new Set([keyIdentity(K2)]), new Set())).toEqual({
      kept: [],
      revoked: [disguised]
    })
  })
  it("revokes a key split by white space sshd skips inside it (\\v, \\f, \\r)", () => {
    const split = ["ssh-ed25519 AA\vAAK2 mine", "ssh-ed25519 AAAA\fK2", "ssh-ed25519 AAAAK\r2 x"]
    expect(selectLocalKeys(split, new Set([keyIdentity(K2)]), new Set())).toEqual({ kept: [], revoked: split })
  })
  it("revokes an ssh-rsa key the user renamed rsa-sha2-512 or rsa-sha2-256 (sshd takes it as the same key)", () => {
    const renamed = [`rsa-sha2-512 ${RSA_BLOB} mine`, `from="10.0.0.1" rsa-sha2-256 ${RSA_BLOB}`]
    const managed = new Set([keyIdentity(`ssh-rsa ${RSA_BLOB} from-source`)])
    expect(selectLocalKeys(renamed, managed, new Set())).toEqual({ kept: [], revoked: renamed })
  })
  it("drops the old line of a managed key that is still provided (the provider's line is written instead)", () => {
    expect(selectLocalKeys(["ssh-ed25519 AAAAK1 old-comment"], new Set([keyIdentity(K1)]), new Set([keyIdentity(K1)])))
      .toEqual({ kept: [], revoked: [] })
  })
  it("with the lines written last time: drops only those, keeps the user's own line of a key still provided", () => {
    const old = "ssh-ed25519 AAAAK1 old-comment"
    const variant = `from="10.0.0.0/8" ssh-ed25519 AAAAK1 me@laptop`
    const managed = new Set([keyIdentity(K1), keyIdentity(K2)])
    expect(selectLocalKeys([old, variant, K2, L], managed, new Set([keyIdentity(K1)]), new Set([old, K2])))
      .toEqual({ kept: [variant, L], revoked: [K2] })
  })
  it("with the lines written last time: a revoked key goes in every form, the user's own included", () => {
    const variant = "no-pty ssh-ed25519 AAAAK2 mine"
    expect(selectLocalKeys([K2, variant], new Set([keyIdentity(K2)]), new Set(), new Set([K2])))
      .toEqual({ kept: [], revoked: [K2, variant] })
  })
})

describe("markedManagedLines (first run, no record)", () => {
  it("the key lines under # Source: and # Pinned, not those under # Local (preserved)", () => {
    const file = renderAuthorizedKeys({ version: "v1", commit: "c", built: "b" }, new Date(0), [
      { _tag: "Pinned", keys: ["ssh-ed25519 AAAAPP pin"] },
      { _tag: "Source", url: "https://k.example/a", keys: ["ssh-ed25519 AAAAS1 s1"] },
      { _tag: "Local", keys: ["ssh-ed25519 AAAAS1 my-variant"] }
    ])
    expect([...markedManagedLines(file)].sort()).toEqual(["ssh-ed25519 AAAAPP pin", "ssh-ed25519 AAAAS1 s1"])
  })
})

describe("markedManagedIdentities (first run, no record)", () => {
  const build = { version: "v1", commit: "c", built: "b" }
  const file = renderAuthorizedKeys(build, new Date(0), [
    { _tag: "Pinned", keys: ["ssh-ed25519 AAAAPP pin"] },
    { _tag: "Source", url: "https://k.example/a", keys: ["ssh-ed25519 AAAAS1 s1"] },
    { _tag: "Local", keys: ["ssh-ed25519 AAAALL local"] }
  ])

  it("counts keys under # Source: and # Pinned sections of an AuthKeySync file", () => {
    expect([...markedManagedIdentities(file)].sort()).toEqual(["ssh-ed25519 AAAAPP", "ssh-ed25519 AAAAS1"])
  })
  it("counts nothing in a file without the AuthKeySync header", () => {
    expect(markedManagedIdentities("# Source: https://x\nssh-ed25519 AAAAS1 s1\n").size).toBe(0)
  })
})

describe("pinned keys in mergeKeys and rendering", () => {
  const P = "ssh-ed25519 AAAAPIN break-glass"
  const S = "ssh-ed25519 AAAASRC src"
  it("come first and win over a source that serves the same line", () => {
    const merged = mergeKeys([{ url: "https://a", keys: [P, S] }], [P], [P])
    expect(merged.sections).toEqual([
      { _tag: "Pinned", keys: [P] },
      { _tag: "Source", url: "https://a", keys: [S] },
      { _tag: "Local", keys: [] }
    ])
    expect(merged.duplicates.map((d) => d.keptIn)).toEqual([PINNED_LABEL, PINNED_LABEL])
    expect(renderBody(merged.sections)).toBe(`\n# Pinned (break-glass)\n${P}\n\n# Source: https://a\n${S}\n`)
  })
  it("count as provided for revocation; local keys do not", () => {
    const ids = providedIdentities(
      mergeKeys([{ url: "https://a", keys: [S] }], ["ssh-ed25519 AAAALOC l"], [P]).sections
    )
    expect([...ids].sort()).toEqual(["ssh-ed25519 AAAAPIN", "ssh-ed25519 AAAASRC"])
    expect([...identitiesOf([[P], [S, S]])].sort()).toEqual(["ssh-ed25519 AAAAPIN", "ssh-ed25519 AAAASRC"])
  })
})

describe("sourceLimitProblem", () => {
  it("accepts a line of exactly the cap", () => {
    expect(sourceLimitProblem(`ssh-ed25519 ${"A".repeat(MAX_LINE_BYTES - 12)}\n`, 1, 10)).toBeUndefined()
  })
  it("names the first line over the cap", () => {
    expect(sourceLimitProblem(`a b\n${"x".repeat(MAX_LINE_BYTES + 1)}`, 1, 10)).toEqual({
      reason: "LineTooLong",
      detail: `line 2 is ${MAX_LINE_BYTES + 1} bytes long, more than ${MAX_LINE_BYTES}`
    })
  })
  it("refuses more keys than max_keys_per_source", () => {
    expect(sourceLimitProblem("a b\n", 4, 3)?.reason).toBe("TooManyKeys")
    expect(sourceLimitProblem("a b\n", 3, 3)).toBeUndefined()
  })
  it("a CRLF line at exactly the cap is not over it", () => {
    expect(sourceLimitProblem(`ssh-ed25519 ${"A".repeat(MAX_LINE_BYTES - 12)}\r\n`, 1, 10)).toBeUndefined()
  })
})

describe("unsafeUsernameReason", () => {
  const cases: ReadonlyArray<[string, string | undefined]> = [
    ["alice", undefined],
    ["svc-deploy.01", undefined],
    ["a/b", "the name contains a slash"],
    ["../root", "the name contains a slash"],
    ["bad\nname", "the name contains a control character"],
    ["tab\there", "the name contains a control character"],
    ["del\x7f", "the name contains a control character"],
    ["..", "the name is a path component"]
  ]
  for (const [name, reason] of cases) it(JSON.stringify(name), () => expect(unsafeUsernameReason(name)).toBe(reason))
})

describe("groupByHome", () => {
  it("groups accounts by resolved home", () => {
    const byHome = groupByHome([
      { name: "a", home: "/srv/app" },
      { name: "b", home: "/srv/app/" },
      { name: "c", home: "/srv/./app" },
      { name: "d", home: "/home/d" }
    ])
    expect(byHome.get("/srv/app")).toEqual(["a", "b", "c"])
    expect(byHome.get("/home/d")).toEqual(["d"])
  })
})

describe("configFileProblem", () => {
  it("accepts root's 0600 and 0644 files", () => {
    expect(configFileProblem({ mode: 0o100600, uid: 0 }, 0)).toEqual({})
    expect(configFileProblem({ mode: 0o100644, uid: 0 }, 0)).toEqual({})
  })
  it("refuses a world-writable file", () => {
    expect(configFileProblem({ mode: 0o100666, uid: 0 }, 0).refuse).toBe(
      "it is writable by every account (mode 0666); run chmod o-w on it"
    )
  })
  it("warns about a group-writable file", () => {
    expect(configFileProblem({ mode: 0o100660, uid: 0 }, 0).warn).toMatch(/^it is writable by its group \(mode 0660\)/)
  })
  it("warns about a file root does not own, when running as root", () => {
    expect(configFileProblem({ mode: 0o100600, uid: 1000 }, 0).warn).toMatch(/^it is owned by uid 1000, not root/)
    expect(configFileProblem({ mode: 0o100600, uid: 1000 }, 1000)).toEqual({})
  })
})

describe("guardCounts (by key, not by line)", () => {
  const A = "ssh-ed25519 AAAAKA a"
  const B = "ssh-ed25519 AAAAKB b"
  it("a changed comment or option removes nothing", () => {
    expect(guardCounts([A, B], ["ssh-ed25519 AAAAKA new-comment", `no-pty ${B}`])).toEqual({
      before: 2,
      after: 2,
      removed: 0,
      usableBefore: 2,
      usableAfter: 2
    })
  })
  it("counts lines without a recognisable key as unusable", () => {
    expect(guardCounts([A], ["Service Unavailable"])).toEqual({
      before: 1,
      after: 1,
      removed: 1,
      usableBefore: 1,
      usableAfter: 0
    })
  })
  it("the lockout guard refuses a file of only unusable lines", () => {
    const counts = guardCounts([A, B], ["Service Unavailable"])
    expect(checkGuards("u", "/f", counts, { allow_empty: false })?.message).toBe(
      "lockout guard refused to rewrite /f: the new file would have no usable keys (1 line without an SSH key) (it has 2); " +
        "set policy.allow_empty: true to allow this"
    )
  })
})

describe("privateDirectoryProblem (run lock and state directories)", () => {
  const dir = { isSymbolicLink: false, isDirectory: true, uid: 0, mode: 0o40700 }
  it.each(
    [
      ["root's 0700 directory", dir, undefined],
      ["root's 0755 directory", { ...dir, mode: 0o40755 }, undefined],
      ["a symlink", { ...dir, isSymbolicLink: true }, "it is a symbolic link"],
      ["a file", { ...dir, isDirectory: false }, "it is not a directory"],
      ["another owner", { ...dir, uid: 1000 }, "it is owned by uid 1000, not by uid 0"],
      ["group-writable", { ...dir, mode: 0o40770 }, "it is writable by group or others (mode 0770)"],
      ["world-writable sticky", { ...dir, mode: 0o41777 }, "it is writable by group or others (mode 1777)"]
    ] as const
  )("%s", (_, st, problem) => expect(privateDirectoryProblem(st, 0)).toBe(problem))
})

describe("guardCounts with a record of managed keys", () => {
  it("counts only removals of keys the tool wrote last time", () => {
    const managed = new Set(["ssh-ed25519 AAAAM1", "ssh-ed25519 AAAAM2"])
    const before = [
      "ssh-ed25519 AAAAM1 m1",
      "ssh-ed25519 AAAAM2 m2",
      "ssh-ed25519 AAAAJ1 junk",
      "ssh-ed25519 AAAAJ2 junk"
    ]
    expect(guardCounts(before, ["ssh-ed25519 AAAAM1 m1"], managed)).toMatchObject({ before: 2, removed: 1 })
    expect(guardCounts(before, ["ssh-ed25519 AAAAM1 m1"])).toMatchObject({ before: 4, removed: 3 })
  })
  it("compares the record with the new file, not the managed keys the user left in the file (found in review)", () => {
    // The tool wrote M1, M2, M3; the user deleted M2 and M3 by hand; the source now drops M1 only.
    const managed = new Set(["ssh-ed25519 AAAAM1", "ssh-ed25519 AAAAM2", "ssh-ed25519 AAAAM3"])
    const counts = guardCounts(["ssh-ed25519 AAAAM1 m1"], ["ssh-ed25519 AAAAM2 m2", "ssh-ed25519 AAAAM3 m3"], managed)
    expect(counts).toMatchObject({ before: 3, removed: 1 })
    expect(checkGuards("u", "/f", counts, { allow_empty: false, max_removed_percent: 50 })).toBeUndefined()
  })
  it("keys the user deleted by hand are not counted as removed by the rewrite (found in review)", () => {
    // The tool wrote M1, M2, M3; the user deleted M1 and M2; the source now sends M3 and a new M4.
    const managed = new Set(["ssh-ed25519 AAAAM1", "ssh-ed25519 AAAAM2", "ssh-ed25519 AAAAM3"])
    const counts = guardCounts(["ssh-ed25519 AAAAM3 m3"], ["ssh-ed25519 AAAAM3 m3", "ssh-ed25519 AAAAM4 m4"], managed)
    expect(counts).toMatchObject({ before: 3, removed: 0 })
    expect(checkGuards("u", "/f", counts, { allow_empty: false, max_removed_keys: 1 })).toBeUndefined()
  })
})

describe("groupBySshDir", () => {
  it("names, for each account, the others whose .ssh is the same directory", () => {
    const others = groupBySshDir([["a", "1:10"], ["b", "1:11"], ["c", "1:10"], ["d", "1:10"]])
    expect(others.get("a")).toEqual(["c", "d"])
    expect(others.get("c")).toEqual(["a", "d"])
    expect(others.has("b")).toBe(false)
  })
})

describe("configTypeProblem", () => {
  it.each(
    [
      ["a regular file", "File", 100n, undefined],
      ["a pipe (--config /dev/stdin, <(…))", "FIFO", 0n, undefined],
      ["a directory", "Directory", 0n, "it is a directory, not a regular file"],
      ["a character device", "CharacterDevice", 0n, "it is a character device, not a regular file"],
      ["a socket", "Socket", 0n, "it is a socket, not a regular file"],
      ["a file over 16 MiB", "File", BigInt(MAX_CONFIG_BYTES + 1), `it is larger than ${MAX_CONFIG_BYTES} bytes`]
    ] as const
  )("%s", (_, type, size, problem) => expect(configTypeProblem(type, size)).toBe(problem))
})
