/**
 * The configuration file: the same YAML the Go AuthKeySync reads, decoded by an Effect Schema that fills in the
 * spec's defaults and turns every mistake into a line naming where it is (`users[1].sources[0].timeout_seconds`).
 *
 * Decoding is pure: `decodeConfig` takes the file's text and returns the config plus warnings, or a `ConfigError`.
 *
 * @since 0.1.0
 */
import { Either, ParseResult, Schema } from "effect"
import { tmpdir } from "node:os"
import { posix } from "node:path"
import { type Document, isScalar, parseAllDocuments } from "yaml"
import { bytesToText, textToBytes } from "./Bytes.js"
import { ConfigError } from "./Errors.js"
import { documentSize, excessiveAliasing, isRecord, readNumbersAsGoYaml, withWrittenText } from "./GoYaml.js"
import { classifyLine, trimLine } from "./Parse.js"

/** @since 0.1.0 */
export const DEFAULT_CONFIG_PATH = "/etc/authkeysync/config.yaml"
/** The Go original's limit; above it the Go original silently truncates, this tool fails the source. */
export const DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
/** Twice what a 100,000-key corporate source needs. */
export const DEFAULT_MAX_KEYS_PER_SOURCE = 200_000
/** @since 0.1.0 */
export const DEFAULT_STATE_DIR = "/var/lib/authkeysync"

/**
 * `policy.state_dir` when the config does not set it: DEFAULT_STATE_DIR for root; for another account (which, as with
 * the Go original, can sync only its own file) its own state directory, `$XDG_STATE_HOME/authkeysync` or
 * `~/.local/state/authkeysync`, as the run lock has its own (a run by that account could never write the system's).
 *
 * @since 0.1.0
 */
export const defaultStateDir = (
  euid: number = process.geteuid?.() ?? 0,
  env: Readonly<Record<string, string | undefined>> = process.env
): string => {
  if (euid === 0) return DEFAULT_STATE_DIR
  const xdg = env["XDG_STATE_HOME"]
  if (xdg !== undefined && xdg.startsWith("/")) return posix.join(xdg, "authkeysync")
  const home = env["HOME"]
  return home !== undefined && home.startsWith("/") && home !== "/"
    ? posix.join(home, ".local", "state", "authkeysync")
    : posix.join(tmpdir(), `authkeysync-${euid}`)
}

// =============================================================================
// Schema
// =============================================================================

const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

const HttpUrl = Schema.String.pipe(
  Schema.filter((s) => {
    // The URL parser drops tabs and line breaks and trims spaces, but the text as written is what is logged and
    // written on the `# Source:` line (a line break there would start a line of its own); Go's url.Parse refuses it.
    if (/[\x00-\x1f\x7f]/.test(s)) return "must not contain a line break, tab or other control character"
    if (s !== s.trim()) return "must not start or end with white space"
    let url: URL
    try {
      url = new URL(s)
    } catch {
      // Not echoed: a mistyped URL can still carry credentials.
      return "must be an absolute http:// or https:// URL"
    }
    return url.protocol === "http:" || url.protocol === "https:"
      ? true
      : `must be an http:// or https:// URL, got scheme ${JSON.stringify(url.protocol.slice(0, -1))}`
  }),
  Schema.annotations({ identifier: "HttpUrl" })
)

const Method = Schema.transformOrFail(Schema.String, Schema.Literal("GET", "POST"), {
  strict: true,
  decode: (s, _, ast) => {
    const method = s.trim().toUpperCase() || "GET"
    return method === "GET" || method === "POST"
      ? ParseResult.succeed(method as "GET" | "POST")
      : ParseResult.fail(new ParseResult.Type(ast, s, `unsupported method ${JSON.stringify(s)} (supported: GET, POST)`))
  },
  encode: (m) => ParseResult.succeed(m)
})

/** YAML turns `X-Team-Id: 42` into a number; the Go original sends it as the text it was written as. */
const Scalar = Schema.transformOrFail(Schema.Unknown, Schema.String, {
  strict: true,
  decode: (v, _, ast) =>
    typeof v === "string" || typeof v === "number" || typeof v === "boolean"
      ? ParseResult.succeed(String(v))
      : ParseResult.fail(new ParseResult.Type(ast, v, "must be a string")),
  encode: (s) => ParseResult.succeed(s)
})

