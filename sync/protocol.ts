// The sync protocol's messages (docs/sync.md): CBOR maps with a protocol version, checked field
// by field on receipt. Version 2 carries events as whole records: each entry an origin's events
// framed as stored (docs/format.md), with the link or seal that ends them, as plain CBOR byte
// strings (no tags). A message of another version is refused with the reason. Anything malformed (not CBOR, wrong types, unknown kind, ids that are not
// 32 hex chars, too many entries, a message over maxMessageBytes) is a ProtocolError naming what
// is wrong; the caller drops the message and keeps syncing. Nothing here recurses over input.

import zlib from 'node:zlib'
import { decode, encode } from 'cbor-x'
import { BATCH_ENVELOPE_BYTES, EVENT_HEADER_BYTES, LINK_BYTES, SEAL_BYTES, checkFraming, type VersionVector } from '../core/index.js'

export const PROTOCOL_VERSION = 2
/** Most origins accepted in one version vector. */
export const VECTOR_ENTRIES_MAX = 10_000
/** Most events accepted in one events message (all its records together). */
export const MESSAGE_EVENTS_MAX = 20_000
/** Most records in one events message. */
export const MESSAGE_RECORDS_MAX = 4096
/** Bytes of CBOR framing counted per record entry when sizing a message (array, pos, count, body length, seal length). */
export const RECORD_FRAMING_BYTES = 32
/** The compression of events messages this build speaks (`c` in status and vector messages, `z` in events). */
export const COMPRESSION_DEFLATE_RAW = 'deflate-raw'
/** Most bytes the records of one compressed events message may inflate to. */
export const INFLATED_BYTES_MAX = 16 << 20
/** Most compression names a peer may announce, and their longest name. */
const CODECS_MAX = 8
const CODEC_NAME_MAX = 32
/** Bytes of CBOR framing counted per events message (kind, ids, keys). */
export const MESSAGE_FRAMING_BYTES = 160
/** Most holes (ranges a replica lacks below its counts: damage it is repairing) announced in one status or vector. */
export const HOLES_ANNOUNCED_MAX = 64

/** Positions [from, to) of `origin` that a replica lacks below its count (a damaged range it repairs, core/damage.ts). */
export interface Hole {
  origin: string
  from: number
  to: number
}

export interface StatusMessage {
  kind: 'status'
  replica: string
  /** The connection (node) it is synced through: its Last Will takes the replica offline. */
  node: string
  online: boolean
  vector: VersionVector
  /** Origins this replica takes; null for all. */
  origins: string[] | null
  /** The largest message this replica accepts (senders stay below it). */
  maxMessageBytes: number
  timeMs: number
  /** Ranges it lacks below its counts (its vector stops at the first of each origin's); always set when decoded. */
  holes?: Hole[]
  /** The compressions of events messages it reads (`c`); always set when decoded. */
  compression?: string[]
}

export interface VectorMessage {
  kind: 'vector'
  replica: string
  vector: VersionVector
  origins: string[] | null
  maxMessageBytes: number
  holes?: Hole[]
  compression?: string[]
}

/**
 * Consecutive events of the message's origin from `pos`: `count` events framed as a record body
 * frames them (per event a u32 payload length and a u64 time, little-endian, then the payload),
 * and the link or seal that ends them when they end a batch of the origin.
 */
export interface WireRecord {
  pos: number
  count: number
  body: Uint8Array
  seal?: Uint8Array
  /** In a compressed message as decoded: the body's length, until unpackRecords fills `body` in. */
  bodyBytes?: number
}

export interface EventsMessage {
  kind: 'events'
  sender: string
  origin: string
  /** Positions ascending, not overlapping. */
  records: WireRecord[]
  /** The origin signs: events after the last seal wait for theirs (a batch split over messages). */
  sealed: boolean
  /**
   * Sent: the records' bodies, one after the other, compressed with raw deflate (RFC 1951), in
   * place of each body (encodeMessage then writes each record's body length). Decoded: set when
   * the bodies came so; `unpackRecords` fills them in.
   */
  packed?: Uint8Array
}

