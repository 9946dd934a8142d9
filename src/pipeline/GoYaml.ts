/**
 * How the Go original's YAML library (yaml.v3) reads what the `yaml` package reads differently: numbers (`010` is 8,
 * `1_000` a number), the text of a scalar as written, and its rule against alias expansion abuse. Pure, over the
 * `yaml` package's Document.
 */
import { type Document, isAlias, isCollection, isPair, isScalar, visit } from "yaml"

/** A YAML mapping as the YAML library converts it. */
export const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** What Go's strconv.ParseInt(s, 0, 64) takes, once yaml.v3 has removed every `_`: `010` is octal, `0b11` binary. */
const GO_INT = /^([-+]?)(?:0[xX]([0-9a-fA-F]+)|0[bB]([01]+)|0[oO]([0-7]+)|0([0-7]*)|([1-9][0-9]*))$/
/** yaml.v3's yamlStyleFloat, tried when the text is no integer. */
const GO_FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/

/**
 * The number yaml.v3 reads from a plain scalar that starts with a digit or a sign (its resolve.go), or `undefined`
 * when it reads text. Unlike YAML 1.2, which `yaml` follows, it takes `010` as 8 and `1_000` or `0b11` as numbers.
 */
export const goYamlNumber = (written: string): number | undefined => {
  if (!/^[-+0-9]/.test(written)) return undefined
  const plain = written.replaceAll("_", "")
  const int = GO_INT.exec(plain)
  if (int !== null) {
    const [, sign, hex, bin, oct, legacyOct, dec] = int
    const magnitude = hex !== undefined ?
      parseInt(hex, 16)
      : bin !== undefined ?
      parseInt(bin, 2)
      : oct !== undefined ?
      parseInt(oct, 8)
      : legacyOct !== undefined ?
      (legacyOct === "" ? 0 : parseInt(legacyOct, 8))
      : Number(dec)
    return sign === "-" ? -magnitude : magnitude
  }
  return GO_FLOAT.test(plain) ? Number(plain) : undefined
}

/** Plain (unquoted, untagged) scalars get the number yaml.v3 reads from them, where YAML 1.2 reads another value. */
export const readNumbersAsGoYaml = (doc: Document): void =>
  visit(doc, {
    Scalar(key, node) {
      // Mapping keys stay as they are: a header name is text in the Go original whatever it looks like.
      if (key === "key" || node.type !== "PLAIN" || node.tag !== undefined || typeof node.source !== "string") return
      const number = goYamlNumber(node.source)
      if (number !== undefined && node.value !== number) node.value = number
    }
  })

/**
 * Header values and bodies are sent as written, and usernames taken as written, as the Go original (yaml.v3 into
 * string fields) takes them: YAML alone reads `X-Id: 007` as the number 7, `X-Ver: 1.0` as 1, a 20-digit token as a
 * rounded number and `username: 20231234` (numeric accounts, as some directories have) as a number. Where the config
 * has such a value, a copy of the document with every scalar as written is converted too, anchors, aliases and merge keys
 * applied by the YAML library exactly as in the first conversion, and the headers and bodies are taken from it. The
 * document itself is not changed: an anchored number may also be used where a number belongs (`timeout_seconds`).
 */
