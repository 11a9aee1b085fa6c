// The local API server: a Unix domain socket through which local processes use the daemon's logs
// (docs/local-api.md). Requests are pipelined (matched by id); an append is answered only once it
// is durable per the log's mode; reads and tails stream in chunks with a credit window. Memory held
// for clients is bounded (daemon/limits.ts): requests in service, streams and their chunks, and
// incomplete frames, per connection and in total; a client that holds its share without making
// progress is cut off. A client that sends garbage (a frame over the bound, bytes that are not
// CBOR, a frame without id and op) gets an error frame and is disconnected; other clients are not
// affected.

import fs from 'node:fs'
import net from 'node:net'
import { LogError, isLogError, type DamagedRange, type Log, type LogEvent } from '../core/index.js'
import type { SyncHandle } from '../sync/index.js'
import { diskUse } from './disk-use.js'
import { FRAME_BYTES_MAX, FrameError, FrameReader, TurnWriter, encodeFrame } from './frames.js'
import { DEFAULT_LIMITS, SendPool, type PoolOwner, type ServerLimits } from './limits.js'

/** Progress frames of a verify, at most one per this many ms. */
const VERIFY_PROGRESS_MS = 250

export interface ServedLog {
  name: string
  log: Log
  sync: SyncHandle | undefined
  /** The Sparkplug bridge recording into this log (docs/sparkplug.md), if configured. */
  sparkplug?: { status(): unknown }
  /** What the local API counts for the metrics (daemon/metrics.ts). */
  counts: ServedCounts
}

/** What the daemon counts itself for the metrics (per log), beside what the log and sync report. */
export interface ServedCounts {
  appendedEvents: number
  appendedBytes: number
  /** Appends refused, by error code (VALIDATION for a validator's rejection). */
  refused: Map<string, number>
}

export function newServedCounts(): ServedCounts {
  return { appendedEvents: 0, appendedBytes: 0, refused: new Map() }
}

/** Events per streamed chunk, at most. */
export const STREAM_CHUNK_EVENTS_MAX = 1000
/** Payload bytes per streamed chunk, about (one event may exceed it). */
export const STREAM_CHUNK_BYTES_MAX = 1 << 20
/** A connection refused with BUSY is closed this long after the answer, if the client has not closed it. */
const REFUSED_CLOSE_MS = 1000
/** Chunks sent ahead of the client's credit. */
export const STREAM_WINDOW_CHUNKS = 4

export type Logger = (level: 'info' | 'warning' | 'error', message: string) => void

export interface ServerOptions {
  frameBytesMax?: number
  limits?: Partial<ServerLimits>
}

interface CaughtUp {
  pending: number
  notify: (at: number) => void
}

interface Stream {
  credit: number
  wake: (() => void) | null
  abort: AbortController
}

/** Bytes taken from the send pool for one chunk, given back once the socket has them. */
interface Reservation {
  bytes: number
  given: boolean
}

/** A request frame received and not yet taken into service, with its size. */
interface Queued {
  frame: Record<string, unknown>
  bytes: number
}

/** One connection: what it selected, what it has in service, and what it holds of the pools. */
class Client implements PoolOwner {
  selected: ServedLog | undefined
  inFlight = 0
  readonly backlog: Queued[] = []
  readonly streams = new Map<number, Stream>()
  readonly reservations = new Set<Reservation>()
  writeBlocked = false
  closed = false
  /**
   * Bytes of request frames it sent that are not done with (waiting, or in service but a stream's),
   * plus the announced size of its incomplete frame once admitted; `share` is the part of it drawn
   * from the receive pool (beyond receiveFreeBytes).
   */
  held = 0
  share = 0
  /** The announced size of its incomplete frame, counted in `held`; 0 while it has none or it waits for room. */
  admitted = 0
  /** It waits, unread, for room in the receive pool. */
  receiveWaiting = false
  /** Since when its incomplete frame has been coming while the server reads it. */
  frameSince = 0
  reading = true
  sendHeld = 0
  /** When its queue of answers last moved (or started to fill). */
  writeSince = 0

  /** Answers of one turn (a group of appends made durable together) go out together. */
  readonly writer: TurnWriter

  constructor(readonly socket: net.Socket, readonly reader: FrameReader, selected: ServedLog | undefined) {
    this.selected = selected
    this.writer = new TurnWriter(socket)
  }

