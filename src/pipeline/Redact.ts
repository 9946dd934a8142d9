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
 * Anything that does not parse as a URL is returned as is (it came from a validated config).
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
