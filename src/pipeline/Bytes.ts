/**
 * authorized_keys content is handled as bytes, not as UTF-8 text: a comment in Latin-1 or any other stray byte in a
 * user's file or a source's answer is written back exactly as it came. Internally a "byte string" holds one char per
 * byte (Node's "latin1" encoding); these helpers cross between byte strings and ordinary text.
 *
 * @since 0.1.0
 */

/** Ordinary text (e.g. a URL from the config) as the UTF-8 bytes it is written with. @since 0.1.0 */
export const textToBytes = (text: string): string => Buffer.from(text, "utf8").toString("latin1")

/** A byte string shown as text for logs and dry-run output; invalid UTF-8 shows as U+FFFD. @since 0.1.0 */
export const bytesToText = (bytes: string): string => Buffer.from(bytes, "latin1").toString("utf8")
