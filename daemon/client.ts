// The local API client: the same verbs as the in-process log, over the daemon's Unix socket, so
// user code does not care where the log lives. Requests are pipelined and matched by id; reads
// and tails stream with a credit window (the client asks for more as its consumer takes events),
// so a slow consumer does not grow memory on either side.

import net from 'node:net'
import {
  LogError, type BatchRange, type ConsumerInfo, type DamagedRange, type EventId, type LogErrorCode, type LogEvent, type Quarantine, type VerifyResult,
  type VersionVector,
} from '../core/index.js'
import type { HealthReport, SyncStatus } from '../sync/index.js'
import { FRAME_BYTES_MAX, FrameReader, TurnWriter, encodeFrame } from './frames.js'

/** Requests waiting for an answer, at most; further calls wait for room. */
export const CLIENT_REQUESTS_MAX = 8192
/**
 * How long connect() keeps trying while the daemon is busy: its listen queue full (EAGAIN, after a
 * burst of connections) or all its connections taken (BUSY). Other failures are not retried.
 */
export const CONNECT_WAIT_MS_MAX = 10_000
/** The longest pause between two tries. */
const CONNECT_RETRY_DELAY_MS_MAX = 200

export interface ConnectOptions {
  /** The log to use (default: the only one, or main). */
  log?: string
  /** How long to keep trying while the daemon is busy (default CONNECT_WAIT_MS_MAX). */
  waitMs?: number
}

export interface RemoteStatus {
  log: string
  replicaId: string
  length: number
  durableLength: number
  vector: VersionVector
  quarantined: Quarantine[]
  sync: SyncStatus | null
  directory: string
  segments: number
  /** Bytes allocated on disk. */
  bytes: number
  consumers: ConsumerInfo[]
  /** Damaged ranges fenced off (log.damage()). */
  damage: DamagedRange[]
  /** Writes are stalled on a full disk. */
  noSpace: boolean
  /** With status({ fleet: true }): the other replicas' health reports (empty without sync). */
  fleet?: HealthReport[]
}

interface Pending {
  resolve: (value: unknown) => void
  reject: (error: Error) => void
  /** For streams: receives chunks of events. */
  onChunk?: (events: unknown[][]) => void
  /** For tails: the server reached the head. */
  onCaughtUp?: (position: number) => void
  /** For streams: a damaged range the stream went around. */
  onDamage?: (range: DamagedRange) => void
  /** For a verify: segments checked of all. */
  onProgress?: (checked: number, segments: number) => void
}

type WireEvent = [number, string, number, number, Uint8Array]

export class RemoteLog {
  readonly replicaId: string
  readonly logName: string
  readonly logs: readonly string[]
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private closed = false
  private failure: LogError | null = null
  private roomWaiters: (() => void)[] = []
  /** Requests made in one turn go out together. */
  private readonly writer: TurnWriter

  private constructor(private readonly socket: net.Socket, hello: { log: string, logs: string[], replicaId: string }) {
    this.writer = new TurnWriter(socket)
    this.replicaId = hello.replicaId
    this.logName = hello.log
    this.logs = hello.logs
  }

  /** Use connect(). */
  static async open(socketPath: string, options: ConnectOptions = {}): Promise<RemoteLog> {
    const waitMs = options.waitMs ?? CONNECT_WAIT_MS_MAX
    if (!Number.isSafeInteger(waitMs) || waitMs < 0 || waitMs > CONNECT_WAIT_MS_MAX) {
      throw new LogError('INVALID_ARGUMENT', `connect: waitMs must be an integer from 0 to ${CONNECT_WAIT_MS_MAX}, got ${String(waitMs)}`)
    }
    const deadline = Date.now() + waitMs
    for (let delay = 5; ; delay = Math.min(delay * 2, CONNECT_RETRY_DELAY_MS_MAX)) {
      try {
        return await RemoteLog.openOnce(socketPath, options)
      } catch (error) {
        if (!busy(error) || Date.now() + delay > deadline) {
          if (busy(error) && error instanceof LogError) {
            throw new LogError(error.code, `${error.message} (tried for ${waitMs} ms)`, { ...error.details, path: socketPath })
          }
          throw error
        }
        await new Promise((resolve) => setTimeout(resolve, delay))
      }
    }
  }

