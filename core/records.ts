// Decoding and checking one record in a buffer. Used by recovery, reads and verify, on bytes from
// disk or from the head cache. A record is trusted only after its length, fields, event framing
// and checksum all agree; every failure returns a reason instead of throwing, so that the caller
// decides (recovery: the decision table; reads: CORRUPT).

import zlib from 'node:zlib'
import { assert } from './assert.js'
import type { Checksum } from './checksum.js'
import {
  EVENT_HEADER_BYTES, EVENT_OFFSET_LENGTH, MAX_EVENT_BYTES_LIMIT, RECORD_BYTES_LIMIT, EVENT_OFFSET_TIME, RECORD_FLAGS_KNOWN, RECORD_FLAG_DEFLATED, RECORD_HEADER_BYTES, DEFLATE_MAX_BODY_BYTES,
  RECORD_KIND_EVENTS, RECORD_KIND_HOLE, HOLE_BYTES_MAX, RECORD_OFFSET_CHECKSUM, RECORD_OFFSET_COUNT, RECORD_OFFSET_DURABLE,
  RECORD_OFFSET_EXTENSION, RECORD_OFFSET_FLAGS, RECORD_OFFSET_KIND, RECORD_OFFSET_LENGTH,
  RECORD_OFFSET_LOCAL_POS, RECORD_OFFSET_ORIGIN, RECORD_OFFSET_ORIGIN_POS, RECORD_OFFSET_RESERVED,
  REPLICA_ID_BYTES, bytesToHex, readU64, recordBytesPadded,
} from './format.js'

/** A decoded record header; reused across calls (fill it with decodeRecord). */
export class RecordHeader {
  /** RECORD_KIND_EVENTS, or RECORD_KIND_HOLE (then `count` is the local positions it skips, and there are no events). */
  kind = RECORD_KIND_EVENTS
  /** Where the record starts in the buffer it was decoded from. */
  at = 0
  length = 0
  padded = 0
  flags = 0
  extensionBytes = 0
  count = 0
  localPos = 0
  durable = 0
  originPos = 0
  /**
   * Where the events are framed: [bodyStart, bodyEnd) of the buffer decoded from, or of `body`
   * when the record is stored deflated (then `body` is its inflated events, a fresh buffer).
   */
  bodyStart = 0
  bodyEnd = 0
  body: Buffer | null = null
  bodyView: DataView | null = null
  /** Where the extension area starts in the buffer decoded from (`bodyEnd` unless deflated). */
  extensionAt = 0
}

/** The bytes and view that hold a decoded record's framed events: the buffer decoded from, or the inflated body. */
export function bodyOf(bytes: Buffer, view: DataView, header: RecordHeader): { bytes: Buffer, view: DataView } {
  assert(header.bodyStart >= 0, 'a deflated record decoded without inflating has no body to read')
  return header.body === null ? { bytes, view } : { bytes: header.body, view: header.bodyView! }
}

/** Outcome of decodeRecord: the header is filled only for 'ok'. */
export type DecodeResult = 'ok' | 'zero' | 'short' | string

/**
 * Decodes and checks the record at `at`. `end` bounds the readable bytes. Returns 'ok', 'zero'
 * (an all-zero header: no record here), 'short' (the record claims more bytes than are readable:
 * read more, or it is torn) or a reason the bytes are not a valid record.
 */
