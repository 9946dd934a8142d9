/**
 * What makes two authorized_keys lines "the same key" for revocation: the key type and blob, whatever options or
 * comment surround them. Options are skipped the way sshd skips them (double quotes may hold spaces), so a quoted
 * option that contains a key-like text cannot pass for the key itself.
 *
 * Pure; works on byte strings (see Bytes.ts).
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import { canonicalKeyType, keyInBlob } from "./SshKeyBlob.js"

const KEY_TYPE =
  /^(?:ssh-[A-Za-z0-9@._+-]+|ecdsa-sha2-[A-Za-z0-9@._+-]+|sk-[A-Za-z0-9@._+-]+|rsa-sha2-[A-Za-z0-9@._+-]+)$/
const BLOB = /^[A-Za-z0-9+/]+={0,2}$/

/** Split on unquoted white space; a backslash escapes a quote inside quotes, as sshd reads options. */
const tokens = (line: string): Array<string> => {
  // Substrings between unquoted blanks, quotes (and a \" inside quotes) kept as written. Sliced, not built a
  // character at a time: identities are taken of every key line several times per user.
  const out: Array<string> = []
  let start = -1
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i)
    if (quoted && c === 92 && line.charCodeAt(i + 1) === 34) {
      if (start < 0) start = i
      i++
    } else if (c === 34) {
      if (start < 0) start = i
      quoted = !quoted
    } else if (!quoted && (c === 32 || c === 9)) {
      if (start >= 0) out.push(line.slice(start, i))
      start = -1
    } else if (start < 0) {
      start = i
    }
  }
  if (start >= 0) out.push(line.slice(start))
  return out
}

/** White space sshd's base64 decoder (b64_pton) skips inside the key; space and tab end the key's token before it. */
const SKIPPED_IN_BLOB = /[\n\v\f\r]/g

export const keyMaterial = (line: string): { readonly type: string; readonly blob: string } | undefined => {
  const t = tokens(line)
  // Without options the key type comes first; with options it follows them (one token, quotes included).
  for (const at of [0, 1]) {
    const type = t[at]
    const token = t[at + 1]
    if (type === undefined || token === undefined || !(KEY_TYPE.test(type) || canonicalKeyType(type) !== undefined)) {
      continue
    }
    // `AAAA\vC3Nz…` is the key `AAAAC3Nz…` to sshd: read as anything else, a user could keep a revoked key working.
    const blob = token.replace(SKIPPED_IN_BLOB, "")
    // The key inside decides, as for sshd: `rsa-sha2-512 <an ssh-rsa key>`, `ED25519` written inside the blob, or a
    // needless zero byte before an RSA number is still that key. A blob sshd could not read keeps its text.
    if (BLOB.test(blob)) return keyInBlob(blob) ?? { type, blob }
  }
  return undefined
}

/**
 * `ssh-ed25519 AAAA…`: the identity of the key on `line`; the whole line when it holds no recognisable key (such a
 * line is then only ever the same as itself).
 *
 * @since 0.1.0
 */
export const keyIdentity = (line: string): string => identityFrom(line, keyMaterial(line))

/** The identity of `line` given its key material (see keyMaterial), for a caller that needs both. @since 0.1.0 */
export const identityFrom = (line: string, material: ReturnType<typeof keyMaterial>): string =>
  material === undefined ? line : `${material.type} ${material.blob}`

/** `SHA256:…` as `ssh-keygen -l` prints it, or `undefined` when the line holds no recognisable key. @since 0.1.0 */
export const keyFingerprint = (line: string): string | undefined => {
  const material = keyMaterial(line)
  if (material === undefined) return undefined
  const digest = createHash("sha256").update(Buffer.from(material.blob, "base64")).digest("base64")
  return `SHA256:${digest.replace(/=+$/, "")}`
}
