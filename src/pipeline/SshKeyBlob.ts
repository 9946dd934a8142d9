/**
 * An SSH public key as sshd reads it from its base64 blob (sshkey_from_blob): the type named inside the blob, in any
 * of the spellings sshd takes for it, and the key's own fields, written back in one canonical form. Two lines whose
 * blobs differ only in such spellings (`ED25519` for `ssh-ed25519` inside the blob, a needless leading zero byte in
 * an RSA number) are the same key to sshd, so revoking one must revoke the other.
 *
 * Reading more lines as the same key than sshd would is safe here (a revoked key's look-alikes go too); fewer is not.
 * Pure.
 *
 * @since 0.1.0
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
 * The blob read as sshd reads it: the type name written first, and, when it is a key sshd reads field by field here,
 * the key in its canonical form (`type base64`). Undefined when not even the name can be read.
 */
const readBlob = (
  blob: string
): { readonly name: string; readonly key?: { readonly type: string; readonly blob: string } } | undefined => {
  const bytes = Buffer.from(blob, "base64")
  let at = 0
  const next = (): Buffer | undefined => {
    if (at + 4 > bytes.length) return undefined
    const length = bytes.readUInt32BE(at)
    if (length > bytes.length - at - 4) return undefined
    at += 4 + length
    return bytes.subarray(at - length, at)
  }
  const nameField = next()
  if (nameField === undefined || nameField.length === 0) return undefined
  const name = nameField.toString("latin1")
  const family = canonicalKeyType(name)
  const kinds = family === undefined ? undefined : FIELDS[family]
  if (family === undefined || kinds === undefined) return { name }
  // Length-prefixed fields after the name, as many as the type has (what follows them sshd refuses).
  const fields: Array<Buffer> = []
  let rewritten = false
  for (const kind of kinds) {
    const field = next()
    if (field === undefined) return { name }
    const value = kind === "m" ? canonicalMpint(field) : field
    if (value.length !== field.length) rewritten = true
    fields.push(value)
  }
  // An ECDSA key's name comes from its curve (sshd checks that they agree), one of the three sshd knows: any other
  // text there (a space, a second blob) would make an identity that reads back as another key's.
  const curve = family === "ecdsa" || family.startsWith("sk-ecdsa") ? fields[0]!.toString("latin1") : undefined
  if (curve !== undefined && !CURVES.has(curve)) return { name }
  const type = family === "ecdsa" ? `ecdsa-sha2-${curve}` : family
  // The usual case: the blob is already written the one way; its text is the identity's (no copy, no re-encoding).
  if (!rewritten && name === type && at === bytes.length) return { name, key: { type, blob } }
  const canonical = Buffer.concat([lengthPrefixed(Buffer.from(type, "latin1")), ...fields.map(lengthPrefixed)])
  return { name, key: { type, blob: canonical.toString("base64") } }
}

/**
 * `type base64` of the key in `blob` (base64) in its canonical form, or undefined when the blob is not a key sshd
 * could read field by field here. For a key written the usual way this is the line's own type and blob.
 */
export const canonicalKey = (blob: string): { readonly type: string; readonly blob: string } | undefined =>
  readBlob(blob)?.key

/**
 * What keyMaterial takes from a blob: its canonical key (canonicalKey) or, for another blob that names a key type (a
 * certificate), that name and the text as it is: `rsa-sha2-512-cert-v01@openssh.com <an ssh-rsa certificate>` is
 * that certificate. Undefined otherwise (the line's own type stands).
 */
export const keyInBlob = (blob: string): { readonly type: string; readonly blob: string } | undefined => {
  const read = readBlob(blob)
  if (read === undefined || read.key !== undefined) return read?.key
  return /^(?:ssh-|ecdsa-sha2-|sk-|rsa-sha2-)[a-z0-9@._+-]+$/.test(read.name)
    ? { type: CERTIFICATE_TYPES.get(read.name) ?? read.name, blob }
    : undefined
}
