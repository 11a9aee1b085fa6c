// One log's replication over one MQTT connection (docs/sync.md).
//
// State: what each peer holds (its version vector, from its announcements), and two send lanes.
// The own lane publishes this log's own events in order (live appends and any catch-up of them);
// the relay lane publishes other origins' events that a peer lacks and that this replica was
// elected to send. Each lane streams from the log in chunks below maxMessageBytes and keeps at
// most inflightMessagesMax publishes unacknowledged, so memory stays bounded whatever the backlog,
// and a long relay catch-up never delays live appends.
//
// Damage: a replica repairing damaged ranges (core/damage.ts) announces them as holes, and its
// vector stops at each origin's first hole; an elected sender streams just the hole's positions,
// which the receiver's merge hands to the repair.
//
// Faults expected: the broker drops, duplicates, reorders and loses messages and sessions (it is
// not a store); peers vanish without a goodbye (Last Will); garbage arrives on the topics.
// Correctness comes from the logs: merge is idempotent and gapless, announcements repeat, and a
// gap that survives is asked for again by the next announcement.

import { EventEmitter } from 'node:events'
import type { IPublishPacket } from 'mqtt'
import type { Subscriber, SyncClient, SyncConnection } from './connection.js'
import type { Clock, TimerHandle } from './clock.js'
import { EVENT_HEADER_BYTES, SEAL_BYTES_MAX, type Log, type LogRecord, type MergeResult, type Quarantine, type VersionVector } from '../core/index.js'
import {
  COMPRESSION_DEFLATE_RAW, HOLES_ANNOUNCED_MAX, INFLATED_BYTES_MAX, MESSAGE_EVENTS_MAX, MESSAGE_FRAMING_BYTES, MESSAGE_RECORDS_MAX, RECORD_FRAMING_BYTES, ProtocolError, decodeMessage, encodeMessage, type Hole,
  type Message, type WireRecord, packRecords, unpackRecords,
} from './protocol.js'
import { parseTopic, subscription, topic } from './topics.js'
import { delta, equalVectors } from './version-vector.js'

export interface PeerInfo {
  replica: string
  /** The connection it syncs through. */
  node: string
  online: boolean
  vector: VersionVector
  origins: string[] | null
  /** The largest message it accepts. */
  maxMessageBytes: number
  lastSeenMs: number
  /** Ranges it lacks below its counts (damage it repairs): its vector stops at the first of each origin's. */
  holes: Hole[]
  /** The compressions of events messages it reads. */
  compression: string[]
}

/** The last health report of another replica of this log (docs/sync.md, "Health"), as it published it. */
export interface HealthReport {
  replica: string
  /** Delivered from the broker's retained store when this replica subscribed (it may be old), not as it was published. */
  retained: boolean
  /** When this replica received it (its own clock). */
  receivedMs: number
  /** The report's fields: `v`, `replica`, `node`, `log`, `timeMs` and what the sender's summary added. Not authenticated. */
  report: Record<string, unknown>
}

export interface SyncStatus {
  replica: string
  /** The connection this log syncs through (shared by the logs of this process on one broker). */
  node: string
  logName: string
  connected: boolean
  peers: PeerInfo[]
  eventsSent: number
  eventsReceived: number
  /** Events messages (and fragments) this replica published and the broker acknowledged. */
  messagesSent: number
  /** Messages of other replicas on this log's topics that decoded (status, vector, events, fragments). */
  messagesReceived: number
  messagesDropped: number
  lastError: string | null
  quarantined: Quarantine[]
  /** Remote events refused by authentication (forged, altered, untrusted, unsigned where seals are required). */
  eventsForged: number
  /** Origins whose key signed two histories (each is quarantined). */
  equivocations: number
}

export interface SyncEvents {
  peer: [PeerInfo]
  converged: [VersionVector]
  error: [Error]
}

export interface ReplicatorSettings {
  logName: string
  topicPrefix: string
  origins: string[] | null
  maxMessageBytes: number
  announceIntervalMs: number
  inflightMessagesMax: number
  /** Compression of the events messages sent, when every present peer reads it ('none': never). */
  compression: 'deflate-raw' | 'none'
  /** The retained health summary this replica publishes, and how often (null: none). */
  health: { intervalMs: number, summary: () => Record<string, unknown> } | null
  log: (level: 'info' | 'warning' | 'error', message: string) => void
  /** Wall clock and timers (realClock; the simulator passes its own). */
  clock: Clock
}

/** Delay before announcing our vector after receiving events, so one announcement covers many. */
const ANNOUNCE_DEBOUNCE_MS = 50
/** A peer silent for this many announcement intervals is taken as absent. */
const PEER_SILENCE_INTERVALS = 3
/** A peer silent for this many intervals is forgotten. */
const PEER_FORGET_INTERVALS = 60
/** Peers remembered, at most (and health reports of other replicas). */
const PEERS_MAX = 1024
/** A health message larger than this is dropped. */
export const HEALTH_BYTES_MAX = 4096
/** A range published within this many intervals is not sent again for an older announcement. */
const RESEND_GRACE_INTERVALS = 2
/** Published ranges remembered per origin, at most. */
const OFFERED_RANGES_MAX = 64
/** CBOR header bytes of a link or seal in an event entry. */
const SEAL_FRAMING_BYTES = 4
/** Bytes kept free below maxMessageBytes in every message. */
const MESSAGE_MARGIN_BYTES = 64
/** A message goes compressed only when that takes it below this share of its size (ciphertext does not compress, and costs the most to try). */
const COMPRESSED_SHARE_MAX = 0.75
/** Messages sent uncompressed after one that did not compress, before compression is tried again. */
const PLAIN_AFTER_INCOMPRESSIBLE = 64

