// Repairs in place: a fenced range (core/damage.ts) is written again once the events it held are
// at hand, from peers (merge offers them) or from its own intact records, and checked against
// the chain of each origin: they must hash, link by link, from the link this log holds before the
// range to the link it holds after it (or, when nothing of that origin follows, to a seal signed by
// the origin's key). The region rewritten is the range widened to whole batches; it is composed
// anew, each origin's events in order, one batch per link, then a HOLE record for the local
// positions whose events live elsewhere, or zero fill in an extension area where a few bytes are
// left (docs/format.md: segment version 2). The new bytes take exactly the old region's place, so
// no other record moves.
//
// Faults expected: a crash during the rewrite leaves the region old, new or torn: every one of
// those reads as damage or as the repaired range, and the next open fences it again (the
// segment's header says version 2 first, so a reader of version 1 never takes repaired bytes for
// its own). Peers that send other events than the ones held: the chain check refuses them.
// Memory: events waiting for a repair are held up to HEAL_BUFFER_BYTES_MAX.

import zlib from 'node:zlib'
import type { Checksum } from './checksum.js'
import type { Fence } from './damage.js'
import {
  EVENT_HEADER_BYTES, EVENT_OFFSET_LENGTH, EVENT_OFFSET_TIME, EXTENSION_BYTES_LIMIT, HOLE_BYTES_MAX, LINK_BYTES, RECORD_BYTES_LIMIT,
  RECORD_FLAG_CONTINUES, RECORD_HEADER_BYTES, RECORD_KIND_EVENTS, RECORD_KIND_HOLE, RECORD_OFFSET_CHECKSUM, RECORD_OFFSET_COUNT,
  RECORD_OFFSET_DURABLE, RECORD_OFFSET_EXTENSION, RECORD_OFFSET_FLAGS, RECORD_OFFSET_KIND, RECORD_OFFSET_LENGTH,
  RECORD_OFFSET_LOCAL_POS, RECORD_OFFSET_ORIGIN, RECORD_OFFSET_ORIGIN_POS, SEAL_BYTES, SEAL_BYTES_MAX,
  SEGMENT_VERSION_REPAIRED, recordBytesPadded, writeU64, DEFLATE_MAX_BODY_BYTES, DEFLATE_MIN_BODY_BYTES, RECORD_FLAG_DEFLATED, RECORD_OFFSET_RESERVED, SEGMENT_VERSION_DEFLATED,
} from './format.js'
import type { OriginState } from './indexes.js'
import type { RemoteEvent } from './merge-buffer.js'
import { RecordWalk, type StoredLog } from './record-walk.js'
import { ZERO_CHAIN, chainHashOf, equalBytes, keyMatchesOrigin, linkOfSeal, parseSeal, sealBase, signatureValid } from './seal.js'
import { raiseSegmentVersion, type Segment } from './segments.js'
import { closeSynced } from './storage.js'
import type { TrustPolicy } from './trust.js'
import { writeAllSync } from './write-all.js'

/** Payload bytes of events held for repairs, at most (beyond it offers are dropped: sync sends them again). */
export const HEAL_BUFFER_BYTES_MAX = 64 << 20
/** Zero fill one record's extension area takes at most (the rest of its u16 after a seal). */
const FILL_BYTES_MAX = EXTENSION_BYTES_LIMIT - SEAL_BYTES_MAX - 7
/** A repaired record splits only beyond this many bytes (the format's bound on a record, less room for its extension). */
const REPAIR_RECORD_BYTES_MAX = RECORD_BYTES_LIMIT - EXTENSION_BYTES_LIMIT

export interface HealHost extends StoredLog {
  readonly trust: TrustPolicy
  /** The written, committed end: walks stop there. */
  walkLimit(): number
  /**
   * The region's new bytes were written at global offset `start` of `segment`: the head cache
   * takes the part it holds too (it writes its tail page again at the next flush).
   */
  rewritten(segment: Segment, start: number, bytes: Buffer): void
}

export interface HealOutcome {
  healed: boolean
  /** Why not (when not healed). */
  reason: string
  /** Events written back in place. */
  events: number
  /** The region rewritten, global offsets. */
  start: number
  end: number
}

/** Events of one origin the region holds, in order, and how they chain. */
interface Run {
  origin: string
  state: OriginState
  from: number
  to: number
  events: RemoteEvent[]
}