  private static async openOnce(socketPath: string, options: ConnectOptions): Promise<RemoteLog> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const candidate = net.connect(socketPath, () => {
        candidate.off('error', reject)
        resolve(candidate)
      })
      candidate.once('error', (error) => reject(new LogError('IO', `cannot connect to the daemon at ${socketPath}: ${error.message}`, { path: socketPath, cause: error })))
    })
    const reader = new FrameReader(FRAME_BYTES_MAX)
    let remote: RemoteLog | undefined
    const early: Record<string, unknown>[] = []
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of reader.push(chunk)) {
          if (remote === undefined) early.push(frame)
          else remote.receive(frame)
        }
      } catch (error) {
        remote?.fail(new LogError('IO', `the daemon sent a bad frame: ${(error as Error).message}`))
        socket.destroy()
      }
    })
    const helloId = 1
    socket.write(encodeFrame({ id: helloId, op: 'hello', log: options.log ?? null }))
    const hello = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = (): void => {
        const frame = early.find((f) => f['id'] === helloId || f['id'] === 0)
        if (frame === undefined) return
        socket.off('data', check)
        if (frame['ok'] === true) resolve(frame['result'] as Record<string, unknown>)
        else reject(toError(frame['error']))
      }
      socket.on('data', check)
      socket.once('close', () => reject(new LogError('IO', `the daemon at ${socketPath} closed the connection`)))
      check()
    }).catch((error: unknown) => {
      socket.destroy()
      throw error
    })
    remote = new RemoteLog(socket, hello as { log: string, logs: string[], replicaId: string })
    remote.nextId = helloId + 1
    socket.on('close', () => remote!.fail(new LogError('CLOSED', 'the connection to the daemon is closed')))
    socket.on('error', () => undefined)
    return remote
  }

  append(payload: Uint8Array): Promise<EventId> {
    return this.request({ op: 'append', payload }) as Promise<EventId>
  }

  async appendBatch(payloads: readonly Uint8Array[]): Promise<EventId[]> {
    const range = await this.appendBatchRange(payloads)
    return Array.from({ length: range.count }, (_, i) => ({ origin: range.origin, pos: range.pos + i }))
  }

  appendBatchRange(payloads: readonly Uint8Array[]): Promise<BatchRange> {
    return this.request({ op: 'appendBatch', payloads }) as Promise<BatchRange>
  }

  /** The number of events (an async call: the log lives in the daemon). */
  length(): Promise<number> {
    return this.request({ op: 'length' }) as Promise<number>
  }

  durableLength(): Promise<number> {
    return this.request({ op: 'durableLength' }) as Promise<number>
  }

  versionVector(): Promise<VersionVector> {
    return this.request({ op: 'versionVector' }) as Promise<VersionVector>
  }

  /** The log's status; with `fleet`, also the health reports of the other replicas of the log (sync's `fleet()`). */
  status(options: { fleet?: boolean } = {}): Promise<RemoteStatus> {
    return this.request(options.fleet === true ? { op: 'status', fleet: true } : { op: 'status' }) as Promise<RemoteStatus>
  }

  /** As log.verify: `onProgress` hears of the segments checked, of all, a few times a second. */
  verify(options: { onProgress?: (checked: number, segments: number) => void } = {}): Promise<VerifyResult> {
    const onProgress = options.onProgress
    if (onProgress === undefined) return this.request({ op: 'verify' }) as Promise<VerifyResult>
    return this.reserveId().then((id) => new Promise<unknown>((resolve, reject) => this.send(id, { op: 'verify', progress: true }, { resolve, reject, onProgress }))) as Promise<VerifyResult>
  }

  /** As log.read: `onDamage` hears of each damaged range the read goes around. */
  read(options: { from?: number, to?: number, onDamage?: (range: DamagedRange) => void } = {}): AsyncGenerator<LogEvent> {
    return this.stream({ op: 'read', from: options.from ?? 0, to: options.to ?? null }, undefined, undefined, options.onDamage)
  }

  tail(options: { from?: number, signal?: AbortSignal, onCaughtUp?: (position: number) => void, onDamage?: (range: DamagedRange) => void } = {}): AsyncGenerator<LogEvent> {
    return this.stream({ op: 'tail', from: options.from ?? 0 }, options.signal, options.onCaughtUp, options.onDamage)
  }

  /** A durable consumer stored by the daemon (same API as log.consumer). */
  async consumer(name: string, options: { startAt?: 'earliest' | 'latest' | number } = {}): Promise<RemoteConsumer> {
    const opened = await this.request({ op: 'consumerOpen', name, startAt: options.startAt ?? null }) as { position: number }
    return new RemoteConsumer(this, name, opened.position)
  }

  consumers(): Promise<ConsumerInfo[]> {
    return this.request({ op: 'consumers' }) as Promise<ConsumerInfo[]>
  }

  /** @internal */
  call(body: Record<string, unknown>): Promise<unknown> {
    return this.request(body)
  }

  /** @internal Chunks of a tail as the daemon sends them; an empty array marks each catch-up. */
  tailChunks(from: number, signal: AbortSignal | undefined): AsyncGenerator<LogEvent[]> {
    return this.chunkStream({ op: 'tail', from }, signal)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.socket.end()
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) resolve()
      else this.socket.once('close', () => resolve())
    })
  }

  private async *stream(body: Record<string, unknown>, signal: AbortSignal | undefined, onCaughtUp?: (position: number) => void,
    onDamage?: (range: DamagedRange) => void): AsyncGenerator<LogEvent> {
    for await (const chunk of this.chunkStream(body, signal, onDamage)) {
      if (chunk.length === 0) {
        if (onCaughtUp !== undefined) onCaughtUp(this.lastCaughtUp)
        continue
      }
      for (const event of chunk) {
        if (signal?.aborted === true) return
        yield event
      }
    }
  }

  private lastCaughtUp = 0

  private async *chunkStream(body: Record<string, unknown>, signal: AbortSignal | undefined, onDamage?: (range: DamagedRange) => void): AsyncGenerator<LogEvent[]> {
    const chunks: (unknown[][] | number)[] = []
    let wake: (() => void) | null = null
    let finished = false
    let failure: Error | null = null
    const id = await this.reserveId()
    const done = this.send(id, body, {
      resolve: () => { finished = true; wake?.() },
      reject: (error) => { failure = error; wake?.() },
      onChunk: (events) => { chunks.push(events); wake?.() },
      onCaughtUp: (position) => { chunks.push(position); wake?.() },
      onDamage: (range) => onDamage?.(range),
    })
    void done
    const onAbort = (): void => {
      this.socket.write(encodeFrame({ id, op: 'cancel' }))
      wake?.()
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      for (;;) {
        const chunk = chunks.shift()
        if (typeof chunk === 'number') {
          this.lastCaughtUp = chunk
          yield []
          continue
        }
        if (chunk !== undefined) {
          if (!this.socket.destroyed) this.socket.write(encodeFrame({ id, op: 'more' }))
          if (signal?.aborted === true) return
          yield (chunk as WireEvent[]).map(([localPos, origin, pos, time, payload]) => ({ localPos, origin, pos, time, payload }))
          continue
        }
        if (failure !== null) throw failure
        if (finished || signal?.aborted === true) return
        await new Promise<void>((resolve) => { wake = resolve })
        wake = null
      }
    } finally {
      signal?.removeEventListener('abort', onAbort)
      if (!finished && failure === null && !this.socket.destroyed) this.socket.write(encodeFrame({ id, op: 'cancel' }))
    }
  }

  private request(body: Record<string, unknown>): Promise<unknown> {
    // With room (the common case) the frame goes out in this turn, without waiting a tick for an id.
    if (this.failure === null && this.pending.size < CLIENT_REQUESTS_MAX && this.roomWaiters.length === 0) {
      const id = this.nextId++
      return new Promise((resolve, reject) => this.send(id, body, { resolve, reject }))
    }
    return this.reserveId().then((id) => new Promise((resolve, reject) => this.send(id, body, { resolve, reject })))
  }

  private async reserveId(): Promise<number> {
    if (this.failure !== null) throw this.failure
    while (this.pending.size >= CLIENT_REQUESTS_MAX) await new Promise<void>((resolve) => this.roomWaiters.push(resolve))
    if (this.failure !== null) throw this.failure
    return this.nextId++
  }

  private send(id: number, body: Record<string, unknown>, pending: Pending): void {
    if (this.failure !== null) {
      pending.reject(this.failure)
      return
    }
    this.pending.set(id, pending)
    this.writer.write(encodeFrame({ id, ...body }))
  }

  private receive(frame: Record<string, unknown>): void {
    const id = frame['id'] as number
    if (id === 0) {
      this.fail(toError(frame['error']))
      return
    }
    const pending = this.pending.get(id)
    if (pending === undefined) return
    if (Array.isArray(frame['events'])) {
      pending.onChunk?.(frame['events'] as unknown[][])
      return
    }
    if (typeof frame['damage'] === 'object' && frame['damage'] !== null) {
      pending.onDamage?.(frame['damage'] as DamagedRange)
      return
    }
    if (Array.isArray(frame['progress'])) {
      const [checked, segments] = frame['progress'] as unknown[]
      if (Number.isSafeInteger(checked) && Number.isSafeInteger(segments)) pending.onProgress?.(checked as number, segments as number)
      return
    }
    if (Number.isSafeInteger(frame['caughtUp'])) {
      pending.onCaughtUp?.(frame['caughtUp'] as number)
      return
    }
    this.pending.delete(id)
    const waiter = this.roomWaiters.shift()
    waiter?.()
    if (frame['ok'] === true) pending.resolve(frame['result'])
    else pending.reject(toError(frame['error']))
  }

  private fail(error: LogError): void {
    if (this.failure === null) this.failure = error
    for (const pending of this.pending.values()) pending.reject(this.failure)
    this.pending.clear()
    for (const waiter of this.roomWaiters.splice(0)) waiter()
  }
}

