// Signed history. Each origin chains its batches: a batch's chain hash is SHA-256 over a domain
// tag, the origin, the batch's first position and count, the previous batch's chain hash and the
// events exactly as record bodies frame them ([u32 length][u64 time][payload] each). Every batch
// of a log with identity stores a *link* (the chain fields, 80 bytes) as the extension of its last
// record: one hash pass per batch, no signature. The origin signs when it sends: the last link of
// each sync message becomes a *seal* (link + public key + Ed25519 signature of the chain hash),
// which vouches for every batch before it in the chain. Receivers store links and seals as they
// come, so relays forward the origin's signatures unchanged (docs/security.md). In an encrypted
// log, a link or seal may start with the 40-byte batch envelope of its batch (segment version 3,
// core/crypt.ts): the chain hash then covers the envelope after the events, so relays without the
// key check it too.

import crypto from 'node:crypto'
import {
  BATCH_ENVELOPE_BYTES, BATCH_ENVELOPE_OFFSET_RESERVED, BATCH_ENVELOPE_OFFSET_VERSION, BATCH_ENVELOPE_OFFSET_ZERO, BATCH_ENVELOPE_TAG,
  BATCH_ENVELOPE_VERSION, CHAIN_DOMAIN, CHAIN_HASH_BYTES, CHAIN_PREFIX_BYTES, EVENT_HEADER_BYTES, LINK_BYTES, LINK_KIND, PUBLIC_KEY_BYTES, REPLICA_ID_BYTES,
  SEAL_BYTES, SEAL_KIND, SEAL_OFFSET_COUNT, SEAL_OFFSET_FIRST, SEAL_OFFSET_HASH, SEAL_OFFSET_KEY, SEAL_OFFSET_KIND,
  SEAL_OFFSET_PREV, SEAL_OFFSET_RESERVED, SEAL_OFFSET_SIGNATURE, SEAL_OFFSET_VERSION, SEAL_VERSION, SIGNATURE_BYTES,
  bytesToHex, readU64, writeU64,
} from './format.js'
import { publicKeyObject, replicaIdBytesForKey } from './identity.js'

export const ZERO_CHAIN = new Uint8Array(CHAIN_HASH_BYTES)

/** A link's or seal's fields, as views into its bytes; key and signature are null for a link. */
export interface SealFields {
  signed: boolean
  /** The batch envelope before the link fields (an encrypted batch, segment version 3), else null. */
  envelope: Uint8Array | null
  count: number
  first: number
  prev: Uint8Array
  hash: Uint8Array
  publicKey: Uint8Array | null
  signature: Uint8Array | null
}

/**
 * The link or seal held by the extension area [at, at + length) of a record, or null: it starts
 * the area (its kind byte says which), and zero fill may follow it up to the area's end (written
 * only by repairs, in segments of version 2: docs/format.md). parseSeal checks the rest.
 */
export function extensionSeal(bytes: Uint8Array, at: number, length: number): Uint8Array | null {
  const base = bytes[at] === BATCH_ENVELOPE_TAG ? BATCH_ENVELOPE_BYTES : 0
  const kind = bytes[at + base]
  const size = kind === LINK_KIND ? base + LINK_BYTES : kind === SEAL_KIND ? base + SEAL_BYTES : 0
  if (size === 0 || size > length) return null
  for (let i = at + size; i < at + length; i++) if (bytes[i] !== 0) return null
  return bytes.subarray(at, at + size)
}

