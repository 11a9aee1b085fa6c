// Chain hashes of large own records, computed on a second thread while the main thread composes
// the next ones. SHA-256 (about 1.1 GB/s here with SHA-NI, the fastest hash node:crypto has) would
// otherwise take as long as the rest of an append of 128-byte events; on a second core it runs
// beside it. The worker reads record bodies from the head cache (shared memory, allocated at open)
// and writes the prev and hash fields of each record's link. The record checksum covers the link;
// the main thread feeds it everything before those fields when it closes the record, while the
// worker hashes, and finishes it with the two hashes when it settles (the worker only hashes: on
// two cores, the composing and the checksum on one balance the SHA-256 on the other).
//
// Protocol (one producer, one consumer; per record, only the checksum stream allocates). Shared
// Int32 `control` slots: POSTED and DONE count records (they wrap), PROGRESS is how far the open
// record's body is composed, and the WAITING flags say who sleeps in Atomics.wait. Per record slot: body start,
// first, count in `jobs`, and the link offset in `links` (-1 while the record is being composed).
// The worker hashes a record while the main thread composes it (`open`, `progress`, `close`), so
// a batch's hash is ready about when its last event is copied. Each side stores, then reads the
// other's WAITING flag, and wakes it only when it sleeps (sequentially consistent atomics make
// this safe: one of the two always sees the other's store). Nothing the worker writes reaches the
// disk before `settle()`: the flusher, readers of the cache and every move of the window settle.
//
// With durability 'fsync' there is no worker (`hashOn` 'flusher'): the same records are hashed in
// `settle`, which the flusher calls after it has started writing the pages that hold none of the
// fields still to be written (`pendingFields`), so the hash runs while the disk takes them. There
// a large record is composed as two (core/composer.ts `splitsTail`): all its events but the last,
// checksummed as composed, then the last one with the link covering both, so that the fields
// still to be written sit in one small record at the end and the second write is a page or two.

import { Worker } from 'node:worker_threads'
import { assert } from './assert.js'
import {
  CHAIN_DOMAIN, CHAIN_HASH_BYTES, CHAIN_PREFIX_BYTES, RECORD_HEADER_BYTES, RECORD_OFFSET_CHECKSUM, RECORD_OFFSET_LENGTH, REPLICA_ID_BYTES,
  SEAL_OFFSET_HASH, SEAL_OFFSET_PREV,
} from './format.js'
import type { Checksum, ChecksumStream } from './checksum.js'
import { ZERO_CHAIN, startChainHash } from './seal.js'

/** Records in flight to the worker; a full ring settles before the next one. */
export const SEAL_JOBS_MAX = 1024
/**
 * Own records with a body at least this large go through the pipeline (the worker, or settle with
 * 'flusher'); smaller ones are hashed inline while composed (a handoff would cost more, and their
 * pages would be too few to write around).
 */
export const SEAL_ASYNC_MIN_BYTES = 64 << 10
/** The composer reports progress on an open record every this many bytes. */
export const SEAL_PROGRESS_BYTES = 16 << 10

const POSTED = 0
const DONE = 1
const STOP = 2
const PROGRESS = 3
const WORKER_WAITING = 4
const MAIN_WAITING = 5
const WAKE = 6
const READY = 7
const DEAD = 8
const CONTROL_SLOTS = 9
const JOB_FIELDS = 5
/**
 * Polls before the main thread sleeps in settle (about a millisecond): the worker is usually done
 * by then, and each Atomics.wait on the main thread allocates (bench: heap bytes per event).
 */
const SPINS = 200_000
/** How long the idle worker polls before it sleeps: a wake-up costs system calls on both sides and tens of µs. */
const WORKER_SPIN_MS = 1
/** A worker that finishes nothing for this long is taken for dead: settle hashes its records inline. */
const SEAL_STALL_MS = 2_000

