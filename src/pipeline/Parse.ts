/**
 * The spec's line classifier (section 3.2), applied the same way to a source's body and to the local file.
 * Pure: text in, keys and counts out.
 *
 * @since 0.1.0
 */

/** What a single line of authorized_keys-format text is. @since 0.1.0 */
export type LineClass = "empty" | "comment" | "error-page" | "key" | "malformed"

/**
 * The Go original trims a line with strings.TrimSpace and counts its fields with strings.Fields, both with Go's
 * unicode.IsSpace: the ASCII blanks (space, \t \n \v \f \r) and, decoded from UTF-8, U+0085, U+00A0 (no-break
 * space), U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F and U+3000. Lines here are byte strings (see
 * Bytes.ts), so those characters are matched as their whole UTF-8 byte sequences: a lone 0xA0 byte (a Latin-1
 * no-break space) is not white space, in Go either. This is the length of such white space (one ASCII blank or one
 * UTF-8 sequence) at `i`, or 0.
 */
const spaceAt = (line: string, i: number): number => {
  const c = line.charCodeAt(i)
  if (c === 32 || (c >= 9 && c <= 13)) return 1
  if (c < 0xC2) return 0
  const c1 = line.charCodeAt(i + 1)
  if (c === 0xC2) return c1 === 0x85 || c1 === 0xA0 ? 2 : 0
  const c2 = line.charCodeAt(i + 2)
  if (c === 0xE1) return c1 === 0x9A && c2 === 0x80 ? 3 : 0
  if (c === 0xE2) {
    if (c1 === 0x80) return (c2 >= 0x80 && c2 <= 0x8A) || c2 === 0xA8 || c2 === 0xA9 || c2 === 0xAF ? 3 : 0
    return c1 === 0x81 && c2 === 0x9F ? 3 : 0
  }
  return c === 0xE3 && c1 === 0x80 && c2 === 0x80 ? 3 : 0
}

/**
 * The length of the white space that ends at `end` and starts at `start` or later, or 0. UTF-8 lead bytes cannot be
 * continuation bytes, so a sequence found here is the last character as Go decodes it (utf8.DecodeLastRuneInString).
 */
const spaceBefore = (line: string, start: number, end: number): number => {
  for (let n = 1; n <= 3 && end - n >= start; n++) {
    if (spaceAt(line, end - n) === n) return n
  }
  return 0
}

/**
 * Remove leading and trailing white space as the Go original's strings.TrimSpace does (see spaceAt). A loop, not a
 * regex: `/[ \t…]+$/` backtracks over every blank of a run that does not end the line, quadratic in its length, and
 * a user's own file (or a source) could then hold the whole run for hours with one long line.
 *
 * @since 0.1.0
 */
export const trimLine = (line: string): string => {
  let start = 0
  let end = line.length
  for (let n = spaceAt(line, start); n > 0 && start + n <= end; n = spaceAt(line, start)) start += n
  for (let n = spaceBefore(line, start, end); n > 0; n = spaceBefore(line, start, end)) end -= n
  return start === 0 && end === line.length ? line : line.slice(start, end)
}

/**
 * Classify one line after trimming. A key is any line with at least two white-space separated fields that does not
 * look like a comment or an HTML/JSON error body; the key type is deliberately not checked (forward compatibility).
 *
 * @since 0.1.0
 */
export const classifyLine = (line: string): LineClass => {
  const trimmed = trimLine(line)
  if (trimmed.length === 0) return "empty"
  const first = trimmed[0]
  if (first === "#") return "comment"
  if (first === "<" || first === "{" || first === "[") return "error-page"
  // Trimmed, so any white space left separates two fields.
  for (let i = 0; i < trimmed.length; i++) if (spaceAt(trimmed, i) > 0) return "key"
  return "malformed"
}

/** @since 0.1.0 */
export interface ParsedKeys {
  /** Trimmed key lines in the order they appeared, duplicates included. */
  readonly keys: ReadonlyArray<string>
  /** How many lines were dropped, by class. */
  readonly discarded: { readonly [K in Exclude<LineClass, "key">]: number }
}

/**
 * Split text into lines (LF or CRLF) and keep the key lines, trimmed. Works on byte strings (see Bytes.ts). With
 * `limit`, stops at the key line after the `limit`th (`keys` then holds `limit + 1`, and `discarded` counts only the
 * lines before it): a source or a file of millions of two-field lines is known to be too many without holding them
 * all, which took seconds and hundreds of megabytes on the run's one thread, long enough for other users' fetches to
 * time out.
 *
 * @since 0.1.0
 */
export const parseKeys = (text: string, limit = Number.POSITIVE_INFINITY): ParsedKeys => {
  const keys: Array<string> = []
  const discarded = { empty: 0, comment: 0, "error-page": 0, malformed: 0 }
  for (let start = 0; start < text.length && keys.length <= limit;) {
    const newline = text.indexOf("\n", start)
    // "a\nb\n" is two lines, not three: the final newline ends the last line.
    const end = newline < 0 ? text.length : newline
    const line = text.slice(start, end)
    start = end + 1
    const kind = classifyLine(line)
    if (kind === "key") keys.push(trimLine(line))
    else discarded[kind]++
  }
  return { keys, discarded }
}

/** Lines that were dropped for a reason worth a log line (not blank lines or comments). @since 0.1.0 */
export const rejectedLineCount = (parsed: ParsedKeys): number =>
  parsed.discarded["error-page"] + parsed.discarded.malformed
