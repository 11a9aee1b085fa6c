// The Sparkplug B store-and-forward bridge (docs/sparkplug.md). It records the births, deaths and
// data of chosen groups and edge nodes from a broker into a log, as they were sent, and follows
// each primary host application's STATE. While a host is offline nothing changes in recording;
// when it comes back online, the bridge republishes the NDATA and DDATA it missed, in order, with
// every metric flagged is_historical, at a bounded rate, from a durable consumer per host: a crash
// mid-replay resumes where the consumer stands (at-least-once: what was published and not yet
// committed goes again).
//
// Where a host's gap starts and ends is known exactly: the bridge appends what arrives in a turn as
// one batch and knows each message's local position, so a boundary is the position after the last
// message recorded when the STATE came. A host that dies without saying so (its Last Will fires a
// keep-alive and a half later) is taken back to where its consumer stood `hostDeathGraceMs` before
// the will arrived, so a replay repeats a little rather than misses.

import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt'
import { decode, encode } from 'cbor-x'
import { LogError, isLogError, type Consumer, type Log } from '../core/index.js'

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
  /** PEM for mqtts:// (as sync takes them). */
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
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
/** A STATE whose timestamp is this close to now (and not its ONLINE's) was sent by the host itself, not its Last Will. */
const GRACEFUL_SKEW_MS = 10_000
/** How often an online host's consumer is moved up to what it has received live. */
const LIVE_COMMIT_MS = 1000
/** Moves of each host's consumer remembered (when, to where), for taking back what a dead host never got. */
const POSITIONS_MAX = 4096
/** A replay commits its consumer after this many messages (and at its end). */
const REPLAY_COMMIT_EVERY = 100
/** How long close() waits for a replay's publish on a broker that went away. */
const CLOSE_WAIT_MS = 2000

export async function startSparkplugBridge(log: Log, options: SparkplugOptions): Promise<SparkplugBridge> {
  const bridge = new Bridge(log, options)
  await bridge.start()
  return bridge
}

/**
 * The consumer names of a host's replays: `sparkplug.{host}` (its position) and
 * `sparkplug-until.{host}` (where a due replay ends); a host id with characters a consumer name
 * cannot hold, or longer than 40, gets a safe part and a hash. Distinct prefixes: no host's name is
 * another's until.
 */
export function hostConsumerNames(host: string): { position: string, until: string } {
  let part = host
  if (!/^[A-Za-z0-9_.-]{1,40}$/.test(host)) {
    let hash = 0
    for (let i = 0; i < host.length; i++) hash = (Math.imul(hash, 31) + host.charCodeAt(i)) >>> 0
    part = `${host.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 30)}~`.replace('~', `.${hash.toString(16).padStart(8, '0')}`)
  }
  return { position: `sparkplug.${part}`, until: `sparkplug-until.${part}` }
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
  /** Bumped at every STATE: a replay stops when it changes. */
  generation = 0
  replayed = 0
  replaying = false
  /** The generation whose replay finished: until then (a replay queued or running) live commits wait. */
  caughtUp = -1
  /** The timestamp of the host's last ONLINE: its Last Will (Sparkplug 3.0) carries the same one. */
  onlineTimestamp: number | null = null
  /** Marking the host offline and replays run in the order their STATEs came, one at a time. */
  chain: Promise<void> = Promise.resolve()
  /** Where the consumer stood since when, oldest first. */
  private readonly positions: { at: number, position: number }[] = []

  constructor(readonly id: string, readonly consumer: Consumer, readonly until: Consumer) {
    this.positions.push({ at: Date.now(), position: consumer.position })
  }

  /** Where the consumer stood at `at` (the oldest remembered when older). */
  positionAt(at: number): number {
    for (let i = this.positions.length - 1; i >= 0; i--) if (this.positions[i]!.at <= at) return this.positions[i]!.position
    return this.positions[0]!.position
  }

  async moveTo(target: number): Promise<void> {
    if (target > this.consumer.position) await this.consumer.commit(target - 1)
    else if (target < this.consumer.position) await this.consumer.reset({ to: target })
    else return
    this.positions.push({ at: Date.now(), position: this.consumer.position })
    if (this.positions.length > POSITIONS_MAX) this.positions.shift()
  }

  /** Whether a replay this host's last ONLINE started has not finished (no OFFLINE since: it was online since). */
  get replayDue(): boolean {
    return this.until.position > this.consumer.position
  }
}

