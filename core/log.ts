// The log: one directory, one writer, segments of records, a head cache, sparse indexes.
// This class wires the pieces together and owns the public verbs; the format, composition,
// group commit, recovery and reading live in their own files.
//
// Invariants: events become visible (length, read, tail) only as whole batches, and with
// durability 'fsync' only once durable (core/visibility.ts); an append resolves only once its
// batch is durable per the durability mode; after any failed write or fdatasync the log is
// read-only (IO) until reopened, but for a full disk, which stalls writing until space returns
// (NO_SPACE, core/flusher.ts); batches never span segments; a segment is synced before the next
// one is created.

import { EventEmitter } from 'node:events'
import path from 'node:path'
import { ValidatorLoadError, WASM_MEMORY_BYTES_MAX, loadValidators, type Validator, type ValidatorEvent } from '../validators/index.js'
import { APPEND_GROUP_BYTES_MAX, AppendGroup } from './append-group.js'
import { assert } from './assert.js'
import { loadChecksum, type Checksum } from './checksum.js'
import { writeCheckpoint, type CheckpointBody } from './checkpoint.js'
import type { Equivocation } from './authenticate.js'
import { bodyBytes, composeRecord, recordEnd, sourceBatchBytes, sourceCount, sourceRecordBytes, sourceRecordEnd, splitsTail, type BatchSource, type DeferredLink, type SealedRecord } from './composer.js'
import { nextNonceEpoch, PayloadCipher } from './crypt.js'
import { createIdentity, loadIdentity, type Identity } from './identity.js'
import { BatchSealer, ZERO_CHAIN, equalBytes, extensionSeal, parseSeal, signLink } from './seal.js'
import { SEAL_ASYNC_MIN_BYTES, SealPipeline } from './seal-pipeline.js'
import { resolveTrust, type TrustPolicy } from './trust.js'
import { allocateArena } from './direct-io.js'
import { LogError, isLogError, isNoSpace } from './errors.js'
import { Flusher, type CommitPoint } from './flusher.js'
import {
  BATCH_ENVELOPE_BYTES, FILE_NAME_REPLICA, SEGMENT_VERSION_BATCH_ENVELOPES, SEGMENT_VERSION_DEFLATED, LINK_BYTES, PAGE_BYTES, RECORD_HEADER_BYTES, RECORD_OFFSET_LENGTH, SEGMENT_HEADER_BYTES,
  alignDown, alignUp, isReplicaIdHex,
} from './format.js'
import { HeadCache } from './head-cache.js'
import { LocalIndex, OriginState } from './indexes.js'
import { DirectoryLock } from './lock.js'
import { listConsumers, openConsumer, type Consumer, type ConsumerHost, type ConsumerInfo, type ConsumerOptions } from './consumers.js'
import type { RemoteEvent } from './merge-buffer.js'
import { Merger, checkRemoteEvents, type MergeOptions, type MergeResult, type Quarantine } from './merge.js'
import { deriveLayout, resolveOptions, type Layout, type OpenOptions } from './options.js'
import { checkRemoteRecords, type RemoteRecord } from './merge-records.js'
import { BatchOpener } from './batch-open.js'
import { eventsOfRecord, recordOf, scanRecords, type LogEvent, type LogRecord, type ReadSource } from './reader.js'
import { originStateFor, recover, type Truncation } from './recovery.js'
import { loadOrCreateReplica } from './replica.js'
import { createSegmentFile, decodeSegmentHeader, listSegmentFiles, raiseSegmentVersion, type Segment, type SegmentTable } from './segments.js'
import { closeSynced, createDirectoryDurably, syncNamesLeftPending, type Storage } from './storage.js'
import { verifyLog, type VerifyResult } from './verify.js'
import type { DamagedRange, Fence, Fences } from './damage.js'
import { Healer } from './heal.js'
import { NoSpaceWatch } from './no-space.js'
import { Repairs, type HealedRange } from './repairs.js'
import {
  finishMove, loadRetiredOrigins, moveOrigin as retireAndMove, readMoveIntent, removeMoveIntent, writeMoveIntent, type RetiredOrigin,
} from './own-origin.js'
import { rehome } from './rehome.js'
import { RecordWalk } from './record-walk.js'
import { Visibility } from './visibility.js'

export interface EventId {
  origin: string
  pos: number
}

/** A batch appended: `count` events of `origin` from `pos`, at local positions from `localPos`. */
export interface BatchRange {
  origin: string
  pos: number
  localPos: number
  count: number
}

export type { MergeOptions, MergeResult, Quarantine } from './merge.js'

/** What signing and trust did so far (since open). */
export interface SecurityStatus {
  /** This log's Ed25519 public key (hex), or null for a log without identity. */
  publicKey: string | null
  /** The trust mode (core/trust.ts): 'default' without an allow-list or trust option. */
  trust: 'default' | 'off' | 'open' | 'keys'
  /** Public keys accepted in trust mode 'keys'. */
  trustedKeys: string[]
  encrypted: boolean
  /** Remote events refused by authentication. */
  forged: number
  equivocations: Equivocation[]
  /** The last refusal, with its reason. */
  lastRejection: string | null
}

export type VersionVector = Record<string, number>

interface CommitState extends CommitPoint {
  lastRecordOffset: number
  /** Origin counts at this point, captured only when a checkpoint is due. */
  origins: [string, number][] | null
}

export interface LogEvents {
  /** A damaged range was fenced off (found by open's scan is reported through onWarning; found by a read, here and there). */
  damage: [DamagedRange]
  /** A damaged range was written back in place (with the events it held, from peers or from its intact records). */
  healed: [HealedRange]
  /** A sync validator rejected a remote event: its origin is quarantined at that position. */
  quarantine: [Quarantine]
  /** Events up to this local length are now durable (after each fdatasync). */
  durable: [number]
  /** An fdatasync of the log took this many seconds (before its 'durable'). */
  fsync: [number]
  /** An origin's key signed two histories; the origin is quarantined. */
  equivocation: [Equivocation]
  /** This log appends under a new origin id from now on (core/own-origin.ts says when and why). */
  originMoved: [{ from: string, to: string, reason: string }]
}

export class Log extends EventEmitter<LogEvents> {
  readonly directory: string
  readonly direct: boolean
  /** Where the log's files live (openLog option `storage`; node:fs by default). */
  private readonly storage: Storage
  /** What recovery cut at open (also reported by verify). */
  readonly truncations: readonly Truncation[]

  private readonly options: OpenOptions
  private readonly layout: Layout
  private readonly checksum: Checksum
  private readonly lock: DirectoryLock
  private readonly table: SegmentTable
  private readonly cache: HeadCache
  private readonly flusher: Flusher
  private readonly origins: Map<string, OriginState>
  /** The origin this log appends under (a move replaces it: core/own-origin.ts). */
  private own: OriginState
  /** Its earlier own origins, oldest first. */
  private readonly retired: RetiredOrigin[]
  /** Why this log cannot be sure it holds all it once made durable under its own origin (open found it), or null. */
  private readonly ownDoubt: string | null
  /** Events of its own origin when this open settled it, and own events appended since (not merged back). */
  private ownCountAtOpenValue = 0
  private ownAppendedSinceOpen = 0
  /** A peer holds this many events of the own origin: merge takes them back (restoring) while nothing was appended since open. */
  private restoreTarget = 0
  private readonly local: LocalIndex
  private readonly merger: Merger
  /** Reads as readers see the log: up to the visible end. */
  private readonly readSource: ReadSource
  /** Reads of the log's own machinery (chain heads, own links): up to the committed end. */
  private readonly internalSource: ReadSource
  private readonly visibility: Visibility
  /** Single appends of this turn, appended together at its end. */
  private readonly group: AppendGroup
  /** Damaged ranges: reads, sync and verify go around them (core/damage.ts). */
  private readonly fences: Fences
  /** Fences what reads find and repairs ranges in place (core/repairs.ts). */
  private readonly repairs: Repairs
  /** Says when the disk is full and tries again (core/no-space.ts). */
  private readonly space: NoSpaceWatch
  private readonly appendValidators: readonly Validator[]
  private readonly validatorEvent: ValidatorEvent = { payload: new Uint8Array(0), origin: '', pos: 0, time: 0 }
  /**
   * Records recordsSince handed out with a link, with a copy of the link as read (checked) and the
   * origin state it ended a batch of: signSeal signs such a link without reading it back, while the
   * batch is still held (a move to a new origin takes own events back) and the bytes are the same.
   */
  private readonly recordsHanded = new WeakMap<LogRecord, { link: Uint8Array, end: number, state: OriginState }>()
  private committedCount: number
  private committedEnd: number
  private lastRecordOffset: number
  private checkpointEnd: number
  private checkpointFailed: false | 'noSpace' | 'failed' = false
  private gate: Promise<void> | null = null
  private closed = false
  private readonly openConsumers = new Map<string, Consumer>()
  private closing: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private growthWaiters: (() => void)[] = []
  private sealer: BatchSealer | null
  /** Hashes large own records on a worker thread (null for a log without identity). */
  private pipeline: SealPipeline | null
  private readonly deferredLink: DeferredLink
  private identity: Identity | null
  private readonly trust: TrustPolicy
  private readonly cipher: PayloadCipher | null
  /**
   * Stores record bodies deflated (option storedCompression; not with encryption, whose bodies
   * do not compress): own links are then hashed here, before the body is deflated, not on the worker.
   */
  private readonly deflate: boolean

