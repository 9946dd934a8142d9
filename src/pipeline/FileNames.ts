/**
 * Names of the files the tool creates next to authorized_keys (spec sections 3.5 and 4), and backup retention.
 *
 * @since 0.1.0
 */

/** `20260923_140509`: UTC, zero-padded, so that sorting names sorts them by time. @since 0.1.0 */
export const formatStamp = (date: Date): string => {
  const pad = (n: number) => String(n).padStart(2, "0")
  return (
    `${date.getUTCFullYear()}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}_` +
    `${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}`
  )
}

export const AUTHORIZED_KEYS = "authorized_keys"
export const BACKUP_DIR = "authorized_keys_backups"
export const TEMP_PREFIX = ".authkeysync_"
export const BACKUP_PREFIX = "authorized_keys_"

/** `.authkeysync_<YYYYMMDD_HHMMSS>_<id>` inside `.ssh`. @since 0.1.0 */
export const tempFileName = (now: Date, id: string): string => `${TEMP_PREFIX}${formatStamp(now)}_${id}`

/** `authorized_keys_<YYYYMMDD_HHMMSS>_<id>` inside `.ssh/authorized_keys_backups`. @since 0.1.0 */
export const backupFileName = (now: Date, id: string): string => `${BACKUP_PREFIX}${formatStamp(now)}_${id}`

/** Backup names this tool (or the Go original) wrote; nothing else in the directory is ever deleted. */
export const BACKUP_NAME_PATTERN = /^authorized_keys_\d{8}_\d{6}_[a-z0-9]+$/

/** The `authorized_keys_<YYYYMMDD_HHMMSS>_` part of a backup name: what orders backups in time. */
const stampOf = (name: string): string => name.slice(0, BACKUP_PREFIX.length + 16)

/**
 * The backups to delete so that `retention` remain: the oldest first, judged by name (the names sort by time). With
 * `latest` (the backup just written), names stamped later are neither counted nor deleted: no run wrote them, and a
 * name from the future would otherwise outrank every real backup and have it deleted as soon as it is written.
 *
 * @since 0.1.0
 */
export const backupsToDelete = (
  names: ReadonlyArray<string>,
  retention: number,
  latest?: string
): ReadonlyArray<string> => {
  const backups = names
    .filter((name) => BACKUP_NAME_PATTERN.test(name) && (latest === undefined || stampOf(name) <= stampOf(latest)))
    .sort()
  return backups.slice(0, Math.max(0, backups.length - retention))
}
