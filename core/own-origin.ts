// A log's own origin, and moving to a new one. A log appends under one origin id (its replica id,
// derived from its identity key). When it cannot be sure that it still holds everything it once
// made durable under that id (damage at the tail, a truncated segment, a checkpoint that knew a
// longer log, a copy of the directory, or a peer that holds more of it than the log does and the log
// appended meanwhile), appending on at the next position could put a second history under that id
// (one history per origin: docs/sync.md). It moves instead: a new key and id for new appends; the
// old id becomes an origin like any other, whose missing events sync fetches back from peers; its
// key is kept (file identity.<old id>), so the log can still seal the old events it relays.
//
// Files: `retired-origins` (one line per retired id: id, time, reason) and `identity.<id>` (the
// retired key, 0600; absent for a log without identity), both written before the new `identity` and
// `replica`. A crash part way leaves one of: nothing changed; the old id retired but still current
// (retired again at the next move, harmless); the new key written but `replica` still naming the
// retired id: open finishes the move (finishMove). Never two current ids.

import crypto from 'node:crypto'
import path from 'node:path'
import type { Checksum } from './checksum.js'
import { LogError } from './errors.js'
import { FILE_NAME_IDENTITY, REPLICA_ID_BYTES, isReplicaIdHex } from './format.js'
import { createIdentity, loadIdentity, type Identity } from './identity.js'
import { readFileIfExists, writeFileAtomically, writeReplica, type Replica } from './replica.js'
import type { Storage } from './storage.js'

export const FILE_NAME_RETIRED_ORIGINS = 'retired-origins'
/** Keys of retired origins a log keeps, at most: beyond it the oldest keys go (their ids stay listed, their segments readable). */
export const RETIRED_KEYS_MAX = 256

export interface RetiredOrigin {
  replicaId: string
  retiredMs: number
  reason: string
  /** Its key, when the log had an identity (to seal the old events it relays): read when first needed. */
  identity(): Identity | null
}

/** A retired origin whose key, if any, is read from `identity.<id>` the first time it is asked for. */
function retiredOrigin(storage: Storage, directory: string, replicaId: string, retiredMs: number, reason: string, known?: Identity | null): RetiredOrigin {
  let identity: Identity | null | undefined = known
  return {
    replicaId, retiredMs, reason,
    identity: () => {
      if (identity !== undefined) return identity
      const name = `${FILE_NAME_IDENTITY}.${replicaId}`
      identity = storage.existsSync(path.join(directory, name)) ? loadIdentity(storage, directory, name) : null
      if (identity !== null && identity.replicaId !== replicaId) {
        throw new LogError('CORRUPT', `${name} does not hold the key of origin ${replicaId}`, { path: path.join(directory, name) })
      }
      return identity
    },
  }
}

/** The origins this log appended under before its current one, oldest first. */
export function loadRetiredOrigins(storage: Storage, directory: string): RetiredOrigin[] {
  const filePath = path.join(directory, FILE_NAME_RETIRED_ORIGINS)
  const text = readFileIfExists(storage, filePath)?.toString('utf8')
  if (text === undefined) return []
  const retired: RetiredOrigin[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const [id, ms, ...reason] = line.split(' ')
    if (!isReplicaIdHex(id) || !/^\d+$/.test(ms ?? '')) {
      throw new LogError('CORRUPT', `${filePath}: '${line.slice(0, 80)}' is not 'replica-id time reason'`, { path: filePath })
    }
    retired.push(retiredOrigin(storage, directory, id, Number(ms), reason.join(' ')))
  }
  return retired
}

/**
 * Retires `current` and makes a new own origin: a new key (when the log has one) and id, in the
 * order the top of this file gives. Returns the new identity and replica.
 */
