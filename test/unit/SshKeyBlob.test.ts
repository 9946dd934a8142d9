/**
 * A key's identity is the key as sshd reads it from the blob: the spellings sshd takes for one key give one identity
 * (found in review: `ED25519` inside the blob, a needless zero byte before the RSA exponent, or `rsa-sha2-512` and
 * `webauthn-sk-…` as the line's type kept a revoked key working). Real keys made with node:crypto.
 */
import { generateKeyPairSync } from "node:crypto"
import { describe, expect, it } from "vitest"
import { keyFingerprint, keyIdentity } from "../../src/pipeline/KeyIdentity.js"
import { selectLocalKeys } from "../../src/pipeline/Revocation.js"
import { canonicalKey } from "../../src/pipeline/SshKeyBlob.js"

const field = (bytes: Buffer | string) => {
  const data = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes
  const length = Buffer.alloc(4)
  length.writeUInt32BE(data.length)
  return Buffer.concat([length, data])
}
const blob = (...fields: Array<Buffer | string>) => Buffer.concat(fields.map(field)).toString("base64")

const ed25519 = () => {
  const jwk = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" })
  return Buffer.from(jwk.x!, "base64url")
}
const mpint = (bytes: Buffer) => (bytes[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes)
const rsa = () => {
  const jwk = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "jwk" })
  return { e: mpint(Buffer.from(jwk.e!, "base64url")), n: mpint(Buffer.from(jwk.n!, "base64url")) }
}

describe("canonicalKey / keyIdentity: one key, one identity", () => {
  const pk = ed25519()
  const ED = blob("ssh-ed25519", pk)
  const { e, n } = rsa()
  const RSA = blob("ssh-rsa", e, n)

  it("a key written the usual way is its own line's type and blob (records of earlier versions still match)", () => {
    expect(canonicalKey(ED)).toEqual({ type: "ssh-ed25519", blob: ED })
    expect(keyIdentity(`ssh-ed25519 ${ED} me@laptop`)).toBe(`ssh-ed25519 ${ED}`)
    expect(keyIdentity(`no-pty ssh-rsa ${RSA}`)).toBe(`ssh-rsa ${RSA}`)
  })

  it.each(
    [
      ["the type inside the blob in upper case", () => `ssh-ed25519 ${blob("ED25519", pk)} x`, "ed"],
      ["a short name as the line's type", () => `ed25519 ${ED} x`, "ed"],
      ["rsa-sha2-512 as the line's type", () => `rsa-sha2-512 ${RSA} x`, "rsa"],
      ["rsa-sha2-256 inside the blob", () => `ssh-rsa ${blob("rsa-sha2-256", e, n)}`, "rsa"],
      [
        "a zero byte before the RSA exponent",
        () => `ssh-rsa ${blob("ssh-rsa", Buffer.concat([Buffer.from([0]), e]), n)}`,
        "rsa"
      ],
      [
        "zero bytes before the RSA modulus",
        () => `ssh-rsa ${blob("ssh-rsa", e, Buffer.concat([Buffer.from([0, 0]), n]))}`,
        "rsa"
      ]
    ] as const
  )("%s", (_, line, which) => {
    const canonical = which === "ed" ? `ssh-ed25519 ${ED}` : `ssh-rsa ${RSA}`
    expect(keyIdentity(line())).toBe(canonical)
    expect(keyFingerprint(line())).toBe(keyFingerprint(canonical))
  })

  it("a security key written with its webauthn signature name is that key", () => {
    const q = Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 7)])
    const sk = blob("sk-ecdsa-sha2-nistp256@openssh.com", "nistp256", q, "ssh:")
    expect(keyIdentity(`webauthn-sk-ecdsa-sha2-nistp256@openssh.com ${sk}`)).toBe(
      `sk-ecdsa-sha2-nistp256@openssh.com ${sk}`
    )
    expect(keyIdentity(`sk-ecdsa-sha2-nistp256@openssh.com ${blob("ECDSA-SK", "nistp256", q, "ssh:")}`))
      .toBe(`sk-ecdsa-sha2-nistp256@openssh.com ${sk}`)
  })

  it("an ECDSA key is named by its curve", () => {
    const q = Buffer.concat([Buffer.from([4]), Buffer.alloc(96, 9)])
    const key = blob("ecdsa-sha2-nistp384", "nistp384", q)
    expect(keyIdentity(`ECDSA ${blob("ECDSA", "nistp384", q)}`)).toBe(`ecdsa-sha2-nistp384 ${key}`)
  })

  it("a revoked key goes in every such spelling", () => {
    const managed = new Set([keyIdentity(`ssh-rsa ${RSA} from-source`), keyIdentity(`ssh-ed25519 ${ED} from-source`)])
    const spelled = [
      `rsa-sha2-512 ${RSA} mine`,
      `ssh-rsa ${blob("ssh-rsa", Buffer.concat([Buffer.from([0]), e]), n)} mine`,
      `ssh-ed25519 ${blob("Ed25519", pk)} mine`
    ]
    expect(selectLocalKeys(spelled, managed, new Set())).toEqual({ kept: [], revoked: spelled })
  })

  it("an ECDSA curve sshd does not know is no key: a curve holding a second blob cannot pass for that key (found in review)", () => {
    const victim = `ssh-ed25519 ${ED}`
    const hostile = blob("ecdsa-sha2-nistp256", `nistp256 ${ED}`, Buffer.from([4, 1]))
    expect(canonicalKey(hostile)).toBeUndefined()
    const id = keyIdentity(`ecdsa-sha2-nistp256 ${hostile}`)
    expect(keyIdentity(id)).toBe(id)
    expect(keyIdentity(id)).not.toBe(keyIdentity(victim))
  })

  it("a certificate written with an rsa-sha2 certificate name is that certificate", () => {
    const cert = blob("ssh-rsa-cert-v01@openssh.com", Buffer.alloc(32, 1), e, n)
    expect(keyIdentity(`rsa-sha2-512-cert-v01@openssh.com ${cert}`)).toBe(`ssh-rsa-cert-v01@openssh.com ${cert}`)
    expect(keyIdentity(`ssh-rsa-cert-v01@openssh.com ${cert} c`)).toBe(`ssh-rsa-cert-v01@openssh.com ${cert}`)
  })

  it("a blob sshd could not read keeps its text (and so only ever matches itself)", () => {
    expect(canonicalKey("AAAAB1")).toBeUndefined()
    expect(canonicalKey(blob("foo-key", pk))).toBeUndefined()
    expect(canonicalKey(blob("ssh-rsa", e))).toBeUndefined()
    expect(keyIdentity("ssh-ed25519 AAAAB1 c")).toBe("ssh-ed25519 AAAAB1")
  })
})