  /** Use openLog. */
  constructor(init: {
    directory: string, options: OpenOptions, layout: Layout, checksum: Checksum, lock: DirectoryLock,
    replicaId: string, replicaBytes: Uint8Array, validators: { append: Validator[], sync: Validator[] },
    identity: Identity | null, trust: TrustPolicy, cipher: PayloadCipher | null, retired: RetiredOrigin[],
  }) {
    super()
    this.identity = init.identity
    this.retired = init.retired
    this.sealer = init.identity === null ? null : new BatchSealer(init.identity.replicaIdBytes)
    this.trust = init.trust
    this.cipher = init.cipher
    this.deflate = init.options.storedCompression === 'deflate-raw' && init.cipher === null
    this.appendValidators = init.validators.append
    this.directory = init.directory
    this.options = init.options
    this.layout = init.layout
    this.checksum = init.checksum
    this.lock = init.lock
    this.storage = init.options.storage
    const state = recover({
      storage: this.storage, directory: init.directory, checksum: init.checksum, replicaId: init.replicaId, replicaBytes: init.replicaBytes,
      segmentBytes: init.options.segmentBytes,
      warn: init.options.onWarning,
      now: init.options.now,
      readOnly: init.options.readOnly,
      retiredIds: new Set(init.retired.map((origin) => origin.replicaId)),
    })
    this.table = state.table
    this.fences = state.fences
    this.ownDoubt = state.ownDoubt
    this.origins = state.origins
    this.local = state.local
    this.truncations = state.truncations
    this.committedCount = state.length
    this.committedEnd = Math.max(state.end, this.table.last.start + SEGMENT_HEADER_BYTES)
    this.lastRecordOffset = state.lastRecordOffset
    this.checkpointEnd = state.checkpointEnd
    this.own = originStateFor(this.origins, init.replicaId)
    // Everything recovery found is durable (open syncs the tail below before anything new).
    for (const state of this.origins.values()) state.visibleCount = state.count
    this.group = new AppendGroup((payloads) => this.appendRange(payloads, 'append', true), Math.min(APPEND_GROUP_BYTES_MAX, Math.floor(this.layout.segmentDataBytes / 4)))
    this.visibility = new Visibility(init.options.durability === 'fsync', this.committedCount, this.committedEnd, () => this.wakeGrowth())
    const log = this
    this.merger = new Merger({
      get ownOrigin(): string { return log.replicaId },
      now: init.options.now, origins: this.origins, trust: init.trust, cipher: init.cipher, syncValidators: init.validators.sync,
      maxEventBytes: init.options.maxEventBytes, pieceBytes: init.layout.segmentDataBytes / 4, recordSplitBytes: init.layout.recordSplitBytes,
      damaged: () => this.fences.count > 0,
      checkWritable: () => this.checkWritable(),
      ownRestoring: () => this.restoring(),
      storedChainHash: async (state, end) => {
        const stored = await this.ownBatchEnding(state, end)
        const fields = stored === null ? null : parseSeal(stored.link)
        return fields === null || typeof fields === 'string' ? null : new Uint8Array(fields.hash)
      },
      offerHeal: (event) => this.repairs.offer(event),
      loadChain: (state) => this.loadChain(state),
      writeBatch: (source, origin, expectedPos) => this.writeBatch(source, origin, expectedPos),
      awaitDurable: (range) => this.awaitDurable(range),
      onQuarantine: (quarantine) => this.emit('quarantine', quarantine),
      onEquivocation: (equivocation) => this.emit('equivocation', equivocation),
    }, init.options.mergeWaitingEventsMax, init.options.mergeWaitingBytesMax)

    // Read-only: no O_DIRECT probe (it writes a file), and no descriptor that writes.
    const arena = allocateArena(this.storage, init.options.cacheBytes - (init.options.cacheBytes % PAGE_BYTES), init.directory, init.options.directIo !== 'off' && !init.options.readOnly)
    if (init.options.directIo === 'on' && !arena.direct) {
      throw new LogError('INVALID_ARGUMENT', `directIo 'on': the file system of ${init.directory} refuses O_DIRECT writes`, { option: 'directIo' })
    }
    this.direct = arena.direct
    const segment = this.table.last
    this.cache = new HeadCache(arena.memory, segment, this.committedEnd)
    this.cache.settle = (end) => this.settleLinks(end)
    this.deferredLink = { first: 0, count: 0, prev: null, pipeline: { progress: () => {} } }
    this.pipeline = null
    this.usePipeline(init.identity)
    const fd = init.options.readOnly ? this.openReadOnlyDescriptor(segment) : this.openWriteDescriptor(segment)
    try {
      // What survived a crash in the OS page cache is made durable before new records claim it:
      // the tail of the last segment, and the names a dead process created (a segment made at a
      // roll, a consumer file renamed into place) but did not live to sync into their directory.
      // Without the directory fsync, events acknowledged in such a segment after this open would
      // go with its entry at the next power cut (the simulator's seed 1717161752 at 600 steps).
      if (!init.options.readOnly) {
        this.storage.fdatasyncSync(fd)
        syncNamesLeftPending(this.storage, init.directory)
      }
      this.loadTailPage(segment)
    } catch (error) {
      closeSynced(this.storage, fd)
      throw error
    }
    this.flusher = new Flusher(this.storage, this.cache, fd, {
      commitPoint: () => this.commitPoint(),
      onDurable: (point) => this.onDurable(point as CommitState),
      // Outside the flush loop: a listener that throws must not fail the flush.
      onSynced: (seconds) => queueMicrotask(() => this.emit('fsync', seconds)),
      onNoSpace: (error) => this.space.stalled(error),
      onSpace: () => this.space.cleared(),
    }, this.committedEnd, this.committedCount)
    this.readSource = {
      table: this.table, cache: this.cache, checksum: this.checksum,
      committedEnd: () => this.visibility.end,
      writtenEnd: () => this.flusher.writtenEnd,
      checkOpen: () => this.checkOpen(),
      fences: this.fences,
      fenceFound: (segment, offset, reason, expectedLocal, batchStart) => this.repairs.found(segment, offset, reason, expectedLocal, batchStart),
    }
    this.internalSource = { ...this.readSource, committedEnd: () => this.committedEnd }
    const healer = init.options.readOnly ? null : new Healer({
      table: this.table, storage: this.storage, checksum: this.checksum, fences: this.fences, origins: this.origins, local: this.local,
      trust: this.trust, recordBytesMax: this.layout.recordBytesMax,
      walkLimit: () => Math.min(this.committedEnd, this.flusher.writtenEnd),
      rewritten: (segment, start, bytes) => this.cache.rewrite(segment, start, bytes),
    })
    this.repairs = new Repairs({
      fences: this.fences, healer, local: this.local, origins: this.origins,
      warn: (warning) => this.options.onWarning(warning),
      emitDamage: (range) => { if (this.listenerCount('damage') > 0) queueMicrotask(() => this.emit('damage', range)) },
      emitHealed: (range) => { if (this.listenerCount('healed') > 0) queueMicrotask(() => this.emit('healed', range)) },
      writing: () => !this.closed && this.closing === null && this.flusher.failure === null,
      writeComposed: () => (this.options.readOnly || this.flusher.failure !== null ? Promise.resolve() : this.flusher.flushAll(false).catch(() => undefined)),
      surveyHost: () => ({
        table: this.table, storage: this.storage, checksum: this.checksum, fences: this.fences, origins: this.origins, local: this.local,
        committedCount: this.committedCount, committedEnd: Math.min(this.committedEnd, this.flusher.writtenEnd), recordBytesMax: this.layout.recordBytesMax,
      }),
      underGate: (work) => this.underGate(work),
      checkpointCovers: (offset) => this.checkpointEnd > offset,
      rewriteCheckpoint: () => this.rewriteCheckpoint(),
    })
    this.space = new NoSpaceWatch({
      directory: this.directory,
      warn: (warning) => this.options.onWarning(warning),
      retry: () => this.flusher.schedule(true),
      ending: () => this.closed || this.closing !== null,
      stall: () => this.flusher.noSpace,
      resumed: () => { if (this.checkpointFailed === 'noSpace') this.checkpointFailed = false },
    })
    // Ranges that need nothing from peers (their events live elsewhere) are repaired at once.
    if (this.fences.count > 0) this.repairs.soon()
    if (this.options.durability === 'interval' && !this.options.readOnly) {
      this.timer = setInterval(() => this.flusher.schedule(true), this.options.intervalMs)
      this.timer.unref()
    }
  }

  /** The id this log appends under: its replica id, derived from its public key (a move gives it a new one: originsRetired()). */
  get replicaId(): string {
    return this.own.origin
  }

  /** This log's Ed25519 public key (hex); null for a log created without identity. */
  get publicKey(): string | null {
    return this.identity?.publicKeyHex ?? null
  }

  /** The origins this log appended under before its current one (oldest first), with when and why it moved. */
  originsRetired(): { replicaId: string, retiredMs: number, reason: string }[] {
    return this.retired.map(({ replicaId, retiredMs, reason }) => ({ replicaId, retiredMs, reason }))
  }

  /**
   * The hashing pipeline for own records under `identity` (core/seal-pipeline.ts): made at open,
   * and again when the log moves to a new origin (the worker hashes with the origin's id).
   */
  private usePipeline(identity: Identity | null): void {
    void this.pipeline?.stop()
    const pipeline = identity === null || this.deflate ? null : new SealPipeline(this.cache.memory, identity.replicaIdBytes, this.checksum, this.options.durability === 'fsync' ? 'flusher' : 'worker')
    this.pipeline = pipeline
    // Writing around the fields still to hash pays only when the hash runs in settle (beside the
    // write); with the worker it splits the large writes of 'interval' for nothing (bench: 0.77
    // against 0.92 signed/unsigned).
    this.cache.pendingFields = pipeline?.hashOn === 'flusher' ? (out) => pipeline.pendingFields(out) : () => 0
    this.deferredLink.pipeline = pipeline ?? { progress: () => {} }
  }