export class Healer {
  /** Events offered for each fence, per origin and position. */
  private readonly held = new Map<Fence, Map<string, Map<number, RemoteEvent>>>()
  private bytes = 0

  constructor(private readonly host: HealHost) {}

  /** Keeps a remote event that a fence lacks; false when no fence wants it (or the buffer is full). */
  offer(event: RemoteEvent): boolean {
    const fence = this.host.fences.holding(event.origin, event.pos)
    if (fence === undefined) return false
    let byOrigin = this.held.get(fence)
    if (byOrigin === undefined) this.held.set(fence, byOrigin = new Map())
    let events = byOrigin.get(event.origin)
    if (events === undefined) byOrigin.set(event.origin, events = new Map())
    const old = events.get(event.pos)
    if (old !== undefined && (old.seal !== undefined || event.seal === undefined)) return true
    if (this.bytes + event.payload.length > HEAL_BUFFER_BYTES_MAX) return false
    this.bytes += event.payload.length - (old?.payload.length ?? 0)
    events.set(event.pos, event)
    return true
  }

  /** Fences whose events are at hand or may be: those with something held, and those that need nothing from peers. */
  candidates(): Fence[] {
    return this.host.fences.all().filter((fence) => !fence.ambiguous && (this.held.has(fence) || fence.ranges.size === 0))
  }

  forget(fence: Fence): void {
    const byOrigin = this.held.get(fence)
    if (byOrigin === undefined) return
    for (const events of byOrigin.values()) for (const event of events.values()) this.bytes -= event.payload.length
    this.held.delete(fence)
  }

  /**
   * Tries to repair `fence`: gathers its events (held, or read back from its intact records),
   * checks them against the chains, composes the region and writes it. The caller updates the
   * log's state on success (indexes, checkpoint) and holds its write gate meanwhile.
   */
  heal(fence: Fence): HealOutcome {
    const walk = new RecordWalk(this.host.table, this.host.storage, this.host.checksum, this.host.fences, this.host.walkLimit())
    try {
      return this.healWith(walk, fence)
    } finally {
      walk.close()
    }
  }

  private healWith(walk: RecordWalk, fence: Fence): HealOutcome {
    const outcome = (reason: string): HealOutcome => ({ healed: false, reason, events: 0, start: fence.regionStart, end: fence.end })
    const segment = fence.segment
    if (segment.missing === true) return outcome('its segment file is missing (a repair does not create files)')
    if (fence.ambiguous) return outcome('what it held per origin is not known exactly')
    // The intact records of the damaged batch before the damage, and of the batch the range ends in.
    const local = new Map<string, RemoteEvent[]>()
    const keep = (events: RemoteEvent[] | null): void => {
      for (const event of events ?? []) {
        let list = local.get(event.origin)
        if (list === undefined) local.set(event.origin, list = [])
        list.push(event)
      }
    }
    const damageAt = segment.start + fence.damageOffset
    for (let next = walk.records(fence.regionStart, damageAt), step = next.next(); step.done !== true; step = next.next()) keep(walk.eventsAt(step.value.offset))
    const end = this.regionEnd(walk, fence, keep)
    if (typeof end === 'string') return outcome(end)
    const runs: Run[] = []
    let total = 0
    for (const [origin, range] of fence.ranges) {
      const state = this.host.origins.get(origin)
      if (state === undefined) return outcome(`origin ${origin} is unknown`)
      const extra = local.get(origin)?.filter((event) => event.pos >= range.to) ?? []
      const to = extra.length === 0 ? range.to : extra[extra.length - 1]!.pos + 1
      const events = this.gather(fence, origin, range.from, to, local.get(origin) ?? [])
      if (typeof events === 'string') return outcome(events)
      runs.push({ origin, state, from: range.from, to, events })
      total += to - range.from
    }
    for (const run of runs) {
      const checked = this.checkChain(walk, fence, run, end.offset)
      if (checked !== undefined) return outcome(checked)
    }
    const localTo = end.localPos
    const elsewhere = localTo - fence.localFrom - total
    if (elsewhere < 0) return outcome('it holds more events than its local positions')
    const durable = this.durableBefore(walk, fence)
    const composed = composeRegion(runs, fence, end.offset, elsewhere, durable, this.host.checksum)
    if (typeof composed === 'string') return outcome(composed)
    this.write(segment, fence.regionStart - segment.start, composed.bytes, composed.usesRepairs, composed.deflated)
    this.host.rewritten(segment, fence.regionStart, composed.bytes)
    this.forget(fence)
    return { healed: true, reason: '', events: total, start: fence.regionStart, end: end.offset }
  }

