// interlog: an embedded, replicated, append-only event log. The package's public surface.

export * from './core/index.js'
export { ValidatorLoadError } from './validators/index.js'
export type { Validator, ValidatorEvent, ValidatorFunction, ValidatorOptions, ValidatorSpec } from './validators/index.js'
export { startSync, startBroker, compare, delta, mergeVectors, equalVectors, PROTOCOL_VERSION } from './sync/index.js'
export type { SyncHandle, SyncOptions, SyncStatus, SyncEvents, PeerInfo, BrokerHandle, Order } from './sync/index.js'
export { connect, RemoteLog, serve, loadConfig, ConfigError, readEncryptionKeys } from './daemon/index.js'
export type { RemoteStatus, ConnectOptions, Daemon, DaemonConfig, ServerLimits } from './daemon/index.js'
