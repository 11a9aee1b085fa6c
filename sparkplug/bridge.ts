// The Sparkplug B store-and-forward bridge (docs/sparkplug.md). It records the births, deaths and
// data of chosen groups and edge nodes from a broker into a log, as they were sent, and follows
// each primary host application's STATE. While a host is offline nothing changes in recording;
// when it comes back online, the bridge republishes the NDATA and DDATA it missed, in order, with
// every metric flagged is_historical, at a bounded rate, from a durable consumer per host: a crash
// mid-replay resumes where the consumer stands (at-least-once: what was published and not yet
// committed goes again).
//
// Where a host's gap starts and ends is known exactly: each boundary is the last recorded message
// the bridge had appended when it heard the STATE, found by its event id once durable. A host that
// dies without saying so (its Last Will fires a keep-alive and a half later) is taken as offline
// `hostDeathGraceMs` before the will arrived, so a replay repeats a little rather than misses.

import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt'
import { decode, encode } from 'cbor-x'
import { LogError, type Consumer, type Log } from '../core/index.js'

/** One recorded Sparkplug message (the event's payload, CBOR): docs/sparkplug.md. */
export interface SparkplugRecord {
  /** Format version: 1. */
  sp: 1
  /** The MQTT topic it came on. */
  t: string
  /** The payload as sent (Sparkplug B protobuf). */
  p: Uint8Array
}

export interface SparkplugOptions {
  /** The broker the edge nodes and the host use (MQTT 5: the bridge must not hear its own replays). */
  url: string
  /** Sparkplug group ids to record (at least one). */
  groups: string[]
  /** Only these edge node ids (default: every edge node of the groups). */
  edgeNodes?: string[] | null
  /** Host application ids whose STATE starts replays (none: record only). */
  primaryHosts?: string[]
  /** Messages republished per second at most, all hosts together (default 500). */
  replayRatePerSecond?: number
  /** How far before a Last Will's arrival a host counts as offline (default 90000: 1.5 x a 60 s keep-alive). */
  hostDeathGraceMs?: number
  clientId?: string
  username?: string
  password?: string
  logger?: (level: 'info' | 'warning' | 'error', message: string) => void
}

export interface SparkplugHostStatus {
  host: string
  state: 'online' | 'offline' | 'unknown'
  /** The first local position not known to have reached the host (its consumer). */
  position: number
  /** While a replay is due: where it ends. */
  replayUntil: number | null
  replaying: boolean
  replayed: number
}

export interface SparkplugStatus {
  connected: boolean
  recorded: number
  /** Messages not recorded: outside the groups and edge nodes, too large, or refused by the log. */
  dropped: number
  hosts: SparkplugHostStatus[]
}

export interface SparkplugBridge {
  status(): SparkplugStatus
  close(): Promise<void>
}

const NAMESPACE = 'spBv1.0'
/** Message types recorded; commands (NCMD, DCMD) are the host's, not the edge's. */
const RECORDED = new Set(['NBIRTH', 'NDEATH', 'DBIRTH', 'DDEATH', 'NDATA', 'DDATA'])
/** Message types replayed to a host that missed them. */
const REPLAYED = new Set(['NDATA', 'DDATA'])
/** A STATE whose timestamp is this close to now was sent by the host itself, not its Last Will. */
const GRACEFUL_SKEW_MS = 10_000
/** How often an online host's consumer is moved up to what it has received live. */
const LIVE_COMMIT_MS = 1000
/** Samples of the last message recorded, for finding where a host that died went away (one per 100 ms, an hour). */
const ISSUED_SAMPLE_MS = 100
const ISSUED_SAMPLES_MAX = 36_000
/** A replay commits its consumer after this many messages (and at its end). */
const REPLAY_COMMIT_EVERY = 100
/** How far back from the head the bridge looks for a boundary's event, at most, before settling for an earlier position (more repeats, nothing missed). */
const BOUNDARY_SCAN_MAX = 1_000_000

type EventId = { origin: string, pos: number }