  /** Reading stops while its answers are not read, while requests wait for room, and while it waits for the receive pool. */
  updateReading(): void {
    if (this.socket.destroyed) return
    const reading = !(this.writeBlocked || this.backlog.length > 0 || this.receiveWaiting)
    if (reading && !this.reading) this.frameSince = Date.now() // its frame's time runs while it may send
    this.reading = reading
    if (reading) this.socket.resume()
    else this.socket.pause()
  }
}

export class LocalApiServer {
  private readonly server: net.Server
  private readonly clients = new Set<Client>()
  /** Local API connections open now. */
  get clientCount(): number {
    return this.clients.size
  }
  private readonly limits: ServerLimits
  private readonly frameBytesMax: number
  private readonly sendPool: SendPool
  private receiveUsed = 0
  private readonly receiveWaiters: Client[] = []
  private streamCount = 0
  private sweeper: NodeJS.Timeout | null = null
  private refused = 0
  private refusedLoggedAt = 0

  constructor(private readonly logs: Map<string, ServedLog>, private readonly socketPath: string,
    private readonly logger: Logger, options: ServerOptions = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits }
    this.frameBytesMax = options.frameBytesMax ?? FRAME_BYTES_MAX
    this.sendPool = new SendPool(this.limits.sendPoolBytes, this.limits.connectionSendBytesMax)
    this.server = net.createServer((socket) => this.accept(socket))
  }

  async listen(): Promise<void> {
    await removeStaleSocket(this.socketPath)
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen({ path: this.socketPath, backlog: this.limits.listenBacklog }, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    fs.chmodSync(this.socketPath, 0o660)
    this.sweeper = setInterval(() => this.sweep(), Math.max(10, Math.min(1000, this.limits.clientStallMs / 4)))
    this.sweeper.unref()
  }

  /** Stops accepting, lets requests in flight finish for up to `graceMs`, then closes every connection. */
  async close(graceMs = 2000): Promise<void> {
    if (this.sweeper !== null) clearInterval(this.sweeper)
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const client of this.clients) client.socket.end()
    const deadline = Date.now() + graceMs
    while (this.clients.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    for (const client of this.clients) client.socket.destroy()
    await closed
    fs.rmSync(this.socketPath, { force: true })
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => undefined)
    if (this.clients.size >= this.limits.connectionsMax) {
      this.refuse(socket)
      return
    }
    const client = new Client(socket, new FrameReader(this.frameBytesMax), this.defaultLog())
    this.clients.add(client)
    const fail = (message: string): void => {
      this.send(client, { id: 0, ok: false, error: { code: 'INVALID_ARGUMENT', message } })
      this.logger('warning', `local API: disconnected a client: ${message}`)
      socket.end()
      socket.destroySoon()
    }
    const run = ({ frame, bytes }: Queued): void => {
      client.inFlight++
      // A stream's request is done with once the stream starts: the send pool bounds the stream.
      const streaming = frame['op'] === 'read' || frame['op'] === 'tail'
      if (streaming) this.charge(client, -bytes)
      this.handle(frame, client).catch((error: unknown) => {
        this.send(client, { id: frame['id'], ok: false, error: errorBody(error) })
      }).finally(() => {
        client.inFlight--
        if (!streaming) this.charge(client, -bytes)
        const next = client.backlog.shift()
        if (next !== undefined) run(next)
        client.updateReading()
      })
    }
    socket.on('data', (chunk: Buffer) => {
      const partBefore = client.reader.buffered > 0
      let frames: Record<string, unknown>[]
      try {
        frames = client.reader.push(chunk)
      } catch (error) {
        fail(error instanceof FrameError ? error.message : String(error))
        return
      }
      const sizes = client.reader.sizes
      for (let i = 0; i < frames.length; i++) {
        const frame = frames[i]!
        const bytes = sizes[i]!
        if (i === 0 && client.admitted > 0) client.admitted = 0 // counted since it was admitted
        else this.charge(client, bytes) // came whole within one read
        if (!Number.isSafeInteger(frame['id']) || (frame['id'] as number) <= 0 || typeof frame['op'] !== 'string') {
          fail('a frame needs a positive integer id and a string op')
          return
        }
        if (frame['op'] === 'more' || frame['op'] === 'cancel') {
          this.charge(client, -bytes)
          if (frame['op'] === 'cancel') {
            // A stream cancelled before it started ends at once (other requests are not cancelled).
            const waiting = client.backlog.findIndex((queued) => queued.frame['id'] === frame['id'] && (queued.frame['op'] === 'read' || queued.frame['op'] === 'tail'))
            if (waiting >= 0) {
              this.charge(client, -client.backlog.splice(waiting, 1)[0]!.bytes)
              this.send(client, { id: frame['id'], ok: true, result: { end: true } })
              client.updateReading()
            }
          }
          const stream = client.streams.get(frame['id'] as number)
          if (stream !== undefined) {
            if (frame['op'] === 'more') stream.credit++
            else stream.abort.abort()
            stream.wake?.()
          }
          continue
        }
        if (client.inFlight >= this.limits.connectionRequestsMax) {
          // Held until a request completes; reading stops meanwhile, so at most one read's frames wait.
          client.backlog.push({ frame, bytes })
          client.updateReading()
          continue
        }
        run({ frame, bytes })
      }
      if (client.reader.buffered > 0 && (frames.length > 0 || !partBefore)) client.frameSince = Date.now()
      this.admit(client)
    })
    socket.on('close', () => {
      this.clients.delete(client)
      client.closed = true
      for (const stream of client.streams.values()) {
        stream.abort.abort()
        stream.wake?.()
      }
      for (const reservation of client.reservations) this.giveBack(client, reservation)
      this.receiveUsed -= client.share
      client.share = 0
      client.held = 0
      const waiting = this.receiveWaiters.indexOf(client)
      if (waiting >= 0) this.receiveWaiters.splice(waiting, 1)
      this.wakeReceivers()
    })
  }

  /** Over CONNECTIONS_MAX: the client hears BUSY (and retries), the journal hears of it at most every 10 s. */
  private refuse(socket: net.Socket): void {
    this.refused++
    socket.end(encodeFrame({ id: 0, ok: false, error: { code: 'BUSY', message: `the daemon serves ${this.limits.connectionsMax} connections, the most it takes at once; try again later` } }))
    // What the client sent is read and dropped (so that closing does not reset the connection
    // before it reads the answer), and the connection is closed within a second whatever it does.
    socket.resume()
    setTimeout(() => socket.destroy(), REFUSED_CLOSE_MS).unref()
    const now = Date.now()
    if (now - this.refusedLoggedAt >= 10_000) {
      this.logger('warning', `local API: refused ${this.refused} connection(s): ${this.limits.connectionsMax} are open, the most it serves`)
      this.refused = 0
      this.refusedLoggedAt = now
    }
  }

  /** Writes one frame; `onWritten` runs once the socket has handed it to the kernel (or is gone). */
  private send(client: Client, value: unknown, onWritten?: () => void): boolean {
    const socket = client.socket
    if (socket.destroyed) {
      onWritten?.()
      return false
    }
    if (socket.writableLength === 0) client.writeSince = Date.now()
    const ok = client.writer.write(encodeFrame(value), () => {
      client.writeSince = Date.now()
      onWritten?.()
    })
    if (!ok && !client.writeBlocked) {
      client.writeBlocked = true
      client.updateReading()
      socket.once('drain', () => {
        client.writeBlocked = false
        client.updateReading()
      })
    }
    if (socket.writableLength > this.limits.connectionQueueBytesMax) {
      this.cut(client, `it left ${socket.writableLength} bytes of answers unread (the bound is ${this.limits.connectionQueueBytesMax})`)
    }
    return ok
  }

  private cut(client: Client, why: string): void {
    if (client.socket.destroyed) return
    this.logger('warning', `local API: cut off a client: ${why}`)
    client.socket.destroy()
  }

  /**
   * Counts `bytes` more (or fewer) of the client's requests against the receive pool: what one
   * connection holds beyond receiveFreeBytes is drawn from the pool. Bytes given back wake those
   * that wait for room.
   */
  private charge(client: Client, bytes: number): void {
    if (client.closed) return // its share went back when it closed
    client.held += bytes
    const share = Math.max(0, client.held - this.limits.receiveFreeBytes)
    this.receiveUsed += share - client.share
    client.share = share
    if (bytes < 0) this.wakeReceivers()
  }

  /**
   * Once its header has come, an incomplete frame is admitted for its whole announced size if the
   * pool has room; if not, or while the connection draws on a pool that is over its bound, the
   * client waits unread (first come, first served). Memory held for incomplete frames is thus the
   * pool plus, per connection, receiveFreeBytes and one read.
   */
  private admit(client: Client): void {
    if (client.receiveWaiting || client.closed) return
    if (this.ready(client)) return
    client.receiveWaiting = true
    this.receiveWaiters.push(client)
    client.updateReading()
  }

  /** Whether the client may be read: its incomplete frame admitted (admitting it if it fits), and the pool within bounds. */
  private ready(client: Client): boolean {
    // An admitted frame is read to its end (its time runs meanwhile): pausing it could leave the
    // pool full of frames nobody may finish.
    if (client.admitted > 0) return true
    const announced = client.admitted === 0 ? client.reader.expected : 0
    if (announced > 0) {
      const extra = Math.max(0, client.held + announced - this.limits.receiveFreeBytes) - client.share
      if (extra > 0 && this.receiveUsed > 0 && this.receiveUsed + extra > this.limits.receivePoolBytes) return false
      this.charge(client, announced)
      client.admitted = announced
    }
    return client.share === 0 || this.receiveUsed <= this.limits.receivePoolBytes
  }

  private wakeReceivers(): void {
    while (this.receiveWaiters.length > 0) {
      const client = this.receiveWaiters[0]!
      if (!client.closed && !this.ready(client)) return
      this.receiveWaiters.shift()
      client.receiveWaiting = false
      client.updateReading() // its frame's time runs from now
    }
  }

  /** Cuts off clients whose frame does not complete, or who leave answers unread, for longer than clientStallMs. */
  private sweep(): void {
    const now = Date.now()
    const stall = this.limits.clientStallMs
    for (const client of this.clients) {
      if (client.reading && client.reader.buffered > 0 && now - client.frameSince > stall) {
        const expected = client.reader.expected
        this.cut(client, `it sent ${client.reader.buffered} bytes of a ${expected > 0 ? expected : 'not yet announced'}-byte frame and not the rest within ${stall} ms`)
      } else if (client.socket.writableLength > 0 && now - client.writeSince > stall) {
        this.cut(client, `it has not read its answers for ${stall} ms (${client.socket.writableLength} bytes waiting)`)
      }
    }
  }

  private async reserve(client: Client, bytes: number, signal: AbortSignal): Promise<Reservation | null> {
    if (!await this.sendPool.take(client, bytes, signal)) return null
    const reservation: Reservation = { bytes, given: false }
    if (client.socket.destroyed) {
      this.giveBack(client, reservation)
      return null
    }
    client.reservations.add(reservation)
    return reservation
  }

  private giveBack(client: Client, reservation: Reservation): void {
    if (reservation.given) return
    reservation.given = true
    client.reservations.delete(reservation)
    this.sendPool.give(client, reservation.bytes)
  }

  private defaultLog(): ServedLog | undefined {
    if (this.logs.size === 1) return [...this.logs.values()][0]
    return this.logs.get('main')
  }

  private async handle(frame: Record<string, unknown>, client: Client): Promise<void> {
    const send = (value: unknown): boolean => this.send(client, value)
    const id = frame['id'] as number
    const op = frame['op'] as string
    if (op === 'hello') {
      const name = frame['log']
      if (name !== undefined && name !== null) {
        if (typeof name !== 'string' || !this.logs.has(name)) {
          throw new LogError('INVALID_ARGUMENT', `no log named ${JSON.stringify(name)} here; logs: ${[...this.logs.keys()].join(', ')}`)
        }
        client.selected = this.logs.get(name)
      }
      if (client.selected === undefined) throw new LogError('INVALID_ARGUMENT', `choose a log: ${[...this.logs.keys()].join(', ')}`)
      const { log } = client.selected
      send({ id, ok: true, result: { log: client.selected.name, logs: [...this.logs.keys()], replicaId: log.replicaId, maxEventBytes: log.maxEventBytes } })
      return
    }
    const served = client.selected
    if (served === undefined) throw new LogError('INVALID_ARGUMENT', 'send hello with a log name first')
    const log = served.log
    switch (op) {
      case 'append': {
        const payload = bytes(frame['payload'], 'payload')
        const result = await counted(served.counts, 1, payload.length, log.append(payload))
        send({ id, ok: true, result })
        return
      }
      case 'appendBatch': {
        const payloads = frame['payloads']
        if (!Array.isArray(payloads)) throw new LogError('INVALID_ARGUMENT', 'appendBatch: payloads must be a list of byte strings')
        const list = payloads.map((p, i) => bytes(p, `payload ${i}`))
        let total = 0
        for (const payload of list) total += payload.length
        const range = await counted(served.counts, list.length, total, log.appendBatchRange(list))
        send({ id, ok: true, result: range })
        return
      }
      case 'length':
        send({ id, ok: true, result: log.length })
        return
      case 'durableLength':
        send({ id, ok: true, result: log.durableLength })
        return
      case 'versionVector':
        send({ id, ok: true, result: log.versionVector() })
        return
      case 'status':
        send({ id, ok: true, result: statusOf(served, frame['fleet'] === true) })
        return
      case 'consumers':
        send({ id, ok: true, result: log.consumers() })
        return
      case 'consumerOpen': {
        const startAt = frame['startAt']
        const consumer = log.consumer(frame['name'] as string, startAt === undefined || startAt === null ? {} : { startAt: startAt as 'earliest' })
        send({ id, ok: true, result: { position: consumer.position } })
        return
      }
      case 'consumerCommit':
        await log.consumer(frame['name'] as string).commit(frame['position'] as number)
        send({ id, ok: true, result: null })
        return
      case 'consumerReset': {
        const to = frame['to']
        await log.consumer(frame['name'] as string).reset(to === undefined || to === null ? {} : { to: to as number })
        send({ id, ok: true, result: null })
        return
      }
      case 'consumerDelete':
        await log.consumer(frame['name'] as string).delete()
        send({ id, ok: true, result: null })
        return
      case 'verify': {
        // With `progress: true`, a { id, progress: [checked, segments] } frame as each segment is
        // checked, at most one every VERIFY_PROGRESS_MS (and the last), before the answer.
        let last = -Infinity
        const onProgress = frame['progress'] === true ? (checked: number, segments: number): void => {
          const now = performance.now()
          if (checked < segments && now - last < VERIFY_PROGRESS_MS) return
          last = now
          send({ id, progress: [checked, segments] })
          client.writer.flush() // out now, not at the end of a turn a segment's check may fill
        } : undefined
        send({ id, ok: true, result: await log.verify(onProgress === undefined ? {} : { onProgress }) })
        return
      }
      case 'read':
      case 'tail': {
        const from = position(frame['from'], 'from', 0)
        if (client.streams.size >= this.limits.connectionStreamsMax) {
          throw new LogError('BUSY', `this connection has ${client.streams.size} streams open (reads and tails), the most one connection may: end one, or open another connection`)
        }
        if (this.streamCount >= this.limits.streamsMax) {
          throw new LogError('BUSY', `the daemon serves ${this.streamCount} streams (reads and tails), the most it serves at once; try again later`)
        }
        const stream: Stream = { credit: STREAM_WINDOW_CHUNKS, wake: null, abort: new AbortController() }
        client.streams.set(id, stream)
        this.streamCount++
        try {
          const caughtUp: CaughtUp = { pending: -1, notify: () => undefined }
          // A damaged range the stream goes around is said in its own frame (the client's onDamage).
          const onDamage = (range: DamagedRange): void => { send({ id, damage: range }) }
          const events = op === 'read'
            ? log.read({ from, to: position(frame['to'], 'to', log.length), onDamage })
            : log.tail({ from, signal: stream.abort.signal, onCaughtUp: (at) => caughtUp.notify(at), onDamage })
          await this.stream(client, id, events, stream, op === 'tail', caughtUp)
        } finally {
          client.streams.delete(id)
          this.streamCount--
        }
        return
      }
      default:
        throw new LogError('INVALID_ARGUMENT', `unknown op ${JSON.stringify(op)}`)
    }
  }

  /**
   * Sends events in chunks. Before each chunk it waits for credit, then for the chunk's first event
   * (a tail waits here for new events, holding nothing), then for room in the send pool; it then
   * gathers what is ready, up to the chunk bounds, and the pool has the room back once the socket
   * has the chunk.
   */
  private async stream(client: Client, id: number, events: AsyncIterable<LogEvent>, stream: Stream, tailing: boolean, caughtUp: CaughtUp): Promise<void> {
    let chunk: unknown[] = []
    let bytes = 0
    // The tail reached the head: the client hears it after the events before it.
    caughtUp.notify = (at) => {
      if (chunk.length === 0) this.send(client, { id, caughtUp: at })
      else caughtUp.pending = at
    }
    const gone = (): boolean => stream.abort.signal.aborted || client.socket.destroyed
    const add = (event: LogEvent): void => {
      chunk.push([event.localPos, event.origin, event.pos, event.time, event.payload])
      bytes += event.payload.length
    }
    const iterator = events[Symbol.asyncIterator]()
    let next: Promise<IteratorResult<LogEvent>> | null = null
    let finished = false
    try {
      while (!finished) {
        while (stream.credit <= 0 && !gone()) await new Promise<void>((resolve) => { stream.wake = resolve })
        stream.wake = null
        if (gone()) break
        next ??= iterator.next()
        const first = await next
        next = null
        if (first.done === true || gone()) break
        const reservation = await this.reserve(client, STREAM_CHUNK_BYTES_MAX, stream.abort.signal)
        if (reservation === null) break
        add(first.value)
        // A tail that waits for new events sends what it gathered first (one timer per chunk).
        let idle: Promise<'idle'> | null = null
        try {
          while (chunk.length < STREAM_CHUNK_EVENTS_MAX && bytes < STREAM_CHUNK_BYTES_MAX) {
            next = iterator.next()
            let result: IteratorResult<LogEvent>
            if (tailing) {
              idle ??= new Promise<'idle'>((resolve) => setImmediate(() => resolve('idle')))
              const ready = await Promise.race([next, idle])
              if (ready === 'idle') break // `next` stays pending: the next chunk starts with it
              result = ready
            } else {
              result = await next
            }
            next = null
            if (result.done === true || gone()) {
              finished = true
              break
            }
            add(result.value)
          }
        } catch (error) {
          this.giveBack(client, reservation) // the chunk is not sent: its room goes back
          throw error
        }
        stream.credit--
        const sending = chunk
        chunk = []
        bytes = 0
        this.send(client, { id, events: sending }, () => this.giveBack(client, reservation))
        if (caughtUp.pending >= 0) {
          this.send(client, { id, caughtUp: caughtUp.pending })
          caughtUp.pending = -1
        }
      }
    } finally {
      await iterator.return?.()
    }
    this.send(client, { id, ok: true, result: { end: true } })
  }
}

function bytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new LogError('INVALID_ARGUMENT', `${what} must be a byte string`)
  return value
}

function position(value: unknown, what: string, fallback: number): number {
  if (value === undefined || value === null) return fallback
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw new LogError('INVALID_ARGUMENT', `${what} must be a non-negative integer`)
  return value as number
}

function errorBody(error: unknown): { code: string, message: string, details?: unknown } {
  if (error instanceof LogError) {
    const { cause: _cause, ...details } = error.details
    return { code: error.code, message: error.message, details }
  }
  return { code: 'IO', message: `internal error: ${(error as Error).message}` }
}

/** A socket file left by a daemon that died: removed; one a live daemon listens on: LOCKED. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  if (!fs.existsSync(socketPath)) return
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath, () => { probe.destroy(); resolve(true) })
    probe.once('error', () => resolve(false))
  })
  if (live) throw new LogError('LOCKED', `another daemon is listening on ${socketPath}`, { path: socketPath })
  fs.rmSync(socketPath, { force: true })
}

/**
 * A served log's status, as the `status` op answers it (docs/local-api.md) and the status page
 * shows it; with `fleet`, the health reports of the log's other replicas too (docs/sync.md, "Health").
 */
export function statusOf(served: ServedLog, fleet = false): Record<string, unknown> {
  const { log } = served
  return {
    log: served.name, replicaId: log.replicaId, length: log.length, durableLength: log.durableLength, vector: log.versionVector(),
    quarantined: log.quarantined(), sync: served.sync?.status() ?? null, directory: log.directory, ...diskUse(log.directory),
    consumers: log.consumers(), security: log.securityStatus(), damage: log.damage(), noSpace: log.noSpace,
    ...(served.sparkplug === undefined ? {} : { sparkplug: served.sparkplug.status() }),
    ...(fleet ? { fleet: served.sync?.fleet() ?? [] } : {}),
  }
}

/** Counts an append for the metrics: its events and bytes once it is in, its error code when refused. */
async function counted<T>(counts: ServedCounts, events: number, bytes: number, append: Promise<T>): Promise<T> {
  try {
    const result = await append
    counts.appendedEvents += events
    counts.appendedBytes += bytes
    return result
  } catch (error) {
    const code = isLogError(error) ? error.code : 'ERROR'
    counts.refused.set(code, (counts.refused.get(code) ?? 0) + 1)
    throw error
  }
}