  /**
   * Where the region ends: at the fence's end, or, when the batch that starts there began inside
   * the fence (its link covers events before it), at the end of that batch, whose records are
   * then written again too (their events go to `keep`). With the local position there.
   */
  private regionEnd(walk: RecordWalk, fence: Fence, keep: (events: RemoteEvent[] | null) => void): { offset: number, localPos: number } | string {
    const first = walk.at(fence.end)
    if (first === 'end' || first === null || first.kind !== RECORD_KIND_EVENTS) return { offset: fence.end, localPos: fence.localTo }
    let last = first
    while (last.continues) {
      const next = walk.at(last.end)
      if (next === 'end' || next === null) return 'the batch after it does not read back'
      last = next
    }
    const fields = last.seal === null ? null : parseSeal(last.seal)
    const startsInside = fields !== null && typeof fields !== 'string' && fields.first < first.originPos
    if (!startsInside) return { offset: fence.end, localPos: fence.localTo }
    for (let offset = first.offset; offset < last.end;) {
      keep(walk.eventsAt(offset))
      const step = walk.at(offset)
      if (step === null || step === 'end') return 'the batch after it does not read back'
      offset = step.end
    }
    return { offset: last.end, localPos: last.localPos + last.count }
  }

  /** Events [from, to) of `origin`: held for the fence, or intact in it; a reason when some are missing. */
  private gather(fence: Fence, origin: string, from: number, to: number, local: RemoteEvent[]): RemoteEvent[] | string {
    const held = this.held.get(fence)?.get(origin)
    const byPos = new Map<number, RemoteEvent>()
    for (const event of local) byPos.set(event.pos, event)
    const events: RemoteEvent[] = []
    for (let pos = from; pos < to; pos++) {
      const event = byPos.get(pos) ?? held?.get(pos)
      if (event === undefined) return `waiting for ${origin} position ${pos}`
      events.push(event)
    }
    return events
  }

  /**
   * Checks a run against the chain of its origin: from the link held just before the region,
   * link by link, to the link held just after it; or, with nothing of the origin after the
   * region, to a seal of the origin's key. An origin that never links (trust 'off') is taken
   * only where trust is 'off'. Returns a reason, or undefined when the run holds.
   */
  private checkChain(walk: RecordWalk, fence: Fence, run: Run, regionEnd: number): string | undefined {
    const prev = this.linkBefore(walk, fence, run)
    if (typeof prev === 'string') return prev
    const after = this.linkAfter(walk, run, regionEnd)
    if (typeof after === 'string') return after
    const linked = prev !== null || after !== null || run.events.some((event) => event.seal !== undefined)
    if (!linked) return this.host.trust.mode === 'off' ? undefined : `origin ${run.origin} does not sign its events, and trust is not 'off'`
    let head = prev ?? ZERO_CHAIN
    let coverageFrom = 0
    let sealed = false
    for (let i = 0; i < run.events.length; i++) {
      const event = run.events[i]!
      if (event.seal === undefined) continue
      const fields = parseSeal(event.seal)
      if (typeof fields === 'string') return `${run.origin} position ${event.pos}: ${fields}`
      if (fields.first !== run.events[coverageFrom]!.pos || fields.count !== i - coverageFrom + 1) return `${run.origin} position ${event.pos}: its link does not cover its batch`
      if (!equalBytes(fields.prev, head)) return `${run.origin} position ${fields.first}: it does not link to the chain held before the damaged range`
      const hash = chainHashOf(run.state.originBytes, fields.first, fields.prev, run.events.slice(coverageFrom, i + 1), fields.envelope)
      if (!equalBytes(hash, fields.hash)) return `${run.origin} position ${fields.first}: the events do not hash to their link (altered)`
      sealed = fields.signed && keyMatchesOrigin(fields, run.state.originBytes) && signatureValid(fields, hash) &&
        (this.host.trust.mode !== 'keys' || this.host.trust.keys.has(Buffer.from(fields.publicKey!).toString('hex')))
      head = hash
      coverageFrom = i + 1
    }
    if (coverageFrom !== run.events.length) return `${run.origin}: the last events of the range come without their link`
    if (after !== null) return equalBytes(after, head) ? undefined : `${run.origin} position ${run.to}: the chain held after the damaged range does not link to these events`
    return sealed ? undefined : `${run.origin}: nothing after the damaged range vouches for these events, and their last link is not signed by the origin's key`
  }

