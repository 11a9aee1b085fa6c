// Payload encryption with a key shared by the replicas of a log (ChaCha20-Poly1305). Only payloads
// are encrypted: origins, positions, times, version vectors and seals stay readable, so a relay or
// broker without the key still stores, verifies and forwards events, seeing only ciphertext.
//
// Nonces are never reused under one key. Each origin encrypts under its own subkey,
// HKDF-SHA256(log key, origin id), and a nonce is (epoch u32, counter u64): the epoch is a counter
// in the file `nonce-epoch`, raised and fsynced at every open before anything is encrypted, and
// the counter restarts at 0 with each epoch. A crash therefore never repeats a nonce, whatever was
// lost. The envelope (docs/security.md): [u8 0xE1][u32 key id][12-byte nonce][ciphertext][16-byte tag].
//
// Own batches of a log with identity are encrypted a batch at a time (segment version 3): one
// AEAD over the payloads of each linked batch, concatenated, each payload keeping its length, and
// a 40-byte batch envelope (key id, nonce, tag) stored before the batch's link. One cipher setup
// per batch, not per event: node:crypto's setup costs about 3 to 10 us. Batch envelopes take their
// nonces from the same (epoch, counter) sequence as per-event envelopes.

import crypto from 'node:crypto'
import path from 'node:path'
import { LogError } from './errors.js'
import {
  BATCH_ENVELOPE_AAD_BYTES, BATCH_ENVELOPE_BYTES, BATCH_ENVELOPE_OFFSET_AUTH_TAG, BATCH_ENVELOPE_OFFSET_KEY_ID, BATCH_ENVELOPE_OFFSET_NONCE,
  BATCH_ENVELOPE_OFFSET_VERSION, BATCH_ENVELOPE_TAG, BATCH_ENVELOPE_VERSION, ENVELOPE_NONCE_BYTES,
  ENVELOPE_AUTH_TAG_BYTES, ENVELOPE_HEADER_BYTES, ENVELOPE_OFFSET_KEY_ID, ENVELOPE_OFFSET_NONCE, ENVELOPE_OFFSET_TAG,
  ENVELOPE_OVERHEAD_BYTES, ENVELOPE_TAG, FILE_NAME_NONCE_EPOCH, REPLICA_ID_BYTES, hexToBytes,
} from './format.js'
import { writeFileAtomically } from './replica.js'
import type { Storage } from './storage.js'

const CIPHER = 'chacha20-poly1305'
const SUBKEY_INFO = 'interlog payload key v1'
const EPOCH_MAX = 0xffff_ffff
const SUBKEYS_MAX = 4096

export interface EncryptionKey {
  /** Written into each envelope, so that old events stay readable after a rotation. */
  id: number
  /** 32 bytes. */
  key: Uint8Array
}

export interface EncryptionOptions {
  keys: readonly EncryptionKey[]
  /** Id of the key new events are encrypted with; default the largest id. */
  current?: number
}

export function checkEncryptionOption(value: unknown): boolean {
  if (value === null) return true
  if (typeof value !== 'object' || Array.isArray(value)) return false
  const { keys, current } = value as Partial<EncryptionOptions>
  if (!Array.isArray(keys) || keys.length === 0) return false
  const ids = new Set<number>()
  for (const entry of keys) {
    if (typeof entry !== 'object' || entry === null) return false
    if (!Number.isInteger(entry.id) || entry.id < 0 || entry.id > 0xffff_ffff || ids.has(entry.id)) return false
    if (!(entry.key instanceof Uint8Array) || entry.key.length !== 32) return false
    ids.add(entry.id)
  }
  return current === undefined || ids.has(current)
}

export class PayloadCipher {
  private readonly keys = new Map<number, Uint8Array>()
  private readonly current: number
  private readonly subkeys = new Map<string, Buffer>()
  private counter = 0
  /** Payloads of a batch gathered into one run for its AEAD (grown as needed, kept). */
  constructor(options: EncryptionOptions, private readonly epoch: number) {
    for (const entry of options.keys) this.keys.set(entry.id, entry.key)
    this.current = options.current ?? Math.max(...this.keys.keys())
  }

  private subkey(keyId: number, origin: string): Buffer | undefined {
    const name = `${keyId}:${origin}`
    let subkey = this.subkeys.get(name)
    if (subkey !== undefined) return subkey
    const key = this.keys.get(keyId)
    if (key === undefined) return undefined
    const originBytes = new Uint8Array(REPLICA_ID_BYTES)
    hexToBytes(origin, originBytes, 0)
    subkey = Buffer.from(crypto.hkdfSync('sha256', key, originBytes, SUBKEY_INFO, 32))
    if (this.subkeys.size >= SUBKEYS_MAX) this.subkeys.clear()
    this.subkeys.set(name, subkey)
    return subkey
  }

