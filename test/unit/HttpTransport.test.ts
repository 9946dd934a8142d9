import { describe, expect, it } from "vitest"
import { proxyFor, proxySettings } from "../../src/services/HttpTransport.js"

const via = (env: Record<string, string>, target: string) => {
  const choice = proxyFor(proxySettings(env), new URL(target))
  if (choice === undefined) return "direct"
  return choice._tag === "Proxy" ? choice.url.href : `unusable: ${choice.problem}`
}

describe("proxy settings from the environment (as Go's net/http reads them)", () => {
  it("HTTP_PROXY serves http URLs only, HTTPS_PROXY https URLs only", () => {
    const env = { HTTP_PROXY: "http://plain.proxy:3128", HTTPS_PROXY: "http://tls.proxy:3129" }
    expect(via(env, "http://keys.example/a")).toBe("http://plain.proxy:3128/")
    expect(via(env, "https://keys.example/a")).toBe("http://tls.proxy:3129/")
    expect(via({ HTTP_PROXY: "http://plain.proxy:3128" }, "https://keys.example/a")).toBe("direct")
    expect(via({ HTTPS_PROXY: "http://tls.proxy:3129" }, "http://keys.example/a")).toBe("direct")
  })

  it("localhost and loopback addresses are never proxied, whatever NO_PROXY says (as in Go)", () => {
    const env = { HTTP_PROXY: "http://p:1", HTTPS_PROXY: "http://p:1" }
    for (
      const target of [
        "http://localhost:8080/",
        "https://LOCALHOST/",
        "http://127.0.0.1/",
        "http://127.8.9.10:81/",
        "https://[::1]:8443/"
      ]
    ) {
      expect(via(env, target), target).toBe("direct")
    }
    expect(via(env, "http://localhost.example/")).toBe("http://p:1/")
    expect(via(env, "http://128.0.0.1/")).toBe("http://p:1/")
  })

  it("upper case wins over lower case; an empty value counts as unset", () => {
    expect(via({ HTTPS_PROXY: "http://upper:1", https_proxy: "http://lower:2" }, "https://k.example/")).toBe(
      "http://upper:1/"
    )
    expect(via({ https_proxy: "http://lower:2" }, "https://k.example/")).toBe("http://lower:2/")
    expect(via({ HTTPS_PROXY: "", https_proxy: "http://lower:2" }, "https://k.example/")).toBe("http://lower:2/")
    expect(via({ HTTP_PROXY: "" }, "http://k.example/")).toBe("direct")
  })

  it("a value without a scheme means http://", () => {
    expect(via({ HTTP_PROXY: "proxy.corp:3128" }, "http://k.example/")).toBe("http://proxy.corp:3128/")
  })

  it("credentials in the proxy URL become a Basic Proxy-Authorization; none, none", () => {
    const settings = proxySettings({ HTTPS_PROXY: "http://us%40er:p%3Ass@proxy:8080" })
    expect(settings.https).toMatchObject({
      _tag: "Proxy",
      authorization: `Basic ${Buffer.from("us@er:p:ss").toString("base64")}`
    })
    expect(proxySettings({ HTTPS_PROXY: "http://proxy:8080" }).https).toMatchObject({
      _tag: "Proxy",
      authorization: undefined
    })
  })

  it("an unusable value is named by its variable and never quoted", () => {
    const broken = via({ HTTPS_PROXY: "http://user:Pa55@[::1" }, "https://k.example/")
    expect(broken).toBe("unusable: HTTPS_PROXY is set but is not a usable http:// or https:// proxy URL")
    expect(via({ HTTP_PROXY: "socks5://proxy:1080" }, "http://k.example/")).toBe(
      "unusable: HTTP_PROXY is set but is not a usable http:// or https:// proxy URL"
    )
    expect(via({ HTTPS_PROXY: "http://user:p%ZZsecret@proxy:1" }, "https://k.example/")).toBe(
      "unusable: HTTPS_PROXY is set but is not a usable proxy URL"
    )
  })

  describe("NO_PROXY", () => {
    const proxied = (noProxy: string, target: string) =>
      via({ HTTP_PROXY: "http://p:1", HTTPS_PROXY: "http://p:1", NO_PROXY: noProxy }, target) !== "direct"

    it("a host name matches itself and its subdomains, not names that merely end the same", () => {
      expect(proxied("example.com", "http://example.com/")).toBe(false)
      expect(proxied("example.com", "http://keys.example.com/")).toBe(false)
      expect(proxied("example.com", "http://badexample.com/")).toBe(true)
    })

    it("a leading dot or *. means subdomains only (as in Go); matching ignores case", () => {
      expect(proxied(".example.com", "https://keys.example.com/")).toBe(false)
      expect(proxied(".example.com", "https://example.com/")).toBe(true)
      expect(proxied("*.example.com", "https://keys.EXAMPLE.com/")).toBe(false)
      expect(proxied("*.example.com", "https://example.com/")).toBe(true)
      expect(proxied("EXAMPLE.COM", "https://example.com/")).toBe(false)
    })

    it("CIDR ranges, IPv6 with or without brackets, an address on one port", () => {
      expect(proxied("10.0.0.0/8", "http://10.20.30.40/")).toBe(false)
      expect(proxied("10.0.0.0/8", "http://11.0.0.1/")).toBe(true)
      expect(proxied("fd00::/8", "http://[fd12::1]/")).toBe(false)
      expect(proxied("2001:db8::2", "http://[2001:db8::2]:8080/")).toBe(false)
      expect(proxied("2001:db8::1", "http://[2001:db8::1]/")).toBe(false)
      expect(proxied("[2001:db8::1]:8443", "https://[2001:db8::1]:8443/")).toBe(false)
      expect(proxied("[2001:db8::1]:8443", "https://[2001:db8::1]/")).toBe(true)
      expect(proxied("10.0.0.1:8080", "http://10.0.0.1:8080/")).toBe(false)
      expect(proxied("10.0.0.1:8080", "http://10.0.0.1/")).toBe(true)
      expect(proxied("10.1.2.3", "http://[::ffff:10.1.2.3]/")).toBe(false)
      expect(proxied("::ffff:10.1.2.3", "http://10.1.2.3/")).toBe(false)
    })

    it("domain entries never match an address; names compare in punycode; an empty port means any", () => {
      expect(proxied("0.1", "http://10.0.0.1/")).toBe(true)
      expect(proxied("bücher.example", "http://bücher.example/")).toBe(false)
      expect(proxied("bücher.example", "http://xn--bcher-kva.example/")).toBe(false)
      expect(proxied("example.com:", "http://example.com:8080/")).toBe(false)
    })

    it("an entry with a port matches that port only (default ports count)", () => {
      expect(proxied("example.com:8443", "https://example.com:8443/")).toBe(false)
      expect(proxied("example.com:8443", "https://example.com/")).toBe(true)
      expect(proxied("example.com:443", "https://example.com/")).toBe(false)
    })

    it("entries are split on commas (as Go does); a * entry turns proxies off", () => {
      expect(proxied("a.example, b.example ,c.example", "http://c.example/")).toBe(false)
      expect(proxied("a.example, b.example ,c.example", "http://d.example/")).toBe(true)
      expect(proxied("foo *", "http://d.example/")).toBe(true)
      expect(proxied("*", "https://anything.example/")).toBe(false)
      expect(proxied("localhost, *", "https://anything.example/")).toBe(false)
    })

    it("addresses, IPv6 in brackets", () => {
      expect(proxied("10.0.0.1", "http://10.0.0.1:8080/")).toBe(false)
      expect(proxied("[2001:db8::2]", "http://[2001:db8::2]:8080/")).toBe(false)
      expect(proxied("10.0.0.1", "http://10.0.0.2/")).toBe(true)
    })

    it("lower-case no_proxy is read when NO_PROXY is unset", () => {
      expect(via({ HTTP_PROXY: "http://p:1", no_proxy: "example.com" }, "http://example.com/")).toBe("direct")
    })
  })
})