export async function startSparkplugBridge(log: Log, options: SparkplugOptions): Promise<SparkplugBridge> {
  const bridge = new Bridge(log, options)
  await bridge.start()
  return bridge
}

/** The consumer name for a host's replays: `sparkplug.` and the host id, made safe for a consumer name. */
export function hostConsumerName(host: string): string {
  const safe = host.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40)
  if (safe === host) return `sparkplug.${host}`
  let hash = 0
  for (let i = 0; i < host.length; i++) hash = (Math.imul(hash, 31) + host.charCodeAt(i)) >>> 0
  return `sparkplug.${safe}.${hash.toString(16)}`
}

/** A recorded message, or null when the event is not one (another appender's event in the same log). */
export function decodeSparkplugRecord(payload: Uint8Array): SparkplugRecord | null {
  try {
    const value = decode(payload) as Partial<SparkplugRecord> | null
    if (value === null || typeof value !== 'object' || value.sp !== 1 || typeof value.t !== 'string' || !(value.p instanceof Uint8Array)) return null
    return value as SparkplugRecord
  } catch {
    return null
  }
}

class Host {
  state: 'online' | 'offline' | 'unknown' = 'unknown'
  replaying: Promise<void> | null = null
  /** Bumped at every STATE: a replay stops when it changes. */
  generation = 0
  replayed = 0
  /** The timestamp of the host's last ONLINE: its Last Will (Sparkplug 3.0) carries the same one. */
  onlineTimestamp: number | null = null
  /** A replay the last run did not finish (its end stands in `until`): the first ONLINE of this run finishes it. */
  pendingFromStart: boolean
  constructor(readonly id: string, readonly consumer: Consumer, readonly until: Consumer) {
    this.pendingFromStart = until.position > consumer.position
  }
}

class Bridge implements SparkplugBridge {
  private client: MqttClient | null = null
  private readonly hosts = new Map<string, Host>()
  private recorded = 0
  private dropped = 0
  /** The last append the bridge made (its id once durable), and samples of it over time. */
  private lastIssued: Promise<EventId | null> = Promise.resolve(null)
  private readonly issued: { at: number, id: Promise<EventId | null> }[] = []
  /** Where the log stood when the bridge started: the boundary before its first append. */
  private baseline = 0
  private readonly timers: NodeJS.Timeout[] = []
  private closed = false
  private readonly log: (level: 'info' | 'warning' | 'error', message: string) => void
  private readonly rate: number
  private readonly grace: number
  private readonly edgeNodes: Set<string> | null
  private tokens = 0
  private tokensAt = 0

  constructor(private readonly target: Log, private readonly options: SparkplugOptions) {
    const invalid = (message: string): never => { throw new LogError('INVALID_ARGUMENT', `sparkplug: ${message}`) }
    if (!Array.isArray(options.groups) || options.groups.length === 0 || !options.groups.every(validId)) invalid('groups must be a non-empty list of Sparkplug group ids (no / + #)')
    if (options.edgeNodes != null && !(Array.isArray(options.edgeNodes) && options.edgeNodes.every(validId))) invalid('edgeNodes must be a list of edge node ids (no / + #) or null')
    if (options.primaryHosts !== undefined && !(Array.isArray(options.primaryHosts) && options.primaryHosts.every(validId))) invalid('primaryHosts must be a list of host application ids (no / + #)')
    this.rate = options.replayRatePerSecond ?? 500
    if (!Number.isSafeInteger(this.rate) || this.rate < 1 || this.rate > 1_000_000) invalid('replayRatePerSecond must be an integer from 1 to 1000000')
    this.grace = options.hostDeathGraceMs ?? 90_000
    if (!Number.isSafeInteger(this.grace) || this.grace < 0 || this.grace > 3_600_000) invalid('hostDeathGraceMs must be an integer from 0 to 3600000')
    this.edgeNodes = options.edgeNodes == null ? null : new Set(options.edgeNodes)
    this.log = options.logger ?? ((level, message) => process.stderr.write(`${level}: ${message}\n`))
  }

