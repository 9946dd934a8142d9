/**
 * An SSH public key as sshd reads it from its base64 blob (sshkey_from_blob): the type named inside the blob, in any
 * of the spellings sshd takes for it, and the key's own fields, written back in one canonical form. Two lines whose
 * blobs differ only in such spellings (`ED25519` for `ssh-ed25519` inside the blob, a needless leading zero byte in
 * an RSA number) are the same key to sshd, so revoking one must revoke the other.
 *
 * Reading more lines as the same key than sshd would is safe here (a revoked key's look-alikes go too); fewer is not.
 * Pure.
 *
 * @since 0.3.0
 */

/** Key types by every name sshd takes for them (names exactly, short names in any case), to their canonical name. */
const CANONICAL_TYPES: ReadonlyMap<string, string> = new Map([
  ["ssh-rsa", "ssh-rsa"],
  ["rsa-sha2-256", "ssh-rsa"],
  ["rsa-sha2-512", "ssh-rsa"],
  ["rsa", "ssh-rsa"],
  ["ssh-dss", "ssh-dss"],
  ["dsa", "ssh-dss"],
  ["ssh-ed25519", "ssh-ed25519"],
  ["ed25519", "ssh-ed25519"],
  ["ecdsa-sha2-nistp256", "ecdsa"],
  ["ecdsa-sha2-nistp384", "ecdsa"],
  ["ecdsa-sha2-nistp521", "ecdsa"],
  ["ecdsa", "ecdsa"],
  ["sk-ecdsa-sha2-nistp256@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"],
  ["webauthn-sk-ecdsa-sha2-nistp256@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"],
  ["ecdsa-sk", "sk-ecdsa-sha2-nistp256@openssh.com"],
  ["sk-ssh-ed25519@openssh.com", "sk-ssh-ed25519@openssh.com"],
  ["ed25519-sk", "sk-ssh-ed25519@openssh.com"]
])

/** The canonical family of a key type name as sshd matches it (lower case is enough: long names are lower case). */
export const canonicalKeyType = (name: string): string | undefined => CANONICAL_TYPES.get(name.toLowerCase())

const CURVES: ReadonlySet<string> = new Set(["nistp256", "nistp384", "nistp521"])

/** Certificate type names sshd takes for one certificate type, to that type's name. */
const CERTIFICATE_TYPES: ReadonlyMap<string, string> = new Map([
  ["rsa-sha2-256-cert-v01@openssh.com", "ssh-rsa-cert-v01@openssh.com"],
  ["rsa-sha2-512-cert-v01@openssh.com", "ssh-rsa-cert-v01@openssh.com"]
])

/**
 * The type name a blob sshd could not be read field by field here (a certificate) gives itself, when it is a plain
 * key type name: `rsa-sha2-512-cert-v01@openssh.com <an ssh-rsa certificate>` is that certificate.
 */
export const blobTypeName = (blob: string): string | undefined => {
  const head = Buffer.from(blob.slice(0, 96), "base64")
  if (head.length < 4) return undefined
  const length = head.readUInt32BE(0)
  if (length === 0 || length > head.length - 4) return undefined
  const name = head.toString("latin1", 4, 4 + length)
  return /^(?:ssh-|ecdsa-sha2-|sk-|rsa-sha2-)[a-z0-9@._+-]+$/.test(name) ? CERTIFICATE_TYPES.get(name) ?? name : undefined
}

/** Fields after the type name, per canonical type: "m" an mpint (a number), "s" a string. */
const FIELDS: Readonly<Record<string, string>> = {
  "ssh-rsa": "mm",
  "ssh-dss": "mmmm",
  "ssh-ed25519": "s",
  "ecdsa": "ss",
  "sk-ecdsa-sha2-nistp256@openssh.com": "sss",
  "sk-ssh-ed25519@openssh.com": "ss"
}

/** A number as sshbuf_put_bignum2 writes it: no leading zero bytes, one 0x00 before a high first bit. */
const canonicalMpint = (bytes: Buffer): Buffer => {
  let start = 0
  while (start < bytes.length && bytes[start] === 0) start++
  const digits = bytes.subarray(start)
  return digits.length > 0 && digits[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), digits]) : digits
}

const lengthPrefixed = (bytes: Buffer): Buffer => {
  const length = Buffer.alloc(4)
  length.writeUInt32BE(bytes.length)
  return Buffer.concat([length, bytes])
}

/**
 * `type base64` of the key in `blob` (base64) in its canonical form, or undefined when the blob is not a key sshd
 * could read (then the caller keeps the text as it is). For a key written the usual way this is the line's own type
 * and blob.
 */
export const canonicalKey = (blob: string): { readonly type: string; readonly blob: string } | undefined => {
  const bytes = Buffer.from(blob, "base64")
  const fields: Array<Buffer> = []
  let at = 0
  // Length-prefixed fields: the type's name, then as many as its type has (what follows them sshd refuses).
  for (let want = 1; fields.length < want;) {
    if (at + 4 > bytes.length) return undefined
    const length = bytes.readUInt32BE(at)
    if (length > bytes.length - at - 4) return undefined
    fields.push(bytes.subarray(at + 4, at + 4 + length))
    at += 4 + length
    if (fields.length === 1) {
      const kinds = FIELDS[canonicalKeyType(fields[0]!.toString("latin1")) ?? ""]
      if (kinds === undefined) return undefined
      want = 1 + kinds.length
    }
  }
  const name = fields[0]!.toString("latin1")
  const family = canonicalKeyType(name)!
  const kinds = FIELDS[family]!
  // An ECDSA key's name comes from its curve (sshd checks that they agree), one of the three sshd knows: any other
  // text there (a space, a second blob) would make an identity that reads back as another key's.
  const curve = family === "ecdsa" || family.startsWith("sk-ecdsa") ? fields[1]!.toString("latin1") : undefined
  if (curve !== undefined && !CURVES.has(curve)) return undefined
  const type = family === "ecdsa" ? `ecdsa-sha2-${curve}` : family
  let canonical = name === type && at === bytes.length
  const values = fields.slice(1).map((field, i) => {
    if (kinds[i] !== "m") return field
    const number = canonicalMpint(field)
    if (number.length !== field.length) canonical = false
    return number
  })
  // The usual case: the blob is already written the one way; its text is the identity's (no copy, no re-encoding).
  if (canonical) return { type, blob }
  return { type, blob: Buffer.concat([lengthPrefixed(Buffer.from(type, "latin1")), ...values.map(lengthPrefixed)]).toString("base64") }
}