/** A durable consumer through the daemon: the same verbs as the in-process Consumer. */
export class RemoteConsumer {
  private cursor: number
  /** Bumped by reset: a running batches() starts again from the new cursor. */
  private generation = 0
  constructor(private readonly remote: RemoteLog, readonly name: string, private committed: number) {
    this.cursor = committed
  }

  /** The first local position not yet committed (as of the last call). */
  get position(): number {
    return this.committed
  }

  async lag(): Promise<number> {
    return Math.max(0, await this.remote.length() - this.committed)
  }

  async *batches(options: { max?: number, signal?: AbortSignal } = {}): AsyncGenerator<LogEvent[]> {
    const max = options.max ?? 1000
    if (!Number.isSafeInteger(max) || max < 1 || max > 100_000) throw new LogError('INVALID_ARGUMENT', 'batches: max must be 1 to 100000')
    for (;;) {
      const generation = this.generation
      let batch: LogEvent[] = []
      const hand = (): LogEvent[] => {
        const out = batch
        this.cursor = out[out.length - 1]!.localPos + 1
        batch = []
        return out
      }
      for await (const chunk of this.remote.tailChunks(this.cursor, options.signal)) {
        for (const event of chunk) {
          batch.push(event)
          if (batch.length === max) {
            yield hand()
            if (generation !== this.generation) break
          }
        }
        if (generation !== this.generation) break
        if (chunk.length === 0 && batch.length > 0) yield hand() // caught up: hand over what there is
        if (generation !== this.generation) break
      }
      if (generation === this.generation) return
    }
  }