// The worker, as plain JavaScript evaluated in its own thread (no module resolution, no loaders).
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads')
const crypto = require('node:crypto')
const { buffer, byteOffset, byteLength, control, jobs, links, prevSlot, origin, jobsMax, prefixBytes, hashBytes, offsetPrev, offsetHash, domain } = workerData
const memory = Buffer.from(buffer, byteOffset, byteLength)
const prefix = Buffer.alloc(prefixBytes)
prefix.write(domain, 0, 'latin1')
prefix.set(origin, 8)
let prev = Buffer.alloc(hashBytes)
let done = 0
let slot = 0
let progressSeen = 0
const posted = () => Atomics.load(control, ${POSTED}) !== done
const moved = () => Atomics.load(control, ${PROGRESS}) !== progressSeen || Atomics.load(links, slot) >= 0
function waitFor(ready) {
  const until = performance.now() + ${WORKER_SPIN_MS}
  do {
    for (let i = 0; i < 64; i++) if (ready()) return true
  } while (performance.now() < until)
  Atomics.store(control, ${WORKER_WAITING}, 1)
  for (;;) {
    const wake = Atomics.load(control, ${WAKE})
    if (ready()) break
    if (Atomics.load(control, ${STOP}) !== 0) return false
    Atomics.wait(control, ${WAKE}, wake, 1000)
  }
  Atomics.store(control, ${WORKER_WAITING}, 0)
  return true
}
function run() {
outer: for (;;) {
  if (!waitFor(posted)) break
  slot = done & (jobsMax - 1)
  const bodyStart = jobs[slot * ${JOB_FIELDS}], first = jobs[slot * ${JOB_FIELDS} + 1], count = jobs[slot * ${JOB_FIELDS} + 2]
  if (jobs[slot * ${JOB_FIELDS} + 3] === 1) prev = Buffer.from(prevSlot)
  prefix.writeUInt32LE(first >>> 0, 24)
  prefix.writeUInt32LE(Math.floor(first / 0x100000000), 28)
  prefix.writeUInt32LE(count, 32)
  prefix.set(prev, 36)
  const hash = crypto.createHash('sha256').update(prefix)
  let hashed = bodyStart
  let linkAt = -1
  for (;;) {
    progressSeen = Atomics.load(control, ${PROGRESS})
    linkAt = Atomics.load(links, slot)
    const end = linkAt >= 0 ? linkAt : progressSeen
    if (end > hashed) { hash.update(memory.subarray(hashed, end)); hashed = end }
    if (linkAt >= 0) break
    if (!waitFor(moved)) break outer
  }
  const digest = hash.digest()
  memory.set(prev, linkAt + offsetPrev)
  memory.set(digest, linkAt + offsetHash)
  prev = digest
  done = (done + 1) | 0
  Atomics.store(control, ${DONE}, done)
  if (Atomics.load(control, ${MAIN_WAITING}) !== 0) Atomics.notify(control, ${DONE})
}
}
function die() {
  Atomics.store(control, ${DEAD}, 1)
  Atomics.notify(control, ${DONE})
}
Atomics.store(control, ${READY}, 1)
try { run() } catch (error) { die(); throw error }
`

/**
 * Hashes own records off the compose path and finishes their checksums in `settle`: on a worker
 * thread (`hashOn` 'worker'; if it cannot start, dies, or stalls, the records it holds are hashed
 * inline and so are all later ones), or in `settle` itself ('flusher').
 */
export class SealPipeline {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4))
  private readonly jobs = new Float64Array(new SharedArrayBuffer(SEAL_JOBS_MAX * JOB_FIELDS * 8))
  private readonly links = new Int32Array(new SharedArrayBuffer(SEAL_JOBS_MAX * 4))
  private readonly prevSlot = new Uint8Array(new SharedArrayBuffer(CHAIN_HASH_BYTES))
  /** Per record slot (worker only): the checksum of the record up to its prev field, fed at close. */
  private readonly partials: (ChecksumStream | null)[] = new Array<ChecksumStream | null>(SEAL_JOBS_MAX).fill(null)
  /** The chain hash of the last record settled (the prev of a record posted right after a ring-full settle). */
  private readonly lastHead = new Uint8Array(CHAIN_HASH_BYTES)
  private worker: Worker | null = null
  /** Records posted and not yet settled (hashed or not). */
  private unsettled = 0
  private posted = 0
  private openSlot = -1
  /** Where the first unsettled record starts (a global log offset, as the caller gave it). */
  private pendingFrom = Infinity
  /** Records handed to the worker since open (for tests and status; does not wrap in practice). */
  recordsPosted = 0
  /** The worker failed (it could not start, died or stalled): records are hashed inline from then on. */
  failed = false

  /**
   * `hashOn` 'worker' hashes on the second thread while records are composed: for appends that
   * come back to back (durability 'interval' or 'none'), where the main thread is the bottleneck.
   * 'flusher' hashes in `settle`, on the main thread, while the flusher writes the record's other
   * pages: for durability 'fsync', where each append waits for its write and fdatasync and the
   * main thread idles meanwhile. There, a second thread only competes with the write for the
   * second core: on the 2-core development VM, nine paired runs of bench scenario 9's fsync case
   * gave a median signed/unsigned ratio of 0.60 with the worker (0.67 when it sleeps at once
   * after each record instead of polling) against 0.79 hashing beside the write.
   */
  constructor(
    private readonly memory: Buffer, private readonly origin: Uint8Array, private readonly checksum: Checksum,
    readonly hashOn: 'worker' | 'flusher',
  ) {
    assert(memory.buffer instanceof SharedArrayBuffer, 'the head cache is shared memory')
    assert((SEAL_JOBS_MAX & (SEAL_JOBS_MAX - 1)) === 0, 'jobs ring is a power of two')
  }

  /** Whether records wait to be settled (a new own record must then go through the worker too, to keep the chain in order). */
  get busy(): boolean {
    return this.unsettled > 0
  }

  /** Whether records from global offset `end` on are settled (nothing pending before it). */
  settledBefore(end: number): boolean {
    return this.unsettled === 0 || end <= this.pendingFrom
  }

  /**
   * Whether a record can be posted. With the worker, the first call starts it (about 30 ms): until
   * it is up, records are hashed inline, so that no append waits for a thread to boot. With
   * 'flusher', always.
   */
  ready(): boolean {
    if (this.hashOn === 'flusher') return true
    if (this.failed) return false
    if (this.worker === null) {
      try {
        this.start()
      } catch {
        this.failed = true
        return false
      }
    }
    return Atomics.load(this.control, READY) === 1 && Atomics.load(this.control, DEAD) === 0
  }

  /**
   * Starts the record at `recordStart` in the cache memory, whose link covers events from
   * `bodyStart` (at global log offset `offset` or after). `prev` is the previous chain hash, or
   * null when it is the hash of the record posted before. With 'flusher', the link may also cover
   * the record just before (composed and checksummed already, core/composer.ts `splitsTail`):
   * `bodyStart` is then that record's body, and the hash skips from its end to this record's body.
   * Call only after `ready()` or while `busy`.
   */
  open(offset: number, recordStart: number, bodyStart: number, first: number, count: number, prev: Uint8Array | null): void {
    assert(this.openSlot === -1, 'one record open at a time')
    assert(bodyStart === recordStart + RECORD_HEADER_BYTES || (this.hashOn === 'flusher' && bodyStart < recordStart),
      'only settle hashes a link over the record before')
    if (this.unsettled === SEAL_JOBS_MAX) this.settle()
    const slot = this.posted & (SEAL_JOBS_MAX - 1)
    const at = slot * JOB_FIELDS
    this.jobs[at] = bodyStart
    this.jobs[at + 1] = first
    this.jobs[at + 2] = count
    this.jobs[at + 3] = prev === null ? 0 : 1
    this.jobs[at + 4] = recordStart
    if (prev !== null) this.prevSlot.set(prev)
    Atomics.store(this.links, slot, -1)
    // Progress restarts at the body: the window may have moved since the last record, to lower indexes.
    Atomics.store(this.control, PROGRESS, bodyStart)
    if (this.unsettled === 0) this.pendingFrom = offset
    this.openSlot = slot
    this.posted = (this.posted + 1) | 0
    this.recordsPosted++
    this.unsettled++
    Atomics.store(this.control, POSTED, this.posted)
    this.wakeWorker()
  }

  /** The open record's body is composed up to `end` (a cache memory index). */
  progress(end: number): void {
    Atomics.store(this.control, PROGRESS, end)
    this.wakeWorker()
  }

  /** The open record is composed; its link starts at `linkAt`. */
  close(linkAt: number): void {
    assert(this.openSlot !== -1, 'a record is open')
    const slot = this.openSlot
    Atomics.store(this.links, slot, linkAt)
    Atomics.store(this.control, PROGRESS, linkAt)
    this.openSlot = -1
    this.wakeWorker()
    if (this.hashOn === 'worker') {
      // The worker writes only the prev and hash fields: everything before them is final.
      const recordStart = this.jobs[slot * JOB_FIELDS + 4]!
      this.partials[slot] = this.checksum.stream().update(this.memory.subarray(recordStart + 8, linkAt + SEAL_OFFSET_PREV))
    }
  }

  /**
   * The bytes `settle` has still to write, as [start, end) memory indexes into `out`, in order:
   * each unsettled record's checksum field and its link. Returns how many numbers it wrote (two
   * per range). With 'flusher', the flusher writes the pages between them while settle hashes.
   */
  pendingFields(out: Float64Array): number {
    assert(this.openSlot === -1, 'no record open while the flusher looks')
    assert(out.length >= 4 * SEAL_JOBS_MAX, 'room for two ranges per record')
    let used = 0
    for (let seq = (this.posted - this.unsettled) | 0; seq !== this.posted; seq = (seq + 1) | 0) {
      const slot = seq & (SEAL_JOBS_MAX - 1)
      const recordStart = this.jobs[slot * JOB_FIELDS + 4]!
      const linkAt = Atomics.load(this.links, slot)
      out[used++] = recordStart + RECORD_OFFSET_CHECKSUM
      out[used++] = recordStart + RECORD_OFFSET_CHECKSUM + 8
      out[used++] = linkAt + SEAL_OFFSET_PREV
      out[used++] = linkAt + SEAL_OFFSET_HASH + CHAIN_HASH_BYTES
    }
    return used
  }

  /**
   * Waits for the worker to finish every posted record and returns the chain hash of the last one
   * (null when nothing was pending). A worker that is gone or stalls for SEAL_STALL_MS has its
   * records hashed here instead.
   */
  settle(): Uint8Array | null {
    if (this.unsettled === 0) return null
    assert(this.openSlot === -1, 'no record open while settling')
    if (this.hashOn === 'flusher') this.hashPending()
    else if (this.waitForWorker()) this.finishChecksums()
    this.unsettled = 0
    this.pendingFrom = Infinity
    const linkAt = Atomics.load(this.links, (this.posted - 1) & (SEAL_JOBS_MAX - 1))
    this.lastHead.set(this.memory.subarray(linkAt + SEAL_OFFSET_HASH, linkAt + SEAL_OFFSET_HASH + CHAIN_HASH_BYTES))
    return new Uint8Array(this.lastHead)
  }

  /**
   * Waits for the worker to finish every posted record; true when it did. One that is gone or
   * stalls has them hashed here, checksums included (false).
   */
  private waitForWorker(): boolean {
    let lastDone = Atomics.load(this.control, DONE)
    let lastProgressMs = Date.now()
    Atomics.store(this.control, MAIN_WAITING, 1)
    for (let spins = 0; ; spins++) {
      const done = Atomics.load(this.control, DONE)
      if (done === this.posted) break
      if (spins < SPINS) continue
      let gone = this.failed || Atomics.load(this.control, DEAD) !== 0
      if (!gone) {
        Atomics.wait(this.control, DONE, done, 10)
        if (done !== lastDone) {
          lastDone = done
          lastProgressMs = Date.now()
        } else {
          gone = Date.now() - lastProgressMs > SEAL_STALL_MS
        }
      }
      if (gone) {
        Atomics.store(this.control, MAIN_WAITING, 0)
        this.hashInline()
        return false
      }
    }
    Atomics.store(this.control, MAIN_WAITING, 0)
    return true
  }

  /** Ends the checksum of each record the worker hashed with its link's prev and hash fields. */
  private finishChecksums(): void {
    for (let seq = (this.posted - this.unsettled) | 0; seq !== this.posted; seq = (seq + 1) | 0) {
      const slot = seq & (SEAL_JOBS_MAX - 1)
      const linkAt = Atomics.load(this.links, slot)
      const recordStart = this.jobs[slot * JOB_FIELDS + 4]!
      const partial = this.partials[slot]!
      this.partials[slot] = null
      const sum = partial.update(this.memory.subarray(linkAt + SEAL_OFFSET_PREV, linkAt + SEAL_OFFSET_HASH + CHAIN_HASH_BYTES)).digest()
      this.memory.writeBigUInt64LE(sum, recordStart + RECORD_OFFSET_CHECKSUM)
    }
  }

  /** The worker is gone: stops it and hashes its records here, and every later one. */
  private hashInline(): void {
    this.failed = true
    void this.stop()
    this.hashPending()
  }

  /**
   * Hashes and checksums every unsettled record on this thread (all of them, from the chain hash
   * before the first: a worker that died may have written some halfway).
   */
  private hashPending(): void {
    let prev: Uint8Array = ZERO_CHAIN
    for (let seq = (this.posted - this.unsettled) | 0, first = true; seq !== this.posted; seq = (seq + 1) | 0, first = false) {
      const slot = seq & (SEAL_JOBS_MAX - 1)
      const at = slot * JOB_FIELDS
      const bodyStart = this.jobs[at]!
      const linkAt = Atomics.load(this.links, slot)
      const recordStart = this.jobs[at + 4]!
      this.partials[slot] = null // a dead worker's records: their checksums are computed whole here
      // A record posted with its prev has it in prevSlot only for the newest such record; the link
      // holds it too (the composer wrote it), so read it there.
      if (this.jobs[at + 3] === 1) prev = new Uint8Array(this.memory.subarray(linkAt + SEAL_OFFSET_PREV, linkAt + SEAL_OFFSET_PREV + CHAIN_HASH_BYTES))
      else if (first) prev = new Uint8Array(this.lastHead)
      const hashing = startChainHash(this.origin, this.jobs[at + 1]!, this.jobs[at + 2]!, prev)
      const ownBody = recordStart + RECORD_HEADER_BYTES
      if (bodyStart !== ownBody) {
        // A split pair: the first record's events, then this one's (its padding and this header skipped).
        const firstStart = bodyStart - RECORD_HEADER_BYTES
        hashing.update(this.memory.subarray(bodyStart, firstStart + this.memory.readUInt32LE(firstStart + RECORD_OFFSET_LENGTH)))
      }
      const hash = hashing.update(this.memory.subarray(ownBody, linkAt)).digest()
      this.memory.set(prev, linkAt + SEAL_OFFSET_PREV)
      this.memory.set(hash, linkAt + SEAL_OFFSET_HASH)
      const length = this.memory.readUInt32LE(recordStart + RECORD_OFFSET_LENGTH)
      this.memory.writeBigUInt64LE(this.checksum(this.memory.subarray(recordStart + 8, recordStart + length)), recordStart + RECORD_OFFSET_CHECKSUM)
      prev = hash
    }
  }

  /** Stops the worker (after `settle`, or dropping what is pending when the log crashes). */
  async stop(): Promise<void> {
    const worker = this.worker
    if (worker === null) return
    this.worker = null
    Atomics.store(this.control, STOP, 1)
    Atomics.add(this.control, WAKE, 1)
    Atomics.notify(this.control, WAKE)
    await worker.terminate()
  }

  private wakeWorker(): void {
    if (Atomics.load(this.control, WORKER_WAITING) === 0) return
    Atomics.add(this.control, WAKE, 1)
    Atomics.notify(this.control, WAKE)
  }

  private start(): void {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      workerData: {
        buffer: this.memory.buffer, byteOffset: this.memory.byteOffset, byteLength: this.memory.byteLength,
        control: this.control, jobs: this.jobs, links: this.links, prevSlot: this.prevSlot,
        origin: this.origin.subarray(0, REPLICA_ID_BYTES), jobsMax: SEAL_JOBS_MAX,
        prefixBytes: CHAIN_PREFIX_BYTES, hashBytes: CHAIN_HASH_BYTES,
        offsetPrev: SEAL_OFFSET_PREV, offsetHash: SEAL_OFFSET_HASH, domain: CHAIN_DOMAIN,
      },
    })
    this.worker = worker
    // Either means the thread is gone: later records are hashed inline, pending ones at the next settle.
    worker.on('error', () => { this.failed = true })
    worker.on('exit', () => { if (this.worker === worker) this.failed = true })
    worker.unref()
  }
}
