/**
 * One root-only runtime directory for the whole test run (the CLI's run lock and revocation state under test), made
 * before the test files start and removed after the last one, so that nothing is left in /tmp.
 */
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

export default async function setup(): Promise<() => Promise<void>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "akse2e-runtime-"))
  await fs.chmod(dir, 0o700)
  process.env["AKSE2E_RUNTIME_DIR"] = dir
  return () => fs.rm(dir, { recursive: true, force: true })
}