/** Parses a link or a seal; returns a reason instead when the bytes are neither. */
export function parseSeal(bytes: Uint8Array): SealFields | string {
  if (!(bytes instanceof Uint8Array)) return `a link is ${LINK_BYTES} bytes and a seal ${SEAL_BYTES}`
  const base = sealBase(bytes)
  const size = bytes.length - base
  if (size !== LINK_BYTES && size !== SEAL_BYTES) {
    return `a link is ${LINK_BYTES} bytes and a seal ${SEAL_BYTES} (${BATCH_ENVELOPE_BYTES} more with a batch envelope)`
  }
  const signed = size === SEAL_BYTES
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (base > 0) {
    if (bytes[BATCH_ENVELOPE_OFFSET_VERSION] !== BATCH_ENVELOPE_VERSION) return 'unknown batch envelope version'
    if (view.getUint16(BATCH_ENVELOPE_OFFSET_RESERVED, true) !== 0 || view.getUint32(BATCH_ENVELOPE_OFFSET_ZERO, true) !== 0) return 'batch envelope reserved bytes are not zero'
  }
  if (bytes[base + SEAL_OFFSET_KIND] !== (signed ? SEAL_KIND : LINK_KIND) || bytes[base + SEAL_OFFSET_VERSION] !== SEAL_VERSION) return 'unknown seal kind or version'
  if (view.getUint16(base + SEAL_OFFSET_RESERVED, true) !== 0) return 'seal reserved field is not zero'
  const count = view.getUint32(base + SEAL_OFFSET_COUNT, true)
  const first = readU64(view, base + SEAL_OFFSET_FIRST)
  if (count === 0 || first < 0) return 'seal count or first position out of range'
  return {
    signed, count, first,
    envelope: base > 0 ? bytes.subarray(0, base) : null,
    prev: bytes.subarray(base + SEAL_OFFSET_PREV, base + SEAL_OFFSET_PREV + CHAIN_HASH_BYTES),
    hash: bytes.subarray(base + SEAL_OFFSET_HASH, base + SEAL_OFFSET_HASH + CHAIN_HASH_BYTES),
    publicKey: signed ? bytes.subarray(base + SEAL_OFFSET_KEY, base + SEAL_OFFSET_KEY + PUBLIC_KEY_BYTES) : null,
    signature: signed ? bytes.subarray(base + SEAL_OFFSET_SIGNATURE, base + SEAL_OFFSET_SIGNATURE + SIGNATURE_BYTES) : null,
  }
}

/** Where a link's or seal's own fields start in `bytes`: after its batch envelope, when it has one. */
export function sealBase(bytes: Uint8Array): number {
  return bytes.length > 0 && bytes[0] === BATCH_ENVELOPE_TAG ? BATCH_ENVELOPE_BYTES : 0
}

/** The link of a seal (the same envelope, if any, then the link fields): repairs store seals as links to fit. */
export function linkOfSeal(seal: Uint8Array): Uint8Array {
  const base = sealBase(seal)
  const link = new Uint8Array(seal.subarray(0, base + LINK_BYTES)) // a copy: the seal may be the sender's buffer
  link[base + SEAL_OFFSET_KIND] = LINK_KIND
  return link
}

/** The seal of a link: the link's fields, `publicKey`, and the signature of its chain hash. */
export function signLink(link: Uint8Array, privateKey: crypto.KeyObject, publicKey: Uint8Array): Uint8Array {
  // A Buffer: CBOR encoders write it as a plain byte string (a Uint8Array gets a typed-array tag).
  const base = sealBase(link)
  const seal = Buffer.alloc(base + SEAL_BYTES)
  seal.set(link.subarray(0, base + LINK_BYTES))
  seal[base + SEAL_OFFSET_KIND] = SEAL_KIND
  seal.set(publicKey, base + SEAL_OFFSET_KEY)
  seal.set(crypto.sign(null, link.subarray(base + SEAL_OFFSET_HASH, base + SEAL_OFFSET_HASH + CHAIN_HASH_BYTES), privateKey), base + SEAL_OFFSET_SIGNATURE)
  return seal
}

/** Writes the chain hash prefix (the fields before the events) at the start of `target`. */
function writeChainPrefix(target: Uint8Array, view: DataView, origin: Uint8Array, first: number, count: number, prev: Uint8Array): void {
  for (let i = 0; i < CHAIN_DOMAIN.length; i++) target[i] = CHAIN_DOMAIN.charCodeAt(i)
  target.set(origin.subarray(0, REPLICA_ID_BYTES), 8)
  writeU64(view, 24, first)
  view.setUint32(32, count, true)
  target.set(prev, 36)
}

/** Starts a chain hash: the fields before the events. */
export function startChainHash(origin: Uint8Array, first: number, count: number, prev: Uint8Array): crypto.Hash {
  const prefix = Buffer.alloc(CHAIN_PREFIX_BYTES)
  writeChainPrefix(prefix, new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength), origin, first, count, prev)
  return crypto.createHash('sha256').update(prefix)
}

/** Batches whose prefix and events fit this scratch buffer are hashed in one call. */
const SEALER_SCRATCH_BYTES = 64 << 10

/**
 * Links own batches while they are composed: `begin`, `update` per record body, `finish` into the
 * link. A batch that is one record of up to 64 KiB (most appends) is copied into a scratch buffer
 * allocated once and hashed in one call; larger batches stream through a hash object.
 */
export class BatchSealer {
  private readonly scratch = Buffer.alloc(SEALER_SCRATCH_BYTES)
  private readonly scratchView = new DataView(this.scratch.buffer, this.scratch.byteOffset, this.scratch.byteLength)
  private used = 0
  private hash: crypto.Hash | null = null
  private first = 0
  private count = 0
  private prev: Uint8Array = ZERO_CHAIN
  /** The chain hash of the batch last finished. */
  lastHash: Uint8Array = ZERO_CHAIN

