// Recovery at open: rebuild the in-memory state (length, version vector, sparse indexes, segment
// table) from the checkpoint and a scan of what was written after it, repair a torn tail, and
// fence off damage in older data. The decision table (docs/format.md, "Recovery") is implemented
// by the branches of scanSegment and damageAt; each branch says why it is safe.
//
// Faults expected: a crash (process or power) in the middle of a flush leaves any subset of the
// pages of that flush written, each page old, new or torn; a crash while a segment is created
// leaves a file with a missing or torn header: both are cut or removed, since nothing in them was
// acknowledged. Anything else (a bad record followed by records that were already durable, damage
// in a sealed segment, a segment file missing, a header that does not read back) is damage to
// durable data: never cut, and never a reason to refuse the log either. The damaged range is fenced
// off (core/damage.ts): reads go around it, the rest of the log opens, and sync fetches back what
// it held (core/heal.ts). Local positions go on after a fence at the position of the first record
// that reads back; an origin whose sequence jumps over a fence lacks the positions in between.

import path from 'node:path'
import type { Checksum } from './checksum.js'
import { readCheckpoint, type CheckpointBody } from './checkpoint.js'
import { Fence, Fences } from './damage.js'
import { LogError } from './errors.js'
import {
  PAGE_BYTES, RECORD_ALIGN_BYTES, RECORD_BYTES_LIMIT, RECORD_FLAG_CONTINUES, RECORD_HEADER_BYTES, RECORD_KIND_EVENTS,
  RECORD_KIND_HOLE, RECORD_OFFSET_KIND, RECORD_OFFSET_LENGTH, REPLICA_ID_BYTES, SEGMENT_HEADER_BYTES, alignUp,
  bytesToHex, hexToBytes, segmentFileName,
} from './format.js'
import { LocalIndex, OriginState, SparseIndex } from './indexes.js'
import type { LogWarning } from './options.js'
import { RecordHeader, lastNonZero, recordOriginHex, type DecodeResult } from './records.js'
import { SegmentReader, RECOVERY_CHUNK_BYTES, decodeRecordAt } from './segment-reader.js'
import { dataRegions, zeroTail } from './sparse-file.js'
import {
  SegmentTable, createSegmentFile, decodeSegmentHeader, encodeSegmentHeader, listSegmentFiles, type Segment, type SegmentHeader,
} from './segments.js'
import { closeSynced, type Storage } from './storage.js'
import { writeAllSync } from './write-all.js'

export interface Truncation {
  segment: string
  offset: number
  bytes: number
  reason: string
}

export interface RecoveredState {
  table: SegmentTable
  /** The next local position (events held, plus the positions of fenced ranges). */
  length: number
  origins: Map<string, OriginState>
  local: LocalIndex
  /** Global offset just past the last complete batch. */
  end: number
  /** Global offset of the last complete record, or -1. */
  lastRecordOffset: number
  /** Global offset covered by the checkpoint used (0 when none). */
  checkpointEnd: number
  truncations: Truncation[]
  /** Damaged ranges found by the scan. */
  fences: Fences
  /**
   * Why this log may have lost events of its own origin that it had made durable (a damaged range
   * whose events it cannot attribute, a truncated segment, a checkpoint or a consumer that knew a
   * longer log), or null when nothing says so. The log then never appends at positions a peer may
   * hold (core/log.ts).
   */
  ownDoubt: string | null
}

export interface RecoveryContext {
  storage: Storage
  directory: string
  checksum: Checksum
  replicaId: string
  replicaBytes: Uint8Array
  segmentBytes: number
  warn: (warning: LogWarning) => void
  now: () => number
  /** Decide, repair nothing (openLog option `readOnly`): nothing is cut, removed, created or synced. */
  readOnly: boolean
  /** Origins this log appended under before its current one (core/own-origin.ts): segments they made are its own too. */
  retiredIds: ReadonlySet<string>
}

interface PendingRecord { offset: number, localPos: number, originPos: number, count: number, padded: number }

export function originStateFor(origins: Map<string, OriginState>, origin: string): OriginState {
  let state = origins.get(origin)
  if (state === undefined) {
    const bytes = new Uint8Array(REPLICA_ID_BYTES)
    hexToBytes(origin, bytes, 0)
    state = new OriginState(origin, bytes)
    origins.set(origin, state)
  }
  return state
}

