/**
 * Proxies from the environment, read as the Go original (net/http) reads them: `HTTP_PROXY` for http URLs only,
 * `HTTPS_PROXY` for https URLs only, `NO_PROXY` for both (upper case first, then lower case), and localhost or a
 * loopback address never through a proxy. Pure: the environment is an argument.
 */
import { BlockList, isIP } from "node:net"
import { domainToASCII } from "node:url"

/** `[::1]` (as URLs write it) to `::1` (as sockets want it). */
export const bareHost = (hostname: string) => hostname.replace(/^\[(.*)\]$/, "$1")

/** A proxy for one scheme: where it is and how to log in, or why its variable cannot be used. @since 0.1.0 */
export type ProxyChoice =
  | { readonly _tag: "Proxy"; readonly url: URL; readonly authorization: string | undefined }
  | { readonly _tag: "Unusable"; readonly problem: string }

/**
 * One NO_PROXY entry, as Go's net/http reads them: addresses (one address, or a CIDR range), or a domain
 * (`example.com`: the name and its subdomains; `.example.com` or `*.example.com`: subdomains only), each optionally
 * on one port (0: any).
 *
 * @since 0.1.0
 */
export type NoProxyEntry =
  | { readonly _tag: "Addresses"; readonly addresses: BlockList; readonly port: number }
  | { readonly _tag: "Domain"; readonly suffix: string; readonly includesItself: boolean; readonly port: number }

/** @since 0.1.0 */
export interface ProxySettings {
  readonly http: ProxyChoice | undefined
  readonly https: ProxyChoice | undefined
  /** "*": never use a proxy. */
  readonly noProxy: ReadonlyArray<NoProxyEntry> | "*"
}

/** The first of the variables that is set, in Go's order (`HTTPS_PROXY` before `https_proxy`). */
const fromEnv = (env: Readonly<Record<string, string | undefined>>, name: string): string | undefined => {
  const value = env[name.toUpperCase()] || env[name.toLowerCase()]
  return value === "" ? undefined : value
}

/** `proxy.corp:3128` means `http://proxy.corp:3128`, as the Go original reads a proxy variable without a scheme. */
const withScheme = (value: string): string => (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value) ? value : `http://${value}`)

/**
 * A proxy variable's value. One that cannot be used becomes a problem that fails that scheme's requests, named by its
 * variable and never quoted (a proxy URL may hold credentials).
 */
const proxyChoice = (variable: string, value: string | undefined): ProxyChoice | undefined => {
  if (value === undefined) return undefined
  const uri = withScheme(value)
  const url = URL.canParse(uri) ? new URL(uri) : undefined
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
    return { _tag: "Unusable", problem: `${variable} is set but is not a usable http:// or https:// proxy URL` }
  }
  try {
    const user = decodeURIComponent(url.username)
    const pass = decodeURIComponent(url.password)
    const authorization = user === "" && pass === ""
      ? undefined
      : `Basic ${Buffer.from(`${user}:${pass}`, "utf8").toString("base64")}`
    return { _tag: "Proxy", url, authorization }
  } catch {
    return { _tag: "Unusable", problem: `${variable} is set but is not a usable proxy URL` }
  }
}

/** `host`, `host:port`, `[v6]` or `[v6]:port` (a bare IPv6 address has no port). */
const splitHostPort = (entry: string): { readonly host: string; readonly port: number } => {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry)
  if (bracketed !== null) return { host: bracketed[1]!, port: Number(bracketed[2] ?? 0) }
  if (isIP(entry) === 6) return { host: entry, port: 0 }
  // `name:` (an empty port) means any port, as in Go.
  const withPort = /^(.+):(\d*)$/.exec(entry)
  return withPort === null ? { host: entry, port: 0 } : { host: withPort[1]!, port: Number(withPort[2] || 0) }
}

const family = (address: string) => (isIP(address) === 4 ? "ipv4" : "ipv6")

