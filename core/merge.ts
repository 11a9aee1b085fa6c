// Merge: storing remote events. Idempotent (a duplicate is counted, never thrown), gapless per
// origin (events beyond a gap wait in the bounded MergeBuffer), authenticated per the trust policy
// (authenticate.ts: links, seals, equivocation), and gated by the sync validators (a rejection
// quarantines the origin). One merge runs at a time; the log stores what passes through
// `host.writeBatch`, as whole batches.

import type { Validator, ValidatorEvent } from '../validators/index.js'
import { checkSealedDuplicate, checkSealedRun, undecryptable, needsSeals, type Equivocation } from './authenticate.js'
import { parseSeal } from './seal.js'
import type { BatchSource } from './composer.js'
import type { BatchRange } from './log.js'
import type { PayloadCipher } from './crypt.js'
import { LogError } from './errors.js'
import { ENVELOPE_OVERHEAD_BYTES, ENVELOPE_TAG, EVENT_HEADER_BYTES, RECORD_HEADER_BYTES, isReplicaIdHex } from './format.js'
import type { OriginState } from './indexes.js'
import { MergeBuffer, type RemoteEvent } from './merge-buffer.js'
import { eventsOfRecords, planRecords, type RemoteRecord } from './merge-records.js'
import { originStateFor } from './recovery.js'
import type { TrustPolicy } from './trust.js'

/** An origin whose events stop at `pos`, where a sync validator rejected one. */
export interface Quarantine {
  origin: string
  pos: number
  validator: string
  reason: string
  /** Wall clock when it started, ms since the Unix epoch. */
  sinceMs: number
}

export interface MergeOptions {
  /** The events belong to signed history whose seal may come in a later call (sync sets it for batches split over several messages). */
  sealed?: boolean
  /**
   * The events came over the network (sync sets it): unless trust is 'off' they must be signed,
   * and unsigned ones are refused as forged. Without it, a log in the default trust mode (no
   * allow-list, no trust option) takes unsigned events from the application's own calls.
   */
  remote?: boolean
}

export interface MergeResult {
  /** Events stored by this call (including held events it released). */
  added: number
  /** Events already held (MQTT redelivers: never an error). */
  duplicates: number
  /** Events of this call held back by a gap in their origin's sequence. */
  waiting: number
  /** Events of this call dropped because the waiting buffer was full (sync sends them again). */
  dropped: number
  /** Events a sync validator rejected in this call (each quarantines its origin). */
  rejected: Quarantine[]
  /** Events of this call not stored because their origin is quarantined. */
  quarantined: number
  /** Events of this call refused by authentication: forged, altered, unsigned where a seal is
   *  required, from an untrusted key, or (encrypted logs) not decryptable. Never stored. Present
   *  only when some were refused. */
  forged?: number
  /** Events of this call that a damaged range of this log lacked: kept for its repair (core/heal.ts),
   *  which checks them against the chains before writing them back. Present only when some were. */
  healing?: number
}

/** Equivocations kept for securityStatus(). */
const EQUIVOCATIONS_KEPT = 100

/** What merge needs from the log. */
export interface MergeHost {
  /** The log's clock (milliseconds), for quarantine stamps. */
  readonly now: () => number
  /** This log's own replica id: its events come only from its own appends. */
  readonly ownOrigin: string
  readonly origins: Map<string, OriginState>
  readonly trust: TrustPolicy
  readonly cipher: PayloadCipher | null
  readonly syncValidators: readonly Validator[]
  readonly maxEventBytes: number
  /** Bytes of a merged piece of unsigned events, at most (a quarter of a segment). */
  readonly pieceBytes: number
  /** Records of about this many bytes at most (merged records are cut to it). */
  readonly recordSplitBytes: number
  /** Whether the log has damaged ranges (their repairs take events one by one). */
  damaged(): boolean
  checkWritable(): void
  /** Whether the log takes events of its own origin back from peers now (after a loss; core/log.ts ownOriginSeen). */
  ownRestoring(): boolean
  /** The chain hash of the link this log holds for `state`'s batch ending at position `end` (null: none ends there). */
  storedChainHash(state: OriginState, end: number): Promise<Uint8Array | null>
  /** Keeps an event that a damaged range lacks, for its repair; true when kept. */
  offerHeal(event: RemoteEvent): boolean
  loadChain(state: OriginState): Promise<void>
  writeBatch(source: BatchSource, origin: OriginState, expectedPos: number): Promise<BatchRange>
  awaitDurable(range: BatchRange): Promise<BatchRange> | BatchRange
  onQuarantine(quarantine: Quarantine): void
  onEquivocation(equivocation: Equivocation): void
}

