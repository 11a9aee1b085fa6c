// Group commit: writes the composed bytes of the head cache to the segment file in whole pages
// and, when asked, fdatasyncs them. One flush runs at a time; appends that arrive meanwhile join
// the next one, so 128 concurrent durable appenders share one fdatasync.
//
// Faults expected: a failed write or fdatasync. The page cache may then hold data the disk does
// not, and a retry could report success for data that is lost (the "fsyncgate" lesson), so the
// flusher never retries a failed fdatasync of bytes it no longer holds: it records the failure,
// rejects every waiter with IO, and the log turns read-only. Reopening the log recovers from what
// is really on disk.
//
// A full disk (ENOSPC, EDQUOT) is not such a failure: a write that found no space wrote nothing
// the log relies on, and the bytes are still in the cache. The flusher *stalls* instead: waiters
// keep waiting, `noSpace` says why, the host rejects new work with NO_SPACE and asks for a retry
// now and then (`schedule`), and the next round writes the same pages again from the cache (after
// a failed fdatasync, everything since the last good one, since the page cache may have dropped
// it). The first round that gets through ends the stall. Only when the bytes to write again have
// left the cache is a full disk a failure like any other.

import { assert } from './assert.js'
import { LogError, isNoSpace } from './errors.js'
import { PAGE_BYTES, alignDown, alignUp } from './format.js'
import type { HeadCache } from './head-cache.js'
import { SEAL_JOBS_MAX } from './seal-pipeline.js'
import type { Storage } from './storage.js'
import { writeAll } from './write-all.js'

/** A run of pages clear of the fields still to be hashed is written before the settle when it is at least this long. */
const EARLY_WRITE_MIN_BYTES = 16 << 10

/** A point of the log at a batch boundary. */
export interface CommitPoint {
  /** Events committed (complete batches). */
  count: number
  /** Global offset just past the last committed record. */
  end: number
}

interface Waiter {
  count: number
  resolve: () => void
  reject: (error: LogError) => void
}

function writeAsync(storage: Storage, fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    writeAll(storage, fd, buffer, offset, length, position, PAGE_BYTES, (error) => (error === null ? resolve() : reject(error)))
  })
}


function fdatasyncAsync(storage: Storage, fd: number): Promise<void> {
  return new Promise((resolve, reject) => storage.fdatasync(fd, (error) => (error === null ? resolve() : reject(error))))
}

export interface FlusherHost {
  /** The committed point now (read at the start of each flush round). */
  commitPoint(): CommitPoint
  /** Called after an fdatasync made `point` durable. */
  onDurable(point: CommitPoint): void
  /** How long that fdatasync took, in seconds (for metrics). */
  onSynced(seconds: number): void
  /** The flusher stalled on a full disk (called once per stall). */
  onNoSpace(error: LogError): void
  /** A round got through after a stall. */
  onSpace(): void
}

export class Flusher {
  /** Global offset up to which composed bytes are written. */
  writtenEnd: number
  /** Events known durable (the watermark stored in new records). */
  durableCount: number
  /** Global offset up to which written bytes are known synced (what a crash cannot take). */
  syncedEnd: number
  failure: LogError | null = null
  /** Set while the flusher is stalled on a full disk (see the top of this file); cleared by the next round that gets through. */
  noSpace: LogError | null = null
  private running: Promise<void> | null = null
  private syncWanted = false
  private scheduled = false
  /** Set when the log closes or crashes: no flush starts or writes after it (the descriptor is closed, and its number may be reused). */
  private stopped = false
  private readonly waiters: Waiter[] = []
  /** Scratch for `writePages`: the fields still to be hashed, and the runs of pages written first. */
  private readonly fields = new Float64Array(4 * SEAL_JOBS_MAX)
  private readonly runs = new Float64Array(4 * SEAL_JOBS_MAX + 2)
  private waiterHead = 0

  constructor(
    private readonly storage: Storage,
    private readonly cache: HeadCache,
    public fd: number,
    private readonly host: FlusherHost,
    end: number,
    count: number,
  ) {
    this.writtenEnd = end
    this.durableCount = count
    this.syncedEnd = end
  }

  /** No flush starts after this; one in flight ends after its current write or sync. */
  stop(): void {
    this.stopped = true
  }

