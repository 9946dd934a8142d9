/**
 * Root-owned canaries for the black-box hardening tests: a file (and the directory holding it) that a planted link
 * points at. After the run, `expectUntouched` checks the file's bytes (SHA-256), owner and mode, and that nothing
 * was created next to it.
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { expect } from "vitest"

export interface Canary {
  /** A root-only directory (0700, root:root), standing in for /root/.ssh or /etc. */
  readonly dir: string
  /** `dir/secret`: 0600 root:root, random bytes. */
  readonly file: string
  /** Hash, owner and mode of the file and the directory's listing are unchanged. */
  readonly expectUntouched: () => Promise<void>
  readonly remove: () => Promise<void>
}

interface Fingerprint {
  readonly sha256: string
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly nlink: number
  readonly dirMode: number
  readonly dirUid: number
  readonly listing: ReadonlyArray<string>
}

const fingerprint = async (dir: string, file: string): Promise<Fingerprint> => {
  const st = await fs.lstat(file)
  const dst = await fs.lstat(dir)
  return {
    sha256: createHash("sha256").update(await fs.readFile(file)).digest("hex"),
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    nlink: st.nlink,
    dirMode: dst.mode & 0o7777,
    dirUid: dst.uid,
    listing: (await fs.readdir(dir)).sort()
  }
}

/** Make a canary; `content` defaults to random bytes (a "root secret"). */
export const makeCanary = async (content?: string): Promise<Canary> => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-canary-"))
  await fs.chmod(dir, 0o700)
  const file = path.join(dir, "secret")
  await fs.writeFile(file, content ?? `root secret ${randomBytes(16).toString("hex")}\n`, { mode: 0o600 })
  await fs.chmod(file, 0o600)
  const before = await fingerprint(dir, file)
  expect(before.uid, "the canary must be root's (run the tests as root)").toBe(0)
  return {
    dir,
    file,
    expectUntouched: async () => {
      expect(await fingerprint(dir, file)).toEqual(before)
    },
    remove: () => fs.rm(dir, { recursive: true, force: true })
  }
}
