// Fencing damage that a read finds (open's scan fences what it finds itself, core/recovery.ts).
// The read knows where the bad record is; the survey finds the range around it (from the start of
// its batch to the next record that reads back) and what the range held per origin, from the
// sparse indexes and short scans of the records around it: an origin's records that got no index
// entry lie within INDEX_STRIDE_BYTES of its previous entry (core/indexes.ts), so each scan is
// bounded by that stride, whatever the size of the log.
//
// Reads are synchronous (SegmentReader), of written data only (the log flushes before it
// surveys). Faults expected: more damage inside the windows scanned; the survey then stops at it
// and the fence is marked ambiguous (no repair in place) rather than guessed.

import { Fence } from './damage.js'
import { LogError } from './errors.js'
import {
  INDEX_STRIDE_BYTES, RECORD_ALIGN_BYTES, RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, RECORD_KIND_EVENTS,
  RECORD_KIND_HOLE, RECORD_OFFSET_KIND, RECORD_OFFSET_LENGTH, SEGMENT_HEADER_BYTES,
} from './format.js'
import type { OriginState } from './indexes.js'
import { decodeRecordAt } from './segment-reader.js'
import type { Segment } from './segments.js'
import { RecordWalk as Walk, type Step, type StoredLog } from './record-walk.js'

export interface SurveyHost extends StoredLog {
  /** The next local position, and the global offset past the last committed record (all written). */
  readonly committedCount: number
  readonly committedEnd: number
}

/**
 * Fences off the damage a read found at global offset `offset` of `segment`. `expectedLocal`
 * and `batchStart` are what the read knew (-1: nothing). Throws CORRUPT when not even the start of
 * the damaged batch can be found (then the log cannot say what it lost).
 */
export function surveyDamage(host: SurveyHost, segment: Segment, offset: number, reason: string, expectedLocal: number, batchStart: number): Fence {
  const walk = new Walk(host.table, host.storage, host.checksum, host.fences, host.committedEnd)
  try {
    const start = regionStartOf(host, walk, segment, offset, batchStart, expectedLocal)
    const resume = resumeAfter(host, walk, segment, offset, start.localPos)
    const fence = new Fence(segment, start.offset, resume.offset, start.offset, start.localPos, reason, 'read')
    fence.damageOffset = offset - segment.start
    fence.localTo = resume.localPos
    attribute(host, walk, fence)
    return fence
  } finally {
    walk.close()
  }
}

/** Steps back through the local index, at most, looking for the start of the damaged batch. */
const REGION_SEARCH_STEPS_MAX = 64

/**
 * Where the damaged record's batch began, and the local position there: from the read when it
 * knows, else by walking from ever earlier local index entries until the walk meets a batch end
 * before the damage (the segment's first record, or the end of a fence before it, starts one).
 */
function regionStartOf(host: SurveyHost, walk: Walk, segment: Segment, offset: number, batchStart: number, expectedLocal: number): { offset: number, localPos: number } {
  const floor = previousFenceEnd(host, segment, offset)
  const localOf = (steps: Step[], at: number): number => steps[0]?.localPos ?? (expectedLocal >= 0 ? expectedLocal : localAt(host, walk, at))
  if (batchStart >= floor && batchStart <= offset) {
    const steps = collect(walk.records(batchStart, offset)).steps
    return { offset: batchStart, localPos: localOf(steps, batchStart) }
  }
  let from = offset
  for (let step = 0; step < REGION_SEARCH_STEPS_MAX; step++) {
    const entry = host.local.index.entryBefore(from)
    from = entry === null || entry.offset <= floor ? floor : entry.offset
    const walked = collect(walk.records(from, offset))
    const last = walked.steps[walked.steps.length - 1]
    if (walked.ok && (last === undefined ? from === offset : last.end === offset)) {
      let start = from === floor ? from : -1
      let startLocal = localOf(walked.steps, from)
      for (const record of walked.steps) {
        if (record.continues) continue
        start = record.end
        startLocal = record.localPos + record.count
      }
      if (start >= 0) return { offset: start, localPos: startLocal }
    }
    if (from === floor) break
  }
  throw new LogError('CORRUPT', `segment ${segment.name} is damaged at offset ${offset - segment.start} and the start of its batch cannot be found: ` +
    'restore this log from a peer or a backup', { segment: segment.name, offset: offset - segment.start })
}

function collect(records: Generator<Step, { ok: boolean, at: number }>): { steps: Step[], ok: boolean } {
  const steps: Step[] = []
  for (let next = records.next(); ; next = records.next()) {
    if (next.done === true) return { steps, ok: next.value.ok }
    steps.push(next.value)
  }
}

/** The local position of the record that should start at `offset` (after the last record read before it). */
function localAt(host: SurveyHost, walk: Walk, offset: number): number {
  const entry = host.local.index.entryBefore(offset + 1)
  if (entry === null) return 0
  let localPos = entry.position
  const records = walk.records(entry.offset, offset)
  for (let next = records.next(); next.done !== true; next = records.next()) localPos = next.value.localPos + next.value.count
  return localPos
}

