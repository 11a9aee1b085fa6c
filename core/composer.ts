// Composing records in the head cache: the hot path of every append and merge. No allocation per
// event: payload bytes are copied into the cache, framing is written through one DataView, and one
// checksum covers each record (one small bigint per record).

import zlib from 'node:zlib'
import { assert } from './assert.js'
import type { Checksum } from './checksum.js'
import {
  EVENT_HEADER_BYTES, EVENT_OFFSET_LENGTH, EVENT_OFFSET_TIME, RECORD_FLAG_CONTINUES, RECORD_HEADER_BYTES,
  RECORD_KIND_EVENTS, RECORD_OFFSET_CHECKSUM, RECORD_OFFSET_COUNT, RECORD_OFFSET_DURABLE, RECORD_OFFSET_EXTENSION,
  RECORD_OFFSET_FLAGS, RECORD_OFFSET_KIND, RECORD_OFFSET_LENGTH, RECORD_OFFSET_LOCAL_POS, RECORD_OFFSET_ORIGIN,
  RECORD_OFFSET_ORIGIN_POS, RECORD_OFFSET_RESERVED, PAGE_BYTES, alignUp, recordBytesPadded, writeU64,
  DEFLATE_MAX_BODY_BYTES, DEFLATE_MIN_BODY_BYTES, RECORD_FLAG_DEFLATED,
} from './format.js'
import type { HeadCache } from './head-cache.js'
import { type BatchSealer, writeLinkFields } from './seal.js'
import { SEAL_PROGRESS_BYTES } from './seal-pipeline.js'

/** Events of one batch: payloads with one time for all, or a time each. */
export interface BatchSource {
  payloads: readonly Uint8Array[]
  time: number
  times: readonly number[] | null
  /** A merged batch's seal, stored with its last record; null for none (own batches are sealed by the log's sealer). */
  seal: Uint8Array | null
  /**
   * An own batch: the plaintext payloads when `payloads` are encrypted for `ownOrigin`, so that a
   * batch queued while the log moved to a new origin is encrypted again for it (core/log.ts).
   */
  own?: { origin: string, plain: readonly Uint8Array[] | null }
  /**
   * An own encrypted batch of a log with identity: for each linked record, by the index of its
   * first event, its batch envelope and its payloads' ciphertexts concatenated (core/crypt.ts
   * encryptBatch). `payloads` stay the plaintext (the same lengths); composing copies the
   * ciphertext, so no object is made per event.
   */
  sealed?: Map<number, SealedRecord>
  /** Events already framed as a record body frames them (records received by sync v2): stored by copying byte ranges; `payloads` is then empty. */
  framed?: FramedEvents
}

/** The ciphertext of one own linked record's payloads, and the batch envelope that opens it. */
export interface SealedRecord {
  envelope: Uint8Array
  bytes: Buffer
}

/**
 * Events framed as record bodies frame them (for each, its 12-byte event header, then its
 * payload), with the cuts where this log splits them into records: event indexes from 0 to
 * `count` and their byte offsets in `bytes`. Made by `frameEvents` once the framing is checked.
 */
export interface FramedEvents {
  bytes: Uint8Array
  count: number
  cutEvents: number[]
  cutOffsets: number[]
}

/**
 * Checks that `bytes` holds exactly `count` framed events, each payload at most `payloadMax` bytes
 * (`envelopeMax` for an encrypted envelope) and each time a u64 below 2^53; returns what is wrong,
 * or undefined. One pass over the event headers, no allocation.
 */
export function checkFraming(bytes: Uint8Array, view: DataView, count: number, payloadMax: number, envelopeMax: number, envelopeTag: number): string | undefined {
  let at = 0
  for (let i = 0; i < count; i++) {
    if (at + EVENT_HEADER_BYTES > bytes.length) return `event ${i} of ${count} runs past the body`
    const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
    if (view.getUint32(at + EVENT_OFFSET_TIME + 4, true) > 0x1f_ffff) return `event ${i} has a time beyond 2^53`
    const start = at + EVENT_HEADER_BYTES
    if (start + length > bytes.length) return `event ${i} of ${count} runs past the body`
    if (length > (length > 0 && bytes[start] === envelopeTag ? envelopeMax : payloadMax)) return `event ${i} has ${length} bytes, over maxEventBytes`
    at = start + length
  }
  return at === bytes.length ? undefined : `the body holds more than ${count} events`
}

