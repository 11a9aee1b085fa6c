// Reading records in log order, from the head cache when they are still there and from the
// segment files otherwise. Records read from disk are checked (framing and checksum) before any of
// their events is handed out. Damaged ranges are skipped (core/damage.ts): those known already, and
// those a read finds, which the source fences off on the spot (or, where it cannot, CORRUPT
// naming segment and offset). HOLE records (repaired ranges) hold no events and are skipped too.
//
// Memory: each chunk is a fresh buffer that InterLog never reuses, so payloads handed out are
// views into it and stay valid for as long as the caller keeps them. Chunks are at most
// READ_CHUNK_BYTES unless one record is larger.

import type { Checksum } from './checksum.js'
import type { Fence, Fences } from './damage.js'
import { LogError } from './errors.js'
import {
  RECORD_FLAG_CONTINUES, RECORD_HEADER_BYTES, RECORD_KIND_HOLE, RECORD_OFFSET_LENGTH, SEGMENT_HEADER_BYTES, EVENT_HEADER_BYTES, EVENT_OFFSET_LENGTH,
  EVENT_OFFSET_TIME, readU64,
} from './format.js'
import type { HeadCache } from './head-cache.js'
import { RecordHeader, bodyOf, decodeRecord, recordOriginHex } from './records.js'
import { extensionSeal } from './seal.js'
import type { Segment, SegmentTable } from './segments.js'
import type { Storage } from './storage.js'

export const READ_CHUNK_BYTES = 256 << 10

export interface ReadSource {
  readonly table: SegmentTable
  readonly cache: HeadCache
  readonly checksum: Checksum
  /** Global offset past the last committed record (grows while reading). */
  committedEnd(): number
  /** Global offset up to which the current segment is written to its file. */
  writtenEnd(): number
  /** Throws CLOSED once the log is closed. */
  checkOpen(): void
  /** Damaged ranges: reads skip them. */
  readonly fences: Fences
  /**
   * Damage found by this read at global offset `offset` of `segment` (`reason`): fences it off and
   * returns the fence (reads go on at its end), or throws CORRUPT when it cannot. `expectedLocal`
   * is the local position the damaged record should start at (-1 when the read does not know),
   * `batchStart` the global offset where its batch began (-1 when not known).
   */
  fenceFound(segment: Segment, offset: number, reason: string, expectedLocal: number, batchStart: number): Promise<Fence>
}

/** One event, as yielded by read, tail and eventsSince. */
export interface LogEvent {
  /** Position in this log (all origins, in the order this log received them). */
  localPos: number
  /** Replica id of the log that appended it. */
  origin: string
  /** Position in the origin's own sequence. */
  pos: number
  /** Origin wall clock, ms since the Unix epoch. */
  time: number
  /** A view into a buffer InterLog never reuses: safe to keep, do not write to it. */
  payload: Uint8Array
  /** On the last event of a record that ends with a link or seal (docs/format.md), which sync forwards. */
  seal?: Uint8Array
}

/**
 * The events of one stored record of one origin, framed as stored: what sync (protocol v2) and
 * bundles move, with no object per event. `body` holds, for each event, its 12-byte event header
 * (u32 payload length, u64 time; docs/format.md) and its payload, ciphertext when the log encrypts.
 */
export interface LogRecord {
  origin: string
  /** Origin position of its first event. */
  pos: number
  /** Local position of its first event in this log. */
  localPos: number
  count: number
  /** A view into a buffer InterLog never reuses: safe to keep, do not write to it. */
  body: Buffer
  /** The link or seal the record ends with, when it has one and the record is whole at its end. */
  seal?: Buffer
}

/** A record read in log order; `bytes`/`view` hold it at `header.at`. Valid until the next one. */
export interface RecordCursor {
  bytes: Buffer
  view: DataView
  header: RecordHeader
  /** Global offset of the record. */
  offset: number
  origin: string
}

function readAsync(storage: Storage, fd: number, buffer: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    storage.read(fd, buffer, 0, length, position, (error, bytesRead) => (error === null ? resolve(bytesRead) : reject(error)))
  })
}

async function loadChunk(source: ReadSource, segment: Segment, offset: number, limit: number, length: number): Promise<{ bytes: Buffer, fromDisk: boolean }> {
  const end = Math.min(limit, offset + length)
  if (source.cache.holds(segment, offset, end)) return { bytes: source.cache.copyOut(offset, end), fromDisk: false }
  const bytes = Buffer.allocUnsafe(end - offset)
  let got: number
  const fd = source.table.acquireRead(segment)
  try {
    got = await readAsync(source.table.storage, fd, bytes, end - offset, offset - segment.start)
  } catch (error) {
    throw new LogError('IO', `cannot read segment ${segment.name} at ${offset - segment.start}: ${(error as Error).message}`,
      { segment: segment.name, offset: offset - segment.start, cause: error })
  } finally {
    source.table.releaseRead(segment)
  }
  if (got < end - offset) bytes.fill(0, got)
  return { bytes, fromDisk: true }
}

/**
 * Records from global offset `start` (a record boundary) up to the committed end as it grows,
 * around damaged ranges (see the top of this file). Stops when the committed end is reached.
 */
