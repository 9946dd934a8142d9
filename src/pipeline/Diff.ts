/**
 * What a sync changes, key by key: used for `--dry-run` output and for the "updated" log line.
 *
 * @since 0.1.0
 */
import type { Section } from "./Dedup.js"

/** @since 0.1.0 */
export interface KeyChange {
  readonly key: string
  /** Section title the key is (or was) under, e.g. `Source: https://…` or `Local (preserved)`. */
  readonly section?: string
}

/** @since 0.1.0 */
export interface KeyDiff {
  readonly added: ReadonlyArray<KeyChange>
  readonly removed: ReadonlyArray<KeyChange>
}

const sectionTitle = (section: Section): string =>
  section._tag === "Source"
    ? `Source: ${section.url}`
    : section._tag === "Pinned"
    ? "Pinned (break-glass)"
    : "Local (preserved)"

/**
 * Keys present after the sync but not before (with the section that brings them), and keys present before but not
 * after. Order follows the files.
 *
 * @since 0.1.0
 */
export const diffKeys = (before: ReadonlyArray<string>, after: ReadonlyArray<Section>): KeyDiff => {
  const beforeSet = new Set(before)
  const afterSet = new Set<string>()
  const added: Array<KeyChange> = []
  for (const section of after) {
    // One title per section, not one string per added key (a source can bring hundreds of thousands).
    const title = sectionTitle(section)
    for (const key of section.keys) {
      afterSet.add(key)
      if (!beforeSet.has(key)) added.push({ key, section: title })
    }
  }
  const removed: Array<KeyChange> = []
  const seenRemoved = new Set<string>()
  for (const key of before) {
    if (!afterSet.has(key) && !seenRemoved.has(key)) {
      seenRemoved.add(key)
      removed.push({ key })
    }
  }
  return { added, removed }
}

/** A unified-diff style block for people reading a dry run. @since 0.1.0 */
export const renderDiff = (path: string, diff: KeyDiff): string => {
  const lines = [`--- ${path}`, `+++ ${path} (after sync)`]
  for (const change of diff.removed) lines.push(`-${change.key}`)
  for (const change of diff.added) lines.push(`+${change.key}`)
  if (diff.added.length === 0 && diff.removed.length === 0) lines.push(" (no key changes)")
  return lines.join("\n") + "\n"
}
