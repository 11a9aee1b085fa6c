// Signed history. Each origin chains its batches: a batch's chain hash is SHA-256 over a domain
// tag, the origin, the batch's first position and count, the previous batch's chain hash and the
// events exactly as record bodies frame them ([u32 length][u64 time][payload] each). The origin
// signs the chain hash with its Ed25519 key. The seal (docs/format.md) is stored as the extension
// of the batch's last record and travels with the events, so relays forward it unchanged and any
// receiver can check it: one hash pass and one signature per batch, whatever the batch size.

import crypto from 'node:crypto'
import {
  CHAIN_DOMAIN, CHAIN_HASH_BYTES, CHAIN_PREFIX_BYTES, EVENT_HEADER_BYTES, PUBLIC_KEY_BYTES, REPLICA_ID_BYTES, SEAL_BYTES,
  SEAL_KIND, SEAL_OFFSET_COUNT, SEAL_OFFSET_FIRST, SEAL_OFFSET_HASH, SEAL_OFFSET_KEY, SEAL_OFFSET_KIND,
  SEAL_OFFSET_PREV, SEAL_OFFSET_RESERVED, SEAL_OFFSET_SIGNATURE, SEAL_OFFSET_VERSION, SEAL_VERSION, SIGNATURE_BYTES,
  bytesToHex, readU64, writeU64,
} from './format.js'
import { publicKeyObject, replicaIdBytesForKey } from './identity.js'

export const ZERO_CHAIN = new Uint8Array(CHAIN_HASH_BYTES)

/** A seal's fields, as views into its 176 bytes. */
export interface SealFields {
  count: number
  first: number
  prev: Uint8Array
  hash: Uint8Array
  publicKey: Uint8Array
  signature: Uint8Array
}

/** Parses a seal; returns a reason instead when the bytes are not one. */
export function parseSeal(bytes: Uint8Array): SealFields | string {
  if (!(bytes instanceof Uint8Array) || bytes.length !== SEAL_BYTES) return `a seal is ${SEAL_BYTES} bytes`
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes[SEAL_OFFSET_KIND] !== SEAL_KIND || bytes[SEAL_OFFSET_VERSION] !== SEAL_VERSION) return 'unknown seal kind or version'
  if (view.getUint16(SEAL_OFFSET_RESERVED, true) !== 0) return 'seal reserved field is not zero'
  const count = view.getUint32(SEAL_OFFSET_COUNT, true)
  const first = readU64(view, SEAL_OFFSET_FIRST)
  if (count === 0 || first < 0) return 'seal count or first position out of range'
  return {
    count, first,
    prev: bytes.subarray(SEAL_OFFSET_PREV, SEAL_OFFSET_PREV + CHAIN_HASH_BYTES),
    hash: bytes.subarray(SEAL_OFFSET_HASH, SEAL_OFFSET_HASH + CHAIN_HASH_BYTES),
    publicKey: bytes.subarray(SEAL_OFFSET_KEY, SEAL_OFFSET_KEY + PUBLIC_KEY_BYTES),
    signature: bytes.subarray(SEAL_OFFSET_SIGNATURE, SEAL_OFFSET_SIGNATURE + SIGNATURE_BYTES),
  }
}

/** Starts a chain hash: the fields before the events. */
export function startChainHash(origin: Uint8Array, first: number, count: number, prev: Uint8Array): crypto.Hash {
  const prefix = Buffer.alloc(CHAIN_PREFIX_BYTES)
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength)
  prefix.write(CHAIN_DOMAIN, 0, 'latin1')
  prefix.set(origin.subarray(0, REPLICA_ID_BYTES), 8)
  writeU64(view, 24, first)
  view.setUint32(32, count, true)
  prefix.set(prev, 36)
  return crypto.createHash('sha256').update(prefix)
}

/** Signs own batches while they are composed: `begin`, `update` per record body, `finish` into the seal. */
export class BatchSealer {
  private hash: crypto.Hash | null = null
  private first = 0
  private count = 0
  private prev: Uint8Array = ZERO_CHAIN
  /** The chain hash of the batch last finished. */
  lastHash: Uint8Array = ZERO_CHAIN

  constructor(private readonly privateKey: crypto.KeyObject, private readonly publicKey: Uint8Array, private readonly origin: Uint8Array) {}

  begin(first: number, count: number, prev: Uint8Array): void {
    this.hash = startChainHash(this.origin, first, count, prev)
    this.first = first
    this.count = count
    this.prev = prev
  }

  /** Adds event bytes as framed in a record body. */
  update(bytes: Uint8Array, start: number, end: number): void {
    this.hash!.update(bytes.subarray(start, end))
  }

  /** Writes the seal at `at` in `target`; returns the chain hash (the origin's new head). */
  finish(target: Uint8Array, at: number): Uint8Array {
    const hash = new Uint8Array(this.hash!.digest())
    this.hash = null
    const signature = crypto.sign(null, hash, this.privateKey)
    writeSeal(target, at, this.count, this.first, this.prev, hash, this.publicKey, signature)
    this.lastHash = hash
    return hash
  }
}

export function writeSeal(target: Uint8Array, at: number, count: number, first: number, prev: Uint8Array,
  hash: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): void {
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength)
  target.fill(0, at, at + SEAL_BYTES)
  target[at + SEAL_OFFSET_KIND] = SEAL_KIND
  target[at + SEAL_OFFSET_VERSION] = SEAL_VERSION
  view.setUint32(at + SEAL_OFFSET_COUNT, count, true)
  writeU64(view, at + SEAL_OFFSET_FIRST, first)
  target.set(prev, at + SEAL_OFFSET_PREV)
  target.set(hash, at + SEAL_OFFSET_HASH)
  target.set(publicKey, at + SEAL_OFFSET_KEY)
  target.set(signature, at + SEAL_OFFSET_SIGNATURE)
}

/** The chain hash of remote events (one whole batch, in order), as the origin computed it. */
export function chainHashOf(origin: Uint8Array, first: number, prev: Uint8Array,
  events: readonly { time: number, payload: Uint8Array }[]): Uint8Array {
  const hash = startChainHash(origin, first, events.length, prev)
  const header = Buffer.alloc(EVENT_HEADER_BYTES)
  for (const event of events) {
    header.writeUInt32LE(event.payload.length, 0)
    header.writeUInt32LE(event.time >>> 0, 4)
    header.writeUInt32LE(Math.floor(event.time / 0x1_0000_0000), 8)
    hash.update(header)
    hash.update(event.payload)
  }
  return new Uint8Array(hash.digest())
}

const keyObjects = new Map<string, crypto.KeyObject>()
const KEY_OBJECTS_MAX = 4096

/** Checks a seal's Ed25519 signature over `hash` with the seal's key. */
export function signatureValid(fields: SealFields, hash: Uint8Array): boolean {
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
    return crypto.verify(null, hash, key, fields.signature)
  } catch {
    return false
  }
}

/** Whether a seal's key derives the origin id. */
export function keyMatchesOrigin(fields: SealFields, origin: Uint8Array): boolean {
  const derived = replicaIdBytesForKey(fields.publicKey)
  for (let i = 0; i < REPLICA_ID_BYTES; i++) if (derived[i] !== origin[i]) return false
  return true
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