/** The cuts of checked framed events into records of at most `splitBytes` (one event at least each). */
export function frameEvents(bytes: Uint8Array, view: DataView, count: number, splitBytes: number): FramedEvents {
  const cutEvents = [0]
  const cutOffsets = [0]
  let recordStart = 0
  let at = 0
  for (let i = 0; i < count; i++) {
    const eventBytes = EVENT_HEADER_BYTES + view.getUint32(at + EVENT_OFFSET_LENGTH, true)
    if (at > recordStart && RECORD_HEADER_BYTES + (at - recordStart) + eventBytes > splitBytes) {
      cutEvents.push(i)
      cutOffsets.push(at)
      recordStart = at
    }
    at += eventBytes
  }
  cutEvents.push(count)
  cutOffsets.push(at)
  return { bytes, count, cutEvents, cutOffsets }
}

/** Events in a batch. */
export function sourceCount(source: BatchSource): number {
  return source.framed === undefined ? source.payloads.length : source.framed.count
}

/** Index of the first event of the record after the one starting at `from`. */
export function sourceRecordEnd(source: BatchSource, from: number, splitBytes: number): number {
  const framed = source.framed
  if (framed === undefined) return recordEnd(source.payloads, from, splitBytes)
  return framed.cutEvents[framed.cutEvents.indexOf(from) + 1]!
}

/** Byte offset of event `index` (a cut) in framed events. */
function framedOffset(framed: FramedEvents, index: number): number {
  const cut = framed.cutEvents.indexOf(index)
  assert(cut >= 0, 'framed events are composed at their cuts')
  return framed.cutOffsets[cut]!
}

/** `batchBytes` of a batch source (a framed one is merged: no links of its own, no split tail). */
export function sourceBatchBytes(source: BatchSource, splitBytes: number, lastExtension = 0, everyExtension = 0, tailSplitMinBody = 0): number {
  const framed = source.framed
  if (framed === undefined) return batchBytes(source.payloads, splitBytes, lastExtension, everyExtension, tailSplitMinBody)
  assert(everyExtension === 0 && tailSplitMinBody === 0, 'framed events are merged, never own')
  let total = 0
  for (let cut = 1; cut < framed.cutEvents.length; cut++) {
    const body = framed.cutOffsets[cut]! - framed.cutOffsets[cut - 1]!
    total += recordBytesPadded(RECORD_HEADER_BYTES + body + (cut === framed.cutEvents.length - 1 ? lastExtension : 0))
  }
  return total
}

/** Bytes (padded) of the record of events [from, to) of a batch source (`batchBytes` of just those events). */
export function sourceRecordBytes(source: BatchSource, from: number, to: number, splitBytes: number, lastExtension: number, everyExtension: number, tailSplitMinBody: number): number {
  const framed = source.framed
  if (framed === undefined) return batchBytes(source.payloads.slice(from, to), splitBytes, lastExtension, everyExtension, tailSplitMinBody)
  return recordBytesPadded(RECORD_HEADER_BYTES + framedOffset(framed, to) - framedOffset(framed, from) + lastExtension)
}

/** Index of the first event of the next record, splitting at `splitBytes`. */
export function recordEnd(payloads: readonly Uint8Array[], from: number, splitBytes: number): number {
  let bytes = RECORD_HEADER_BYTES
  let i = from
  while (i < payloads.length) {
    const eventBytes = EVENT_HEADER_BYTES + (payloads[i] as Uint8Array).length
    if (i > from && bytes + eventBytes > splitBytes) break
    bytes += eventBytes
    i++
  }
  return i
}

/** Body bytes of events [from, to) as a record frames them. */
export function bodyBytes(payloads: readonly Uint8Array[], from: number, to: number): number {
  let bytes = 0
  for (let i = from; i < to; i++) bytes += EVENT_HEADER_BYTES + (payloads[i] as Uint8Array).length
  return bytes
}

/**
 * Whether an own record of `count` events and `body` bytes is composed as two: the events but the
 * last, without a link, then the last event with the link covering both (`tailSplitMinBody` > 0:
 * durability 'fsync' with an identity, core/seal-pipeline.ts). The first record is then checksummed
 * while composed and written while the link is hashed; only the small second one waits for it.
 */
export function splitsTail(body: number, count: number, tailSplitMinBody: number): boolean {
  return tailSplitMinBody > 0 && count >= 2 && body >= tailSplitMinBody
}

/**
 * Bytes (padded) a whole batch takes, split as compose splits it, with `lastExtension` bytes on
 * its last record and `everyExtension` bytes on each record (each own record's link), the records
 * that `splitsTail` splits taking two.
 */
