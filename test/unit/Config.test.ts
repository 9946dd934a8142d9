import { Either } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  type Config,
  decodeConfig,
  decodeConfigValue,
  DEFAULT_STATE_DIR,
  defaultStateDir,
  formatPath,
  goYamlNumber
} from "../../src/pipeline/Config.js"
import type { ConfigError } from "../../src/pipeline/Errors.js"

const FILE = "/etc/authkeysync/test.yaml"

const ok = (text: string) => {
  const result = decodeConfig(FILE, text)
  if (Either.isLeft(result)) throw new Error(`expected a valid config, got: ${result.left.message}`)
  return result.right
}

const fail = (text: string): ConfigError => {
  const result = decodeConfig(FILE, text)
  if (Either.isRight(result)) throw new Error(`expected a ConfigError, got: ${JSON.stringify(result.right)}`)
  return result.left
}

/** One user `bob` with one source; `extra` is appended, indented as further source fields. */
const oneSource = (extra = "") =>
  `users:
  - username: bob
    sources:
      - url: https://keys.example.com/bob
${extra}`

const defaultPolicy: Config["policy"] = {
  backup_enabled: true,
  backup_retention_count: 10,
  preserve_local_keys: true,
  allow_empty: false,
  pinned_keys: [],
  max_response_bytes: 10 * 1024 * 1024,
  max_keys_per_source: 200_000,
  state_dir: "/var/lib/authkeysync"
}
const defaultSource: Config["users"][number]["sources"][number] = {
  url: "https://keys.example.com/bob",
  method: "GET",
  headers: {},
  body: "",
  timeout_seconds: 10
}

// =============================================================================
// Valid files
// =============================================================================

describe("decodeConfig: defaults", () => {
  it("fills every default for a minimal file", () => {
    expect(ok(oneSource())).toEqual({
      config: { policy: defaultPolicy, users: [{ username: "bob", pinned_keys: [], sources: [defaultSource] }] },
      warnings: []
    })
  })

  const nullCases: ReadonlyArray<readonly [string, string, Config]> = [
    [
      "null policy",
      "policy:\n" + oneSource(),
      { policy: defaultPolicy, users: [{ username: "bob", pinned_keys: [], sources: [defaultSource] }] }
    ],
    [
      "null policy fields",
      "policy:\n  backup_enabled:\n  backup_retention_count: ~\n  preserve_local_keys: null\n" + oneSource(),
      { policy: defaultPolicy, users: [{ username: "bob", pinned_keys: [], sources: [defaultSource] }] }
    ],
    [
      "null source fields",
      oneSource("        method:\n        headers:\n        body: ~\n        timeout_seconds: null\n"),
      { policy: defaultPolicy, users: [{ username: "bob", pinned_keys: [], sources: [defaultSource] }] }
    ]
  ]
  it.each(nullCases)("%s means default", (_name, text, expected) => {
    expect(ok(text).config).toEqual(expected)
  })

  it("keeps explicit policy values", () => {
    const text = "policy:\n  backup_enabled: false\n  backup_retention_count: 3\n  preserve_local_keys: false\n" +
      oneSource()
    expect(ok(text).config.policy).toEqual({
      ...defaultPolicy,
      backup_enabled: false,
      backup_retention_count: 3,
      preserve_local_keys: false
    })
  })

  it("accepts backup_retention_count 0", () => {
    expect(ok("policy:\n  backup_retention_count: 0\n" + oneSource()).config.policy.backup_retention_count).toBe(0)
  })

  it("decodes the spec's example configuration", () => {
    const text = `policy:
  backup_enabled: true
  backup_retention_count: 10
  preserve_local_keys: true # Safe default: do not delete manual keys
users:
  - username: "admin"
    sources:
      # Standard GitHub Keys (GET returning text/plain)
      - url: "https://github.com/my-admin.keys"
  - username: "deploy_bot"
    sources:
      # Corporate Vault/API (POST with Auth)
      - url: "https://vault.internal/v1/ssh/keys/raw"
        method: "POST"
        timeout_seconds: 5
        headers:
          Authorization: "Bearer SECRET_TOKEN_XYZ"
          Content-Type: "application/json"
        body: '{"role": "deployment", "env": "prod"}'
`
    expect(ok(text)).toEqual({
      config: {
        policy: defaultPolicy,
        users: [
          {
            username: "admin",
            pinned_keys: [],
            sources: [{
              url: "https://github.com/my-admin.keys",
              method: "GET",
              headers: {},
              body: "",
              timeout_seconds: 10
            }]
          },
          {
            username: "deploy_bot",
            pinned_keys: [],
            sources: [{
              url: "https://vault.internal/v1/ssh/keys/raw",
              method: "POST",
              headers: { Authorization: "Bearer SECRET_TOKEN_XYZ", "Content-Type": "application/json" },
              body: "{\"role\": \"deployment\", \"env\": \"prod\"}",
              timeout_seconds: 5
            }]
          }
        ]
      },
      warnings: []
    })
  })
})

describe("decodeConfig: method", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["GET", "GET"],
    ["POST", "POST"],
    ["get", "GET"],
    ["post", "POST"],
    ["Post", "POST"],
    ["' post '", "POST"],
    // An empty method is Go's http.NewRequest default: GET.
    ["\"\"", "GET"],
    ["' '", "GET"]
  ]
  it.each(cases)("%s -> %s", (written, expected) => {
    expect(ok(oneSource(`        method: ${written}\n`)).config.users[0]?.sources[0]?.method).toBe(expected)
  })
})

