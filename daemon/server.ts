// The local API server: a Unix domain socket through which local processes use the daemon's logs
// (docs/local-api.md). Requests are pipelined (matched by id); an append is answered only once it
// is durable per the log's mode; reads and tails stream in chunks with a credit window, so a slow
// client holds at most STREAM_WINDOW_CHUNKS chunks of memory. A client that sends garbage (a
// frame over the bound, bytes that are not CBOR, a frame without id and op) gets an error frame
// and is disconnected; other clients are not affected.

import fs from 'node:fs'
import net from 'node:net'
import { LogError, type DamagedRange, type Log, type LogEvent } from '../core/index.js'
import type { SyncHandle } from '../sync/index.js'
import { diskUse } from './disk-use.js'
import { FRAME_BYTES_MAX, FrameError, FrameReader, encodeFrame } from './frames.js'

export interface ServedLog {
  name: string
  log: Log
  sync: SyncHandle | undefined
}

/** Events per streamed chunk, at most. */
export const STREAM_CHUNK_EVENTS_MAX = 1000
/** Payload bytes per streamed chunk, about (one event may exceed it). */
export const STREAM_CHUNK_BYTES_MAX = 1 << 20
/** Chunks sent ahead of the client's credit. */
export const STREAM_WINDOW_CHUNKS = 4
/** Requests of one connection being served at once, at most; further frames wait unread. */
export const CONNECTION_REQUESTS_MAX = 4096

export type Logger = (level: 'info' | 'warning' | 'error', message: string) => void

interface CaughtUp {
  pending: number
  notify: (at: number) => void
}

interface Stream {
  credit: number
  wake: (() => void) | null
  abort: AbortController
}

export class LocalApiServer {
  private readonly server: net.Server
  private readonly connections = new Set<net.Socket>()

  constructor(private readonly logs: Map<string, ServedLog>, private readonly socketPath: string,
    private readonly logger: Logger, private readonly frameBytesMax = FRAME_BYTES_MAX) {
    this.server = net.createServer((socket) => this.accept(socket))
  }

  async listen(): Promise<void> {
    await removeStaleSocket(this.socketPath)
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.socketPath, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    fs.chmodSync(this.socketPath, 0o660)
  }