class Recovery {
  readonly table: SegmentTable
  readonly origins = new Map<string, OriginState>()
  local = new LocalIndex()
  length = 0
  end = 0
  lastRecordOffset = -1
  checkpointEnd = 0
  readonly truncations: Truncation[] = []
  readonly fences = new Fences()
  private readonly header = new RecordHeader()
  private pending: PendingRecord[] = []
  private pendingOrigin: OriginState | undefined
  private pendingStart = 0
  /** A fence whose end in local positions is not known yet: the next record found sets it. */
  private openFence: Fence | null = null
  /** Per origin: how many fences the scan had found when it last accepted a record of it (a jump needs a fence since). */
  private readonly fencesSeen = new Map<string, number>()
  /** Global offset of the last accepted record of this log's own origin (-1: none seen by the scan). */
  private ownLastOffset = -1
  private ownDoubt: string | null = null

  private readonly storage: Storage

  constructor(private readonly context: RecoveryContext) {
    this.storage = context.storage
    this.table = new SegmentTable(context.storage)
  }

  run(): RecoveredState {
    this.loadSegments()
    const start = this.loadCheckpoint()
    // A checkpoint may end exactly at the end of its segment: scan from the segment holding its
    // last record, which moves on to the next segment by itself.
    let segment: Segment | undefined = this.table.find(this.lastRecordOffset >= 0 ? this.lastRecordOffset : start)
    let offset = start
    while (segment !== undefined) {
      this.scanSegment(segment, offset)
      segment = this.table.next(segment)
      if (segment !== undefined) offset = segment.start + SEGMENT_HEADER_BYTES
    }
    this.closeFences()
    return {
      table: this.table, length: this.length, origins: this.origins, local: this.local, end: this.end,
      lastRecordOffset: this.lastRecordOffset, checkpointEnd: this.checkpointEnd, truncations: this.truncations,
      fences: this.fences, ownDoubt: this.ownDoubt,
    }
  }

  private doubt(reason: string): void {
    this.ownDoubt ??= reason
  }

  private loadSegments(): void {
    const { directory, checksum } = this.context
    const files = listSegmentFiles(this.storage, directory)
    for (let i = 0; i < files.length; i++) {
      const file = files[i]!
      const filePath = path.join(directory, file.name)
      const page = Buffer.alloc(SEGMENT_HEADER_BYTES)
      const fd = this.storage.openSync(filePath, 'read')
      let fileBytes: number
      try {
        this.storage.readSync(fd, page, 0, page.length, 0)
        fileBytes = this.storage.fileSizeSync(fd)
      } finally {
        closeSynced(this.storage, fd)
      }
      const isLast = i === files.length - 1
      let decoded = decodeSegmentHeader(page, checksum)
      if (typeof decoded === 'string') {
        if (decoded.startsWith('segment format version')) throw new LogError('CORRUPT', `segment ${file.name}: ${decoded}`, { segment: file.name, offset: 0, path: filePath })
        if (isLast && !this.holdsRecords(file.name, filePath)) {
          this.dropTornSegment(file.name, filePath, decoded)
          continue
        }
        decoded = this.rebuildHeader(file, filePath, fileBytes, decoded, files[i + 1])
      }
      this.addMissingBefore(file, decoded)
      this.checkHeader(file, filePath, decoded, this.table.segments[this.table.segments.length - 1])
      this.table.add({
        index: decoded.index, name: file.name, path: filePath, start: decoded.start, size: decoded.size,
        firstLocalPos: decoded.firstLocalPos, dataEnd: decoded.start + SEGMENT_HEADER_BYTES, version: decoded.version ?? 1,
      })
      // Why a doubt: segments are preallocated (ftruncate) before anything goes in; a file shorter
      // than its header says, yet longer than the header page, was cut short by something else.
      if (isLast && fileBytes > SEGMENT_HEADER_BYTES && fileBytes < decoded.size) {
        this.doubt(`segment ${file.name} is ${fileBytes} bytes, its header says ${decoded.size}: it was truncated`)
      }
    }
    if (this.table.segments.length === 0) {
      const header = { index: 0, start: 0, size: this.context.segmentBytes, firstLocalPos: 0, replica: this.context.replicaBytes, createdMs: this.context.now() }
      // Read-only: an empty log, with a segment 0 that is not on disk (nothing reads it: it holds no record).
      this.table.add(this.context.readOnly
        ? { index: 0, name: segmentFileName(0), path: path.join(directory, segmentFileName(0)), start: 0, size: header.size, firstLocalPos: 0, dataEnd: SEGMENT_HEADER_BYTES }
        : createSegmentFile(this.storage, directory, header, checksum))
    }
  }