describe("decodeConfig: scalar coercion", () => {
  it("turns numeric and boolean header values into their text", () => {
    const text = oneSource(
      "        headers:\n          X-Team-Id: 42\n          X-Flag: true\n          X-Ratio: 1.5\n"
    )
    expect(ok(text).config.users[0]?.sources[0]?.headers).toEqual({
      "X-Team-Id": "42",
      "X-Flag": "true",
      "X-Ratio": "1.5"
    })
  })

  it("sends header values and bodies as written, not as YAML's reading of them (as the Go original does)", () => {
    const text = oneSource([
      "        method: POST",
      "        headers:",
      "          X-Ver: 1.0",
      "          X-Id: 007",
      "          X-Hex: 0x1F",
      "          X-Big: 12345678901234567890",
      "          X-Flag: True",
      "          X-Quoted: \"007\"",
      "        body: 0012",
      ""
    ].join("\n"))
    const source = ok(text).config.users[0]?.sources[0]
    expect(source?.headers).toEqual({
      "X-Ver": "1.0",
      "X-Id": "007",
      "X-Hex": "0x1F",
      "X-Big": "12345678901234567890",
      "X-Flag": "True",
      "X-Quoted": "007"
    })
    expect(source?.body).toBe("0012")
  })

  it("takes a numeric username as written, as the Go original does (yaml.v3 into a string field)", () => {
    const text = [
      "users:",
      "  - username: 20231234",
      "    sources: [{ url: https://keys.example.com/a }]",
      "  - username: 007",
      "    sources: [{ url: https://keys.example.com/b }]",
      "  - username: \"0042\"",
      "    sources: [{ url: https://keys.example.com/c }]",
      ""
    ].join("\n")
    expect(ok(text).config.users.map((user) => user.username)).toEqual(["20231234", "007", "0042"])
  })

  it("keeps the written text of header values that come through an anchor or a merge key", () => {
    const text = [
      "common: &common",
      "  method: POST",
      "  headers:",
      "    X-Id: 007",
      "token: &token 00042",
      "users:",
      "  - username: bob",
      "    sources:",
      "      - <<: *common",
      "        url: https://keys.example.com/bob",
      "      - url: https://keys.example.com/team",
      "        headers:",
      "          X-Token: *token",
      ""
    ].join("\n")
    const decoded = ok(text)
    expect(decoded.config.users[0]?.sources.map((s) => ({ method: s.method, headers: s.headers }))).toEqual([
      { method: "POST", headers: { "X-Id": "007" } },
      { method: "GET", headers: { "X-Token": "00042" } }
    ])
    // The anchors' own top-level keys are still unknown keys; the merge key is not.
    expect(decoded.warnings).toEqual(["unknown key common is ignored", "unknown key token is ignored"])
  })

  it("one anchor shared by hundreds of sources decodes, as yaml.v3 decodes it (a large config is no alias bomb)", () => {
    const users = Array.from({ length: 300 }, (_, i) => [
      `  - username: user${i}`,
      "    sources:",
      `      - url: https://keys.example.com/user${i}`,
      i === 0 ? "        headers: &auth { Authorization: Bearer t0ken }" : "        headers: *auth",
      "      - <<: *team",
      `        url: https://keys.example.com/team${i}`
    ])
    const text = ["x-team: &team { method: POST, timeout_seconds: 5 }", "users:", ...users.flat(), ""].join("\n")
    const config = ok(text).config
    expect(config.users).toHaveLength(300)
    expect(config.users[299]?.sources.map((s) => [s.method, s.timeout_seconds, s.headers])).toEqual([
      ["GET", 10, { Authorization: "Bearer t0ken" }],
      ["POST", 5, {}]
    ])
  })

  it("an anchor of thousands of values used thousands of times is refused, not expanded (20 KB would be 16 million)", () => {
    // The alias budget grows with the document, and every alias of a large anchor is within it: expanded, 20 KB of
    // YAML took seconds and hundreds of MB, and 100 KB minutes and the memory of the host.
    const values = Array.from({ length: 4000 }, () => "1").join(",")
    const uses = Array.from({ length: 4000 }, () => "*a").join(",")
    const text = `${oneSource()}x-data: &a [${values}]\nx-uses: [${uses}]\n`
    // Refused by the rule, not after expanding: expanded, the document would decode (its keys are unknown, a warning).
    const error = fail(text)
    expect(error.reason).toBe("Yaml")
    expect(error.message).toBe(`config ${FILE}: invalid YAML: the document contains excessive aliasing`)
  })

  it("a number anchored once and used as a number and as a header value or body is each where it is used", () => {
    const text = [
      "policy:",
      "  backup_retention_count: &n 5",
      "users:",
      "  - username: bob",
      "    sources:",
      "      - url: https://keys.example.com/bob",
      "        method: POST",
      "        timeout_seconds: &t 010",
      "        headers: { X-Timeout: *t }",
      "        body: *n",
      ""
    ].join("\n")
    const config = ok(text).config
    expect(config.policy.backup_retention_count).toBe(5)
    // yaml.v3 reads a plain 010 as octal 8 where a number belongs; as text it stays what was written.
    expect(config.users[0]?.sources[0]).toMatchObject({
      timeout_seconds: 8,
      headers: { "X-Timeout": "010" },
      body: "5"
    })
  })

  it("header values merged into headers from an anchor anywhere keep their written text", () => {
    const text = [
      "x-auth: &auth { X-Id: 007, X-Ver: 1.0 }",
      "users:",
      "  - username: bob",
      "    sources:",
      "      - url: https://keys.example.com/bob",
      "        headers:",
      "          <<: *auth",
      "          X-Ver: 2.10",
      ""
    ].join("\n")
    expect(ok(text).config.users[0]?.sources[0]?.headers).toEqual({ "X-Id": "007", "X-Ver": "2.10" })
  })

  it("reads YAML 1.1's yes/no/on/off (and y/n) in boolean fields, as the Go original's yaml.v3 does", () => {
    const policy = (backup: string, preserve: string, empty: string) =>
      ok(
        `policy:\n  backup_enabled: ${backup}\n  preserve_local_keys: ${preserve}\n  allow_empty: ${empty}\n` +
          oneSource()
      )
        .config.policy
    expect(policy("no", "off", "YES")).toMatchObject({
      backup_enabled: false,
      preserve_local_keys: false,
      allow_empty: true
    })
    expect(policy("On", "Y", "n")).toMatchObject({
      backup_enabled: true,
      preserve_local_keys: true,
      allow_empty: false
    })
    expect(policy("false", "True", "FALSE")).toMatchObject({
      backup_enabled: false,
      preserve_local_keys: true,
      allow_empty: false
    })
  })

  it("keeps an empty header value", () => {
    expect(ok(oneSource("        headers:\n          X-Empty: ''\n")).config.users[0]?.sources[0]?.headers).toEqual({
      "X-Empty": ""
    })
  })

  it("a header written with no value is sent empty, as the Go original sends it (not dropped like other keys)", () => {
    const text = oneSource(
      "        headers:\n          X-Empty:\n          X-Tilde: ~\n          X-Set: yes\n        body:\n"
    )
    const source = ok(text).config.users[0]?.sources[0]
    expect(source?.headers).toEqual({ "X-Empty": "", "X-Tilde": "", "X-Set": "yes" })
    expect(source?.body).toBe("")
  })

  it("turns a numeric body into text", () => {
    expect(ok(oneSource("        method: POST\n        body: 5\n")).config.users[0]?.sources[0]?.body).toBe("5")
  })

  it("accepts a positive timeout", () => {
    expect(ok(oneSource("        timeout_seconds: 1\n")).config.users[0]?.sources[0]?.timeout_seconds).toBe(1)
  })

  const urls = ["http://keys.example.com/k", "https://keys.example.com:8443/k?team=ops", "https://10.0.0.1/keys"]
  it.each(urls)("accepts URL %s", (url) => {
    expect(ok(`users:\n  - username: bob\n    sources:\n      - url: "${url}"\n`).config.users[0]?.sources[0]?.url)
      .toBe(url)
  })
})

