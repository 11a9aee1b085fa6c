// Every layout constant of the on-disk format, in one place (docs/format.md is the prose).
// Relationships between constants are asserted once, at load time. All integers are
// little-endian. 64-bit fields hold integers below 2^53 (JavaScript numbers), asserted on read.
//
// A log directory holds: LOCK (flock), replica (the replica id), checkpoint (index snapshot)
// and segment files NNNNNNNNNNNN.seg. A segment is one header page followed by records.
// A record (LevelDB calls it a fragment) is a run of consecutive events of one origin.

import { assert } from './assert.js'

/** The version of the replica and checkpoint files, and of segments without repairs. */
export const FORMAT_VERSION = 1
/**
 * A segment that a repair rewrote (core/heal.ts) says version 2 in its header: it may hold HOLE
 * records and extension fill, which a version-1 reader would take for damage. Readers take both.
 */
export const SEGMENT_VERSION_REPAIRED = 2
/**
 * Segments this build writes into say version 3: they may also hold links and seals that carry a
 * batch envelope (one AEAD per batch, below), which a reader of versions 1 and 2 would not see.
 * Version 3 allows everything version 2 does. A writable open marks the last segment version 3.
 */
export const SEGMENT_VERSION_BATCH_ENVELOPES = 3
/**
 * A segment written by a log with stored compression (`storedCompression`) says version 4: it may
 * hold records whose body is deflated (RECORD_FLAG_DEFLATED), which a reader of versions 1 to 3
 * would take for damage. Version 4 allows everything version 3 does.
 */
export const SEGMENT_VERSION_DEFLATED = 4
export const SEGMENT_VERSIONS_READ: readonly number[] = [FORMAT_VERSION, SEGMENT_VERSION_REPAIRED, SEGMENT_VERSION_BATCH_ENVELOPES, SEGMENT_VERSION_DEFLATED]

/** Unit of every write: offsets and lengths of writes are multiples of this. */
export const PAGE_BYTES = 4096
/** O_DIRECT needs memory, offset and length aligned to the logical block size (512 here). */
export const DIRECT_IO_ALIGN_BYTES = 512
/** Records start at multiples of this; the gap is zero padding. */
export const RECORD_ALIGN_BYTES = 8

// Segment header: the first page of every segment file.
export const SEGMENT_MAGIC = 'INTERLOG' // 8 ASCII bytes
export const SEGMENT_HEADER_BYTES = PAGE_BYTES
export const SEGMENT_HEADER_USED_BYTES = 80
export const SEGMENT_OFFSET_MAGIC = 0 //            8 bytes
export const SEGMENT_OFFSET_VERSION = 8 //          u16
export const SEGMENT_OFFSET_HEADER_BYTES = 10 //    u16, = SEGMENT_HEADER_BYTES
export const SEGMENT_OFFSET_FLAGS = 12 //           u32, 0
export const SEGMENT_OFFSET_INDEX = 16 //           u64, sequence number of the segment
export const SEGMENT_OFFSET_START = 24 //           u64, global log offset of byte 0 of this file
export const SEGMENT_OFFSET_SIZE = 32 //            u64, file size in bytes
export const SEGMENT_OFFSET_FIRST_LOCAL_POS = 40 // u64, local position of its first event
export const SEGMENT_OFFSET_REPLICA = 48 //         16 bytes, the replica that wrote it
export const SEGMENT_OFFSET_CREATED_MS = 64 //      u64, wall clock at creation
export const SEGMENT_OFFSET_CHECKSUM = 72 //        u64, xxh64 (seed 0) of bytes [0, 72)