export function batchBytes(payloads: readonly Uint8Array[], splitBytes: number, lastExtension = 0, everyExtension = 0, tailSplitMinBody = 0): number {
  let total = 0
  let body = 0
  let count = 0
  let tail = 0
  for (let i = 0; i < payloads.length; i++) {
    const eventBytes = EVENT_HEADER_BYTES + (payloads[i] as Uint8Array).length
    if (count > 0 && RECORD_HEADER_BYTES + body + eventBytes > splitBytes) {
      total += recordBytes(body, count, tail, everyExtension, tailSplitMinBody)
      body = 0
      count = 0
    }
    body += eventBytes
    count++
    tail = eventBytes
  }
  return total + recordBytes(body, count, tail, everyExtension + lastExtension, tailSplitMinBody)
}

/** Bytes (padded) of a record of `count` events and `body` bytes whose last event takes `tail`; two records if `splitsTail`. */
function recordBytes(body: number, count: number, tail: number, extension: number, tailSplitMinBody: number): number {
  if (!splitsTail(body, count, tailSplitMinBody)) return recordBytesPadded(RECORD_HEADER_BYTES + body + extension)
  return recordBytesPadded(RECORD_HEADER_BYTES + body - tail) + recordBytesPadded(RECORD_HEADER_BYTES + tail + extension)
}

/** The chain fields of a record whose hash is computed later (one object per log, reused). */
export interface DeferredLink {
  first: number
  count: number
  /** The previous chain hash, or null when the worker holds it (it is still hashing the record before). */
  prev: Uint8Array | null
  /** Told how far the body is composed, every SEAL_PROGRESS_BYTES, so that hashing runs beside composing. */
  pipeline: { progress(end: number): void }
}

export interface RecordFields {
  localPos: number
  durable: number
  origin: Uint8Array
  originPos: number
  continues: boolean
  /** Links this record: its body is hashed and its link written in the extension. */
  sealer: BatchSealer | null
  /**
   * Links this record without hashing it: the link's fields but the hashes are written (prev too
   * when known) and the checksum is left zero, for a worker to finish (core/seal-pipeline.ts).
   */
  deferredLink: DeferredLink | null
  /** A seal made elsewhere (a merged batch): copied into the last record's extension. */
  seal: Uint8Array | null
  /** Bytes of the extension of this record (the seal's size on the last record of a sealed batch, else 0). */
  extensionBytes: number
  /**
   * An own encrypted batch's envelope (BATCH_ENVELOPE_BYTES), written before the link by the sealer
   * or for the worker; hashed as the batch's last bytes. Null for none (and for merged batches,
   * whose `seal` holds it).
   */
  envelope: Uint8Array | null
  /** Ciphertext to copy in place of `payloads` (an own encrypted record), from byte `sealedAt` on; null for none. */
  sealed: Buffer | null
  sealedAt: number
  /**
   * Store the body deflated when it is at least DEFLATE_MIN_BODY_BYTES and deflates to under 7/8
   * of its size (stored compression, segment version 4). Only with the link hashed here or none:
   * a deferred link is hashed from the plain body after composing.
   */
  deflate?: boolean
}

