/**
 * Where the host's CA certificates are found: as the Go original's crypto/x509 finds them on Linux.
 */
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import {
  type CaStoreReader,
  liveReader,
  loadSystemCaCertificates,
  pemCertificates,
  systemCaCertificates
} from "../../src/services/internal/systemCa.js"

const cert = (body: string) => `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----`
const A = cert("QUFB")
const B = cert("QkJC")
const C = cert("Q0ND")

/** A fake host: files by path, directories by path (their entry names, same-directory links already left out). */
const host = (files: Record<string, string>, directories: Record<string, ReadonlyArray<string>> = {}) => {
  const read: Array<string> = []
  const reader: CaStoreReader = {
    readFile: (path) => {
      read.push(path)
      return files[path]
    },
    listDirectory: (path) => directories[path]
  }
  return { reader, read }
}

describe("pemCertificates", () => {
  it("takes CERTIFICATE blocks only, CRLF ones too; other blocks and blocks with PEM headers are skipped", () => {
    const text = [
      "# a comment line",
      A,
      "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----",
      "-----BEGIN CERTIFICATE-----\r\nQkJC\r\n-----END CERTIFICATE-----",
      "-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nQ0ND\n-----END CERTIFICATE-----",
      "-----BEGIN TRUSTED CERTIFICATE-----\nREREA\n-----END TRUSTED CERTIFICATE-----"
    ].join("\n")
    expect(pemCertificates(text)).toEqual([A, B])
  })

  it("blanks at line ends and indentation are dropped, as Go's pem.Decode drops them (found in review)", () => {
    const text = "-----BEGIN CERTIFICATE----- \n  QUFB \t\n\tQkJC  \n-----END CERTIFICATE-----  \n"
    expect(pemCertificates(text)).toEqual(["-----BEGIN CERTIFICATE-----\nQUFB\nQkJC\n-----END CERTIFICATE-----"])
  })
})

describe("systemCaCertificates (Go's loadSystemRoots on Linux)", () => {
  it("the first bundle file that exists wins (Fedora's when Debian's is missing), then every certificate directory", () => {
    const { reader, read } = host(
      {
        "/etc/pki/tls/certs/ca-bundle.crt": `${A}\n${B}\n`,
        "/etc/ssl/ca-bundle.pem": C,
        "/etc/ssl/certs/extra.pem": C,
        "/etc/ssl/certs/again.pem": A
      },
      { "/etc/ssl/certs": ["again.pem", "extra.pem"] }
    )
    expect(systemCaCertificates({}, reader)).toEqual([A, B, C])
    // openSUSE's bundle is not read once Fedora's was found.
    expect(read).not.toContain("/etc/ssl/ca-bundle.pem")
    expect(read.slice(0, 2)).toEqual(["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"])
  })

  it("SSL_CERT_FILE replaces the bundle list; SSL_CERT_DIR (colon-separated) replaces the directories", () => {
    const { reader, read } = host(
      { "/etc/ssl/certs/ca-certificates.crt": A, "/opt/ca.pem": B, "/opt/d1/x.pem": C, "/etc/ssl/certs/y.pem": A },
      { "/opt/d1": ["x.pem"], "/etc/ssl/certs": ["y.pem"] }
    )
    expect(systemCaCertificates({ SSL_CERT_FILE: "/opt/ca.pem", SSL_CERT_DIR: "/opt/d1:/opt/missing" }, reader))
      .toEqual([B, C])
    expect(read).not.toContain("/etc/ssl/certs/ca-certificates.crt")
    expect(read).not.toContain("/etc/ssl/certs/y.pem")
  })

  it("SSL_CERT_FILE alone still reads the default directories; empty variables count as unset, as in Go", () => {
    const { reader } = host({ "/opt/ca.pem": B, "/etc/ssl/certs/y.pem": A, "/etc/ssl/certs/ca-certificates.crt": C }, {
      "/etc/ssl/certs": ["y.pem"]
    })
    expect(systemCaCertificates({ SSL_CERT_FILE: "/opt/ca.pem" }, reader)).toEqual([B, A])
    expect(systemCaCertificates({ SSL_CERT_FILE: "", SSL_CERT_DIR: "" }, reader)).toEqual([C, A])
  })

  it("NODE_EXTRA_CA_CERTS adds to the store, as it adds to Node's own list", () => {
    const { reader } = host({ "/etc/ssl/cert.pem": A, "/opt/extra.pem": `${B}\n${A}` })
    expect(systemCaCertificates({ NODE_EXTRA_CA_CERTS: "/opt/extra.pem" }, reader)).toEqual([A, B])
    // No store: undefined, so that Node's list (which NODE_EXTRA_CA_CERTS extends by itself) is used.
    expect(systemCaCertificates({ NODE_EXTRA_CA_CERTS: "/opt/extra.pem" }, host({ "/opt/extra.pem": B }).reader))
      .toBeUndefined()
  })

  it("a host with no certificate where Go looks gives undefined: Node's own list is used then", () => {
    expect(systemCaCertificates({}, host({ "/etc/ssl/cert.pem": "no certificates here" }).reader)).toBeUndefined()
    expect(loadSystemCaCertificates({ SSL_CERT_FILE: "/opt/ca.pem" }, "darwin", host({ "/opt/ca.pem": A }).reader))
      .toBeUndefined()
    expect(loadSystemCaCertificates({ SSL_CERT_FILE: "/opt/ca.pem" }, "linux", host({ "/opt/ca.pem": A }).reader))
      .toEqual([A])
  })
})

describe.skipIf(!existsSync("/etc/ssl/certs/ca-certificates.crt"))(
  "liveReader on this host (Debian's ca-certificates)",
  () => {
    it("finds the distribution's store, each certificate once, skipping the hash links c_rehash makes", () => {
      const names = liveReader.listDirectory("/etc/ssl/certs") ?? []
      expect(names).toContain("ca-certificates.crt")
      expect(names.filter((name) => /^[0-9a-f]{8}\.\d+$/.test(name))).toEqual([])
      const found = systemCaCertificates({}, liveReader) ?? []
      expect(found.length).toBeGreaterThan(50)
      expect(new Set(found).size).toBe(found.length)
    })

    it("reads regular files only: a directory, a FIFO (at once, without waiting for a writer) or a missing path gives nothing", () => {
      const dir = mkdtempSync(join(tmpdir(), "aks-ca-"))
      try {
        execFileSync("mkfifo", [join(dir, "fifo.pem")])
        expect(liveReader.readFile(join(dir, "fifo.pem"))).toBeUndefined()
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
      expect(liveReader.readFile("/etc/ssl/certs")).toBeUndefined()
      expect(liveReader.readFile("/nonexistent/ca.pem")).toBeUndefined()
      expect(liveReader.listDirectory("/nonexistent")).toBeUndefined()
    })
  }
)