  /**
   * Segment files missing between the last one added and `file` (or before the first): one
   * stand-in without a file spans them (its whole range is fenced by the scan).
   */
  private addMissingBefore(file: { index: number, name: string }, header: SegmentHeader): void {
    const previous = this.table.segments[this.table.segments.length - 1]
    const firstIndex = previous === undefined ? 0 : previous.index + 1
    if (file.index <= firstIndex) return
    const start = previous === undefined ? 0 : previous.start + previous.size
    if (header.start <= start + SEGMENT_HEADER_BYTES) return // checkHeader says what is wrong
    const name = segmentFileName(firstIndex)
    const missing = file.index - firstIndex === 1 ? name : `${name} to ${segmentFileName(file.index - 1)}`
    // One stand-in for all the missing files: its index is the last one's, so that `file` follows it.
    this.table.add({
      index: file.index - 1, name, path: path.join(this.context.directory, name), start, size: header.start - start,
      firstLocalPos: 0, dataEnd: start + SEGMENT_HEADER_BYTES, missing: true,
    })
    this.context.warn({
      code: 'DAMAGED', segment: name, offset: 0,
      message: `interlog: segment file ${missing} is missing from ${this.context.directory}: its range is fenced off, the rest of the log opens, and sync fetches back what it held`,
    })
  }

  /**
   * A header that does not read back, in a segment that holds records (or is not the last):
   * its fields follow from the file and its neighbours, so it is rebuilt (and, unless read-only,
   * written back): the records stay readable.
   */
  private rebuildHeader(file: { index: number, name: string }, filePath: string, fileBytes: number, reason: string,
    next: { index: number, name: string } | undefined): SegmentHeader {
    const previous = this.table.segments[this.table.segments.length - 1]
    const start = previous === undefined ? 0 : previous.start + previous.size
    let size = fileBytes
    if (next !== undefined) {
      const nextHeader = this.peekHeader(path.join(this.context.directory, next.name))
      if (nextHeader !== undefined && next.index === file.index + 1) size = nextHeader.start - start
    }
    if ((previous === undefined && file.index !== 0) || (previous !== undefined && previous.index + 1 !== file.index) ||
      size <= SEGMENT_HEADER_BYTES || size % PAGE_BYTES !== 0) {
      throw new LogError('CORRUPT', `segment ${file.name}: ${reason}, and its neighbours do not say what it held: restore it from a peer or a backup`,
        { segment: file.name, offset: 0, path: filePath })
    }
    const header: SegmentHeader = { index: file.index, start, size, firstLocalPos: 0, replica: this.context.replicaBytes, createdMs: 0 }
    if (!this.context.readOnly) {
      const fd = this.storage.openSync(filePath, 'write')
      try {
        const page = encodeSegmentHeader(header, this.context.checksum)
        writeAllSync(this.storage, fd, page, 0, page.length, 0)
        this.storage.fsyncSync(fd)
      } finally {
        closeSynced(this.storage, fd)
      }
    }
    this.context.warn({
      code: 'DAMAGED', segment: file.name, offset: 0,
      message: `interlog: the header of segment ${file.name} did not read back (${reason}); ` +
        (this.context.readOnly ? 'its records are read with a header rebuilt from its neighbours (not written: opened read-only)' : 'it was rebuilt from its neighbours and written back; its records are intact'),
    })
    return header
  }

