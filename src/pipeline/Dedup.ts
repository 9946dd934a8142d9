/**
 * Global deduplication (spec section 3.3): first occurrence wins, sources in config order, then the local file.
 * Lines are compared byte for byte after trimming; the key blob is not parsed.
 *
 * @since 0.1.0
 */

/** One block of the generated file. @since 0.1.0 */
export type Section =
  | { readonly _tag: "Pinned"; readonly keys: ReadonlyArray<string> }
  | { readonly _tag: "Source"; readonly url: string; readonly keys: ReadonlyArray<string> }
  | { readonly _tag: "Local"; readonly keys: ReadonlyArray<string> }

/** A line dropped because an earlier source (or the same one) already had it. @since 0.1.0 */
export interface Duplicate {
  readonly key: string
  readonly keptIn: string
  readonly droppedFrom: string
}

/** @since 0.1.0 */
export interface MergedKeys {
  /** Every section in output order, empty ones included (rendering omits them). */
  readonly sections: ReadonlyArray<Section>
  readonly duplicates: ReadonlyArray<Duplicate>
}

/** The label used for the local file in dedup events. */
export const LOCAL_LABEL = "local authorized_keys"
/** The label used for policy.pinned_keys and a user's pinned_keys in dedup events. */
export const PINNED_LABEL = "pinned keys"

/**
 * Merge the keys of each source (in config order) with the keys of the existing file.
 * `localKeys` is `undefined` when `preserve_local_keys` is false. Pinned (break-glass) keys come first, so they are
 * never dropped as a duplicate of anything.
 *
 * @since 0.1.0
 */
export const mergeKeys = (
  sources: ReadonlyArray<{ readonly url: string; readonly keys: ReadonlyArray<string> }>,
  localKeys: ReadonlyArray<string> | undefined,
  pinnedKeys: ReadonlyArray<string> = []
): MergedKeys => {
  const firstSeen = new Map<string, string>()
  const duplicates: Array<Duplicate> = []
  const keep = (keys: ReadonlyArray<string>, label: string): Array<string> => {
    const kept: Array<string> = []
    for (const key of keys) {
      const keptIn = firstSeen.get(key)
      if (keptIn !== undefined) {
        duplicates.push({ key, keptIn, droppedFrom: label })
        continue
      }
      firstSeen.set(key, label)
      kept.push(key)
    }
    return kept
  }
  const sections: Array<Section> = []
  if (pinnedKeys.length > 0) sections.push({ _tag: "Pinned", keys: keep(pinnedKeys, PINNED_LABEL) })
  for (const source of sources) sections.push({ _tag: "Source", url: source.url, keys: keep(source.keys, source.url) })
  if (localKeys !== undefined) sections.push({ _tag: "Local", keys: keep(localKeys, LOCAL_LABEL) })
  return { sections, duplicates }
}

/** All keys of the merged result, in file order. @since 0.1.0 */
export const allKeys = (sections: ReadonlyArray<Section>): ReadonlyArray<string> => sections.flatMap((s) => s.keys)