  /**
   * Moves to a new own origin (core/own-origin.ts): a new key and id for every append from now
   * on; the old id becomes an origin like any other here (sync fetches what it lacks of it). Call
   * with nothing being composed (at open, or under the write gate).
   */
  private moveOrigin(reason: string): void {
    assert(!this.options.readOnly, 'a read-only open never moves')
    this.settleLinks()
    const from = this.replicaId
    const moved = retireAndMove(this.storage, this.directory, this.checksum, { replica: { id: from, idBytes: this.own.originBytes }, identity: this.identity },
      this.retired, reason, this.options.now)
    this.identity = moved.identity
    this.sealer = moved.identity === null ? null : new BatchSealer(moved.identity.replicaIdBytes)
    this.usePipeline(moved.identity)
    this.own = originStateFor(this.origins, moved.replica.id)
    this.own.chain = ZERO_CHAIN
    if (this.trust.mode === 'keys' && moved.identity !== null) {
      (this.trust.keys as Set<string>).add(moved.identity.publicKeyHex)
      ;(this.trust.origins as Set<string>).add(moved.replica.id)
    }
    this.options.onWarning({
      code: 'ORIGIN_MOVED',
      message: `interlog: log ${this.directory} appends as origin ${moved.replica.id} from now on, no longer as ${from} (${reason}): ` +
        `it never appends at positions of ${from} that a peer may hold; sync fetches back what it lacks of ${from}` +
        (moved.identity === null ? '' : `. Peers that trust by key need its new key: interlog trust add ${moved.identity.publicKeyHex}`),
    })
    if (this.listenerCount('originMoved') > 0) queueMicrotask(() => this.emit('originMoved', { from, to: moved.replica.id, reason }))
  }

  /**
   * @internal At a writable open: moves to a new origin when the log cannot be sure of its own
   * history (open's scan found a reason, or the last batch of its own origin lies in a damaged
   * range, so that the chain its next append must link to is unknown).
   */
  async settleOwnOrigin(): Promise<void> {
    // What this build writes may need version 3 (batch envelopes): the segment it writes into says so first.
    raiseSegmentVersion(this.storage, this.cache.segment, this.segmentVersion(), this.checksum)
    if (this.ownDoubt !== null) {
      this.moveOrigin(this.ownDoubt)
    } else if (this.own.count > 0 && this.identity !== null) {
      await this.loadChain(this.own)
      if (this.own.chain === null) this.moveOrigin(`the last batch of its own origin ${this.replicaId} is in a damaged range`)
    }
    this.ownCountAtOpenValue = this.own.count
  }

  /** Events of this log's own origin when it was opened: sync holds back newer ones until it has heard the peers (docs/sync.md). */
  get ownCountAtOpen(): number {
    return this.ownCountAtOpenValue
  }

  /**
   * A peer holds `count` events of this log's own origin (sync calls this from the peers'
   * vectors; a custom transport should too). More than this log holds means it lost some (damage
   * at the tail, a restored backup): when it appended nothing since open, it takes them back
   * through merge (checked against its own key and chain) before appending at those positions
   * ('restoring'; an append meanwhile moves it to a new origin first). When it did append since
   * open, those events would be a second history under its id: they move to a new origin, in
   * place, before anything publishes them ('moved'). 'ok': it holds as many.
   */
  async ownOriginSeen(count: number): Promise<'ok' | 'restoring' | 'moved'> {
    if (!Number.isSafeInteger(count) || count < 0) throw new LogError('INVALID_ARGUMENT', 'ownOriginSeen takes a count of events')
    this.checkWritable()
    if (count <= this.own.count) return 'ok'
    return this.underGate(async () => {
      if (count <= this.own.count || this.closing !== null) return 'ok'
      if (this.ownAppendedSinceOpen === 0) {
        this.restoreTarget = Math.max(this.restoreTarget, count)
        return 'restoring'
      }
      await this.rehomeSinceOpen(`a peer holds ${count} events of its own origin ${this.replicaId}, it holds ${this.own.count} and appended ${this.ownAppendedSinceOpen} since open`)
      return 'moved'
    })
  }

  /**
   * The own events appended since open move to a new origin, in place (core/rehome.ts), under the
   * write gate: everything is synced first, the intent is written, the records are rewritten, and
   * the state follows (the old origin's count goes back to what it held at open, and sync fetches
   * the rest of it from the peers like any missing event).
   */
  private async rehomeSinceOpen(reason: string): Promise<void> {
    await this.flusher.flushAll(true)
    const from = this.own
    const fromPos = this.ownCountAtOpenValue
    const start = this.firstRecordOf(from, fromPos)
    const end = this.committedEnd
    this.moveOrigin(reason)
    const to = this.own
    const intent = { from: from.origin, to: to.origin, fromPos, start, end }
    writeMoveIntent(this.storage, this.directory, intent)
    const result = rehome({ storage: this.storage, checksum: this.checksum, segments: this.table.segments, intent, cipher: this.cipher, onRecord: (pos, offset) => to.noteRecord(pos, offset) })
    removeMoveIntent(this.storage, this.directory)
    from.count = fromPos
    from.visibleCount = Math.min(from.visibleCount, fromPos)
    from.index.replaceRange(start, Infinity, [])
    from.chain = null
    to.count = result.events
    to.visibleCount = result.events
    to.chain = result.chain
    to.signed = this.identity !== null
    this.ownAppendedSinceOpen = 0
    this.ownCountAtOpenValue = 0
    this.reloadCacheWindow()
    if (this.checkpointEnd > start) await this.rewriteCheckpoint()
  }

  /** Global offset of the record of `state` that starts at its position `pos` (the end of the log when there is none). */
  private firstRecordOf(state: OriginState, pos: number): number {
    const entry = state.index.floorOffset(pos)
    const walk = new RecordWalk(this.table, this.storage, this.checksum, this.fences, this.committedEnd)
    try {
      const records = walk.records(entry < 0 ? this.table.segments[0]!.start + SEGMENT_HEADER_BYTES : entry, this.committedEnd)
      for (let step = records.next(); step.done !== true; step = records.next()) {
        if (step.value.origin === state.origin && step.value.originPos + step.value.count > pos) return step.value.offset
      }
    } finally {
      walk.close()
    }
    return this.committedEnd
  }

  /** Reads the cache's window back from the file (records in it were rewritten there), keeping zeros past the composed end. */
  private reloadCacheWindow(): void {
    const segment = this.cache.segment
    const used = this.cache.composedEnd - this.cache.windowStart
    if (used <= 0 || !this.storage.existsSync(segment.path)) return
    const fd = this.storage.openSync(segment.path, 'read')
    try {
      this.storage.readSync(fd, this.cache.memory, 0, used, this.cache.windowStart - segment.start)
    } finally {
      closeSynced(this.storage, fd)
    }
  }

  /** Whether merge takes events of the own origin back from peers now (restoring after a loss: ownOriginSeen). */
  private restoring(): boolean {
    return this.restoreTarget > this.own.count && this.ownAppendedSinceOpen === 0
  }

  /** Number of events in this log, all origins, as readers see it (with 'fsync': the durable ones). */
  get length(): number {
    return this.visibility.count
  }

  /** Events known durable (fdatasynced): local positions below this survive any crash. */
  get durableLength(): number {
    return this.flusher.durableCount
  }

  /** The largest payload this log accepts. */
  get maxEventBytes(): number {
    return this.options.maxEventBytes
  }

  /**
   * The seal for a link of this log's own chain (from `eventsSince(vv, { raw: true })`): the link
   * signed with this log's key, vouching for every own event up to it. Sync signs the last link of
   * each message it sends; a custom transport does the same. Only a link stored in this log, of a
   * batch already durable, is signed (INVALID_ARGUMENT otherwise): a batch lost in a crash must
   * never have been vouched for. Seals, and links of other origins, are returned unchanged.
   */
  async signSeal(event: { origin: string, seal: Uint8Array }): Promise<Uint8Array> {
    const seal = event.seal
    const fields = parseSeal(seal)
    if (typeof fields === 'string') throw new LogError('INVALID_ARGUMENT', `signSeal: ${fields}`)
    // Its own origin's links, and those of the origins it appended under before a move (their keys are kept).
    const identity = event.origin === this.replicaId ? this.identity : this.retired.find((origin) => origin.replicaId === event.origin)?.identity() ?? null
    const state = this.origins.get(event.origin)
    if (fields.signed || identity === null || state === undefined) return seal
    // A record recordsSince read from this log (and checked) holds its own link: no need to read it
    // back, as long as its batch is still held and the link is the one read.
    const handed = this.recordsHanded.get(event as LogRecord)
    const end = fields.first + fields.count
    if (handed !== undefined && handed.state === state && end === handed.end && end <= state.count && equalBytes(handed.link, seal)) {
      const record = event as LogRecord
      if (record.localPos + record.count > this.durableLength) {
        throw new LogError('INVALID_ARGUMENT', `signSeal: the batch ending at ${fields.first + fields.count} is not durable yet (durableLength ${this.durableLength})`)
      }
      return signLink(seal, identity.privateKey, identity.publicKeyBytes)
    }
    const stored = await this.ownBatchEnding(state, fields.first + fields.count)
    if (stored === null || !equalBytes(stored.link, seal)) {
      throw new LogError('INVALID_ARGUMENT', 'signSeal: the link is not one of this log\'s own batches')
    }
    if (stored.localEnd > this.durableLength) {
      throw new LogError('INVALID_ARGUMENT', `signSeal: the batch ending at ${fields.first + fields.count} is not durable yet (durableLength ${this.durableLength})`)
    }
    return signLink(seal, identity.privateKey, identity.publicKeyBytes)
  }

