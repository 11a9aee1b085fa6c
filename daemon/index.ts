// daemon: the gateway node's long-running service and its local process API. This file is the
// module's public face: serve() runs a daemon, connect() is the client user code uses.

export { connect, RemoteLog, RemoteConsumer, CONNECT_WAIT_MS_MAX, type ConnectOptions, type RemoteStatus } from './client.js'
export { serve, journalLogger, type Daemon } from './serve.js'
export { loadConfig, ConfigError, DEFAULT_CONFIG, logDirectory, readEncryptionKeys, type DaemonConfig } from './config.js'
export { FRAME_BYTES_MAX } from './frames.js'
export { DEFAULT_LIMITS, type ServerLimits } from './limits.js'
export { diskUse } from './disk-use.js'