describe("decodeConfig: unknown keys are warnings", () => {
  it("names the full path of every unknown key", () => {
    const text = `extra_root: 1
policy:
  preserve: false
users:
  - username: bob
    shell: /bin/sh
    sources:
      - url: https://keys.example.com/bob
        timeout_second: 5
      - url: https://keys.example.com/bob2
  - username: alice
    sources:
      - url: https://keys.example.com/alice
        header:
          X: y
`
    const decoded = ok(text)
    expect(decoded.warnings).toEqual([
      "unknown key extra_root is ignored",
      "unknown key policy.preserve is ignored",
      "unknown key users[0].shell is ignored",
      "unknown key users[0].sources[0].timeout_second is ignored",
      "unknown key users[1].sources[0].header is ignored"
    ])
    // ... and they are ignored: the typo'd timeout does not apply.
    expect(decoded.config.users[0]?.sources[0]?.timeout_seconds).toBe(10)
    expect(decoded.config.policy.preserve_local_keys).toBe(true)
  })

  it("a key that is not a plain name (a line typed without its colon) is named by its position, never by its text", () => {
    // Found in review: `headers:` left empty, then `Authorization Bearer <token>: x` one level up, logged the token.
    const decoded = ok(oneSource("        headers:\n        'Authorization Bearer SECRET_TOKEN_XYZ': x\n"))
    expect(decoded.warnings).toEqual(["unknown key number 3 of users[0].sources[0] is ignored"])
  })

  it("no warnings for a file with only known keys", () => {
    expect(ok("policy:\n  backup_enabled: true\n" + oneSource("        method: GET\n")).warnings).toEqual([])
  })
})

// =============================================================================
// Invalid files
// =============================================================================

interface ErrorCase {
  readonly name: string
  readonly text: string
  readonly reason: "Yaml" | "Schema"
  /** Substrings the message must contain (after `config <file>: `). */
  readonly contains: ReadonlyArray<string>
}