/**
 * yaml.v3, which the Go original decodes its config with, also reads YAML 1.1's booleans (`yes`, `no`, `on`, `off`,
 * `y`, `n`, in these three cases) into a boolean field; YAML 1.2 reads them as text.
 */
const YAML_1_1_BOOLEANS: Readonly<Record<string, boolean>> = Object.fromEntries([
  ...["y", "Y", "yes", "Yes", "YES", "on", "On", "ON"].map((word) => [word, true] as const),
  ...["n", "N", "no", "No", "NO", "off", "Off", "OFF"].map((word) => [word, false] as const)
])

/** A wrong value as an error message may show it: a scalar as written, a map or list never (it may hold a token). */
const shownValue = (value: unknown): string =>
  Array.isArray(value) ? "a list" : typeof value === "object" && value !== null ? "a mapping" : JSON.stringify(value)

const Bool = Schema.transformOrFail(Schema.Unknown, Schema.Boolean, {
  strict: true,
  decode: (v, _, ast) => {
    if (typeof v === "boolean") return ParseResult.succeed(v)
    const old = typeof v === "string" && Object.hasOwn(YAML_1_1_BOOLEANS, v) ? YAML_1_1_BOOLEANS[v] : undefined
    return old === undefined
      ? ParseResult.fail(new ParseResult.Type(ast, v, `must be true or false, got ${shownValue(v)}`))
      : ParseResult.succeed(old)
  },
  encode: (b) => ParseResult.succeed(b)
})

const HeaderValue = Scalar.pipe(
  Schema.filter((v) => !/[\r\n\0]/.test(v) || "header values must not contain line breaks or NUL")
)

const Headers = Schema.Record({ key: Schema.String, value: HeaderValue }).annotations({
  message: () => "must be a mapping of header names to values (Name: value)"
}).pipe(
  Schema.filter((headers) =>
    Object.keys(headers)
      .flatMap((name, i) => (HTTP_TOKEN.test(name) ? [] : [i + 1]))
      // By position, not by name: a mistyped line like "Authorization Bearer <token>: x" makes the token the name.
      .map((n) => ({
        path: [],
        message:
          `header ${n} has a name that is not a valid HTTP header name (no spaces or colons; the value goes after the colon)`
      }))
  )
)

/**
 * Schema.Int's "Expected an integer, actual 9007199254740992" for a whole number past 2^53: it is one, only too large
 * to be exact (9007199254740993 reads as ...992), and the message would say it is not.
 */
const unsafeWholeNumber = (message: string): boolean => {
  const actual = /^Expected an integer, actual (\S+)$/.exec(message)?.[1]
  const value = actual === undefined ? Number.NaN : Number(actual)
  return Number.isInteger(value) && !Number.isSafeInteger(value)
}

const PositiveSeconds = Schema.Int.pipe(
  Schema.positive({ message: (issue) => `must be a positive whole number of seconds, got ${String(issue.actual)}` })
)

const AbsolutePath = Schema.String.pipe(
  Schema.filter((s) => s.startsWith("/") || `must be an absolute path, got ${JSON.stringify(s)}`)
)

/** One HTTP endpoint that returns keys as plain text. @since 0.1.0 */
export const Source = Schema.Struct({
  url: HttpUrl,
  method: Schema.optionalWith(Method, { default: () => "GET" as const, exact: true }),
  headers: Schema.optionalWith(Headers, { default: () => ({}), exact: true }),
  body: Schema.optionalWith(Scalar, { default: () => "", exact: true }),
  timeout_seconds: Schema.optionalWith(PositiveSeconds, { default: () => 10, exact: true }),
  /** PEM file of CA certificates trusted for this source instead of the policy's `ca_file` or the system's. */
  ca_file: Schema.optional(AbsolutePath)
}).annotations({ identifier: "Source" })
export type Source = typeof Source.Type

const Username = Schema.String.pipe(
  Schema.filter((s) => s.trim().length > 0 || "must not be empty"),
  Schema.filter((s) => s === s.trim() || "must not start or end with white space")
)

