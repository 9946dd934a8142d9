import { describe, expect, it } from "vitest"
import {
  BACKUP_NAME_PATTERN,
  backupFileName,
  backupsToDelete,
  formatStamp,
  tempFileName
} from "../../src/pipeline/FileNames.js"

describe("formatStamp", () => {
  const cases: ReadonlyArray<readonly [string, Date, string]> = [
    ["every component zero padded", new Date("2025-09-03T04:05:06Z"), "20250903_040506"],
    ["two-digit components", new Date("2026-11-23T14:25:39Z"), "20261123_142539"],
    ["midnight", new Date("2025-01-01T00:00:00Z"), "20250101_000000"],
    ["last second of the year", new Date("2024-12-31T23:59:59Z"), "20241231_235959"],
    ["milliseconds dropped", new Date("2025-09-03T04:05:06.999Z"), "20250903_040506"],
    ["UTC, not local time", new Date("2025-03-01T01:30:00+05:00"), "20250228_203000"],
    ["epoch", new Date(0), "19700101_000000"]
  ]
  it.each(cases)("%s", (_name, date, expected) => {
    expect(formatStamp(date)).toBe(expected)
  })

  it("sorts names in time order", () => {
    const dates = ["2025-10-01T00:00:00Z", "2025-09-30T23:59:59Z", "2025-02-01T09:00:00Z", "2025-01-31T10:00:00Z"]
    const stamps = dates.map((d) => formatStamp(new Date(d)))
    expect([...stamps].sort()).toEqual(["20250131_100000", "20250201_090000", "20250930_235959", "20251001_000000"])
  })
})

describe("tempFileName / backupFileName", () => {
  const now = new Date("2025-09-03T04:05:06Z")
  it("tempFileName is .authkeysync_<stamp>_<id>", () => {
    expect(tempFileName(now, "abcdef")).toBe(".authkeysync_20250903_040506_abcdef")
  })
  it("backupFileName is authorized_keys_<stamp>_<id>", () => {
    expect(backupFileName(now, "qwerty")).toBe("authorized_keys_20250903_040506_qwerty")
  })
  it("backup names match the pattern retention selects on", () => {
    expect(BACKUP_NAME_PATTERN.test(backupFileName(now, "abcdef"))).toBe(true)
    expect(BACKUP_NAME_PATTERN.test(tempFileName(now, "abcdef"))).toBe(false)
  })
})

describe("backupsToDelete", () => {
  const b1 = "authorized_keys_20240101_000000_aaaaaa"
  const b2 = "authorized_keys_20240601_120000_bbbbbb"
  const b3 = "authorized_keys_20250101_000000_cccccc"
  const b4 = "authorized_keys_20250101_000001_dddddd"
  const b5 = "authorized_keys_20251231_235959_eeeeee"

  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, number, ReadonlyArray<string>]> = [
    ["nothing to delete under the limit", [b1, b2], 10, []],
    ["exactly at the limit", [b1, b2, b3], 3, []],
    ["retention larger than count deletes none", [b1, b2, b3, b4, b5], 100, []],
    ["one over: the oldest goes", [b1, b2, b3], 2, [b1]],
    ["oldest first, whatever the listing order", [b5, b2, b4, b1, b3], 2, [b1, b2, b3]],
    ["retention 1 keeps only the newest", [b3, b5, b1], 1, [b1, b3]],
    ["retention 0 deletes all", [b3, b1, b2], 0, [b1, b2, b3]],
    ["empty directory", [], 0, []],
    [
      "same second: ordered by id",
      ["authorized_keys_20250101_000000_zzzzzz", "authorized_keys_20250101_000000_aaaaaa"],
      1,
      [
        "authorized_keys_20250101_000000_aaaaaa"
      ]
    ],
    [
      "foreign names are never selected",
      [
        "authorized_keys_notes.txt",
        "other",
        b2,
        "authorized_keys",
        "README",
        b1,
        ".authkeysync_20200101_000000_abcdef"
      ],
      0,
      [b1, b2]
    ],
    [
      "foreign names do not count toward retention",
      ["authorized_keys_notes.txt", "other", b1, b2, "authorized_keys_00000000_000000_x.bak"],
      2,
      []
    ],
    [
      "near misses are foreign",
      [
        "authorized_keys_2024010_000000_aaaaaa", // 7-digit date
        "authorized_keys_20240101_00000_aaaaaa", // 5-digit time
        "authorized_keys_20240101_000000_", // no id
        "authorized_keys_20240101_000000_ABCDEF", // upper case id
        "authorized_keys_20240101_000000_abc/def",
        "xauthorized_keys_20240101_000000_aaaaaa",
        "authorized_keys_20240101_000000_aaaaaa.tmp"
      ],
      0,
      []
    ]
  ]
  it.each(cases)("%s", (_name, names, retention, expected) => {
    expect(backupsToDelete(names, retention)).toEqual(expected)
  })

  it("does not reorder the caller's array", () => {
    const names = [b3, b1, b2]
    backupsToDelete(names, 0)
    expect(names).toEqual([b3, b1, b2])
  })

  it("with the backup just written: names stamped after it are neither counted nor deleted", () => {
    const future = "authorized_keys_99991231_235959_zzzzzz"
    // Same second as b3, another id: a backup of that moment, counted.
    const sameSecond = "authorized_keys_20250101_000000_aaaaaa"
    expect(backupsToDelete([future, b1, b2, b3, sameSecond], 2, b3)).toEqual([b1, b2])
    expect(backupsToDelete([future, b1, b2, b3], 1, b3)).toEqual([b1, b2])
    // Without it, the future name outranks every real backup.
    expect(backupsToDelete([future, b1, b2, b3], 1)).toEqual([b1, b2, b3])
  })
})