  async start(): Promise<void> {
    this.baseline = this.target.length
    for (const id of this.options.primaryHosts ?? []) {
      const name = hostConsumerName(id)
      // A new host's consumer starts at the head: what was recorded before the bridge knew of it is not its gap.
      this.hosts.set(id, new Host(id, this.target.consumer(name, { startAt: 'latest' }), this.target.consumer(`${name}.until`, { startAt: 'latest' })))
    }
    const client = mqtt.connect(this.options.url, {
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 1000,
      ...(this.options.clientId === undefined ? {} : { clientId: this.options.clientId }),
      ...(this.options.username === undefined ? {} : { username: this.options.username }),
      ...(this.options.password === undefined ? {} : { password: this.options.password }),
    })
    this.client = client
    client.on('error', (error) => this.log('warning', `sparkplug: broker ${this.options.url}: ${error.message}`))
    client.on('connect', () => {
      const subscriptions: Record<string, { qos: 0 | 1, nl: boolean }> = {}
      // nl (no local, MQTT 5): the bridge does not hear, and record, its own replays.
      for (const group of this.options.groups) subscriptions[`${NAMESPACE}/${group}/#`] = { qos: 1, nl: true }
      for (const host of this.hosts.keys()) {
        subscriptions[`${NAMESPACE}/STATE/${host}`] = { qos: 1, nl: true }
        subscriptions[`STATE/${host}`] = { qos: 1, nl: true } // Sparkplug 2.2
      }
      client.subscribeAsync(subscriptions).then(
        () => this.log('info', `sparkplug: recording groups ${this.options.groups.join(', ')} from ${this.options.url}${this.hosts.size > 0 ? `, replaying to ${[...this.hosts.keys()].join(', ')}` : ''}`),
        (error: Error) => this.log('error', `sparkplug: subscribing on ${this.options.url} failed: ${error.message}`))
    })
    client.on('message', (topic, payload, packet) => this.receive(topic, payload, packet))
    const sample = setInterval(() => {
      this.issued.push({ at: Date.now(), id: this.lastIssued })
      if (this.issued.length > ISSUED_SAMPLES_MAX) this.issued.shift()
    }, ISSUED_SAMPLE_MS)
    const live = setInterval(() => { this.commitLive().catch((error: unknown) => this.log('warning', `sparkplug: ${(error as Error).message}`)) }, LIVE_COMMIT_MS)
    sample.unref()
    live.unref()
    this.timers.push(sample, live)
  }

  private receive(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (this.closed) return
    const parts = topic.split('/')
    if (parts[0] === 'STATE' || (parts[0] === NAMESPACE && parts[1] === 'STATE')) {
      const host = this.hosts.get(parts[parts.length - 1]!)
      if (host !== undefined && parts.length === (parts[0] === 'STATE' ? 2 : 3)) this.onState(host, payload, packet.retain)
      return
    }
    // spBv1.0/group/TYPE/edge[/device]
    if (parts.length < 4 || parts.length > 5 || !this.options.groups.includes(parts[1]!) || !RECORDED.has(parts[2]!)
      || (this.edgeNodes !== null && !this.edgeNodes.has(parts[3]!))) {
      this.dropped++
      return
    }
    const record: SparkplugRecord = { sp: 1, t: topic, p: payload }
    const appended = this.target.append(encode(record))
    this.recorded++
    this.lastIssued = appended.then((id) => id, (error: unknown) => {
      this.dropped++
      this.log('warning', `sparkplug: a message on ${topic} was not recorded: ${(error as Error).message}`)
      return null
    })
  }