export function decodeRecord(
  bytes: Uint8Array, view: DataView, at: number, end: number,
  checksum: Checksum | null, header: RecordHeader, inflate = true,
): DecodeResult {
  if (at + RECORD_HEADER_BYTES > end) return isZero(bytes, at, end) ? 'zero' : 'short'
  const length = view.getUint32(at + RECORD_OFFSET_LENGTH, true)
  if (length === 0) {
    return isZero(bytes, at, at + RECORD_HEADER_BYTES) ? 'zero' : 'record length is zero'
  }
  if (bytes[at + RECORD_OFFSET_KIND] === RECORD_KIND_HOLE) return decodeHole(bytes, view, at, end, length, checksum, header)
  if (length < RECORD_HEADER_BYTES + EVENT_HEADER_BYTES || length > RECORD_BYTES_LIMIT) {
    return `record length ${length} is out of range`
  }
  if (bytes[at + RECORD_OFFSET_KIND] !== RECORD_KIND_EVENTS) return `record kind ${bytes[at + RECORD_OFFSET_KIND]} is unknown`
  const flags = bytes[at + RECORD_OFFSET_FLAGS] as number
  if ((flags & ~RECORD_FLAGS_KNOWN) !== 0) return `record flags ${flags} are unknown`
  const deflated = (flags & RECORD_FLAG_DEFLATED) !== 0
  const inflatedBytes = view.getUint32(at + RECORD_OFFSET_RESERVED, true)
  if (!deflated && inflatedBytes !== 0) return 'record reserved field is not zero'
  const count = view.getUint32(at + RECORD_OFFSET_COUNT, true)
  const extensionBytes = view.getUint16(at + RECORD_OFFSET_EXTENSION, true)
  if (count === 0 || RECORD_HEADER_BYTES + (deflated ? 1 : count * EVENT_HEADER_BYTES) + extensionBytes > length) {
    return `record event count ${count} does not fit its length ${length}`
  }
  if (deflated && (inflatedBytes < count * EVENT_HEADER_BYTES || inflatedBytes > DEFLATE_MAX_BODY_BYTES)) {
    return `deflated record of ${count} events claims ${inflatedBytes} bytes of events`
  }
  const localPos = readU64(view, at + RECORD_OFFSET_LOCAL_POS)
  const durable = readU64(view, at + RECORD_OFFSET_DURABLE)
  const originPos = readU64(view, at + RECORD_OFFSET_ORIGIN_POS)
  if (localPos < 0 || durable < 0 || originPos < 0) return 'record position out of range'
  if (at + length > end) return 'short'
  const extensionAt = at + length - extensionBytes
  let body: Buffer | null = null
  let bodyView = view
  let bodyStart = at + RECORD_HEADER_BYTES
  let bodyEnd = extensionAt
  if (deflated) {
    // The checksum first: it is cheaper than inflating, and says whether the stored bytes are the ones written.
    if (checksum !== null && view.getBigUint64(at + RECORD_OFFSET_CHECKSUM, true) !== checksum(bytes.subarray(at + 8, at + length))) {
      return 'record checksum mismatch'
    }
    if (!inflate && checksum !== null) {
      // Header fields only (recovery's scan): the checksum vouches for the bytes; reads inflate and check the framing.
      fillHeader(header, at, length, flags, extensionBytes, count, localPos, durable, originPos)
      header.bodyStart = -1
      header.bodyEnd = -1
      header.body = null
      header.bodyView = null
      header.extensionAt = extensionAt
      return 'ok'
    }
    let consumed: number
    try {
      const inflated = zlib.inflateRawSync(bytes.subarray(bodyStart, extensionAt), { maxOutputLength: inflatedBytes, info: true }) as unknown as
        { buffer: Buffer, engine: { bytesWritten: number } }
      body = inflated.buffer
      consumed = inflated.engine.bytesWritten
    } catch (error) {
      return `deflated record body does not inflate to ${inflatedBytes} bytes (${(error as Error).message})`
    }
    if (body.length !== inflatedBytes) return `deflated record body inflates to ${body.length} bytes, not ${inflatedBytes}`
    if (consumed !== extensionAt - bodyStart) return `deflated record body has ${extensionAt - bodyStart - consumed} bytes after its deflate stream`
    bodyView = new DataView(body.buffer, body.byteOffset, body.byteLength)
    bodyStart = 0
    bodyEnd = body.length
  }
  // Event framing must tile the body exactly.
  let cursor = bodyStart
  for (let i = 0; i < count; i++) {
    if (cursor + EVENT_HEADER_BYTES > bodyEnd) return `event ${i} header overruns the record`
    const payloadLength = bodyView.getUint32(cursor + EVENT_OFFSET_LENGTH, true)
    if (payloadLength > MAX_EVENT_BYTES_LIMIT) return `event ${i} claims ${payloadLength} bytes`
    if (readU64(bodyView, cursor + EVENT_OFFSET_TIME) < 0) return `event ${i} time out of range`
    cursor += EVENT_HEADER_BYTES + payloadLength
  }
  if (cursor !== bodyEnd) return 'record events do not tile its body'
  if (!deflated && checksum !== null &&
    view.getBigUint64(at + RECORD_OFFSET_CHECKSUM, true) !== checksum(bytes.subarray(at + 8, at + length))) {
    return 'record checksum mismatch'
  }
  fillHeader(header, at, length, flags, extensionBytes, count, localPos, durable, originPos)
  header.bodyStart = bodyStart
  header.bodyEnd = bodyEnd
  header.body = body
  header.bodyView = body === null ? null : bodyView
  header.extensionAt = extensionAt
  return 'ok'
}