  /** The link stored with this log's own batch ending at origin position `end`, and the batch's local end. */
  private async ownBatchEnding(state: OriginState, end: number): Promise<{ link: Uint8Array, localEnd: number } | null> {
    if (end <= 0 || end > state.count) return null
    const offset = state.index.floorOffset(end - 1)
    for await (const cursor of scanRecords(this.internalSource, offset < 0 ? this.table.segments[0]!.start : offset)) {
      if (cursor.origin !== state.origin) continue
      const { header } = cursor
      if (header.originPos >= end) return null
      if (header.originPos + header.count !== end) continue
      const link = header.extensionBytes === 0 ? null : extensionSeal(cursor.bytes, header.extensionAt, header.extensionBytes)
      if (link === null) return null
      return { link: new Uint8Array(link), localEnd: header.localPos + header.count }
    }
    return null
  }

  /** Loads an origin's chain head from its last batch held (once per origin per open). */
  private async loadChain(state: OriginState): Promise<void> {
    if (state.chain !== null) return
    if (state.count === 0) {
      state.chain = ZERO_CHAIN
      return
    }
    // Its last batch in a damaged range: the head is unknown until a repair (null: merges of it
    // are refused meanwhile, core/authenticate.ts; for the own origin, open moves to a new one).
    if (this.fences.holding(state.origin, state.count - 1) !== undefined) return
    const offset = state.index.floorOffset(state.count - 1)
    for await (const cursor of scanRecords(this.internalSource, offset < 0 ? this.table.segments[0]!.start : offset)) {
      if (cursor.origin !== state.origin || cursor.header.originPos + cursor.header.count < state.count) continue
      const out: LogEvent[] = []
      eventsOfRecord(cursor, 0, Infinity, out)
      const seal = out[out.length - 1]?.seal
      const fields = seal === undefined ? null : parseSeal(seal)
      if (fields !== null && typeof fields !== 'string') {
        state.noteSeal(state.count, new Uint8Array(fields.hash))
      } else {
        state.chain = ZERO_CHAIN
        state.signed = false
      }
      return
    }
    state.chain = ZERO_CHAIN
  }

  /** Whether `origin` signs its batches, as far as this log knows (its last batch held is sealed). */
  async signs(origin: string): Promise<boolean> {
    if (origin === this.replicaId) return this.sealer !== null
    if (this.retired.some((retired) => retired.replicaId === origin && retired.identity() !== null)) return true
    const state = this.origins.get(origin)
    if (state === undefined) return false
    await this.loadChain(state)
    return state.signed
  }

  /** Signing, trust and encryption: the configuration and what they refused. */
  securityStatus(): SecurityStatus {
    return {
      publicKey: this.publicKey, trust: this.trust.mode, trustedKeys: [...this.trust.keys], encrypted: this.cipher !== null,
      forged: this.merger.security.forged, equivocations: this.merger.security.equivocations.map((e) => ({ ...e })),
      lastRejection: this.merger.security.lastRejection,
    }
  }

  /** For each origin, the count of its events this log holds (as readers see them: with 'fsync', the durable ones). */
  versionVector(): VersionVector {
    const vector: VersionVector = {}
    for (const [origin, state] of this.origins) if (state.visibleCount > 0) vector[origin] = state.visibleCount
    return vector
  }

  /**
   * Appends one event; resolves once durable per the durability mode. Single appends made in one
   * turn go in as one batch (core/append-group.ts), each with its own id.
   */
  append(payload: Uint8Array): Promise<EventId> {
    try {
      this.checkWritable()
      this.checkPayload(payload, 0, 'append')
    } catch (error) {
      return Promise.reject(error)
    }
    if (this.appendValidators.length > 0) {
      const rejection = this.validateAppend([payload], this.options.now(), this.group.pending)
      if (rejection !== undefined) return Promise.reject(rejection)
    }
    return this.group.add(payload)
  }

  /** Appends events atomically (all or nothing, across crashes too). */
  async appendBatch(payloads: readonly Uint8Array[]): Promise<EventId[]> {
    const range = await this.appendBatchRange(payloads)
    const ids: EventId[] = new Array(range.count)
    for (let i = 0; i < range.count; i++) ids[i] = { origin: range.origin, pos: range.pos + i }
    return ids
  }

  /** appendBatch without one id object per event: the ids are pos .. pos + count - 1 of origin. */
  appendBatchRange(payloads: readonly Uint8Array[]): Promise<BatchRange> {
    if (!Array.isArray(payloads)) return Promise.reject(new LogError('INVALID_ARGUMENT', 'appendBatch takes an array of Uint8Array'))
    return this.appendRange(payloads, 'appendBatch')
  }

  /** Appends own events as one batch; `grouped`: single appends already checked one by one (AppendGroup). */
  private appendRange(payloads: readonly Uint8Array[], verb: string, grouped = false): Promise<BatchRange> {
    try {
      if (!grouped) this.group.flush() // the single appends made before this call go first
      this.checkWritable()
      if (payloads.length === 0) throw new LogError('INVALID_ARGUMENT', `${verb} needs at least one payload`)
      if (!grouped) for (let i = 0; i < payloads.length; i++) this.checkPayload(payloads[i], i, verb)
    } catch (error) {
      return Promise.reject(error)
    }
    const source: BatchSource = { payloads, time: this.options.now(), times: null, seal: null, own: { origin: this.replicaId, plain: null } }
    if (!grouped && this.appendValidators.length > 0) {
      const rejection = this.validateAppend(payloads, source.time)
      if (rejection !== undefined) return Promise.reject(rejection)
    }
    // A peer holds positions this log would append at (it is taking them back): a new origin first.
    if (this.restoreTarget > this.own.count) {
      return this.underGate(async () => {
        if (this.restoreTarget > this.own.count) this.moveOrigin(`a peer holds ${this.restoreTarget} events of its own origin ${this.replicaId}, it holds ${this.own.count}, and it appends now`)
        this.restoreTarget = 0
      }).then(() => this.appendRange(payloads, verb, grouped))
    }
    this.encryptOwn(source, payloads)
    return this.writeBatch(source, this.own, -1).then((range) => this.awaitDurable(range))
  }

  /** Encrypts an own batch for the current own origin (again, when it moved since). */
  private encryptOwn(source: BatchSource, plain: readonly Uint8Array[]): void {
    if (this.cipher === null || source.own === undefined) return
    const cipher = this.cipher
    const origin = this.replicaId
    source.own = { origin, plain }
    if (this.sealer === null) {
      // No links to carry a batch envelope: one envelope per event (docs/format.md).
      source.payloads = plain.map((payload) => cipher.encrypt(origin, payload))
      return
    }
    // One AEAD per linked record, cut exactly as composing cuts them (ciphertexts keep the
    // payloads' lengths, so `payloads` stay the plaintext): its envelope goes before the record's
    // link (segment version 3).
    const sealed = new Map<number, SealedRecord>()
    for (let from = 0; from < plain.length;) {
      const to = recordEnd(plain, from, this.layout.recordSplitBytes)
      const envelope = Buffer.allocUnsafe(BATCH_ENVELOPE_BYTES)
      sealed.set(from, { envelope, bytes: cipher.encryptBatch(origin, plain, from, to, envelope) })
      from = to
    }
    source.payloads = plain
    source.sealed = sealed
  }

  /** Runs the append validators over a batch (at `ahead` events past the own count); the first rejection rejects the whole batch. */
  private validateAppend(payloads: readonly Uint8Array[], time: number, ahead = 0): LogError | undefined {
    const event = this.validatorEvent
    event.origin = this.replicaId
    event.time = time
    for (let i = 0; i < payloads.length; i++) {
      event.payload = payloads[i] as Uint8Array
      event.pos = this.own.count + ahead + i
      for (const validator of this.appendValidators) {
        const reason = validator.check(event)
        if (reason !== undefined) {
          event.payload = new Uint8Array(0)
          return new LogError('VALIDATION',
            `validator '${validator.name}' rejected ${payloads.length > 1 ? `payload ${i} of the batch` : 'the payload'}: ${reason}. Nothing was written`,
            { validator: validator.name, reason, index: i })
        }
      }
    }
    event.payload = new Uint8Array(0)
    return undefined
  }

  /** Origins whose sync is stopped by a validator rejection, oldest first. */
  quarantined(): Quarantine[] {
    return [...this.merger.quarantines.values()].map((q) => ({ ...q }))
  }

  /**
   * Lifts the quarantine of `origin` (after deploying a fixed validator, or deciding to accept):
   * its events are taken again from the rejected position on, and sync validators run on them
   * again. Returns whether the origin was quarantined.
   */
  releaseQuarantine(origin: string): boolean {
    return this.merger.quarantines.delete(origin)
  }

  private checkPayload(payload: unknown, index: number, verb: string): void {
    if (!(payload instanceof Uint8Array)) {
      throw new LogError('INVALID_ARGUMENT', `${verb}: payload ${index} is not a Uint8Array`, { index })
    }
    if (payload.length > this.options.maxEventBytes) {
      throw new LogError('TOO_LARGE', `${verb}: payload ${index} has ${payload.length} bytes; maxEventBytes is ${this.options.maxEventBytes}. Nothing was written`,
        { index, bytes: payload.length, maxEventBytes: this.options.maxEventBytes })
    }
  }