  private onState(host: Host, payload: Buffer, retained: boolean): void {
    const text = payload.toString('utf8')
    let online: boolean
    let timestamp: number | null = null
    if (text === 'ONLINE' || text === 'OFFLINE') {
      online = text === 'ONLINE'
    } else {
      try {
        const state = JSON.parse(text) as { online?: unknown, timestamp?: unknown }
        if (typeof state.online !== 'boolean') throw new Error('no online field')
        online = state.online
        if (typeof state.timestamp === 'number') timestamp = state.timestamp
      } catch {
        this.log('warning', `sparkplug: a STATE of host ${host.id} that is neither ONLINE/OFFLINE nor {"online": ..., "timestamp": ...}: ignored`)
        return
      }
    }
    const was = host.state
    host.state = online ? 'online' : 'offline'
    host.generation++
    const generation = host.generation
    const now = Date.now()
    if (!online) {
      // The host's own OFFLINE is now; a Last Will (Sparkplug 3.0: the timestamp of the ONLINE it
      // follows) or a retained one heard at start-up may be late by a keep-alive and a half.
      const graceful = !retained && timestamp !== null && timestamp !== host.onlineTimestamp && Math.abs(now - timestamp) < GRACEFUL_SKEW_MS
      const since = graceful ? Infinity : now - this.grace
      if (was === 'online') this.log('info', `sparkplug: host ${host.id} offline${graceful ? '' : ` (counted from ${Math.round(this.grace / 1000)} s before)`}: recording for a replay`)
      this.markOffline(host, since, generation, was === 'online').catch((error: unknown) => this.log('warning', `sparkplug: host ${host.id}: ${(error as Error).message}`))
      return
    }
    host.onlineTimestamp = timestamp
    if (was !== 'online') this.log('info', `sparkplug: host ${host.id} online`)
    const previous = host.replaying ?? Promise.resolve()
    host.replaying = previous.then(() => this.replay(host, generation)).catch((error: unknown) => {
      this.log('warning', `sparkplug: replay to host ${host.id} stopped: ${(error as Error).message}`)
    }).finally(() => { if (host.generation === generation) host.replaying = null })
  }

  /**
   * A host that was online went offline at `since`: it received, live, what was recorded before
   * then, so its consumer moves to that boundary (on, or back for a host that died unannounced).
   * A host whose replay was still due keeps its consumer where the replay got to.
   */
  private async markOffline(host: Host, since: number, generation: number, wasOnline: boolean): Promise<void> {
    let before: Promise<EventId | null> | null = null
    if (since >= Date.now()) before = this.lastIssued
    else {
      for (let i = this.issued.length - 1; i >= 0; i--) {
        if (this.issued[i]!.at <= since) { before = this.issued[i]!.id; break }
      }
    }
    await host.replaying
    host.pendingFromStart = false // the gap goes on: the next replay ends where that host comes back
    // No sample that old: the host went before anything this run recorded.
    const boundary = before === null ? this.baseline : await this.after(await before)
    if (host.generation !== generation || !wasOnline || host.until.position > host.consumer.position) return
    if (boundary > host.consumer.position) await host.consumer.commit(boundary - 1)
    else if (boundary < host.consumer.position) await host.consumer.reset({ to: boundary })
  }

  /** Replays what `host` missed: from its consumer to the boundary of now (or the one a crash left). */
  private async replay(host: Host, generation: number): Promise<void> {
    // A replay a crash cut short ends where it was to end; otherwise at the last message recorded now.
    let until: number
    if (host.pendingFromStart) {
      until = host.until.position
      host.pendingFromStart = false
    } else {
      until = await this.after(await this.lastIssued)
      if (host.generation !== generation) return
      await host.until.reset({ to: until })
    }
    const from = host.consumer.position
    if (from >= until) return
    this.log('info', `sparkplug: replaying local positions ${from} to ${until} to host ${host.id}`)
    const sp = await sparkplugPayload()
    let sent = 0
    let position = from
    for await (const event of this.target.read({ from, to: until })) {
      if (this.closed || host.generation !== generation) return
      position = event.localPos + 1
      const record = event.origin === this.target.replicaId ? decodeSparkplugRecord(event.payload) : null
      const type = record?.t.split('/')[2]
      if (record !== null && type !== undefined && REPLAYED.has(type)) {
        let bytes: Uint8Array
        try {
          const decoded = sp.decodePayload(record.p)
          for (const metric of decoded.metrics ?? []) metric.isHistorical = true
          bytes = sp.encodePayload(decoded)
        } catch (error) {
          this.log('warning', `sparkplug: a recorded message on ${record.t} (local position ${event.localPos}) does not decode as Sparkplug B, not replayed: ${(error as Error).message}`)
          continue
        }
        await this.takeToken()
        if (this.closed || host.generation !== generation) return
        await this.client!.publishAsync(record.t, Buffer.from(bytes), { qos: 1 })
        host.replayed++
        if (++sent % REPLAY_COMMIT_EVERY === 0) await host.consumer.commit(event.localPos)
      }
    }
    if (host.generation !== generation) return
    if (position > host.consumer.position) await host.consumer.commit(position - 1)
    this.log('info', `sparkplug: replayed ${sent} messages to host ${host.id}`)
  }

