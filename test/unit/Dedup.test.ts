import { describe, expect, it } from "vitest"
import { allKeys, type Duplicate, LOCAL_LABEL, mergeKeys, type Section } from "../../src/pipeline/Dedup.js"

const A = "https://a.example/keys"
const B = "https://b.example/keys"
const C = "https://c.example/keys"

const k1 = "ssh-ed25519 AAAA1 one@host"
const k2 = "ssh-ed25519 AAAA2 two@host"
const k3 = "ssh-rsa BBBB3 three@host"
const k4 = "ssh-ed25519 AAAA4 four@host"

const src = (url: string, keys: ReadonlyArray<string>): Section => ({ _tag: "Source", url, keys })
const local = (keys: ReadonlyArray<string>): Section => ({ _tag: "Local", keys })

interface Case {
  readonly name: string
  readonly sources: ReadonlyArray<{ readonly url: string; readonly keys: ReadonlyArray<string> }>
  readonly localKeys: ReadonlyArray<string> | undefined
  readonly sections: ReadonlyArray<Section>
  readonly duplicates: ReadonlyArray<Duplicate>
}

const cases: ReadonlyArray<Case> = [
  {
    name: "no duplicates: every key stays where it came from",
    sources: [{ url: A, keys: [k1, k2] }, { url: B, keys: [k3] }],
    localKeys: [k4],
    sections: [src(A, [k1, k2]), src(B, [k3]), local([k4])],
    duplicates: []
  },
  {
    name: "cross-source: first source in config order wins",
    sources: [{ url: A, keys: [k1] }, { url: B, keys: [k2, k1] }],
    localKeys: [],
    sections: [src(A, [k1]), src(B, [k2]), local([])],
    duplicates: [{ key: k1, keptIn: A, droppedFrom: B }]
  },
  {
    name: "cross-source over three sources: attributed to the earliest",
    sources: [{ url: A, keys: [k2] }, { url: B, keys: [k1] }, { url: C, keys: [k1, k2, k3] }],
    localKeys: undefined,
    sections: [src(A, [k2]), src(B, [k1]), src(C, [k3])],
    duplicates: [{ key: k1, keptIn: B, droppedFrom: C }, { key: k2, keptIn: A, droppedFrom: C }]
  },
  {
    name: "local vs source: the source wins even though the key was in the file first",
    sources: [{ url: A, keys: [k1] }],
    localKeys: [k1, k4],
    sections: [src(A, [k1]), local([k4])],
    duplicates: [{ key: k1, keptIn: A, droppedFrom: LOCAL_LABEL }]
  },
  {
    name: "intra-source duplicates reduced to one",
    sources: [{ url: A, keys: [k1, k2, k1, k1] }],
    localKeys: [],
    sections: [src(A, [k1, k2]), local([])],
    duplicates: [{ key: k1, keptIn: A, droppedFrom: A }, { key: k1, keptIn: A, droppedFrom: A }]
  },
  {
    name: "intra-local duplicates reduced to one",
    sources: [{ url: A, keys: [k1] }],
    localKeys: [k4, k3, k4],
    sections: [src(A, [k1]), local([k4, k3])],
    duplicates: [{ key: k4, keptIn: LOCAL_LABEL, droppedFrom: LOCAL_LABEL }]
  },
  {
    name: "preserve=false (localKeys undefined): no local section at all",
    sources: [{ url: A, keys: [k1] }],
    localKeys: undefined,
    sections: [src(A, [k1])],
    duplicates: []
  },
  {
    name: "empty source keeps its (empty) section in place",
    sources: [{ url: A, keys: [] }, { url: B, keys: [k1] }],
    localKeys: [],
    sections: [src(A, []), src(B, [k1]), local([])],
    duplicates: []
  },
  {
    name: "a source whose keys all appeared earlier becomes empty but stays",
    sources: [{ url: A, keys: [k1, k2] }, { url: B, keys: [k2, k1] }],
    localKeys: [k1, k2],
    sections: [src(A, [k1, k2]), src(B, []), local([])],
    duplicates: [
      { key: k2, keptIn: A, droppedFrom: B },
      { key: k1, keptIn: A, droppedFrom: B },
      { key: k1, keptIn: A, droppedFrom: LOCAL_LABEL },
      { key: k2, keptIn: A, droppedFrom: LOCAL_LABEL }
    ]
  },
  {
    name: "same URL configured twice: second copy's keys are duplicates of the first",
    sources: [{ url: A, keys: [k1] }, { url: A, keys: [k1] }],
    localKeys: undefined,
    sections: [src(A, [k1]), src(A, [])],
    duplicates: [{ key: k1, keptIn: A, droppedFrom: A }]
  },
  {
    name: "different comments are different keys",
    sources: [{ url: A, keys: ["ssh-ed25519 AAAA user@host"] }],
    localKeys: ["ssh-ed25519 AAAA user@laptop"],
    sections: [src(A, ["ssh-ed25519 AAAA user@host"]), local(["ssh-ed25519 AAAA user@laptop"])],
    duplicates: []
  },
  {
    name: "no sources, local only",
    sources: [],
    localKeys: [k1, k2],
    sections: [local([k1, k2])],
    duplicates: []
  },
  {
    name: "nothing at all",
    sources: [],
    localKeys: undefined,
    sections: [],
    duplicates: []
  }
]

describe("mergeKeys", () => {
  it.each(cases)("$name", ({ duplicates, localKeys, sections, sources }) => {
    expect(mergeKeys(sources, localKeys)).toEqual({ sections, duplicates })
  })

  it("keeps the original order of keys within each section", () => {
    const keys = ["z z", "a a", "m m", "b b"]
    const merged = mergeKeys([{ url: A, keys }], undefined)
    expect(merged.sections).toEqual([src(A, keys)])
  })

  it("does not mutate its inputs", () => {
    const sourceKeys = [k1, k1, k2]
    const localKeys = [k2, k3]
    mergeKeys([{ url: A, keys: sourceKeys }], localKeys)
    expect(sourceKeys).toEqual([k1, k1, k2])
    expect(localKeys).toEqual([k2, k3])
  })
})

describe("allKeys", () => {
  it("lists every key in file order, sources first then local", () => {
    const merged = mergeKeys([{ url: A, keys: [k1] }, { url: B, keys: [] }, { url: C, keys: [k2, k3] }], [k4, k1])
    expect(allKeys(merged.sections)).toEqual([k1, k2, k3, k4])
  })

  it("is empty for no sections", () => {
    expect(allKeys([])).toEqual([])
  })
})
