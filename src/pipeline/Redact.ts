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
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return raw
  }
  const inText = maskInText(raw, url.protocol)
  // The text is masked where it says what a parser reads; a spelling the parser reads otherwise (`http:user:pw@host`
  // without slashes, a backslash for a slash) is caught here, and that URL is masked by rebuilding it instead.
  return inText !== undefined && stillSecret(inText) === false ? inText : rebuildMasked(url, raw)
}

/** `raw` with its credentials and secret-looking query values masked in the text, or undefined when it has no `//`. */
const maskInText = (raw: string, protocol: string): string | undefined => {
  const schemeEnd = raw.indexOf("://")
  if (schemeEnd < 0) return undefined
  const authorityStart = schemeEnd + 3
  // For http and https a backslash ends the host as a slash does.
  const authorityEnd = firstOf(raw, protocol === "http:" || protocol === "https:" ? "/?#\\" : "/?#", authorityStart)
  const at = raw.lastIndexOf("@", authorityEnd - 1)
  const withoutCredentials = at >= authorityStart ? `${raw.slice(0, authorityStart)}${MASK}${raw.slice(at)}` : raw
  const queryStart = withoutCredentials.indexOf("?", authorityStart)
  if (queryStart < 0) return withoutCredentials
  const fragmentStart = withoutCredentials.indexOf("#", queryStart)
  const queryEnd = fragmentStart < 0 ? withoutCredentials.length : fragmentStart
  // `;` separates parameters for some servers too: a token after one is masked as well.
  const query = withoutCredentials.slice(queryStart + 1, queryEnd).split(/([&;])/).map((pair, i) => {
    if (i % 2 === 1) return pair
    const equals = pair.indexOf("=")
    const name = equals < 0 ? pair : pair.slice(0, equals)
    return SECRET_PARAM.test(decodedName(name)) ? `${name}=${MASK}` : pair
  })
  return `${withoutCredentials.slice(0, queryStart + 1)}${query.join("")}${withoutCredentials.slice(queryEnd)}`
}

/** Whether a parser still finds credentials, or a secret-named parameter with another value, in `masked`. */
const stillSecret = (masked: string): boolean => {
  let url: URL
  try {
    url = new URL(masked)
  } catch {
    return true
  }
  if ((url.username !== "" && url.username !== MASK) || url.password !== "") return true
  for (const [name, value] of url.searchParams) if (SECRET_PARAM.test(name) && value !== MASK) return true
  return false
}

/** The URL rebuilt by the parser with everything secret masked: every spelling, at the cost of its normal form. */
const rebuildMasked = (url: URL, raw: string): string => {
  let changed = false
  if (url.username !== "" || url.password !== "") {
    url.username = MASK
    url.password = ""
    changed = true
  }
  for (const name of [...url.searchParams.keys()]) {
    if (SECRET_PARAM.test(name)) {
      url.searchParams.set(name, MASK)
      changed = true
    }
  }
  return changed ? url.toString().replaceAll("%2A%2A%2A", MASK) : raw
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