  /** The chain hash of the origin's link that ends where the run starts (null: the origin does not link; ZERO at its start). */
  private linkBefore(walk: RecordWalk, fence: Fence, run: Run): Uint8Array | null | string {
    if (run.from === 0) return ZERO_CHAIN
    const entry = run.state.index.entryBefore(fence.regionStart)
    if (entry === null) return `the record of ${run.origin} before the damaged range is not indexed`
    let last: { end: number, seal: Uint8Array | null } | null = null
    const records = walk.records(entry.offset, Math.min(fence.regionStart, entry.offset + 2 * this.host.recordBytesMax + (64 << 10)))
    for (let next = records.next(); next.done !== true; next = records.next()) {
      if (next.value.origin === run.origin) last = { end: next.value.originPos + next.value.count, seal: next.value.seal }
    }
    if (last === null || last.end !== run.from) return `the record of ${run.origin} before the damaged range was not found (damage before it?)`
    if (last.seal === null) return null
    const fields = parseSeal(last.seal)
    return typeof fields === 'string' ? `${run.origin} before the damaged range: ${fields}` : new Uint8Array(fields.hash)
  }

  /**
   * The `prev` of the origin's first link after the region (null: nothing of it follows). Its
   * first record there lies before its next index entry, within an index stride of its previous
   * one (core/indexes.ts); the link ends that record's batch.
   */
  private linkAfter(walk: RecordWalk, run: Run, regionEnd: number): Uint8Array | null | string {
    if (run.to >= run.state.count) return null
    const next = run.state.index.entryFrom(regionEnd)
    const previous = run.state.index.entryBefore(regionEnd)
    const window = (64 << 10) + this.host.recordBytesMax
    const until = Math.min(next === null ? this.host.walkLimit() : next.offset + 1, previous === null ? regionEnd + window : Math.max(regionEnd + 1, previous.offset + window))
    let first = -1
    for (let records = walk.records(regionEnd, until), step = records.next(); step.done !== true; step = records.next()) {
      if (step.value.origin !== run.origin) continue
      if (step.value.originPos !== run.to) return `${run.origin}: after the damaged range it goes on at ${step.value.originPos}, not at ${run.to}`
      first = step.value.offset
      break
    }
    if (first < 0) return `${run.origin}: its records after the damaged range were not found`
    for (let offset = first; ;) {
      const step = walk.at(offset)
      if (step === null || step === 'end' || step.origin !== run.origin) return `${run.origin}: the batch after the damaged range does not read back whole`
      if (step.seal !== null) {
        const fields = parseSeal(step.seal)
        return typeof fields === 'string' ? `${run.origin} after the damaged range: ${fields}` : new Uint8Array(fields.prev)
      }
      if (!step.continues) return null // an origin that does not link: nothing to check against
      offset = step.end
    }
  }

  /** The durable watermark of the record just before the region (0 when none is found): repaired records keep the watermark monotonic. */
  private durableBefore(walk: RecordWalk, fence: Fence): number {
    const entry = this.host.local.index.entryBefore(fence.regionStart)
    if (entry === null) return 0
    let durable = 0
    for (let records = walk.records(entry.offset, fence.regionStart), step = records.next(); step.done !== true; step = records.next()) durable = step.value.durable
    return durable
  }

  /**
   * Writes the region (and first the segment header at version 2, when the region uses HOLE
   * records or fill, or 4 when it holds deflated records).
   */
  private write(segment: Segment, fileOffset: number, bytes: Buffer, usesRepairs: boolean, deflated: boolean): void {
    const fd = this.host.storage.openSync(segment.path, 'write')
    try {
      if (usesRepairs || deflated) raiseSegmentVersion(this.host.storage, segment, deflated ? SEGMENT_VERSION_DEFLATED : SEGMENT_VERSION_REPAIRED, this.host.checksum)
      writeAllSync(this.host.storage, fd, bytes, 0, bytes.length, fileOffset)
      this.host.storage.fdatasyncSync(fd)
    } finally {
      closeSynced(this.host.storage, fd)
    }
  }
}