/** A break-glass key: one authorized_keys line, kept in every file it applies to whatever the sources say. */
const PinnedKey = Schema.String.pipe(
  Schema.filter((s) =>
    classifyLine(textToBytes(s)) === "key" && !/[\r\n]/.test(trimLine(s)) ||
    "must be one authorized_keys line (key type, key and optional comment)"
  ),
  // Trimmed as the line it becomes (its UTF-8 bytes) is: see Parse.ts.
  Schema.transform(Schema.String, {
    strict: true,
    decode: (s) => bytesToText(trimLine(textToBytes(s))),
    encode: (s) => s
  })
)

const PinnedKeys = Schema.Array(PinnedKey)

/** A local account and where its keys come from. @since 0.1.0 */
export const User = Schema.Struct({
  username: Username,
  pinned_keys: Schema.optionalWith(PinnedKeys, { default: () => [], exact: true }),
  sources: Schema.propertySignature(
    Schema.Array(Source).pipe(Schema.minItems(1, { message: () => "every user needs at least one source" }))
  ).annotations({ missingMessage: () => "every user needs at least one source" })
}).annotations({ identifier: "User" })
export type User = typeof User.Type

/** The safety rules of the spec's `policy` section. @since 0.1.0 */
export const Policy = Schema.Struct({
  backup_enabled: Schema.optionalWith(Bool, { default: () => true, exact: true }),
  backup_retention_count: Schema.optionalWith(
    Schema.Int.pipe(Schema.nonNegative({ message: (i) => `must be 0 or more, got ${String(i.actual)}` })),
    { default: () => 10, exact: true }
  ),
  preserve_local_keys: Schema.optionalWith(Bool, { default: () => true, exact: true }),
  /** Lockout guard: a file that had keys may only be left with none when this is true. */
  allow_empty: Schema.optionalWith(Bool, { default: () => false, exact: true }),
  /** Shrink guard: refuse a write that removes more keys than this (off when unset). */
  max_removed_keys: Schema.optional(
    Schema.Int.pipe(Schema.nonNegative({ message: (i) => `must be 0 or more, got ${String(i.actual)}` }))
  ),
  /** Shrink guard: refuse a write that removes more than this percentage of the file's keys (off when unset). */
  max_removed_percent: Schema.optional(
    Schema.Number.pipe(
      Schema.between(0, 100, { message: (i) => `must be a percentage from 0 to 100, got ${String(i.actual)}` })
    )
  ),
  /** Break-glass keys for every user: always written, never removed. */
  pinned_keys: Schema.optionalWith(PinnedKeys, { default: () => [], exact: true }),
  /** A source's body larger than this fails the source (the download stops there). */
  max_response_bytes: Schema.optionalWith(
    Schema.Int.pipe(Schema.positive({ message: (i) => `must be a positive number of bytes, got ${String(i.actual)}` })),
    { default: () => DEFAULT_MAX_RESPONSE_BYTES, exact: true }
  ),
  /** A source with more key lines than this fails. */
  max_keys_per_source: Schema.optionalWith(
    Schema.Int.pipe(Schema.positive({ message: (i) => `must be a positive number, got ${String(i.actual)}` })),
    { default: () => DEFAULT_MAX_KEYS_PER_SOURCE, exact: true }
  ),
  /** PEM file of CA certificates trusted for every https source (instead of the system's). */
  ca_file: Schema.optional(AbsolutePath),
  /** Root-only directory where the tool remembers which keys it wrote from sources (for revocation); see defaultStateDir. */
  state_dir: Schema.optionalWith(AbsolutePath, { default: () => defaultStateDir(), exact: true })
}).annotations({ identifier: "Policy" })
export type Policy = typeof Policy.Type