  constructor(private readonly origin: Uint8Array) {}

  begin(first: number, count: number, prev: Uint8Array): void {
    writeChainPrefix(this.scratch, this.scratchView, this.origin, first, count, prev)
    this.used = CHAIN_PREFIX_BYTES
    this.hash = null
    this.first = first
    this.count = count
    this.prev = prev
  }

  /** Adds event bytes as framed in a record body. */
  update(bytes: Uint8Array, start: number, end: number): void {
    if (this.hash === null && this.used + (end - start) <= SEALER_SCRATCH_BYTES) {
      this.scratch.set(bytes.subarray(start, end), this.used)
      this.used += end - start
      return
    }
    if (this.hash === null) this.hash = crypto.createHash('sha256').update(this.scratch.subarray(0, this.used))
    this.hash.update(bytes.subarray(start, end))
  }

  /** Writes the link at `at` in `target` (with `view` over it); returns the chain hash (the origin's new head). */
  finish(target: Uint8Array, view: DataView, at: number): Uint8Array {
    const hash: Uint8Array = this.hash === null ? crypto.hash('sha256', this.scratch.subarray(0, this.used), 'buffer') : this.hash.digest()
    this.hash = null
    writeLink(target, at, this.count, this.first, this.prev, hash, view)
    this.lastHash = hash
    return hash
  }
}

/** Writes a link's fields but the chain hash (zeros), and prev when known (zeros otherwise), for a worker to finish. */
export function writeLinkFields(target: Uint8Array, view: DataView, at: number, link: { first: number, count: number, prev: Uint8Array | null }): void {
  writeLink(target, at, link.count, link.first, link.prev ?? ZERO_CHAIN, ZERO_CHAIN, view)
}

function writeLink(target: Uint8Array, at: number, count: number, first: number, prev: Uint8Array, hash: Uint8Array,
  view = new DataView(target.buffer, target.byteOffset, target.byteLength)): void {
  target[at + SEAL_OFFSET_KIND] = LINK_KIND
  target[at + SEAL_OFFSET_VERSION] = SEAL_VERSION
  view.setUint16(at + SEAL_OFFSET_RESERVED, 0, true)
  view.setUint32(at + SEAL_OFFSET_COUNT, count, true)
  writeU64(view, at + SEAL_OFFSET_FIRST, first)
  target.set(prev, at + SEAL_OFFSET_PREV)
  target.set(hash, at + SEAL_OFFSET_HASH)
}

/**
 * The chain hash of remote events (one whole batch, in order), as the origin computed it; with
 * the batch envelope of its link or seal, when it has one (hashed after the events).
 */
export function chainHashOf(origin: Uint8Array, first: number, prev: Uint8Array,
  events: readonly { time: number, payload: Uint8Array }[], envelope: Uint8Array | null = null): Uint8Array {
  const hash = startChainHash(origin, first, events.length, prev)
  const header = Buffer.alloc(EVENT_HEADER_BYTES)
  for (const event of events) {
    header.writeUInt32LE(event.payload.length, 0)
    header.writeUInt32LE(event.time >>> 0, 4)
    header.writeUInt32LE(Math.floor(event.time / 0x1_0000_0000), 8)
    hash.update(header)
    hash.update(event.payload)
  }
  if (envelope !== null) hash.update(envelope)
  return new Uint8Array(hash.digest())
}

const keyObjects = new Map<string, crypto.KeyObject>()
const KEY_OBJECTS_MAX = 4096

/** Checks a seal's Ed25519 signature over `hash` with the seal's key (false for a link). */
export function signatureValid(fields: SealFields, hash: Uint8Array): boolean {
  if (fields.publicKey === null || fields.signature === null) return false
  const hex = bytesToHex(fields.publicKey)
  let key = keyObjects.get(hex)
  if (key === undefined) {
    try {
      key = publicKeyObject(fields.publicKey)
    } catch {
      return false
    }
    if (keyObjects.size >= KEY_OBJECTS_MAX) keyObjects.clear()
    keyObjects.set(hex, key)
  }
  try {
    return crypto.verify(null, hash, key, fields.signature!)
  } catch {
    return false
  }
}

/** Whether a seal's key derives the origin id (false for a link). */
export function keyMatchesOrigin(fields: SealFields, origin: Uint8Array): boolean {
  if (fields.publicKey === null) return false
  const derived = replicaIdBytesForKey(fields.publicKey)
  for (let i = 0; i < REPLICA_ID_BYTES; i++) if (derived[i] !== origin[i]) return false
  return true
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
