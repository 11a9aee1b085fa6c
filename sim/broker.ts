// A simulated MQTT broker for the real replicator: topic routing with `+` wildcards, retained
// messages, QoS 1 acknowledgement at publish, and the faults a real network and broker produce,
// each decided by the seeded PRNG: messages dropped, duplicated and delayed (so reordered),
// replicas partitioned away, and broker restarts that lose every session and retained message.
// Messages wait in flight until the simulator delivers them, one at a time.

import { decode } from 'cbor-x'
import type { Subscriber, SyncClient, SyncConnection } from '../sync/index.js'
import type { Prng } from './prng.js'

export interface Faults {
  dropRate: number
  duplicateRate: number
  /** Extra delivery delay, at most (uniform), in ms: delays reorder messages. */
  delayMaxMs: number
}

interface InFlight {
  seq: number
  to: string
  topic: string
  payload: Buffer
  at: number
}

/** The origin of an events or fragment message, '' for anything else (or garbage). */
function originOf(payload: Buffer): string {
  try {
    const message = decode(payload) as { o?: unknown } | null
    return typeof message?.o === 'string' ? message.o : ''
  } catch {
    return ''
  }
}

function matches(pattern: string, topic: string): boolean {
  const p = pattern.split('/')
  const t = topic.split('/')
  if (p.length !== t.length) return false
  return p.every((part, i) => part === '+' || part === t[i])
}

export class SimBroker {
  readonly connections = new Map<string, SimConnection>()
  private readonly retained = new Map<string, Buffer>()
  private inFlight: InFlight[] = []
  /** Published since the last `settle`, in publish order (which may vary with I/O timing). */
  private fresh: { from: string, topic: string, payload: Buffer, retain: boolean }[] = []
  private seq = 0
  faultsOn = true
  published = 0
  delivered = 0
  dropped = 0

  constructor(private readonly prng: Prng, private readonly faults: Faults, private readonly now: () => number) {}

  connect(node: string): SimConnection {
    const connection = new SimConnection(this, node)
    this.connections.set(node, connection)
    return connection
  }

  /** Called by clients: the broker has the message (QoS 1 acknowledged). */
  accept(from: string, topic: string, payload: Buffer, retain: boolean): void {
    this.fresh.push({ from, topic, payload, retain })
  }

  /**
   * Routes what was published since the last call, in a canonical order: by sender, topic and the
   * origin an events message carries, keeping publish order within each (a stable sort). A
   * replica's two send lanes publish concurrently, so their interleaving depends on I/O timing;
   * each stream's own order does not, and a real broker keeps it (one publisher, one session).
   */
  settle(): void {
    const fresh = this.fresh
    this.fresh = []
    const key = (message: { from: string, topic: string, payload: Buffer }): string => `${message.from}|${message.topic}|${originOf(message.payload)}`
    fresh.sort((a, b) => {
      const ka = key(a)
      const kb = key(b)
      return ka < kb ? -1 : ka > kb ? 1 : 0
    })
    for (const message of fresh) {
      this.published++
      if (message.retain) this.retained.set(message.topic, message.payload)
      for (const connection of this.connections.values()) {
        if (!connection.connected || !connection.subscribedTo(message.topic)) continue
        this.route(connection.node, message.topic, message.payload)
      }
    }
  }

  private route(to: string, topic: string, payload: Buffer): void {
    if (this.faultsOn && this.prng.chance(this.faults.dropRate)) {
      this.dropped++
      return
    }
    const copies = this.faultsOn && this.prng.chance(this.faults.duplicateRate) ? 2 : 1
    for (let i = 0; i < copies; i++) {
      const delay = this.faultsOn ? this.prng.int(this.faults.delayMaxMs + 1) : 0
      this.inFlight.push({ seq: this.seq++, to, topic, payload, at: this.now() + 1 + delay })
    }
  }

  /** When the next message can be delivered, or Infinity. */
  nextDelivery(): number {
    let at = Infinity
    for (const message of this.inFlight) at = Math.min(at, message.at)
    return at
  }

  /** Delivers the first message due by `limit` (to a connected subscriber); false when none is. */
  async deliverNext(limit: number): Promise<boolean> {
    let index = -1
    for (let i = 0; i < this.inFlight.length; i++) {
      const message = this.inFlight[i]!
      if (message.at > limit) continue
      if (index < 0 || message.at < this.inFlight[index]!.at || (message.at === this.inFlight[index]!.at && message.seq < this.inFlight[index]!.seq)) index = i
    }
    if (index < 0) return false
    const [message] = this.inFlight.splice(index, 1)
    const connection = this.connections.get(message!.to)
    if (connection === undefined || !connection.connected) return true // lost with the session
    this.delivered++
    await connection.deliver(message!.topic, message!.payload)
    return true
  }

  /** Delivers retained messages matching `pattern` to a new subscription. */
  deliverRetained(connection: SimConnection, pattern: string): void {
    for (const [topic, payload] of [...this.retained].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      if (matches(pattern, topic)) this.inFlight.push({ seq: this.seq++, to: connection.node, topic, payload, at: this.now() + 1 })
    }
  }

  /** A broker restart: every session and retained message is lost; clients reconnect. */
  restart(): void {
    this.retained.clear()
    this.inFlight = []
    this.fresh = []
    for (const connection of this.connections.values()) connection.drop()
  }

  inFlightCount(): number {
    return this.inFlight.length + this.fresh.length
  }

  matches(pattern: string, topic: string): boolean {
    return matches(pattern, topic)
  }
}

/** One replica's connection: the SyncClient the replicator publishes through, and its subscriber. */
export class SimConnection implements SyncConnection, SyncClient {
  readonly client: SyncClient = this
  connected = false
  private readonly subscriptions = new Set<string>()
  private subscriber: Subscriber | null = null
  /** Partitioned away: not connected until healed. */
  partitioned = false

  constructor(private readonly broker: SimBroker, readonly node: string) {}

  on(): this {
    return this
  }

  off(): this {
    return this
  }

  async publishAsync(topic: string, payload: Buffer, options: { qos: 1, retain?: boolean }): Promise<unknown> {
    if (!this.connected) throw new Error('simulated client is disconnected')
    this.broker.accept(this.node, topic, Buffer.from(payload), options.retain === true)
    return undefined
  }

  async subscribeAsync(topics: string[]): Promise<unknown> {
    if (!this.connected) throw new Error('simulated client is disconnected')
    for (const pattern of topics) {
      this.subscriptions.add(pattern)
      this.broker.deliverRetained(this, pattern)
    }
    return undefined
  }

  subscribedTo(topic: string): boolean {
    for (const pattern of this.subscriptions) if (this.broker.matches(pattern, topic)) return true
    return false
  }

  attach(subscriber: Subscriber): void {
    this.subscriber = subscriber
    if (this.connected) subscriber.onConnect()
  }

  async detach(): Promise<void> {
    this.subscriber = null
    this.connected = false
    this.subscriptions.clear()
  }

  /** (Re)connects with a clean session, as MQTT.js does after a drop. */
  reconnect(): void {
    if (this.partitioned || this.subscriber === null) return
    this.connected = true
    this.subscriptions.clear()
    this.subscriber.onConnect()
  }

  drop(): void {
    this.connected = false
    this.subscriptions.clear()
  }

  async deliver(topic: string, payload: Buffer): Promise<void> {
    if (this.subscriber === null) return
    await this.subscriber.receive({ topic, payload } as never)
  }
}
