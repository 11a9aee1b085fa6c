// Re-homing the own events a log appended since open (core/own-origin.ts): when a peer turns out
// to hold more of the log's own origin than the log does, and the log has appended meanwhile,
// those events (never published: sync holds them back until it has heard the peers) take a new
// origin id instead of positions that peers hold under the old one. Each of their records is
// rewritten in place with the same length: the new origin and positions in its header, the
// payloads encrypted again under the new origin (same size), the links of a new chain, and new
// checksums. Records of other origins, and local positions, do not change.
//
// Faults expected: a crash part way through. The intent file (written first) names the range;
// the next open finishes it before recovery scans (records already rewritten carry the new
// origin and are skipped; the chain goes on from the last of them).

import type { Checksum } from './checksum.js'
import type { PayloadCipher } from './crypt.js'
import { LogError } from './errors.js'
import {
  ENVELOPE_TAG, EVENT_HEADER_BYTES, EVENT_OFFSET_LENGTH, RECORD_FLAG_CONTINUES, RECORD_KIND_EVENTS, RECORD_OFFSET_CHECKSUM, RECORD_OFFSET_ORIGIN,
  RECORD_OFFSET_ORIGIN_POS, REPLICA_ID_BYTES, SEAL_OFFSET_FIRST, SEAL_OFFSET_HASH, SEAL_OFFSET_PREV, SEGMENT_HEADER_BYTES, readU64,
  writeU64,
} from './format.js'
import type { OriginMoveIntent } from './own-origin.js'
import { RecordHeader, recordOriginHex } from './records.js'
import { ZERO_CHAIN, extensionSeal, parseSeal, sealBase, startChainHash } from './seal.js'
import { SegmentReader, decodeRecordAt } from './segment-reader.js'
import type { Segment } from './segments.js'
import { closeSynced, type Storage } from './storage.js'
import { writeAllSync } from './write-all.js'

export interface RehomeInput {
  storage: Storage
  checksum: Checksum
  /** The log's segments, in order (a missing one ends the walk). */
  segments: readonly Segment[]
  intent: OriginMoveIntent
  cipher: PayloadCipher | null
  /** Each record of the new origin, rewritten or found rewritten: its first position and global offset (for the indexes). */
  onRecord?: (pos: number, offset: number) => void
}

export interface RehomeResult {
  /** Events of the new origin in the range. */
  events: number
  /** The new origin's chain head (ZERO_CHAIN when it does not link). */
  chain: Uint8Array
}

/** One record waiting for the link that ends its unit (a split pair's first record). */
interface Unit {
  offset: number
  segment: Segment
  /** The record as stored (rewritten in place: header, link, and payloads when they are encrypted). */
  bytes: Buffer
  /** Its framed events: a view into `bytes`, or the inflated body of a deflated record (read only). */
  events: Buffer
  deflated: boolean
  /** Where its extension starts in `bytes`. */
  extensionAt: number
  rewritten: boolean
}

