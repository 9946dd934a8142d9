/**
 * Text from sources, users' files and the config, made safe to show on a terminal or in a log: characters that
 * move the cursor, change colours, write the clipboard (ESC sequences), break a line for a log reader (U+2028, U+2029,
 * NEL) or reorder what is shown (bidirectional overrides) are written as escapes instead. A user can put any of them
 * in a key's comment; a source can send them. Pure.
 *
 * @since 0.1.0
 */

/** C1 controls (NEL, CSI, OSC, …), the line and paragraph separators, and the bidirectional embeddings and isolates. */
const INVISIBLE_CHARS = String.raw`\u0080-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069`
const INVISIBLE = new RegExp(`[${INVISIBLE_CHARS}]`, "g")
const HAS_INVISIBLE = new RegExp(`[${INVISIBLE_CHARS}]`)
/** The same, and the C0 controls but tab, and DEL. */
const CONTROL = new RegExp(String.raw`[\u0000-\u0008\u000a-\u001f\u007f${INVISIBLE_CHARS}]`, "g")

const unicodeEscape = (char: string): string => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`

const escape = (char: string): string => {
  const code = char.charCodeAt(0)
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : unicodeEscape(char)
}

/**
 * `text` with every control character but tab written as `\xNN` (`\uNNNN` above U+00FF), for a terminal: what a line
 * holds, without doing what it says.
 *
 * @since 0.1.0
 */
export const visibleText = (text: string): string => text.replace(CONTROL, escape)

/**
 * JSON text (JSON.stringify's output, which escapes C0 controls but not these) with C1 controls, line separators and
 * bidirectional controls as `\uNNNN` escapes: still the same JSON value. They can occur only inside strings there.
 *
 * @since 0.1.0
 */
export const jsonWithoutInvisible = (json: string): string => json.replace(INVISIBLE, unicodeEscape)

/** Whether `text` holds a character jsonWithoutInvisible escapes. @since 0.1.0 */
export const hasInvisible = (text: string): boolean => HAS_INVISIBLE.test(text)

/**
 * `text` cut to at most `max` characters for a log line, ending in `...` when cut. Counts code points, so an emoji in
 * a key's comment is never split into half a surrogate pair (shown as U+FFFD or a lone `\ud83d` escape).
 *
 * @since 0.1.0
 */
export const shortened = (text: string, max: number): string => {
  const chars = Array.from(text)
  return chars.length <= max ? text : `${chars.slice(0, Math.max(0, max - 3)).join("")}...`
}