/** The first `count` events of a record (without its link or seal, which covers the rest too). */
function clip(record: LogRecord, count: number): WireRecord {
  const view = new DataView(record.body.buffer, record.body.byteOffset, record.body.byteLength)
  let at = 0
  for (let i = 0; i < count; i++) at += EVENT_HEADER_BYTES + view.getUint32(at, true)
  return { pos: record.pos, count, body: record.body.subarray(0, at) }
}

/** A record cut into pieces of whole events of at most `room` body bytes (an event larger than that alone); the link or seal stays on the last. */
function* pieces(record: WireRecord, room: number): Generator<WireRecord> {
  const view = new DataView(record.body.buffer, record.body.byteOffset, record.body.byteLength)
  let start = 0
  let at = 0
  let first = 0
  for (let i = 0; i < record.count; i++) {
    const size = EVENT_HEADER_BYTES + view.getUint32(at, true)
    if (at > start && at - start + size > room) {
      yield { pos: record.pos + first, count: i - first, body: record.body.subarray(start, at) }
      start = at
      first = i
    }
    at += size
  }
  yield { pos: record.pos + first, count: record.count - first, body: record.body.subarray(start, at), ...(record.seal === undefined ? {} : { seal: record.seal }) }
}

/** Large events being reassembled from fragments at once, at most (the oldest is dropped). */
const ASSEMBLIES_MAX = 4

interface Assembly { key: string, time: number, bytes: Uint8Array, received: number, seal: Uint8Array | null }

export class Replicator extends EventEmitter<SyncEvents> implements Subscriber {
  private readonly client: SyncClient
  private readonly peers = new Map<string, PeerInfo>()
  /** Health reports of other replicas, by replica id (at most PEERS_MAX: the oldest goes first). */
  private readonly healthReports = new Map<string, HealthReport>()
  private healthTimer: TimerHandle | null = null
  /** Per origin: positions [from, upTo) to send (upTo Infinity: all from `from`). */
  private readonly relayJobs = new Map<string, { from: number, upTo: number }>()
  private readonly assemblies: Assembly[] = []
  /** Per origin: events published up to this position, and when; a gap a peer announced before
   *  that (plus a grace) is not sent again: the announcement predates our send. */
  private readonly offered = new Map<string, { from: number, upTo: number, atMs: number }[]>()
  private ownNext = -1
  /** The lowest own position a peer was found to lack while the own lane ran. */
  private ownRestart = Infinity
  private ownLane: Promise<void> = Promise.resolve()
  private relayLane: Promise<void> = Promise.resolve()
  /** Nodes whose Last Will said offline: a retained online status from them is stale. */
  private readonly offlineNodes = new Set<string>()
  private ownRunning = false
  private relayRunning = false
  private announceTimer: TimerHandle | null = null
  private periodic: TimerHandle | null = null
  private closed = false
  private wasConverged = false
  private eventsSent = 0
  private eventsReceived = 0
  private messagesSent = 0
  private messagesReceived = 0
  private messagesDropped = 0
  private lastError: string | null = null
  private readonly onDurable = (): void => this.planSends()
  /** Origins this log appended under before a move: it signs their links as its own. */
  private retiredOrigins = new Set<string>()
  /**
   * Own events appended since open are published only once the peers' statuses have been heard
   * (one announcement interval after the first connection): a peer holding more of this origin
   * than the log means the log lost some, and those positions must not get a second history
   * (core/log.ts ownOriginSeen). Until then the own lane stops at the count the log opened with.
   */
  private ownConfirmed = false
  private confirmTimer: TimerHandle | null = null
  /** A damaged range found or repaired: the vector announced changes. */
  private readonly onDamageChange = (): void => this.announceSoon()
  /** The log appends under a new origin: the old id goes offline here, the new one announces itself. */
  private readonly onOriginMoved = (moved: { from: string, to: string }): void => {
    this.retiredOrigins.add(moved.from)
    this.ownConfirmed = true // nobody holds anything of the new origin
    this.ownNext = -1
    this.ownRestart = Infinity
    this.goOffline(moved.from).then(() => this.announce(true)).then(() => this.publishHealth()).catch((error: unknown) => this.noteError(error))
  }
  private ready: Promise<void> = Promise.resolve()
  private firstReady: () => void = () => undefined
  private onError: ((error: Error) => void) | null = null

  constructor(private readonly log: Log, private readonly connection: SyncConnection, private readonly settings: ReplicatorSettings) {
    super()
    this.client = connection.client
  }

  get replica(): string {
    return this.log.replicaId
  }

  /** The compressions this replica reads (it reads deflate-raw whatever it sends; 'none' only stops it sending compressed). */
  private readonly reads = [COMPRESSION_DEFLATE_RAW]

  /** Whether a send lane is streaming events (the simulator waits for quiet before its next step). */
  get busy(): boolean {
    return this.ownRunning || this.relayRunning
  }

  /**
   * Starts: subscribes and announces on every (re)connection. Resolves after the first connection
   * is set up, or after `firstConnectWaitMs` if the broker cannot be reached: the gateway may be
   * offline, so sync keeps retrying in the background (status().connected, lastError).
   */
  start(firstConnectWaitMs: number): Promise<void> {
    let firstReady!: () => void
    this.ready = new Promise<void>((resolve) => { firstReady = resolve })
    this.firstReady = firstReady
    this.onError = (error: Error): void => this.noteError(error)
    this.client.on('error', this.onError)
    this.log.on('durable', this.onDurable)
    this.log.on('damage', this.onDamageChange)
    this.log.on('healed', this.onDamageChange)
    this.log.on('originMoved', this.onOriginMoved)
    for (const retired of this.log.originsRetired()) this.retiredOrigins.add(retired.replicaId)
    this.periodic = this.settings.clock.setInterval(() => {
      this.announce(false).catch((error: unknown) => this.noteError(error))
    }, this.settings.announceIntervalMs)
    const health = this.settings.health
    if (health !== null) {
      this.healthTimer = this.settings.clock.setInterval(() => {
        this.publishHealth().catch((error: unknown) => this.noteError(error))
      }, health.intervalMs)
    }
    this.connection.attach(this)
    const timeout = new Promise<void>((resolve) => this.settings.clock.setTimeout(resolve, firstConnectWaitMs))
    return Promise.race([this.ready, timeout])
  }

