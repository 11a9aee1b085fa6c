// Damage in old data, fenced off: a range of a segment that cannot be read (a bad checksum, a
// torn or zeroed page, a truncated or missing file, found by open's scan or by a read) is recorded
// here, and reads, sync and verify go around it, so that one flipped byte never stops a gateway.
// A fence says which events it holds, per origin, where that can be known: those are fetched back
// from peers and written into the range again (core/heal.ts). Events of origins whose sequence does
// not go on after the range cannot be placed back in order; their counts stop before the range,
// and sync brings them back at the end of the log like any missing event.
//
// Invariants: fences do not overlap and are kept in log order; a fence's [start, end) lies in one
// segment (a missing segment is one fence); per origin, the ranges of all fences are disjoint and
// below the origin's count. Memory: at most FENCES_MAX fences; more damage than that is a log to
// restore from a peer, and open says so.

import { assert } from './assert.js'
import { LogError } from './errors.js'
import type { Segment } from './segments.js'

/** Fences one log keeps at most (each is one damaged range). */
export const FENCES_MAX = 4096

/** Where a fence was found. */
export type FenceSource = 'open' | 'read'

/** What a fence holds of one origin: positions [from, to) that this log lacks, in order with what it holds. */
export interface MissingRange {
  origin: string
  from: number
  to: number
}

/** A damaged range as the API reports it (log.damage(), verify, status, the 'damage' event). */
export interface DamagedRange {
  /** Segment file name. */
  segment: string
  /** File offset of the first byte that could not be read. */
  offset: number
  /** File offset where readable records go on (the damaged range is [offset, end)). */
  end: number
  /** Local positions the range held: [localFrom, localTo). */
  localFrom: number
  localTo: number
  /** Events of the range this log can take back from peers and write in place. */
  missing: MissingRange[]
  /** Events of the range whose origin is unknown, or whose sequence stops there: their origin's count stops before them, and sync brings them back at the end of the log. */
  elsewhere: number
  reason: string
  found: FenceSource
  /** Why it is not repaired yet, after a try: waiting for events from peers, or what the repair refused (null before any try). */
  repair: string | null
}

export class Fence {
  /** Per origin, the events of the range held back in order ([from, to)); built while open scans on. */
  readonly ranges = new Map<string, { from: number, to: number }>()
  /** Local positions after the range: -1 until the first record after it is found. */
  localTo = -1
  /** Two fences in a row that an origin's jump could belong to: ranges are not exact, so no repair in place. */
  ambiguous = false
  /** No record follows the fence: how many events it held is not known. */
  tailUnknown = false
  /** File offset of the first byte found damaged (>= the fence's start, which is where its batch began). */
  damageOffset: number
  /** Why the last repair attempt did not write it back (waiting for events, or what it refused), or null. */
  repairNote: string | null = null

  constructor(
    readonly segment: Segment,
    /** Global offsets of the bytes reads skip: [start, end). */
    readonly start: number,
    readonly end: number,
    /** Global offset where the region a repair rewrites begins (the start of the batch the damage is in, <= start). */
    readonly regionStart: number,
    /** Local position of the first event of the region. */
    readonly localFrom: number,
    readonly reason: string,
    readonly found: FenceSource,
  ) {
    assert(regionStart <= start && start <= end, 'a fence lies within its region')
    this.damageOffset = start - segment.start
  }

  /** Events attributed to an origin so far. */
  get attributed(): number {
    let sum = 0
    for (const range of this.ranges.values()) sum += range.to - range.from
    return sum
  }

  /** Local positions of the fence whose events are not attributed to an origin (0 while localTo is unknown). */
  get elsewhere(): number {
    return this.localTo < 0 ? 0 : Math.max(0, this.localTo - this.localFrom - this.attributed)
  }

  /** Adds [from, to) of `origin` to the fence's ranges (an origin's jump over the fence). */
  attribute(origin: string, from: number, to: number): void {
    const range = this.ranges.get(origin)
    if (range === undefined) this.ranges.set(origin, { from, to })
    else {
      assert(range.to === from, 'an origin\'s ranges in one fence are contiguous')
      range.to = to
    }
  }

  describe(): DamagedRange {
    return {
      segment: this.segment.name, offset: this.damageOffset, end: this.end - this.segment.start,
      localFrom: this.localFrom, localTo: Math.max(this.localFrom, this.localTo),
      missing: this.ambiguous ? [] : [...this.ranges].map(([origin, range]) => ({ origin, from: range.from, to: range.to })),
      elsewhere: this.ambiguous ? Math.max(0, this.localTo - this.localFrom) : this.elsewhere,
      reason: this.reason, found: this.found, repair: this.repairNote,
    }
  }
}

/** The fences of one log, in log order. */
export class Fences {
  private readonly list: Fence[] = []

  get count(): number {
    return this.list.length
  }

  all(): readonly Fence[] {
    return this.list
  }

  /** Adds a fence (after every fence before it in log order, or in its place when found by a read). */
  add(fence: Fence): void {
    if (this.list.length >= FENCES_MAX) {
      throw new LogError('CORRUPT', `more than ${FENCES_MAX} damaged ranges in ${fence.segment.name} and before: ` +
        'restore this log from a peer or a backup', { segment: fence.segment.name, offset: fence.start - fence.segment.start })
    }
    let at = this.list.length
    while (at > 0 && this.list[at - 1]!.start > fence.start) at--
    assert(at === 0 || this.list[at - 1]!.end <= fence.start, 'fences do not overlap')
    assert(at === this.list.length || fence.end <= this.list[at]!.start, 'fences do not overlap')
    this.list.splice(at, 0, fence)
  }

  remove(fence: Fence): void {
    const at = this.list.indexOf(fence)
    if (at >= 0) this.list.splice(at, 1)
  }

  /** The fence whose skipped bytes hold global offset `offset`, if any. */
  containing(offset: number): Fence | undefined {
    let low = 0
    let high = this.list.length - 1
    while (low <= high) {
      const middle = (low + high) >> 1
      const fence = this.list[middle]!
      if (offset < fence.start) high = middle - 1
      else if (offset >= fence.end) low = middle + 1
      else return fence
    }
    return undefined
  }

  /** Positions of `origin` this log lacks below its count, in order: what sync asks peers for. */
  holesOf(origin: string): { from: number, to: number }[] {
    const holes: { from: number, to: number }[] = []
    for (const fence of this.list) {
      if (fence.ambiguous) continue
      const range = fence.ranges.get(origin)
      if (range !== undefined && range.to > range.from) holes.push({ from: range.from, to: range.to })
    }
    return holes.sort((a, b) => a.from - b.from)
  }

  /** The fence that holds position `pos` of `origin` in its ranges, if any. */
  holding(origin: string, pos: number): Fence | undefined {
    for (const fence of this.list) {
      const range = fence.ranges.get(origin)
      if (!fence.ambiguous && range !== undefined && pos >= range.from && pos < range.to) return fence
    }
    return undefined
  }
}