  private peekHeader(filePath: string): SegmentHeader | undefined {
    const page = Buffer.alloc(SEGMENT_HEADER_BYTES)
    try {
      const fd = this.storage.openSync(filePath, 'read')
      try {
        this.storage.readSync(fd, page, 0, page.length, 0)
      } finally {
        closeSynced(this.storage, fd)
      }
    } catch {
      return undefined
    }
    const decoded = decodeSegmentHeader(page, this.context.checksum)
    return typeof decoded === 'string' ? undefined : decoded
  }

  private checkHeader(file: { index: number, name: string }, filePath: string, header: SegmentHeader, previous: Segment | undefined): void {
    const fail = (reason: string): never => {
      throw new LogError('CORRUPT', `segment ${file.name}: ${reason}`, { segment: file.name, offset: 0, path: filePath })
    }
    if (header.index !== file.index) fail(`header names segment ${header.index}`)
    const writer = bytesToHex(header.replica)
    if (writer !== this.context.replicaId && !this.context.retiredIds.has(writer)) {
      fail(`written by replica ${writer}, not by this log's replica ${this.context.replicaId}`)
    }
    if (previous === undefined) {
      if (header.index !== 0 || header.start !== 0 || header.firstLocalPos !== 0) fail('first segment does not start the log')
      return
    }
    if (file.index !== previous.index + 1) fail(`segment ${previous.index + 1} is missing`)
    if (header.start !== previous.start + previous.size) fail('segment does not continue the previous one')
  }

  /** Whether the file holds any valid record after its header page (a torn header may only be removed when it does not). */
  private holdsRecords(name: string, filePath: string): boolean {
    const probe: Segment = {
      index: -1, name, path: filePath, start: 0, size: Math.max(this.storage.sizeSync(filePath), SEGMENT_HEADER_BYTES),
      firstLocalPos: 0, dataEnd: 0,
    }
    const fd = this.storage.openSync(filePath, 'read')
    try {
      return this.scanEvidence(new SegmentReader(this.storage, fd, probe), SEGMENT_HEADER_BYTES, 0).records > 0
    } finally {
      closeSynced(this.storage, fd)
    }
  }

  /** The last segment file, whose header is not valid and which holds no record. */
  private dropTornSegment(name: string, filePath: string, reason: string): void {
    // Why safe: a segment is created, its header synced, and the directory synced before any record
    // goes into it; a header that is not valid means the crash came during creation.
    if (!this.context.readOnly) this.storage.rmSync(filePath, false)
    this.context.warn({
      code: 'REMOVED_TORN_SEGMENT', segment: name, offset: 0,
      message: this.context.readOnly
        ? `interlog: segment ${name} is torn (${reason}) and holds no record; left as it is (opened read-only): the next writable open removes it`
        : `interlog: removed segment ${name} (${reason}); it held no record`,
    })
  }

  /** Applies a usable checkpoint; returns the global offset where the scan starts. */
  private loadCheckpoint(): number {
    const first = this.table.segments[0]!
    const fallback = first.start + SEGMENT_HEADER_BYTES
    const read = readCheckpoint(this.storage, this.context.directory, this.context.checksum)
    if (read === undefined) return fallback
    const reason = typeof read === 'string' ? read : this.applyCheckpoint(read)
    if (reason === undefined) return this.end
    this.context.warn({ code: 'CHECKPOINT_IGNORED', message: `interlog: checkpoint ignored (${reason}); scanning the whole log` })
    this.origins.clear()
    this.local = new LocalIndex()
    this.length = 0
    this.end = 0
    this.lastRecordOffset = -1
    for (const segment of this.table.segments) segment.dataEnd = segment.start + SEGMENT_HEADER_BYTES
    return fallback
  }