/** One piece of an event too large for one message; pieces come in order of `offset`. */
export interface FragmentMessage {
  kind: 'fragment'
  sender: string
  origin: string
  pos: number
  time: number
  /** Payload bytes of the whole event. */
  total: number
  offset: number
  bytes: Uint8Array
  /** The origin signs; `seal`, when the event ends a signed batch. */
  sealed: boolean
  seal: Uint8Array | null
}

export type Message = StatusMessage | VectorMessage | EventsMessage | FragmentMessage

export class ProtocolError extends Error {
  override name = 'ProtocolError'
}

const HEX_ID = /^[0-9a-f]{32}$/

export function encodeMessage(message: Message): Uint8Array {
  switch (message.kind) {
    case 'status':
      return encode({
        v: PROTOCOL_VERSION, k: 's', r: message.replica, n: message.node, on: message.online, vv: message.vector, o: message.origins, m: message.maxMessageBytes,
        t: message.timeMs, ...encodeHoles(message.holes), ...encodeCodecs(message.compression),
      })
    case 'vector':
      return encode({
        v: PROTOCOL_VERSION, k: 'v', r: message.replica, vv: message.vector, o: message.origins, m: message.maxMessageBytes, ...encodeHoles(message.holes),
        ...encodeCodecs(message.compression),
      })
    case 'events':
      if (message.packed !== undefined) {
        return encode({
          v: PROTOCOL_VERSION, k: 'e', s: message.sender, o: message.origin, ...(message.sealed ? { sl: true } : {}), z: COMPRESSION_DEFLATE_RAW, d: bytes(message.packed),
          r: message.records.map((record) => record.seal === undefined ? [record.pos, record.count, record.body.length] : [record.pos, record.count, record.body.length, bytes(record.seal)]),
        })
      }
      return encode({
        v: PROTOCOL_VERSION, k: 'e', s: message.sender, o: message.origin, ...(message.sealed ? { sl: true } : {}),
        r: wireRecords(message.records),
      })
    case 'fragment':
      return encode({
        v: PROTOCOL_VERSION, k: 'f', s: message.sender, o: message.origin, p: message.pos, t: message.time, n: message.total, at: message.offset, d: bytes(message.bytes),
        ...(message.sealed ? { sl: true } : {}), ...(message.seal === null ? {} : { z: bytes(message.seal) }),
      })
  }
}