  private awaitDurable(range: BatchRange): Promise<BatchRange> | BatchRange {
    if (this.options.durability !== 'fsync') return range
    return this.flusher.waitDurable(range.localPos + range.count).then(() => range)
  }

  /**
   * Composes a batch of `origin` and commits it. `expectedPos` >= 0 (merge) skips the batch if the
   * origin moved on meanwhile (returns count 0). Fast path: synchronous when the batch fits the
   * cache and the segment and nobody is waiting; otherwise queued behind the gate.
   */
  private writeBatch(source: BatchSource, origin: OriginState, expectedPos: number): Promise<BatchRange> {
    const bytes = sourceBatchBytes(source, this.layout.recordSplitBytes, this.lastExtensionBytes(source), this.linkBytes(source, origin), this.tailSplitMinBody(source, origin))
    if (bytes > this.layout.segmentDataBytes) {
      return Promise.reject(new LogError('TOO_LARGE', `batch of ${sourceCount(source)} events takes ${bytes} bytes; a batch must fit one segment ` +
        `(${this.layout.segmentDataBytes} bytes of segmentBytes ${this.options.segmentBytes}). Nothing was written`, { bytes }))
    }
    const segment = this.cache.segment
    const fits = this.committedEnd + bytes <= segment.start + segment.size && this.cache.room() >= bytes
    if (this.gate === null && fits && origin.chain !== null) return Promise.resolve(this.composeBatch(source, origin, expectedPos, bytes))
    return this.writeBatchSlowly(source, origin, expectedPos, bytes)
  }

  private writeBatchSlowly(source: BatchSource, origin: OriginState, expectedPos: number, bytes: number): Promise<BatchRange> {
    return this.underGate(async () => {
      this.checkWritable()
      // An own batch queued while the log moved to a new origin goes under the new one.
      if (source.own !== undefined && source.own.origin !== this.replicaId) {
        origin = this.own
        if (source.own.plain !== null) this.encryptOwn(source, source.own.plain)
        else source.own = { origin: this.replicaId, plain: null }
      }
      // The chain head is loaded on the first write of an origin (not at open: verify-only opens never read it).
      if (origin.chain === null) await this.loadChain(origin)
      const segment = this.cache.segment
      if (this.committedEnd + bytes > segment.start + segment.size) await this.roll()
      if (this.cache.room() >= bytes) return this.composeBatch(source, origin, expectedPos, bytes)
      return await this.composeBatchInSteps(source, origin, expectedPos)
    })
  }

  /** The version of the segments this log writes: 4 when it may store deflated bodies, else 3 (docs/format.md). */
  private segmentVersion(): number {
    return this.deflate ? SEGMENT_VERSION_DEFLATED : SEGMENT_VERSION_BATCH_ENVELOPES
  }

  /** Bytes of the link every record of an own batch ends with (a log with identity), else 0. */
  private linkBytes(source: BatchSource, origin: OriginState): number {
    if (source.seal !== null || origin !== this.own || this.sealer === null) return 0
    return source.sealed === undefined ? LINK_BYTES : BATCH_ENVELOPE_BYTES + LINK_BYTES
  }

  /**
   * With durability 'fsync' and an identity, own records of at least this many body bytes are
   * composed as two, the link on the second (`splitsTail`); 0 for none.
   */
  private tailSplitMinBody(source: BatchSource, origin: OriginState): number {
    return this.pipeline?.hashOn === 'flusher' && this.linkBytes(source, origin) > 0 ? SEAL_ASYNC_MIN_BYTES : 0
  }

  /** Bytes of the extension of a merged batch's last record: the link or seal it came with. */
  private lastExtensionBytes(source: BatchSource): number {
    return source.seal === null ? 0 : source.seal.length
  }

  /** After a merged batch with a link or seal: its chain hash is the origin's head. */
  private endSeal(source: BatchSource, origin: OriginState, range: BatchRange): void {
    if (source.seal === null) return
    const fields = parseSeal(source.seal)
    if (typeof fields !== 'string') origin.noteSeal(range.pos + range.count, new Uint8Array(fields.hash))
  }

  /** Composes and commits a batch that fits the cache. */
  private composeBatch(source: BatchSource, origin: OriginState, expectedPos: number, bytes: number): BatchRange {
    const range = this.startRange(source, origin, expectedPos)
    if (range.count === 0) return range
    let lastOffset = this.committedEnd
    for (let from = 0; from < range.count;) {
      const to = sourceRecordEnd(source, from, this.layout.recordSplitBytes)
      lastOffset = this.composeOne(source, origin, range, from, to)
      from = to
    }
    // The room and segment checks relied on it (core/composer.ts batchBytes, split records included).
    // (At most: a deflated body takes less.)
    const taken = this.cache.composedEnd - this.committedEnd
    assert(taken === bytes || (this.deflate && taken < bytes), 'a batch takes the bytes batchBytes said')
    this.endSeal(source, origin, range)
    this.commit(origin, range.count, lastOffset, source.own !== undefined)
    return range
  }

  /** A batch larger than the free cache: records are composed one by one, flushing in between. */
  private async composeBatchInSteps(source: BatchSource, origin: OriginState, expectedPos: number): Promise<BatchRange> {
    const range = this.startRange(source, origin, expectedPos)
    if (range.count === 0) return range
    let lastOffset = this.committedEnd
    for (let from = 0; from < range.count;) {
      const to = sourceRecordEnd(source, from, this.layout.recordSplitBytes)
      const bytes = sourceRecordBytes(source, from, to, this.layout.recordBytesMax, to === range.count ? this.lastExtensionBytes(source) : 0, this.linkBytes(source, origin), this.tailSplitMinBody(source, origin))
      if (this.cache.room() < bytes) await this.makeRoom(bytes)
      // Not checkWritable: close() waits for this batch to finish, so closing is no reason to stop.
      if (this.flusher.failure !== null) throw this.flusher.failure
      const before = this.cache.composedEnd
      lastOffset = this.composeOne(source, origin, range, from, to)
      const taken = this.cache.composedEnd - before
      assert(taken === bytes || (this.deflate && taken < bytes), 'a record takes the bytes batchBytes said')
      from = to
    }
    this.endSeal(source, origin, range)
    this.commit(origin, range.count, lastOffset, source.own !== undefined)
    return range
  }

  /** The range a batch will take; count 0 when a merge run no longer starts at the origin's count. */
  private startRange(source: BatchSource, origin: OriginState, expectedPos: number): BatchRange {
    const count = expectedPos >= 0 && origin.count !== expectedPos ? 0 : sourceCount(source)
    return { origin: origin.origin, pos: origin.count, localPos: this.committedCount, count }
  }

  /** Composes events [from, to) of a batch as one record (two if `splitsTail`); returns the offset of the last. */
  private composeOne(source: BatchSource, origin: OriginState, range: BatchRange, from: number, to: number): number {
    const firstOffset = this.cache.composedEnd
    const last = to === range.count
    // Own records each end with a link (so that receivers can check and store any record on its
    // own), but for the first of a split pair (below); a merged batch keeps the one link or seal it
    // came with, on its last record.
    const link = this.linkBytes(source, origin)
    // Only an own record with a pipeline needs its size (it decides whether it goes there and is split).
    const body = link > 0 && this.pipeline !== null ? bodyBytes(source.payloads, from, to) : 0
    // Large records are hashed on the worker; so is every record while it has some (the chain is in order).
    const pipeline = link > 0 && this.pipeline !== null &&
      (this.pipeline.busy || (body >= SEAL_ASYNC_MIN_BYTES && this.pipeline.ready())) ? this.pipeline : null
    // With 'fsync', a large record's events but the last go first in a record without a link,
    // checksummed now; the link of the last event's record covers them too (`splitsTail`).
    let tailFrom = from
    // An own encrypted record: its ciphertext and envelope (link > 0 only for own records).
    const sealed = link > 0 ? source.sealed?.get(from) ?? null : null
    let sealedAt = 0
    if (pipeline !== null && splitsTail(body, to - from, this.tailSplitMinBody(source, origin))) {
      tailFrom = to - 1
      this.noteRecord(origin, range, from, firstOffset)
      composeRecord(this.cache, this.checksum, source, from, tailFrom, {
        localPos: range.localPos + from, durable: this.flusher.durableCount, origin: origin.originBytes,
        originPos: range.pos + from, continues: true, sealer: null, deferredLink: null, seal: null, extensionBytes: 0,
        envelope: null, sealed: sealed?.bytes ?? null, sealedAt: 0, deflate: this.deflate,
      })
      if (sealed !== null) sealedAt = sealed.bytes.length - (source.payloads[tailFrom] as Uint8Array).length
    }
    const offset = this.cache.composedEnd
    const start = this.cache.at(offset)
    this.noteRecord(origin, range, tailFrom, offset)
    let deferred: DeferredLink | null = null
    if (pipeline !== null) {
      deferred = this.deferredLink
      deferred.first = range.pos + from
      deferred.count = to - from
      deferred.prev = pipeline.busy ? null : origin.chain ?? ZERO_CHAIN
      pipeline.open(firstOffset, start, this.cache.at(firstOffset) + RECORD_HEADER_BYTES, deferred.first, deferred.count, deferred.prev)
    }
    const sealer = link > 0 && pipeline === null ? this.sealer : null
    if (sealer !== null) sealer.begin(range.pos + from, to - from, origin.chain ?? ZERO_CHAIN)
    const padded = composeRecord(this.cache, this.checksum, source, tailFrom, to, {
      localPos: range.localPos + tailFrom, durable: this.flusher.durableCount, origin: origin.originBytes,
      originPos: range.pos + tailFrom, continues: !last,
      sealer, deferredLink: deferred, seal: source.seal, extensionBytes: link > 0 ? link : last ? this.lastExtensionBytes(source) : 0,
      envelope: sealed?.envelope ?? null, sealed: sealed?.bytes ?? null, sealedAt, deflate: this.deflate,
    })
    if (sealer !== null) origin.noteOwnLink(sealer.lastHash)
    if (pipeline !== null) {
      const length = this.cache.view.getUint32(start + RECORD_OFFSET_LENGTH, true)
      assert(length <= padded, 'record length within its padded size')
      pipeline.close(start + length - LINK_BYTES)
    }
    return offset
  }