/** The whole configuration file. @since 0.1.0 */
export const Config = Schema.Struct({
  policy: Schema.optionalWith(Policy, { default: () => Policy.make({}), exact: true }),
  users: Schema.propertySignature(
    Schema.Array(User).pipe(Schema.minItems(1, { message: () => "at least one user must be configured" }))
  ).annotations({ missingMessage: () => "at least one user must be configured" })
}).pipe(
  Schema.filter((config) => {
    const firstIndex = new Map<string, number>()
    const issues: Array<{ path: ReadonlyArray<PropertyKey>; message: string }> = []
    config.users.forEach((user, i) => {
      const first = firstIndex.get(user.username)
      if (first === undefined) firstIndex.set(user.username, i)
      else {
        issues.push({
          path: ["users", i, "username"],
          message: `duplicate username ${JSON.stringify(user.username)} (already at users[${first}])`
        })
      }
    })
    return issues
  }),
  Schema.annotations({ identifier: "Config" })
)
export type Config = typeof Config.Type

// =============================================================================
// Decoding
// =============================================================================

/** `["users", 1, "sources", 0, "url"]` -> `users[1].sources[0].url` */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>((out, key) => {
    if (typeof key === "number") return `${out}[${key}]`
    const name = String(key)
    if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(name)) return out === "" ? name : `${out}.${name}`
    return `${out}[${JSON.stringify(name)}]`
  }, "")

/**
 * Header names the Go original's HTTP client (net/http) never sends from the config: it writes its own (the URL's
 * host, the body's length and framing). They are ignored here too, with a warning.
 */
export const REQUEST_OWN_HEADERS: ReadonlySet<string> = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "trailer"
])

const ignoredHeaders = (config: Config): Array<string> =>
  config.users.flatMap((user, u) =>
    user.sources.flatMap((source, s) =>
      Object.keys(source.headers)
        .filter((name) => REQUEST_OWN_HEADERS.has(name.toLowerCase()))
        .map((name) => {
          const place = formatPath(["users", u, "sources", s, "headers", name])
          return `${place} is ignored: the request sends its own, as the Go original's does`
        })
    )
  )

const KNOWN_POLICY_KEYS = [
  "backup_enabled",
  "backup_retention_count",
  "preserve_local_keys",
  "allow_empty",
  "max_removed_keys",
  "max_removed_percent",
  "pinned_keys",
  "max_response_bytes",
  "max_keys_per_source",
  "ca_file",
  "state_dir"
] as const

const KNOWN_KEYS = {
  root: ["policy", "users"],
  policy: KNOWN_POLICY_KEYS,
  user: ["username", "pinned_keys", "sources"],
  source: ["url", "method", "headers", "body", "timeout_seconds", "ca_file"]
} as const

/** Keys the schema does not know, usually typos (`timeout_second`); reported as warnings, like the Go original ignores them. */
export const findUnknownKeys = (raw: unknown): ReadonlyArray<string> => {
  const unknown: Array<string> = []
  const check = (value: unknown, known: ReadonlyArray<string>, path: ReadonlyArray<PropertyKey>) => {
    if (!isRecord(value)) return
    Object.keys(value).forEach((key, i) => {
      if (known.includes(key)) return
      // A key that is not a plain name is likely a line typed without its colon (`Authorization Bearer <token>: x`):
      // named by its position, never by its text.
      unknown.push(
        /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)
          ? formatPath([...path, key])
          : `number ${i + 1} of ${formatPath(path) || "the top level"}`
      )
    })
  }
  check(raw, KNOWN_KEYS.root, [])
  if (!isRecord(raw)) return unknown
  check(raw["policy"], KNOWN_KEYS.policy, ["policy"])
  const users = raw["users"]
  if (Array.isArray(users)) {
    users.forEach((user, i) => {
      check(user, KNOWN_KEYS.user, ["users", i])
      const sources = isRecord(user) ? user["sources"] : undefined
      if (Array.isArray(sources)) sources.forEach((s, j) => check(s, KNOWN_KEYS.source, ["users", i, "sources", j]))
    })
  }
  return unknown
}

/** @since 0.1.0 */
export interface DecodedConfig {
  readonly config: Config
  readonly warnings: ReadonlyArray<string>
}

const decodeUnknown = Schema.decodeUnknownEither(Config, { errors: "all", onExcessProperty: "ignore" })