  /** Stops accepting, lets requests in flight finish for up to `graceMs`, then closes every connection. */
  async close(graceMs = 2000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const socket of this.connections) socket.end()
    const deadline = Date.now() + graceMs
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    for (const socket of this.connections) socket.destroy()
    await closed
    fs.rmSync(this.socketPath, { force: true })
  }

  private accept(socket: net.Socket): void {
    this.connections.add(socket)
    const reader = new FrameReader(this.frameBytesMax)
    const streams = new Map<number, Stream>()
    const session = { selected: this.defaultLog(), inFlight: 0, backlog: [] as Record<string, unknown>[] }
    // Backpressure both ways: a client that does not read its answers stops being read, and one
    // with CONNECTION_REQUESTS_MAX requests in service stops being read until one completes.
    let writeBlocked = false
    const updateReading = (): void => {
      if (socket.destroyed) return
      if (writeBlocked || session.backlog.length > 0) socket.pause()
      else socket.resume()
    }
    const send = (value: unknown): boolean => {
      if (socket.destroyed) return false
      const ok = socket.write(encodeFrame(value))
      if (!ok && !writeBlocked) {
        writeBlocked = true
        updateReading()
        socket.once('drain', () => {
          writeBlocked = false
          updateReading()
        })
      }
      return ok
    }
    const fail = (message: string): void => {
      send({ id: 0, ok: false, error: { code: 'INVALID_ARGUMENT', message } })
      this.logger('warning', `local API: disconnected a client: ${message}`)
      socket.end()
      socket.destroySoon()
    }
    const run = (frame: Record<string, unknown>): void => {
      session.inFlight++
      this.handle(frame, session, streams, send, socket).catch((error: unknown) => {
        send({ id: frame['id'], ok: false, error: errorBody(error) })
      }).finally(() => {
        session.inFlight--
        const next = session.backlog.shift()
        if (next !== undefined) run(next)
        updateReading()
      })
    }
    socket.on('data', (chunk: Buffer) => {
      let frames: Record<string, unknown>[]
      try {
        frames = reader.push(chunk)
      } catch (error) {
        fail(error instanceof FrameError ? error.message : String(error))
        return
      }
      for (const frame of frames) {
        if (!Number.isSafeInteger(frame['id']) || (frame['id'] as number) <= 0 || typeof frame['op'] !== 'string') {
          fail('a frame needs a positive integer id and a string op')
          return
        }
        if (frame['op'] === 'more' || frame['op'] === 'cancel') {
          if (frame['op'] === 'cancel') {
            const waiting = session.backlog.findIndex((queued) => queued['id'] === frame['id'])
            if (waiting >= 0) session.backlog.splice(waiting, 1) // cancelled before it started
          }
          const stream = streams.get(frame['id'] as number)
          if (stream !== undefined) {
            if (frame['op'] === 'more') stream.credit++
            else stream.abort.abort()
            stream.wake?.()
          }
          continue
        }
        if (session.inFlight >= CONNECTION_REQUESTS_MAX) {
          // Held until a request completes; reading stops meanwhile, so at most one read's frames wait.
          session.backlog.push(frame)
          updateReading()
          continue
        }
        run(frame)
      }
    })
    socket.on('error', () => undefined)
    socket.on('close', () => {
      this.connections.delete(socket)
      for (const stream of streams.values()) {
        stream.abort.abort()
        stream.wake?.()
      }
    })
  }

  private defaultLog(): ServedLog | undefined {
    if (this.logs.size === 1) return [...this.logs.values()][0]
    return this.logs.get('main')
  }

  private async handle(frame: Record<string, unknown>, session: { selected: ServedLog | undefined },
    streams: Map<number, Stream>, send: (value: unknown) => boolean, socket: net.Socket): Promise<void> {
    const id = frame['id'] as number
    const op = frame['op'] as string
    if (op === 'hello') {
      const name = frame['log']
      if (name !== undefined && name !== null) {
        if (typeof name !== 'string' || !this.logs.has(name)) {
          throw new LogError('INVALID_ARGUMENT', `no log named ${JSON.stringify(name)} here; logs: ${[...this.logs.keys()].join(', ')}`)
        }
        session.selected = this.logs.get(name)
      }
      if (session.selected === undefined) throw new LogError('INVALID_ARGUMENT', `choose a log: ${[...this.logs.keys()].join(', ')}`)
      const { log } = session.selected
      send({ id, ok: true, result: { log: session.selected.name, logs: [...this.logs.keys()], replicaId: log.replicaId, maxEventBytes: log.maxEventBytes } })
      return
    }
    const served = session.selected
    if (served === undefined) throw new LogError('INVALID_ARGUMENT', 'send hello with a log name first')
    const log = served.log
    switch (op) {
      case 'append': {
        const result = await log.append(bytes(frame['payload'], 'payload'))
        send({ id, ok: true, result })
        return
      }
      case 'appendBatch': {
        const payloads = frame['payloads']
        if (!Array.isArray(payloads)) throw new LogError('INVALID_ARGUMENT', 'appendBatch: payloads must be a list of byte strings')
        const range = await log.appendBatchRange(payloads.map((p, i) => bytes(p, `payload ${i}`)))
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
        send({ id, ok: true, result: {
          log: served.name, replicaId: log.replicaId, length: log.length, durableLength: log.durableLength, vector: log.versionVector(),
          quarantined: log.quarantined(), sync: served.sync?.status() ?? null, directory: log.directory, ...diskUse(log.directory),
          consumers: log.consumers(), security: log.securityStatus(), damage: log.damage(), noSpace: log.noSpace,
        } })
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
      case 'verify':
        send({ id, ok: true, result: await log.verify() })
        return
      case 'read':
      case 'tail': {
        const from = position(frame['from'], 'from', 0)
        const stream: Stream = { credit: STREAM_WINDOW_CHUNKS, wake: null, abort: new AbortController() }
        streams.set(id, stream)
        try {
          const caughtUp: CaughtUp = { pending: -1, notify: () => undefined }
          // A damaged range the stream goes around is said in its own frame (the client's onDamage).
          const onDamage = (range: DamagedRange): void => { send({ id, damage: range }) }
          const events = op === 'read'
            ? log.read({ from, to: position(frame['to'], 'to', log.length), onDamage })
            : log.tail({ from, signal: stream.abort.signal, onCaughtUp: (at) => caughtUp.notify(at), onDamage })
          await this.stream(id, events, stream, send, socket, op === 'tail', caughtUp)
        } finally {
          streams.delete(id)
        }
        return
      }
      default:
        throw new LogError('INVALID_ARGUMENT', `unknown op ${JSON.stringify(op)}`)
    }
  }

  /** Sends events in chunks; waits for credit when the window is used up, and for the socket to drain. */
  private async stream(id: number, events: AsyncIterable<LogEvent>, stream: Stream, send: (value: unknown) => boolean,
    socket: net.Socket, tailing: boolean, caughtUp: CaughtUp = { pending: -1, notify: () => undefined }): Promise<void> {
    let chunk: unknown[] = []
    // The tail reached the head: the client hears it after the events before it.
    caughtUp.notify = (at) => {
      if (chunk.length === 0) send({ id, caughtUp: at })
      else caughtUp.pending = at
    }
    let bytes = 0
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return
      while (stream.credit <= 0 && !stream.abort.signal.aborted) await new Promise<void>((resolve) => { stream.wake = resolve })
      stream.wake = null
      stream.credit--
      if (!send({ id, events: chunk }) && !socket.destroyed) {
        // Drained, or gone: a destroyed socket never drains.
        await new Promise<void>((resolve) => {
          const done = (): void => {
            socket.off('drain', done)
            socket.off('close', done)
            resolve()
          }
          socket.once('drain', done)
          socket.once('close', done)
        })
      }
      chunk = []
      bytes = 0
    }
    const iterator = events[Symbol.asyncIterator]()
    let idle: Promise<'idle'> | null = null
    try {
      for (;;) {
        const next = iterator.next()
        let result: IteratorResult<LogEvent>
        if (tailing && chunk.length > 0) {
          // A tail that waits for new events sends what it gathered first (one timer per chunk).
          idle ??= new Promise<'idle'>((resolve) => setImmediate(() => resolve('idle')))
          const ready = await Promise.race([next, idle])
          if (ready === 'idle') {
            idle = null
            await flush()
            if (caughtUp.pending >= 0) {
              send({ id, caughtUp: caughtUp.pending })
              caughtUp.pending = -1
            }
            result = await next
          } else {
            result = ready
          }
        } else {
          result = await next
        }
        if (result.done === true || stream.abort.signal.aborted || socket.destroyed) break
        const event = result.value
        chunk.push([event.localPos, event.origin, event.pos, event.time, event.payload])
        bytes += event.payload.length
        if (chunk.length >= STREAM_CHUNK_EVENTS_MAX || bytes >= STREAM_CHUNK_BYTES_MAX) {
          await flush()
          idle = null
        }
      }
      await flush()
    } finally {
      await iterator.return?.()
    }
    send({ id, ok: true, result: { end: true } })
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