/**
 * One record to compose: events [from, to) of a run, with an extension (link or seal, and fill)
 * on the last record of a batch; `deflated` is its body deflated, when the region needs that.
 */
interface Planned { run: Run, from: number, to: number, continues: boolean, seal: Uint8Array | null, fill: number, deflated: Buffer | null }

function framedBodyBytes(record: Planned): number {
  let bytes = 0
  for (let i = record.from; i < record.to; i++) bytes += EVENT_HEADER_BYTES + record.run.events[i]!.payload.length
  return bytes
}

/** The events of a planned record framed as a record body frames them. */
function framedBody(record: Planned): Buffer {
  const body = Buffer.alloc(framedBodyBytes(record))
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  let cursor = 0
  for (let i = record.from; i < record.to; i++) {
    const event = record.run.events[i]!
    view.setUint32(cursor + EVENT_OFFSET_LENGTH, event.payload.length, true)
    writeU64(view, cursor + EVENT_OFFSET_TIME, event.time)
    body.set(event.payload, cursor + EVENT_HEADER_BYTES)
    cursor += EVENT_HEADER_BYTES + event.payload.length
  }
  return body
}

/**
 * Composes the region: each run's events in order, one record per link (the fewest records the
 * events fit, so never more bytes than they took before; a record only splits at
 * REPAIR_RECORD_BYTES_MAX); then a HOLE for `elsewhere` local positions, or, with none, zero fill in
 * the last record's extension (a HOLE when there is more left than an extension holds). Seals
 * become links where the bytes would not fit otherwise. Returns the bytes, exactly the region's
 * size, or a reason.
 */
