import { Effect, Either } from "effect"
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  type Account,
  Accounts,
  findCommand,
  isOwnGroupLine,
  layer,
  layerWith,
  parseDsclRecord,
  parsePasswdLine,
  SYSTEM_COMMAND_DIRS
} from "../../src/services/Accounts.js"

describe("parsePasswdLine", () => {
  const cases: ReadonlyArray<readonly [string, string, Account | undefined]> = [
    [
      "regular user",
      "bob:x:1000:1001:Bob Builder,,,:/home/bob:/bin/bash",
      { name: "bob", uid: 1000, gid: 1001, home: "/home/bob" }
    ],
    ["root", "root:x:0:0:root:/root:/bin/bash", { name: "root", uid: 0, gid: 0, home: "/root" }],
    [
      "trailing newline (getent output)",
      "deploy_bot:x:998:997::/srv/deploy:/usr/sbin/nologin\n",
      { name: "deploy_bot", uid: 998, gid: 997, home: "/srv/deploy" }
    ],
    [
      "trailing CRLF",
      "alice:x:1002:1002:Alice:/home/alice:/bin/zsh\r\n",
      { name: "alice", uid: 1002, gid: 1002, home: "/home/alice" }
    ],
    ["empty shell", "svc:x:500:500:Service:/var/lib/svc:", { name: "svc", uid: 500, gid: 500, home: "/var/lib/svc" }],
    [
      "large uid (nobody)",
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
      { name: "nobody", uid: 65534, gid: 65534, home: "/nonexistent" }
    ],
    [
      "home with spaces",
      "carol:x:1003:1003::/home/carol smith:/bin/sh",
      { name: "carol", uid: 1003, gid: 1003, home: "/home/carol smith" }
    ],
    ["empty line", "", undefined],
    ["too few fields", "bob:x:1000:1000:/home/bob:/bin/bash", undefined],
    ["not passwd at all", "getent: unknown database", undefined],
    ["non-numeric uid", "bob:x:abc:1000::/home/bob:/bin/sh", undefined],
    ["non-numeric gid", "bob:x:1000:users::/home/bob:/bin/sh", undefined],
    ["negative uid", "bob:x:-1:1000::/home/bob:/bin/sh", undefined],
    ["empty uid", "bob:x::1000::/home/bob:/bin/sh", undefined],
    ["fractional gid", "bob:x:1000:1.5::/home/bob:/bin/sh", undefined]
  ]
  it.each(cases)("%s", (_name, line, expected) => {
    expect(parsePasswdLine(line)).toEqual(expected)
  })

  // ~/.ssh is resolved from the home directory: an entry without an absolute one would make the tool work on
  // `.ssh` relative to its own working directory (path.join("", ".ssh") === ".ssh").
  const noHome: ReadonlyArray<readonly [string, string]> = [
    ["empty home", "ghost:x:1004:1004:::/bin/sh"],
    ["relative home", "ghost:x:1004:1004::home/ghost:/bin/sh"]
  ]
  it.each(noHome)("%s is not a usable account", (_name, line) => {
    expect(parsePasswdLine(line)).toBeUndefined()
  })
})