export class Merger {
  readonly quarantines = new Map<string, Quarantine>()
  readonly security = { forged: 0, equivocations: [] as Equivocation[], lastRejection: null as string | null }
  private readonly buffer: MergeBuffer
  private chain: Promise<unknown> = Promise.resolve()
  private readonly validatorEvent: ValidatorEvent = { payload: new Uint8Array(0), origin: '', pos: 0, time: 0 }

  constructor(private readonly host: MergeHost, waitingEventsMax: number, waitingBytesMax: number) {
    this.buffer = new MergeBuffer(waitingEventsMax, waitingBytesMax)
  }

  /** Resolves when no merge is running (for close). */
  idle(): Promise<unknown> {
    return this.chain
  }

  /** Index in `run` of the first event a sync validator rejects, with the rejection; -1 when all pass. */
  private validateSync(run: readonly RemoteEvent[], opened: readonly (Uint8Array | undefined)[]): { index: number, validator: string, reason: string } {
    const event = this.validatorEvent
    for (let i = 0; i < run.length; i++) {
      const remote = run[i] as RemoteEvent
      const plain = this.host.cipher === null ? remote.payload : opened[i] ?? this.host.cipher.decrypt(remote.origin, remote.payload)
      event.payload = typeof plain === 'string' ? remote.payload : plain
      event.origin = remote.origin
      event.pos = remote.pos
      event.time = remote.time
      for (const validator of this.host.syncValidators) {
        const reason = validator.check(event)
        if (reason !== undefined) {
          event.payload = new Uint8Array(0)
          return { index: i, validator: validator.name, reason }
        }
      }
    }
    event.payload = new Uint8Array(0)
    return { index: -1, validator: '', reason: '' }
  }

  /** Merges `events` (already checked by checkRemoteEvents) after any merge still running. */
  merge(events: readonly RemoteEvent[], options: MergeOptions): Promise<MergeResult> {
    return this.inTurn(options, (sealed, remote) => this.mergeNow(events, sealed, remote))
  }

  /**
   * Merges whole records (checked by checkRemoteRecords) after any merge still running: what can
   * be stored as it came is (core/merge-records.ts), the rest goes through the general path.
   */
  mergeRecords(records: readonly RemoteRecord[], options: MergeOptions): Promise<MergeResult> {
    return this.inTurn(options, (sealed, remote) => this.mergeRecordsNow(records, sealed, remote))
  }

  /** Runs a merge after any merge still running (one at a time), with its options read. */
  private inTurn(options: MergeOptions, work: (sealed: boolean, remote: boolean) => Promise<MergeResult>): Promise<MergeResult> {
    const sealed = typeof options === 'object' && options !== null && options.sealed === true
    const remote = typeof options === 'object' && options !== null && options.remote === true
    const run = this.chain.then(() => work(sealed, remote))
    this.chain = run.catch(() => undefined)
    return run
  }