  async commit(position: number): Promise<void> {
    await this.remote.call({ op: 'consumerCommit', name: this.name, position })
    this.committed = Math.max(this.committed, position + 1)
    if (this.cursor < this.committed) this.cursor = this.committed
  }

  async reset(options: { to?: number } = {}): Promise<void> {
    await this.remote.call({ op: 'consumerReset', name: this.name, to: options.to ?? null })
    this.committed = options.to ?? 0
    this.cursor = this.committed
    this.generation++
  }

  async delete(): Promise<void> {
    await this.remote.call({ op: 'consumerDelete', name: this.name })
  }
}

/** The daemon is there but busy: its listen queue is full (EAGAIN) or it serves all the connections it takes (BUSY). */
function busy(error: unknown): boolean {
  if (!(error instanceof LogError)) return false
  return error.code === 'BUSY' || (error.details.cause as NodeJS.ErrnoException | undefined)?.code === 'EAGAIN'
}

function toError(body: unknown): LogError {
  const error = (body ?? {}) as { code?: string, message?: string, details?: Record<string, unknown> }
  const code = (typeof error.code === 'string' ? error.code : 'IO') as LogErrorCode
  return new LogError(code, error.message ?? 'the daemon reported an error', error.details ?? {})
}

/** Connects to a daemon's socket: a client with the in-process log's verbs. */
export function connect(socketPath: string, options: ConnectOptions = {}): Promise<RemoteLog> {
  return RemoteLog.open(socketPath, options)
}
