/**
 * Revocation that works with `preserve_local_keys: true`.
 *
 * The Go original reads its own managed lines back as "local" keys, so a key removed at the source moves to
 * `# Local (preserved)` and stays forever. Here a key the tool wrote from a source (or as a pinned key) on its last
 * write is never "local": if no source serves it any more it is revoked, wherever the user moved it in the file.
 * Which keys were written is remembered outside the user's reach (see services/ManagedKeys.ts), so marker lines in
 * the file, which the user can edit, decide nothing. Only when there is no record yet (the first run, e.g. after
 * the Go original) do the file's `# Source:` sections say what was managed, and then only to let a source's current
 * line replace the line written for the same key (syncUser revokes nothing on that run): a marker can never make the
 * tool keep a key.
 *
 * Pure; works on byte strings.
 *
 * @since 0.1.0
 */
import type { Section } from "./Dedup.js"
import { keyIdentity } from "./KeyIdentity.js"
import { classifyLine, trimLine } from "./Parse.js"
import { LOCAL_TITLE, managedBody, PINNED_TITLE, SOURCE_TITLE_PREFIX } from "./Render.js"

/** @since 0.1.0 */
export interface LocalSelection {
  /** Local keys that stay (under `# Local (preserved)`). */
  readonly kept: ReadonlyArray<string>
  /** Keys the tool wrote last time that no source (and no pin) provides any more. */
  readonly revoked: ReadonlyArray<string>
}

/**
 * Split the keys of the existing file into the ones that stay local and the ones that are revoked. A line of a key
 * that was managed and is still provided is dropped when the tool wrote that very line last time (`previouslyWritten`):
 * the provider's current line (with its current options and comment) replaces it. Another line of that key (the
 * user's own variant, say with `from=` or another comment) is the user's and stays, as on the run before the key was
 * recorded; without `previouslyWritten` (a record from before lines were kept) every such line is dropped.
 *
 * @since 0.1.0
 */
export const selectLocalKeys = (
  localKeys: ReadonlyArray<string>,
  previouslyManaged: ReadonlySet<string>,
  providedNow: ReadonlySet<string>,
  previouslyWritten?: ReadonlySet<string>
): LocalSelection => {
  const kept: Array<string> = []
  const revoked: Array<string> = []
  for (const key of localKeys) {
    const id = keyIdentity(key)
    if (!previouslyManaged.has(id)) kept.push(key)
    else if (!providedNow.has(id)) revoked.push(key)
    else if (previouslyWritten !== undefined && !previouslyWritten.has(key)) kept.push(key)
  }
  return { kept, revoked }
}

/** Identities of the keys the tool provides in `sections` (pinned and source sections, not local). @since 0.1.0 */
export const providedIdentities = (sections: ReadonlyArray<Section>): ReadonlySet<string> => {
  const ids = new Set<string>()
  for (const section of sections) {
    if (section._tag !== "Local") { for (const key of section.keys) ids.add(keyIdentity(key)) }
  }
  return ids
}

/** Identities of the keys of `sources` and `pinned`, before dedup against the local file. @since 0.1.0 */
export const identitiesOf = (keyLists: ReadonlyArray<ReadonlyArray<string>>): ReadonlySet<string> => {
  const ids = new Set<string>()
  for (const keys of keyLists) for (const key of keys) ids.add(keyIdentity(key))
  return ids
}

/**
 * For a file with no record yet: identities of the keys under `# Source:` or `# Pinned` markers of an AuthKeySync
 * file (this tool's or the Go original's). Any other file was never managed: nothing in it counts as managed.
 *
 * @since 0.1.0
 */
export const markedManagedIdentities = (content: string): ReadonlySet<string> =>
  new Set([...markedManagedLines(content)].map(keyIdentity))

/**
 * For a file with no record yet: the key lines under `# Source:` or `# Pinned` markers of an AuthKeySync file, as
 * `selectLocalKeys`'s `previouslyWritten`. Used only with the identities of the same markers.
 *
 * @since 0.1.0
 */
export const markedManagedLines = (content: string): ReadonlySet<string> => {
  const lines = new Set<string>()
  const body = managedBody(content)
  if (body === undefined) return lines
  let managed = false
  for (const raw of body.split("\n")) {
    const line = trimLine(raw)
    if (line.startsWith(SOURCE_TITLE_PREFIX) || line === PINNED_TITLE) managed = true
    else if (line === LOCAL_TITLE) managed = false
    else if (managed && classifyLine(line) === "key") lines.add(line)
  }
  return lines
}
