/** Distinct, realistic-looking public key lines for tests (the tool never checks the blob, only the line shape). */
export const key = (id: string, comment = `${id}@host`, type = "ssh-ed25519"): string =>
  `${type} AAAAC3NzaC1lZDI1NTE5AAAAI${Buffer.from(id).toString("base64").replace(/=+$/, "")}Qk ${comment}`

/** Lines joined with "\n" and a final newline, like a key server's plain-text answer. */
export const lines = (...ls: ReadonlyArray<string>): string => ls.map((l) => `${l}\n`).join("")
