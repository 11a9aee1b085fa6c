// One MQTT connection per (broker, credentials, topic prefix) per process, shared by every log
// synced through it. Presence is two-level: each log publishes a retained status naming the node
// (the connection), and the connection's Last Will marks the node offline, which peers apply to
// every log of that node. Incoming messages are dispatched to the log whose topics they are on.
//
// Faults expected: the broker refuses the login (CONNACK 4 or 5) or the TLS handshake (untrusted
// certificate, missing client certificate); MQTT.js then emits 'error' on every attempt and keeps
// reconnecting. The connection always listens for 'error' itself, so an error emitted while no
// log is attached never becomes an uncaught 'error' event, and it adds what to check to the
// message before the logs see it (docs/security-broker.md).

import crypto from 'node:crypto'
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt'
import { encode, decode } from 'cbor-x'
import { PROTOCOL_VERSION } from './protocol.js'

export interface ConnectionSettings {
  url: string
  topicPrefix: string
  clientId?: string | undefined
  username?: string | undefined
  password?: string | undefined
  ca?: string | Buffer | undefined
  cert?: string | Buffer | undefined
  key?: string | Buffer | undefined
}

export interface Subscriber {
  /** Handles a message if it is on one of its topics (returns whether it was). */
  receive(packet: IPublishPacket): Promise<boolean>
  /** A node went offline (its Last Will) or came back. */
  nodeStatus(node: string, online: boolean): void
  onConnect(): void
}

export function nodeTopic(prefix: string, node: string): string {
  return `${prefix}/_nodes/${node}`
}

export function encodeNodeStatus(node: string, online: boolean): Buffer {
  return Buffer.from(encode({ v: PROTOCOL_VERSION, k: 'n', n: node, on: online }))
}

/** A node status message, or undefined for anything malformed. */
export function decodeNodeStatus(bytes: Uint8Array): { node: string, online: boolean } | undefined {
  try {
    const value = decode(bytes) as Record<string, unknown>
    if (value === null || typeof value !== 'object' || (value['v'] !== PROTOCOL_VERSION && value['v'] !== 1) || value['k'] !== 'n') return undefined
    if (typeof value['n'] !== 'string' || value['n'].length > 256 || typeof value['on'] !== 'boolean') return undefined
    return { node: value['n'], online: value['on'] }
  } catch {
    return undefined
  }
}

/** What the replicator uses of an MQTT client (MQTT.js's MqttClient; the simulator's broker). */
export interface SyncClient {
  readonly connected: boolean
  on(event: 'error', listener: (error: Error) => void): unknown
  off(event: 'error', listener: (error: Error) => void): unknown
  publishAsync(topic: string, payload: Buffer, options: { qos: 1, retain?: boolean }): Promise<unknown>
  subscribeAsync(topics: string[], options: { qos: 1 }): Promise<unknown>
}

/** A connection that subscribers (replicators) attach to: it calls their receive/onConnect/nodeStatus. */
export interface SyncConnection {
  readonly client: SyncClient
  readonly node: string
  attach(subscriber: Subscriber): void
  detach(subscriber: Subscriber): Promise<void>
}

export class Connection implements SyncConnection {
  readonly client: MqttClient
  readonly node: string
  private readonly subscribers = new Set<Subscriber>()

  constructor(readonly key: string, private readonly settings: ConnectionSettings, private readonly onEmpty: () => void) {
    this.node = settings.clientId ?? `interlog-${crypto.randomBytes(8).toString('hex')}`
    const options: IClientOptions = {
      clientId: this.node,
      protocolVersion: 4,
      // MQTT.js's default today; said here so that no library default can turn verification off.
      rejectUnauthorized: true,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      will: { topic: nodeTopic(settings.topicPrefix, this.node), payload: encodeNodeStatus(this.node, false), qos: 1, retain: true },
      ...(settings.username === undefined ? {} : { username: settings.username }),
      ...(settings.password === undefined ? {} : { password: settings.password }),
      ...(settings.ca === undefined ? {} : { ca: settings.ca }),
      ...(settings.cert === undefined ? {} : { cert: settings.cert }),
      ...(settings.key === undefined ? {} : { key: settings.key }),
    }
    this.client = mqtt.connect(settings.url, options)
    // Registered before any log's listener, so every listener sees the explained message.
    this.client.on('error', (error) => explainConnectionError(error, settings))
    // Backpressure: the next packet is read only once this one is handled (merged into a log).
    this.client.handleMessage = (packet: IPublishPacket, done) => {
      this.dispatch(packet).then(() => done(), () => done())
    }
    this.client.on('connect', () => {
      const nodes = `${settings.topicPrefix}/_nodes/+`
      this.client.subscribe(nodes, { qos: 1 })
      this.client.publish(nodeTopic(settings.topicPrefix, this.node), encodeNodeStatus(this.node, true), { qos: 1, retain: true })
      for (const subscriber of this.subscribers) subscriber.onConnect()
    })
  }