  private async mergeRecordsNow(records: readonly RemoteRecord[], sealed: boolean, remote: boolean): Promise<MergeResult> {
    this.host.checkWritable()
    const host = this.host
    const quarantined = records.length > 0 && this.quarantines.has(records[0]!.origin)
    const plan = await planRecords({
      ownOrigin: host.ownOrigin, origins: host.origins, trust: host.trust, cipher: host.cipher, syncValidators: host.syncValidators,
      pieceBytes: host.pieceBytes, recordSplitBytes: host.recordSplitBytes, damaged: host.damaged, loadChain: host.loadChain,
    }, this.buffer, quarantined, this.validatorEvent, records, sealed, remote)
    if (plan === null) return this.mergeNow(eventsOfRecords(records, 0), sealed, remote)
    const result: MergeResult = { added: 0, duplicates: 0, waiting: 0, dropped: 0, rejected: [], quarantined: 0 }
    let last: BatchRange | null = null
    for (const batch of plan.batches) {
      const range = await host.writeBatch({ payloads: [], time: 0, times: null, seal: batch.seal, framed: batch.framed }, plan.state, batch.pos)
      if (range.count === 0) break // cannot happen (merges run one at a time, and only appends write the own origin); the general path decides
      result.added += range.count
      last = range
    }
    if (last !== null) await host.awaitDurable(last)
    const done = plan.state.count
    const rest = records.findIndex((record) => record.pos + record.count > done)
    if (rest >= 0) {
      const more = await this.mergeNow(eventsOfRecords(records, rest), sealed, remote)
      result.added += more.added
      result.duplicates += more.duplicates
      result.waiting += more.waiting
      result.dropped += more.dropped
      result.rejected.push(...more.rejected)
      result.quarantined += more.quarantined
      if (more.forged !== undefined) result.forged = more.forged
      if (more.healing !== undefined) result.healing = more.healing
    }
    return result
  }

  private async mergeNow(events: readonly RemoteEvent[], sealed: boolean, remote: boolean): Promise<MergeResult> {
    this.host.checkWritable()
    const result: MergeResult = { added: 0, duplicates: 0, waiting: 0, dropped: 0, rejected: [], quarantined: 0 }
    const byOrigin = new Map<string, RemoteEvent[]>()
    for (const event of events) {
      if (this.host.offerHeal(event)) {
        result.healing = (result.healing ?? 0) + 1
        continue
      }
      let list = byOrigin.get(event.origin)
      if (list === undefined) byOrigin.set(event.origin, list = [])
      list.push(event)
    }
    const held: RemoteEvent[] = []
    for (const [origin, list] of byOrigin) {
      list.sort((a, b) => a.pos - b.pos)
      const ownRefused = origin === this.host.ownOrigin && !this.host.ownRestoring()
      if (ownRefused || (this.host.trust.mode === 'keys' && !this.host.trust.origins.has(origin))) {
        this.refuseOrigin(origin, list, result)
        continue
      }
      const state = originStateFor(this.host.origins, origin)
      await this.host.loadChain(state)
      const announced = sealed || list.some((event) => event.seal !== undefined)
      if (needsSeals(this.host.trust, state, announced, remote)) {
        await this.mergeSealed(state, list, announced, result, held)
      } else {
        await this.mergeUnsigned(state, list, result, held)
      }
    }
    for (const event of held) if (this.buffer.has(event.origin, event.pos)) result.waiting++
    return result
  }

  /** Events of an origin that does not sign: trust 'off', or local merges in the default mode. */
  private async mergeUnsigned(state: OriginState, list: readonly RemoteEvent[], result: MergeResult, held: RemoteEvent[]): Promise<void> {
    const origin = state.origin
    // Events held on the signed path (sync said this origin signs) are never released by an
    // unsigned local merge, nor taken as duplicates of it: the application's events win, and sync
    // sends the signed ones again if they are genuine.
    if (this.buffer.holdsSealed(origin)) this.buffer.dropOrigin(origin)
    const run: RemoteEvent[] = []
    let next = state.count
    const quarantine = this.quarantines.get(origin)
    for (const event of list) {
      if (quarantine !== undefined && event.pos >= quarantine.pos) {
        result.quarantined++
      } else if (event.pos < next || this.buffer.has(origin, event.pos)) {
        result.duplicates++
      } else if (event.pos === next) {
        run.push(event)
        const released = this.buffer.takeRun(origin, ++next)
        for (const more of released) run.push(more)
        next += released.length
      } else if (this.buffer.hold({ origin, pos: event.pos, time: event.time, payload: event.payload })) {
        held.push(event)
      } else {
        result.dropped++
      }
    }
    if (this.host.cipher !== null) {
      for (let i = 0; i < run.length; i++) {
        const reason = undecryptable(run[i]!, this.host.cipher)
        if (reason === undefined) continue
        this.refuse(result, run.length - i, `${origin} from position ${run[i]!.pos}: ${reason}`)
        this.buffer.dropOrigin(origin)
        run.length = i
        break
      }
    }
    run.length = this.validateRun(state, run, result)
    for (let from = 0; from < run.length;) {
      const to = this.mergePieceEnd(run, from)
      if (!await this.storeBatch(state, run, from, to, null, result, held)) break
      from = to
    }
  }