export function moveOrigin(storage: Storage, directory: string, checksum: Checksum, current: { replica: Replica, identity: Identity | null },
  retired: RetiredOrigin[], reason: string, now: () => number): { replica: Replica, identity: Identity | null } {
  const entry = retiredOrigin(storage, directory, current.replica.id, now(), reason.replace(/\s+/g, ' ').slice(0, 500), current.identity)
  if (current.identity !== null) {
    const pem = current.identity.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
    writeFileAtomically(storage, directory, path.join(directory, `${FILE_NAME_IDENTITY}.${current.replica.id}`), Buffer.from(pem, 'latin1'), 0o600)
  }
  retired.push(entry)
  const lines = retired.map((origin) => `${origin.replicaId} ${origin.retiredMs} ${origin.reason}`)
  writeFileAtomically(storage, directory, path.join(directory, FILE_NAME_RETIRED_ORIGINS), Buffer.from(lines.join('\n') + '\n', 'utf8'))
  // Beyond the bound the oldest keys go: their events stay, but this log no longer signs them when it relays them.
  const stale = retired.length - RETIRED_KEYS_MAX
  if (stale > 0) storage.rmSync(path.join(directory, `${FILE_NAME_IDENTITY}.${retired[stale - 1]!.replicaId}`), true)
  const identity = current.identity === null ? null : createIdentity(storage, directory)
  const idBytes = identity?.replicaIdBytes ?? new Uint8Array(crypto.randomBytes(REPLICA_ID_BYTES))
  const replica = writeReplica(storage, directory, checksum, idBytes, now)
  return { replica, identity }
}

/**
 * At open: the identity derives an id the replica file does not name, and the replica file names a
 * retired origin: a move was interrupted after the new key was written. It is finished (unless
 * read-only, where the new id is used in memory). Returns the replica to use.
 */
export function finishMove(storage: Storage, directory: string, checksum: Checksum, identity: Identity, replica: Replica,
  retired: readonly RetiredOrigin[], readOnly: boolean, now: () => number): Replica | null {
  if (identity.replicaId === replica.id || !retired.some((origin) => origin.replicaId === replica.id)) return null
  if (readOnly) return { id: identity.replicaId, idBytes: identity.replicaIdBytes }
  return writeReplica(storage, directory, checksum, identity.replicaIdBytes, now)
}

export const FILE_NAME_ORIGIN_MOVE = 'origin-move'

/**
 * A re-home in progress (written before the first record is rewritten, removed after the last is
 * synced): the own events appended since open under `from`, from position `fromPos`, in the
 * records between global offsets `start` and `end`, become the first events of `to`.
 */
export interface OriginMoveIntent {
  from: string
  to: string
  fromPos: number
  start: number
  end: number
}

export function writeMoveIntent(storage: Storage, directory: string, intent: OriginMoveIntent): void {
  writeFileAtomically(storage, directory, path.join(directory, FILE_NAME_ORIGIN_MOVE), Buffer.from(JSON.stringify(intent) + '\n', 'utf8'))
}

export function readMoveIntent(storage: Storage, directory: string): OriginMoveIntent | null {
  const filePath = path.join(directory, FILE_NAME_ORIGIN_MOVE)
  const text = readFileIfExists(storage, filePath)?.toString('utf8')
  if (text === undefined) return null
  let intent: Partial<OriginMoveIntent>
  try {
    intent = JSON.parse(text) as Partial<OriginMoveIntent>
  } catch (error) {
    throw new LogError('CORRUPT', `${filePath} is not JSON (${(error as Error).message})`, { path: filePath })
  }
  const numbers = [intent.fromPos, intent.start, intent.end]
  if (!isReplicaIdHex(intent.from) || !isReplicaIdHex(intent.to) || !numbers.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) {
    throw new LogError('CORRUPT', `${filePath} does not describe a move`, { path: filePath })
  }
  return intent as OriginMoveIntent
}

export function removeMoveIntent(storage: Storage, directory: string): void {
  storage.rmSync(path.join(directory, FILE_NAME_ORIGIN_MOVE), true)
  storage.fsyncDirectorySync(directory)
}