function fillHeader(header: RecordHeader, at: number, length: number, flags: number, extensionBytes: number, count: number,
  localPos: number, durable: number, originPos: number): void {
  header.kind = RECORD_KIND_EVENTS
  header.at = at
  header.length = length
  header.padded = recordBytesPadded(length)
  header.flags = flags
  header.extensionBytes = extensionBytes
  header.count = count
  header.localPos = localPos
  header.durable = durable
  header.originPos = originPos
}

/** A HOLE record (RECORD_KIND_HOLE): a header, then zeros up to `length`, a multiple of 8. */
function decodeHole(bytes: Uint8Array, view: DataView, at: number, end: number, length: number, checksum: Checksum | null,
  header: RecordHeader): DecodeResult {
  if (length < RECORD_HEADER_BYTES || length > HOLE_BYTES_MAX || length % 8 !== 0) return `hole length ${length} is out of range`
  if (bytes[at + RECORD_OFFSET_FLAGS] !== 0 || view.getUint16(at + RECORD_OFFSET_EXTENSION, true) !== 0 ||
    view.getUint32(at + RECORD_OFFSET_RESERVED, true) !== 0 || !isZero(bytes, at + RECORD_OFFSET_ORIGIN, at + RECORD_HEADER_BYTES)) {
    return 'hole header fields are not zero'
  }
  const localPos = readU64(view, at + RECORD_OFFSET_LOCAL_POS)
  const durable = readU64(view, at + RECORD_OFFSET_DURABLE)
  if (localPos < 0 || durable < 0) return 'record position out of range'
  if (at + length > end) return 'short'
  if (checksum !== null && view.getBigUint64(at + RECORD_OFFSET_CHECKSUM, true) !== checksum(bytes.subarray(at + 8, at + length))) {
    return 'record checksum mismatch'
  }
  header.kind = RECORD_KIND_HOLE
  header.at = at
  header.length = length
  header.padded = length
  header.flags = 0
  header.extensionBytes = 0
  header.count = view.getUint32(at + RECORD_OFFSET_COUNT, true)
  header.localPos = localPos
  header.durable = durable
  header.originPos = 0
  header.bodyStart = at + RECORD_HEADER_BYTES
  header.bodyEnd = at + RECORD_HEADER_BYTES
  header.body = null
  header.bodyView = null
  header.extensionAt = at + RECORD_HEADER_BYTES
  return 'ok'
}

export function recordOriginHex(bytes: Uint8Array, header: RecordHeader): string {
  return bytesToHex(bytes, header.at + RECORD_OFFSET_ORIGIN, REPLICA_ID_BYTES)
}

export function isZero(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i] !== 0) return false
  return true
}

/** Index of the last non-zero byte in [start, end), or -1. */
export function lastNonZero(bytes: Uint8Array, start: number, end: number): number {
  for (let i = end - 1; i >= start; i--) if (bytes[i] !== 0) return i
  return -1
}