export function rehome(input: RehomeInput): RehomeResult {
  const { intent } = input
  const toBytes = Buffer.from(intent.to, 'hex')
  const header = new RecordHeader()
  const writers = new Map<Segment, number>()
  let chain: Uint8Array = ZERO_CHAIN
  let next = 0
  let unit: Unit[] = []
  const writer = (segment: Segment): number => {
    let fd = writers.get(segment)
    if (fd === undefined) writers.set(segment, fd = input.storage.openSync(segment.path, 'write'))
    return fd
  }
  try {
    for (const segment of input.segments) {
      if (segment.missing === true || segment.start + segment.size <= intent.start) continue
      if (segment.start >= intent.end) break
      const fd = input.storage.openSync(segment.path, 'read')
      try {
        const reader = new SegmentReader(input.storage, fd, segment)
        let offset = Math.max(intent.start, segment.start + SEGMENT_HEADER_BYTES)
        while (offset < Math.min(intent.end, segment.start + segment.size)) {
          const result = decodeRecordAt(reader, offset - segment.start, input.checksum, header)
          if (result === 'zero') break
          if (result !== 'ok') {
            throw new LogError('CORRUPT', `moving own events to origin ${intent.to}: segment ${segment.name} does not read back at offset ${offset - segment.start} (${result})`,
              { segment: segment.name, offset: offset - segment.start })
          }
          const origin = header.kind === RECORD_KIND_EVENTS ? recordOriginHex(reader.bytes, header) : ''
          const ours = origin === intent.to || (origin === intent.from && header.originPos >= intent.fromPos)
          if (ours) {
            const bytes = Buffer.from(reader.bytes.subarray(header.at, header.at + header.length))
            const rewritten = origin === intent.from
            const pos = rewritten ? header.originPos - intent.fromPos : header.originPos
            const deflated = header.body !== null
            const events = header.body ?? bytes.subarray(header.bodyStart - header.at, header.bodyEnd - header.at)
            if (deflated && rewritten && input.cipher !== null && holdsEnvelopes(events)) {
              // Never written (a log with encryption stores its bodies plain): encrypted payloads of a deflated body could not be sealed again in place.
              throw new LogError('CORRUPT', `moving own events to origin ${intent.to}: segment ${segment.name} holds a deflated record of encrypted events at offset ${offset - segment.start}`,
                { segment: segment.name, offset: offset - segment.start })
            }
            // A deflated body holds plaintext (checked above): only its header and link change.
            if (rewritten) rewriteRecord(bytes, events, toBytes, pos, intent, deflated ? null : input.cipher)
            input.onRecord?.(pos, offset)
            next = pos + header.count
            unit.push({ offset, segment, bytes, events, deflated, extensionAt: header.extensionAt - header.at, rewritten })
            const continues = (header.flags & RECORD_FLAG_CONTINUES) !== 0
            if (header.extensionBytes > 0 || !continues) {
              chain = finishUnit(unit, toBytes, chain, header.extensionBytes, input.checksum, intent, input.cipher, (record) => {
                writeAllSync(input.storage, writer(record.segment), record.bytes, 0, record.bytes.length, record.offset - record.segment.start)
              })
              unit = []
            }
          }
          offset += header.padded
        }
      } finally {
        closeSynced(input.storage, fd)
      }
    }
    for (const fd of writers.values()) input.storage.fdatasyncSync(fd)
  } finally {
    for (const fd of writers.values()) closeSynced(input.storage, fd)
  }
  return { events: next, chain }
}

/** Whether framed events hold a payload that is a per-event envelope (ENVELOPE_TAG first). */
function holdsEnvelopes(events: Buffer): boolean {
  for (let at = 0; at < events.length;) {
    const length = events.readUInt32LE(at + EVENT_OFFSET_LENGTH)
    if (length > 0 && events[at + EVENT_HEADER_BYTES] === ENVELOPE_TAG) return true
    at += EVENT_HEADER_BYTES + length
  }
  return false
}

/** The new origin, position and payloads of one record (its link and checksum come with its unit). */
function rewriteRecord(bytes: Buffer, events: Buffer, to: Uint8Array, pos: number, intent: OriginMoveIntent, cipher: PayloadCipher | null): void {
  bytes.set(to.subarray(0, REPLICA_ID_BYTES), RECORD_OFFSET_ORIGIN)
  writeU64(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), RECORD_OFFSET_ORIGIN_POS, pos)
  if (cipher === null) return
  const view = new DataView(events.buffer, events.byteOffset, events.byteLength)
  for (let at = 0; at < events.length;) {
    const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
    const payload = events.subarray(at + EVENT_HEADER_BYTES, at + EVENT_HEADER_BYTES + length)
    const plain = cipher.decrypt(intent.from, payload)
    if (typeof plain !== 'string') {
      const sealed = cipher.encrypt(intent.to, plain)
      if (sealed.length === payload.length) payload.set(sealed)
    }
    at += EVENT_HEADER_BYTES + length
  }
}

