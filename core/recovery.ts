// Recovery at open: rebuild the in-memory state (length, version vector, sparse indexes, segment
// table) from the checkpoint and a scan of what was written after it, and repair a torn tail.
// The decision table (docs/format.md, "Recovery") is implemented by decideDamage and the branches
// of scanSegment; each branch says why it is safe.
//
// Faults expected: a crash (process or power) in the middle of a flush leaves any subset of the
// pages of that flush written, each page old, new or torn; a crash while a segment is created
// leaves a file with a missing or torn header. Anything else (a bad record followed by records
// that were already durable, a bad header in a sealed segment) is corruption: never cut, reported
// as CORRUPT with segment and offset.

import path from 'node:path'
import type { Checksum } from './checksum.js'
import { readCheckpoint, type CheckpointBody } from './checkpoint.js'
import { LogError } from './errors.js'
import {
  RECORD_BYTES_LIMIT, RECORD_FLAG_CONTINUES, RECORD_HEADER_BYTES, RECORD_KIND_EVENTS, RECORD_OFFSET_KIND,
  RECORD_OFFSET_LENGTH, SEGMENT_HEADER_BYTES, alignUp, bytesToHex, hexToBytes, REPLICA_ID_BYTES,
  RECORD_ALIGN_BYTES,
} from './format.js'
import { LocalIndex, OriginState, SparseIndex } from './indexes.js'
import type { LogWarning } from './options.js'
import { RecordHeader, lastNonZero, recordOriginHex, type DecodeResult } from './records.js'
import { SegmentReader, RECOVERY_CHUNK_BYTES, decodeRecordAt } from './segment-reader.js'
import { dataRegions, zeroTail } from './sparse-file.js'
import {
  SegmentTable, createSegmentFile, decodeSegmentHeader, listSegmentFiles, type Segment, type SegmentHeader,
} from './segments.js'
import { closeSynced, type Storage } from './storage.js'

export interface Truncation {
  segment: string
  offset: number
  bytes: number
  reason: string
}

export interface RecoveredState {
  table: SegmentTable
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

function corrupt(segment: Segment, offset: number, reason: string): LogError {
  return new LogError('CORRUPT',
    `segment ${segment.name} is damaged at offset ${offset} (${reason}) and records after it were already durable; ` +
    'nothing was cut. Run verify() for the full list of damage, and restore the segment from a replica or backup',
    { segment: segment.name, offset, path: segment.path })
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
  private readonly header = new RecordHeader()
  private pending: PendingRecord[] = []
  private pendingOrigin: OriginState | undefined
  private pendingStart = 0

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
    return {
      table: this.table, length: this.length, origins: this.origins, local: this.local, end: this.end,
      lastRecordOffset: this.lastRecordOffset, checkpointEnd: this.checkpointEnd, truncations: this.truncations,
    }
  }

  private loadSegments(): void {
    const { directory, checksum } = this.context
    const files = listSegmentFiles(this.storage, directory)
    for (let i = 0; i < files.length; i++) {
      const file = files[i]!
      const filePath = path.join(directory, file.name)
      const page = Buffer.alloc(SEGMENT_HEADER_BYTES)
      const fd = this.storage.openSync(filePath, 'read')
      try {
        this.storage.readSync(fd, page, 0, page.length, 0)
      } finally {
        closeSynced(this.storage, fd)
      }
      const decoded = decodeSegmentHeader(page, checksum)
      const previous = this.table.segments[this.table.segments.length - 1]
      if (typeof decoded === 'string') {
        this.dropTornSegment(file.name, filePath, decoded, i === files.length - 1)
        continue
      }
      this.checkHeader(file, filePath, decoded, previous)
      this.table.add({
        index: decoded.index, name: file.name, path: filePath, start: decoded.start, size: decoded.size,
        firstLocalPos: decoded.firstLocalPos, dataEnd: decoded.start + SEGMENT_HEADER_BYTES,
      })
    }
    if (this.table.segments.length === 0) {
      const header = { index: 0, start: 0, size: this.context.segmentBytes, firstLocalPos: 0, replica: this.context.replicaBytes, createdMs: this.context.now() }
      // Read-only: an empty log, with a segment 0 that is not on disk (nothing reads it: it holds no record).
      this.table.add(this.context.readOnly
        ? { index: 0, name: '000000000000.seg', path: path.join(directory, '000000000000.seg'), start: 0, size: header.size, firstLocalPos: 0, dataEnd: SEGMENT_HEADER_BYTES }
        : createSegmentFile(this.storage, directory, header, checksum))
    }
  }