  /** Events of signed batches: stored only as whole batches whose seals check out. */
  private async mergeSealed(state: OriginState, list: readonly RemoteEvent[], announced: boolean, result: MergeResult, held: RemoteEvent[]): Promise<void> {
    const origin = state.origin
    const quarantine = this.quarantines.get(origin)
    for (const event of list) {
      if (quarantine !== undefined && event.pos >= quarantine.pos) {
        result.quarantined++
      } else if (event.pos < state.count) {
        if (event.seal === undefined) {
          result.duplicates++
          continue
        }
        const verdict = checkSealedDuplicate(state, event.seal, await this.storedHash(state, event.seal))
        if (verdict === 'duplicate') {
          result.duplicates++
        } else if (verdict === 'forged') {
          this.refuse(result, 1, `${origin} position ${event.pos}: a copy of a held event with a seal that is not the origin's`)
        } else {
          this.reportEquivocation(verdict, result)
          return
        }
      } else if (!announced) {
        // Neither a seal nor the sealed flag: these events claim to be unsigned.
        this.refuse(result, 1, `${origin} position ${event.pos}: unsigned, but this log requires seals from this origin`)
      } else if (this.buffer.holdReplacing(event)) {
        held.push(event)
      } else {
        result.dropped++
      }
    }
    if (this.quarantines.has(origin)) return
    const run = this.buffer.takeRun(origin, state.count)
    if (run.length === 0) return
    const verdict = checkSealedRun(state, run, this.host.trust, this.host.cipher)
    if (verdict.equivocation !== null) this.reportEquivocation(verdict.equivocation, result)
    else if (verdict.rejectedAt < run.length) this.refuse(result, run.length - verdict.rejectedAt, verdict.reason)
    for (let i = verdict.accepted; i < verdict.pendingEnd; i++) this.buffer.hold(run[i]!, true)
    const passed = this.validateRun(state, run.slice(0, verdict.accepted), result, verdict.plain)
    for (const batch of verdict.batches) {
      if (batch.to > passed) break
      if (!await this.storeBatch(state, run, batch.from, batch.to, batch.seal, result, held)) break
    }
  }

  /**
   * The chain hash this log holds for the batch a duplicate's seal ends, when no recent batch has
   * it: read from the log (once per batch end, remembered like a recent one), so that a second
   * history is caught however old the positions it reuses (null: this log holds no link there).
   */
  private async storedHash(state: OriginState, seal: Uint8Array): Promise<Uint8Array | null> {
    const fields = parseSeal(seal)
    if (typeof fields === 'string' || state.recentSeals.has(fields.first + fields.count)) return null
    const end = fields.first + fields.count
    const checked = state.checkedSeals.get(end)
    if (checked !== undefined) return checked
    const hash = await this.host.storedChainHash(state, end)
    state.noteChecked(end, hash)
    return hash
  }

  /** Runs the sync validators; returns how many events of `run` pass (the rest quarantine the origin). */
  private validateRun(state: OriginState, run: RemoteEvent[], result: MergeResult, opened: readonly (Uint8Array | undefined)[] = []): number {
    if (run.length === 0 || this.host.syncValidators.length === 0) return run.length
    const verdict = this.validateSync(run, opened)
    if (verdict.index < 0) return run.length
    const rejected = run[verdict.index]!
    const entry: Quarantine = { origin: state.origin, pos: rejected.pos, validator: verdict.validator, reason: verdict.reason, sinceMs: this.host.now() }
    this.quarantines.set(state.origin, entry)
    this.buffer.dropOrigin(state.origin)
    result.rejected.push({ ...entry })
    result.quarantined += run.length - verdict.index - 1
    this.host.onQuarantine({ ...entry })
    return verdict.index
  }