  attach(subscriber: Subscriber): void {
    this.subscribers.add(subscriber)
    if (this.client.connected) subscriber.onConnect()
  }

  /** Detaches; the last one out says the node is offline and disconnects. */
  async detach(subscriber: Subscriber): Promise<void> {
    this.subscribers.delete(subscriber)
    if (this.subscribers.size > 0) return
    this.onEmpty()
    if (this.client.connected) {
      await this.client.publishAsync(nodeTopic(this.settings.topicPrefix, this.node), encodeNodeStatus(this.node, false), { qos: 1, retain: true })
        .catch(() => undefined)
    }
    await this.client.endAsync(!this.client.connected).catch(() => undefined)
  }

  private async dispatch(packet: IPublishPacket): Promise<void> {
    const nodes = `${this.settings.topicPrefix}/_nodes/`
    if (packet.topic.startsWith(nodes) && !packet.topic.slice(nodes.length).includes('/')) {
      const status = decodeNodeStatus(packet.payload as Uint8Array)
      if (status !== undefined && packet.topic === nodes + status.node && status.node !== this.node) {
        for (const subscriber of this.subscribers) subscriber.nodeStatus(status.node, status.online)
      }
      return
    }
    // Every log on these topics gets it (several replicas of one log may share a process).
    for (const subscriber of this.subscribers) await subscriber.receive(packet)
  }
}

/** TLS verification codes meaning: the broker's chain does not lead to a CA in `ca`. */
const UNTRUSTED_BROKER_CODES = new Set(['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE'])

/** What to check for a refused login or TLS handshake, or undefined for other errors. */
function connectionErrorHint(code: unknown, settings: ConnectionSettings): string | undefined {
  if (code === 4 || code === 5) {
    const user = settings.username === undefined ? 'without a username' : `as user '${settings.username}'`
    return `the broker refused the login ${user}: check username and password (and the broker's password_file)`
  }
  if (typeof code !== 'string') return undefined
  if (UNTRUSTED_BROKER_CODES.has(code)) return "TLS: the broker's certificate is not signed by a CA in the 'ca' option"
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return "TLS: the broker's certificate does not name the URL's host (subjectAltName)"
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return "TLS: the broker's certificate is outside its validity period"
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') return "TLS: the broker requires a client certificate: set 'cert' and 'key'"
  if (code.startsWith('ERR_SSL_') && code.includes('ALERT')) {
    return "TLS: the broker refused the handshake: is the client certificate ('cert') signed by the broker's cafile, and valid?"
  }
  return undefined
}

/**
 * Prefixes a refused login or TLS handshake with the broker URL and what to check. MQTT.js emits
 * one TLS error object twice (from its TLS stream and from the client), hence the guard.
 */
function explainConnectionError(error: Error & { code?: unknown }, settings: ConnectionSettings): void {
  const hint = connectionErrorHint(error.code, settings)
  const head = `${settings.url}: `
  if (hint === undefined || error.message.startsWith(head)) return
  const code = typeof error.code === 'string' ? `${error.code}: ` : ''
  error.message = `${head}${hint} (${code}${error.message.trim()})`
}

/** Digest of the secrets that tell connections apart, so the pool key holds no password or PEM. */
function credentialsDigest(settings: ConnectionSettings): string {
  const hash = crypto.createHash('sha256')
  for (const part of [settings.password, settings.ca, settings.cert, settings.key]) {
    const bytes = part === undefined ? undefined : typeof part === 'string' ? Buffer.from(part, 'utf8') : part
    // Length-prefixed, with absent distinct from empty: no two tuples share an encoding.
    const length = Buffer.alloc(8)
    length.writeBigInt64BE(bytes === undefined ? -1n : BigInt(bytes.length))
    hash.update(length)
    if (bytes !== undefined) hash.update(bytes)
  }
  return hash.digest('hex')
}

/** The process-wide pool of connections. */
const connections = new Map<string, Connection>()

/** The shared connection for these settings: logs with different credentials or TLS identities never share one. */
export function connectionFor(settings: ConnectionSettings): Connection {
  const key = JSON.stringify([settings.url, settings.topicPrefix, settings.clientId ?? null, settings.username ?? null, credentialsDigest(settings)])
  let connection = connections.get(key)
  if (connection === undefined) {
    connection = new Connection(key, settings, () => connections.delete(key))
    connections.set(key, connection)
  }
  return connection
}
