// verify(): reads every byte of every segment and checks it: header, record framing, checksums,
// local and per-origin sequences, the hash chain of links and seals (each batch's events hash to
// its link, each link continues the previous one, each seal's key and signature are the origin's),
// and zeros after the last record. It lists all damage (after
// each damaged spot it looks for the next valid record and goes on), and repeats what recovery
// cut at open. Read-only: it never repairs.

import type { Checksum } from './checksum.js'
import { RECORD_ALIGN_BYTES, RECORD_FLAG_CONTINUES, RECORD_HEADER_BYTES, RECORD_KIND_EVENTS, RECORD_OFFSET_KIND, RECORD_OFFSET_LENGTH, SEGMENT_HEADER_BYTES } from './format.js'
import { RecordHeader, recordOriginHex } from './records.js'
import { ZERO_CHAIN, equalBytes, isSealSized, keyMatchesOrigin, parseSeal, signatureValid, startChainHash } from './seal.js'
import type { Truncation } from './recovery.js'
import { SegmentReader, RECOVERY_CHUNK_BYTES, decodeRecordAt } from './segment-reader.js'
import { decodeSegmentHeader, type Segment, type SegmentTable } from './segments.js'
import { closeSynced } from './storage.js'

export interface Damage {
  segment: string
  offset: number
  reason: string
}

export interface VerifyResult {
  ok: boolean
  damage: Damage[]
  /** What recovery cut from the torn tail when this log was opened (not damage: nothing acknowledged). */
  truncated: Truncation[]
  events: number
  segments: number
  bytes: number
}

export interface VerifyInput {
  table: SegmentTable
  checksum: Checksum
  /** Global offset past the last committed record. */
  end: number
  length: number
  truncations: readonly Truncation[]
}

export function verifyLog(input: VerifyInput): VerifyResult {
  const damage: Damage[] = []
  const counts = new Map<string, number>()
  const header = new RecordHeader()
  let expectedLocal = 0
  let openBatch: string | null = null
  /** Per origin: the chain hash of its last linked batch (origins that never link are absent). */
  const chains = new Map<string, Uint8Array>()
  /** Where the records covered by the next link start (a batch start, or after the previous link). */
  let unitStart = -1
  let events = 0
  let bytes = 0
  for (const segment of input.table.segments) {
    const storage = input.table.storage
    const fd = storage.openSync(segment.path, 'read')
    try {
      const reader = new SegmentReader(storage, fd, segment)
      const page = Buffer.from(reader.bytes.subarray(reader.ensure(0, SEGMENT_HEADER_BYTES), SEGMENT_HEADER_BYTES))
      const decoded = decodeSegmentHeader(page, input.checksum)
      if (typeof decoded === 'string') damage.push({ segment: segment.name, offset: 0, reason: decoded })
      const dataEnd = Math.min(segment.dataEnd, input.end) - segment.start
      let offset = SEGMENT_HEADER_BYTES
      while (offset < dataEnd) {
        const result = decodeRecordAt(reader, offset, input.checksum, header)
        let reason: string | undefined = result === 'ok' ? undefined : (result === 'zero' ? 'zeros where a record was written' : result)
        if (reason === undefined) {
          const origin = recordOriginHex(reader.bytes, header)
          const have = counts.get(origin) ?? 0
          if (header.localPos !== expectedLocal) reason = `local position ${header.localPos} where ${expectedLocal} was expected`
          else if (header.originPos !== have) reason = `origin ${origin} position ${header.originPos} where ${have} was expected`
          else if (openBatch !== null && openBatch !== origin) reason = 'a batch changes origin'
          if (openBatch === null) unitStart = offset
          openBatch = (header.flags & RECORD_FLAG_CONTINUES) !== 0 ? origin : null
          counts.set(origin, header.originPos + header.count)
          expectedLocal = header.localPos + header.count
          if (reason === undefined && header.extensionBytes > 0) {
            const at = offset
            reason = checkLink(reader, unitStart, at, input.checksum, header, origin, chains)
            unitStart = at + header.padded
          }
        }
        if (reason === undefined) {
          events += header.count
          bytes += header.padded
          offset += header.padded
          continue
        }
        damage.push({ segment: segment.name, offset, reason })
        offset = resync(reader, offset + RECORD_ALIGN_BYTES, dataEnd, input.checksum, header)
        if (offset < dataEnd) expectedLocal = header.localPos
      }
      if (openBatch !== null) {
        damage.push({ segment: segment.name, offset: dataEnd, reason: 'a batch is cut short at the end of the segment' })
        openBatch = null
      }
      const garbage = firstNonZero(reader, Math.max(dataEnd, SEGMENT_HEADER_BYTES), segment)
      if (garbage >= 0) damage.push({ segment: segment.name, offset: garbage, reason: 'non-zero bytes after the last record' })
    } finally {
      closeSynced(storage, fd)
    }
  }
  if (events !== input.length && damage.length === 0) {
    damage.push({ segment: input.table.last.name, offset: 0, reason: `read ${events} events, the log holds ${input.length}` })
  }
  return { ok: damage.length === 0, damage, truncated: [...input.truncations], events, segments: input.table.segments.length, bytes }
}