const errorCases: ReadonlyArray<ErrorCase> = [
  {
    name: "a source written as a bare URL instead of `url: ...` (YAML terms, not Schema's type names)",
    text: "users:\n  - username: bob\n    sources:\n      - https://x.example/bob.keys\n",
    reason: "Schema",
    contains: ["users[0].sources[0]: must be a mapping (key: value lines)"]
  },
  {
    name: "users as a mapping, policy as a list, headers as a list",
    text: "policy:\n  - a\nusers:\n  bob: 1\n",
    reason: "Schema",
    contains: ["policy: must be a mapping (key: value lines)", "users: must be a list (lines starting with -)"]
  },
  {
    name: "headers as a list",
    text: oneSource("        headers:\n          - Authorization: x\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].headers: must be a mapping of header names to values (Name: value)"]
  },
  {
    name: "invalid method",
    text: oneSource("        method: PUT\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].method: unsupported method \"PUT\" (supported: GET, POST)"]
  },
  {
    name: "method that is not a string",
    text: oneSource("        method: 5\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].method"]
  },
  {
    name: "timeout 0",
    text: oneSource("        timeout_seconds: 0\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].timeout_seconds: must be a positive whole number of seconds, got 0"]
  },
  {
    name: "timeout -1",
    text: oneSource("        timeout_seconds: -1\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].timeout_seconds: must be a positive whole number of seconds, got -1"]
  },
  {
    name: "timeout 1.5",
    text: oneSource("        timeout_seconds: 1.5\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].timeout_seconds: Expected an integer, actual 1.5"]
  },
  {
    name: "timeout past 2^53 (a whole number, too large to be exact; found in review)",
    text: oneSource("        timeout_seconds: 9007199254740993\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].timeout_seconds: is too large (at most 9007199254740991)"]
  },
  {
    name: "timeout \"abc\"",
    text: oneSource("        timeout_seconds: abc\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].timeout_seconds: Expected number, actual \"abc\""]
  },
  {
    name: "timeout in the second user names users[1]",
    text: oneSource() +
      "  - username: alice\n    sources:\n      - url: https://keys.example.com/a\n        timeout_seconds: 0\n",
    reason: "Schema",
    contains: ["users[1].sources[0].timeout_seconds: must be a positive whole number of seconds, got 0"]
  },
  {
    name: "negative retention",
    text: "policy:\n  backup_retention_count: -1\n" + oneSource(),
    reason: "Schema",
    contains: ["policy.backup_retention_count: must be 0 or more, got -1"]
  },
  {
    name: "fractional retention",
    text: "policy:\n  backup_retention_count: 2.5\n" + oneSource(),
    reason: "Schema",
    contains: ["policy.backup_retention_count: Expected an integer, actual 2.5"]
  },
  {
    name: "non-boolean backup_enabled",
    text: "policy:\n  backup_enabled: maybe\n" + oneSource(),
    reason: "Schema",
    contains: ["policy.backup_enabled: must be true or false, got \"maybe\""]
  },
  {
    // yaml.v3 rejects a quoted "true" for a boolean field too (it takes only YAML 1.1's words as text).
    name: "quoted true for a boolean",
    text: "policy:\n  allow_empty: \"true\"\n" + oneSource(),
    reason: "Schema",
    contains: ["policy.allow_empty: must be true or false, got \"true\""]
  },
  {
    name: "empty username",
    text: "users:\n  - username: ''\n    sources:\n      - url: https://keys.example.com/k\n",
    reason: "Schema",
    contains: ["users[0].username: must not be empty"]
  },
  {
    name: "blank username",
    text: "users:\n  - username: '   '\n    sources:\n      - url: https://keys.example.com/k\n",
    reason: "Schema",
    contains: ["users[0].username: must not be empty"]
  },
  {
    name: "username with surrounding white space",
    text: "users:\n  - username: ' bob'\n    sources:\n      - url: https://keys.example.com/k\n",
    reason: "Schema",
    contains: ["users[0].username: must not start or end with white space"]
  },
  {
    name: "missing username",
    text: "users:\n  - sources:\n      - url: https://keys.example.com/k\n",
    reason: "Schema",
    contains: ["users[0].username: is required"]
  },
  {
    name: "missing sources",
    text: "users:\n  - username: bob\n",
    reason: "Schema",
    contains: ["users[0].sources: every user needs at least one source"]
  },
  {
    name: "missing url",
    text: "users:\n  - username: bob\n    sources:\n      - method: GET\n",
    reason: "Schema",
    contains: ["users[0].sources[0].url: is required"]
  },
  {
    name: "null users",
    text: "policy:\n  backup_enabled: true\nusers:\n",
    reason: "Schema",
    contains: ["users: at least one user must be configured"]
  },
  {
    name: "no users key",
    text: "policy:\n  backup_enabled: true\n",
    reason: "Schema",
    contains: ["users: at least one user must be configured"]
  },
  {
    name: "empty file",
    text: "",
    reason: "Schema",
    contains: ["the file is empty"]
  },
  {
    name: "comments only",
    text: "# nothing configured yet\n",
    reason: "Schema",
    contains: ["the file is empty"]
  },
  {
    name: "duplicate usernames name both indexes",
    text: oneSource() + "  - username: alice\n    sources:\n      - url: https://keys.example.com/a\n" +
      "  - username: bob\n    sources:\n      - url: https://keys.example.com/b2\n",
    reason: "Schema",
    contains: ["users[2].username: duplicate username \"bob\" (already at users[0])"]
  },
  {
    name: "ftp:// URL",
    text: "users:\n  - username: bob\n    sources:\n      - url: ftp://keys.example.com/k\n",
    reason: "Schema",
    contains: ["users[0].sources[0].url: must be an http:// or https:// URL, got scheme \"ftp\""]
  },
  {
    name: "file:// URL",
    text: "users:\n  - username: bob\n    sources:\n      - url: file:///etc/passwd\n",
    reason: "Schema",
    contains: ["users[0].sources[0].url: must be an http:// or https:// URL, got scheme \"file\""]
  },
  {
    name: "relative URL",
    text: "users:\n  - username: bob\n    sources:\n      - url: /keys/bob\n",
    reason: "Schema",
    contains: ["users[0].sources[0].url: must be an absolute http:// or https:// URL"]
  },
  {
    name: "empty URL",
    text: "users:\n  - username: bob\n    sources:\n      - url: ''\n",
    reason: "Schema",
    contains: ["users[0].sources[0].url: must be an absolute http:// or https:// URL"]
  },
  {
    name: "URL in the second source names sources[1]",
    text: oneSource("      - url: gopher://old.example/k\n"),
    reason: "Schema",
    contains: ["users[0].sources[1].url: must be an http:// or https:// URL, got scheme \"gopher\""]
  },
  {
    name: "invalid header name",
    text: oneSource("        headers:\n          'Bad Header': x\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].headers: header 1 has a name that is not a valid HTTP header name"]
  },
  {
    name: "header value with a newline",
    text: oneSource("        headers:\n          X-Token: \"abc\\nEvil: yes\"\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].headers.X-Token: header values must not contain line breaks or NUL"]
  },
  {
    name: "header value with a carriage return",
    text: oneSource("        headers:\n          X-Token: \"abc\\r\"\n"),
    reason: "Schema",
    contains: ["users[0].sources[0].headers.X-Token: header values must not contain line breaks or NUL"]
  },
  {
    name: "duplicate YAML keys",
    text: oneSource("        method: GET\n        method: POST\n"),
    reason: "Yaml",
    contains: ["invalid YAML", "Map keys must be unique"]
  },
  {
    name: "root is a list",
    text: "- a\n- b\n",
    reason: "Schema",
    contains: []
  }
]

