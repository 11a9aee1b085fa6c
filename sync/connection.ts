// One MQTT connection per (broker, credentials, topic prefix) per process, shared by every log
// synced through it. Presence is two-level: each log publishes a retained status naming the node
// (the connection), and the connection's Last Will marks the node offline, which peers apply to
// every log of that node. Incoming messages are dispatched to the log whose topics they are on.

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
    if (value === null || typeof value !== 'object' || value['v'] !== PROTOCOL_VERSION || value['k'] !== 'n') return undefined
    if (typeof value['n'] !== 'string' || value['n'].length > 256 || typeof value['on'] !== 'boolean') return undefined
    return { node: value['n'], online: value['on'] }
  } catch {
    return undefined
  }
}

export class Connection {
  readonly client: MqttClient
  readonly node: string
  private readonly subscribers = new Set<Subscriber>()

  constructor(readonly key: string, private readonly settings: ConnectionSettings, private readonly onEmpty: () => void) {
    this.node = settings.clientId ?? `interlog-${crypto.randomBytes(8).toString('hex')}`
    const options: IClientOptions = {
      clientId: this.node,
      protocolVersion: 4,
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

/** The process-wide pool of connections. */
const connections = new Map<string, Connection>()

export function connectionFor(settings: ConnectionSettings): Connection {
  const key = JSON.stringify([settings.url, settings.topicPrefix, settings.clientId ?? null, settings.username ?? null, settings.password ?? null])
  let connection = connections.get(key)
  if (connection === undefined) {
    connection = new Connection(key, settings, () => connections.delete(key))
    connections.set(key, connection)
  }
  return connection
}
