/**
 * The spec's line classifier (section 3.2), applied the same way to a source's body and to the local file.
 * Pure: text in, keys and counts out.
 *
 * @since 0.1.0
 */

/** What a single line of authorized_keys-format text is. @since 0.1.0 */
export type LineClass = "empty" | "comment" | "error-page" | "key" | "malformed"

const FIELD_SEPARATOR = /[ \t\n\v\f\r]+/

/** ASCII white space only (space, \t \n \v \f \r): trimming Unicode spaces would cut bytes out of a multi-byte character. */
const isBlank = (code: number) => code === 32 || (code >= 9 && code <= 13)

/**
 * Remove leading and trailing ASCII white space. A loop, not a regex: `/[ \t…]+$/` backtracks over every blank of a
 * run that does not end the line, quadratic in its length, and a user's own file (or a source) could then hold the
 * whole run for hours with one long line.
 *
 * @since 0.1.0
 */
export const trimLine = (line: string): string => {
  let start = 0
  let end = line.length
  while (start < end && isBlank(line.charCodeAt(start))) start++
  while (end > start && isBlank(line.charCodeAt(end - 1))) end--
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
  return trimmed.split(FIELD_SEPARATOR).length >= 2 ? "key" : "malformed"
}

/** @since 0.1.0 */
export interface ParsedKeys {
  /** Trimmed key lines in the order they appeared, duplicates included. */
  readonly keys: ReadonlyArray<string>
  /** How many lines were dropped, by class. */
  readonly discarded: { readonly [K in Exclude<LineClass, "key">]: number }
}

/**
 * Split text into lines (LF or CRLF) and keep the key lines, trimmed. Works on byte strings (see Bytes.ts).
 *
 * @since 0.1.0
 */
export const parseKeys = (text: string): ParsedKeys => {
  const keys: Array<string> = []
  const discarded = { empty: 0, comment: 0, "error-page": 0, malformed: 0 }
  if (text.length === 0) return { keys, discarded }
  const lines = text.split("\n")
  // "a\nb\n" is two lines, not three: the final newline ends the last line.
  if (lines[lines.length - 1] === "") lines.pop()
  for (const line of lines) {
    const kind = classifyLine(line)
    if (kind === "key") keys.push(trimLine(line))
    else discarded[kind]++
  }
  return { keys, discarded }
}

/** Lines that were dropped for a reason worth a log line (not blank lines or comments). @since 0.1.0 */
export const rejectedLineCount = (parsed: ParsedKeys): number =>
  parsed.discarded["error-page"] + parsed.discarded.malformed