/** Composes events [from, to) of `source` as one record at the cache's composed end; returns its padded size. */
export function composeRecord(cache: HeadCache, checksum: Checksum, source: BatchSource, from: number, to: number, fields: RecordFields): number {
  const memory = cache.memory
  const view = cache.view
  const start = cache.at(cache.composedEnd)
  const payloads = source.payloads
  const times = source.times
  let cursor = start + RECORD_HEADER_BYTES
  const deferred = fields.deferredLink
  let reported = cursor
  const framed = source.framed
  if (framed !== undefined) {
    // Already framed: one copy (merged, so neither a sealer nor a deferred link).
    const a = framedOffset(framed, from)
    const b = framedOffset(framed, to)
    memory.set(framed.bytes.subarray(a, b), cursor)
    cursor += b - a
  }
  const sealed = fields.sealed
  let sealedAt = fields.sealedAt
  for (let i = framed === undefined ? from : to; i < to; i++) {
    const payload = payloads[i] as Uint8Array
    const time = times === null ? source.time : (times[i] as number)
    view.setUint32(cursor + EVENT_OFFSET_LENGTH, payload.length, true)
    view.setUint32(cursor + EVENT_OFFSET_TIME, time >>> 0, true)
    view.setUint32(cursor + EVENT_OFFSET_TIME + 4, Math.floor(time / 0x1_0000_0000), true)
    if (sealed === null) {
      memory.set(payload, cursor + EVENT_HEADER_BYTES)
    } else {
      // A plain Uint8Array view: cheaper than Buffer#copy or a Buffer subarray (24 against 44 and 49 ns here).
      memory.set(new Uint8Array(sealed.buffer, sealed.byteOffset + sealedAt, payload.length), cursor + EVENT_HEADER_BYTES)
      sealedAt += payload.length
    }
    cursor += EVENT_HEADER_BYTES + payload.length
    if (deferred !== null && cursor - reported >= SEAL_PROGRESS_BYTES) {
      deferred.pipeline.progress(cursor)
      reported = cursor
    }
  }
  if (fields.envelope !== null) {
    memory.set(fields.envelope, cursor)
    cursor += fields.envelope.length
  }
  if (fields.sealer !== null) fields.sealer.update(memory, start + RECORD_HEADER_BYTES, cursor)
  if (fields.extensionBytes > 0) {
    if (fields.sealer !== null) fields.sealer.finish(memory, view, cursor)
    else if (fields.deferredLink !== null) writeLinkFields(memory, view, cursor, fields.deferredLink)
    else memory.set(fields.seal!, cursor)
    cursor += fields.extensionBytes - (fields.envelope === null ? 0 : fields.envelope.length)
  }
  let length = cursor - start
  // The plain body's size when it is stored deflated (the link above was hashed over it), else 0.
  let inflated = 0
  if (fields.deflate === true && fields.deferredLink === null) {
    const deflated = deflateBody(memory, start, length, fields.extensionBytes)
    if (deflated > 0) {
      inflated = length - RECORD_HEADER_BYTES - fields.extensionBytes
      length = deflated
    }
  }
  const padded = recordBytesPadded(length)
  assert(start + padded <= memory.length, 'record fits the cache')
  view.setUint32(start + RECORD_OFFSET_LENGTH, length, true)
  memory[start + RECORD_OFFSET_KIND] = RECORD_KIND_EVENTS
  memory[start + RECORD_OFFSET_FLAGS] = (fields.continues ? RECORD_FLAG_CONTINUES : 0) | (inflated > 0 ? RECORD_FLAG_DEFLATED : 0)
  view.setUint16(start + RECORD_OFFSET_EXTENSION, fields.extensionBytes, true)
  view.setUint32(start + RECORD_OFFSET_COUNT, to - from, true)
  view.setUint32(start + RECORD_OFFSET_RESERVED, inflated, true)
  writeU64(view, start + RECORD_OFFSET_LOCAL_POS, fields.localPos)
  writeU64(view, start + RECORD_OFFSET_DURABLE, fields.durable)
  memory.set(fields.origin, start + RECORD_OFFSET_ORIGIN)
  writeU64(view, start + RECORD_OFFSET_ORIGIN_POS, fields.originPos)
  // Zeros from the record's end to the end of its page: the padding, and what the page held from
  // before the cache window slid (core/head-cache.ts), so that a flush of this page writes zeros
  // after the last record.
  memory.fill(0, start + length, Math.min(memory.length, alignUp(start + padded, PAGE_BYTES)))
  const sum = fields.deferredLink === null ? checksum(memory.subarray(start + 8, start + length)) : 0n
  view.setBigUint64(start + RECORD_OFFSET_CHECKSUM, sum, true)
  cache.composedEnd += padded
  return padded
}

/**
 * Deflates the body of the record of `length` bytes composed at `start` in place, its extension
 * moved down after the deflated bytes; returns the record's new length, or 0 when it stays plain
 * (a body under DEFLATE_MIN_BODY_BYTES or over DEFLATE_MAX_BODY_BYTES, or one that does not get
 * under 7/8 of its size). Level 1: on batches of sensor readings it gives 7% to 12% of the framed
 * size at about 80 ns an event here (TODO.md, issue 20).
 */
function deflateBody(memory: Uint8Array, start: number, length: number, extensionBytes: number): number {
  const bodyStart = start + RECORD_HEADER_BYTES
  const extensionAt = start + length - extensionBytes
  const plain = extensionAt - bodyStart
  if (plain < DEFLATE_MIN_BODY_BYTES || plain > DEFLATE_MAX_BODY_BYTES) return 0
  const packed = zlib.deflateRawSync(memory.subarray(bodyStart, extensionAt), { level: 1 })
  if (packed.length > plain - (plain >> 3)) return 0
  memory.copyWithin(bodyStart + packed.length, extensionAt, extensionAt + extensionBytes)
  memory.set(packed, bodyStart)
  return RECORD_HEADER_BYTES + packed.length + extensionBytes
}