// Record header.
export const RECORD_HEADER_BYTES = 64
export const RECORD_OFFSET_CHECKSUM = 0 //     u64, xxh64 (seed 0) of bytes [8, length)
export const RECORD_OFFSET_LENGTH = 8 //       u32, header + body + extension, without padding
export const RECORD_OFFSET_KIND = 12 //        u8
export const RECORD_OFFSET_FLAGS = 13 //       u8
export const RECORD_OFFSET_EXTENSION = 14 //   u16, extension bytes after the body (0 in v1)
export const RECORD_OFFSET_COUNT = 16 //       u32, events in the record, >= 1
export const RECORD_OFFSET_RESERVED = 20 //    u32, 0; the inflated body bytes of a DEFLATED record
export const RECORD_OFFSET_LOCAL_POS = 24 //   u64, local position of the first event
export const RECORD_OFFSET_DURABLE = 32 //     u64, events of this log known durable when written
export const RECORD_OFFSET_ORIGIN = 40 //      16 bytes, origin replica id
export const RECORD_OFFSET_ORIGIN_POS = 56 //  u64, origin position of the first event

export const RECORD_KIND_EVENTS = 1
/**
 * A repaired range (segment version 2): `count` local positions whose events were lost here and
 * are held again elsewhere in the log (or not at all); no events, no origin, a zero body up to
 * `length`. Readers skip it; local positions go on after it.
 */
export const RECORD_KIND_HOLE = 2
/** A HOLE longer than this is written as several (the first skips the positions, the rest skip none). */
export const HOLE_BYTES_MAX = 1 << 20
/** More records of the same atomic batch follow this one. */
export const RECORD_FLAG_CONTINUES = 0x01
/**
 * The record's body is stored deflated (segment version 4): bytes [64, length - extension_bytes)
 * are one raw deflate stream (RFC 1951) of the events as an undeflated record frames them, and the
 * `reserved` field holds that framed size. The checksum covers the bytes as stored; links, chain
 * hashes and sync see the events as if they were stored plain.
 */
export const RECORD_FLAG_DEFLATED = 0x02
export const RECORD_FLAGS_KNOWN = RECORD_FLAG_CONTINUES | RECORD_FLAG_DEFLATED
/** A record body smaller than this is stored plain even with stored compression (zlib's set-up costs about 20 us a call). */
export const DEFLATE_MIN_BODY_BYTES = 4096
/**
 * A record body larger than this is stored plain: readers refuse a DEFLATED record that claims
 * more, so that a damaged or hostile header cannot make a read inflate hundreds of MiB. Records
 * split at 256 KiB; only a single event larger than 1 MiB stays plain for it.
 */
export const DEFLATE_MAX_BODY_BYTES = 1 << 20

// Event header inside a record body, followed by the payload bytes.
export const EVENT_HEADER_BYTES = 12
export const EVENT_OFFSET_LENGTH = 0 // u32, payload bytes
export const EVENT_OFFSET_TIME = 4 //   u64, origin wall clock in ms since the Unix epoch

export const REPLICA_ID_BYTES = 16

/** Format-wide bounds, independent of options: a log stays readable when maxEventBytes changes. */
export const MAX_EVENT_BYTES_LIMIT = 256 << 20
/** The extension area is at most a u16 of bytes. */
export const EXTENSION_BYTES_LIMIT = 0xffff
export const RECORD_BYTES_LIMIT = RECORD_HEADER_BYTES + EVENT_HEADER_BYTES + MAX_EVENT_BYTES_LIMIT + EXTENSION_BYTES_LIMIT