export function decodeMessage(bytes: Uint8Array, maxMessageBytes: number): Message {
  if (bytes.length > maxMessageBytes) throw new ProtocolError(`message of ${bytes.length} bytes is over maxMessageBytes ${maxMessageBytes}`)
  let value: unknown
  try {
    value = decode(bytes)
  } catch (error) {
    throw new ProtocolError(`not CBOR: ${(error as Error).message}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) throw new ProtocolError('not a CBOR map')
  const map = value as Record<string, unknown>
  if (map['v'] !== PROTOCOL_VERSION) {
    throw new ProtocolError(Number.isSafeInteger(map['v']) && (map['v'] as number) < PROTOCOL_VERSION
      ? `protocol version ${String(map['v'])}: the sender runs an older InterLog; this replica speaks version ${PROTOCOL_VERSION} only (upgrade every replica of a log together)`
      : `protocol version ${String(map['v'])} is not ${PROTOCOL_VERSION}`)
  }
  switch (map['k']) {
    case 's':
      if (typeof map['on'] !== 'boolean') throw new ProtocolError('status: on is not a boolean')
      if (!Number.isSafeInteger(map['t'])) throw new ProtocolError('status: t is not an integer')
      if (typeof map['n'] !== 'string' || map['n'].length === 0 || map['n'].length > 256) throw new ProtocolError('status: n is not a node name')
      return {
        kind: 'status', replica: id(map['r'], 'status: r'), node: map['n'], online: map['on'], vector: vector(map['vv']), origins: origins(map['o']),
        maxMessageBytes: messageBytes(map['m']), timeMs: map['t'] as number, holes: holes(map['h']), compression: codecs(map['c']),
      }
    case 'v':
      return {
        kind: 'vector', replica: id(map['r'], 'vector: r'), vector: vector(map['vv']), origins: origins(map['o']), maxMessageBytes: messageBytes(map['m']), holes: holes(map['h']),
        compression: codecs(map['c']),
      }
    case 'e': {
      const head = { kind: 'events' as const, sender: id(map['s'], 'events: s'), origin: id(map['o'], 'events: o'), sealed: flag(map['sl'], 'events: sl') }
      if (map['z'] === undefined) return { ...head, records: records(map['r'], false) }
      if (map['z'] !== COMPRESSION_DEFLATE_RAW) throw new ProtocolError(`events: z ${JSON.stringify(map['z'])} is not a compression this replica reads`)
      if (!(map['d'] instanceof Uint8Array)) throw new ProtocolError('events: d is not bytes')
      return { ...head, records: records(map['r'], true), packed: map['d'] }
    }
    case 'f': {
      const [pos, time, total, offset] = [map['p'], map['t'], map['n'], map['at']]
      if (![pos, time, total, offset].every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) throw new ProtocolError('fragment: p, t, n, at are not non-negative integers')
      if (!(map['d'] instanceof Uint8Array)) throw new ProtocolError('fragment: d is not bytes')
      if ((offset as number) + map['d'].length > (total as number) || map['d'].length === 0) throw new ProtocolError('fragment: bytes outside the event')
      const seal = map['z'] === undefined ? null : sealBytes(map['z'], 'fragment: z')
      return {
        kind: 'fragment', sender: id(map['s'], 'fragment: s'), origin: id(map['o'], 'fragment: o'), pos: pos as number, time: time as number,
        total: total as number, offset: offset as number, bytes: map['d'], sealed: flag(map['sl'], 'fragment: sl'), seal,
      }
    }
    default:
      throw new ProtocolError(`unknown message kind ${JSON.stringify(map['k'])}`)
  }
}

/** Smallest maxMessageBytes a peer may announce: room for framing and a useful fragment. */
export const MESSAGE_BYTES_MIN = 1024

function messageBytes(value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < MESSAGE_BYTES_MIN) throw new ProtocolError(`m is not an integer of at least ${MESSAGE_BYTES_MIN}`)
  return value as number
}

function id(value: unknown, what: string): string {
  if (typeof value !== 'string' || !HEX_ID.test(value)) throw new ProtocolError(`${what} is not a replica id`)
  return value
}

function vector(value: unknown): VersionVector {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) throw new ProtocolError('version vector is not a map')
  const entries = Object.entries(value)
  if (entries.length > VECTOR_ENTRIES_MAX) throw new ProtocolError(`version vector has ${entries.length} entries (at most ${VECTOR_ENTRIES_MAX})`)
  const out: VersionVector = {}
  for (const [origin, count] of entries) {
    if (!HEX_ID.test(origin)) throw new ProtocolError('version vector key is not a replica id')
    if (!Number.isSafeInteger(count) || (count as number) < 0) throw new ProtocolError('version vector count is not a non-negative integer')
    out[origin] = count as number
  }
  return out
}

function origins(value: unknown): string[] | null {
  if (value === null || value === undefined) return null
  if (!Array.isArray(value) || value.length > VECTOR_ENTRIES_MAX) throw new ProtocolError('origins is not a list of replica ids')
  return value.map((entry) => id(entry, 'origins entry'))
}

function encodeHoles(list: readonly Hole[] | undefined): { h?: [string, number, number][] } {
  return list === undefined || list.length === 0 ? {} : { h: list.slice(0, HOLES_ANNOUNCED_MAX).map((hole) => [hole.origin, hole.from, hole.to]) }
}

function holes(value: unknown): Hole[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value) || value.length > HOLES_ANNOUNCED_MAX) throw new ProtocolError(`h is not a list of at most ${HOLES_ANNOUNCED_MAX} holes`)
  return value.map((entry) => {
    if (!Array.isArray(entry) || entry.length !== 3) throw new ProtocolError('hole is not [origin, from, to]')
    const [from, to] = [entry[1], entry[2]]
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || (from as number) < 0 || (to as number) <= (from as number)) {
      throw new ProtocolError('hole positions are not 0 <= from < to')
    }
    return { origin: id(entry[0], 'hole origin'), from: from as number, to: to as number }
  })
}

function flag(value: unknown, what: string): boolean {
  if (value === undefined) return false
  if (value !== true) throw new ProtocolError(`${what} is not true`)
  return true
}

function sealBytes(value: unknown, what: string): Uint8Array {
  const size = value instanceof Uint8Array ? value.length : -1
  if (size !== SEAL_BYTES && size !== LINK_BYTES && size !== BATCH_ENVELOPE_BYTES + SEAL_BYTES && size !== BATCH_ENVELOPE_BYTES + LINK_BYTES) {
    throw new ProtocolError(`${what} is not a link of ${LINK_BYTES} bytes or a seal of ${SEAL_BYTES} (${BATCH_ENVELOPE_BYTES} more with a batch envelope)`)
  }
  return value as Uint8Array
}

/** Bytes as a Buffer view: cbor-x writes a Buffer as a plain byte string, a bare Uint8Array with a typed-array tag. */
function bytes(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
}

/** Records of an events message; `packed`: each entry holds its body's length, the bodies come compressed in `d`. */
function records(value: unknown, packed: boolean): WireRecord[] {
  if (!Array.isArray(value) || value.length === 0) throw new ProtocolError('r is not a non-empty list of records')
  if (value.length > MESSAGE_RECORDS_MAX) throw new ProtocolError(`r has ${value.length} records (at most ${MESSAGE_RECORDS_MAX})`)
  let next = 0
  let events = 0
  let inflated = 0
  const out: WireRecord[] = []
  for (const entry of value) {
    if (!Array.isArray(entry) || (entry.length !== 3 && entry.length !== 4)) throw new ProtocolError('record is not [pos, count, body, seal?]')
    const [pos, count, body, seal] = entry as unknown[]
    if (!Number.isSafeInteger(pos) || (pos as number) < next) throw new ProtocolError('record positions are not ascending integers')
    if (!Number.isSafeInteger(count) || (count as number) < 1) throw new ProtocolError('record count is not a positive integer')
    events += count as number
    if (events > MESSAGE_EVENTS_MAX) throw new ProtocolError(`the records hold more than ${MESSAGE_EVENTS_MAX} events`)
    const record: WireRecord = { pos: pos as number, count: count as number, body: EMPTY }
    if (packed) {
      if (!Number.isSafeInteger(body) || (body as number) < EVENT_HEADER_BYTES * (count as number)) throw new ProtocolError('record body length is not an integer that holds its events')
      inflated += body as number
      if (inflated > INFLATED_BYTES_MAX) throw new ProtocolError(`the records inflate to more than ${INFLATED_BYTES_MAX} bytes`)
      record.bodyBytes = body as number
    } else {
      if (!(body instanceof Uint8Array)) throw new ProtocolError('record body is not bytes')
      const framing = tiling(body, count as number)
      if (framing !== undefined) throw new ProtocolError(`record at ${pos as number}: ${framing}`)
      record.body = body
    }
    if (entry.length === 4) record.seal = sealBytes(seal, 'record seal')
    out.push(record)
    next = (pos as number) + (count as number)
  }
  return out
}

const EMPTY = new Uint8Array(0)

/**
 * Fills in the bodies of a compressed events message (decodeMessage left them empty): inflates
 * `packed` to exactly the lengths the records declare, at most
 * INFLATED_BYTES_MAX, and checks each body as an uncompressed one is checked. ProtocolError when
 * anything does not hold.
 */
export function unpackRecords(message: EventsMessage): void {
  if (message.packed === undefined) return
  const lengths = message.records.map((record) => record.bodyBytes ?? 0)
  const total = lengths.reduce((sum, length) => sum + length, 0)
  let inflated: Buffer
  try {
    // On this thread: a message inflates in a fraction of a millisecond, less than a trip to the
    // thread pool costs while the log's reads and writes queue there.
    inflated = zlib.inflateRawSync(message.packed, { maxOutputLength: Math.max(1, total), chunkSize: Math.max(zlib.constants.Z_MIN_CHUNK, total) })
  } catch (error) {
    throw new ProtocolError(`events: d does not inflate to ${total} bytes: ${(error as Error).message}`)
  }
  if (inflated.length !== total) throw new ProtocolError(`events: d inflates to ${inflated.length} bytes, the records declare ${total}`)
  let at = 0
  for (let i = 0; i < message.records.length; i++) {
    const record = message.records[i]!
    record.body = inflated.subarray(at, at + lengths[i]!)
    delete record.bodyBytes
    at += lengths[i]!
    const framing = tiling(record.body, record.count)
    if (framing !== undefined) throw new ProtocolError(`record at ${record.pos}: ${framing}`)
  }
  delete message.packed
}

/**
 * Raw deflate of the records' bodies, one after the other (level 1: fast, and most of what higher
 * levels get on sensor readings), on this thread: a message of 256 KiB takes about 0.1 ms here.
 */
export function packRecords(records: readonly WireRecord[]): Buffer {
  const plain = Buffer.concat(records.map((record) => record.body))
  return zlib.deflateRawSync(plain, { level: 1, chunkSize: Math.max(zlib.constants.Z_MIN_CHUNK, plain.length + 1024) })
}

function encodeCodecs(list: readonly string[] | undefined): { c?: string[] } {
  return list === undefined || list.length === 0 ? {} : { c: [...list] }
}

function codecs(value: unknown): string[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value) || value.length > CODECS_MAX || !value.every((name) => typeof name === 'string' && name.length > 0 && name.length <= CODEC_NAME_MAX)) {
    throw new ProtocolError(`c is not a list of at most ${CODECS_MAX} compression names`)
  }
  return value as string[]
}

/** Why `body` does not hold exactly `count` framed events (undefined: it does); sizes are merge's to judge. */
function tiling(body: Uint8Array, count: number): string | undefined {
  return checkFraming(body, new DataView(body.buffer, body.byteOffset, body.byteLength), count, Infinity, Infinity, 0)
}

/**
 * Events as wire records (for custom transports and tests): a record ends at each event that
 * carries a link or seal, and where positions jump. Each body frames its events as stored.
 */
export function recordsOfEvents(events: readonly { pos: number, time: number, payload: Uint8Array, seal?: Uint8Array | undefined }[]): WireRecord[] {
  const out: WireRecord[] = []
  let run: typeof events[number][] = []
  const close = (): void => {
    if (run.length === 0) return
    const body = Buffer.alloc(run.reduce((sum, event) => sum + EVENT_HEADER_BYTES + event.payload.length, 0))
    let at = 0
    for (const event of run) {
      body.writeUInt32LE(event.payload.length, at)
      body.writeUInt32LE(event.time >>> 0, at + 4)
      body.writeUInt32LE(Math.floor(event.time / 0x1_0000_0000), at + 8)
      body.set(event.payload, at + EVENT_HEADER_BYTES)
      at += EVENT_HEADER_BYTES + event.payload.length
    }
    const last = run[run.length - 1]!
    out.push({ pos: run[0]!.pos, count: run.length, body, ...(last.seal === undefined ? {} : { seal: last.seal }) })
    run = []
  }
  for (const event of events) {
    if (run.length > 0 && event.pos !== run[run.length - 1]!.pos + 1) close()
    run.push(event)
    if (event.seal !== undefined) close()
  }
  close()
  return out
}

/** An events message's `r` entries as CBOR arrays (what encodeMessage writes), for hand-made messages in tests. */
export function wireRecords(records: readonly WireRecord[]): unknown[] {
  return records.map((record) => record.seal === undefined ? [record.pos, record.count, bytes(record.body)] : [record.pos, record.count, bytes(record.body), bytes(record.seal)])
}