/** Whether `host` is an address in `list`; BlockList also matches `10.1.2.3` against `::ffff:10.1.2.3`. */
const inList = (list: BlockList, host: string): boolean => isIP(host) !== 0 && list.check(host, family(host))

/** A CIDR range (`10.0.0.0/8`, `fd00::/8`), or undefined. */
const cidrRange = (entry: string): BlockList | undefined => {
  const match = /^(.+)\/(\d{1,3})$/.exec(entry)
  if (match === null || isIP(match[1]!) === 0) return undefined
  const prefix = Number(match[2])
  if (prefix > (family(match[1]!) === "ipv4" ? 32 : 128)) return undefined
  const range = new BlockList()
  range.addSubnet(match[1]!, prefix, family(match[1]!))
  return range
}

/** NO_PROXY entries, split on commas as Go splits them; any `*` entry turns proxies off. */
const parseNoProxy = (value: string): ReadonlyArray<NoProxyEntry> | "*" => {
  const entries = value.split(",").map((entry) => entry.trim().toLowerCase()).filter((entry) => entry !== "")
  if (entries.includes("*")) return "*"
  return entries.flatMap((entry): Array<NoProxyEntry> => {
    const range = cidrRange(entry)
    if (range !== undefined) return [{ _tag: "Addresses", addresses: range, port: 0 }]
    const { host, port } = splitHostPort(entry)
    if (host === "") return []
    if (isIP(host) !== 0) {
      const address = new BlockList()
      address.addAddress(host, family(host))
      return [{ _tag: "Addresses", addresses: address, port }]
    }
    // Internationalised names compare in their ASCII (punycode) form, as URLs carry them.
    const name = domainToASCII(host.startsWith("*.") ? host.slice(1) : host) || host
    return name.startsWith(".")
      ? [{ _tag: "Domain", suffix: name, includesItself: false, port }]
      : [{ _tag: "Domain", suffix: `.${name}`, includesItself: true, port }]
  })
}

/** Whether `entry` names `host` (lower case, IPv6 without brackets) on `port`. */
const noProxyMatches = (entry: NoProxyEntry, host: string, port: number): boolean => {
  if (entry.port !== 0 && entry.port !== port) return false
  return entry._tag === "Addresses"
    ? inList(entry.addresses, host)
    : isIP(host) === 0 && (host.endsWith(entry.suffix) || (entry.includesItself && host === entry.suffix.slice(1)))
}

const LOOPBACK = (() => {
  const list = new BlockList()
  list.addSubnet("127.0.0.0", 8, "ipv4")
  list.addAddress("::1", "ipv6")
  return list
})()

/** Proxy settings from an environment (the process's, read once per client). @since 0.1.0 */
export const proxySettings = (env: Readonly<Record<string, string | undefined>>): ProxySettings => ({
  http: proxyChoice("HTTP_PROXY", fromEnv(env, "http_proxy")),
  https: proxyChoice("HTTPS_PROXY", fromEnv(env, "https_proxy")),
  noProxy: parseNoProxy(fromEnv(env, "no_proxy") ?? "")
})

/** The port a URL connects to. */
export const defaultPort = (url: URL) => (url.port !== "" ? Number(url.port) : url.protocol === "https:" ? 443 : 80)

/** The proxy for `target`, if any: its scheme's variable, unless NO_PROXY names the host. @since 0.1.0 */
export const proxyFor = (settings: ProxySettings, target: URL): ProxyChoice | undefined => {
  const choice = target.protocol === "https:" ? settings.https : settings.http
  if (choice === undefined || settings.noProxy === "*") return undefined
  const host = bareHost(target.hostname.toLowerCase())
  // As in Go: localhost and loopback addresses are never reached through a proxy.
  if (host === "localhost" || inList(LOOPBACK, host)) return undefined
  const port = defaultPort(target)
  return settings.noProxy.some((entry) => noProxyMatches(entry, host, port)) ? undefined : choice
}