  private applyCheckpoint(body: CheckpointBody): string | undefined {
    if (body.length === 0) return 'it is empty'
    const last = this.table.segments[this.table.segments.length - 1]!
    // Why a doubt: the checkpoint was written from durable data; a log that ends before it lost some.
    if (body.lastRecordOffset < this.table.segments[0]!.start || body.end > last.start + last.size) {
      this.doubt(`the checkpoint knew ${body.length} local positions, up to offset ${body.end}, past the segments on disk`)
      return 'it points outside the segments'
    }
    const segment = this.table.find(body.lastRecordOffset)
    if (body.end > segment.start + segment.size) return 'its end is outside its segment'
    if (segment.missing === true) return 'its last record is in a missing segment'
    const fd = this.storage.openSync(segment.path, 'read')
    let result: DecodeResult
    try {
      const reader = new SegmentReader(this.storage, fd, segment)
      result = this.decodeAt(reader, body.lastRecordOffset - segment.start)
    } finally {
      closeSynced(this.storage, fd)
    }
    const header = this.header
    if (result !== 'ok') return `its last record does not read back (${result})`
    if (header.localPos + header.count !== body.length || body.lastRecordOffset + header.padded !== body.end ||
      (header.flags & RECORD_FLAG_CONTINUES) !== 0) return 'its last record does not match it'
    for (const [index, dataEnd] of body.segmentEnds) {
      const known = this.table.segments.find((candidate) => candidate.index === index)
      if (known === undefined || dataEnd < known.start || dataEnd > known.start + known.size) return 'its segment list does not match'
      known.dataEnd = dataEnd
    }
    if (!ascending(body.local.positions, body.local.offsets) || !body.origins.every((entry) => ascending(entry.positions, entry.offsets))) {
      return 'its indexes are not in order'
    }
    this.local = new LocalIndex(SparseIndex.from(body.local.positions, body.local.offsets))
    for (const entry of body.origins) {
      const state = originStateFor(this.origins, entry.origin)
      state.count = entry.count
      state.index = SparseIndex.from(entry.positions, entry.offsets)
    }
    this.length = body.length
    this.end = body.end
    this.lastRecordOffset = body.lastRecordOffset
    this.checkpointEnd = body.end
    return undefined
  }

  /** Header fields only: a deflated record is not inflated (its checksum vouches for it; reads check its framing). */
  private decodeAt(reader: SegmentReader, fileOffset: number): DecodeResult {
    return decodeRecordAt(reader, fileOffset, this.context.checksum, this.header, false)
  }

  private scanSegment(segment: Segment, startOffset: number): void {
    if (segment.missing === true) {
      this.fenceMissing(segment)
      return
    }
    const fd = this.storage.openSync(segment.path, this.context.readOnly ? 'read' : 'write')
    try {
      const reader = new SegmentReader(this.storage, fd, segment)
      let offset = startOffset
      const sealed = this.table.next(segment) !== undefined
      while (offset < segment.start + segment.size) {
        const fileOffset = offset - segment.start
        let result = this.decodeAt(reader, fileOffset)
        const decoded = result === 'ok'
        if (result === 'ok') result = this.header.kind === RECORD_KIND_HOLE ? this.acceptHole(segment, offset) : this.checkSequence(reader)
        if (result === 'ok') {
          if (this.header.kind === RECORD_KIND_EVENTS) this.acceptRecord(segment, offset, recordOriginHex(reader.bytes, this.header))
          offset += this.header.padded
          continue
        }
        let resume: number
        if (result === 'zero') {
          const garbage = this.findGarbage(reader, fileOffset)
          if (garbage < 0 && this.pending.length === 0) break // the clean end of this segment (of the log, if it is the last)
          // Why damage: a segment is sealed (written and synced) before the next one is created,
          // and a batch never spans segments; an open batch or records after zeros in a sealed
          // segment are damage, not a torn tail. In the last segment, damageAt weighs the evidence.
          resume = garbage < 0
            ? this.damageAt(reader, fileOffset, sealed ? 'batch cut short before the next segment' : 'incomplete batch at the end')
            : this.damageAt(reader, garbage, sealed ? 'zeros where records were written' : 'bytes after the last record')
        } else {
          // A record that decodes but does not follow: look for the next one after it.
          resume = this.damageAt(reader, fileOffset, result, decoded ? fileOffset + RECORD_ALIGN_BYTES : fileOffset)
        }
        if (resume < 0) break
        offset = resume
      }
      if (reader.fileBytes < segment.size && !this.context.readOnly) this.storage.ftruncateSync(fd, segment.size)
    } finally {
      closeSynced(this.storage, fd)
    }
  }