  /** The envelope of `payload` appended by `origin` (this log's own id). */
  encrypt(origin: string, payload: Uint8Array): Uint8Array {
    const out = Buffer.allocUnsafe(payload.length + ENVELOPE_OVERHEAD_BYTES)
    out[ENVELOPE_OFFSET_TAG] = ENVELOPE_TAG
    out.writeUInt32LE(this.current, ENVELOPE_OFFSET_KEY_ID)
    this.nextNonce(out, ENVELOPE_OFFSET_NONCE)
    const nonce = out.subarray(ENVELOPE_OFFSET_NONCE, ENVELOPE_HEADER_BYTES)
    const cipher = crypto.createCipheriv(CIPHER, this.subkey(this.current, origin)!, nonce, { authTagLength: ENVELOPE_AUTH_TAG_BYTES }) as unknown as crypto.CipherGCM
    cipher.setAAD(out.subarray(0, ENVELOPE_OFFSET_NONCE))
    const body = cipher.update(payload)
    body.copy(out, ENVELOPE_HEADER_BYTES)
    cipher.final()
    cipher.getAuthTag().copy(out, ENVELOPE_HEADER_BYTES + payload.length)
    return out
  }

  /** Writes the next nonce (epoch u32, counter u64) at `at` in `target`: never the same twice under one key (top of this file). */
  private nextNonce(target: Uint8Array, at: number): void {
    const view = new DataView(target.buffer, target.byteOffset, target.byteLength)
    view.setUint32(at, this.epoch, true)
    view.setUint32(at + 4, this.counter % 0x1_0000_0000, true)
    view.setUint32(at + 8, Math.floor(this.counter / 0x1_0000_0000), true)
    this.counter++
  }

