// verify(): reads every byte of every segment and checks it: header, record framing, checksums,
// local and per-origin sequences, the hash chain of links and seals (each batch's events hash to
// its link, each link continues the previous one, each seal's key and signature are the origin's),
// and zeros after the last record. It lists all damage (after
// each damaged spot it looks for the next valid record and goes on; an origin's sequence may jump
// over a damaged spot, and a missing segment file is one damaged spot), repeats what recovery cut
// at open, and lists the repaired ranges (HOLE records: events lost there and held elsewhere, not
// damage). Read-only: it never repairs (the log fences off what it reports, core/log.ts).

import type { Checksum } from './checksum.js'
import {
  RECORD_ALIGN_BYTES, RECORD_FLAG_CONTINUES, RECORD_HEADER_BYTES, RECORD_KIND_EVENTS, RECORD_KIND_HOLE, RECORD_OFFSET_KIND, RECORD_OFFSET_LENGTH,
  SEGMENT_HEADER_BYTES,
} from './format.js'
import { RecordHeader, bodyOf, recordOriginHex } from './records.js'
import { ZERO_CHAIN, equalBytes, extensionSeal, keyMatchesOrigin, parseSeal, signatureValid, startChainHash } from './seal.js'
import type { Truncation } from './recovery.js'
import { SegmentReader, RECOVERY_CHUNK_BYTES, decodeRecordAt } from './segment-reader.js'
import { decodeSegmentHeader, type Segment, type SegmentTable } from './segments.js'
import { closeSynced } from './storage.js'

export interface Damage {
  segment: string
  offset: number
  reason: string
}

/** A repaired range: `positions` local positions whose events were lost there (held again elsewhere, or lost for good). */
export interface RepairedRange {
  segment: string
  offset: number
  bytes: number
  positions: number
}

export interface VerifyResult {
  ok: boolean
  damage: Damage[]
  /** Ranges a repair rewrote (not damage). */
  repaired: RepairedRange[]
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
  /** Told before each segment and once at the end: segments checked so far, of all. */
  onProgress?: ((checked: number, segments: number) => void) | undefined
  /**
   * Awaited between segments, so that a live log goes on appending while it is checked (it throws
   * when the log closed meanwhile). What is appended after `end` is not checked, and the head
   * segment's bytes from `currentEnd()` on must be zeros, not from `end` on.
   */
  pause?: (() => Promise<void>) | undefined
  currentEnd?: (() => number) | undefined
}

