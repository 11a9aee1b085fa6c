// Durable consumers: named positions in a log, for read models derived in user code. A consumer's
// position is the first local position not yet processed; commit(position) records that every
// event up to and including `position` is processed. Positions live in DIR/consumers/NAME, each
// written atomically (temp file, fsync, rename, fsync directory), so a crash leaves the old
// position or the new one. Delivery is at-least-once: events after the last commit come again
// after a restart. Exactly-once read models keep the position with their own state instead
// (docs/read-models.md).

import path from 'node:path'
import { LogError, isNoSpace } from './errors.js'
import type { LogEvent } from './reader.js'
import { writeFileAtomically } from './replica.js'
import { createDirectoryDurably, type Storage } from './storage.js'

export interface ConsumerOptions {
  /** Where a new consumer starts: 'earliest' (default), 'latest' (the current end) or a local position. Ignored when it exists. */
  startAt?: 'earliest' | 'latest' | number
}

export interface ConsumerInfo {
  name: string
  /** The first local position not yet committed. */
  position: number
  /** Events after it. */
  lag: number
  updatedMs: number
}

export interface ConsumerHost {
  directory: string
  storage: Storage
  length(): number
  read(from: number, to: number): AsyncIterable<LogEvent>
  waitForGrowth(length: number, signal: AbortSignal | undefined): Promise<void>
  checkOpen(): void
  /** The log's clock (milliseconds). */
  now(): number
}

/** Events per batch by default, and at most. */
export const CONSUMER_BATCH_EVENTS_DEFAULT = 1000
export const CONSUMER_BATCH_EVENTS_MAX = 100_000

const NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$/

function consumerPath(host: ConsumerHost, name: string): string {
  return path.join(host.directory, 'consumers', name)
}

interface Stored { name: string, position: number, updatedMs: number }

