// The replica file: this log's replica id (derived from the identity key, or 16 random bytes), created at first open and
// changed only when the log moves to a new origin (core/own-origin.ts). Written to a temporary name, synced, renamed, and
// the directory synced, so a crash leaves either no file or a whole one.

import crypto from 'node:crypto'
import path from 'node:path'
import type { Checksum } from './checksum.js'
import { LogError } from './errors.js'
import {
  FILE_NAME_REPLICA, FORMAT_VERSION, REPLICA_FILE_BYTES, REPLICA_ID_BYTES, REPLICA_MAGIC, REPLICA_OFFSET_CHECKSUM,
  REPLICA_OFFSET_CREATED_MS, REPLICA_OFFSET_ID, REPLICA_OFFSET_MAGIC, REPLICA_OFFSET_VERSION, bytesToHex, writeU64,
} from './format.js'
import { closeSynced, type Storage } from './storage.js'
import { writeAllSync } from './write-all.js'

export interface Replica {
  id: string
  idBytes: Uint8Array
}

/**
 * The replica file, created when missing with `idForNewLog` (derived from the identity key) or,
 * for a log without identity, 16 random bytes.
 */
export function loadOrCreateReplica(storage: Storage, directory: string, checksum: Checksum, idForNewLog: Uint8Array | null = null, now: () => number = Date.now): Replica {
  const filePath = path.join(directory, FILE_NAME_REPLICA)
  const bytes = readFileIfExists(storage, filePath)
  if (bytes === null) return writeReplica(storage, directory, checksum, idForNewLog ?? crypto.randomBytes(REPLICA_ID_BYTES), now)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const valid = bytes.length === REPLICA_FILE_BYTES &&
    bytes.toString('latin1', REPLICA_OFFSET_MAGIC, REPLICA_OFFSET_MAGIC + 8) === REPLICA_MAGIC &&
    view.getBigUint64(REPLICA_OFFSET_CHECKSUM, true) === checksum(bytes.subarray(0, REPLICA_OFFSET_CHECKSUM))
  if (!valid) {
    throw new LogError('CORRUPT', `replica file ${filePath} is damaged (bad size, magic or checksum); ` +
      'restore it from a backup: it names this log to its peers', { path: filePath, segment: FILE_NAME_REPLICA, offset: 0 })
  }
  const version = view.getUint16(REPLICA_OFFSET_VERSION, true)
  if (version !== FORMAT_VERSION) {
    throw new LogError('CORRUPT', `replica file ${filePath} has format version ${version}; this build reads ${FORMAT_VERSION}`,
      { path: filePath })
  }
  const idBytes = bytes.slice(REPLICA_OFFSET_ID, REPLICA_OFFSET_ID + REPLICA_ID_BYTES)
  return { id: bytesToHex(idBytes), idBytes }
}

/** Writes the replica file naming `id` (atomically): at creation, and when the log moves to a new origin (core/own-origin.ts). */
export function writeReplica(storage: Storage, directory: string, checksum: Checksum, id: Uint8Array, now: () => number): Replica {
  const filePath = path.join(directory, FILE_NAME_REPLICA)
  const idBytes = Buffer.from(id)
  const bytes = Buffer.alloc(REPLICA_FILE_BYTES)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  bytes.write(REPLICA_MAGIC, REPLICA_OFFSET_MAGIC, 'latin1')
  view.setUint16(REPLICA_OFFSET_VERSION, FORMAT_VERSION, true)
  bytes.set(idBytes, REPLICA_OFFSET_ID)
  writeU64(view, REPLICA_OFFSET_CREATED_MS, now())
  view.setBigUint64(REPLICA_OFFSET_CHECKSUM, checksum(bytes.subarray(0, REPLICA_OFFSET_CHECKSUM)), true)
  writeFileAtomically(storage, directory, filePath, bytes)
  return { id: bytesToHex(idBytes), idBytes: new Uint8Array(idBytes) }
}

/** The content of a small file of the log directory, or null when it does not exist; other failures are IO. */
export function readFileIfExists(storage: Storage, filePath: string): Buffer | null {
  try {
    return storage.readFileSync(filePath)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new LogError('IO', `cannot read ${filePath}: ${(error as Error).message}`, { path: filePath, cause: error })
  }
}

/** temp file, fsync, rename, fsync directory: readers see the old file or the new, whole. */
export function writeFileAtomically(storage: Storage, directory: string, filePath: string, bytes: Uint8Array, mode = 0o644): void {
  const temporary = `${filePath}.tmp`
  storage.rmSync(temporary, true)
  const fd = storage.openSync(temporary, 'truncate', { permissions: mode })
  try {
    writeAllSync(storage, fd, bytes, 0, bytes.length, 0)
    storage.fsyncSync(fd)
  } finally {
    closeSynced(storage, fd)
  }
  storage.renameSync(temporary, filePath)
  storage.fsyncDirectorySync(directory)
}
