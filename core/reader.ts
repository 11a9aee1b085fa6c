// Reading records in log order, from the head cache when they are still there and from the
// segment files otherwise. Records read from disk are checked (framing and checksum) before any of
// their events is handed out; damage is CORRUPT naming segment and offset.
//
// Memory: each chunk is a fresh buffer that InterLog never reuses, so payloads handed out are
// views into it and stay valid for as long as the caller keeps them. Chunks are at most
// READ_CHUNK_BYTES unless one record is larger.

import type { Checksum } from './checksum.js'
import { LogError } from './errors.js'
import { RECORD_HEADER_BYTES, RECORD_OFFSET_LENGTH, SEGMENT_HEADER_BYTES, EVENT_HEADER_BYTES, EVENT_OFFSET_LENGTH, EVENT_OFFSET_TIME, readU64 } from './format.js'
import type { HeadCache } from './head-cache.js'
import { RecordHeader, decodeRecord, recordOriginHex } from './records.js'
import { isSealSized } from './seal.js'
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
 * Records from global offset `start` (a record boundary) up to the committed end as it grows.
 * Stops when the committed end is reached; `stop` may end it earlier.
 */
export async function* scanRecords(source: ReadSource, start: number): AsyncGenerator<RecordCursor> {
  source.checkOpen()
  let segment = source.table.findForRead(start)
  let offset = Math.max(start, segment.start + SEGMENT_HEADER_BYTES)
  const header = new RecordHeader()
  for (;;) {
    source.checkOpen()
    const committed = source.committedEnd()
    if (offset >= committed) return
    if (offset >= segment.dataEnd) {
      const next = source.table.next(segment)
      if (next === undefined) return
      segment = next
      offset = segment.start + SEGMENT_HEADER_BYTES
      continue
    }
    const limit = segment === source.cache.segment ? Math.min(segment.dataEnd, committed) : segment.dataEnd
    const diskLimit = segment === source.cache.segment ? Math.min(limit, Math.max(source.writtenEnd(), source.cache.windowStart)) : limit
    let chunk = await loadChunk(source, segment, offset, source.cache.holds(segment, offset, offset + 1) ? limit : diskLimit, READ_CHUNK_BYTES)
    let view = new DataView(chunk.bytes.buffer, chunk.bytes.byteOffset, chunk.bytes.byteLength)
    let at = 0
    while (at < chunk.bytes.length) {
      const result = decodeRecord(chunk.bytes, view, at, chunk.bytes.length, chunk.fromDisk ? source.checksum : null, header)
      if (result === 'short' && at === 0 && chunk.bytes.length >= RECORD_HEADER_BYTES) {
        // One record larger than a chunk: read exactly it.
        const length = view.getUint32(RECORD_OFFSET_LENGTH, true)
        if (offset + length > limit) throw damaged(segment, offset, 'record runs past the end of the written data')
        chunk = await loadChunk(source, segment, offset, limit, length)
        view = new DataView(chunk.bytes.buffer, chunk.bytes.byteOffset, chunk.bytes.byteLength)
        if (chunk.bytes.length < length) throw damaged(segment, offset, 'record runs past the end of the written data')
        continue
      }
      if (result === 'short') break
      if (result !== 'ok') throw damaged(segment, offset, result === 'zero' ? 'zeros where a record was written' : result)
      yield { bytes: chunk.bytes, view, header, offset, origin: recordOriginHex(chunk.bytes, header) }
      at += header.padded
      offset += header.padded
    }
  }
}

function damaged(segment: Segment, offset: number, reason: string): LogError {
  return new LogError('CORRUPT', `segment ${segment.name} is damaged at offset ${offset - segment.start} (${reason}); run verify()`,
    { segment: segment.name, offset: offset - segment.start, path: segment.path })
}

/** Appends to `out` the events of a record with local positions in [from, to). */
export function eventsOfRecord(cursor: RecordCursor, from: number, to: number, out: LogEvent[]): void {
  const { bytes, view, header } = cursor
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
      if (i === header.count - 1 && header.extensionBytes > 0 && isSealSized(bytes, header.bodyEnd, header.extensionBytes)) {
        event.seal = bytes.subarray(header.bodyEnd, header.bodyEnd + header.extensionBytes)
      }
      out.push(event)
    }
    at += EVENT_HEADER_BYTES + length
  }
}