  /**
   * Checks a record against the sequences: local positions go on (after an open fence: from
   * wherever the first record after it starts), origin positions go on (or jump over fences
   * found since the origin's last record), one origin per batch.
   */
  private checkSequence(reader: SegmentReader): DecodeResult {
    const header = this.header
    const origin = recordOriginHex(reader.bytes, header)
    const pendingEvents = this.pending.reduce((sum, record) => sum + record.count, 0)
    const expectedLocal = this.length + pendingEvents
    if (header.localPos !== expectedLocal && !(this.openFence !== null && pendingEvents === 0 && header.localPos > expectedLocal)) {
      return `record local position ${header.localPos} where ${expectedLocal} was expected`
    }
    if (this.pendingOrigin !== undefined && this.pendingOrigin.origin !== origin) return 'batch changes origin'
    const state = this.pendingOrigin ?? this.origins.get(origin)
    const expected = (state?.count ?? 0) + pendingEvents
    if (header.originPos !== expected) {
      const jump = pendingEvents === 0 && header.originPos > expected ? this.jumpOver(origin, expected, header.originPos, header.localPos) : false
      if (!jump) return `record origin position ${header.originPos} where ${expected} was expected`
    }
    if (this.openFence !== null && pendingEvents === 0) {
      // The first record after a fence: the fence's local positions end where it starts.
      this.openFence.localTo = header.localPos
      this.openFence = null
      this.length = header.localPos
    }
    if (this.pendingOrigin === undefined) this.pendingOrigin = originStateFor(this.origins, origin)
    return 'ok'
  }

  /**
   * Whether `origin` may go on at `to` while this log holds it up to `from`: only over fences found
   * since its last record, whose local positions can hold the events in between. They are
   * attributed to those fences (several fences in a row: ambiguous, so none is repaired in place).
   */
  private jumpOver(origin: string, from: number, to: number, localPos: number): boolean {
    const fences = this.fences.all()
    const first = this.fencesSeen.get(origin) ?? 0
    if (first >= fences.length) return false
    let budget = 0
    for (let i = first; i < fences.length; i++) {
      const fence = fences[i]!
      const localTo = fence.localTo >= 0 ? fence.localTo : localPos
      budget += localTo - fence.localFrom - fence.attributed
    }
    if (to - from > budget) return false
    let at = from
    for (let i = first; i < fences.length && at < to; i++) {
      const fence = fences[i]!
      const localTo = fence.localTo >= 0 ? fence.localTo : localPos
      const take = Math.min(to - at, localTo - fence.localFrom - fence.attributed)
      if (take <= 0) continue
      fence.attribute(origin, at, at + take)
      at += take
    }
    if (fences.length - first > 1) for (const fence of fences.slice(first)) fence.ambiguous = true
    return true
  }

  /** A HOLE record (a repaired range): its local positions are skipped. */
  private acceptHole(segment: Segment, offset: number): DecodeResult {
    const header = this.header
    if (this.pending.length > 0) return 'a hole inside a batch'
    if (header.localPos !== this.length && !(this.openFence !== null && header.localPos > this.length)) {
      return `hole at local position ${header.localPos} where ${this.length} was expected`
    }
    if (this.openFence !== null) {
      this.openFence.localTo = header.localPos
      this.openFence = null
    }
    this.length = header.localPos + header.count
    this.end = offset + header.padded
    segment.dataEnd = this.end
    return 'ok'
  }

  private acceptRecord(segment: Segment, offset: number, origin: string): void {
    const header = this.header
    if (this.pending.length === 0) this.pendingStart = offset
    this.pending.push({ offset, localPos: header.localPos, originPos: header.originPos, count: header.count, padded: header.padded })
    if ((header.flags & RECORD_FLAG_CONTINUES) !== 0) return
    const state = this.pendingOrigin!
    for (const record of this.pending) {
      this.local.noteRecord(record.localPos, record.offset)
      state.noteRecord(record.originPos, record.offset)
      state.count = record.originPos + record.count
      this.length = record.localPos + record.count
    }
    this.fencesSeen.set(origin, this.fences.count)
    if (origin === this.context.replicaId) this.ownLastOffset = offset
    this.lastRecordOffset = offset
    this.end = offset + header.padded
    segment.dataEnd = this.end
    this.pending = []
    this.pendingOrigin = undefined
  }

