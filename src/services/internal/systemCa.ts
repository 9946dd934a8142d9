/**
 * The host's trusted CA certificates, found where the Go original finds them (crypto/x509 on Linux): the first of the
 * distributions' bundle files that exists (or `SSL_CERT_FILE`), plus every file in the certificate directories (or the
 * `:`-separated `SSL_CERT_DIR`). Node would otherwise trust only the Mozilla list compiled into it, and a site whose
 * key server has a certificate from its own CA, installed with `update-ca-certificates`, would see every https source
 * fail after swapping the binary.
 *
 * Other platforms (macOS: Go asks the system's verifier) keep Node's list. `NODE_EXTRA_CA_CERTS` adds to either.
 */
import { closeSync, constants as C, fstatSync, openSync, readdirSync, readlinkSync, readSync } from "node:fs"
import { join } from "node:path"

/** Where Go looks on Linux, in its order: the first file that can be read is the bundle. */
export const CERT_FILES: ReadonlyArray<string> = [
  "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Gentoo, Arch
  "/etc/pki/tls/certs/ca-bundle.crt", // Fedora, RHEL 6
  "/etc/ssl/ca-bundle.pem", // openSUSE
  "/etc/pki/tls/cacert.pem", // OpenELEC
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7 and later
  "/etc/ssl/cert.pem" // Alpine
]
export const CERT_DIRECTORIES: ReadonlyArray<string> = ["/etc/ssl/certs", "/etc/pki/tls/certs"]

/** How the store is read; the live one below, or a test's. */
export interface CaStoreReader {
  /** A regular file's text, or undefined when there is none to read (missing, a directory, a FIFO, too large). */
  readonly readFile: (path: string) => string | undefined
  /**
   * A directory's entries, without the links to another entry of the same directory (the hash names
   * `c_rehash` makes: the same certificates again), or undefined when it cannot be listed.
   */
  readonly listDirectory: (path: string) => ReadonlyArray<string> | undefined
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[ \t]*\r?\n([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g

/**
 * The CERTIFICATE blocks of a PEM text, each rewritten without blanks (Go's pem.Decode ignores spaces, tabs and CRs
 * around and inside the base64; Node's parser is stricter); other blocks, and certificates with PEM headers, are
 * skipped, as Go skips them.
 */
export const pemCertificates = (text: string): ReadonlyArray<string> =>
  [...text.matchAll(PEM_CERTIFICATE)].map((match) => {
    const base64 = match[1]!.split("\n").map((line) => line.replace(/\s+/g, "")).filter((line) => line !== "")
    return `-----BEGIN CERTIFICATE-----\n${base64.join("\n")}\n-----END CERTIFICATE-----`
  })

/**
 * The store's certificates, each PEM block once, or undefined when the host has none where Go looks (then Node's
 * own list is used).
 */
export const systemCaCertificates = (
  env: Readonly<Record<string, string | undefined>>,
  reader: CaStoreReader
): ReadonlyArray<string> | undefined => {
  const certificates = new Set<string>()
  const add = (text: string | undefined) => {
    if (text !== undefined) { for (const pem of pemCertificates(text)) certificates.add(pem) }
  }
  const certFile = env["SSL_CERT_FILE"]
  for (const file of certFile ? [certFile] : CERT_FILES) {
    const text = reader.readFile(file)
    if (text !== undefined) {
      add(text)
      break
    }
  }
  const certDir = env["SSL_CERT_DIR"]
  for (const directory of certDir ? certDir.split(":").filter((d) => d !== "") : CERT_DIRECTORIES) {
    for (const name of reader.listDirectory(directory) ?? []) add(reader.readFile(join(directory, name)))
  }
  if (certificates.size === 0) return undefined
  // Node's own variable for extra CAs keeps working: it adds to the store, as it adds to Node's list.
  const extra = env["NODE_EXTRA_CA_CERTS"]
  if (extra) add(reader.readFile(extra))
  return [...certificates]
}

/** Far more than any bundle (Debian's is about 200 KB). */
const MAX_FILE_BYTES = 16 * 1024 * 1024

/**
 * Reads regular files only, opened without blocking: a FIFO or a device among the certificates would otherwise hold
 * the run.
 */
export const liveReader: CaStoreReader = {
  readFile: (path) => {
    let fd: number
    try {
      fd = openSync(path, C.O_RDONLY | C.O_NONBLOCK | C.O_NOCTTY)
    } catch {
      return undefined
    }
    try {
      const st = fstatSync(fd)
      if (!st.isFile() || st.size > MAX_FILE_BYTES) return undefined
      const buffer = Buffer.alloc(st.size)
      let filled = 0
      while (filled < buffer.length) {
        const n = readSync(fd, buffer, filled, buffer.length - filled, null)
        if (n === 0) break
        filled += n
      }
      return buffer.subarray(0, filled).toString("latin1")
    } catch {
      return undefined
    } finally {
      closeSync(fd)
    }
  },
  listDirectory: (directory) => {
    try {
      return readdirSync(directory, { withFileTypes: true })
        .filter((entry) => {
          if (!entry.isSymbolicLink()) return true
          try {
            return readlinkSync(join(directory, entry.name)).includes("/")
          } catch {
            return false
          }
        })
        .map((entry) => entry.name)
        .sort()
    } catch {
      return undefined
    }
  }
}

/** The host's store as Go finds it, on Linux; undefined elsewhere or when it is empty. */
export const loadSystemCaCertificates = (
  env: Readonly<Record<string, string | undefined>> = process.env,
  platform: NodeJS.Platform = process.platform,
  reader: CaStoreReader = liveReader
): ReadonlyArray<string> | undefined => (platform === "linux" ? systemCaCertificates(env, reader) : undefined)
