// sync: version-vector delta replication of logs over MQTT. This file is the module's public face;
// it depends on core (never the other way round).

import tls from 'node:tls'
import { LogError, type Log } from '../core/index.js'
import { RECORD_FRAMING_BYTES, MESSAGE_BYTES_MIN, MESSAGE_FRAMING_BYTES } from './protocol.js'
import { connectionFor, type SyncConnection } from './connection.js'
import { Replicator, type ReplicatorSettings } from './replicator.js'
import { isTopicName } from './topics.js'
import { realClock, type Clock } from './clock.js'

export { startBroker, type BrokerHandle } from './broker.js'
export { compare, delta, eventsBeyond, mergeVectors, equalVectors, type Order } from './version-vector.js'
export type { HealthReport, PeerInfo, SyncStatus, SyncEvents } from './replicator.js'
export { PROTOCOL_VERSION } from './protocol.js'
export type { Clock, TimerHandle } from './clock.js'
export type { SyncClient, SyncConnection, Subscriber } from './connection.js'

export type SyncHandle = Replicator

export interface SyncOptions {
  /** Broker URL: mqtt://host:port, or mqtts://host:port for TLS. Without credentials in it (a URL gets logged). */
  url: string
  /** The log's name on the broker (letters, digits, _ . -). */
  logName: string
  /** Versioned topic prefix. Default 'interlog/v1'. */
  topicPrefix?: string
  clientId?: string
  /** Broker login. A password needs a username (MQTT 3.1.1). */
  username?: string
  password?: string
  /** TLS, with an mqtts:// or wss:// url: the CA certificate(s) the broker's certificate must chain to
   *  (default: Node's root CAs), and this client's certificate and key, both or neither. PEM text or
   *  the bytes of a PEM file; an unparsable one or a key not matching the certificate is refused. */
  ca?: string | Buffer
  cert?: string | Buffer
  key?: string | Buffer
  /** Take only these origins (filtered sync); default all. The log's own origin is always kept. */
  origins?: string[]
  /** Largest message sent or accepted. Default 256 KiB. */
  maxMessageBytes?: number
  /** Period of version-vector announcements. Default 5000. */
  announceIntervalMs?: number
  /** Unacknowledged publishes per send lane, at most. Default 16. */
  inflightMessagesMax?: number
  /** Receives sync's log lines (dropped messages, connection errors). Default: stderr, at most 10 lines a second. */
  logger?: (level: 'info' | 'warning' | 'error', message: string) => void
  /** How long startSync waits for the first connection before it returns (sync keeps trying). Default 5000; 0 returns at once. */
  firstConnectWaitMs?: number
  /**
   * Compression of the events messages this replica sends: 'deflate-raw' (default) when every
   * present peer reads it, or 'none'. Every replica reads compressed messages either way.
   */
  compression?: 'deflate-raw' | 'none'
  /**
   * A retained health summary published on the log's health topic every `intervalMs` (and at each
   * connection): `summary()` gives its fields (docs/sync.md, "Health"). Default: none. Health
   * reports of other replicas are kept either way (`fleet()`).
   */
  health?: { intervalMs: number, summary: () => Record<string, unknown> }
}

/** startSync waits this long for the first connection before returning a handle that keeps retrying (option firstConnectWaitMs). */
const FIRST_CONNECT_WAIT_MS = 5000

const OPTION_KEYS = new Set(['url', 'logName', 'topicPrefix', 'clientId', 'username', 'password', 'ca', 'cert', 'key', 'origins',
  'maxMessageBytes', 'announceIntervalMs', 'inflightMessagesMax', 'logger', 'firstConnectWaitMs', 'compression', 'health'])

/** Starts replicating `log` through the broker at options.url; resolves once subscribed and announced. */
export async function startSync(log: Log, options: SyncOptions): Promise<SyncHandle> {
  const invalid = (message: string): LogError => new LogError('INVALID_ARGUMENT', `startSync: ${message}`)
  if (typeof options !== 'object' || options === null) throw invalid('options must be an object')
  checkBrokerAccess(options, invalid)
  const wait = options.firstConnectWaitMs ?? FIRST_CONNECT_WAIT_MS
  if (!Number.isSafeInteger(wait) || wait < 0) throw invalid('firstConnectWaitMs must be a non-negative integer')
  const settings = replicatorSettings(log, options, realClock)
  const connection = connectionFor({
    url: options.url, topicPrefix: settings.topicPrefix, clientId: options.clientId, username: options.username, password: options.password,
    ca: options.ca, cert: options.cert, key: options.key,
  })
  const replicator = new Replicator(log, connection, settings)
  const started = replicator.start(wait)
  if (wait > 0) await started
  return replicator
}

/**
 * Sync over a given connection and clock instead of MQTT.js and the wall clock: the seam the
 * deterministic simulator (sim/) runs the real replicator through. `options.url` is ignored.
 */
export function startSyncOver(log: Log, options: Omit<SyncOptions, 'url'>, seams: { connection: SyncConnection, clock: Clock }): SyncHandle {
  const replicator = new Replicator(log, seams.connection, replicatorSettings(log, { ...options, url: 'mqtt://simulated' }, seams.clock))
  // Not awaited: the first connection comes when the simulator connects it.
  replicator.start(0).catch(() => undefined)
  return replicator
}