  /** Online hosts not replaying have received what was recorded: their consumers move up to it. */
  private async commitLive(): Promise<void> {
    const generations = new Map([...this.hosts.values()].map((host) => [host, host.generation]))
    const boundary = await this.after(await this.lastIssued)
    for (const host of this.hosts.values()) {
      // A STATE since: the host may have gone before the boundary's messages reached it.
      if (host.generation !== generations.get(host) || host.state !== 'online' || host.replaying !== null || host.until.position > host.consumer.position) continue
      if (boundary > host.consumer.position) await host.consumer.commit(boundary - 1)
    }
  }

  /** The local position after the event `id` (the bridge's last append at some moment): where a gap starts or ends. */
  private async after(id: EventId | null): Promise<number> {
    if (id === null) return this.baseline
    const length = this.target.length
    const floor = Math.max(0, length - BOUNDARY_SCAN_MAX)
    for (let to = length; to > floor; to = Math.max(floor, to - 256)) {
      const window: { localPos: number, origin: string, pos: number }[] = []
      for await (const event of this.target.read({ from: Math.max(floor, to - 256), to })) window.push({ localPos: event.localPos, origin: event.origin, pos: event.pos })
      for (let i = window.length - 1; i >= 0; i--) {
        if (window[i]!.origin === id.origin && window[i]!.pos === id.pos) return window[i]!.localPos + 1
      }
    }
    return this.baseline
  }

  /** Waits for a replay token: at most `replayRatePerSecond` publishes a second. */
  private async takeToken(): Promise<void> {
    for (;;) {
      const now = Date.now()
      this.tokens = Math.min(this.rate, this.tokens + ((now - this.tokensAt) * this.rate) / 1000)
      this.tokensAt = now
      if (this.tokens >= 1) {
        this.tokens -= 1
        return
      }
      await new Promise((resolve) => setTimeout(resolve, Math.ceil(((1 - this.tokens) * 1000) / this.rate)))
    }
  }

  status(): SparkplugStatus {
    return {
      connected: this.client?.connected ?? false,
      recorded: this.recorded,
      dropped: this.dropped,
      hosts: [...this.hosts.values()].map((host) => ({
        host: host.id,
        state: host.state,
        position: host.consumer.position,
        replayUntil: host.until.position > host.consumer.position ? host.until.position : null,
        replaying: host.replaying !== null,
        replayed: host.replayed,
      })),
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const timer of this.timers) clearInterval(timer)
    for (const host of this.hosts.values()) host.generation++
    await Promise.all([...this.hosts.values()].map((host) => host.replaying))
    await this.lastIssued
    await this.client?.endAsync().catch(() => undefined)
  }
}

function validId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && !/[/+#]/.test(id)
}

type SparkplugCodec = NonNullable<ReturnType<typeof import('sparkplug-payload').get>>
let codec: Promise<SparkplugCodec> | null = null
/** sparkplug-payload's Sparkplug B codec, loaded on first replay. */
function sparkplugPayload(): Promise<SparkplugCodec> {
  codec ??= import('sparkplug-payload').then(({ get }) => get(NAMESPACE)!)
  return codec
}
