// Authenticating remote events before merge stores them (docs/security.md). A run of an origin's
// events, contiguous from the count this log holds, is cut into batches at their links and seals.
// Every batch must hash to its link's chain hash and link to the previous one (the first to the
// chain this log holds); a signed seal by the key the origin id derives from (and, with an
// allow-list, a listed key) then vouches for every batch up to it. Batches up to the last valid
// seal are accepted; linked batches after it wait for a later seal; the rest is rejected.
// Duplicates carrying a seal are checked against the chain hash this log holds for the same batch
// (of a recent batch, or read from the log): the same key signing two histories is equivocation.

import { bytesToHex } from './format.js'
import type { PayloadCipher } from './crypt.js'
import type { OriginState } from './indexes.js'
import type { RemoteEvent } from './merge-buffer.js'
import { ZERO_CHAIN, chainHashOf, equalBytes, keyMatchesOrigin, parseSeal, signatureValid, type SealFields } from './seal.js'
import type { TrustPolicy } from './trust.js'

/** Events [from, to) of a run, stored as one batch with `seal` (null: unsigned). */
export interface AcceptedBatch {
  from: number
  to: number
  seal: Uint8Array | null
  hash: Uint8Array | null
}

/** The origin's key signed two different histories. */
export interface Equivocation {
  origin: string
  /** First position where the histories differ (the start of the conflicting batch). */
  pos: number
  publicKey: string
  /** Chain hash this log holds, and the conflicting one (hex). */
  held: string
  conflicting: string
}

export interface RunVerdict {
  batches: AcceptedBatch[]
  /** Events [accepted, pendingEnd) wait for the seal of their batch. */
  accepted: number
  pendingEnd: number
  /** Events [rejectedAt, run.length) fail authentication (rejectedAt = run.length: none). */
  rejectedAt: number
  reason: string
  equivocation: Equivocation | null
  /**
   * With encryption: the plaintext of events of batches with a batch envelope (opened to check
   * them), by index in the run, for the sync validators; absent for the others.
   */
  plain: (Uint8Array | undefined)[]
}

/** Whether events of this origin must come in sealed batches. */
export function needsSeals(policy: TrustPolicy, state: OriginState, sealed: boolean, remote: boolean): boolean {
  const required = policy.mode === 'default' ? remote : policy.mode !== 'off'
  return required || state.signed || sealed
}

/** Why an event cannot be decrypted by a log with encryption (undefined: it can, or the log has none). */
export function undecryptable(event: RemoteEvent, cipher: PayloadCipher | null): string | undefined {
  if (cipher === null) return undefined
  const plain = cipher.decrypt(event.origin, event.payload)
  return typeof plain === 'string' ? plain : undefined
}