/** The next offset in [from, end) where a valid record starts, or `end`. */
function resync(reader: SegmentReader, from: number, end: number, checksum: Checksum, header: RecordHeader): number {
  for (let offset = from; offset + RECORD_HEADER_BYTES <= end; offset += RECORD_ALIGN_BYTES) {
    const at = reader.ensure(offset, RECORD_HEADER_BYTES)
    const length = reader.view.getUint32(at + RECORD_OFFSET_LENGTH, true)
    if (length < RECORD_HEADER_BYTES || reader.bytes[at + RECORD_OFFSET_KIND] !== RECORD_KIND_EVENTS) continue
    if (decodeRecordAt(reader, offset, checksum, header) === 'ok') return offset
  }
  return end
}

function firstNonZero(reader: SegmentReader, from: number, segment: Segment): number {
  for (let chunk = from; chunk < segment.size; chunk += RECOVERY_CHUNK_BYTES) {
    const length = Math.min(RECOVERY_CHUNK_BYTES, segment.size - chunk)
    const at = reader.ensure(chunk, length)
    for (let i = at; i < at + length; i++) if (reader.bytes[i] !== 0) return chunk + i - at
  }
  return -1
}

/**
 * Checks the link or seal ending the records [batchStart, the record at `last`]: its fields, the
 * chain hash of the batch's events (read again from `batchStart`), the link to the origin's
 * previous batch, and a seal's key and signature. Returns a reason, or undefined when it holds.
 * `header` describes the last record on entry and is reused.
 */
function checkLink(reader: SegmentReader, batchStart: number, last: number, checksum: Checksum, header: RecordHeader,
  origin: string, chains: Map<string, Uint8Array>): string | undefined {
  const at = header.bodyEnd
  if (!isSealSized(reader.bytes, at, header.extensionBytes)) return undefined // an extension of another kind: skipped, as v1 readers do
  const fields = parseSeal(Buffer.from(reader.bytes.subarray(at, at + header.extensionBytes)))
  if (typeof fields === 'string') return `bad link: ${fields}`
  const end = header.originPos + header.count
  if (fields.first + fields.count !== end) return `link covers positions ${fields.first} to ${fields.first + fields.count}, the batch ends at ${end}`
  const held = chains.get(origin) ?? (fields.first === 0 ? ZERO_CHAIN : undefined)
  if (held !== undefined && !equalBytes(fields.prev, held)) return 'link does not continue the chain of its origin'
  const originBytes = Buffer.from(origin, 'hex')
  const hash = startChainHash(originBytes, fields.first, fields.count, fields.prev)
  let events = 0
  for (let offset = batchStart; offset <= last;) {
    if (decodeRecordAt(reader, offset, checksum, header) !== 'ok') return 'batch unreadable while checking its link'
    hash.update(reader.bytes.subarray(header.bodyStart, header.bodyEnd))
    events += header.count
    offset += header.padded
  }
  if (events !== fields.count) return `link counts ${fields.count} events, the batch has ${events}`
  const digest = new Uint8Array(hash.digest())
  if (!equalBytes(digest, fields.hash)) return 'events do not hash to their link (altered)'
  if (fields.signed && (!keyMatchesOrigin(fields, originBytes) || !signatureValid(fields, digest))) return 'seal is not signed by the origin\'s key'
  chains.set(origin, digest)
  return undefined
}