// Links and seals: the extension of the last record of a batch of an origin with identity
// (docs/format.md, docs/security.md). The chain hash is SHA-256 over CHAIN_DOMAIN, origin, first,
// count, prev and the events as framed in record bodies. A link holds the chain hash; a seal is a
// link plus the origin's public key and its Ed25519 signature of the chain hash, which vouches for
// every batch of the chain up to this one.
export const SEAL_KIND = 1 //  signed: LINK fields, key, signature
export const LINK_KIND = 2 //  the chain fields only
export const SEAL_VERSION = 1
export const SEAL_BYTES = 176
export const LINK_BYTES = 80
export const SEAL_OFFSET_KIND = 0 //       u8, SEAL_KIND or LINK_KIND
export const SEAL_OFFSET_VERSION = 1 //    u8, SEAL_VERSION
export const SEAL_OFFSET_RESERVED = 2 //   u16, 0
export const SEAL_OFFSET_COUNT = 4 //      u32, events in the batch
export const SEAL_OFFSET_FIRST = 8 //      u64, origin_pos of the batch's first event
export const SEAL_OFFSET_PREV = 16 //      32 bytes, chain hash of the origin's previous batch (zeros for the first)
export const SEAL_OFFSET_HASH = 48 //      32 bytes, chain hash of this batch
export const SEAL_OFFSET_KEY = 80 //       32 bytes, the origin's Ed25519 public key
export const SEAL_OFFSET_SIGNATURE = 112 // 64 bytes, Ed25519 signature of the chain hash
export const CHAIN_HASH_BYTES = 32
export const CHAIN_DOMAIN = 'ILOGCHN1' // 8 ASCII bytes
/** Bytes hashed before the events: domain, origin, first (u64), count (u32), prev. */
export const CHAIN_PREFIX_BYTES = 8 + 16 + 8 + 4 + 32
export const PUBLIC_KEY_BYTES = 32
export const SIGNATURE_BYTES = 64

// Payload encryption envelope (docs/security.md): tag, key id, nonce, ciphertext, auth tag.
export const ENVELOPE_TAG = 0xe1
export const ENVELOPE_OFFSET_TAG = 0 //     u8
export const ENVELOPE_OFFSET_KEY_ID = 1 //  u32, which log key
export const ENVELOPE_OFFSET_NONCE = 5 //   12 bytes: u32 epoch, u64 counter
export const ENVELOPE_NONCE_BYTES = 12
export const ENVELOPE_AUTH_TAG_BYTES = 16
export const ENVELOPE_HEADER_BYTES = 17
export const ENVELOPE_OVERHEAD_BYTES = ENVELOPE_HEADER_BYTES + ENVELOPE_AUTH_TAG_BYTES

// Batch envelope (segment version 3, docs/format.md and docs/security.md): one AEAD over the
// payloads of a linked batch, concatenated in order; each payload keeps its length (ciphertext in
// place). The 40 bytes go right before the batch's link or seal, in the same extension area and
// wherever the link or seal travels (sync, eventsSince raw), and the chain hash covers them as if
// they were the batch's last body bytes: relays without the key still check every stored byte.
export const BATCH_ENVELOPE_TAG = 0xe2
export const BATCH_ENVELOPE_VERSION = 1
export const BATCH_ENVELOPE_BYTES = 40
export const BATCH_ENVELOPE_OFFSET_TAG = 0 //      u8, BATCH_ENVELOPE_TAG
export const BATCH_ENVELOPE_OFFSET_VERSION = 1 //  u8, BATCH_ENVELOPE_VERSION
export const BATCH_ENVELOPE_OFFSET_RESERVED = 2 // u16, 0
export const BATCH_ENVELOPE_OFFSET_KEY_ID = 4 //   u32, which log key
export const BATCH_ENVELOPE_OFFSET_NONCE = 8 //    12 bytes: u32 epoch, u64 counter (the per-event envelope's nonce space)
export const BATCH_ENVELOPE_OFFSET_AUTH_TAG = 20 // 16 bytes, Poly1305 tag
export const BATCH_ENVELOPE_OFFSET_ZERO = 36 //    4 bytes, 0
/** Authenticated, not encrypted: tag, version, reserved and key id. */
export const BATCH_ENVELOPE_AAD_BYTES = 8
/** The largest link or seal: a seal with its batch envelope before it (a link with one is BATCH_ENVELOPE_BYTES + LINK_BYTES). */
export const SEAL_BYTES_MAX = BATCH_ENVELOPE_BYTES + SEAL_BYTES