class Bridge implements SparkplugBridge {
  private client: MqttClient | null = null
  private readonly hosts = new Map<string, Host>()
  private recorded = 0
  private dropped = 0
  /** Messages of this turn, appended as one batch at its end. */
  private pending: Uint8Array[] = []
  private flushScheduled = false
  /** The local position after the last message recorded (once its batch is in). */
  private lastEnd: Promise<number> = Promise.resolve(0)
  private liveTimer: NodeJS.Timeout | null = null
  private committingLive = false
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
    this.lastEnd = Promise.resolve(this.target.length)
    for (const id of this.options.primaryHosts ?? []) {
      const names = hostConsumerNames(id)
      // A new host's consumer starts at the head: what was recorded before the bridge knew of it is not its gap.
      this.hosts.set(id, new Host(id, this.target.consumer(names.position, { startAt: 'latest' }), this.target.consumer(names.until, { startAt: 'latest' })))
    }
    const client = mqtt.connect(this.options.url, {
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 1000,
      ...(this.options.clientId === undefined ? {} : { clientId: this.options.clientId }),
      ...(this.options.username === undefined ? {} : { username: this.options.username }),
      ...(this.options.password === undefined ? {} : { password: this.options.password }),
      ...(this.options.ca === undefined ? {} : { ca: this.options.ca }),
      ...(this.options.cert === undefined ? {} : { cert: this.options.cert }),
      ...(this.options.key === undefined ? {} : { key: this.options.key }),
    })
    this.client = client
    client.on('error', (error) => {
      const v5 = /protocol/i.test(error.message) ? ': the bridge needs MQTT 5 (no-local subscriptions, so it never records its own replays); this broker refuses it' : ''
      this.log(v5 === '' ? 'warning' : 'error', `sparkplug: broker ${this.options.url}: ${error.message}${v5}`)
    })
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
    this.liveTimer = setInterval(() => this.commitLive(), LIVE_COMMIT_MS)
    this.liveTimer.unref()
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
    const bytes = encode(record)
    if (bytes.length > this.target.maxEventBytes) {
      this.dropped++
      this.log('warning', `sparkplug: a message of ${payload.length} bytes on ${topic} is over the log's maxEventBytes (${this.target.maxEventBytes}): not recorded`)
      return
    }
    this.pending.push(bytes)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(() => this.flush())
    }
  }

  /** Appends the messages of this turn as one batch; `lastEnd` moves past them once they are in. */
  private flush(): void {
    this.flushScheduled = false
    if (this.pending.length === 0) return
    const batch = this.pending
    this.pending = []
    const previous = this.lastEnd
    // Positions are taken in call order, so batches keep the order of arrival.
    const appended = this.append(batch)
    this.lastEnd = Promise.all([previous, appended]).then(([before, end]) => Math.max(before, end))
  }

  private async append(batch: Uint8Array[]): Promise<number> {
    try {
      const range = await this.target.appendBatchRange(batch)
      this.recorded += batch.length
      return range.localPos + range.count
    } catch (error) {
      if (batch.length > 1 && isLogError(error) && error.code === 'VALIDATION') {
        // A validator refused one of them: the others go in one by one (after what came since).
        let end = 0
        for (const one of batch) end = Math.max(end, await this.append([one]))
        return end
      }
      this.dropped += batch.length
      this.log('warning', `sparkplug: ${batch.length} message${batch.length === 1 ? ' was' : 's were'} not recorded: ${(error as Error).message}`)
      return 0
    }
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
    // The same STATE again (the broker hands the retained one over each time the bridge
    // reconnects): nothing changed, and a replay would repeat what the host received live.
    if (online && host.state === 'online' && timestamp === host.onlineTimestamp) return
    if (!online && host.state === 'offline') return
    // What came before the STATE in this turn is recorded before its boundary is taken.
    this.flush()
    const end = this.lastEnd
    const was = host.state
    host.state = online ? 'online' : 'offline'
    host.generation++
    const generation = host.generation
    const now = Date.now()
    let work: () => Promise<void>
    if (!online) {
      // The host's own OFFLINE is now; a Last Will (Sparkplug 3.0: the timestamp of the ONLINE it
      // follows) or a retained one heard at start-up may be late by a keep-alive and a half.
      const graceful = !retained && timestamp !== null && timestamp !== host.onlineTimestamp && Math.abs(now - timestamp) < GRACEFUL_SKEW_MS
      if (was === 'online') this.log('info', `sparkplug: host ${host.id} offline${graceful ? '' : ` (counted from ${Math.round(this.grace / 1000)} s before)`}: recording for a replay`)
      work = () => this.markOffline(host, end, graceful ? null : now - this.grace, was === 'online')
    } else {
      host.onlineTimestamp = timestamp
      if (was !== 'online') this.log('info', `sparkplug: host ${host.id} online`)
      work = () => this.replay(host, generation, end)
    }
    // In STATE order, each after the last: an OFFLINE's rollback holds even when ONLINE follows at once.
    host.chain = host.chain.then(work).catch((error: unknown) => this.log('warning', `sparkplug: host ${host.id}: ${(error as Error).message}`))
  }

  /**
   * A host went offline. A replay still due keeps its place, and the gap's end opens (the next
   * ONLINE sets it). A host that was online received, live, what was recorded before `end`: its
   * consumer moves there. One that died unannounced (`since`) goes back to where its consumer
   * stood then, whatever it was sent after.
   */
  private async markOffline(host: Host, end: Promise<number>, since: number | null, wasOnline: boolean): Promise<void> {
    const boundary = await end
    const replayDue = host.replayDue
    if (replayDue) await host.until.reset({ to: host.consumer.position })
    if (!wasOnline) return
    let target = replayDue ? host.consumer.position : boundary
    if (since !== null) target = Math.min(target, host.positionAt(since))
    await host.moveTo(target)
  }

  /** Replays what `host` missed: from its consumer to `end` (or to where an unfinished replay was to end). */
  private async replay(host: Host, generation: number, end: Promise<number>): Promise<void> {
    const boundary = await end
    if (host.generation !== generation || this.closed) return
    let until: number
    if (host.replayDue) until = host.until.position
    else {
      until = boundary
      await host.until.reset({ to: until })
    }
    const from = host.consumer.position
    if (from >= until) {
      host.caughtUp = generation
      return
    }
    this.log('info', `sparkplug: replaying local positions ${from} to ${until} to host ${host.id}`)
    host.replaying = true
    try {
      const sp = await sparkplugPayload()
      let sent = 0
      for await (const event of this.target.read({ from, to: until })) {
        if (this.closed || host.generation !== generation) return
        const record = event.origin === this.target.replicaId ? decodeSparkplugRecord(event.payload) : null
        const type = record?.t.split('/')[2]
        if (record === null || type === undefined || !REPLAYED.has(type)) continue
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
        if (++sent % REPLAY_COMMIT_EVERY === 0 && host.generation === generation) await host.moveTo(event.localPos + 1)
      }
      // To the end, whatever the read went around (a damaged range has nothing to replay).
      if (host.generation !== generation) return
      await host.moveTo(until)
      host.caughtUp = generation
      this.log('info', `sparkplug: replayed ${sent} messages to host ${host.id}`)
    } finally {
      host.replaying = false
    }
  }

  /** Online hosts with no replay due have received what was recorded: their consumers move up to it. */
  private commitLive(): void {
    if (this.committingLive || this.closed) return
    this.committingLive = true
    const generations = new Map([...this.hosts.values()].map((host) => [host, host.generation]))
    this.lastEnd.then(async (boundary) => {
      for (const host of this.hosts.values()) {
        // A STATE since: the host may have gone before the boundary's messages reached it.
        if (host.generation !== generations.get(host) || host.state !== 'online' || host.caughtUp !== host.generation || host.replayDue) continue
        if (boundary > host.consumer.position) {
          // On the host's chain, so that it never passes an OFFLINE's rollback.
          host.chain = host.chain.then(async () => { if (host.generation === generations.get(host)) await host.moveTo(boundary) })
          await host.chain
        }
      }
    }).catch((error: unknown) => this.log('warning', `sparkplug: ${(error as Error).message}`)).finally(() => { this.committingLive = false })
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
        replayUntil: host.replayDue ? host.until.position : null,
        replaying: host.replaying,
        replayed: host.replayed,
      })),
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.flush()
    this.closed = true
    if (this.liveTimer !== null) clearInterval(this.liveTimer)
    for (const host of this.hosts.values()) host.generation++
    // Forced: a replay's publish waiting for a broker that went away fails now instead of holding the daemon's stop.
    await this.client?.endAsync(true).catch(() => undefined)
    const settled = Promise.all([this.lastEnd, ...[...this.hosts.values()].map((host) => host.chain)])
    await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())])
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