describe("decodeConfig: errors", () => {
  it.each(errorCases)("$name", ({ contains, reason, text }) => {
    const error = fail(text)
    expect(error._tag).toBe("ConfigError")
    expect(error.file).toBe(FILE)
    expect(error.reason).toBe(reason)
    expect(error.message.startsWith(`config ${FILE}: `)).toBe(true)
    for (const part of contains) expect(error.message).toContain(part)
  })

  it("reports every problem at once", () => {
    const text = `policy:
  backup_retention_count: -2
users:
  - username: bob
    sources:
      - url: ftp://a.example/k
        timeout_seconds: 0
  - username: ""
    sources:
      - url: https://b.example/k
        method: DELETE
`
    const message = fail(text).message
    for (
      const part of [
        "policy.backup_retention_count: must be 0 or more, got -2",
        "users[0].sources[0].url: must be an http:// or https:// URL, got scheme \"ftp\"",
        "users[0].sources[0].timeout_seconds: must be a positive whole number of seconds, got 0",
        "users[1].username: must not be empty",
        "users[1].sources[0].method: unsupported method \"DELETE\" (supported: GET, POST)"
      ]
    ) expect(message).toContain(part)
  })

  // An empty list is the same mistake as no list; the schema's own messages for it should be the ones shown.
  const emptyLists: ReadonlyArray<readonly [string, string, string]> = [
    ["empty sources", "users:\n  - username: bob\n    sources: []\n", "every user needs at least one source"],
    ["empty users", "users: []\n", "at least one user must be configured"]
  ]
  it.each(emptyLists)("%s: names the path and says what is needed", (_name, text, expected) => {
    const message = fail(text).message
    expect(message).toContain(expected)
  })

  // Fields that accept `null` as "use the default" must not make the error say that null was expected.
  const exact: ReadonlyArray<readonly [string, string, string]> = [
    [
      "timeout 0",
      oneSource("        timeout_seconds: 0\n"),
      `config ${FILE}: users[0].sources[0].timeout_seconds: must be a positive whole number of seconds, got 0`
    ],
    [
      "timeout -1 in users[1]",
      oneSource() +
      "  - username: alice\n    sources:\n      - url: https://keys.example.com/a\n        timeout_seconds: -1\n",
      `config ${FILE}: users[1].sources[0].timeout_seconds: must be a positive whole number of seconds, got -1`
    ],
    [
      "invalid method",
      oneSource("        method: put\n"),
      `config ${FILE}: users[0].sources[0].method: unsupported method "put" (supported: GET, POST)`
    ],
    [
      "negative retention",
      "policy:\n  backup_retention_count: -1\n" + oneSource(),
      `config ${FILE}: policy.backup_retention_count: must be 0 or more, got -1`
    ],
    [
      "invalid header name",
      oneSource("        headers:\n          'Bad Header': x\n"),
      `config ${FILE}: users[0].sources[0].headers: header 1 has a name that is not a valid HTTP header name (no spaces or colons; the value goes after the colon)`
    ]
  ]
  it.each(exact)("%s: the message is exactly the one problem", (_name, text, expected) => {
    expect(fail(text).message).toBe(expected)
  })
})

