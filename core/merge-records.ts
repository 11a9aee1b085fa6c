// Merging whole records (sync protocol v2; docs/sync.md). The common case, an origin's records in
// order from the count this log holds, is checked and stored a link at a time: the chain hashed
// once over the bodies as they came, each body copied into this log's records as it is, no object
// per event. Anything else (duplicates, gaps, a damaged range being repaired, a quarantine,
// unsigned events in an encrypted log, the own origin, links still waiting for their seal) goes
// event by event through Merger's general path (core/merge.ts), which decides as it always did:
// this file only plans what is certain to pass, and a plan that meets anything unusual is no plan.
// One difference, for encrypted logs: one batch (or one payload) per merge is opened, not each (below).

import { ZERO_CHAIN, equalBytes, keyMatchesOrigin, parseSeal, signatureValid, startChainHash } from './seal.js'
import { needsSeals } from './authenticate.js'
import { checkFraming, frameEvents, type FramedEvents } from './composer.js'
import { LogError } from './errors.js'
import {
  ENVELOPE_OFFSET_KEY_ID, ENVELOPE_OVERHEAD_BYTES, ENVELOPE_TAG, EVENT_HEADER_BYTES, EVENT_OFFSET_LENGTH, EVENT_OFFSET_TIME, RECORD_HEADER_BYTES, bytesToHex, isReplicaIdHex, readU64,
} from './format.js'
import type { OriginState } from './indexes.js'
import type { MergeBuffer, RemoteEvent } from './merge-buffer.js'
import { originStateFor } from './recovery.js'
import type { TrustPolicy } from './trust.js'
import type { PayloadCipher } from './crypt.js'
import type { Validator, ValidatorEvent } from '../validators/index.js'

/**
 * Consecutive events of one origin framed as a record body frames them (docs/format.md: per event
 * a 12-byte header, u32 payload length and u64 time, then the payload), with the link or seal that
 * ends them when they end a batch. `recordsSince` yields these; sync v2 carries them.
 */
export interface RemoteRecord {
  origin: string
  /** Origin position of the first event. */
  pos: number
  count: number
  body: Uint8Array
  seal?: Uint8Array | undefined
}

/** What planning needs from the merger and the log. */
export interface RecordPlanHost {
  readonly ownOrigin: string
  readonly origins: Map<string, OriginState>
  readonly trust: TrustPolicy
  /** The log's payload cipher (null: it does not encrypt). */
  readonly cipher: PayloadCipher | null
  readonly syncValidators: readonly Validator[]
  /** Bytes of a merged piece of unsigned events, at most. */
  readonly pieceBytes: number
  readonly recordSplitBytes: number
  /** Whether the log has damaged ranges (their repairs take events event by event). */
  damaged(): boolean
  loadChain(state: OriginState): Promise<void>
}

/** A batch to store as it came: its events framed, and the link or seal it ends with (null: unsigned). */
export interface PlannedBatch {
  pos: number
  framed: FramedEvents
  seal: Uint8Array | null
}

/** Batches certain to pass, and the index of the first record left for the general path. */
export interface RecordPlan {
  state: OriginState
  batches: PlannedBatch[]
  rest: number
}

/** Throws INVALID_ARGUMENT (or TOO_LARGE) when `records` are not well-formed records of one origin each. */
export function checkRemoteRecords(records: readonly RemoteRecord[], maxEventBytes: number): void {
  if (!Array.isArray(records)) throw new LogError('INVALID_ARGUMENT', 'mergeRecords takes an array of records')
  for (let i = 0; i < records.length; i++) {
    const record = records[i] as Partial<RemoteRecord> | undefined
    const fail = (what: string, code: 'INVALID_ARGUMENT' | 'TOO_LARGE' = 'INVALID_ARGUMENT'): never => {
      throw new LogError(code, `mergeRecords: record ${i} ${what}; nothing was stored`, { index: i })
    }
    if (typeof record !== 'object' || record === null) fail('is not an object')
    if (!isReplicaIdHex(record!.origin)) fail('has no origin of 32 lowercase hex chars')
    if (!Number.isSafeInteger(record!.pos) || record!.pos! < 0) fail('has no non-negative integer pos')
    if (!Number.isSafeInteger(record!.count) || record!.count! < 1) fail('has no positive integer count')
    if (!(record!.body instanceof Uint8Array)) fail('has no Uint8Array body')
    if (record!.seal !== undefined && !(record!.seal instanceof Uint8Array)) fail('has a seal that is not a Uint8Array')
    const body = record!.body!
    const reason = checkFraming(body, new DataView(body.buffer, body.byteOffset, body.byteLength), record!.count!, maxEventBytes, maxEventBytes + ENVELOPE_OVERHEAD_BYTES, ENVELOPE_TAG)
    if (reason !== undefined) fail(reason, reason.includes('maxEventBytes') ? 'TOO_LARGE' : 'INVALID_ARGUMENT')
  }
}

