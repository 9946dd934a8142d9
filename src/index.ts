/**
 * authkeysync as a library: decode a config, provide the services, run the sync.
 *
 * ```ts
 * import { buildInfo, Config, HttpTransport, Logging, runAll, SyncLive } from "authkeysync"
 *
 * const program = Effect.gen(function*() {
 *   const config = yield* Schema.decodeUnknown(Config)({ users: [{ username: "deploy", sources: [{ url }] }] })
 *   const summary = yield* runAll(config, { dryRun: false, concurrency: 8, build: buildInfo })
 * }).pipe(
 *   Effect.provide(SyncLive),
 *   // The CLI's transport: proxies from the environment, and the CA files `ca_file` names.
 *   Effect.provide(HttpTransport.layer),
 *   // Optional: the CLI's log lines (logfmt or JSON) instead of Effect's default logger.
 *   Effect.provide(Logging.layer({ format: "text", verbosity: "info" }))
 * )
 * ```
 *
 * @since 0.1.0
 */
export { buildInfo } from "./Build.js"
export { bytesToText, textToBytes } from "./pipeline/Bytes.js"
export {
  Config,
  decodeConfig,
  decodeConfigValue,
  type DecodedConfig,
  DEFAULT_CONFIG_PATH,
  DEFAULT_STATE_DIR,
  defaultStateDir,
  Policy,
  Source,
  User
} from "./pipeline/Config.js"
export { allKeys, type Duplicate, type MergedKeys, mergeKeys, type Section } from "./pipeline/Dedup.js"
export { diffKeys, type KeyChange, type KeyDiff, renderDiff } from "./pipeline/Diff.js"
export {
  AccountLookupError,
  CaFileError,
  ConfigError,
  GuardRefused,
  ReadError,
  RunLockError,
  SourceFetchError,
  SourceTimeout,
  SshDirMissing,
  StateError,
  UnsafeAccount,
  UnsafePath,
  UserNotFound,
  type UserSkipReason,
  UserSyncAborted,
  type UserSyncError,
  WriteError
} from "./pipeline/Errors.js"
export { backupFileName, backupsToDelete, formatStamp, tempFileName } from "./pipeline/FileNames.js"
export { checkGuards, type GuardCounts } from "./pipeline/Guards.js"
export { keyFingerprint, keyIdentity, keyMaterial } from "./pipeline/KeyIdentity.js"
export { configFileProblem, loadConfig } from "./pipeline/loadConfig.js"
export { classifyLine, type LineClass, type ParsedKeys, parseKeys } from "./pipeline/Parse.js"
export { redactUrl } from "./pipeline/Redact.js"
export { type BuildInfo, managedBody, renderAuthorizedKeys, renderBody, renderHeader } from "./pipeline/Render.js"
export {
  identitiesOf,
  type LocalSelection,
  markedManagedIdentities,
  markedManagedLines,
  providedIdentities,
  selectLocalKeys
} from "./pipeline/Revocation.js"
export {
  DEFAULT_CONCURRENCY,
  groupByHome,
  groupBySshDir,
  runAll,
  type RunOptions,
  type RunSummary,
  summarize
} from "./pipeline/runAll.js"
export {
  decideWrite,
  guardCounts,
  guardCountsOf,
  type GuardIdentities,
  guardIdentities,
  KEY_BUDGET,
  MAX_LINE_BYTES,
  maxLocalKeys,
  sourceLimitProblem,
  type SyncOptions,
  syncUser,
  syncUserOutcome,
  unsafeUsernameReason,
  type UserOutcome,
  type WriteDecision
} from "./pipeline/syncUser.js"
export * as Accounts from "./services/Accounts.js"
export * as HttpTransport from "./services/HttpTransport.js"
export * as KeySource from "./services/KeySource.js"
export * as Logging from "./services/Logging.js"
export * as ManagedKeys from "./services/ManagedKeys.js"
export * as RandomId from "./services/RandomId.js"
export * as RunLock from "./services/RunLock.js"
export * as SshFiles from "./services/SshFiles.js"
export { SyncLive } from "./SyncLive.js"