export async function verifyLog(input: VerifyInput): Promise<VerifyResult> {
  // The segments as they were at the start: a live log may add more while this checks.
  const segments = [...input.table.segments]
  const damage: Damage[] = []
  const repaired: RepairedRange[] = []
  const counts = new Map<string, number>()
  /** Origins whose sequence may jump at their next record: a damaged spot came since their last one. */
  let jumpable = new Set<string>()
  let afterDamage = false
  let skipped = 0
  const header = new RecordHeader()
  let expectedLocal = 0
  let openBatch: string | null = null
  /** Per origin: the chain hash of its last linked batch (origins that never link are absent). */
  const chains = new Map<string, Uint8Array>()
  /** Where the records covered by the next link start (a batch start, or after the previous link). */
  let unitStart = -1
  let events = 0
  let bytes = 0
  let checked = 0
  for (const segment of segments) {
    if (checked > 0 && input.pause !== undefined) await input.pause()
    input.onProgress?.(checked++, segments.length)
    const storage = input.table.storage
    if (segment.missing === true) {
      damage.push({ segment: segment.name, offset: 0, reason: 'segment file missing' })
      afterDamage = true
      jumpable = new Set(counts.keys())
      openBatch = null
      continue
    }
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
        if (reason === undefined && header.kind === RECORD_KIND_HOLE) {
          if (header.localPos !== expectedLocal && !(afterDamage && header.localPos > expectedLocal)) reason = `hole at local position ${header.localPos} where ${expectedLocal} was expected`
          else if (openBatch !== null) reason = 'a hole inside a batch'
          else {
            repaired.push({ segment: segment.name, offset, bytes: header.padded, positions: header.count })
            skipped += header.localPos - expectedLocal + header.count
            expectedLocal = header.localPos + header.count
            afterDamage = false
            offset += header.padded
            continue
          }
        }
        if (reason === undefined) {
          const origin = recordOriginHex(reader.bytes, header)
          const have = counts.get(origin) ?? 0
          // After a damaged spot, an origin's first record may jump over what the spot held.
          const jumps = header.originPos > have && openBatch === null && (jumpable.has(origin) || (afterDamage && !counts.has(origin)))
          if (header.localPos !== expectedLocal && !(afterDamage && header.localPos > expectedLocal)) reason = `local position ${header.localPos} where ${expectedLocal} was expected`
          else if (header.originPos !== have && !jumps) reason = `origin ${origin} position ${header.originPos} where ${have} was expected`
          else if (openBatch !== null && openBatch !== origin) reason = 'a batch changes origin'
          if (reason === undefined) {
            if (jumps) chains.delete(origin)
            if (openBatch === null) unitStart = offset
            if (header.extensionBytes > 0) {
              reason = checkLink(reader, unitStart, offset, input.checksum, header, origin, chains)
              unitStart = offset + header.padded
            }
          }
          if (reason === undefined) {
            skipped += header.localPos - expectedLocal
            jumpable.delete(origin)
            afterDamage = false
            openBatch = (header.flags & RECORD_FLAG_CONTINUES) !== 0 ? origin : null
            counts.set(origin, header.originPos + header.count)
            expectedLocal = header.localPos + header.count
            events += header.count
            bytes += header.padded
            offset += header.padded
            continue
          }
        }
        damage.push({ segment: segment.name, offset, reason })
        afterDamage = true
        jumpable = new Set(counts.keys())
        openBatch = null
        offset = resync(reader, offset + RECORD_ALIGN_BYTES, dataEnd, input.checksum, header, expectedLocal)
      }
      if (openBatch !== null) {
        damage.push({ segment: segment.name, offset: dataEnd, reason: 'a batch is cut short at the end of the segment' })
        openBatch = null
      }
      // In the segment the log ended in at the start, what was appended since is not garbage.
      const holdsEnd = input.end >= segment.start && input.end <= segment.start + segment.size
      const zerosFrom = holdsEnd && input.currentEnd !== undefined ? Math.max(dataEnd, input.currentEnd() - segment.start) : dataEnd
      const garbage = firstNonZero(reader, Math.max(zerosFrom, SEGMENT_HEADER_BYTES), segment)
      // A torn tail a read-only open left in place is reported in `truncated`, not as damage.
      const torn = input.truncations.some((cut) => cut.segment === segment.name && garbage >= cut.offset)
      if (garbage >= 0 && !torn) damage.push({ segment: segment.name, offset: garbage, reason: 'non-zero bytes after the last record' })
    } finally {
      closeSynced(storage, fd)
    }
  }
  if (events + skipped !== input.length && damage.length === 0) {
    damage.push({ segment: segments[segments.length - 1]!.name, offset: 0, reason: `read ${events} events and ${skipped} skipped positions, the log holds ${input.length}` })
  }
  input.onProgress?.(segments.length, segments.length)
  return { ok: damage.length === 0, damage, repaired, truncated: [...input.truncations], events, segments: segments.length, bytes }
}

/** The next offset in [from, end) where a valid record (or hole) at local position `minLocalPos` or later starts, or `end`. */
function resync(reader: SegmentReader, from: number, end: number, checksum: Checksum, header: RecordHeader, minLocalPos: number): number {
  for (let offset = from; offset + RECORD_HEADER_BYTES <= end; offset += RECORD_ALIGN_BYTES) {
    const at = reader.ensure(offset, RECORD_HEADER_BYTES)
    const length = reader.view.getUint32(at + RECORD_OFFSET_LENGTH, true)
    const kind = reader.bytes[at + RECORD_OFFSET_KIND]
    if (length < RECORD_HEADER_BYTES || (kind !== RECORD_KIND_EVENTS && kind !== RECORD_KIND_HOLE)) continue
    if (decodeRecordAt(reader, offset, checksum, header) === 'ok' && header.localPos >= minLocalPos) return offset
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
  const seal = extensionSeal(reader.bytes, header.extensionAt, header.extensionBytes)
  if (seal === null) return undefined // an extension of another kind: skipped, as v1 readers do
  const fields = parseSeal(Buffer.from(seal))
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
    hash.update(bodyOf(reader.bytes, reader.view, header).bytes.subarray(header.bodyStart, header.bodyEnd))
    events += header.count
    offset += header.padded
  }
  if (events !== fields.count) return `link counts ${fields.count} events, the batch has ${events}`
  if (fields.envelope !== null) hash.update(fields.envelope)
  const digest = new Uint8Array(hash.digest())
  if (!equalBytes(digest, fields.hash)) return 'events do not hash to their link (altered)'
  if (fields.signed && (!keyMatchesOrigin(fields, originBytes) || !signatureValid(fields, digest))) return 'seal is not signed by the origin\'s key'
  chains.set(origin, digest)
  return undefined
}