function previousFenceEnd(host: SurveyHost, segment: Segment, offset: number): number {
  let floor = segment.start + SEGMENT_HEADER_BYTES
  for (const fence of host.fences.all()) if (fence.segment === segment && fence.end <= offset) floor = Math.max(floor, fence.end)
  return floor
}

/**
 * The next record that reads back after the damage (at 8-byte steps, local position at least
 * `localFrom`), or the end of the segment's data: where reads go on, and its local position.
 */
function resumeAfter(host: SurveyHost, walk: Walk, segment: Segment, offset: number, localFrom: number): { offset: number, localPos: number } {
  const reader = walk.readerOf(segment)
  const header = walk.header
  const end = segment.dataEnd - segment.start
  for (let at = offset - segment.start + RECORD_ALIGN_BYTES; at + RECORD_HEADER_BYTES <= end; at += RECORD_ALIGN_BYTES) {
    const i = reader.ensure(at, RECORD_HEADER_BYTES)
    const length = reader.view.getUint32(i + RECORD_OFFSET_LENGTH, true)
    const kind = reader.bytes[i + RECORD_OFFSET_KIND]
    if (length < RECORD_HEADER_BYTES || length > RECORD_BYTES_LIMIT || (kind !== RECORD_KIND_EVENTS && kind !== RECORD_KIND_HOLE)) continue
    if (decodeRecordAt(reader, at, host.checksum, header) !== 'ok' || header.localPos < localFrom) continue
    return { offset: segment.start + at, localPos: header.localPos }
  }
  // Nothing reads back up to the end of its data: the range runs to it; local positions go on with
  // the next segment's first record, or with the log's end.
  const next = host.table.next(segment)
  let localPos = host.committedCount
  if (next !== undefined) {
    const records = walk.records(next.start + SEGMENT_HEADER_BYTES, next.start + next.size)
    const first = records.next()
    if (first.done !== true) localPos = first.value.localPos
  }
  return { offset: segment.dataEnd, localPos }
}

/**
 * What the fence held per origin: from the origin's count where the range starts to its first
 * position after it (or its count, when nothing of it follows). Each count comes from the
 * origin's nearest index entry and a walk of at most INDEX_STRIDE_BYTES from it.
 */
function attribute(host: SurveyHost, walk: Walk, fence: Fence): void {
  const window = INDEX_STRIDE_BYTES + host.recordBytesMax
  for (const [origin, state] of host.origins) {
    if (state.count === 0) continue
    const before = state.index.entryBefore(fence.start)
    const inside = state.index.entryFrom(fence.start)
    // No entry inside the range and the last one far before it: no record of this origin there.
    if (before !== null && before.offset + window < fence.start && (inside === null || inside.offset >= fence.end)) continue
    if (before === null && (inside === null || inside.offset >= fence.end)) continue
    const from = countBefore(host, walk, origin, state, fence.start, window)
    const to = firstAfter(host, walk, origin, state, fence.end, window)
    if (from === null || to === null) {
      fence.ambiguous = true
      continue
    }
    if (to > from) fence.attribute(origin, from, to)
  }
  if (fence.localTo - fence.localFrom !== fence.attributed) fence.ambiguous = true
}

/** Events of `origin` in records before global offset `at` (null: damage in the way). */
function countBefore(host: SurveyHost, walk: Walk, origin: string, state: OriginState, at: number, window: number): number | null {
  const entry = state.index.entryBefore(at)
  if (entry === null) return 0
  let count = entry.position
  const records = walk.records(entry.offset, Math.min(at, entry.offset + window))
  let next = records.next()
  for (; next.done !== true; next = records.next()) {
    if (next.value.origin === origin) count = next.value.originPos + next.value.count
  }
  if (!next.value.ok) return null
  // Fences between the entry and `at` hold this origin's events too.
  for (const fence of host.fences.all()) {
    const range = fence.ranges.get(origin)
    if (range !== undefined && fence.end <= at && fence.start >= entry.offset) count = Math.max(count, range.to)
  }
  return count
}

/** The first position of `origin` in records from global offset `at` on, or its count when none (null: damage in the way). */
function firstAfter(host: SurveyHost, walk: Walk, origin: string, state: OriginState, at: number, window: number): number | null {
  const next = state.index.entryFrom(at)
  const previous = state.index.entryBefore(at)
  const until = Math.min(next === null ? host.committedEnd : next.offset, previous === null ? at + window : Math.max(at, previous.offset + window))
  const records = walk.records(at, until)
  let step = records.next()
  for (; step.done !== true; step = records.next()) {
    if (step.value.origin === origin) return step.value.originPos
  }
  if (!step.value.ok) return null
  return next === null ? state.count : next.position
}