export function composeRegion(runs: readonly Run[], fence: Fence, regionEnd: number, elsewhere: number, durable: number,
  checksum: Checksum): { bytes: Buffer, usesRepairs: boolean, deflated: boolean } | string {
  const splitBytes = REPAIR_RECORD_BYTES_MAX
  const size = regionEnd - fence.regionStart
  const plan: Planned[] = []
  for (const run of runs) {
    let from = 0
    let bytes = RECORD_HEADER_BYTES
    for (let i = 0; i < run.events.length; i++) {
      const event = run.events[i]!
      const eventBytes = EVENT_HEADER_BYTES + event.payload.length
      if (i > from && bytes + eventBytes > splitBytes) {
        plan.push({ run, from, to: i, continues: true, seal: null, fill: 0, deflated: null })
        from = i
        bytes = RECORD_HEADER_BYTES
      }
      bytes += eventBytes
      if (event.seal !== undefined || i === run.events.length - 1) {
        plan.push({ run, from, to: i + 1, continues: event.seal === undefined && i < run.events.length - 1, seal: event.seal ?? null, fill: 0, deflated: null })
        from = i + 1
        bytes = RECORD_HEADER_BYTES
      }
    }
  }
  const recordBytes = (record: Planned): number => {
    const body = record.deflated?.length ?? framedBodyBytes(record)
    return recordBytesPadded(RECORD_HEADER_BYTES + body + (record.seal?.length ?? 0) + record.fill)
  }
  const room = (): number => size - plan.reduce((sum, record) => sum + recordBytes(record), 0) - (elsewhere > 0 ? RECORD_HEADER_BYTES : 0)
  // A range that held deflated records (stored compression) does not take its events plain: their
  // bodies deflated as the log stores them (level 1, then 9 if that is still too much).
  for (const level of [1, 9]) {
    if (room() >= 0) break
    for (const record of plan) {
      const body = framedBody(record)
      if (body.length < DEFLATE_MIN_BODY_BYTES || body.length > DEFLATE_MAX_BODY_BYTES) continue
      const deflated = zlib.deflateRawSync(body, { level })
      record.deflated = deflated.length <= body.length - (body.length >> 3) ? deflated : null
    }
  }
  let used = plan.reduce((sum, record) => sum + recordBytes(record), 0)
  // Seals as links, where the region is too small for them (the chain needs the link, not the signature).
  for (const record of plan) {
    if (used + (elsewhere > 0 ? RECORD_HEADER_BYTES : 0) <= size) break
    if (record.seal === null || record.seal.length - sealBase(record.seal) !== SEAL_BYTES) continue
    const link = linkOfSeal(record.seal)
    used -= SEAL_BYTES - LINK_BYTES
    record.seal = link
  }
  let slack = size - used
  if (slack < 0) return `its events take ${used} bytes, more than the ${size} of the range`
  const last = plan[plan.length - 1]
  const fills = elsewhere === 0 && slack > 0 && last !== undefined && slack <= FILL_BYTES_MAX - (last.seal?.length ?? 0)
  let holes = fills ? 0 : slack
  if (holes > 0 && holes < RECORD_HEADER_BYTES) return `${slack} bytes are left: too few for a hole record, and no record to fill`
  if (fills && last !== undefined) {
    const before = recordBytes(last)
    last.fill = slack
    // Fill goes into the length; padding may change with it.
    while (recordBytes(last) - before > slack && last.fill > 0) last.fill--
    while (recordBytes(last) - before < slack) last.fill++
    if (recordBytes(last) - before !== slack) return 'the left-over bytes do not fit an extension'
    slack = 0
  }
  const bytes = Buffer.alloc(size)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  let localPos = fence.localFrom
  for (const record of plan) {
    const start = at
    let cursor = start + RECORD_HEADER_BYTES
    const body = record.deflated ?? framedBody(record)
    bytes.set(body, cursor)
    cursor += body.length
    const extension = (record.seal?.length ?? 0) + record.fill
    if (record.seal !== null) bytes.set(record.seal, cursor)
    cursor += extension
    writeRecordHeader(view, start, cursor - start, RECORD_KIND_EVENTS,
      (record.continues ? RECORD_FLAG_CONTINUES : 0) | (record.deflated === null ? 0 : RECORD_FLAG_DEFLATED), extension, record.to - record.from,
      localPos, durable, record.run.state.originBytes, record.run.events[record.from]!.pos)
    if (record.deflated !== null) view.setUint32(start + RECORD_OFFSET_RESERVED, framedBodyBytes(record), true)
    view.setBigUint64(start + RECORD_OFFSET_CHECKSUM, checksum(bytes.subarray(start + 8, cursor)), true)
    localPos += record.to - record.from
    at += recordBytesPadded(cursor - start)
  }
  let skip = elsewhere
  const filled = plan.some((record) => record.fill > 0)
  const holed = holes > 0
  while (holes > 0) {
    const length = Math.min(holes, HOLE_BYTES_MAX)
    // The last piece must be long enough for a header: take it from this one.
    const piece = holes - length > 0 && holes - length < RECORD_HEADER_BYTES ? length - RECORD_HEADER_BYTES : length
    writeRecordHeader(view, at, piece, RECORD_KIND_HOLE, 0, 0, skip, localPos, durable, null, 0)
    view.setBigUint64(at + RECORD_OFFSET_CHECKSUM, checksum(bytes.subarray(at + 8, at + piece)), true)
    localPos += skip
    skip = 0
    at += piece
    holes -= piece
  }
  if (at !== size) return `composed ${at} bytes for a range of ${size}`
  return { bytes, usesRepairs: filled || holed, deflated: plan.some((record) => record.deflated !== null) }
}

function writeRecordHeader(view: DataView, at: number, length: number, kind: number, flags: number, extension: number, count: number,
  localPos: number, durable: number, origin: Uint8Array | null, originPos: number): void {
  view.setUint32(at + RECORD_OFFSET_LENGTH, length, true)
  view.setUint8(at + RECORD_OFFSET_KIND, kind)
  view.setUint8(at + RECORD_OFFSET_FLAGS, flags)
  view.setUint16(at + RECORD_OFFSET_EXTENSION, extension, true)
  view.setUint32(at + RECORD_OFFSET_COUNT, count, true)
  writeU64(view, at + RECORD_OFFSET_LOCAL_POS, localPos)
  writeU64(view, at + RECORD_OFFSET_DURABLE, durable)
  if (origin !== null) new Uint8Array(view.buffer, view.byteOffset + at + RECORD_OFFSET_ORIGIN, origin.length).set(origin)
  writeU64(view, at + RECORD_OFFSET_ORIGIN_POS, originPos)
}