  /** Stores events [from, to) of `run` as one batch; false when the origin moved on meanwhile. */
  private async storeBatch(state: OriginState, run: readonly RemoteEvent[], from: number, to: number, seal: Uint8Array | null,
    result: MergeResult, held: RemoteEvent[]): Promise<boolean> {
    const piece = run.slice(from, to)
    const range = await this.host.writeBatch({
      payloads: piece.map((event) => event.payload), time: 0, times: piece.map((event) => event.time), seal,
    }, state, piece[0]!.pos)
    result.added += range.count
    await this.host.awaitDurable(range)
    if (range.count > 0) return true
    for (const event of run.slice(from)) {
      if (event.pos < state.count) result.duplicates++
      else if (this.buffer.hold(event, seal !== null)) held.push(event)
      else result.dropped++
    }
    return false
  }

  /** Events of this log's own id (which only its appends make) or of an origin no trusted key derives. */
  private refuseOrigin(origin: string, list: readonly RemoteEvent[], result: MergeResult): void {
    const own = origin === this.host.ownOrigin
    const held = own ? this.host.origins.get(origin)?.count ?? 0 : 0
    const duplicates = list.filter((event) => event.pos < held).length
    result.duplicates += duplicates
    if (list.length > duplicates) {
      this.refuse(result, list.length - duplicates, own
        ? `${origin}: events under this log's own id come only from its own appends`
        : `${origin}: no trusted key derives this origin id`)
    }
  }

  private refuse(result: MergeResult, count: number, reason: string): void {
    result.forged = (result.forged ?? 0) + count
    this.security.forged += count
    this.security.lastRejection = reason
  }

  /** Records an equivocation and quarantines its origin. */
  private reportEquivocation(equivocation: Equivocation, result: MergeResult): void {
    const reason = `equivocation: key ${equivocation.publicKey} signed two histories from position ${equivocation.pos}`
    this.security.equivocations.push(equivocation)
    if (this.security.equivocations.length > EQUIVOCATIONS_KEPT) this.security.equivocations.shift()
    this.security.lastRejection = `${equivocation.origin}: ${reason}`
    this.buffer.dropOrigin(equivocation.origin)
    if (this.quarantines.has(equivocation.origin)) return
    const entry: Quarantine = { origin: equivocation.origin, pos: equivocation.pos, validator: 'equivocation', reason, sinceMs: this.host.now() }
    this.quarantines.set(equivocation.origin, entry)
    result.rejected.push({ ...entry })
    this.host.onEquivocation({ ...equivocation })
    this.host.onQuarantine({ ...entry })
  }

  /** End of the piece of a merged run starting at `from`: at most a quarter of a segment. */
  private mergePieceEnd(run: readonly RemoteEvent[], from: number): number {
    const budget = this.host.pieceBytes
    let bytes = 0
    let to = from
    while (to < run.length) {
      bytes += EVENT_HEADER_BYTES + run[to]!.payload.length + RECORD_HEADER_BYTES
      if (to > from && bytes > budget) break
      to++
    }
    return to
  }
}

export function checkRemoteEvents(events: readonly RemoteEvent[], maxEventBytes: number): void {
  if (!Array.isArray(events)) throw new LogError('INVALID_ARGUMENT', 'merge takes an array of events')
  for (let i = 0; i < events.length; i++) {
    const event = events[i] as Partial<RemoteEvent> | undefined
    const fail = (what: string): never => {
      throw new LogError('INVALID_ARGUMENT', `merge: event ${i} ${what}; nothing was stored`, { index: i })
    }
    if (typeof event !== 'object' || event === null) fail('is not an object')
    if (!isReplicaIdHex(event!.origin)) fail('has no origin of 32 lowercase hex chars')
    if (!Number.isSafeInteger(event!.pos) || event!.pos! < 0) fail('has no non-negative integer pos')
    if (!Number.isSafeInteger(event!.time) || event!.time! < 0) fail('has no non-negative integer time')
    if (!(event!.payload instanceof Uint8Array)) fail('has no Uint8Array payload')
    // An encrypted payload may exceed maxEventBytes by the envelope (a relay without the key cannot tell more).
    const limit = event!.payload!.length > 0 && event!.payload![0] === ENVELOPE_TAG ? maxEventBytes + ENVELOPE_OVERHEAD_BYTES : maxEventBytes
    if (event!.payload!.length > limit) {
      throw new LogError('TOO_LARGE', `merge: event ${i} has ${event!.payload!.length} bytes; maxEventBytes is ${maxEventBytes}; nothing was stored`,
        { index: i, bytes: event!.payload!.length })
    }
  }
}
