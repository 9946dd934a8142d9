import { describe, expect, it } from "vitest"
import type { Source } from "../../src/pipeline/Config.js"
import { DEFAULT_USER_AGENT, requestHeaders } from "../../src/services/KeySource.js"

const source = (headers: Record<string, string>): Source => ({
  url: "https://keys.example.com/bob",
  method: "GET",
  headers,
  body: "",
  timeout_seconds: 10
})

describe("requestHeaders", () => {
  const cases: ReadonlyArray<readonly [string, Record<string, string>, Record<string, string>]> = [
    ["no headers: default User-Agent", {}, { "User-Agent": "AuthKeySync" }],
    [
      "other headers kept, default User-Agent added",
      { Authorization: "Bearer SECRET", "Content-Type": "application/json" },
      { "User-Agent": "AuthKeySync", Authorization: "Bearer SECRET", "Content-Type": "application/json" }
    ],
    ["configured User-Agent wins", { "User-Agent": "MyCompany-KeySync/2.0" }, {
      "User-Agent": "MyCompany-KeySync/2.0"
    }],
    ["lower-case user-agent wins", { "user-agent": "custom/1" }, { "user-agent": "custom/1" }],
    ["upper-case USER-AGENT wins", { "USER-AGENT": "custom/2" }, { "USER-AGENT": "custom/2" }],
    ["mixed-case uSeR-aGeNt wins", { "uSeR-aGeNt": "custom/3" }, { "uSeR-aGeNt": "custom/3" }],
    [
      "custom User-Agent with other headers",
      { "X-Team": "ops", "user-agent": "custom/4", Authorization: "token t" },
      { "X-Team": "ops", "user-agent": "custom/4", Authorization: "token t" }
    ],
    // Go's client writes no User-Agent line for an empty one; neither the default nor an empty header is sent.
    ["empty User-Agent: none is sent", { "User-Agent": "", "X-Team": "ops" }, { "X-Team": "ops" }],
    [
      "a header that merely contains user-agent is not one",
      { "X-User-Agent": "x" },
      { "User-Agent": "AuthKeySync", "X-User-Agent": "x" }
    ]
  ]
  it.each(cases)("%s", (_name, headers, expected) => {
    expect(requestHeaders(source(headers))).toEqual(expected)
  })

  it("never sends two User-Agent headers", () => {
    for (const name of ["User-Agent", "user-agent", "USER-AGENT"]) {
      const names = Object.keys(requestHeaders(source({ [name]: "x" }))).filter((n) => n.toLowerCase() === "user-agent")
      expect(names).toEqual([name])
    }
  })

  it("does not modify the configured headers", () => {
    const headers = { Authorization: "Bearer SECRET" }
    const out = requestHeaders(source(headers))
    expect(headers).toEqual({ Authorization: "Bearer SECRET" })
    expect(out).not.toBe(headers)
  })

  it("Host, Content-Length, Transfer-Encoding and Trailer are not sent from the config (net/http writes its own)", () => {
    const out = requestHeaders(source({
      Host: "keys.internal",
      "content-length": "5",
      "Transfer-Encoding": "chunked",
      TRAILER: "X-Sum",
      "X-Host": "kept",
      Authorization: "token t"
    }))
    expect(out).toEqual({ "User-Agent": "AuthKeySync", "X-Host": "kept", Authorization: "token t" })
  })

  it("the default is exactly AuthKeySync", () => {
    expect(DEFAULT_USER_AGENT).toBe("AuthKeySync")
  })
})