/**
 * The Go original reads `key:` with no value (YAML null) as "not set", so the default applies. Dropping null-valued
 * keys before decoding does the same without making every field nullable in the schema. Inside `headers` a header
 * with no value is kept as empty text instead: yaml.v3 decodes it into Go's map of strings as "", and the Go original
 * sends it, empty.
 */
export const dropNullKeys = (value: unknown, nullAsEmpty = false): unknown => dropNulls(value, new Set(), nullAsEmpty)

/** `ancestors`: the values on the way down to `value` (added on the way in, removed on the way out). */
const dropNulls = (value: unknown, ancestors: Set<object>, nullAsEmpty: boolean): unknown => {
  if (typeof value !== "object" || value === null) return value
  // A YAML alias inside its own anchor (`a: &x {b: *x}`) makes a value that contains itself.
  if (ancestors.has(value)) throw new CircularValue()
  ancestors.add(value)
  try {
    if (Array.isArray(value)) return value.map((v) => dropNulls(v, ancestors, false))
    return Object.fromEntries(
      Object.entries(value).flatMap(([k, v]) =>
        v === null || v === undefined
          ? nullAsEmpty ? [[k, ""]] : []
          : [[k, dropNulls(v, ancestors, k === "headers")]]
      )
    )
  } finally {
    ancestors.delete(value)
  }
}

class CircularValue extends Error {}

/** Fields whose wrong value is worth echoing (`timeout_seconds: Expected number, actual "abc"`): never a secret. */
const ECHOED_FIELDS: ReadonlySet<PropertyKey> = new Set([
  "timeout_seconds",
  "method",
  "username",
  "ca_file",
  ...KNOWN_POLICY_KEYS.filter((key) => key !== "pinned_keys")
])

/**
 * Anywhere else only numbers, booleans and null are echoed from a failed value: a string, map or list can be (or
 * contain) a header value, a body or a URL with credentials, whatever path the error is reported at.
 */
const withoutActual = (message: string, field: PropertyKey | undefined): string => {
  const match = /,? actual ([\s\S]*)$/.exec(message)
  if (match === null) return message
  const actual = match[1]!
  if (/^(-?[\d.e+]+|true|false|null|undefined)$/.test(actual)) return message
  // Even those fields echo only text: a map or list there (an indentation slip) may hold the headers under it.
  if (field !== undefined && ECHOED_FIELDS.has(field) && actual.startsWith("\"")) return message
  return message.slice(0, match.index)
}

