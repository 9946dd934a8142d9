/**
 * One root-only runtime directory for the whole test run (the CLI's run lock and revocation state under test), made
 * before the test files start and removed after the last one, so that nothing is left in /tmp. At the end the run
 * also fails if a test left revocation records of its throwaway accounts in the host's own state directory (a config
 * without `policy.state_dir`).
 */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

const HOST_RECORDS = "/var/lib/authkeysync/managed-keys"
const testRecords = () =>
  fs.readdir(HOST_RECORDS).then(
    (names) => names.filter((name) => name.startsWith("akse2e_")),
    () => [] as Array<string>
  )

export default async function setup(): Promise<() => Promise<void>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-runtime-"))
  await fs.chmod(dir, 0o700)
  process.env["AKSE2E_RUNTIME_DIR"] = dir
  const before = new Set(await testRecords())
  return async () => {
    await fs.rm(dir, { recursive: true, force: true })
    const left = (await testRecords()).filter((name) => !before.has(name))
    for (const name of left) await fs.rm(path.join(HOST_RECORDS, name), { force: true })
    if (left.length > 0) {
      throw new Error(
        `tests wrote into the host's ${HOST_RECORDS} (removed now): ${
          left.join(", ")
        }; give their configs policy.state_dir`
      )
    }
  }
}
