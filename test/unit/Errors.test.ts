import { describe, expect, it } from "vitest"
import { ConfigError, describeCause, SourceTimeout, UnsafePath, WriteError } from "../../src/pipeline/Errors.js"

const errno = (code: string, syscall: string, message: string) =>
  Object.assign(new Error(message), { code, syscall, errno: -1 }) as NodeJS.ErrnoException

describe("describeCause", () => {
  it("drops Node's path suffix (it would show /proc/self/fd/N, not the real path)", () => {
    expect(
      describeCause(
        errno(
          "EISDIR",
          "rename",
          "EISDIR: illegal operation on a directory, rename '/proc/self/fd/36/.a' -> '/proc/self/fd/36/authorized_keys'"
        )
      )
    )
      .toBe("EISDIR: illegal operation on a directory")
    expect(describeCause(errno("ENOSPC", "write", "ENOSPC: no space left on device, write"))).toBe(
      "ENOSPC: no space left on device"
    )
    expect(describeCause(errno("EEXIST", "open", "EEXIST: file already exists, open '/proc/self/fd/30/x'"))).toBe(
      "EEXIST: file already exists"
    )
  })

  it("prefixes a code the message lacks, folds white space, and shows non-errors as text", () => {
    expect(describeCause(Object.assign(new Error("connect refused\n  at x"), { code: "ECONNREFUSED" }))).toBe(
      "ECONNREFUSED: connect refused at x"
    )
    expect(describeCause(new Error("plain"))).toBe("plain")
    expect(describeCause("text")).toBe("text")
  })
})

describe("error messages name what and where", () => {
  it.each([
    [
      new ConfigError({ file: "/etc/a.yaml", reason: "Schema", detail: "users: is required" }),
      "config /etc/a.yaml: users: is required"
    ],
    [
      new UnsafePath({ user: "bob", path: "/home/bob/.ssh", reason: "it is a symbolic link" }),
      "refusing to use /home/bob/.ssh: it is a symbolic link"
    ],
    [
      new SourceTimeout({ url: "https://k/a", timeoutSeconds: 3 }),
      "source https://k/a: no complete answer within 3s (timeout_seconds)"
    ],
    [
      new WriteError({
        path: "/home/bob/.ssh/authorized_keys",
        operation: "replace",
        detail: "ENOSPC: no space left on device"
      }),
      "cannot replace /home/bob/.ssh/authorized_keys: ENOSPC: no space left on device"
    ]
  ])("%s", (error, message) => {
    expect(error.message).toBe(message)
  })
})