  /** Notes a record of events from `from` of the batch `range` at global offset `offset` in the sparse indexes. */
  private noteRecord(origin: OriginState, range: BatchRange, from: number, offset: number): void {
    this.local.noteRecord(range.localPos + from, offset)
    origin.noteRecord(range.pos + from, offset)
  }

  /** Waits for own records hashed on the worker (those before global offset `end`, or all) and notes the chain head. */
  private settleLinks(end?: number): void {
    if (this.pipeline === null || (end !== undefined && this.pipeline.settledBefore(end))) return
    const head = this.pipeline.settle()
    if (head !== null) this.own.noteOwnLink(head)
  }

  private commit(origin: OriginState, count: number, lastOffset: number, appended = false): void {
    if (appended) this.ownAppendedSinceOpen += count
    origin.count += count
    this.committedCount += count
    this.committedEnd = this.cache.composedEnd
    this.lastRecordOffset = lastOffset
    this.cache.segment.dataEnd = this.committedEnd
    this.visibility.committed(origin, count, this.committedCount, this.committedEnd)
    if (this.options.durability === 'none' && this.cache.room() < this.cache.memory.length / 4) this.flusher.schedule(false)
  }

  /** Wakes tails and consumers waiting for the visible end to move. */
  private wakeGrowth(): void {
    const waiters = this.growthWaiters
    if (waiters.length > 0) {
      this.growthWaiters = []
      for (const wake of waiters) wake()
    }
  }

  private async makeRoom(bytes: number): Promise<void> {
    assert(bytes <= this.cache.memory.length / 2, 'a record fits half the cache')
    // A batch composed in steps waits out a full disk here (its first records are in the cache
    // already): new appends are refused meanwhile, and close() ends the wait.
    for (;;) {
      try {
        await this.flusher.flushAll(false)
        break
      } catch (error) {
        if (!isLogError(error, 'NO_SPACE') || this.closing !== null) throw error
        await this.space.untilSpace()
      }
    }
    this.cache.slide(this.cache.memory.length / 2 - PAGE_BYTES)
    assert(this.cache.room() >= bytes, 'sliding made room')
  }

  /** Seals the current segment (written and synced) and starts the next one. */
  private async roll(): Promise<void> {
    await this.flusher.flushAll(true)
    const old = this.table.last
    let segment: Segment
    let fd: number
    try {
      segment = createSegmentFile(this.storage, this.directory, {
        index: old.index + 1, start: old.start + old.size, size: this.options.segmentBytes,
        firstLocalPos: this.committedCount, replica: this.own.originBytes, createdMs: this.options.now(), version: this.segmentVersion(),
      }, this.checksum)
      fd = this.openWriteDescriptor(segment)
    } catch (error) {
      if (isNoSpace(error)) {
        // Nothing of the batch that needed the new segment is composed yet: it is refused, and the
        // next append tries the roll again (createSegmentFile removed the part it made).
        throw new LogError('NO_SPACE', `no space left to create segment ${old.index + 1} in ${this.directory} (${(error as Error).message}); ` +
          'nothing was written: free space and append again', { path: this.directory, cause: error })
      }
      this.flusher.fail(error)
      throw this.flusher.failure
    }
    this.table.add(segment)
    closeSynced(this.storage, this.flusher.fd)
    this.cache.reset(segment, segment.start + SEGMENT_HEADER_BYTES)
    this.committedEnd = segment.start + SEGMENT_HEADER_BYTES
    this.flusher.resetTo(fd, this.committedEnd)
  }

  private openWriteDescriptor(segment: Segment): number {
    return this.storage.openSync(segment.path, 'write', { direct: this.direct })
  }

  /** Read-only opens hold a plain read descriptor where the flusher's would be (-1 for a log with no segment on disk yet). */
  private openReadOnlyDescriptor(segment: Segment): number {
    return this.storage.existsSync(segment.path) ? this.storage.openSync(segment.path, 'read') : -1
  }

  /** The partial page at the end of the log goes back into the cache, to be rewritten whole. */
  private loadTailPage(segment: Segment): void {
    const pageStart = alignDown(this.committedEnd, PAGE_BYTES)
    const used = this.committedEnd - pageStart
    if (used === 0) return
    const readFd = this.storage.openSync(segment.path, 'read')
    try {
      this.storage.readSync(readFd, this.cache.memory, 0, used, pageStart - segment.start)
    } finally {
      closeSynced(this.storage, readFd)
    }
  }

  private commitPoint(): CommitState {
    const due = this.committedEnd - this.checkpointEnd >= this.options.checkpointIntervalBytes
    return {
      count: this.committedCount, end: this.committedEnd, lastRecordOffset: this.lastRecordOffset,
      origins: due && this.committedCount > 0 ? [...this.origins].map(([origin, state]) => [origin, state.count]) : null,
    }
  }

  private onDurable(point: CommitState): void {
    this.visibility.durable(point.count, point.end)
    // Outside the flush loop: a listener's exception must not look like an I/O failure.
    if (this.listenerCount('durable') > 0) queueMicrotask(() => this.emit('durable', point.count))
    if (point.origins === null || point.end <= this.checkpointEnd || this.checkpointFailed) return
    const body: CheckpointBody = {
      length: point.count, end: point.end, lastRecordOffset: point.lastRecordOffset,
      segmentEnds: this.table.segments.filter((segment) => segment.start < point.end)
        .map((segment) => [segment.index, Math.min(segment.dataEnd, point.end)]),
      local: this.local.index.entriesBefore(point.end),
      origins: point.origins.map(([origin, count]) => {
        const entries = this.origins.get(origin)!.index.entriesBefore(point.end)
        return { origin, count, positions: entries.positions, offsets: entries.offsets }
      }),
    }
    try {
      writeCheckpoint(this.storage, this.directory, body, this.checksum)
      this.checkpointEnd = point.end
    } catch (error) {
      // Not tried again before a reopen, but after a full disk once space is back (core/no-space.ts).
      this.checkpointFailed = isNoSpace(error) ? 'noSpace' : 'failed'
      this.options.onWarning({ code: 'CHECKPOINT_FAILED', message: `interlog: checkpoint not written (${(error as Error).message}); the next open scans more` })
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new LogError('CLOSED', `log ${this.directory} is closed`, { path: this.directory })
  }

  private checkWritable(): void {
    this.checkOpen()
    if (this.options.readOnly) throw new LogError('INVALID_ARGUMENT', `log ${this.directory} was opened read-only`, { path: this.directory, option: 'readOnly' })
    if (this.closing !== null) throw new LogError('CLOSED', `log ${this.directory} is closing`, { path: this.directory })
    if (this.flusher.failure !== null) throw this.flusher.failure
    if (this.flusher.noSpace !== null) {
      this.space.retry()
      throw this.flusher.noSpace
    }
  }

  /** Damaged ranges fenced off, in log order, with what each held (core/damage.ts). */
  damage(): DamagedRange[] {
    return this.repairs.describe()
  }

  /** Writes the checkpoint again from the state now (everything made durable first): a repair moved records it indexed. */
  private async rewriteCheckpoint(): Promise<void> {
    await this.flusher.flushAll(true)
    this.checkpointEnd = 0
    this.onDurable({ ...this.commitPoint(), origins: [...this.origins].map(([origin, state]) => [origin, state.count]) })
  }

  /** Runs `work` alone: after every batch composing now, before any that comes later. */
  private async underGate<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.gate
    let release!: () => void
    const mine = new Promise<void>((resolve) => { release = resolve })
    this.gate = mine
    try {
      if (previous !== null) await previous
      return await work()
    } finally {
      if (this.gate === mine) this.gate = null
      release()
    }
  }

  /** Whether writes are stalled on a full disk (appends and merges get NO_SPACE until space returns). */
  get noSpace(): boolean {
    return this.flusher.noSpace !== null
  }

  /**
   * Events with local positions in [from, to). Damaged ranges (core/damage.ts) are skipped: their
   * events are not there, and `onDamage` hears of each range the read went around (the log emits
   * 'damage' when a read finds a new one).
   */
  async *read(options: { from?: number, to?: number, onDamage?: (range: DamagedRange) => void } = {}): AsyncGenerator<LogEvent> {
    const from = options.from ?? 0
    const to = Math.min(options.to ?? this.visibility.count, this.visibility.count)
    checkPosition(from, 'from')
    checkPosition(to, 'to')
    if (from >= to) return
    const out: LogEvent[] = []
    const onSkip = this.skipReporter(options.onDamage, from, to)
    // Encrypted: whole records, so that batches open whole (core/batch-open.ts).
    const opener = this.batchOpener()
    for await (const cursor of scanRecords(this.readSource, this.startOffsetFor(from), onSkip)) {
      const { header } = cursor
      if (header.localPos >= to && !(opener?.holding ?? false)) break
      if (header.localPos + header.count <= from) continue
      out.length = 0
      if (opener === null) eventsOfRecord(cursor, from, to, out)
      const events = opener === null ? out : await opener.takeRecord(cursor)
      for (const event of events) if (event.localPos >= from && event.localPos < to) yield event
      if (header.localPos + header.count >= to && !(opener?.holding ?? false)) return
    }
    if (opener === null) return
    opener.release(out)
    for (const event of out) if (event.localPos >= from && event.localPos < to) yield event
  }