describe("decodeConfig: invalid YAML", () => {
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    ["bad indentation", "users:\n  - username: bob\n   sources: [\n", "line 3, column 1"],
    ["tab indentation", "users:\n\t- username: bob\n", "line 2, column 1"],
    ["unclosed quote (reported at the end of input)", "users:\n  - username: \"bob\n", "line 3, column 1"]
  ]
  it.each(cases)("%s: message has line and column", (_name, text, where) => {
    const error = fail(text)
    expect(error.reason).toBe("Yaml")
    expect(error.message).toContain(`config ${FILE}: invalid YAML at ${where}`)
  })

  it("a bad escape in a quoted header value is named without the characters after the backslash (found in review)", () => {
    for (const escape of ["\\xSE", "\\uSECR", "\\USECRETTO"]) {
      const error = fail(
        `users:\n  - username: bob\n    sources:\n      - url: http://127.0.0.1/k\n        headers:\n          Authorization: "Bearer ${escape}KEN"\n`
      )
      expect(error.message).toMatch(
        /^config \/etc\/authkeysync\/test\.yaml: invalid YAML at line 6, column \d+: Invalid escape sequence \(a backslash in a double-quoted value\)$/
      )
      expect(error.message).not.toContain("SE")
    }
  })

  // A pure decoder returns every problem as a ConfigError; it must not throw.
  const throwing: ReadonlyArray<readonly [string, string]> = [
    ["unresolved alias", "users: *missing\n"],
    [
      "alias bomb",
      [
        "a: &a [x, x, x, x, x, x, x, x, x, x]",
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
        "users: [*d]"
      ].join("\n")
    ]
  ]
  it.each(throwing)("%s: returns a ConfigError instead of throwing", (_name, text) => {
    let result: ReturnType<typeof decodeConfig> | undefined
    expect(() => {
      result = decodeConfig(FILE, text)
    }).not.toThrow()
    expect(result !== undefined && Either.isLeft(result)).toBe(true)
    if (result !== undefined && Either.isLeft(result)) expect(result.left.file).toBe(FILE)
  })
})

describe("headers the request sets itself", () => {
  it("Host, Content-Length, Transfer-Encoding and Trailer in a source's headers are each a warning (not sent)", () => {
    const decoded = ok(
      oneSource("        headers:\n          Host: keys.internal\n          content-length: 5\n          X-Team: ops\n")
    )
    expect(decoded.warnings).toEqual([
      "users[0].sources[0].headers.Host is ignored: the request sends its own, as the Go original's does",
      "users[0].sources[0].headers.content-length is ignored: the request sends its own, as the Go original's does"
    ])
    expect(decoded.config.users[0]?.sources[0]?.headers).toEqual({
      Host: "keys.internal",
      "content-length": "5",
      "X-Team": "ops"
    })
  })
})

describe("YAML aliases", () => {
  it("a value that contains itself (an alias inside its own anchor) is one clear error", () => {
    const error = fail(`users: &u\n  - username: bob\n    sources: *u\n`)
    expect(error.message).toBe(`config ${FILE}: a value contains itself (a YAML alias inside its own anchor)`)
  })

  it("one anchored list used by two users is not a loop: both get it", () => {
    const decoded = ok(
      [
        "users:",
        "  - username: alice",
        "    sources: &shared",
        "      - url: https://keys.example.com/team",
        "        timeout_seconds:",
        "  - username: bob",
        "    sources: *shared"
      ].join("\n") + "\n"
    )
    const team = { ...defaultSource, url: "https://keys.example.com/team" }
    expect(decoded.config.users.map((u) => [u.username, u.sources])).toEqual([["alice", [team]], ["bob", [team]]])
  })
})

describe("decodeConfig: integers as yaml.v3 writes them", () => {
  // yaml.v3's resolve.go: `_` removed, then Go's strconv.ParseInt(s, 0, 64), then its yamlStyleFloat.
  const cases: ReadonlyArray<readonly [string, number | undefined]> = [
    ["010", 8],
    ["-010", -8],
    ["0", 0],
    ["08", 8],
    ["1_000", 1000],
    ["0b101", 5],
    ["0o17", 15],
    ["0x1F", 31],
    ["+0x10", 16],
    ["+5", 5],
    ["1e3", 1000],
    ["2.5", 2.5],
    ["1:30", undefined],
    ["2001-01-01", undefined],
    ["_1", undefined],
    ["0x", undefined]
  ]
  it.each(cases)("goYamlNumber(%s) is %s", (written, expected) => {
    expect(goYamlNumber(written)).toBe(expected)
  })

  it("reads backup_retention_count: 010 as 8 and timeout_seconds: 1_5 as 15, as the Go original does", () => {
    const decoded = ok("policy:\n  backup_retention_count: 010\n" + oneSource("        timeout_seconds: 1_5\n")).config
    expect(decoded.policy.backup_retention_count).toBe(8)
    expect(decoded.users[0]?.sources[0]?.timeout_seconds).toBe(15)
  })

  it("keeps quoted numbers text (an error in a number field) and keeps header values and names as written", () => {
    expect(fail(oneSource("        timeout_seconds: '010'\n")).message).toContain("Expected number")
    const source = ok(oneSource("        headers: { X-Id: 010, X-Bin: 0b11 }\n        body: 1_000\n")).config.users[0]
      ?.sources[0]
    expect(source).toMatchObject({ headers: { "X-Id": "010", "X-Bin": "0b11" }, body: "1_000" })
  })
})