// The replica file.
export const REPLICA_MAGIC = 'ILOGREPL'
export const REPLICA_FILE_BYTES = 48
export const REPLICA_OFFSET_MAGIC = 0 //      8 bytes
export const REPLICA_OFFSET_VERSION = 8 //    u16
export const REPLICA_OFFSET_ID = 16 //        16 bytes
export const REPLICA_OFFSET_CREATED_MS = 32 // u64
export const REPLICA_OFFSET_CHECKSUM = 40 //  u64, xxh64 of bytes [0, 40)

// The checkpoint file: magic, version, length, checksum, then a CBOR body.
export const CHECKPOINT_MAGIC = 'ILOGCKPT'
export const CHECKPOINT_HEADER_BYTES = 32
export const CHECKPOINT_OFFSET_MAGIC = 0 //    8 bytes
export const CHECKPOINT_OFFSET_VERSION = 8 //  u16
export const CHECKPOINT_OFFSET_LENGTH = 12 //  u32, CBOR body bytes
export const CHECKPOINT_OFFSET_CHECKSUM = 16 // u64, xxh64 of the body
/** A checkpoint body larger than this is refused as corrupt (bounded memory at open). */
export const CHECKPOINT_BODY_BYTES_MAX = 256 << 20

// Index strides: how sparse the in-memory indexes are.
/** One local index entry per this many log bytes (at the first record at or after it). */
export const INDEX_STRIDE_BYTES = 64 << 10
/** One per-origin index entry per this many of that origin's events, or INDEX_STRIDE_BYTES. */
export const ORIGIN_INDEX_STRIDE_EVENTS = 256

export const FILE_NAME_LOCK = 'LOCK'
export const FILE_NAME_REPLICA = 'replica'
export const FILE_NAME_CHECKPOINT = 'checkpoint'
export const FILE_NAME_IDENTITY = 'identity'
export const FILE_NAME_TRUSTED_KEYS = 'trusted-keys'
export const FILE_NAME_NONCE_EPOCH = 'nonce-epoch'
export const SEGMENT_FILE_SUFFIX = '.seg'
export const SEGMENT_FILE_DIGITS = 12

/** Largest integer stored in a u64 field (JavaScript numbers are exact up to here). */
export const U64_SAFE_MAX = Number.MAX_SAFE_INTEGER

