// Whom a log accepts events from (docs/security.md, "Trust"):
// - 'keys': only origins whose public key is on the allow-list (the option and the `trusted-keys`
//   file in the log directory, which `interlog trust add|rm|ls` edits), every batch sealed.
// - 'open' (explicit): any origin, but every batch must carry a valid seal by the key its replica
//   id derives from.
// - 'default' (no option, no trusted-keys file): as 'open' for events that come over the network
//   (sync merges with `remote`); `merge()` called by the application itself may still hand in
//   unsigned events (the issue-2 API: the caller vouches for them), unless their origin signs.
// - 'off' (explicit): unsigned events from anyone, over sync too, as before signing existed;
//   seals that come are still checked, and an origin known to sign cannot continue unsigned.

import path from 'node:path'
import { LogError } from './errors.js'
import { FILE_NAME_TRUSTED_KEYS } from './format.js'
import { isPublicKeyHex, replicaIdForKey } from './identity.js'
import { readFileIfExists, writeFileAtomically } from './replica.js'
import { nodeStorage, type Storage } from './storage.js'

export type TrustOption = 'off' | 'open' | readonly string[]

export interface TrustPolicy {
  mode: 'default' | 'off' | 'open' | 'keys'
  /** Public keys (hex) accepted in mode 'keys'. */
  keys: ReadonlySet<string>
  /** The replica ids those keys derive: events of other origins are refused before anything is held. */
  origins: ReadonlySet<string>
}

export interface TrustedKey {
  publicKey: string
  replicaId: string
  note: string
}

/** The allow-list in `directory`, or null when there is no trusted-keys file. */
export function readTrustedKeys(directory: string, storage: Storage = nodeStorage): TrustedKey[] | null {
  const filePath = path.join(directory, FILE_NAME_TRUSTED_KEYS)
  const text = readFileIfExists(storage, filePath)?.toString('utf8')
  if (text === undefined) return null
  const keys: TrustedKey[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (line === '' || line.startsWith('#')) continue
    const [key, ...note] = line.split(/\s+/)
    if (!isPublicKeyHex(key)) {
      throw new LogError('INVALID_ARGUMENT', `${filePath} line ${i + 1}: '${key}' is not a public key (64 lowercase hex characters)`, { path: filePath, line: i + 1 })
    }
    keys.push({ publicKey: key, replicaId: replicaIdForKey(Buffer.from(key, 'hex')), note: note.join(' ') })
  }
  return keys
}

/** The CLI's write of the allow-list (on the real file system; a running log reads it at open). */
function writeTrustedKeys(directory: string, keys: readonly TrustedKey[]): void {
  const text = '# InterLog trusted keys: one Ed25519 public key (hex) per line, then an optional note.\n' +
    keys.map((key) => `${key.publicKey}${key.note === '' ? '' : ` ${key.note}`}\n`).join('')
  writeFileAtomically(nodeStorage, directory, path.join(directory, FILE_NAME_TRUSTED_KEYS), Buffer.from(text, 'utf8'))
}

/** Adds a key to the allow-list (creating it: the log then accepts only listed keys). Returns false if it was there. */
export function addTrustedKey(directory: string, publicKey: string, note = ''): boolean {
  if (!isPublicKeyHex(publicKey)) throw new LogError('INVALID_ARGUMENT', `'${publicKey}' is not a public key (64 lowercase hex characters)`)
  const keys = readTrustedKeys(directory) ?? []
  if (keys.some((key) => key.publicKey === publicKey)) return false
  keys.push({ publicKey, replicaId: replicaIdForKey(Buffer.from(publicKey, 'hex')), note: note.replace(/\s+/g, ' ').trim() })
  writeTrustedKeys(directory, keys)
  return true
}

/** Removes a key (by public key or replica id). Returns false if it was not listed. */
export function removeTrustedKey(directory: string, keyOrId: string): boolean {
  const keys = readTrustedKeys(directory) ?? []
  const kept = keys.filter((key) => key.publicKey !== keyOrId && key.replicaId !== keyOrId)
  if (kept.length === keys.length) return false
  writeTrustedKeys(directory, kept)
  return true
}

export function checkTrustOption(value: unknown): boolean {
  return value === 'off' || value === 'open' || (Array.isArray(value) && value.every(isPublicKeyHex))
}

/** The policy of a log: the option, else the trusted-keys file, else 'default'. The own key is always trusted. */
export function resolveTrust(storage: Storage, directory: string, option: TrustOption | undefined, ownKey: string | null): TrustPolicy {
  const file = readTrustedKeys(directory, storage)
  if (option === 'off' || option === 'open') return { mode: option, keys: new Set(), origins: new Set() }
  if (option === undefined && file === null) return { mode: 'default', keys: new Set(), origins: new Set() }
  const keys = new Set<string>([...(option ?? []), ...(file ?? []).map((key) => key.publicKey)])
  if (ownKey !== null) keys.add(ownKey)
  return { mode: 'keys', keys, origins: new Set([...keys].map((key) => replicaIdForKey(Buffer.from(key, 'hex')))) }
}