describe("decodeConfig: more than one YAML document", () => {
  // yaml.v3's Unmarshal (the Go original's) decodes the first document and never reads past the `---` after it.
  it("reads the first document of a file that ends with ---, as the Go original does", () => {
    expect(ok(oneSource() + "---\n")).toEqual(ok(oneSource()))
  })

  it("ignores what follows the first document, with a warning, as the Go original reads only the first", () => {
    const decoded = ok(oneSource() + "---\n# the old config, kept for reference\nusers:\n  - username: [\n")
    expect(decoded.config).toEqual(ok(oneSource()).config)
    expect(decoded.warnings).toEqual([
      "only the first YAML document is read; what follows its end (---) is ignored, as by the Go original"
    ])
  })
})

describe("decodeConfigValue", () => {
  it("decodes a config built in code", () => {
    const result = decodeConfigValue("<code>", {
      users: [{ username: "bob", sources: [{ url: "https://keys.example.com/bob" }] }]
    })
    expect(result).toEqual(
      Either.right({
        config: { policy: defaultPolicy, users: [{ username: "bob", pinned_keys: [], sources: [defaultSource] }] },
        warnings: []
      })
    )
  })

  it("labels errors with the given name", () => {
    const result = decodeConfigValue("<code>", { users: [{ username: "bob", sources: [{ url: "ftp://x/k" }] }] })
    expect(Either.isLeft(result) && result.left.message.startsWith("config <code>: users[0].sources[0].url:")).toBe(
      true
    )
  })
})

describe("formatPath", () => {
  const cases: ReadonlyArray<readonly [ReadonlyArray<PropertyKey>, string]> = [
    [[], ""],
    [["policy"], "policy"],
    [["policy", "backup_enabled"], "policy.backup_enabled"],
    [["users", 1, "sources", 0, "timeout_seconds"], "users[1].sources[0].timeout_seconds"],
    [["users", 0, "sources", 0, "headers", "X-Team-Id"], "users[0].sources[0].headers.X-Team-Id"],
    [["users", 0, "sources", 0, "headers", "Bad Header"], "users[0].sources[0].headers[\"Bad Header\"]"],
    [[0], "[0]"]
  ]
  it.each(cases)("%j -> %s", (path, expected) => {
    expect(formatPath(path)).toBe(expected)
  })
})

describe("decodeConfig: secrets stay out of errors", () => {
  it("says what is wrong with a header value or body without echoing it", () => {
    const text = [
      "users:",
      "  - username: a",
      "    sources:",
      "      - url: https://k.example/a",
      "        headers: { Authorization: [Bearer-SECRET1], X-Ok: fine }",
      "        body: { token: SECRET2 }",
      ""
    ].join("\n")
    const result = decodeConfig("c.yaml", text)
    expect(Either.isLeft(result) && result.left.message).toBe(
      "config c.yaml: users[0].sources[0].headers.Authorization: must be a string; users[0].sources[0].body: must be a string"
    )
  })
})

describe("decodeConfig: a mistyped URL is not echoed (it may hold credentials)", () => {
  it("names the field without the value", () => {
    const result = decodeConfig(
      "c.yaml",
      "users:\n  - username: a\n    sources:\n      - url: \"https//alice:S3CRET@keys.example/k\"\n"
    )
    expect(Either.isLeft(result) && result.left.message).toBe(
      "config c.yaml: users[0].sources[0].url: must be an absolute http:// or https:// URL"
    )
  })
})

describe("decodeConfig: hardening keys", () => {
  const withPolicy = (policy: string) => `policy:\n${policy}\n` + oneSource()

  it("decodes every hardening key", () => {
    const text = `policy:
  allow_empty: true
  max_removed_keys: 3
  max_removed_percent: 25.5
  pinned_keys:
    - "  ssh-ed25519 AAAAPIN break-glass  "
  max_response_bytes: 4096
  max_keys_per_source: 50
  ca_file: /etc/ssl/corp.pem
  state_dir: /var/lib/aks
users:
  - username: bob
    pinned_keys: ["ssh-ed25519 AAAABOB bob-pin"]
    sources:
      - url: https://keys.example.com/bob
        ca_file: /etc/ssl/other.pem
`
    const { config, warnings } = ok(text)
    expect(warnings).toEqual([])
    expect(config.policy).toEqual({
      ...defaultPolicy,
      allow_empty: true,
      max_removed_keys: 3,
      max_removed_percent: 25.5,
      pinned_keys: ["ssh-ed25519 AAAAPIN break-glass"],
      max_response_bytes: 4096,
      max_keys_per_source: 50,
      ca_file: "/etc/ssl/corp.pem",
      state_dir: "/var/lib/aks"
    })
    expect(config.users[0]?.pinned_keys).toEqual(["ssh-ed25519 AAAABOB bob-pin"])
    expect(config.users[0]?.sources[0]?.ca_file).toBe("/etc/ssl/other.pem")
  })

  it.each([
    ["  pinned_keys: [\"onlyonefield\"]", "policy.pinned_keys[0]: must be one authorized_keys line"],
    ["  pinned_keys: [\"# a comment\"]", "policy.pinned_keys[0]: must be one authorized_keys line"],
    ["  max_removed_percent: 101", "policy.max_removed_percent: must be a percentage from 0 to 100, got 101"],
    ["  max_removed_keys: -1", "policy.max_removed_keys: must be 0 or more, got -1"],
    ["  max_response_bytes: 0", "policy.max_response_bytes: must be a positive number of bytes, got 0"],
    ["  max_keys_per_source: 0", "policy.max_keys_per_source: must be a positive number, got 0"],
    ["  ca_file: certs/corp.pem", "policy.ca_file: must be an absolute path, got \"certs/corp.pem\""],
    ["  state_dir: state", "policy.state_dir: must be an absolute path, got \"state\""],
    ["  allow_empty: maybe", "policy.allow_empty"]
  ])("%s", (policy, expected) => {
    expect(fail(withPolicy(policy)).message).toContain(expected)
  })

  it("names a bad per-user pinned key by its path", () => {
    const text = "users:\n  - username: bob\n    pinned_keys: [\"x\"]\n    sources:\n      - url: https://k.example/b\n"
    expect(fail(text).message).toContain("users[0].pinned_keys[0]: must be one authorized_keys line")
  })
})