function replicatorSettings(log: Log, options: SyncOptions, clock: Clock): ReplicatorSettings {
  const invalid = (message: string): LogError => new LogError('INVALID_ARGUMENT', `startSync: ${message}`)
  for (const key of Object.keys(options)) if (!OPTION_KEYS.has(key)) throw invalid(`unknown option '${key}'`)
  if (typeof options.logName !== 'string' || !isTopicName(options.logName)) throw invalid('logName must be 1 to 128 of A-Z a-z 0-9 _ . -, not starting with _')
  if (options.clientId !== undefined && (typeof options.clientId !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(options.clientId))) {
    throw invalid('clientId must be 1 to 64 of A-Z a-z 0-9 _ . - (it names the connection\'s presence topic)')
  }
  const topicPrefix = options.topicPrefix ?? 'interlog/v1'
  if (typeof topicPrefix !== 'string' || topicPrefix.length === 0 || /[#+]/.test(topicPrefix)) throw invalid('topicPrefix must be a topic without wildcards')
  const maxMessageBytes = options.maxMessageBytes ?? 256 << 10
  const needed = Math.max(MESSAGE_BYTES_MIN, 4 * (RECORD_FRAMING_BYTES + MESSAGE_FRAMING_BYTES))
  if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < needed) {
    throw invalid(`maxMessageBytes must be an integer of at least ${needed}`)
  }
  const origins = options.origins ?? null
  if (origins !== null && (!Array.isArray(origins) || !origins.every((o) => typeof o === 'string' && /^[0-9a-f]{32}$/.test(o)))) {
    throw invalid('origins must be a list of replica ids')
  }
  const announceIntervalMs = options.announceIntervalMs ?? 5000
  const inflightMessagesMax = options.inflightMessagesMax ?? 16
  if (!Number.isSafeInteger(announceIntervalMs) || announceIntervalMs < 10) throw invalid('announceIntervalMs must be an integer of at least 10')
  if (!Number.isSafeInteger(inflightMessagesMax) || inflightMessagesMax < 1) throw invalid('inflightMessagesMax must be a positive integer')
  const compression = options.compression ?? 'deflate-raw'
  if (compression !== 'deflate-raw' && compression !== 'none') throw invalid("compression must be 'deflate-raw' or 'none'")
  const health = options.health ?? null
  if (health !== null && (typeof health !== 'object' || !Number.isSafeInteger(health.intervalMs) || health.intervalMs < 100 || typeof health.summary !== 'function')) {
    throw invalid('health must be { intervalMs: an integer of at least 100, summary: a function }')
  }
  return {
    logName: options.logName, topicPrefix, origins: origins === null ? null : [...new Set([...origins, log.replicaId])],
    maxMessageBytes, announceIntervalMs, inflightMessagesMax, compression, health, log: options.logger ?? rateLimitedStderr(), clock,
  }
}

const PEM_BEGIN = '-----BEGIN '

/** url, credentials and TLS material: refused here with a reason, not later as a connection error. */
function checkBrokerAccess(options: SyncOptions, invalid: (message: string) => LogError): void {
  if (typeof options.url !== 'string' || !/^(mqtts?|tcp|ssl|wss?):\/\//.test(options.url)) throw invalid('url must be an mqtt:// or mqtts:// URL')
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    throw invalid(`url ${JSON.stringify(options.url)} is not a URL`)
  }
  if (url.username !== '' || url.password !== '') throw invalid('url must not carry credentials (it is logged): use the username and password options')
  if (options.username !== undefined && (typeof options.username !== 'string' || options.username.length === 0)) {
    throw invalid('username must be a non-empty string')
  }
  if (options.password !== undefined && typeof options.password !== 'string') throw invalid('password must be a string')
  if (options.password !== undefined && options.username === undefined) throw invalid('a password needs a username (MQTT 3.1.1)')
  const material = { ca: options.ca, cert: options.cert, key: options.key }
  for (const [name, value] of Object.entries(material)) {
    if (value === undefined) continue
    const text = typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('latin1') : undefined
    if (text === undefined || !text.includes(PEM_BEGIN)) {
      throw invalid(`${name} must be PEM text or a Buffer of it (the file's content, not its path)`)
    }
  }
  if ((material.cert === undefined) !== (material.key === undefined)) throw invalid('cert and key go together: set both or neither')
  if (material.ca === undefined && material.cert === undefined) return
  // MQTT.js ignores ca alone on a plain URL and turns mqtt:// with cert and key into mqtts://: say it.
  if (url.protocol !== 'mqtts:' && url.protocol !== 'wss:') throw invalid('ca, cert and key need an mqtts:// or wss:// url')
  try {
    tls.createSecureContext({
      ...(material.ca === undefined ? {} : { ca: material.ca }),
      ...(material.cert === undefined || material.key === undefined ? {} : { cert: material.cert, key: material.key }),
    })
  } catch (error) {
    throw invalid(`ca, cert or key cannot be used: ${(error as Error).message}`)
  }
}

/** Log lines to stderr, at most 10 a second (a flood of garbage must not flood the journal). */
function rateLimitedStderr(): (level: string, message: string) => void {
  let windowStart = 0
  let lines = 0
  return (level, message) => {
    const now = Date.now()
    if (now - windowStart >= 1000) {
      windowStart = now
      lines = 0
    }
    if (++lines <= 10) process.stderr.write(`interlog sync ${level}: ${message}\n`)
  }
}