describe("parseDsclRecord", () => {
  const cases: ReadonlyArray<readonly [string, string, Account | undefined]> = [
    [
      "regular user",
      "NFSHomeDirectory: /Users/bob\nPrimaryGroupID: 20\nUniqueID: 501\n",
      { name: "bob", uid: 501, gid: 20, home: "/Users/bob" }
    ],
    [
      "attribute order does not matter",
      "UniqueID: 502\nNFSHomeDirectory: /Users/bob\nPrimaryGroupID: 20",
      { name: "bob", uid: 502, gid: 20, home: "/Users/bob" }
    ],
    [
      "value with spaces on the next line (dscl's layout)",
      "NFSHomeDirectory:\n /Users/Bob Smith\nPrimaryGroupID: 20\nUniqueID: 503\n",
      { name: "bob", uid: 503, gid: 20, home: "/Users/Bob Smith" }
    ],
    [
      "negative ids (macOS nobody)",
      "NFSHomeDirectory: /var/empty\nPrimaryGroupID: -2\nUniqueID: -2\n",
      { name: "bob", uid: -2, gid: -2, home: "/var/empty" }
    ],
    ["trailing spaces trimmed", "NFSHomeDirectory: /Users/bob  \nPrimaryGroupID: 20 \nUniqueID: 501 ", {
      name: "bob",
      uid: 501,
      gid: 20,
      home: "/Users/bob"
    }],
    ["missing UniqueID", "NFSHomeDirectory: /Users/bob\nPrimaryGroupID: 20\n", undefined],
    ["missing PrimaryGroupID", "NFSHomeDirectory: /Users/bob\nUniqueID: 501\n", undefined],
    ["missing home", "PrimaryGroupID: 20\nUniqueID: 501\n", undefined],
    ["non-numeric UniqueID", "NFSHomeDirectory: /Users/bob\nPrimaryGroupID: 20\nUniqueID: abc\n", undefined],
    ["empty output", "", undefined],
    ["dscl error text", "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)", undefined],
    [
      "a key that only ends like a wanted one does not count",
      "XUniqueID: 501\nNFSHomeDirectory: /Users/bob\nPrimaryGroupID: 20\n",
      undefined
    ]
  ]
  it.each(cases)("%s", (_name, text, expected) => {
    expect(parseDsclRecord("bob", text)).toEqual(expected)
  })

  it("uses the name it was given", () => {
    expect(parseDsclRecord("alice", "NFSHomeDirectory: /Users/alice\nPrimaryGroupID: 20\nUniqueID: 501")?.name).toBe(
      "alice"
    )
  })
})

