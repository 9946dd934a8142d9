import { describe, expect, it } from "vitest"
import { redactUrl } from "../../src/pipeline/Redact.js"

describe("redactUrl", () => {
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    // Unchanged: returned exactly as given (not re-serialised).
    ["plain URL", "https://github.com/alice.keys", "https://github.com/alice.keys"],
    [
      "harmless query",
      "https://keys.example.com/raw?team=ops&env=prod",
      "https://keys.example.com/raw?team=ops&env=prod"
    ],
    ["port and path", "http://10.0.0.1:8080/v1/keys", "http://10.0.0.1:8080/v1/keys"],
    [
      "not normalised when nothing to hide",
      "HTTPS://Keys.Example.com/a/../b?x=1",
      "HTTPS://Keys.Example.com/a/../b?x=1"
    ],
    ["not a URL", "not a url", "not a url"],
    ["empty string", "", ""],
    // Credentials in the authority.
    ["user and password", "https://user:password@keys.example.com/k", "https://***@keys.example.com/k"],
    ["user only", "https://deploy@keys.example.com/k", "https://***@keys.example.com/k"],
    ["password only", "https://:s3cret@keys.example.com/k", "https://***@keys.example.com/k"],
    // Token-like query parameters.
    [
      "access_token with others kept",
      "https://keys.example.com/keys?access_token=abc123&team=ops",
      "https://keys.example.com/keys?access_token=***&team=ops"
    ],
    ["token", "https://k.example/raw?token=abc", "https://k.example/raw?token=***"],
    ["api_key", "https://k.example/raw?api_key=abc", "https://k.example/raw?api_key=***"],
    ["apikey in mixed case", "https://k.example/raw?ApiKey=abc", "https://k.example/raw?ApiKey=***"],
    ["secret", "https://k.example/raw?client_secret=abc", "https://k.example/raw?client_secret=***"],
    ["password", "https://k.example/raw?password=hunter2", "https://k.example/raw?password=***"],
    ["sig (signed URL)", "https://k.example/raw?sig=deadbeef&se=2030", "https://k.example/raw?sig=***&se=2030"],
    [
      "X-Amz-Signature",
      "https://b.s3.example/keys?X-Amz-Signature=abc&X-Amz-Date=1",
      "https://b.s3.example/keys?X-Amz-Signature=***&X-Amz-Date=1"
    ],
    ["auth", "https://k.example/raw?auth=abc", "https://k.example/raw?auth=***"],
    [
      "credentials and token together",
      "https://u:p@k.example/raw?token=abc&team=ops",
      "https://***@k.example/raw?token=***&team=ops"
    ],
    ["fragment kept", "https://k.example/raw?token=abc#frag", "https://k.example/raw?token=***#frag"],
    // Found in review: the rest of a URL with a secret in it was re-serialised (`ops%20x` became `ops+x`, the host
    // lower-cased) in the `# Source:` line; only the masked parts change now.
    [
      "everything not masked kept as written",
      "HTTPS://u:p@Keys.Example.com:443/a%2Fb/../c?team=ops%20x&token=abc&b=a+b&flag",
      "HTTPS://***@Keys.Example.com:443/a%2Fb/../c?team=ops%20x&token=***&b=a+b&flag"
    ],
    [
      "an encoded secret name",
      "https://k.example/raw?access%5Ftoken=abc&x=1",
      "https://k.example/raw?access%5Ftoken=***&x=1"
    ],
    [
      "an @ in the path is no credential",
      "https://k.example/users/@me/keys?token=abc",
      "https://k.example/users/@me/keys?token=***"
    ],
    ["an @ in the password", "https://u:p@ss@k.example/raw", "https://***@k.example/raw"],
    // Found in review: spellings the URL parser reads as credentials though the text has no `//` after the scheme.
    [
      "no slashes",
      "http:rvfd:hunter2@127.0.0.1:18931/x?access_token=tok123",
      "http://***@127.0.0.1:18931/x?access_token=***"
    ],
    ["one slash", "https:/u:pw@k.example/raw", "https://***@k.example/raw"],
    ["a backslash", "https:\\u:pw@k.example/raw", "https://***@k.example/raw"],
    ["extra slashes", "https:////u:pw@k.example/raw?token=x", "https://***@k.example/raw?token=***"],
    // A backslash ends the host for http(s): the host shown is the one connected to.
    [
      "a backslash in the authority",
      "https://user:pw@keys.example\\x@evil.example/k",
      "https://***@keys.example\\x@evil.example/k"
    ],
    [
      "a token after a semicolon",
      "https://k.example/raw?team=ops;access_token=abc&x=1",
      "https://k.example/raw?team=ops;access_token=***&x=1"
    ]
  ]
  it.each(cases)("%s", (_name, input, expected) => {
    expect(redactUrl(input)).toBe(expected)
  })

  it("never leaves the secret anywhere in the output", () => {
    const secrets = ["hunter2", "tok_ABC", "pw_XYZ"]
    const out = redactUrl("https://bob:pw_XYZ@k.example/raw?password=hunter2&token=tok_ABC&team=ops")
    for (const secret of secrets) expect(out).not.toContain(secret)
    expect(out).toContain("team=ops")
  })

  it("masks every value of a repeated secret parameter", () => {
    const out = redactUrl("https://k.example/raw?token=one&token=two")
    expect(out).not.toContain("one")
    expect(out).not.toContain("two")
  })
})