  /** With encryption, what opens stored events for reads (null without). */
  private batchOpener(): BatchOpener | null {
    return this.cipher === null ? null : new BatchOpener(this.cipher, (from, to) => this.storedEvents(from, to))
  }

  /** Events at local positions [from, to) as stored (payloads encrypted in an encrypted log). */
  private async storedEvents(from: number, to: number): Promise<LogEvent[]> {
    const out: LogEvent[] = []
    if (from >= to) return out
    for await (const cursor of scanRecords(this.readSource, this.startOffsetFor(from))) {
      if (cursor.header.localPos >= to) break
      eventsOfRecord(cursor, from, to, out)
      if (cursor.header.localPos + cursor.header.count >= to) break
    }
    return out
  }

  /**
   * Reads from `from`, then waits for new events; ends when `signal` aborts. `onCaughtUp(position)`
   * is called each time the backlog is read and the head reached (position = the next local
   * position to come), before waiting. No buffering: a slow consumer simply reads later, from
   * the head cache or from disk.
   */
  async *tail(options: { from?: number, signal?: AbortSignal, onCaughtUp?: (position: number) => void, onDamage?: (range: DamagedRange) => void } = {}): AsyncGenerator<LogEvent> {
    let next = options.from ?? 0
    const onSkip = this.skipReporter(options.onDamage, next, Infinity)
    checkPosition(next, 'from')
    const signal = options.signal
    const onCaughtUp = options.onCaughtUp
    if (onCaughtUp !== undefined && typeof onCaughtUp !== 'function') throw new LogError('INVALID_ARGUMENT', 'tail: onCaughtUp must be a function')
    const aborted = (): boolean => signal?.aborted === true
    let offset = this.startOffsetFor(next)
    let reported = -1
    const out: LogEvent[] = []
    const opener = this.batchOpener()
    while (!aborted()) {
      for await (const cursor of scanRecords(this.readSource, offset, onSkip)) {
        offset = cursor.offset + cursor.header.padded
        if (cursor.header.localPos + cursor.header.count <= next) continue
        out.length = 0
        if (opener === null) eventsOfRecord(cursor, next, Infinity, out)
        const events = opener === null ? out : await opener.takeRecord(cursor)
        for (const event of events) {
          if (aborted()) return
          if (event.localPos < next) continue
          yield event
          next = event.localPos + 1
        }
      }
      if (opener !== null && opener.holding) {
        // A batch cut short by damage: what was held opens one by one.
        out.length = 0
        opener.release(out)
        for (const event of out) {
          if (aborted()) return
          if (event.localPos < next) continue
          yield event
          next = event.localPos + 1
        }
      }
      if (aborted()) return
      if (onCaughtUp !== undefined && next !== reported && next >= this.visibility.count) {
        reported = next
        onCaughtUp(next)
      }
      await this.waitForGrowth(next, signal)
    }
  }

  /** Reports each damaged range a read over local positions [from, to) goes around, once. */
  private skipReporter(onDamage: ((range: DamagedRange) => void) | undefined, from: number, to: number): ((fence: Fence) => void) | undefined {
    if (onDamage === undefined) return undefined
    if (typeof onDamage !== 'function') throw new LogError('INVALID_ARGUMENT', 'onDamage must be a function')
    const told = new Set<Fence>()
    return (fence) => {
      if (told.has(fence) || fence.localTo <= from || fence.localFrom >= to) return
      told.add(fence)
      onDamage(fence.describe())
    }
  }

  private waitForGrowth(length: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.visibility.count > length || this.closed) return Promise.resolve()
    return new Promise((resolve) => {
      const onAbort = (): void => resolve()
      signal?.addEventListener('abort', onAbort, { once: true })
      this.growthWaiters.push(() => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      })
    })
  }

  /**
   * A durable consumer: a named position in this log, stored in the log directory, from which
   * `batches()` delivers events until `commit()` moves it. At-least-once: after a crash, events
   * after the last commit are delivered again.
   */
  consumer(name: string, options: ConsumerOptions = {}): Consumer {
    this.checkOpen()
    if (this.options.readOnly) throw new LogError('INVALID_ARGUMENT', `log ${this.directory} was opened read-only: consumers() lists the consumers`, { option: 'readOnly' })
    // One instance per name: commits of one consumer are ordered, wherever they come from.
    const open = this.openConsumers.get(name)
    if (open !== undefined && !open.isDeleted) return open
    const consumer = openConsumer(this.consumerHost, name, options)
    this.openConsumers.set(name, consumer)
    return consumer
  }

  /** Every durable consumer of this log, with its position and lag. */
  consumers(): ConsumerInfo[] {
    this.checkOpen()
    return listConsumers(this.consumerHost)
  }

  private get consumerHost(): ConsumerHost {
    return {
      directory: this.directory,
      storage: this.storage,
      length: () => this.visibility.count,
      read: (from, to) => this.read({ from, to }),
      waitForGrowth: (length, signal) => this.waitForGrowth(length, signal),
      checkOpen: () => this.checkOpen(),
      now: () => this.options.now(),
    }
  }

  /**
   * Events this log holds beyond version vector `vector`, in local order. With `raw`, payloads are
   * as stored (encrypted, for sync to forward); otherwise decrypted like read().
   */
  async *eventsSince(vector: VersionVector = {}, options: { raw?: boolean } = {}): AsyncGenerator<LogEvent> {
    const raw = options?.raw === true
    const { want, start } = this.wantedBeyond(vector, 'eventsSince')
    if (want.size === 0) return
    const limit = this.visibility.count
    const out: LogEvent[] = []
    // Records of one origin's batch come together (a batch is stored whole, in local order).
    const opener = raw ? null : this.batchOpener()
    for await (const cursor of scanRecords(this.readSource, start)) {
      if (cursor.header.localPos >= limit) return
      const wanted = want.get(cursor.origin)
      if (wanted === undefined || cursor.header.originPos + cursor.header.count <= wanted.next) continue
      out.length = 0
      if (opener === null) eventsOfRecord(cursor, 0, limit, out)
      const events = opener === null ? out : await opener.takeRecord(cursor, limit)
      for (const event of events) {
        if (event.pos < wanted.next || event.pos >= wanted.end) continue
        wanted.next = event.pos + 1
        yield event
      }
      if (wanted.next >= wanted.end) {
        want.delete(cursor.origin)
        if (want.size === 0) return
      }
    }
  }

  /**
   * Like eventsSince with `raw`, a record at a time: the stored records of each origin beyond
   * `vector`, in local order, clipped to the positions wanted, each with its link or seal when it
   * ends with one (docs/format.md). What sync (protocol v2) sends, with no object per event.
   */
  async *recordsSince(vector: VersionVector = {}): AsyncGenerator<LogRecord> {
    const { want, start } = this.wantedBeyond(vector, 'recordsSince')
    if (want.size === 0) return
    const limit = this.visibility.count
    for await (const cursor of scanRecords(this.readSource, start)) {
      const { header } = cursor
      if (header.localPos >= limit) return
      const wanted = want.get(cursor.origin)
      if (wanted === undefined || header.originPos + header.count <= wanted.next) continue
      const visibleEnd = header.originPos + Math.min(header.count, limit - header.localPos)
      const record = recordOf(cursor, wanted.next, Math.min(wanted.end, visibleEnd))
      if (record === null) continue
      wanted.next = record.pos + record.count
      if (record.seal !== undefined) this.recordsHanded.set(record, { link: new Uint8Array(record.seal), end: record.pos + record.count, state: this.origins.get(record.origin)! })
      yield record
      if (wanted.next >= wanted.end) {
        want.delete(cursor.origin)
        if (want.size === 0) return
      }
    }
  }

  /** Per origin, the positions this log holds beyond `vector` ([next, end) of its visible events), and where in the log to start reading them. */
  private wantedBeyond(vector: VersionVector, verb: string): { want: Map<string, { next: number, end: number }>, start: number } {
    const want = new Map<string, { next: number, end: number }>()
    let start = Infinity
    if (typeof vector !== 'object' || vector === null) throw new LogError('INVALID_ARGUMENT', `${verb} takes a version vector object`)
    for (const [origin, count] of Object.entries(vector)) {
      if (!isReplicaIdHex(origin) || !Number.isSafeInteger(count) || count < 0) {
        throw new LogError('INVALID_ARGUMENT', `${verb}: version vector entry ${origin}: ${String(count)} is not replica id: count`, { origin })
      }
    }
    for (const [origin, state] of this.origins) {
      const have = vector[origin] ?? 0
      if (state.visibleCount <= have) continue
      want.set(origin, { next: have, end: state.visibleCount })
      const offset = state.index.floorOffset(have)
      start = Math.min(start, offset < 0 ? this.table.segments[0]!.start : offset)
    }
    return { want, start }
  }

  private startOffsetFor(localPos: number): number {
    const offset = this.local.index.floorOffset(localPos)
    return offset < 0 ? this.table.segments[0]!.start + SEGMENT_HEADER_BYTES : offset
  }

  /**
   * Stores remote events: idempotent (duplicates are counted, not errors), gapless per origin
   * (an event beyond a gap waits in a bounded buffer until the gap is filled), and authenticated
   * per the trust policy (docs/security.md): a batch that fails is refused, counted in `forged`,
   * and never stored. Options: see MergeOptions (`sealed`, `remote`).
   */
  merge(events: readonly RemoteEvent[], options: MergeOptions = {}): Promise<MergeResult> {
    try {
      this.checkWritable()
      checkRemoteEvents(events, this.options.maxEventBytes)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.merger.merge(events, options)
  }

  /**
   * merge for whole records (what recordsSince yields, what sync v2 carries): the same checks and
   * results, with no object per event when an origin's records come in order from the count held.
   */
  mergeRecords(records: readonly RemoteRecord[], options: MergeOptions = {}): Promise<MergeResult> {
    try {
      this.checkWritable()
      checkRemoteRecords(records, this.options.maxEventBytes)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.merger.mergeRecords(records, options)
  }

  /**
   * Checks every segment: headers, record framing and checksums, sequences, chains. Damage it
   * finds that no fence holds yet is fenced off, as a read finding it would. `onProgress` is told
   * before each segment and at the end. It checks what the log held when it started; the log goes
   * on appending, reading and syncing between segments.
   */
  async verify(options: { onProgress?: (checked: number, segments: number) => void } = {}): Promise<VerifyResult> {
    this.checkOpen()
    await this.flusher.flushAll(false)
    const result = await verifyLog({
      table: this.table, checksum: this.checksum, end: this.committedEnd, length: this.committedCount,
      truncations: this.truncations, onProgress: options.onProgress,
      // Appends, reads and sync go on between segments; a close meanwhile ends the verify.
      pause: async () => {
        await new Promise<void>((resolve) => setImmediate(resolve))
        this.checkOpen()
      },
      currentEnd: () => this.committedEnd,
    })
    for (const found of result.damage) {
      const segment = this.table.segments.find((candidate) => candidate.name === found.segment)
      if (segment === undefined || segment.missing === true) continue
      const offset = segment.start + found.offset
      if (offset >= segment.dataEnd || this.fences.containing(offset) !== undefined) continue
      await this.repairs.found(segment, offset, found.reason, -1, -1).catch(() => undefined)
    }
    return result
  }

  /** Writes and fdatasyncs everything appended or merged so far (with durability 'none' or 'interval'). */
  async flush(): Promise<void> {
    this.group.flush()
    this.checkWritable()
    await this.flusher.flushAll(true)
  }

  /**
   * @internal For the simulator (sim/), not for applications: ends this log as a crash of its
   * process would. Nothing more is
   * written or synced; descriptors are closed and the lock released. Returns the region of the
   * last segment file written since the last fdatasync, which a real crash may keep, lose, tear
   * or fill with garbage. Call it only when no append or merge is running.
   */
  async simulateCrash(): Promise<{ segmentPath: string, syncedOffset: number, writtenOffset: number }> {
    this.checkOpen()
    if (this.timer !== null) clearInterval(this.timer)
    // A crash stops every write at once: a flush scheduled for later never runs.
    this.flusher.stop()
    await this.flusher.settled()
    const segment = this.cache.segment
    const region = {
      segmentPath: segment.path,
      syncedOffset: this.flusher.syncedEnd - segment.start,
      writtenOffset: Math.min(segment.size, alignUp(this.flusher.writtenEnd, PAGE_BYTES) - segment.start),
    }
    this.closing = Promise.resolve()
    this.release()
    return region
  }

  /** Marks the log closed, wakes tails, closes descriptors and releases the lock. */
  private release(): void {
    this.closed = true
    this.flusher.stop()
    this.space.stop()
    // Appends still waiting on a full disk: their batches never became durable.
    if (this.flusher.noSpace !== null) this.flusher.rejectWaiters(this.flusher.noSpace)
    // Pending links (a crash) were never written; after a close nothing is pending.
    void this.pipeline?.stop()
    const waiters = this.growthWaiters
    this.growthWaiters = []
    for (const wake of waiters) wake()
    closeSynced(this.storage, this.flusher.fd)
    this.table.closeAll()
    this.lock.release()
  }

  /** Flushes and syncs everything, releases the lock. Later calls reject with CLOSED. */
  close(): Promise<void> {
    if (this.closing === null) {
      this.group.flush() // single appends made before close() go in
      this.closing = this.closeNow()
    }
    return this.closing
  }

  private async closeNow(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.space.wake()
    while (this.gate !== null) await this.gate
    await this.merger.idle()
    try {
      if (this.flusher.failure === null) await this.flusher.flushAll(true)
    } finally {
      this.release()
    }
  }
}

function checkPosition(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new LogError('INVALID_ARGUMENT', `${name} must be a non-negative integer, got ${String(value)}`, { option: name })
  }
}