function load(storage: Storage, file: string, name: string): Stored | undefined {
  let text: string
  try {
    text = storage.readFileSync(file).toString('utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new LogError('IO', `cannot read consumer ${name}: ${(error as Error).message}`, { path: file, cause: error })
  }
  let stored: unknown
  try {
    stored = JSON.parse(text)
  } catch {
    stored = undefined
  }
  const value = stored as Partial<Stored> | undefined
  if (value === undefined || value.name !== name || !Number.isSafeInteger(value.position) || (value.position as number) < 0) {
    throw new LogError('CORRUPT', `consumer file ${file} is damaged; delete it or reset the consumer`, { path: file })
  }
  return { name, position: value.position as number, updatedMs: value.updatedMs ?? 0 }
}

export class Consumer {
  private cursor: number
  private committed: number
  private writing: Promise<void> = Promise.resolve()
  private deleted = false

  /** Use log.consumer(). */
  constructor(private readonly host: ConsumerHost, readonly name: string, position: number) {
    this.committed = position
    this.cursor = position
  }

  /** The first local position not yet committed. */
  get position(): number {
    return this.committed
  }

  get isDeleted(): boolean {
    return this.deleted
  }

  /** Events after the committed position. */
  get lag(): number {
    return Math.max(0, this.host.length() - this.committed)
  }

  /**
   * Arrays of at most `max` events, from the committed position (or where the previous batches
   * call stopped) on; waits for new events when caught up; ends when `signal` aborts.
   */
  async *batches(options: { max?: number, signal?: AbortSignal } = {}): AsyncGenerator<LogEvent[]> {
    const max = options.max ?? CONSUMER_BATCH_EVENTS_DEFAULT
    if (!Number.isSafeInteger(max) || max < 1 || max > CONSUMER_BATCH_EVENTS_MAX) {
      throw new LogError('INVALID_ARGUMENT', `batches: max must be 1 to ${CONSUMER_BATCH_EVENTS_MAX}`)
    }
    const signal = options.signal
    while (signal?.aborted !== true) {
      this.check()
      const end = Math.min(this.host.length(), this.cursor + max)
      if (end > this.cursor) {
        const batch: LogEvent[] = []
        for await (const event of this.host.read(this.cursor, end)) batch.push(event)
        this.cursor = end
        yield batch
        continue
      }
      await this.host.waitForGrowth(this.cursor, signal)
    }
  }

  /** Records that every event up to and including local position `position` is processed. */
  commit(position: number): Promise<void> {
    this.check()
    if (!Number.isSafeInteger(position) || position < -1 || position >= this.host.length()) {
      throw new LogError('INVALID_ARGUMENT', `consumer ${this.name}: commit(${String(position)}) is not a position of this log (length ${this.host.length()})`)
    }
    return this.store(position + 1)
  }

  /** Moves the position (and the next batches) to local position `to` (default 0: rebuild from zero). */
  reset(options: { to?: number } = {}): Promise<void> {
    this.check()
    const to = options.to ?? 0
    if (!Number.isSafeInteger(to) || to < 0 || to > this.host.length()) {
      throw new LogError('INVALID_ARGUMENT', `consumer ${this.name}: reset to ${String(to)} is outside 0..${this.host.length()}`)
    }
    this.cursor = to
    return this.store(to, true)
  }

  /** Removes the consumer and its stored position. */
  async delete(): Promise<void> {
    this.check()
    await this.writing
    this.deleted = true
    this.host.storage.rmSync(consumerPath(this.host, this.name), true)
  }

  private check(): void {
    this.host.checkOpen()
    if (this.deleted) throw new LogError('INVALID_ARGUMENT', `consumer ${this.name} was deleted`)
  }

  private store(position: number, allowBackwards = false): Promise<void> {
    const run = this.writing.then(() => {
      if (!allowBackwards && position < this.committed) return // an older commit arriving late
      const directory = path.join(this.host.directory, 'consumers')
      const body: Stored = { name: this.name, position, updatedMs: this.host.now() }
      try {
        createDirectoryDurably(this.host.storage, directory)
        writeFileAtomically(this.host.storage, directory, consumerPath(this.host, this.name), Buffer.from(JSON.stringify(body) + '\n'))
      } catch (error) {
        throw new LogError(isNoSpace(error) ? 'NO_SPACE' : 'IO', `cannot store consumer ${this.name}: ${(error as Error).message}`, { cause: error })
      }
      this.committed = position
      if (this.cursor < position) this.cursor = position // batches never go back behind a commit
    })
    this.writing = run.catch(() => undefined)
    return run
  }
}

export function openConsumer(host: ConsumerHost, name: string, options: ConsumerOptions): Consumer {
  if (typeof name !== 'string' || !NAME.test(name)) throw new LogError('INVALID_ARGUMENT', `consumer name must be 1 to 64 of A-Z a-z 0-9 _ . -, got ${JSON.stringify(name)}`)
  const stored = load(host.storage, consumerPath(host, name), name)
  if (stored !== undefined) return new Consumer(host, name, Math.min(stored.position, host.length()))
  const startAt = options.startAt ?? 'earliest'
  let position: number
  if (startAt === 'earliest') position = 0
  else if (startAt === 'latest') position = host.length()
  else if (Number.isSafeInteger(startAt) && startAt >= 0 && startAt <= host.length()) position = startAt
  else throw new LogError('INVALID_ARGUMENT', `consumer ${name}: startAt must be 'earliest', 'latest' or a position 0..${host.length()}`)
  // Stored at once: a 'latest' consumer must not skip what is appended before its first commit.
  const directory = path.join(host.directory, 'consumers')
  createDirectoryDurably(host.storage, directory)
  writeFileAtomically(host.storage, directory, consumerPath(host, name), Buffer.from(JSON.stringify({ name, position, updatedMs: host.now() }) + '\n'))
  return new Consumer(host, name, position)
}

export function listConsumers(host: ConsumerHost): ConsumerInfo[] {
  const directory = path.join(host.directory, 'consumers')
  if (!host.storage.existsSync(directory)) return []
  return host.storage.readdirSync(directory).filter((name) => NAME.test(name)).sort().flatMap((name) => {
    const stored = load(host.storage, path.join(directory, name), name)
    return stored === undefined ? [] : [{ name, position: stored.position, lag: Math.max(0, host.length() - stored.position), updatedMs: stored.updatedMs }]
  })
}