/**
 * The events of records (from index `from` on), one object each, for the general path. Payloads
 * are copies: the merge buffer and repairs may keep some, and a view would keep the whole message
 * (a compressed one inflates to up to 16 MiB) alive for a few bytes.
 */
export function eventsOfRecords(records: readonly RemoteRecord[], from: number): RemoteEvent[] {
  const events: RemoteEvent[] = []
  for (let r = from; r < records.length; r++) {
    const record = records[r]!
    const view = new DataView(record.body.buffer, record.body.byteOffset, record.body.byteLength)
    let at = 0
    for (let i = 0; i < record.count; i++) {
      const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
      const event: RemoteEvent = { origin: record.origin, pos: record.pos + i, time: readU64(view, at + EVENT_OFFSET_TIME), payload: new Uint8Array(record.body.subarray(at + EVENT_HEADER_BYTES, at + EVENT_HEADER_BYTES + length)) }
      if (i === record.count - 1 && record.seal !== undefined) event.seal = record.seal
      events.push(event)
      at += EVENT_HEADER_BYTES + length
    }
  }
  return events
}

/**
 * Plans the records (checked by checkRemoteRecords) that can be stored as they came: null when
 * the general path must take them all. `sealed` and `remote` are merge's options.
 */
export async function planRecords(host: RecordPlanHost, buffer: MergeBuffer, quarantined: boolean, validatorEvent: ValidatorEvent,
  records: readonly RemoteRecord[], sealed: boolean, remote: boolean): Promise<RecordPlan | null> {
  if (records.length === 0 || host.damaged() || quarantined) return null
  const origin = records[0]!.origin
  if (origin === host.ownOrigin || buffer.holdsAny(origin)) return null
  if (host.trust.mode === 'keys' && !host.trust.origins.has(origin)) return null
  for (let i = 1; i < records.length; i++) {
    const record = records[i]!
    const previous = records[i - 1]!
    if (record.origin !== origin || record.pos !== previous.pos + previous.count) return null
  }
  const state = originStateFor(host.origins, origin)
  await host.loadChain(state)
  if (state.chain === null || records[0]!.pos !== state.count) return null
  // Sync validators see plaintext in an encrypted log: the general path decrypts each payload for them.
  if (host.cipher !== null && host.syncValidators.length > 0) return null
  const announced = sealed || records.some((record) => record.seal !== undefined)
  if (!needsSeals(host.trust, state, announced, remote)) {
    if (host.cipher !== null || !validatorsPass(host, validatorEvent, records, records.length)) return null
    return planUnsigned(host, state, records)
  }
  const plan = planSealed(host, state, records)
  if (plan === null || (host.cipher !== null && !envelopesOpen(host.cipher, plan))) return null
  // Validators see only what authenticated, as on the general path (which quarantines on a rejection).
  return validatorsPass(host, validatorEvent, records, plan.rest) ? plan : null
}

/**
 * An encrypted log takes signed batches whose envelopes it can open. Batches with a batch envelope
 * (one AEAD each): the first opened in full, the others' key ids checked. Batches of per-event
 * envelopes: every envelope's header (its shape and a key id this log holds) and the first payload
 * of each batch opened in full. The chain hash and the origin's signature cover every byte, so no
 * byte was altered on the way; one opened batch or payload shows the origin encrypts under a key
 * this log holds. (The general path opens each batch, or each payload.)
 */
function envelopesOpen(cipher: PayloadCipher, plan: RecordPlan): boolean {
  const origin = plan.state.origin
  let opened = false
  for (const batch of plan.batches) {
    const fields = parseSeal(batch.seal!)
    if (typeof fields === 'string') return false
    const { bytes, count } = batch.framed
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    if (fields.envelope !== null) {
      if (opened) {
        if (cipher.batchHeaderProblem(origin, fields.envelope) !== undefined) return false
        continue
      }
      const payloads: Uint8Array[] = []
      for (let i = 0, at = 0; i < count; i++) {
        const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
        payloads.push(bytes.subarray(at + EVENT_HEADER_BYTES, at + EVENT_HEADER_BYTES + length))
        at += EVENT_HEADER_BYTES + length
      }
      if (typeof cipher.decryptBatch(origin, fields.envelope, payloads) === 'string') return false
      opened = true
      continue
    }
    // Per-event envelopes (an origin without batch envelopes, or an older log): the first opened, the others' headers checked.
    let keyChecked = -1
    for (let i = 0, at = 0; i < count; i++) {
      const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
      const start = at + EVENT_HEADER_BYTES
      at = start + length
      if (length < ENVELOPE_OVERHEAD_BYTES || bytes[start] !== ENVELOPE_TAG) return false
      const keyId = view.getUint32(start + ENVELOPE_OFFSET_KEY_ID, true)
      if (i === 0) {
        if (typeof cipher.decrypt(origin, bytes.subarray(start, at)) === 'string') return false
      } else if (keyId !== keyChecked && cipher.headerProblem(origin, bytes.subarray(start, at)) !== undefined) {
        return false
      }
      keyChecked = keyId
    }
  }
  return true
}