  /** Called on every (re)connection of the shared connection. */
  onConnect(): void {
    this.setUp().then(this.firstReady, (error: unknown) => this.noteError(error))
  }

  /** The node behind some peers went away without a goodbye (its Last Will): they are offline. */
  nodeStatus(node: string, online: boolean): void {
    if (online) {
      this.offlineNodes.delete(node) // each log's own status says when it is back
      return
    }
    this.offlineNodes.add(node)
    if (this.offlineNodes.size > PEERS_MAX) this.offlineNodes.delete(this.offlineNodes.values().next().value as string)
    for (const peer of this.peers.values()) {
      if (peer.node === node && peer.online) {
        peer.online = false
        this.emit('peer', { ...peer, vector: { ...peer.vector } })
      }
    }
  }

  private async setUp(): Promise<void> {
    const { topicPrefix, logName } = this.settings
    await this.client.subscribeAsync([
      subscription(topicPrefix, logName, 'status'),
      subscription(topicPrefix, logName, 'vector'),
      subscription(topicPrefix, logName, 'events'),
      subscription(topicPrefix, logName, 'health'),
    ], { qos: 1 })
    await this.announce(true)
    // Ids this log moved away from keep no retained health report (a move while the broker was
    // away, or a crash right after one, left it there).
    for (const retired of this.retiredOrigins) {
      this.client.publishAsync(topic(topicPrefix, logName, 'health', retired), Buffer.alloc(0), { qos: 1, retain: true }).catch((error: unknown) => this.noteError(error))
    }
    // Not awaited: a failed health report must not hold back the rest of the set-up.
    this.publishHealth().catch((error: unknown) => this.noteError(error))
    if (!this.ownConfirmed && this.confirmTimer === null) {
      this.confirmTimer = this.settings.clock.setTimeout(() => {
        this.confirmTimer = null
        this.ownConfirmed = true
        this.planSends()
      }, this.settings.announceIntervalMs)
    }
  }