describe("decodeConfig: an indentation slip that puts secrets under a field that is echoed shows none of them", () => {
  // Found in review: method, timeout_seconds, username and the policy keys echoed their wrong value whole, a map too.
  it.each([
    [
      "method",
      oneSource("        method:\n          headers:\n            Authorization: Bearer SECRET_TOKEN_XYZ\n"),
      "users[0].sources[0].method: Expected string"
    ],
    [
      "timeout_seconds",
      oneSource("        timeout_seconds:\n          body: '{\"password\": \"SECRET_TOKEN_XYZ\"}'\n"),
      "users[0].sources[0].timeout_seconds: Expected number"
    ],
    [
      "username",
      "users:\n  - username:\n      url: https://u:SECRET_TOKEN_XYZ@h.example/k\n    sources:\n      - url: https://k.example/b\n",
      "users[0].username: Expected string"
    ],
    [
      "a policy boolean",
      "policy:\n  backup_enabled:\n    token: SECRET_TOKEN_XYZ\n" + oneSource(),
      "policy.backup_enabled: must be true or false, got a mapping"
    ]
  ])("%s", (_field, text, expected) => {
    const error = fail(text)
    expect(error.message).toContain(expected)
    expect(error.message).not.toContain("SECRET_TOKEN_XYZ")
  })

  it("an optional field's wrong value gives its own message only, no \"Expected undefined\"", () => {
    const message = fail("policy:\n  max_removed_percent: 101\n" + oneSource()).message
    expect(message).toContain("policy.max_removed_percent: must be a percentage from 0 to 100, got 101")
    expect(message).not.toContain("Expected undefined")
  })

  it("a text value of those fields is still shown", () => {
    expect(fail(oneSource("        timeout_seconds: abc\n")).message).toContain(
      "timeout_seconds: Expected number, actual \"abc\""
    )
  })
})

describe("decodeConfig: found in review", () => {
  it.each([
    [
      "a line break",
      "https://k.example/a\n# injected\nssh-ed25519 AAAA evil",
      "must not contain a line break, tab or other control character"
    ],
    ["a tab", "https://k.example/a\tb", "must not contain a line break, tab or other control character"],
    ["a leading space", " https://k.example/a", "must not start or end with white space"]
  ])(
    "a source URL with %s is refused (the URL parser drops it; the # Source: line would keep it)",
    (_name, url, message) => {
      expect(fail(`users:\n  - username: bob\n    sources:\n      - url: ${JSON.stringify(url)}\n`).message).toContain(
        `users[0].sources[0].url: ${message}`
      )
    }
  )

  it("a mapping used as a key is refused with its line (the YAML library would turn it into text, with a warning)", () => {
    expect(
      fail("users:\n  - username: bob\n    ? {a: 1}\n    : x\n    sources:\n      - url: https://k.example/b\n").message
    ).toBe(
      `config ${FILE}: invalid YAML at line 3: a key must be a plain value, not a mapping or a list`
    )
  })
})

describe("decodeConfig: YAML errors never quote the offending text", () => {
  it("a header line typed without its colon (the token ends up in the name) is not echoed", () => {
    const error = fail(oneSource("        headers:\n          'Authorization Bearer SECRET_TOKEN_XYZ': x\n"))
    expect(error.message).toContain(
      "users[0].sources[0].headers: header 1 has a name that is not a valid HTTP header name"
    )
    expect(error.message).not.toContain("SECRET_TOKEN_XYZ")
  })

  it("an unquoted header value that starts with * (an alias) is not echoed", () => {
    const text = oneSource("        headers:\n          Authorization: *SECRET_TOKEN_XYZ\n")
    const error = fail(text)
    expect(error.message).toBe(
      `config ${FILE}: invalid YAML: Unresolved alias (the anchor must be set before the alias)`
    )
  })
})

describe("defaultStateDir (policy.state_dir when the config does not set it)", () => {
  it("root: the system's; another account: its own XDG state directory, then ~/.local/state, then a temp directory", () => {
    expect(defaultStateDir(0, { XDG_STATE_HOME: "/x", HOME: "/home/a" })).toBe(DEFAULT_STATE_DIR)
    expect(defaultStateDir(1000, { XDG_STATE_HOME: "/home/a/.state", HOME: "/home/a" })).toBe(
      "/home/a/.state/authkeysync"
    )
    // A relative XDG_STATE_HOME is ignored, as the XDG spec says.
    expect(defaultStateDir(1000, { XDG_STATE_HOME: "state", HOME: "/home/a" })).toBe("/home/a/.local/state/authkeysync")
    expect(defaultStateDir(1000, {})).toBe(path.join(os.tmpdir(), "authkeysync-1000"))
    expect(defaultStateDir(1000, { HOME: "/" })).toBe(path.join(os.tmpdir(), "authkeysync-1000"))
  })
})