export const withWrittenText = (doc: Document, raw: unknown, toJS: (doc: Document) => unknown): unknown => {
  const needsText = (value: unknown) => value !== undefined && value !== null && typeof value !== "string"
  const usersOf = (config: unknown): Array<Record<string, unknown>> =>
    isRecord(config) && Array.isArray(config["users"]) ? config["users"].filter(isRecord) : []
  const sourcesOf = (config: unknown): Array<Record<string, unknown>> =>
    usersOf(config).flatMap((user) => Array.isArray(user["sources"]) ? user["sources"].filter(isRecord) : [])
  const users = usersOf(raw)
  const sources = sourcesOf(raw)
  const affected = users.some((user) => needsText(user["username"])) ||
    sources.some((source) =>
      needsText(source["body"]) || (isRecord(source["headers"]) && Object.values(source["headers"]).some(needsText))
    )
  if (!affected) return raw
  const copy = doc.clone()
  visit(copy, {
    Scalar(_, node) {
      if (node.value !== null && typeof node.value !== "string" && typeof node.source === "string") {
        node.value = node.source
      }
    }
  })
  const writtenConfig = toJS(copy)
  const writtenUsers = usersOf(writtenConfig)
  users.forEach((user, i) => {
    if (needsText(user["username"]) && writtenUsers[i] !== undefined) user["username"] = writtenUsers[i]["username"]
  })
  const written = sourcesOf(writtenConfig)
  sources.forEach((source, i) => {
    const text = written[i]
    if (text === undefined) return
    if (isRecord(source["headers"]) && isRecord(text["headers"])) source["headers"] = text["headers"]
    if (needsText(source["body"])) source["body"] = text["body"]
  })
  return raw
}

/**
 * The document's nodes, and how many values it stands for once every alias is expanded, counted in one walk without
 * expanding anything (an anchored value's count is reused by each of its aliases). An alias inside its own anchor
 * counts nothing here; it is refused later as a value that contains itself. The YAML library's alias budget
 * (`maxAliasCount`: uses of an anchor times the aliases inside it) is the node count, at least 100: a fixed 100
 * refused an ordinary large config that shares one anchor (`headers: *auth`, `<<: *team`) among more than 100 sources.
 * What all the aliases expand to together is bounded by excessiveAliasing.
 */
export const documentSize = (doc: Document): {
  readonly nodes: number
  readonly expanded: number
  /** Where the first mapping key that is itself a mapping or list starts (an offset in the text), if any. */
  readonly collectionKey: number | undefined
} => {
  let collectionKey: number | undefined
  // What each alias stands for: the last node before it with that anchor, as the YAML library resolves it (one walk;
  // its own `resolve` walks the document for every alias).
  let nodes = 0
  const anchors = new Map<string, unknown>()
  const targets = new Map<unknown, unknown>()
  visit(doc, (_key, node) => {
    nodes++
    if (isPair(node) && isCollection(node.key)) collectionKey ??= node.key.range?.[0] ?? 0
    if (isAlias(node)) targets.set(node, anchors.get(node.source))
    else if ((isScalar(node) || isCollection(node)) && node.anchor !== undefined) anchors.set(node.anchor, node)
  })
  const sizes = new Map<unknown, number>()
  const size = (node: unknown): number => {
    if (isAlias(node)) return size(targets.get(node))
    if (!isCollection(node) && !isPair(node)) return 1
    const known = sizes.get(node)
    if (known !== undefined) return known
    sizes.set(node, 0)
    const total = isPair(node)
      ? size(node.key) + size(node.value)
      : node.items.reduce<number>((sum, item) => sum + size(item), 1)
    sizes.set(node, total)
    return total
  }
  return { nodes, expanded: size(doc.contents), collectionKey }
}

/** yaml.v3's allowedAliasRatio: the share of a document's values that may come from aliases, by its expanded size. */
export const allowedAliasRatio = (expanded: number): number =>
  expanded <= 400_000 ? 0.99 : expanded >= 4_000_000 ? 0.1 : 0.99 - 0.89 * ((expanded - 400_000) / 3_600_000)

/**
 * yaml.v3's rule against alias expansion abuse ("document contains excessive aliasing"), on the whole document: the
 * alias budget grows with the document, so a few thousand uses of an anchor of a few thousand values pass it, and
 * their expansion (what the checks after the YAML library walk) grows with the square of the file.
 */
export const excessiveAliasing = (
  { expanded, nodes }: { readonly nodes: number; readonly expanded: number }
): boolean => {
  const fromAliases = expanded - nodes
  return fromAliases > 100 && expanded > 1000 && fromAliases / expanded > allowedAliasRatio(expanded)
}
