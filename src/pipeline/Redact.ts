/**
 * Secrets never reach a log line or an error message: URL credentials and token-like query parameters are masked.
 * Header values are never logged at all, so they need no masking here.
 *
 * @since 0.1.0
 */

const SECRET_PARAM = /(token|secret|pass|pw|key|sig|auth|credential|session|code|jwt|bearer)/i
const MASK = "***"

/**
 * `https://user:pw@host/keys?access_token=abc&team=ops` -> `https://***@host/keys?access_token=***&team=ops`.
 * Only the masked parts change: everything else is kept exactly as written (case, escapes, `+`), so the `# Source:`
 * line shows the URL of the config. Anything that does not parse as a URL is returned as is (it came from a validated
 * config).
 *
 * @since 0.1.0
 */
export const redactUrl = (raw: string): string => {
  // Without userinfo (`@`) and without a query (`?`) there is nothing to mask; a URL parse per log line is not free.
  if (!raw.includes("@") && !raw.includes("?")) return raw
  if (!URL.canParse(raw)) return raw
  const schemeEnd = raw.indexOf("://")
  if (schemeEnd < 0) return raw
  const authorityStart = schemeEnd + 3
  const authorityEnd = firstOf(raw, "/?#", authorityStart)
  const at = raw.lastIndexOf("@", authorityEnd - 1)
  const withoutCredentials = at >= authorityStart ? `${raw.slice(0, authorityStart)}${MASK}${raw.slice(at)}` : raw
  const queryStart = withoutCredentials.indexOf("?", authorityStart)
  if (queryStart < 0) return withoutCredentials
  const fragmentStart = withoutCredentials.indexOf("#", queryStart)
  const queryEnd = fragmentStart < 0 ? withoutCredentials.length : fragmentStart
  const query = withoutCredentials.slice(queryStart + 1, queryEnd).split("&").map((pair) => {
    const equals = pair.indexOf("=")
    const name = equals < 0 ? pair : pair.slice(0, equals)
    return SECRET_PARAM.test(decodedName(name)) ? `${name}=${MASK}` : pair
  })
  return `${withoutCredentials.slice(0, queryStart + 1)}${query.join("&")}${withoutCredentials.slice(queryEnd)}`
}

/** The index of the first of `chars` in `text` from `from`, or the text's length. */
const firstOf = (text: string, chars: string, from: number): number => {
  for (let i = from; i < text.length; i++) if (chars.includes(text[i]!)) return i
  return text.length
}

/** A query parameter's name as a form decodes it (`+` is a space; a bad escape is kept as written). */
const decodedName = (name: string): string => {
  const spaced = name.replaceAll("+", " ")
  try {
    return decodeURIComponent(spaced)
  } catch {
    return spaced
  }
}