/** Checks a run of linked and sealed batches; `state.chain` must be loaded. */
export function checkSealedRun(state: OriginState, run: readonly RemoteEvent[], policy: TrustPolicy, cipher: PayloadCipher | null): RunVerdict {
  const verdict: RunVerdict = { batches: [], accepted: 0, pendingEnd: 0, rejectedAt: run.length, reason: '', equivocation: null, plain: [] }
  let head = state.count === 0 ? ZERO_CHAIN : state.chain
  let provisional: AcceptedBatch[] = []
  /** Set when the run's first batch links to another history than the one held. */
  let fork: { held: Uint8Array, conflicting: Uint8Array } | null = null
  let i = 0
  const reject = (at: number, reason: string): RunVerdict => {
    verdict.pendingEnd = at
    verdict.rejectedAt = at
    verdict.reason = `${state.origin} from position ${run[at]!.pos}: ${reason}`
    return verdict
  }
  while (i < run.length) {
    let j = i
    while (j < run.length && run[j]!.seal === undefined) j++
    if (j === run.length) break
    const fields = parseSeal(run[j]!.seal!)
    if (typeof fields === 'string') return reject(i, `bad seal (${fields})`)
    if (fields.first < run[i]!.pos) {
      // A batch overlapping events held: a replay of a batch held (its hash is ours), or, if
      // validly signed by the origin's key, a second history.
      // Equivocation needs the chain hash held for the same batch end to compare with; an old
      // genuine seal replayed is only a forgery.
      const held = state.recentSeals.get(fields.first + fields.count)
      if (held === undefined || equalBytes(held, fields.hash)) return reject(i, 'a seal of positions held, replayed on other events')
      if (keyMatchesOrigin(fields, state.originBytes) && signatureValid(fields, fields.hash)) {
        verdict.equivocation = equivocation(state, fields, head)
        return reject(i, 'equivocation: a signed batch overlaps batches held')
      }
      return reject(i, 'seal does not cover its batch')
    }
    if (fields.first !== run[i]!.pos || fields.count !== j - i + 1) return reject(i, 'seal does not cover its batch (events missing or added)')
    const hash = chainHashOf(state.originBytes, fields.first, fields.prev, run.slice(i, j + 1), fields.envelope)
    if (!equalBytes(hash, fields.hash)) return reject(i, 'events do not match their seal (altered)')
    if (head === null || !equalBytes(fields.prev, head)) {
      if (i > 0 || head === null || !state.signed || state.count === 0) return reject(i, 'the batch does not link to the chain held')
      fork = { held: head, conflicting: fields.prev }
    }
    if (cipher !== null && fields.envelope !== null) {
      const plain = cipher.decryptBatch(state.origin, fields.envelope, run.slice(i, j + 1).map((event) => event.payload))
      if (typeof plain === 'string') return reject(i, `events ${run[i]!.pos} to ${run[j]!.pos}: ${plain}`)
      let at = 0
      for (let k = i; k <= j; k++) {
        const length = run[k]!.payload.length
        verdict.plain[k] = plain.subarray(at, at + length)
        at += length
      }
    } else if (cipher !== null) {
      for (let k = i; k <= j; k++) {
        const reason = undecryptable(run[k]!, cipher)
        if (reason !== undefined) return reject(i, `event ${run[k]!.pos}: ${reason}`)
      }
    }
    provisional.push({ from: i, to: j + 1, seal: run[j]!.seal!, hash })
    head = hash
    i = j + 1
    if (!fields.signed) continue
    const from = provisional[0]!.from
    if (!keyMatchesOrigin(fields, state.originBytes)) return reject(from, 'the seal\'s key does not derive this origin id')
    const keyHex = bytesToHex(fields.publicKey!)
    if (policy.mode === 'keys' && !policy.keys.has(keyHex)) return reject(from, `key ${keyHex} is not trusted`)
    if (!signatureValid(fields, hash)) return reject(from, 'signature is not valid')
    if (fork !== null) {
      verdict.equivocation = { origin: state.origin, pos: run[0]!.pos, publicKey: keyHex, held: bytesToHex(fork.held), conflicting: bytesToHex(fork.conflicting) }
      return reject(0, 'equivocation: the batch links to another history')
    }
    verdict.batches.push(...provisional)
    provisional = []
    verdict.accepted = i
  }
  verdict.pendingEnd = run.length
  return verdict
}

/**
 * Checks a sealed duplicate (a batch ending at or before the count held): 'duplicate' when this
 * log holds the same chain hash or cannot tell, 'forged' when the seal is not the origin's, or an
 * equivocation when the origin's key signed another chain hash for the same batch end.
 */
export function checkSealedDuplicate(state: OriginState, seal: Uint8Array, stored?: Uint8Array | null): 'duplicate' | 'forged' | Equivocation {
  const fields = parseSeal(seal)
  if (typeof fields === 'string') return 'forged'
  const held = state.recentSeals.get(fields.first + fields.count) ?? stored ?? undefined
  if (held === undefined || equalBytes(held, fields.hash)) return 'duplicate'
  // A different chain hash for a batch held: proof of a second history only if the origin signed it.
  if (!keyMatchesOrigin(fields, state.originBytes) || !signatureValid(fields, fields.hash)) return 'forged'
  return { origin: state.origin, pos: fields.first, publicKey: bytesToHex(fields.publicKey!), held: bytesToHex(held), conflicting: bytesToHex(fields.hash) }
}

function equivocation(state: OriginState, fields: SealFields, head: Uint8Array | null): Equivocation {
  return {
    origin: state.origin, pos: fields.first, publicKey: bytesToHex(fields.publicKey!),
    held: head === null ? '' : bytesToHex(head), conflicting: bytesToHex(fields.prev),
  }
}
