// A log's identity: an Ed25519 key pair made at first open. The private key stays in the log
// directory (file `identity`, PKCS#8 PEM, mode 0600) and never leaves the device; the replica id
// is derived from the public key, so that nobody can sign events under another replica's id.

import crypto from 'node:crypto'
import path from 'node:path'
import { LogError } from './errors.js'
import { FILE_NAME_IDENTITY, PUBLIC_KEY_BYTES, REPLICA_ID_BYTES, bytesToHex } from './format.js'
import { readFileIfExists, writeFileAtomically } from './replica.js'
import type { Storage } from './storage.js'

/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows. */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const REPLICA_ID_DOMAIN = Buffer.from('interlog replica id v1\0', 'latin1')

export interface Identity {
  privateKey: crypto.KeyObject
  publicKey: crypto.KeyObject
  /** The raw Ed25519 public key. */
  publicKeyBytes: Uint8Array
  /** 64 lowercase hex characters. */
  publicKeyHex: string
  /** The replica id it derives (32 hex characters). */
  replicaId: string
  replicaIdBytes: Uint8Array
}

/** The replica id of a public key: the first 16 bytes of SHA-256(domain || key). */
export function replicaIdBytesForKey(publicKey: Uint8Array): Uint8Array {
  const digest = crypto.createHash('sha256').update(REPLICA_ID_DOMAIN).update(publicKey).digest()
  return new Uint8Array(digest.subarray(0, REPLICA_ID_BYTES))
}

export function replicaIdForKey(publicKey: Uint8Array): string {
  return bytesToHex(replicaIdBytesForKey(publicKey))
}

export function isPublicKeyHex(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value)
}

/** A KeyObject for a raw Ed25519 public key. */
export function publicKeyObject(raw: Uint8Array): crypto.KeyObject {
  return crypto.createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' })
}

function identityOf(privateKey: crypto.KeyObject): Identity {
  const publicKey = crypto.createPublicKey(privateKey)
  const der = publicKey.export({ format: 'der', type: 'spki' })
  const publicKeyBytes = new Uint8Array(der.subarray(der.length - PUBLIC_KEY_BYTES))
  const replicaIdBytes = replicaIdBytesForKey(publicKeyBytes)
  return {
    privateKey, publicKey, publicKeyBytes, publicKeyHex: bytesToHex(publicKeyBytes),
    replicaId: bytesToHex(replicaIdBytes), replicaIdBytes,
  }
}

/** The identity in `directory` (file `name`), or null when the log has none (created with identity: false). */
export function loadIdentity(storage: Storage, directory: string, name = FILE_NAME_IDENTITY): Identity | null {
  const filePath = path.join(directory, name)
  const pem = readFileIfExists(storage, filePath)?.toString('latin1')
  if (pem === undefined) return null
  let privateKey: crypto.KeyObject
  try {
    privateKey = crypto.createPrivateKey({ key: pem, format: 'pem' })
  } catch (error) {
    throw new LogError('CORRUPT', `identity file ${filePath} is not a PEM private key (${(error as Error).message}); ` +
      'restore it from a backup: it signs this log\'s events', { path: filePath })
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new LogError('CORRUPT', `identity file ${filePath} holds a ${String(privateKey.asymmetricKeyType)} key, not Ed25519`, { path: filePath })
  }
  return identityOf(privateKey)
}

/** Makes a new key pair and stores the private key (mode 0600, written atomically). */
export function createIdentity(storage: Storage, directory: string): Identity {
  const { privateKey } = crypto.generateKeyPairSync('ed25519')
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
  writeFileAtomically(storage, directory, path.join(directory, FILE_NAME_IDENTITY), Buffer.from(pem, 'latin1'), 0o600)
  return identityOf(privateKey)
}