  /** File offset of the first non-zero byte past `fileOffset` in the segment, or -1. */
  private findGarbage(reader: SegmentReader, fileOffset: number): number {
    for (const [regionStart, regionEnd] of dataRegions(this.storage, reader.fd, fileOffset, reader.segment.size)) {
      for (let chunk = Math.max(regionStart, fileOffset); chunk < regionEnd; chunk += RECOVERY_CHUNK_BYTES) {
        const length = Math.min(RECOVERY_CHUNK_BYTES, regionEnd - chunk)
        const at = reader.ensure(chunk, length)
        for (let i = at; i < at + length; i++) if (reader.bytes[i] !== 0) return chunk + i - at
      }
    }
    return -1
  }

  /**
   * Damage at `damageOffset` (file offset). In the last segment, evidence decides whether it is a
   * torn tail: no valid record after it says the bytes were ever synced, so they are cut (-1:
   * the scan of this segment ends). Otherwise (evidence of durable data after it, or a sealed
   * segment) the range up to the next valid record is fenced off, and the scan goes on from that
   * record (its global offset), or from the next segment (-1).
   */
  private damageAt(reader: SegmentReader, damageOffset: number, reason: string, searchFrom = damageOffset): number {
    const segment = reader.segment
    const lastFence = this.fences.all()[this.fences.count - 1]
    const floor = Math.max(this.end, segment.start + SEGMENT_HEADER_BYTES, lastFence?.segment === segment ? lastFence.end : 0)
    const cutOffset = (this.pending.length > 0 ? this.pendingStart : floor) - segment.start
    const isLast = this.table.next(segment) === undefined
    const evidence = this.scanEvidence(reader, searchFrom, this.length)
    if (isLast && evidence.durableMax <= this.length) {
      this.cutTail(reader, cutOffset, reason)
      return -1
    }
    // Why fenced, not cut: a record after it was composed once events past the cut point were
    // synced (`durable`), or the segment was sealed before the next one was made; either way these
    // bytes held durable, maybe acknowledged, data.
    const resume = evidence.first >= 0 ? evidence.first : segment.size
    const fence = new Fence(segment, segment.start + cutOffset, segment.start + resume, segment.start + cutOffset, this.length, reason, 'open')
    fence.damageOffset = damageOffset
    this.addFence(fence)
    return evidence.first >= 0 ? segment.start + evidence.first : -1
  }

  /** A segment whose file is missing: its whole range is one fence. */
  private fenceMissing(segment: Segment): void {
    if (this.pending.length > 0) {
      throw new LogError('CORRUPT', `a batch runs into missing segment ${segment.name}`, { segment: segment.name, offset: 0 })
    }
    const fence = new Fence(segment, segment.start + SEGMENT_HEADER_BYTES, segment.start + segment.size, segment.start + SEGMENT_HEADER_BYTES,
      this.length, 'segment file missing', 'open')
    fence.damageOffset = SEGMENT_HEADER_BYTES
    this.addFence(fence)
  }

  private addFence(fence: Fence): void {
    if (this.openFence !== null) {
      // Two in a row with no record between: the first ends where the second begins.
      this.openFence.localTo = this.length
    }
    this.pending = []
    this.pendingOrigin = undefined
    this.fences.add(fence)
    this.openFence = fence
    this.context.warn({
      code: 'DAMAGED', segment: fence.segment.name, offset: fence.damageOffset,
      message: `interlog: segment ${fence.segment.name} is damaged at offset ${fence.damageOffset} (${fence.reason}); ` +
        `bytes ${fence.start - fence.segment.start} to ${fence.end - fence.segment.start} are fenced off: reads go around them, ` +
        'the rest of the log opens, and sync fetches back what they held (verify lists them)',
    })
  }

  /** The end of the scan: open fences end here; what nobody can attribute may have been this log's own. */
  private closeFences(): void {
    if (this.openFence !== null) {
      this.openFence.localTo = this.length
      this.openFence.tailUnknown = true
      this.openFence = null
    }
    for (const fence of this.fences.all()) {
      const ownMayBeThere = this.ownLastOffset < fence.start && (fence.tailUnknown || fence.elsewhere > 0 || fence.ambiguous)
      if (ownMayBeThere) {
        this.doubt(`damaged range at offset ${fence.damageOffset} of segment ${fence.segment.name} may have held events of this log's own ` +
          'origin that no record after it accounts for')
      }
    }
  }