describe.skipIf(process.platform !== "linux")("layer: a getent that does not exit on its own", () => {
  // A hung NSS source (LDAP down) makes getent run into the lookup timeout and be killed; a signal ends it the same way.
  it("fails the lookup with one line saying how it ended, not execFile's multi-line 'Command failed'", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "aks-getent-"))
    writeFileSync(path.join(dir, "getent"), "#!/bin/sh\nkill -TERM $$\n", { mode: 0o755 })
    const fake = layerWith({ commandDirs: [dir, ...SYSTEM_COMMAND_DIRS] })
    try {
      const error = await Effect.runPromise(
        Effect.flip(Effect.flatMap(Accounts, (accounts) => accounts.lookup("alice"))).pipe(Effect.provide(fake))
      )
      expect(error.message).toBe("cannot look up account alice: getent failed: it was killed by SIGTERM")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it(
    "a batch lookup whose getent had to be killed is asked again name by name, at once: only the hung name fails",
    async () => {
      // Found in review: one name whose NSS source hangs (LDAP down for it) killed the batch and failed every user, local
      // accounts too. Each name now gets its own getent, all at the same time: the hung one is killed one timeout later
      // (1 s here, 15 s in the CLI), the others answer.
      const dir = mkdtempSync(path.join(os.tmpdir(), "aks-getent-"))
      const calls = path.join(dir, "calls")
      writeFileSync(
        path.join(dir, "getent"),
        `#!/bin/sh\necho "$*" >> "${calls}"\nshift 2\n[ $# -eq 1 ] && [ "$1" != carol ] && echo "$1:x:1001:1001::/home/$1:/bin/sh" && exit 0\nexec sleep 60\n`,
        { mode: 0o755 }
      )
      const fake = layerWith({ commandDirs: [dir, ...SYSTEM_COMMAND_DIRS], lookupTimeoutMs: 1000 })
      try {
        const answers = await Effect.runPromise(
          Effect.flatMap(Accounts, (accounts) => accounts.lookupAll(["alice", "bob", "carol"])).pipe(
            Effect.provide(fake)
          )
        )
        for (const name of ["alice", "bob"]) {
          const answer = answers.get(name)
          expect(answer?._tag === "Right" ? answer.right.home : answer?.left.message).toBe(`/home/${name}`)
        }
        const carol = answers.get("carol")
        expect(carol?._tag === "Left" ? carol.left.message : carol?._tag).toBe(
          "cannot look up account carol: getent failed: it did not answer within 1s and was killed"
        )
        expect(readFileSync(calls, "utf8").split("\n").filter((l) => l !== "").sort()).toEqual([
          "passwd -- alice",
          "passwd -- alice bob carol",
          "passwd -- bob",
          "passwd -- carol"
        ])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
    30_000
  )

  it(
    "LDAP down for every name: the names asked again share one more timeout, not one per 128 names (found in review)",
    async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "aks-getent-"))
      const calls = path.join(dir, "calls")
      writeFileSync(path.join(dir, "getent"), `#!/bin/sh\necho "$*" >> "${calls}"\nexec sleep 60\n`, { mode: 0o755 })
      const fake = layerWith({ commandDirs: [dir, ...SYSTEM_COMMAND_DIRS], lookupTimeoutMs: 1000 })
      const names = Array.from({ length: 300 }, (_, i) => `ldap${i}`)
      try {
        const answers = await Effect.runPromise(
          Effect.flatMap(Accounts, (accounts) => accounts.lookupAll(names)).pipe(Effect.provide(fake))
        )
        for (const name of names) {
          const answer = answers.get(name)
          expect(answer?._tag === "Left" ? answer.left.message : answer?._tag).toBe(
            `cannot look up account ${name}: getent failed: it did not answer within 1s and was killed`
          )
        }
        // The batch, then one getent for each name that got a turn before the deadline (128 at a time); the rest failed
        // at the deadline without one. One per name would mean three more rounds, each as long as the timeout.
        const asked = readFileSync(calls, "utf8").split("\n").filter((l) => l !== "")
        expect(asked.length).toBeGreaterThan(1)
        expect(asked.length).toBeLessThanOrEqual(1 + 128)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
    30_000
  )

  it("a batch getent that crashed (a signal it raised itself) is asked again name by name: one entry never fails all", async () => {
    // An NSS module that crashes on one entry: getent dies of SIGSEGV as soon as it reaches that name. It was not killed
    // at the timeout, so asking the names one by one costs no wait, and only the broken entry's account fails.
    const dir = mkdtempSync(path.join(os.tmpdir(), "aks-getent-"))
    writeFileSync(
      path.join(dir, "getent"),
      `#!/bin/sh\nshift 2\n[ $# -eq 1 ] && [ "$1" = alice ] && echo "alice:x:1000:1000::/home/alice:/bin/sh" && exit 0\nkill -SEGV $$\n`,
      { mode: 0o755 }
    )
    const fake = layerWith({ commandDirs: [dir, ...SYSTEM_COMMAND_DIRS] })
    try {
      const answers = await Effect.runPromise(
        Effect.flatMap(Accounts, (accounts) => accounts.lookupAll(["alice", "broken"])).pipe(Effect.provide(fake))
      )
      const alice = answers.get("alice")
      expect(alice?._tag === "Right" ? alice.right : alice?.left.message).toEqual({
        name: "alice",
        uid: 1000,
        gid: 1000,
        home: "/home/alice"
      })
      const broken = answers.get("broken")
      expect(broken?._tag === "Left" ? broken.left.message : broken?._tag).toBe(
        "cannot look up account broken: getent failed: it was killed by SIGSEGV"
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("findCommand: where getent and dscl are taken from", () => {
  const dirs: Array<string> = []
  const tempDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "aks-cmd-"))
    // mkdtemp makes 0700; a directory on a search path is usually 0755.
    chmodSync(dir, 0o755)
    dirs.push(dir)
    return dir
  }
  const program = (dir: string, mode = 0o755) => {
    const file = path.join(dir, "getent")
    writeFileSync(file, "#!/bin/sh\nexit 0\n")
    chmodSync(file, mode)
    return file
  }
  const cleanUp = () => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  }

  it("takes the first directory that has the program, skipping files that are not executable", () => {
    try {
      const [a, b, c] = [tempDir(), tempDir(), tempDir()]
      program(a, 0o644)
      const expected = program(b)
      program(c)
      expect(findCommand("getent", [a, b, c])).toEqual(Either.right(expected))
    } finally {
      cleanUp()
    }
  })

  it("refuses a program its group or others may write to, naming it and its mode", () => {
    try {
      const dir = tempDir()
      const file = program(dir, 0o775)
      expect(findCommand("getent", [dir])).toEqual(
        Either.left(`${file} is writable by its group or by others (mode 775)`)
      )
    } finally {
      cleanUp()
    }
  })

  it.skipIf(process.getuid?.() !== 0)("refuses a program owned by another user (needs root to chown)", () => {
    try {
      const dir = tempDir()
      const file = program(dir)
      chownSync(file, 65534, 65534)
      expect(findCommand("getent", [dir])).toEqual(Either.left(`${file} is owned by uid 65534, not by root`))
    } finally {
      cleanUp()
    }
  })

  it("says where it looked when no directory has it; relative directories are never searched", () => {
    const here = process.cwd()
    const dir = mkdtempSync(path.join(os.tmpdir(), "aks-cmd-"))
    try {
      writeFileSync(path.join(dir, "getent"), "#!/bin/sh\nexit 0\n", { mode: 0o755 })
      process.chdir(dir)
      expect(findCommand("getent", [".", "/nonexistent-aks"])).toEqual(
        Either.left("not found in ., /nonexistent-aks (the tool does not search $PATH)")
      )
    } finally {
      process.chdir(here)
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe.skipIf(
  process.platform !== "linux" || !SYSTEM_COMMAND_DIRS.some((dir) => existsSync(path.join(dir, "getent")))
)(
  "layer: getent from the system's directories, never from $PATH",
  () => {
    it("a getent planted first on $PATH is not run; the system's answers", async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "aks-getent-"))
      const marker = path.join(dir, "ran")
      writeFileSync(
        path.join(dir, "getent"),
        `#!/bin/sh\ntouch "${marker}"\necho "root:x:4242:4242::/tmp/planted:/bin/sh"\n`,
        {
          mode: 0o755
        }
      )
      const saved = process.env["PATH"]
      process.env["PATH"] = `${dir}:${saved ?? ""}`
      try {
        const account = await Effect.runPromise(
          Effect.flatMap(Accounts, (accounts) => accounts.lookup("root")).pipe(Effect.provide(layer))
        )
        expect(account).toMatchObject({ name: "root", uid: 0, gid: 0 })
        expect(existsSync(marker)).toBe(false)
      } finally {
        process.env["PATH"] = saved
        rmSync(dir, { recursive: true, force: true })
      }
    })
  }
)

describe("isOwnGroupLine (Debian's rule for a group-writable ~ and ~/.ssh)", () => {
  const bob = { name: "bob", uid: 1001, gid: 1001, home: "/home/bob" }
  it.each(
    [
      ["the user's own group, no members listed", "bob:x:1001:", true],
      ["the user's own group, listing only the user", "bob:x:1001:bob", true],
      ["another member", "bob:x:1001:bob,alice", false],
      ["named otherwise (a shared primary group)", "staff:x:1001:", false],
      ["another gid", "bob:x:1002:", false],
      ["not a group line", "", false]
    ] as const
  )("%s", (_, line, own) => expect(isOwnGroupLine(line, bob)).toBe(own))
})

describe.skipIf(process.platform !== "linux")("layer: sshdAcceptsGroupWritable (Debian's sshd rule)", () => {
  const bob = { name: "bob", uid: 1001, gid: 1001, home: "/home/bob" }
  const PASSWD = "root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\nalice:x:1002:1002::/home/alice:/bin/sh"
  /** A getent answering `group -- 1001` with `group` and `passwd` with `passwd`. */
  const withGetent = async (group: string, options: { passwd?: string; debianFamily?: boolean } = {}) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "aks-getent-"))
    const script = [
      "#!/bin/sh",
      `[ "$*" = "group -- 1001" ] && { ${group}; exit; }`,
      `[ "$*" = "passwd" ] && { printf '%s\\n' "${options.passwd ?? PASSWD}"; exit 0; }`,
      "exit 2"
    ].join("\n")
    writeFileSync(path.join(dir, "getent"), `${script}\n`, { mode: 0o755 })
    try {
      return await Effect.runPromise(
        Effect.flatMap(Accounts, (accounts) => accounts.sshdAcceptsGroupWritable(bob)).pipe(
          Effect.provide(
            layerWith({ commandDirs: [dir, ...SYSTEM_COMMAND_DIRS], debianFamily: options.debianFamily ?? true })
          )
        )
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
  it("Debian, the user's own group, no other account in it: true", async () => {
    expect(await withGetent(`echo "bob:x:1001:"`)).toBe(true)
  })
  it("another account with it as primary group (not listed in the group's line): false (found in review)", async () => {
    expect(await withGetent(`echo "bob:x:1001:"`, { passwd: `${PASSWD}\ncarol:x:1003:1001::/home/carol:/bin/sh` }))
      .toBe(false)
  })
  it("such an account without a usable home entry counts too (found in review)", async () => {
    expect(await withGetent(`echo "bob:x:1001:"`, { passwd: `${PASSWD}\ncarol:x:1003:1001:::` })).toBe(false)
  })
  it("a large account list (sssd, NIS: 20,000 entries) is read whole, not cut at a buffer size (found in review)", async () => {
    const many = Array.from(
      { length: 20_000 },
      (_, i) => `u${i}:x:${20_000 + i}:${20_000 + i}:some gecos text:/home/u${i}:/bin/sh`
    )
    expect(await withGetent(`echo "bob:x:1001:"`, { passwd: `${PASSWD}\n${many.join("\n")}` })).toBe(true)
  })
  it("another member, no such group (exit 2), a getent that fails: false", async () => {
    expect(await withGetent(`echo "bob:x:1001:bob,alice"`)).toBe(false)
    expect(await withGetent("exit 2")).toBe(false)
    expect(await withGetent("kill -TERM $$")).toBe(false)
  })
  it("many users asking in one run: the account list is asked once (an Ubuntu host with many 0775 homes)", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "aks-getent-"))
    const calls = path.join(dir, "calls")
    const script = [
      "#!/bin/sh",
      `echo "$*" >> "${calls}"`,
      `case "$3" in 1001) echo "bob:x:1001:";; 1002) echo "alice:x:1002:";; esac`,
      `[ "$*" = "passwd" ] && printf '%s\\n' "${PASSWD}"`,
      "exit 0"
    ].join("\n")
    writeFileSync(path.join(dir, "getent"), `${script}\n`, { mode: 0o755 })
    try {
      const alice = { name: "alice", uid: 1002, gid: 1002, home: "/home/alice" }
      const answers = await Effect.runPromise(
        Effect.flatMap(
          Accounts,
          (accounts) => Effect.all([bob, alice, bob].map((a) => accounts.sshdAcceptsGroupWritable(a)))
        ).pipe(
          Effect.provide(layerWith({ commandDirs: [dir, ...SYSTEM_COMMAND_DIRS], debianFamily: true }))
        )
      )
      expect(answers).toEqual([true, true, true])
      expect(readFileSync(calls, "utf8").split("\n").filter((l) => l === "passwd")).toHaveLength(1)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
  it("not Debian (stock OpenSSH refuses any group-writable ~/.ssh): false without asking", async () => {
    expect(await withGetent(`echo "bob:x:1001:"`, { debianFamily: false })).toBe(false)
  })
})