export async function* scanRecords(source: ReadSource, start: number, onSkip?: (fence: Fence) => void): AsyncGenerator<RecordCursor> {
  source.checkOpen()
  let segment = source.table.findForRead(start)
  let offset = Math.max(start, segment.start + SEGMENT_HEADER_BYTES)
  const header = new RecordHeader()
  /** What the read knows of the record at `offset`: its local position and its batch's start (-1: not known). */
  let expectedLocal = -1
  let batchStart = -1
  let recheckedAt = -1
  for (;;) {
    source.checkOpen()
    const committed = source.committedEnd()
    if (offset >= committed) return
    const fence = source.fences.containing(offset)
    if (fence !== undefined) {
      onSkip?.(fence)
      offset = fence.end
      expectedLocal = fence.localTo >= 0 ? fence.localTo : -1
      batchStart = -1
    }
    if (offset >= segment.dataEnd || segment.missing === true) {
      const next = source.table.next(segment)
      if (next === undefined) return
      segment = next
      offset = Math.max(offset, segment.start + SEGMENT_HEADER_BYTES)
      continue
    }
    const limit = segment === source.cache.segment ? Math.min(segment.dataEnd, committed) : segment.dataEnd
    const diskLimit = segment === source.cache.segment ? Math.min(limit, Math.max(source.writtenEnd(), source.cache.windowStart)) : limit
    let chunk = await loadChunk(source, segment, offset, source.cache.holds(segment, offset, offset + 1) ? limit : diskLimit, READ_CHUNK_BYTES)
    let view = new DataView(chunk.bytes.buffer, chunk.bytes.byteOffset, chunk.bytes.byteLength)
    let at = 0
    while (at < chunk.bytes.length) {
      if (at > 0 && source.fences.containing(offset) !== undefined) break // a fence starts here: skip it above
      const result = decodeRecord(chunk.bytes, view, at, chunk.bytes.length, chunk.fromDisk ? source.checksum : null, header)
      if (result === 'short' && at === 0 && chunk.bytes.length >= RECORD_HEADER_BYTES) {
        // One record larger than a chunk: read exactly it.
        const length = view.getUint32(RECORD_OFFSET_LENGTH, true)
        if (offset + length > limit) {
          const fence = await source.fenceFound(segment, offset, 'record runs past the end of the written data', expectedLocal, batchStart)
          onSkip?.(fence)
          offset = fence.end
          break
        }
        chunk = await loadChunk(source, segment, offset, limit, length)
        view = new DataView(chunk.bytes.buffer, chunk.bytes.byteOffset, chunk.bytes.byteLength)
        if (chunk.bytes.length < length) {
          const fence = await source.fenceFound(segment, offset, 'record runs past the end of the written data', expectedLocal, batchStart)
          onSkip?.(fence)
          offset = fence.end
          break
        }
        continue
      }
      if (result === 'short') break
      if (result !== 'ok' || (expectedLocal >= 0 && header.localPos !== expectedLocal)) {
        // Read once more before fencing: a repair may have rewritten these bytes since the chunk was read.
        if (chunk.fromDisk && recheckedAt !== offset) {
          recheckedAt = offset
          break
        }
        const reason = result === 'ok' ? `record local position ${header.localPos} where ${expectedLocal} was expected` : result === 'zero' ? 'zeros where a record was written' : result
        const fence = await source.fenceFound(segment, offset, reason, expectedLocal, batchStart)
        onSkip?.(fence)
        offset = fence.end
        expectedLocal = fence.localTo >= 0 ? fence.localTo : -1
        batchStart = -1
        break
      }
      expectedLocal = header.localPos + header.count
      const continues = header.kind !== RECORD_KIND_HOLE && (header.flags & RECORD_FLAG_CONTINUES) !== 0
      if (header.kind !== RECORD_KIND_HOLE) yield { bytes: chunk.bytes, view, header, offset, origin: recordOriginHex(chunk.bytes, header) }
      at += header.padded
      offset += header.padded
      if (!continues) batchStart = offset
    }
  }
}

/** Appends to `out` the events of a record with local positions in [from, to). */
export function eventsOfRecord(cursor: RecordCursor, from: number, to: number, out: LogEvent[]): void {
  const { header } = cursor
  const { bytes, view } = bodyOf(cursor.bytes, cursor.view, header)
  let at = header.bodyStart
  for (let i = 0; i < header.count; i++) {
    const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
    const localPos = header.localPos + i
    if (localPos >= from && localPos < to) {
      const event: LogEvent = {
        localPos,
        origin: cursor.origin,
        pos: header.originPos + i,
        time: readU64(view, at + EVENT_OFFSET_TIME),
        payload: bytes.subarray(at + EVENT_HEADER_BYTES, at + EVENT_HEADER_BYTES + length),
      }
      if (i === header.count - 1 && header.extensionBytes > 0) {
        const seal = extensionSeal(cursor.bytes, header.extensionAt, header.extensionBytes)
        if (seal !== null) event.seal = seal
      }
      out.push(event)
    }
    at += EVENT_HEADER_BYTES + length
  }
}

/** The events of a record with origin positions in [from, to), as a LogRecord (null: none of them). */
export function recordOf(cursor: RecordCursor, from: number, to: number): LogRecord | null {
  const { header } = cursor
  const { bytes, view } = bodyOf(cursor.bytes, cursor.view, header)
  const first = Math.max(from, header.originPos)
  const end = Math.min(to, header.originPos + header.count)
  if (first >= end) return null
  let at = header.bodyStart
  let start = at
  for (let pos = header.originPos; pos < end; pos++) {
    if (pos === first) start = at
    at += EVENT_HEADER_BYTES + view.getUint32(at + EVENT_OFFSET_LENGTH, true)
  }
  const record: LogRecord = { origin: cursor.origin, pos: first, localPos: header.localPos + first - header.originPos, count: end - first, body: bytes.subarray(start, at) }
  if (end === header.originPos + header.count && header.extensionBytes > 0) {
    const seal = extensionSeal(cursor.bytes, header.extensionAt, header.extensionBytes)
    if (seal !== null) record.seal = seal as Buffer
  }
  return record
}