  /** Cuts the torn tail of the last segment at `cutOffset`: zeroes it and reports the bytes dropped. */
  private cutTail(reader: SegmentReader, cutOffset: number, reason: string): void {
    const segment = reader.segment
    let lastDirty = -1
    for (const [regionStart, regionEnd] of dataRegions(this.storage, reader.fd, cutOffset, segment.size)) {
      for (let chunk = Math.max(regionStart, cutOffset); chunk < regionEnd; chunk += RECOVERY_CHUNK_BYTES) {
        const length = Math.min(RECOVERY_CHUNK_BYTES, regionEnd - chunk)
        const at = reader.ensure(chunk, length)
        const found = lastNonZero(reader.bytes, at, at + length)
        if (found >= 0) lastDirty = chunk + found - at
      }
    }
    const bytes = lastDirty < cutOffset ? 0 : lastDirty + 1 - cutOffset
    // Why safe: no valid record after the damage says the cut bytes were ever synced.
    if (!this.context.readOnly) {
      if (bytes > 0) zeroTail(this.storage, reader.fd, cutOffset, segment.size)
      this.storage.fsyncSync(reader.fd)
    }
    this.pending = []
    this.pendingOrigin = undefined
    const truncation = { segment: segment.name, offset: cutOffset, bytes, reason }
    this.truncations.push(truncation)
    this.context.warn({
      code: 'TRUNCATED_TAIL',
      message: this.context.readOnly
        ? `interlog: torn tail in segment ${segment.name} at offset ${cutOffset}: ${bytes} bytes (${reason}), not cut (opened read-only): ` +
          'reads stop before it, and the next writable open cuts it'
        : `interlog: torn tail cut in segment ${segment.name} at offset ${cutOffset}: ${bytes} bytes dropped (${reason}); ` +
          'no record after them says they were ever synced',
      segment: segment.name, offset: cutOffset, bytes,
    })
  }

  /**
   * Valid records at 8-byte steps from `fromOffset` whose position is at least `minLocalPos`: how
   * many, the largest durable watermark among them, and the file offset of the first (-1: none).
   */
  private scanEvidence(reader: SegmentReader, fromOffset: number, minLocalPos: number): { records: number, durableMax: number, first: number } {
    let records = 0
    let durableMax = -1
    let first = -1
    const size = reader.segment.size
    for (const [regionStart, regionEnd] of dataRegions(this.storage, reader.fd, alignUp(fromOffset, RECORD_ALIGN_BYTES), size)) {
      // A record may start up to one header before a region boundary only if its header is data too.
      for (let offset = alignUp(Math.max(regionStart, fromOffset), RECORD_ALIGN_BYTES); offset < regionEnd && offset + RECORD_HEADER_BYTES <= size; offset += RECORD_ALIGN_BYTES) {
        const at = reader.ensure(offset, RECORD_HEADER_BYTES)
        const length = reader.view.getUint32(at + RECORD_OFFSET_LENGTH, true)
        const kind = reader.bytes[at + RECORD_OFFSET_KIND]
        if (length < RECORD_HEADER_BYTES || length > RECORD_BYTES_LIMIT || (kind !== RECORD_KIND_EVENTS && kind !== RECORD_KIND_HOLE)) continue
        if (this.decodeAt(reader, offset) !== 'ok' || this.header.localPos < minLocalPos) continue
        if (first < 0) first = offset
        records++
        durableMax = Math.max(durableMax, this.header.durable)
      }
    }
    return { records, durableMax, first }
  }
}

function ascending(positions: readonly number[], offsets: readonly number[]): boolean {
  if (positions.length !== offsets.length) return false
  for (let i = 1; i < positions.length; i++) {
    if (positions[i]! < positions[i - 1]! || offsets[i]! <= offsets[i - 1]!) return false
  }
  return true
}

export function recover(context: RecoveryContext): RecoveredState {
  return new Recovery(context).run()
}