/** Decode an already parsed value (e.g. a config built in code by a library user). @since 0.1.0 */
export const decodeConfigValue = (file: string, raw: unknown): Either.Either<DecodedConfig, ConfigError> => {
  let value: unknown
  try {
    value = dropNullKeys(raw)
  } catch (error) {
    if (!(error instanceof CircularValue)) throw error
    return Either.left(
      new ConfigError({ file, reason: "Yaml", detail: "a value contains itself (a YAML alias inside its own anchor)" })
    )
  }
  return decodeUnknown(value).pipe(
    Either.mapLeft((error) => {
      // An optional field's wrong value fails both of its cases: the field's own message says what is wrong, and
      // "Expected undefined, actual …" (the field left out) adds only noise.
      const issues = ParseResult.ArrayFormatter.formatErrorSync(error).filter((issue) =>
        !issue.message.startsWith("Expected undefined")
      )
      const seen = new Set<string>()
      const lines = issues
        .map((issue) => {
          const where = formatPath(issue.path)
          // Schema's own wording names TypeScript types ("Expected Struct (Encoded side)"); say it in YAML's terms.
          const raw = issue.message === "is missing"
            ? "is required"
            : /^Expected (Struct|\{)/.test(issue.message)
            ? "must be a mapping (key: value lines)"
            : /^Expected ReadonlyArray</.test(issue.message)
            ? "must be a list (lines starting with -)"
            : unsafeWholeNumber(issue.message)
            ? `is too large (at most ${Number.MAX_SAFE_INTEGER})`
            : issue.message
          // Header values and bodies carry tokens: say what is wrong with them, never what they are.
          const secret = issue.path.includes("headers") || issue.path[issue.path.length - 1] === "body"
          const what = secret
            ? raw.replace(/,? actual [\s\S]*$/, "")
            : withoutActual(raw, issue.path[issue.path.length - 1])
          return where === "" ? what : `${where}: ${what}`
        })
        .filter((line) => !seen.has(line) && seen.add(line))
      return new ConfigError({ file, reason: "Schema", detail: lines.join("; ") })
    }),
    Either.map((config) => ({
      config,
      warnings: [...findUnknownKeys(raw).map((key) => `unknown key ${key} is ignored`), ...ignoredHeaders(config)]
    }))
  )
}

export { goYamlNumber } from "./GoYaml.js"

/**
 * Decode the text of a config file. `file` only labels error messages.
 *
 * @since 0.1.0
 */
export const decodeConfig = (file: string, text: string): Either.Either<DecodedConfig, ConfigError> => {
  // `<<` merge keys, as yaml.v3 applies them (`<<: *common` to share headers between sources).
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true, merge: true })
  // yaml.v3's Unmarshal (the Go original's) reads the first document and never looks at what follows a `---` after
  // it: a trailing `---`, or an old config kept below one, is no error there.
  const doc = docs[0]
  if (doc === undefined) return Either.left(new ConfigError({ file, reason: "Schema", detail: "the file is empty" }))
  const isEmpty = (later: Document) =>
    later.contents === null || (isScalar(later.contents) && later.contents.value === null)
  const ignored = docs.slice(1).some((later) => !isEmpty(later))
    ? ["only the first YAML document is read; what follows its end (---) is ignored, as by the Go original"]
    : []
  const yamlError = doc.errors[0]
  if (yamlError !== undefined) {
    const pos = yamlError.linePos?.[0]
    const at = pos ? ` at line ${pos.line}, column ${pos.col}` : ""
    // prettyErrors appends " at line L, column C:" and a source excerpt; keep the first sentence only, and not what
    // follows a colon there (some messages quote the offending text, which may be a token).
    const firstLine = (yamlError.message.split("\n")[0] ?? yamlError.message)
      .replace(/ at line \d+, column \d+:?$/, "")
      .replace(/: [\s\S]*$/, "")
      // `Invalid escape sequence \xSE`: up to nine characters of a quoted value, maybe a token's (found in review).
      .replace(/^(Invalid escape sequence) [\s\S]*$/, "$1 (a backslash in a double-quoted value)")
    return Either.left(new ConfigError({ file, reason: "Yaml", detail: `invalid YAML${at}: ${firstLine}` }))
  }
  let raw: unknown
  // Aliases are resolved here; a cap keeps an alias bomb from eating memory.
  const size = documentSize(doc)
  if (size.collectionKey !== undefined) {
    // yaml.v3 cannot decode such a key into the config's maps either; the YAML library would turn it into text.
    const line = text.slice(0, size.collectionKey).split("\n").length
    return Either.left(
      new ConfigError({
        file,
        reason: "Yaml",
        detail: `invalid YAML at line ${line}: a key must be a plain value, not a mapping or a list`
      })
    )
  }
  if (excessiveAliasing(size)) {
    return Either.left(
      new ConfigError({ file, reason: "Yaml", detail: "invalid YAML: the document contains excessive aliasing" })
    )
  }
  const maxAliasCount = Math.max(100, size.nodes)
  const toJS = (document: Document) => document.toJS({ maxAliasCount })
  try {
    readNumbersAsGoYaml(doc)
    raw = withWrittenText(doc, toJS(doc), toJS)
  } catch (error) {
    // Some of these messages quote the offending text after a colon (an alias name can be a pasted token).
    const detail = (error instanceof Error ? error.message : String(error)).replace(/: [\s\S]*$/, "")
    return Either.left(new ConfigError({ file, reason: "Yaml", detail: `invalid YAML: ${detail}` }))
  }
  if (raw === null || raw === undefined) {
    return Either.left(new ConfigError({ file, reason: "Schema", detail: "the file is empty" }))
  }
  return decodeConfigValue(file, raw).pipe(
    Either.map((decoded) =>
      ignored.length === 0 ? decoded : { ...decoded, warnings: [...ignored, ...decoded.warnings] }
    )
  )
}