/** Linked batches up to the last valid seal signed by the origin's (trusted) key; null when none, or when anything does not check. */
function planSealed(host: RecordPlanHost, state: OriginState, records: readonly RemoteRecord[]): RecordPlan | null {
  const batches: PlannedBatch[] = []
  let provisional: PlannedBatch[] = []
  let rest = 0
  let head = state.count === 0 ? ZERO_CHAIN : state.chain!
  let start = 0
  for (let i = 0; i < records.length; i++) {
    const seal = records[i]!.seal
    if (seal === undefined) continue
    const fields = parseSeal(seal)
    if (typeof fields === 'string') return null
    const first = records[start]!.pos
    const count = records[i]!.pos + records[i]!.count - first
    if (fields.first !== first || fields.count !== count || !equalBytes(fields.prev, head)) return null
    const hash = startChainHash(state.originBytes, first, count, head)
    for (let k = start; k <= i; k++) hash.update(records[k]!.body)
    if (fields.envelope !== null) hash.update(fields.envelope)
    const digest = new Uint8Array(hash.digest())
    if (!equalBytes(digest, fields.hash)) return null
    provisional.push({ pos: first, framed: frame(host, records, start, i + 1, count), seal })
    head = digest
    start = i + 1
    if (!fields.signed) continue
    if (!keyMatchesOrigin(fields, state.originBytes) || !signatureValid(fields, digest)) return null
    if (host.trust.mode === 'keys' && !host.trust.keys.has(bytesToHex(fields.publicKey!))) return null
    for (const batch of provisional) batches.push(batch)
    provisional = []
    rest = i + 1
  }
  return batches.length === 0 ? null : { state, batches, rest }
}

/** Records of an origin that does not sign, in batches of at most pieceBytes (as the general path cuts them). */
function planUnsigned(host: RecordPlanHost, state: OriginState, records: readonly RemoteRecord[]): RecordPlan {
  const batches: PlannedBatch[] = []
  let start = 0
  let bytes = 0
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!
    const size = record.body.length + record.count * RECORD_HEADER_BYTES
    if (i > start && bytes + size > host.pieceBytes) {
      batches.push({ pos: records[start]!.pos, framed: frame(host, records, start, i, record.pos - records[start]!.pos), seal: null })
      start = i
      bytes = 0
    }
    bytes += size
  }
  const last = records[records.length - 1]!
  batches.push({ pos: records[start]!.pos, framed: frame(host, records, start, records.length, last.pos + last.count - records[start]!.pos), seal: null })
  return { state, batches, rest: records.length }
}

/** The events of records [from, to) framed as one batch (one copy only when it spans several records). */
function frame(host: RecordPlanHost, records: readonly RemoteRecord[], from: number, to: number, count: number): FramedEvents {
  const body = to - from === 1 ? records[from]!.body : Buffer.concat(records.slice(from, to).map((record) => record.body))
  return frameEvents(body, new DataView(body.buffer, body.byteOffset, body.byteLength), count, host.recordSplitBytes)
}

/** Runs the sync validators over the events of records [0, upTo) (one reused event object); false at the first rejection (the general path quarantines). */
function validatorsPass(host: RecordPlanHost, event: ValidatorEvent, records: readonly RemoteRecord[], upTo: number): boolean {
  if (host.syncValidators.length === 0) return true
  try {
    for (let r = 0; r < upTo; r++) {
      const record = records[r]!
      const view = new DataView(record.body.buffer, record.body.byteOffset, record.body.byteLength)
      let at = 0
      event.origin = record.origin
      for (let i = 0; i < record.count; i++) {
        const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
        event.pos = record.pos + i
        event.time = readU64(view, at + EVENT_OFFSET_TIME)
        event.payload = record.body.subarray(at + EVENT_HEADER_BYTES, at + EVENT_HEADER_BYTES + length)
        for (const validator of host.syncValidators) if (validator.check(event) !== undefined) return false
        at += EVENT_HEADER_BYTES + length
      }
    }
    return true
  } finally {
    event.payload = new Uint8Array(0)
  }
}
