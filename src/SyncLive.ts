/**
 * The services a sync needs, wired to the real host. Requires an `HttpClient` so that the embedding program chooses
 * its own (the CLI provides `HttpTransport.layer`: Node's http and https with proxies from the environment, and
 * `ca_file` support through the optional `TrustedCaClients` service).
 *
 * @since 0.1.0
 */
import type { HttpClient } from "@effect/platform"
import { Layer } from "effect"
import * as Accounts from "./services/Accounts.js"
import * as KeySource from "./services/KeySource.js"
import * as ManagedKeys from "./services/ManagedKeys.js"
import * as RandomId from "./services/RandomId.js"
import * as SshFiles from "./services/SshFiles.js"

/** Everything `runAll` needs, except an HttpClient. @since 0.1.0 */
export const SyncLive: Layer.Layer<
  Accounts.Accounts | KeySource.KeySource | ManagedKeys.ManagedKeys | RandomId.RandomId | SshFiles.SshFiles,
  never,
  HttpClient.HttpClient
> = Layer.mergeAll(Accounts.layer, KeySource.layer, ManagedKeys.layer, RandomId.layer, SshFiles.layer)