/** Opens a unit's payloads with its batch envelope under the old origin and seals them under the new one, in place (`envelope` too). */
function resealUnit(unit: Unit[], envelope: Uint8Array, intent: OriginMoveIntent, cipher: PayloadCipher): void {
  const payloads: Uint8Array[] = []
  for (const record of unit) {
    const view = new DataView(record.events.buffer, record.events.byteOffset, record.events.byteLength)
    for (let at = 0; at < record.events.length;) {
      const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
      payloads.push(record.events.subarray(at + EVENT_HEADER_BYTES, at + EVENT_HEADER_BYTES + length))
      at += EVENT_HEADER_BYTES + length
    }
  }
  const plain = cipher.decryptBatch(intent.from, envelope, payloads)
  if (typeof plain === 'string') return // not ours to open (another key): moved as stored, like a per-event envelope
  const views: Uint8Array[] = []
  for (let i = 0, at = 0; i < payloads.length; i++) {
    views.push(plain.subarray(at, at + payloads[i]!.length))
    at += payloads[i]!.length
  }
  const sealed = cipher.encryptBatch(intent.to, views, 0, views.length, envelope)
  for (let i = 0, at = 0; i < payloads.length; i++) {
    payloads[i]!.set(sealed.subarray(at, at + payloads[i]!.length))
    at += payloads[i]!.length
  }
}

/**
 * Ends a unit (the records one link covers): its link, when it has one, gets the new origin's
 * first position, the chain's previous hash and the hash of the unit's events; every record
 * rewritten gets its checksum and is written. Returns the chain head after it.
 */
function finishUnit(unit: Unit[], to: Uint8Array, prev: Uint8Array, extensionBytes: number, checksum: Checksum, intent: OriginMoveIntent,
  cipher: PayloadCipher | null, write: (record: Unit) => void): Uint8Array {
  const last = unit[unit.length - 1]!
  const seal = extensionBytes === 0 ? null : extensionSeal(last.bytes, last.extensionAt, extensionBytes)
  let head = prev
  if (seal !== null) {
    const fields = parseSeal(seal)
    if (typeof fields === 'string') throw new LogError('CORRUPT', `moving own events: a link does not read back (${fields})`)
    const rewritten = unit.some((record) => record.rewritten)
    // A batch envelope: the unit's payloads opened under the old origin and sealed again under the new one (same lengths, a new nonce).
    if (fields.envelope !== null && rewritten && cipher !== null) {
      if (unit.some((record) => record.deflated)) throw new LogError('CORRUPT', 'moving own events: a batch with a batch envelope is stored deflated (never written so)')
      resealUnit(unit, fields.envelope, intent, cipher)
    }
    const firstBytes = unit[0]!.bytes
    const first = readU64(new DataView(firstBytes.buffer, firstBytes.byteOffset, firstBytes.byteLength), RECORD_OFFSET_ORIGIN_POS)
    const hash = startChainHash(to, first, fields.count, prev)
    for (const record of unit) hash.update(record.events)
    if (fields.envelope !== null) hash.update(fields.envelope)
    head = new Uint8Array(hash.digest())
    if (rewritten) {
      const view = new DataView(last.bytes.buffer, last.bytes.byteOffset, last.bytes.byteLength)
      const at = last.extensionAt + sealBase(seal)
      writeU64(view, at + SEAL_OFFSET_FIRST, first)
      last.bytes.set(prev, at + SEAL_OFFSET_PREV)
      last.bytes.set(head, at + SEAL_OFFSET_HASH)
      last.rewritten = true
    }
  }
  for (const record of unit) {
    if (!record.rewritten) continue
    record.bytes.writeBigUInt64LE(checksum(record.bytes.subarray(8)), RECORD_OFFSET_CHECKSUM)
    write(record)
  }
  return head
}