  /** The subkey a batch envelope of `origin` names, or why this log cannot open it. */
  private batchSubkey(origin: string, envelope: Uint8Array): Buffer | string {
    const keyId = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength).getUint32(BATCH_ENVELOPE_OFFSET_KEY_ID, true)
    return this.subkey(keyId, origin) ?? `batch is encrypted with key id ${keyId}, which this log does not have`
  }

  /** Gathers payloads into the scratch buffer (grown as needed, kept); returns their total length. */
  private gather(payloads: readonly Uint8Array[], from: number, to: number): number {
    let total = 0
    for (let i = from; i < to; i++) total += (payloads[i] as Uint8Array).length
    if (this.scratch.length < total) this.scratch = Buffer.allocUnsafe(Math.max(total, this.scratch.length * 2))
    let at = 0
    for (let i = from; i < to; i++) {
      const payload = payloads[i] as Uint8Array
      this.scratch.set(payload, at)
      at += payload.length
    }
    return total
  }

  private scratch = Buffer.allocUnsafe(64 << 10)

  /**
   * Encrypts payloads [from, to) of an own batch of `origin` (this log's own id) as one AEAD:
   * returns their ciphertexts concatenated in one new buffer (each keeps its payload's length) and
   * writes the batch envelope into `envelope` (BATCH_ENVELOPE_BYTES). No object per payload.
   */
  encryptBatch(origin: string, payloads: readonly Uint8Array[], from: number, to: number, envelope: Uint8Array): Buffer {
    const total = this.gather(payloads, from, to)
    envelope.fill(0, 0, BATCH_ENVELOPE_BYTES)
    envelope[0] = BATCH_ENVELOPE_TAG
    envelope[BATCH_ENVELOPE_OFFSET_VERSION] = BATCH_ENVELOPE_VERSION
    new DataView(envelope.buffer, envelope.byteOffset, BATCH_ENVELOPE_BYTES).setUint32(BATCH_ENVELOPE_OFFSET_KEY_ID, this.current, true)
    this.nextNonce(envelope, BATCH_ENVELOPE_OFFSET_NONCE)
    const nonce = envelope.subarray(BATCH_ENVELOPE_OFFSET_NONCE, BATCH_ENVELOPE_OFFSET_NONCE + ENVELOPE_NONCE_BYTES)
    const cipher = crypto.createCipheriv(CIPHER, this.subkey(this.current, origin)!, nonce, { authTagLength: ENVELOPE_AUTH_TAG_BYTES }) as unknown as crypto.CipherGCM
    cipher.setAAD(envelope.subarray(0, BATCH_ENVELOPE_AAD_BYTES))
    const sealed = cipher.update(this.scratch.subarray(0, total))
    cipher.final()
    envelope.set(cipher.getAuthTag(), BATCH_ENVELOPE_OFFSET_AUTH_TAG)
    return sealed
  }

  /** Why a batch envelope by `origin` cannot be opened, judged from its key id alone; undefined when it may. */
  batchHeaderProblem(origin: string, envelope: Uint8Array): string | undefined {
    const subkey = this.batchSubkey(origin, envelope)
    return typeof subkey === 'string' ? subkey : undefined
  }

  /**
   * The plaintext of a batch by `origin` under its batch `envelope`: the ciphertexts in order,
   * concatenated, as one new buffer (each payload keeps its length); or a reason it cannot be opened.
   */
  decryptBatch(origin: string, envelope: Uint8Array, sealed: readonly Uint8Array[]): Buffer | string {
    const subkey = this.batchSubkey(origin, envelope)
    if (typeof subkey === 'string') return subkey
    const total = this.gather(sealed, 0, sealed.length)
    const decipher = crypto.createDecipheriv(CIPHER, subkey, envelope.subarray(BATCH_ENVELOPE_OFFSET_NONCE, BATCH_ENVELOPE_OFFSET_NONCE + ENVELOPE_NONCE_BYTES),
      { authTagLength: ENVELOPE_AUTH_TAG_BYTES }) as unknown as crypto.DecipherGCM
    decipher.setAAD(envelope.subarray(0, BATCH_ENVELOPE_AAD_BYTES))
    decipher.setAuthTag(envelope.subarray(BATCH_ENVELOPE_OFFSET_AUTH_TAG, BATCH_ENVELOPE_OFFSET_AUTH_TAG + ENVELOPE_AUTH_TAG_BYTES))
    const plain = decipher.update(this.scratch.subarray(0, total))
    try {
      decipher.final()
    } catch {
      return 'batch fails authentication (altered, or another key)'
    }
    return plain
  }

  /** Why an envelope by `origin` cannot be opened, judged from its header alone (shape and key id); undefined when it may. */
  headerProblem(origin: string, envelope: Uint8Array): string | undefined {
    if (envelope.length < ENVELOPE_OVERHEAD_BYTES || envelope[ENVELOPE_OFFSET_TAG] !== ENVELOPE_TAG) return 'payload is not an encrypted envelope'
    const keyId = envelope[ENVELOPE_OFFSET_KEY_ID]! | (envelope[ENVELOPE_OFFSET_KEY_ID + 1]! << 8) | (envelope[ENVELOPE_OFFSET_KEY_ID + 2]! << 16) | (envelope[ENVELOPE_OFFSET_KEY_ID + 3]! * 0x100_0000)
    return this.subkey(keyId >>> 0, origin) === undefined ? `payload is encrypted with key id ${keyId >>> 0}, which this log does not have` : undefined
  }

  /** The plaintext of an envelope by `origin`, or a reason it cannot be opened. */
  decrypt(origin: string, envelope: Uint8Array): Uint8Array | string {
    if (envelope.length < ENVELOPE_OVERHEAD_BYTES || envelope[ENVELOPE_OFFSET_TAG] !== ENVELOPE_TAG) return 'payload is not an encrypted envelope'
    const view = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength)
    const keyId = view.getUint32(ENVELOPE_OFFSET_KEY_ID, true)
    const subkey = this.subkey(keyId, origin)
    if (subkey === undefined) return `payload is encrypted with key id ${keyId}, which this log does not have`
    const decipher = crypto.createDecipheriv(CIPHER, subkey, envelope.subarray(ENVELOPE_OFFSET_NONCE, ENVELOPE_HEADER_BYTES),
      { authTagLength: ENVELOPE_AUTH_TAG_BYTES }) as unknown as crypto.DecipherGCM
    decipher.setAAD(envelope.subarray(0, ENVELOPE_OFFSET_NONCE))
    decipher.setAuthTag(envelope.subarray(envelope.length - ENVELOPE_AUTH_TAG_BYTES))
    const plain = decipher.update(envelope.subarray(ENVELOPE_HEADER_BYTES, envelope.length - ENVELOPE_AUTH_TAG_BYTES))
    try {
      decipher.final()
    } catch {
      return 'payload fails authentication (altered, or another key)'
    }
    return plain
  }
}

/** Raises the nonce epoch stored in `directory` (fsynced before it is used) and returns it. */
export function nextNonceEpoch(storage: Storage, directory: string): number {
  const filePath = path.join(directory, FILE_NAME_NONCE_EPOCH)
  let epoch = 0
  try {
    const text = storage.readFileSync(filePath).toString('latin1').trim()
    if (!/^\d{1,10}$/.test(text)) {
      throw new LogError('CORRUPT', `${filePath} does not hold an epoch number; encrypting could reuse nonces. ` +
        'Rotate the log key, then delete the file', { path: filePath })
    }
    epoch = Number(text)
  } catch (error) {
    if (error instanceof LogError) throw error
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new LogError('IO', `cannot read ${filePath}: ${(error as Error).message}`, { path: filePath, cause: error })
    }
  }
  if (epoch >= EPOCH_MAX) {
    throw new LogError('INVALID_ARGUMENT', `${filePath}: nonce epochs of this key are used up; rotate the log key (docs/security.md)`, { path: filePath })
  }
  writeFileAtomically(storage, directory, filePath, Buffer.from(`${epoch + 1}\n`, 'latin1'))
  return epoch + 1
}
