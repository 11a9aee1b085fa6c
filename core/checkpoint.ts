// The checkpoint: a snapshot of the indexes and version vector up to a durable record boundary,
// so that opening a large log scans only what was written after it. It is a cache, never the
// source of truth: a missing, damaged or inconsistent checkpoint is ignored (with a warning) and
// the log is scanned from its first segment instead.
//
// File: a 32-byte header (magic, version, body length, xxh64 of the body) then a CBOR body.
// Written atomically (temp, fsync, rename, fsync directory).

import path from 'node:path'
import { decode, encode } from 'cbor-x'
import type { Checksum } from './checksum.js'
import {
  CHECKPOINT_BODY_BYTES_MAX, CHECKPOINT_HEADER_BYTES, CHECKPOINT_MAGIC, CHECKPOINT_OFFSET_CHECKSUM,
  CHECKPOINT_OFFSET_LENGTH, CHECKPOINT_OFFSET_MAGIC, CHECKPOINT_OFFSET_VERSION, FILE_NAME_CHECKPOINT, FORMAT_VERSION,
  isReplicaIdHex,
} from './format.js'
import { writeFileAtomically } from './replica.js'
import type { Storage } from './storage.js'

export interface CheckpointOrigin {
  origin: string
  count: number
  positions: number[]
  offsets: number[]
}

export interface CheckpointBody {
  /** Events in the log at the checkpoint. */
  length: number
  /** Global offset just past the last record covered. */
  end: number
  /** Global offset of the last record covered (checked at open). */
  lastRecordOffset: number
  /** [segment index, data end] of every segment up to the end. */
  segmentEnds: [number, number][]
  local: { positions: number[], offsets: number[] }
  origins: CheckpointOrigin[]
}

export function writeCheckpoint(storage: Storage, directory: string, body: CheckpointBody, checksum: Checksum): void {
  const encoded = encode(body) as Uint8Array
  const bytes = Buffer.alloc(CHECKPOINT_HEADER_BYTES + encoded.length)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  bytes.write(CHECKPOINT_MAGIC, CHECKPOINT_OFFSET_MAGIC, 'latin1')
  view.setUint16(CHECKPOINT_OFFSET_VERSION, FORMAT_VERSION, true)
  view.setUint32(CHECKPOINT_OFFSET_LENGTH, encoded.length, true)
  view.setBigUint64(CHECKPOINT_OFFSET_CHECKSUM, checksum(encoded), true)
  bytes.set(encoded, CHECKPOINT_HEADER_BYTES)
  writeFileAtomically(storage, directory, path.join(directory, FILE_NAME_CHECKPOINT), bytes)
}

/** Reads the checkpoint; returns undefined when there is none, or a reason when it is unusable. */
export function readCheckpoint(storage: Storage, directory: string, checksum: Checksum): CheckpointBody | undefined | string {
  let bytes: Buffer
  try {
    bytes = storage.readFileSync(path.join(directory, FILE_NAME_CHECKPOINT))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    return `checkpoint unreadable: ${(error as Error).message}`
  }
  if (bytes.length < CHECKPOINT_HEADER_BYTES) return 'checkpoint is short'
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.toString('latin1', 0, 8) !== CHECKPOINT_MAGIC) return 'checkpoint has no magic'
  if (view.getUint16(CHECKPOINT_OFFSET_VERSION, true) !== FORMAT_VERSION) return 'checkpoint version is not supported'
  const length = view.getUint32(CHECKPOINT_OFFSET_LENGTH, true)
  if (length > CHECKPOINT_BODY_BYTES_MAX || CHECKPOINT_HEADER_BYTES + length !== bytes.length) return 'checkpoint length mismatch'
  const body = bytes.subarray(CHECKPOINT_HEADER_BYTES)
  if (view.getBigUint64(CHECKPOINT_OFFSET_CHECKSUM, true) !== checksum(body)) return 'checkpoint checksum mismatch'
  let decoded: unknown
  try {
    decoded = decode(body)
  } catch (error) {
    return `checkpoint body does not decode: ${(error as Error).message}`
  }
  return isCheckpointBody(decoded) ? decoded : 'checkpoint body has the wrong shape'
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0
const isCountArray = (value: unknown): value is number[] => Array.isArray(value) && value.every(isCount)

function isCheckpointBody(value: unknown): value is CheckpointBody {
  if (typeof value !== 'object' || value === null) return false
  const body = value as Record<string, unknown>
  const local = body['local'] as Record<string, unknown> | undefined
  return isCount(body['length']) && isCount(body['end']) && isCount(body['lastRecordOffset']) &&
    Array.isArray(body['segmentEnds']) &&
    body['segmentEnds'].every((pair) => Array.isArray(pair) && pair.length === 2 && isCountArray(pair)) &&
    typeof local === 'object' && local !== null && isCountArray(local['positions']) && isCountArray(local['offsets']) &&
    Array.isArray(body['origins']) && body['origins'].every((entry: unknown) => {
      if (typeof entry !== 'object' || entry === null) return false
      const origin = entry as Record<string, unknown>
      return isReplicaIdHex(origin['origin']) && isCount(origin['count']) &&
        isCountArray(origin['positions']) && isCountArray(origin['offsets']) &&
        (origin['positions'] as number[]).length === (origin['offsets'] as number[]).length
    })
}