/** Opens (creating if needed) the log in `directory`. */
export async function openLog(directory: string, givenOptions?: Readonly<Partial<OpenOptions>>): Promise<Log> {
  if (typeof directory !== 'string' || directory.length === 0) {
    throw new LogError('INVALID_ARGUMENT', 'openLog needs a directory path')
  }
  const options = resolveOptions(givenOptions)
  const layout = deriveLayout(options)
  const checksum = await loadChecksum()
  const resolved = path.resolve(directory)
  if (options.readOnly) {
    if (!options.storage.existsSync(path.join(resolved, FILE_NAME_REPLICA))) {
      throw new LogError('INVALID_ARGUMENT', `no log at ${resolved} (no replica file): a read-only open creates nothing`, { path: resolved, option: 'readOnly' })
    }
  } else {
    try {
      createDirectoryDurably(options.storage, resolved)
    } catch (error) {
      throw new LogError('IO', `cannot create log directory ${resolved}: ${(error as Error).message}`, { path: resolved, cause: error })
    }
  }
  const limits = { payloadBytesMax: options.maxEventBytes, wasmMemoryBytesMax: WASM_MEMORY_BYTES_MAX }
  let validators: { append: Validator[], sync: Validator[] }
  try {
    validators = {
      append: await loadValidators(options.validators.append, 'append', limits),
      sync: await loadValidators(options.validators.sync, 'sync', limits),
    }
  } catch (error) {
    if (!(error instanceof ValidatorLoadError)) throw error
    throw new LogError('INVALID_ARGUMENT', `openLog: ${error.message}`, { validator: error.validator, option: 'validators' })
  }
  const lock = DirectoryLock.acquire(options.storage, resolved, options.readOnly)
  let log: Log | undefined
  try {
    let identity = loadIdentity(options.storage, resolved)
    if (identity === null && options.identity && !options.readOnly && !options.storage.existsSync(path.join(resolved, FILE_NAME_REPLICA))) identity = createIdentity(options.storage, resolved)
    let replica = loadOrCreateReplica(options.storage, resolved, checksum, identity?.replicaIdBytes ?? null, options.now)
    const retired = loadRetiredOrigins(options.storage, resolved)
    if (identity !== null && replica.id !== identity.replicaId) {
      // A move to a new origin that a crash interrupted is finished; anything else is two logs mixed.
      const finished = finishMove(options.storage, resolved, checksum, identity, replica, retired, options.readOnly, options.now)
      if (finished === null) {
        throw new LogError('CORRUPT', `the identity key of ${resolved} derives replica id ${identity.replicaId}, but the replica file says ${replica.id}; ` +
          'one of the two files comes from another log', { path: resolved })
      }
      replica = finished
    }
    const trust = resolveTrust(options.storage, resolved, options.trust, identity?.publicKeyHex ?? null)
    if (trust.mode === 'keys') {
      // Its own earlier keys: what it lacks of its retired origins comes back signed by them.
      for (const origin of retired) {
        const key = origin.identity()
        if (key === null) continue
        ;(trust.keys as Set<string>).add(key.publicKeyHex)
        ;(trust.origins as Set<string>).add(origin.replicaId)
      }
    }
    // Read-only: decrypts only, so no nonce epoch is taken (taking one writes and syncs a file).
    const cipher = options.encryption === null ? null : new PayloadCipher(options.encryption, options.readOnly ? 0 : nextNonceEpoch(options.storage, resolved))
    // A move of own events to a new origin that a crash interrupted is finished before recovery reads them.
    const intent = options.readOnly ? null : readMoveIntent(options.storage, resolved)
    if (intent !== null) {
      rehome({ storage: options.storage, checksum, segments: segmentsOf(options.storage, resolved, checksum), intent, cipher })
      removeMoveIntent(options.storage, resolved)
    }
    log = new Log({
      directory: resolved, options, layout, checksum, lock, replicaId: replica.id, replicaBytes: replica.idBytes, validators,
      identity, trust, cipher, retired,
    })
    if (!options.readOnly) await log.settleOwnOrigin()
    return log
  } catch (error) {
    if (log !== undefined) await log.close().catch(() => undefined)
    else lock.release()
    if (error instanceof LogError) throw error
    const code = (error as NodeJS.ErrnoException).code
    if (typeof code === 'string') {
      throw new LogError('IO', `cannot open log ${resolved}: ${(error as Error).message}`, { path: resolved, cause: error })
    }
    throw error
  }
}

/** The segment files of `directory` with valid headers, in order (for work done before recovery). */
function segmentsOf(storage: Storage, directory: string, checksum: Checksum): Segment[] {
  const segments: Segment[] = []
  for (const file of listSegmentFiles(storage, directory)) {
    const filePath = path.join(directory, file.name)
    const page = Buffer.alloc(SEGMENT_HEADER_BYTES)
    const fd = storage.openSync(filePath, 'read')
    try {
      storage.readSync(fd, page, 0, page.length, 0)
    } finally {
      closeSynced(storage, fd)
    }
    const header = decodeSegmentHeader(page, checksum)
    if (typeof header === 'string') continue
    segments.push({ index: header.index, name: file.name, path: filePath, start: header.start, size: header.size, firstLocalPos: header.firstLocalPos, dataEnd: header.start + header.size })
  }
  return segments
}