  private checkHeader(file: { index: number, name: string }, filePath: string, header: SegmentHeader, previous: Segment | undefined): void {
    const fail = (reason: string): never => {
      throw new LogError('CORRUPT', `segment ${file.name}: ${reason}`, { segment: file.name, offset: 0, path: filePath })
    }
    if (header.index !== file.index) fail(`header names segment ${header.index}`)
    if (bytesToHex(header.replica) !== this.context.replicaId) {
      fail(`written by replica ${bytesToHex(header.replica)}, not by this log's replica ${this.context.replicaId}`)
    }
    if (previous === undefined) {
      if (header.index !== 0 || header.start !== 0 || header.firstLocalPos !== 0) fail('first segment does not start the log')
      return
    }
    if (file.index !== previous.index + 1) fail(`segment ${previous.index + 1} is missing`)
    if (header.start !== previous.start + previous.size) fail('segment does not continue the previous one')
  }

  /** A segment whose header is not valid: safe to remove only if it is the last and holds no record. */
  private dropTornSegment(name: string, filePath: string, reason: string, isLast: boolean): void {
    const probe: Segment = {
      index: -1, name, path: filePath, start: 0, size: Math.max(this.storage.sizeSync(filePath), SEGMENT_HEADER_BYTES),
      firstLocalPos: 0, dataEnd: 0,
    }
    if (!isLast || reason.startsWith('segment format version')) {
      throw new LogError('CORRUPT', `segment ${name}: ${reason}`, { segment: name, offset: 0, path: filePath })
    }
    const fd = this.storage.openSync(filePath, 'read')
    try {
      const evidence = this.scanEvidence(new SegmentReader(this.storage, fd, probe), SEGMENT_HEADER_BYTES, 0)
      if (evidence.records > 0) throw new LogError('CORRUPT', `segment ${name}: ${reason}, and it holds records`, { segment: name, offset: 0, path: filePath })
    } finally {
      closeSynced(this.storage, fd)
    }
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
    if (body.lastRecordOffset < this.table.segments[0]!.start || body.end > last.start + last.size) return 'it points outside the segments'
    const segment = this.table.find(body.lastRecordOffset)
    if (body.end > segment.start + segment.size) return 'its end is outside its segment'
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

  private decodeAt(reader: SegmentReader, fileOffset: number): DecodeResult {
    return decodeRecordAt(reader, fileOffset, this.context.checksum, this.header)
  }

  private scanSegment(segment: Segment, startOffset: number): void {
    const fd = this.storage.openSync(segment.path, this.context.readOnly ? 'read' : 'write')
    try {
      const reader = new SegmentReader(this.storage, fd, segment)
      let offset = startOffset
      for (;;) {
        const fileOffset = offset - segment.start
        let result = this.decodeAt(reader, fileOffset)
        if (result === 'ok') result = this.checkSequence(reader)
        if (result === 'ok') {
          this.acceptRecord(segment, offset)
          offset += this.header.padded
          continue
        }
        if (result === 'zero') {
          if (this.table.next(segment) !== undefined) {
            // Why safe: a segment is sealed (written and synced) before the next one is created,
            // and a batch never spans segments; an open batch here is damage, not a torn tail.
            if (this.pending.length > 0) throw corrupt(segment, this.pendingStart - segment.start, 'batch cut short before the next segment')
            return
          }
          const garbage = this.findGarbage(reader, fileOffset)
          if (garbage < 0 && this.pending.length === 0) break // clean end of the log
          this.decideDamage(reader, garbage < 0 ? fileOffset : garbage, garbage < 0 ? 'incomplete batch at the end' : 'bytes after the last record')
          break
        }
        this.decideDamage(reader, fileOffset, result)
        break
      }
      if (reader.fileBytes < segment.size && !this.context.readOnly) this.storage.ftruncateSync(fd, segment.size)
    } finally {
      closeSynced(this.storage, fd)
    }
  }

  private checkSequence(reader: SegmentReader): DecodeResult {
    const header = this.header
    const origin = recordOriginHex(reader.bytes, header)
    const pendingEvents = this.pending.reduce((sum, record) => sum + record.count, 0)
    if (header.localPos !== this.length + pendingEvents) {
      return `record local position ${header.localPos} where ${this.length + pendingEvents} was expected`
    }
    if (this.pendingOrigin !== undefined && this.pendingOrigin.origin !== origin) return 'batch changes origin'
    const state = this.pendingOrigin ?? this.origins.get(origin)
    const expected = (state?.count ?? 0) + pendingEvents
    if (header.originPos !== expected) return `record origin position ${header.originPos} where ${expected} was expected`
    if (this.pendingOrigin === undefined) this.pendingOrigin = originStateFor(this.origins, origin)
    return 'ok'
  }

  private acceptRecord(segment: Segment, offset: number): void {
    const header = this.header
    if (this.pending.length === 0) this.pendingStart = offset
    this.pending.push({ offset, localPos: header.localPos, originPos: header.originPos, count: header.count, padded: header.padded })
    if ((header.flags & RECORD_FLAG_CONTINUES) !== 0) return
    const origin = this.pendingOrigin!
    for (const record of this.pending) {
      this.local.noteRecord(record.localPos, record.offset)
      origin.noteRecord(record.originPos, record.offset)
      origin.count += record.count
      this.length += record.count
    }
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
   * Damage at `damageOffset` (file offset) in the last segment. The cut point is the start of the
   * batch in progress there. Evidence decides: a valid record after the damage whose durable
   * watermark covers the cut means the damaged bytes had been synced: CORRUPT. Otherwise the
   * damage is the torn, unsynced tail: cut it, zero it, report the bytes dropped.
   */
  private decideDamage(reader: SegmentReader, damageOffset: number, reason: string): void {
    const segment = reader.segment
    const cutOffset = (this.pending.length > 0 ? this.pendingStart : Math.max(this.end, segment.start + SEGMENT_HEADER_BYTES)) - segment.start
    if (this.table.next(segment) !== undefined) throw corrupt(segment, damageOffset, reason)
    const evidence = this.scanEvidence(reader, damageOffset, this.length)
    if (evidence.durableMax > this.length) throw corrupt(segment, damageOffset, reason)
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

  /** Valid records at 8-byte steps from `fromOffset` whose position is at least `minLocalPos`. */
  private scanEvidence(reader: SegmentReader, fromOffset: number, minLocalPos: number): { records: number, durableMax: number } {
    let records = 0
    let durableMax = -1
    const size = reader.segment.size
    for (const [regionStart, regionEnd] of dataRegions(this.storage, reader.fd, alignUp(fromOffset, RECORD_ALIGN_BYTES), size)) {
      // A record may start up to one header before a region boundary only if its header is data too.
      for (let offset = alignUp(Math.max(regionStart, fromOffset), RECORD_ALIGN_BYTES); offset < regionEnd && offset + RECORD_HEADER_BYTES <= size; offset += RECORD_ALIGN_BYTES) {
        const at = reader.ensure(offset, RECORD_HEADER_BYTES)
        const length = reader.view.getUint32(at + RECORD_OFFSET_LENGTH, true)
        if (length < RECORD_HEADER_BYTES || length > RECORD_BYTES_LIMIT || reader.bytes[at + RECORD_OFFSET_KIND] !== RECORD_KIND_EVENTS) continue
        if (this.decodeAt(reader, offset) !== 'ok' || this.header.localPos < minLocalPos) continue
        records++
        durableMax = Math.max(durableMax, this.header.durable)
      }
    }
    return { records, durableMax }
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