  /** Says goodbye (retained offline status), stops sending and disconnects. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.log.off('durable', this.onDurable)
    this.log.off('damage', this.onDamageChange)
    this.log.off('healed', this.onDamageChange)
    this.log.off('originMoved', this.onOriginMoved)
    if (this.periodic !== null) this.settings.clock.clearInterval(this.periodic)
    if (this.healthTimer !== null) this.settings.clock.clearInterval(this.healthTimer)
    if (this.announceTimer !== null) this.settings.clock.clearTimeout(this.announceTimer)
    if (this.confirmTimer !== null) this.settings.clock.clearTimeout(this.confirmTimer)
    if (this.client.connected) {
      const { vector, holes } = this.announced()
      const goodbye = encodeMessage({ kind: 'status', replica: this.replica, node: this.connection.node, online: false, vector, holes, origins: this.settings.origins, maxMessageBytes: this.settings.maxMessageBytes, timeMs: this.settings.clock.now() })
      await this.client.publishAsync(topic(this.settings.topicPrefix, this.settings.logName, 'status', this.replica), Buffer.from(goodbye), { qos: 1, retain: true }).catch(() => undefined)
    }
    // The lanes see `closed` at their next step; publishes stuck on a dead connection are not awaited long.
    await Promise.race([Promise.all([this.ownLane, this.relayLane]), new Promise((resolve) => this.settings.clock.setTimeout(() => resolve(undefined), 1000))])
    if (this.onError !== null) this.client.off('error', this.onError)
    await this.connection.detach(this)
  }

  status(): SyncStatus {
    const security = this.log.securityStatus()
    return {
      replica: this.replica,
      node: this.connection.node,
      logName: this.settings.logName,
      connected: this.client.connected,
      peers: [...this.peers.values()].map((peer) => ({ ...peer, vector: { ...peer.vector } })),
      eventsSent: this.eventsSent,
      eventsReceived: this.eventsReceived,
      messagesSent: this.messagesSent,
      messagesReceived: this.messagesReceived,
      messagesDropped: this.messagesDropped,
      lastError: this.lastError,
      quarantined: this.log.quarantined(),
      eventsForged: security.forged,
      equivocations: security.equivocations.length,
    }
  }

  /**
   * What this replica announces: its version vector, stopped at each origin's first hole (a
   * damaged range it repairs), and the holes, at most HOLES_ANNOUNCED_MAX (the next ones once
   * those are repaired). What it can send is the same vector: it never streams through a hole.
   */
  private announced(): { vector: VersionVector, holes: Hole[] } {
    const vector = this.log.versionVector()
    const holes: Hole[] = []
    for (const range of this.log.damage()) for (const missing of range.missing) holes.push(missing)
    holes.sort((a, b) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : a.from - b.from))
    for (const hole of holes) {
      if ((vector[hole.origin] ?? 0) > hole.from) vector[hole.origin] = hole.from
      if (vector[hole.origin] === 0) delete vector[hole.origin]
    }
    return { vector, holes: holes.slice(0, HOLES_ANNOUNCED_MAX) }
  }

  /** Publishes a retained offline status for `replica`, an id this log no longer appends under. */
  private async goOffline(replica: string): Promise<void> {
    if (this.closed || !this.client.connected) return
    const { vector, holes } = this.announced()
    const goodbye = encodeMessage({ kind: 'status', replica, node: this.connection.node, online: false, vector, holes, origins: this.settings.origins, maxMessageBytes: this.settings.maxMessageBytes, timeMs: this.settings.clock.now() })
    await this.client.publishAsync(topic(this.settings.topicPrefix, this.settings.logName, 'status', replica), Buffer.from(goodbye), { qos: 1, retain: true })
    // Its retained health report would otherwise stand for a gateway that no longer exists.
    await this.client.publishAsync(topic(this.settings.topicPrefix, this.settings.logName, 'health', replica), Buffer.alloc(0), { qos: 1, retain: true })
  }

  /** Publishes our presence (retained, with `status`) and our version vector. */
  private async announce(withStatus: boolean): Promise<void> {
    if (this.closed || !this.client.connected) return
    const { topicPrefix, logName, origins, maxMessageBytes } = this.settings
    const { vector, holes } = this.announced()
    if (withStatus) {
      const status = encodeMessage({ kind: 'status', replica: this.replica, node: this.connection.node, online: true, vector, holes, origins, maxMessageBytes, timeMs: this.settings.clock.now(), compression: this.reads })
      await this.client.publishAsync(topic(topicPrefix, logName, 'status', this.replica), Buffer.from(status), { qos: 1, retain: true })
    }
    const message = encodeMessage({ kind: 'vector', replica: this.replica, vector, holes, origins, maxMessageBytes, compression: this.reads })
    await this.client.publishAsync(topic(topicPrefix, logName, 'vector', this.replica), Buffer.from(message), { qos: 1 })
    this.planSends()
  }

  private announceSoon(): void {
    if (this.announceTimer !== null || this.closed) return
    this.announceTimer = this.settings.clock.setTimeout(() => {
      this.announceTimer = null
      this.announce(false).catch((error: unknown) => this.noteError(error))
    }, ANNOUNCE_DEBOUNCE_MS)
  }

  /** Handles a message on this log's topics; false when the topic is another log's. */
  async receive(packet: IPublishPacket): Promise<boolean> {
    const parsed = parseTopic(this.settings.topicPrefix, this.settings.logName, packet.topic)
    if (parsed === undefined) return false
    if (this.closed) return true
    if (parsed.channel === 'health') this.receiveHealth(packet, parsed.replica)
    else await this.receiveOwned(packet, parsed)
    return true
  }

  /** Publishes this replica's health summary, retained (when the log's sync has one: option health). */
  private async publishHealth(): Promise<void> {
    const health = this.settings.health
    if (health === null || this.closed || !this.client.connected) return
    const { topicPrefix, logName } = this.settings
    let summary: Record<string, unknown>
    try {
      summary = health.summary()
    } catch (error) {
      summary = { summaryError: (error as Error).message }
    }
    const report = { ...summary, v: 1, replica: this.replica, node: this.connection.node, log: logName, timeMs: this.settings.clock.now(), intervalMs: health.intervalMs }
    let payload = Buffer.from(JSON.stringify(report))
    if (payload.length > HEALTH_BYTES_MAX) payload = Buffer.from(JSON.stringify({ v: 1, replica: this.replica, node: this.connection.node, log: logName, timeMs: report.timeMs, intervalMs: health.intervalMs, truncated: true }))
    await this.client.publishAsync(topic(topicPrefix, logName, 'health', this.replica), payload, { qos: 1, retain: true })
  }

  /** Keeps another replica's health report (JSON, at most HEALTH_BYTES_MAX); an empty payload clears it; garbage is dropped. */
  private receiveHealth(packet: IPublishPacket, replica: string): void {
    if (replica === this.replica) return
    const bytes = packet.payload as Uint8Array
    if (bytes.length === 0) {
      this.healthReports.delete(replica)
      return
    }
    let report: unknown
    try {
      if (bytes.length > HEALTH_BYTES_MAX) throw new ProtocolError(`a health report of ${bytes.length} bytes (at most ${HEALTH_BYTES_MAX})`)
      report = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
      if (typeof report !== 'object' || report === null || Array.isArray(report)) throw new ProtocolError('a health report that is not a JSON object')
      const fields = report as Record<string, unknown>
      if (fields['v'] !== 1 || fields['replica'] !== replica) throw new ProtocolError(`a health report of another version or replica on the topic of ${replica}`)
      // Flat: strings, numbers, booleans and null only (nested values are refused: status answers carry reports).
      for (const value of Object.values(fields)) {
        if (value !== null && typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') throw new ProtocolError('a health report with a nested value')
      }
    } catch (error) {
      this.drop(packet.topic, error)
      return
    }
    this.healthReports.delete(replica)
    this.healthReports.set(replica, { replica, retained: packet.retain, receivedMs: this.settings.clock.now(), report: report as Record<string, unknown> })
    if (this.healthReports.size > PEERS_MAX) this.healthReports.delete(this.healthReports.keys().next().value as string)
  }

  /** For each origin, the most of it an online peer announced (read in place, no copies: the metrics sample it, daemon/lag-history.ts). */
  onlinePeersHold(): VersionVector {
    const most: VersionVector = {}
    for (const peer of this.peers.values()) {
      if (!peer.online) continue
      const vector = peer.vector
      for (const origin in vector) if (vector[origin]! > (most[origin] ?? 0)) most[origin] = vector[origin]!
    }
    return most
  }

  /** The last health report of every other replica heard on this log's health topic, by replica id. */
  fleet(): HealthReport[] {
    return [...this.healthReports.values()].sort((a, b) => (a.replica < b.replica ? -1 : a.replica > b.replica ? 1 : 0)).map((entry) => ({ ...entry, report: { ...entry.report } }))
  }

  private async receiveOwned(packet: IPublishPacket, parsed: { channel: string, replica: string }): Promise<void> {
    let message: Message
    try {
      message = decodeMessage(packet.payload as Uint8Array, this.settings.maxMessageBytes)
    } catch (error) {
      this.drop(packet.topic, error)
      return
    }
    const carriesEvents = message.kind === 'events' || message.kind === 'fragment'
    const claimed = 'sender' in message ? message.sender : message.replica
    if (claimed !== parsed.replica || (parsed.channel === 'events') !== carriesEvents) {
      this.drop(packet.topic, new ProtocolError(`a ${message.kind} message from ${claimed} on the topic of ${parsed.replica}`))
      return
    }
    if (claimed === this.replica) return // our own messages, echoed by the broker
    this.messagesReceived++
    if (message.kind === 'events') {
      try {
        unpackRecords(message)
      } catch (error) {
        this.drop(packet.topic, error)
        return
      }
      await this.receiveEvents(message.origin, message.records, message.sealed)
      return
    }
    if (message.kind === 'fragment') {
      await this.receiveFragment(message, packet.topic)
      return
    }
    const known = this.peers.get(message.replica)
    const node = message.kind === 'status' ? message.node : known?.node ?? ''
    // A retained online status of a node whose Last Will already fired is stale.
    const online = message.kind === 'status' ? message.online && !this.offlineNodes.has(node) : true
    const peer: PeerInfo = {
      replica: message.replica, node, online, origins: message.origins, maxMessageBytes: message.maxMessageBytes, lastSeenMs: this.settings.clock.now(),
      // An offline status carries no trustworthy vector (the Last Will is written at connect).
      vector: message.kind === 'status' && !message.online ? known?.vector ?? {} : message.vector,
      holes: message.kind === 'status' && !message.online ? known?.holes ?? [] : message.holes ?? [],
      compression: message.compression ?? [],
    }
    this.peers.set(message.replica, peer)
    if (known === undefined || known.online !== peer.online) this.emit('peer', { ...peer })
    // A peer that holds more of this log's own origin than the log: it lost some (core/log.ts
    // ownOriginSeen). Any vector a peer announced counts, a retained one of a peer now offline too:
    // it held that much then.
    const theirs = message.vector[this.replica] ?? 0
    if (theirs > (this.log.versionVector()[this.replica] ?? 0)) {
      this.log.ownOriginSeen(theirs).then((outcome) => {
        if (outcome !== 'ok') this.settings.log('warning', `log ${this.settings.logName}: peer ${peer.replica} holds ${theirs} events of this log's own origin: ${outcome === 'restoring' ? 'taking them back before appending at those positions' : 'this log moved to a new origin'}`)
      }, (error: unknown) => this.noteError(error))
    }
    this.planSends()
    this.checkConverged()
  }

  private async receiveEvents(origin: string, records: WireRecord[], sealed: boolean): Promise<void> {
    const wanted = this.settings.origins
    if (wanted !== null && !wanted.includes(origin) && origin !== this.replica) return
    const result = await this.log.mergeRecords(records.map((record) => ({ origin, pos: record.pos, count: record.count, body: record.body, seal: record.seal })), { sealed, remote: true })
    this.noteMerged(origin, result)
  }

  private noteMerged(origin: string, result: MergeResult): void {
    this.eventsReceived += result.added + (result.healing ?? 0)
    if (result.forged !== undefined) this.settings.log('warning', `refused ${result.forged} events of ${origin}: ${this.log.securityStatus().lastRejection ?? ''}`)
    if (result.added > 0) this.announceSoon()
    this.checkConverged()
  }

  /** Reassembles an event sent in pieces; out-of-order pieces restart it (sync sends it again). */
  private async receiveFragment(message: Extract<Message, { kind: 'fragment' }>, where: string): Promise<void> {
    if (message.total > this.log.maxEventBytes) {
      this.drop(where, new ProtocolError(`fragment of an event of ${message.total} bytes, over maxEventBytes`))
      return
    }
    const key = `${message.sender}/${message.origin}/${message.pos}`
    let assembly = this.assemblies.find((entry) => entry.key === key)
    if (assembly === undefined || assembly.bytes.length !== message.total || assembly.time !== message.time) {
      if (message.offset !== 0) return
      if (assembly !== undefined) this.assemblies.splice(this.assemblies.indexOf(assembly), 1)
      assembly = { key, time: message.time, bytes: new Uint8Array(message.total), received: 0, seal: null }
      this.assemblies.push(assembly)
      if (this.assemblies.length > ASSEMBLIES_MAX) this.assemblies.shift()
    }
    if (message.offset !== assembly.received) {
      if (message.offset > assembly.received) this.assemblies.splice(this.assemblies.indexOf(assembly), 1)
      return
    }
    assembly.bytes.set(message.bytes, message.offset)
    assembly.received += message.bytes.length
    if (message.seal !== null) assembly.seal = message.seal
    if (assembly.received < message.total) return
    this.assemblies.splice(this.assemblies.indexOf(assembly), 1)
    const wanted = this.settings.origins
    if (wanted !== null && !wanted.includes(message.origin) && message.origin !== this.replica) return
    const event = { origin: message.origin, pos: message.pos, time: assembly.time, payload: assembly.bytes, ...(assembly.seal === null ? {} : { seal: assembly.seal }) }
    this.noteMerged(message.origin, await this.log.merge([event], { sealed: message.sealed, remote: true }))
  }

  /** A peer counts as present while online and heard from within PEER_SILENCE_INTERVALS announcements. */
  private live(peer: PeerInfo, now: number): boolean {
    return peer.online && now - peer.lastSeenMs <= PEER_SILENCE_INTERVALS * this.settings.announceIntervalMs
  }

  /** Decides what to send: our own events live, and the gaps of peers we are elected to fill. */
  private planSends(): void {
    if (this.closed) return
    const now = this.settings.clock.now()
    this.forgetSilentPeers(now)
    const mine = this.announced().vector
    if (this.ownNext < 0) this.ownNext = mine[this.replica] ?? 0
    for (const peer of this.peers.values()) {
      if (!this.live(peer, now)) continue
      for (const [origin, [gapFrom]] of delta(mine, peer.vector)) {
        if (peer.origins !== null && !peer.origins.includes(origin)) continue
        if (this.elect(origin, peer, now) !== this.replica) continue
        const from = this.unsentFrom(origin, gapFrom, peer.lastSeenMs, now)
        if (from >= (mine[origin] ?? 0)) continue
        // A hole the peer repairs: just its positions (the peer holds what comes after).
        const hole = peer.holes.find((candidate) => candidate.origin === origin && candidate.from <= from && from < candidate.to)
        if (hole !== undefined) {
          const job = this.relayJobs.get(origin)
          this.relayJobs.set(origin, { from: Math.min(job?.from ?? Infinity, from), upTo: Math.max(job?.upTo ?? 0, Math.min(hole.to, mine[origin] ?? 0)) })
        } else if (origin === this.replica) {
          this.ownRestart = Math.min(this.ownRestart, from)
        } else {
          this.relayJobs.set(origin, { from: Math.min(this.relayJobs.get(origin)?.from ?? Infinity, from), upTo: Infinity })
        }
      }
    }
    this.runOwnLane()
    this.runRelayLane()
  }

  /**
   * Where a peer's gap really starts, skipping what we published after the peer's announcement
   * was made (the announcement cannot reflect it yet). A range offered more than the grace ago
   * and still missing is sent again.
   */
  private unsentFrom(origin: string, gapFrom: number, announcedMs: number, now: number): number {
    const grace = RESEND_GRACE_INTERVALS * this.settings.announceIntervalMs
    const ranges = (this.offered.get(origin) ?? []).filter((range) => now - range.atMs <= grace)
    if (ranges.length === 0) this.offered.delete(origin)
    else this.offered.set(origin, ranges)
    let from = gapFrom
    for (let moved = true; moved;) {
      moved = false
      for (const range of ranges) {
        if (range.from <= from && from < range.upTo && announcedMs < range.atMs + grace) {
          from = range.upTo
          moved = true
        }
      }
    }
    return from
  }

  private noteOffered(origin: string, from: number, upTo: number): void {
    const ranges = this.offered.get(origin) ?? []
    const last = ranges[ranges.length - 1]
    if (last !== undefined && last.upTo === from) last.upTo = upTo // contiguous: keep the older time
    else ranges.push({ from, upTo, atMs: this.settings.clock.now() })
    if (ranges.length > OFFERED_RANGES_MAX) ranges.shift()
    this.offered.set(origin, ranges)
  }

  /**
   * Who sends origin `origin`'s events to `peer`: the origin itself when it is present and holds
   * them, otherwise the present replica with the smallest id among those holding more than the
   * peer. Every replica computes the same answer from the same announcements, so one answers.
   */
  private elect(origin: string, peer: PeerInfo, now: number): string | undefined {
    const need = peer.vector[origin] ?? 0
    const candidates: string[] = []
    if ((this.announced().vector[origin] ?? 0) > need) candidates.push(this.replica)
    for (const other of this.peers.values()) {
      if (this.live(other, now) && other.replica !== peer.replica && (other.vector[origin] ?? 0) > need) candidates.push(other.replica)
    }
    if (candidates.includes(origin)) return origin
    return candidates.sort()[0]
  }

  /** Peers silent for long, and offline ones beyond PEERS_MAX, are forgotten (bounded memory). */
  private forgetSilentPeers(now: number): void {
    const forget = PEER_FORGET_INTERVALS * this.settings.announceIntervalMs
    for (const [replica, peer] of this.peers) {
      if (now - peer.lastSeenMs > forget) this.peers.delete(replica)
    }
    while (this.peers.size > PEERS_MAX) {
      const oldest = [...this.peers.values()].sort((a, b) => a.lastSeenMs - b.lastSeenMs)[0]!
      this.peers.delete(oldest.replica)
    }
  }

  private runOwnLane(): void {
    if (this.ownRunning || this.closed) return
    if (this.ownRestart < this.ownNext) this.ownNext = this.ownRestart
    this.ownRestart = Infinity
    this.ownRunning = true
    const started = this.ownNext
    const upTo = this.ownConfirmed ? Infinity : this.log.ownCountAtOpen
    this.ownLane = this.streamOrigin(this.replica, this.ownNext, (next) => { this.ownNext = Math.max(this.ownNext, next) }, upTo)
      .catch((error: unknown) => this.noteError(error))
      .finally(() => {
        this.ownRunning = false
        // A restart asked for meanwhile, or more became durable: go again. When nothing moved,
        // the next 'durable' event or announcement starts the lane.
        if (!this.closed && (this.ownRestart < this.ownNext || this.ownNext > started)) this.runOwnLane()
      })
  }

  private runRelayLane(): void {
    if (this.relayRunning || this.closed) return
    this.relayRunning = true
    const work = async (): Promise<void> => {
      while (!this.closed && this.relayJobs.size > 0) {
        const [origin, job] = this.relayJobs.entries().next().value as [string, { from: number, upTo: number }]
        this.relayJobs.delete(origin)
        await this.streamOrigin(origin, job.from, () => undefined, job.upTo)
      }
    }
    this.relayLane = work().catch((error: unknown) => this.noteError(error)).finally(() => {
      this.relayRunning = false
      if (!this.closed && this.relayJobs.size > 0) this.runRelayLane()
    })
  }

  /**
   * Publishes `origin`'s events from position `from` on, in messages below maxMessageBytes, only
   * events already durable here, with at most inflightMessagesMax unacknowledged publishes.
   * Stops at close; a failed publish ends the stream (the next announcement asks again).
   */
  private async streamOrigin(origin: string, from: number, advance: (pos: number) => void, upTo = Infinity): Promise<void> {
    const { topicPrefix, logName, inflightMessagesMax } = this.settings
    const now = this.settings.clock.now()
    // Stay below what every present peer accepts; compress when every one of them reads it.
    let maxMessageBytes = this.settings.maxMessageBytes
    let compress = this.settings.compression !== 'none'
    for (const peer of this.peers.values()) {
      if (!this.live(peer, now)) continue
      maxMessageBytes = Math.min(maxMessageBytes, peer.maxMessageBytes)
      if (!peer.compression.includes(COMPRESSION_DEFLATE_RAW)) compress = false
    }
    // A margin below the limit for what the size estimates round off (array and map headers).
    const budget = maxMessageBytes - MESSAGE_MARGIN_BYTES
    const vector = this.log.versionVector()
    if ((vector[origin] ?? 0) <= from) return
    vector[origin] = from
    const target = topic(topicPrefix, logName, 'events', this.replica)
    const durable = this.log.durableLength
    const inflight: Promise<void>[] = []
    let failure: unknown = null
    // Messages are handed to the client in order; one still being compressed (on the thread pool)
    // holds back the ones after it, while the lane goes on reading and packing the next.
    let issued: Promise<void> = Promise.resolve()
    const publish = async (ready: Buffer | Promise<Buffer>, events: number): Promise<void> => {
      let acknowledged: Promise<void> = Promise.resolve()
      issued = issued.then(async () => {
        const payload = await ready
        acknowledged = this.client.publishAsync(target, payload, { qos: 1 }).then(() => { this.eventsSent += events; this.messagesSent++ })
      }).catch((error: unknown) => { failure ??= error })
      inflight.push(issued.then(() => acknowledged).catch((error: unknown) => { failure ??= error }))
      if (inflight.length >= inflightMessagesMax) await inflight.shift()
      if (failure !== null) throw failure
    }
    /** Messages of this stream still to send uncompressed: its events did not compress (ciphertext, say); it tries again after them. */
    let plainFor = 0
    /** Records of the next message; `source` is the record as the log handed it (signSeal trusts its link). */
    let batch: { record: WireRecord, source: LogRecord | null }[] = []
    let events = 0
    let sealed = false
    // Each message starts with room for its framing and for its last link becoming a seal when signed.
    const EMPTY_MESSAGE_BYTES = MESSAGE_FRAMING_BYTES + SEAL_BYTES_MAX
    let bytes = EMPTY_MESSAGE_BYTES
    let sentFrom = from
    /** Compressed bytes per uncompressed byte of this stream's last compressed message (1 until one is). */
    let ratio = 1
    /**
     * Whether `size` more bytes (`body` of them record bodies) still fit the next message: bodies
     * count at the stream's compression ratio (with a margin) when it goes compressed, so that it
     * carries more below the same limit; links, seals and framing go uncompressed.
     */
    const fits = (size: number, body: number): boolean => {
      if (!(compress && plainFor === 0 && ratio < 1)) return bytes + size <= budget
      const bodies = batchBodyBytes + body
      return bodies <= INFLATED_BYTES_MAX / 2 && bytes - batchBodyBytes + size - body + bodies * Math.max(ratio * 1.25, 0.01) <= budget
    }
    let batchBodyBytes = 0
    /** Sends entries as one message (the last own link signed), or as two halves when it comes out over the limit. */
    const send = async (entries: { record: WireRecord, source: LogRecord | null }[]): Promise<void> => {
      if (origin === this.replica || this.retiredOrigins.has(origin)) {
        // Own events (and those of the origins this log moved away from): the last link of the
        // message is signed, vouching for every event before it.
        for (let k = entries.length - 1; k >= 0; k--) {
          const entry = entries[k]!
          if (entry.record.seal === undefined) continue
          entry.record.seal = await this.log.signSeal((entry.source ?? { origin, seal: entry.record.seal }) as { origin: string, seal: Uint8Array }) as Buffer
          break
        }
      }
      const records = entries.map((entry) => entry.record)
      const message = { kind: 'events' as const, sender: this.replica, origin, records, sealed }
      let payload: Buffer
      if (compress && plainFor === 0) {
        const plain = records.reduce((sum, record) => sum + record.body.length, 0)
        const packed = packRecords(records)
        ratio = packed.length / Math.max(1, plain)
        if (ratio < COMPRESSED_SHARE_MAX) {
          payload = Buffer.from(encodeMessage({ ...message, packed }))
        } else {
          plainFor = PLAIN_AFTER_INCOMPRESSIBLE
          payload = Buffer.from(encodeMessage(message))
        }
      } else {
        plainFor = Math.max(0, plainFor - 1)
        payload = Buffer.from(encodeMessage(message))
      }
      if (payload.length > maxMessageBytes && entries.length > 1) {
        // Packed for a better ratio than it got: in two halves (each record alone fits, uncompressed).
        const half = entries.length >> 1
        await send(entries.slice(0, half))
        await send(entries.slice(half))
        return
      }
      const last = records[records.length - 1]!
      const upTo = last.pos + last.count
      await publish(payload, records.reduce((sum, record) => sum + record.count, 0))
      this.noteOffered(origin, sentFrom, upTo)
      sentFrom = upTo
      advance(upTo)
    }
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return
      const entries = batch
      batch = []
      bytes = EMPTY_MESSAGE_BYTES
      batchBodyBytes = 0
      events = 0
      await send(entries)
    }
    const add = async (record: WireRecord, source: LogRecord | null): Promise<void> => {
      const size = record.body.length + RECORD_FRAMING_BYTES + (record.seal === undefined ? 0 : record.seal.length + SEAL_FRAMING_BYTES)
      if (batch.length > 0 && (!fits(size, record.body.length) || events + record.count > MESSAGE_EVENTS_MAX || batch.length >= MESSAGE_RECORDS_MAX)) await flush()
      batch.push({ record, source })
      bytes += size
      batchBodyBytes += record.body.length
      events += record.count
    }
    try {
      sealed = await this.log.signs(origin)
      for await (const stored of this.log.recordsSince(vector)) {
        if (this.closed || stored.localPos >= durable) break
        if (stored.origin !== origin) continue
        if (stored.pos >= upTo) break
        if (stored.seal !== undefined) sealed = true
        // Only durable events, and only those below upTo (a hole's end): the rest of the record waits.
        const keep = Math.min(stored.count, durable - stored.localPos, upTo - stored.pos)
        const whole = keep === stored.count
        const record: WireRecord = whole ? { pos: stored.pos, count: stored.count, body: stored.body, ...(stored.seal === undefined ? {} : { seal: stored.seal }) } : clip(stored, keep)
        const size = record.body.length + RECORD_FRAMING_BYTES + SEAL_BYTES_MAX + SEAL_FRAMING_BYTES
        if (size + MESSAGE_FRAMING_BYTES <= budget) {
          await add(record, whole ? stored : null)
          continue
        }
        // Larger than a message: in pieces of whole events (the link or seal on the last), and an
        // event too large for a message alone, in fragments.
        for (const piece of pieces(record, budget - MESSAGE_FRAMING_BYTES - RECORD_FRAMING_BYTES - SEAL_BYTES_MAX - SEAL_FRAMING_BYTES)) {
          if (this.closed) break
          if (piece.body.length + RECORD_FRAMING_BYTES + SEAL_BYTES_MAX + SEAL_FRAMING_BYTES + MESSAGE_FRAMING_BYTES <= budget) {
            await add(piece, piece.seal !== undefined && whole ? stored : null)
            continue
          }
          await flush()
          await this.sendFragments(origin, piece, whole ? stored : null, sealed, budget, publish)
          if (this.closed) break
          this.noteOffered(origin, sentFrom, piece.pos + 1)
          sentFrom = piece.pos + 1
          advance(piece.pos + 1)
        }
      }
      if (!this.closed) await flush()
    } finally {
      await Promise.all(inflight)
    }
  }

  /** Sends one event (a record of one) too large for one message, in pieces; the link or seal goes with the last. */
  private async sendFragments(origin: string, record: WireRecord, source: LogRecord | null, sealed: boolean, budget: number, publish: (payload: Buffer, events: number) => Promise<void>): Promise<void> {
    const view = new DataView(record.body.buffer, record.body.byteOffset, record.body.byteLength)
    const time = view.getUint32(4, true) + view.getUint32(8, true) * 0x1_0000_0000
    const payload = record.body.subarray(EVENT_HEADER_BYTES)
    // Room for the link or seal the last piece carries.
    const piece = budget - MESSAGE_FRAMING_BYTES - SEAL_BYTES_MAX - SEAL_FRAMING_BYTES
    for (let offset = 0; offset < payload.length && !this.closed; offset += piece) {
      const last = offset + piece >= payload.length
      const seal = last && record.seal !== undefined ? await this.log.signSeal((source ?? { origin, seal: record.seal }) as { origin: string, seal: Uint8Array }) : null
      await publish(Buffer.from(encodeMessage({
        kind: 'fragment', sender: this.replica, origin, pos: record.pos, time, total: payload.length, offset, bytes: payload.subarray(offset, offset + piece), sealed, seal,
      })), last ? 1 : 0)
    }
  }

  private checkConverged(): void {
    const mine = this.announced().vector
    const now = this.settings.clock.now()
    const online = [...this.peers.values()].filter((peer) => this.live(peer, now))
    const wanted = (filter: string[] | null, origin: string): boolean => filter === null || filter.includes(origin)
    const converged = online.length > 0 && online.every((peer) => {
      if (peer.origins === null && this.settings.origins === null) return equalVectors(peer.vector, mine)
      for (const origin of new Set([...Object.keys(mine), ...Object.keys(peer.vector)])) {
        if (!wanted(peer.origins, origin) || !wanted(this.settings.origins, origin)) continue
        if ((mine[origin] ?? 0) !== (peer.vector[origin] ?? 0)) return false
      }
      return true
    })
    if (converged && !this.wasConverged) this.emit('converged', mine)
    this.wasConverged = converged
  }

  private drop(where: string, error: unknown): void {
    this.messagesDropped++
    this.lastError = `dropped a message on ${where}: ${(error as Error).message}`
    this.settings.log('warning', this.lastError)
    if (this.listenerCount('error') > 0) this.emit('error', error as Error)
  }

  private noteError(error: unknown): void {
    if (this.closed) return
    this.lastError = (error as Error).message
    this.settings.log('error', `sync ${this.settings.logName}: ${this.lastError}`)
    if (this.listenerCount('error') > 0) this.emit('error', error as Error)
  }
}