  /** Resolves when no flush is running (one may have failed). */
  async settled(): Promise<void> {
    while (this.running !== null) await this.running.catch(() => undefined)
  }

  /** Resolves once `count` events are durable. */
  waitDurable(count: number): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure)
    if (this.durableCount >= count) return Promise.resolve()
    return new Promise((resolve, reject) => {
      this.waiters.push({ count, resolve, reject })
      this.schedule(true)
    })
  }

  /** Starts a flush on the next turn of the event loop, so appends of this turn share it. */
  schedule(sync: boolean): void {
    this.syncWanted ||= sync
    if (this.scheduled || this.running !== null) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      if (this.running === null && !this.stopped) this.start()
    })
  }

  /** Writes (and with `sync`, syncs) everything composed so far; resolves with nothing in flight. */
  async flushAll(sync: boolean): Promise<void> {
    for (;;) {
      if (this.failure !== null) throw this.failure
      if (this.stopped) throw new LogError('CLOSED', 'the log was closed (or crashed) before this flush')
      const point = this.host.commitPoint()
      const pending = this.cache.composedEnd > this.writtenEnd || (sync && this.durableCount < point.count)
      if (this.running === null && !pending) return
      if (this.running === null) {
        this.syncWanted ||= sync
        this.start()
      } else if (pending) {
        this.syncWanted ||= sync
      }
      await this.running
      if (this.noSpace !== null && this.failure === null) throw this.noSpace
    }
  }

  /** Rebinds to a new segment: everything before `end` is durable. */
  resetTo(fd: number, end: number): void {
    assert(this.running === null, 'no flush in flight while rolling')
    this.fd = fd
    this.writtenEnd = end
    this.syncedEnd = end
  }

  private start(): void {
    assert(this.running === null, 'one flush at a time')
    // The loop starts a microtask later, so `running` is set before it can clear it.
    this.running = Promise.resolve().then(() => this.loop())
  }

  /**
   * Flush rounds until nothing is left. `running` is cleared in the same synchronous step as the
   * last check for work, so a request arriving afterwards always starts a new loop (no lost wake-up).
   */
  private async loop(): Promise<void> {
    let syncing = false
    try {
      for (;;) {
        if (this.stopped) {
          this.running = null
          return
        }
        const point = this.host.commitPoint()
        const sync = this.syncWanted
        this.syncWanted = false
        const composedEnd = this.cache.composedEnd
        if (composedEnd > this.writtenEnd) {
          const start = alignDown(this.writtenEnd, PAGE_BYTES)
          const stop = alignUp(composedEnd, PAGE_BYTES)
          assert(start >= this.cache.windowStart, 'unwritten bytes are still in the cache')
          await this.writePages(start, stop)
          this.writtenEnd = composedEnd
        }
        if (sync && this.durableCount < point.count) {
          const written = this.writtenEnd
          syncing = true
          const started = performance.now()
          await fdatasyncAsync(this.storage, this.fd)
          this.host.onSynced((performance.now() - started) / 1000)
          syncing = false
          this.syncedEnd = written
          this.durableCount = point.count
          this.releaseWaiters()
          this.host.onDurable(point)
        }
        if (this.noSpace !== null) {
          this.noSpace = null
          this.host.onSpace()
        }
        if (!(this.cache.composedEnd > this.writtenEnd || (this.syncWanted && this.durableCount < this.host.commitPoint().count))) {
          this.running = null
          return
        }
      }
    } catch (error) {
      this.running = null
      if (isNoSpace(error) && this.stall(error, syncing)) return
      this.fail(error)
    }
  }

  /**
   * A round found the disk full. After a failed write nothing moved (`writtenEnd` advances only
   * after a write); after a failed fdatasync the page cache may have dropped what was written
   * since the last good one, so all of that is written again, if the cache still holds it.
   * Returns false when it does not: then the stall is a failure.
   */
  private stall(error: unknown, syncing: boolean): boolean {
    if (syncing) {
      if (alignDown(this.syncedEnd, PAGE_BYTES) < this.cache.windowStart) return false
      this.writtenEnd = this.syncedEnd
    }
    if (this.noSpace !== null) return true
    this.noSpace = new LogError('NO_SPACE',
      `no space left on the file system of segment ${this.cache.segment.name} (${(error as Error).message}): appends and merges are refused ` +
      'until space is freed; what was appended before stays in memory, is written when space returns, and nothing was lost',
      { segment: this.cache.segment.name, cause: error })
    this.host.onNoSpace(this.noSpace)
    return true
  }

  /** Rejects every waiter with `error` (the log closed while they waited on a full disk). */
  rejectWaiters(error: LogError): void {
    while (this.waiterHead < this.waiters.length) (this.waiters[this.waiterHead++] as Waiter).reject(error)
    this.waiters.length = 0
    this.waiterHead = 0
  }

  /**
   * Writes the cache's pages [start, stop) (global offsets, page-aligned), settling the records
   * whose links are still to be hashed (core/seal-pipeline.ts). With durability 'fsync' the cache
   * names the fields settle will write (each such record's checksum and link): the pages clear of
   * them go first, so that the disk takes them while settle hashes on this thread, and the pages
   * holding them follow. A crash in between leaves an unsynced record torn, as any crash
   * before the fdatasync may.
   */
  private async writePages(start: number, stop: number): Promise<void> {
    const runs = this.earlyRuns(start, stop)
    if (runs === 0) {
      this.cache.settle()
      return this.writeSpan(start, stop)
    }
    // Every write issued ends before the round does, whatever fails (none may outlive a failure
    // and meet a closed descriptor, or reject unheard).
    const writes: Promise<void>[] = []
    let failure: { error: unknown } | null = null
    try {
      for (let i = 0; i < runs; i += 2) writes.push(this.writeSpan(this.runs[i]!, this.runs[i + 1]!))
      this.cache.settle()
      let at = start
      for (let i = 0; i < runs; i += 2) {
        if (this.runs[i]! > at) writes.push(this.writeSpan(at, this.runs[i]!))
        at = this.runs[i + 1]!
      }
      if (stop > at) writes.push(this.writeSpan(at, stop))
    } catch (error) {
      failure = { error }
    }
    const results = await Promise.allSettled(writes)
    if (failure !== null) throw failure.error
    for (const result of results) if (result.status === 'rejected') throw result.reason
  }

  /**
   * Fills `runs` with the runs of pages in [start, stop) clear of the fields settle has still to
   * write, each at least EARLY_WRITE_MIN_BYTES; returns how many numbers (two per run). None when
   * the cache names no field: nothing is pending, or a worker hashes (whose large writes this
   * split would slow down).
   */
  private earlyRuns(start: number, stop: number): number {
    const used = this.cache.pendingFields(this.fields)
    if (used === 0) return 0
    let runs = 0
    let clean = start
    for (let i = 0; i <= used; i += 2) {
      const dirtyFrom = i < used ? Math.min(alignDown(this.cache.windowStart + this.fields[i]!, PAGE_BYTES), stop) : stop
      if (dirtyFrom - clean >= EARLY_WRITE_MIN_BYTES) {
        this.runs[runs++] = clean
        this.runs[runs++] = dirtyFrom
      }
      if (i < used) clean = Math.max(clean, alignUp(this.cache.windowStart + this.fields[i + 1]!, PAGE_BYTES))
    }
    return runs
  }

  private writeSpan(start: number, stop: number): Promise<void> {
    return writeAsync(this.storage, this.fd, this.cache.memory, this.cache.at(start), stop - start, start - this.cache.segment.start)
  }

  private releaseWaiters(): void {
    while (this.waiterHead < this.waiters.length) {
      const waiter = this.waiters[this.waiterHead] as Waiter
      if (waiter.count > this.durableCount) break
      this.waiterHead++
      waiter.resolve()
    }
    if (this.waiterHead > 1024 && this.waiterHead * 2 > this.waiters.length) {
      this.waiters.splice(0, this.waiterHead)
      this.waiterHead = 0
    }
  }

  fail(error: unknown): void {
    if (this.failure === null) {
      this.failure = error instanceof LogError ? error : new LogError('IO',
        `write to segment ${this.cache.segment.name} failed (${(error as Error).message}); the log is now read-only: ` +
        'nothing after the last acknowledged event is known durable. Close it and reopen to recover',
        { segment: this.cache.segment.name, cause: error })
    }
    while (this.waiterHead < this.waiters.length) (this.waiters[this.waiterHead++] as Waiter).reject(this.failure)
    this.waiters.length = 0
    this.waiterHead = 0
  }
}