// Load-time checks of how the constants relate.
assert(SEGMENT_MAGIC.length === 8 && REPLICA_MAGIC.length === 8 && CHECKPOINT_MAGIC.length === 8, 'magics are 8 bytes')
assert(PAGE_BYTES % DIRECT_IO_ALIGN_BYTES === 0, 'pages are whole O_DIRECT blocks')
assert(SEGMENT_HEADER_BYTES % PAGE_BYTES === 0, 'records start on a page boundary')
assert(SEGMENT_OFFSET_CHECKSUM + 8 === SEGMENT_HEADER_USED_BYTES, 'segment checksum is the last field')
assert(SEGMENT_HEADER_USED_BYTES <= SEGMENT_HEADER_BYTES, 'segment header fits its page')
assert(RECORD_OFFSET_ORIGIN_POS + 8 === RECORD_HEADER_BYTES, 'record header fields fill the header')
assert(RECORD_HEADER_BYTES % RECORD_ALIGN_BYTES === 0, 'record bodies start aligned')
assert(PAGE_BYTES % RECORD_ALIGN_BYTES === 0, 'pages hold whole alignment units')
assert(EVENT_OFFSET_TIME + 8 === EVENT_HEADER_BYTES, 'event header fields fill the header')
assert(REPLICA_OFFSET_CHECKSUM + 8 === REPLICA_FILE_BYTES, 'replica checksum is the last field')
assert(CHECKPOINT_OFFSET_CHECKSUM + 8 <= CHECKPOINT_HEADER_BYTES, 'checkpoint header fits')
assert(INDEX_STRIDE_BYTES % PAGE_BYTES === 0, 'index stride is whole pages')
assert(SEAL_OFFSET_SIGNATURE + SIGNATURE_BYTES === SEAL_BYTES, 'seal fields fill the seal')
assert(SEAL_OFFSET_KEY === LINK_BYTES && LINK_BYTES % RECORD_ALIGN_BYTES === 0, 'a seal is a link plus key and signature')
assert(SEAL_BYTES <= EXTENSION_BYTES_LIMIT && SEAL_BYTES % RECORD_ALIGN_BYTES === 0, 'a seal fits the extension area')
assert(CHAIN_DOMAIN.length === 8 && CHAIN_PREFIX_BYTES === 68, 'chain prefix layout')
assert(ENVELOPE_OFFSET_NONCE + ENVELOPE_NONCE_BYTES === ENVELOPE_HEADER_BYTES, 'envelope header fields')
assert(BATCH_ENVELOPE_OFFSET_NONCE + ENVELOPE_NONCE_BYTES === BATCH_ENVELOPE_OFFSET_AUTH_TAG &&
  BATCH_ENVELOPE_OFFSET_AUTH_TAG + ENVELOPE_AUTH_TAG_BYTES === BATCH_ENVELOPE_OFFSET_ZERO && BATCH_ENVELOPE_OFFSET_ZERO + 4 === BATCH_ENVELOPE_BYTES &&
  BATCH_ENVELOPE_BYTES % RECORD_ALIGN_BYTES === 0 && SEAL_BYTES_MAX <= EXTENSION_BYTES_LIMIT, 'batch envelope fields')
assert(![SEAL_KIND, LINK_KIND].includes(BATCH_ENVELOPE_TAG), 'an extension\'s first byte tells an envelope from a link or seal')
assert(HOLE_BYTES_MAX % RECORD_ALIGN_BYTES === 0 && HOLE_BYTES_MAX <= 0xffff_ffff, 'a HOLE length fits its u32 and keeps records aligned')

export function alignUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit
}

export function alignDown(value: number, unit: number): number {
  return Math.floor(value / unit) * unit
}

/** Bytes a record occupies on disk, padding included. */
export function recordBytesPadded(length: number): number {
  return alignUp(length, RECORD_ALIGN_BYTES)
}

export function writeU64(view: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field holds a safe integer, got ${value}`)
  view.setUint32(offset, value % 0x1_0000_0000, true)
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true)
}

/** Reads a u64; returns -1 when it does not fit a safe integer (callers treat that as damage). */
export function readU64(view: DataView, offset: number): number {
  const high = view.getUint32(offset + 4, true)
  if (high > 0x1f_ffff) return -1
  return high * 0x1_0000_0000 + view.getUint32(offset, true)
}

export function segmentFileName(index: number): string {
  return String(index).padStart(SEGMENT_FILE_DIGITS, '0') + SEGMENT_FILE_SUFFIX
}

/** Parses a segment file name; returns -1 for names that are not segments. */
export function parseSegmentFileName(name: string): number {
  const match = /^(\d{12})\.seg$/.exec(name)
  return match === null ? -1 : Number(match[1])
}

const HEX = '0123456789abcdef'

export function bytesToHex(bytes: Uint8Array, start = 0, length = bytes.length - start): string {
  let text = ''
  for (let i = start; i < start + length; i++) {
    const byte = bytes[i] as number
    text += HEX[byte >> 4]! + HEX[byte & 15]!
  }
  return text
}

export function isReplicaIdHex(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{32}$/.test(value)
}

export function hexToBytes(hex: string, target: Uint8Array, offset: number): void {
  assert(isReplicaIdHex(hex), 'replica ids are 32 lowercase hex chars')
  for (let i = 0; i < REPLICA_ID_BYTES; i++) {
    target[offset + i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  }
}
