// Sparse in-memory indexes. The local index maps local positions to record offsets, one entry per
// INDEX_STRIDE_BYTES of log; each origin's index maps its positions to record offsets, one entry
// per ORIGIN_INDEX_STRIDE_EVENTS of its events or per INDEX_STRIDE_BYTES of log, whichever comes
// first. Memory is bounded by log bytes / stride, not by the event count: a 10-million-event log
// of 128-byte events (1.5 GB) keeps about 24,000 local entries. A lookup gives a record at or
// before the wanted position; the reader scans forward at most one stride of records.

import { assert } from './assert.js'
import { INDEX_STRIDE_BYTES, ORIGIN_INDEX_STRIDE_EVENTS } from './format.js'

/** Growable pairs of (position, global offset), sorted by both. */
export class SparseIndex {
  private positions = new Float64Array(64)
  private offsets = new Float64Array(64)
  count = 0

  get lastPosition(): number {
    return this.count === 0 ? -1 : (this.positions[this.count - 1] as number)
  }

  get lastOffset(): number {
    return this.count === 0 ? -1 : (this.offsets[this.count - 1] as number)
  }

  add(position: number, offset: number): void {
    assert(this.count === 0 || (position >= this.lastPosition && offset > this.lastOffset), 'index entries ascend')
    if (this.count === this.positions.length) {
      const positions = new Float64Array(this.count * 2)
      const offsets = new Float64Array(this.count * 2)
      positions.set(this.positions)
      offsets.set(this.offsets)
      this.positions = positions
      this.offsets = offsets
    }
    this.positions[this.count] = position
    this.offsets[this.count] = offset
    this.count++
  }

  /** Offset of the last entry whose position is <= `position`, or -1. */
  floorOffset(position: number): number {
    let low = 0
    let high = this.count - 1
    let found = -1
    while (low <= high) {
      const middle = (low + high) >> 1
      if ((this.positions[middle] as number) <= position) {
        found = middle
        low = middle + 1
      } else {
        high = middle - 1
      }
    }
    return found < 0 ? -1 : (this.offsets[found] as number)
  }

  /** The last entry whose offset is below `offset`, or null. */
  entryBefore(offset: number): { position: number, offset: number } | null {
    let low = 0
    let high = this.count - 1
    let found = -1
    while (low <= high) {
      const middle = (low + high) >> 1
      if ((this.offsets[middle] as number) < offset) {
        found = middle
        low = middle + 1
      } else {
        high = middle - 1
      }
    }
    return found < 0 ? null : { position: this.positions[found] as number, offset: this.offsets[found] as number }
  }

  /** The first entry whose offset is at least `offset`, or null. */
  entryFrom(offset: number): { position: number, offset: number } | null {
    const before = this.entryBefore(offset)
    const at = before === null ? 0 : this.indexOfOffset(before.offset) + 1
    return at < this.count ? { position: this.positions[at] as number, offset: this.offsets[at] as number } : null
  }

  private indexOfOffset(offset: number): number {
    let low = 0
    let high = this.count - 1
    while (low <= high) {
      const middle = (low + high) >> 1
      const value = this.offsets[middle] as number
      if (value === offset) return middle
      if (value < offset) low = middle + 1
      else high = middle - 1
    }
    return -1
  }

  /**
   * Replaces the entries with offsets in [from, to) by `entries` (ascending, within [from, to)):
   * a repaired range was rewritten (core/heal.ts), so its records moved.
   */
  replaceRange(from: number, to: number, entries: readonly { position: number, offset: number }[]): void {
    const keptPositions: number[] = []
    const keptOffsets: number[] = []
    for (let i = 0; i < this.count; i++) {
      const offset = this.offsets[i] as number
      if (offset >= from && offset < to) continue
      if (offset >= to) {
        for (const entry of entries) {
          keptPositions.push(entry.position)
          keptOffsets.push(entry.offset)
        }
        entries = []
      }
      keptPositions.push(this.positions[i] as number)
      keptOffsets.push(offset)
    }
    for (const entry of entries) {
      keptPositions.push(entry.position)
      keptOffsets.push(entry.offset)
    }
    this.count = 0
    for (let i = 0; i < keptPositions.length; i++) this.add(keptPositions[i]!, keptOffsets[i]!)
  }

  /** The entries before `offset` (what a checkpoint taken at `offset` covers). */
  entriesBefore(offset: number): { positions: number[], offsets: number[] } {
    const positions: number[] = []
    const offsets: number[] = []
    for (let i = 0; i < this.count && (this.offsets[i] as number) < offset; i++) {
      positions.push(this.positions[i] as number)
      offsets.push(this.offsets[i] as number)
    }
    return { positions, offsets }
  }

  static from(positions: readonly number[], offsets: readonly number[]): SparseIndex {
    assert(positions.length === offsets.length, 'index columns have one length')
    const index = new SparseIndex()
    for (let i = 0; i < positions.length; i++) index.add(positions[i] as number, offsets[i] as number)
    return index
  }
}

/** Sealed batches per origin remembered for equivocation checks of duplicates. */
export const RECENT_SEALS_MAX = 256

/** What this log holds of one origin. */
export class OriginState {
  /** Events of this origin held, durable or not (merge and append continue from here). */
  count = 0
  /** Events of this origin visible to readers and in the version vector (core/visibility.ts). */
  visibleCount = 0
  index = new SparseIndex()
  /** Chain hash after `count` events (see seal.ts); null until loaded from the log. */
  chain: Uint8Array | null = null
  /** Whether the last batch held is sealed: an origin that signs cannot continue unsigned. */
  signed = false
  /** Chain hashes of recent batches by end position, to spot equivocation among duplicates. */
  readonly recentSeals = new Map<number, Uint8Array>()
  /** Chain hashes of older batches read back from the log to check a duplicate (null: no link ends there), at most RECENT_SEALS_MAX. */
  readonly checkedSeals = new Map<number, Uint8Array | null>()

  constructor(readonly origin: string, readonly originBytes: Uint8Array) {}

  /** Notes this log's own batch: its chain hash is the head (own batches are never merged, so no history is kept). */
  noteOwnLink(hash: Uint8Array): void {
    this.chain = hash
    this.signed = true
  }

  /** Notes a sealed batch ending at `end` with chain hash `hash` (now the head). */
  noteSeal(end: number, hash: Uint8Array): void {
    this.chain = hash
    this.signed = true
    this.recentSeals.set(end, hash)
    if (this.recentSeals.size > RECENT_SEALS_MAX) this.recentSeals.delete(this.recentSeals.keys().next().value as number)
  }

  /** Remembers the chain hash read back for the batch ending at `end` (bounded like the recent ones). */
  noteChecked(end: number, hash: Uint8Array | null): void {
    this.checkedSeals.set(end, hash)
    if (this.checkedSeals.size > RECENT_SEALS_MAX) this.checkedSeals.delete(this.checkedSeals.keys().next().value as number)
  }

  /** Notes a record of this origin at `offset` starting at origin position `originPos`. */
  noteRecord(originPos: number, offset: number): void {
    if (this.index.count === 0 ||
      originPos >= this.index.lastPosition + ORIGIN_INDEX_STRIDE_EVENTS ||
      offset >= this.index.lastOffset + INDEX_STRIDE_BYTES) {
      this.index.add(originPos, offset)
    }
  }
}

/** The local index: one entry per INDEX_STRIDE_BYTES of log. */
export class LocalIndex {
  constructor(readonly index = new SparseIndex()) {}

  noteRecord(localPos: number, offset: number): void {
    if (this.index.count === 0 || offset >= this.index.lastOffset + INDEX_STRIDE_BYTES) {
      this.index.add(localPos, offset)
    }
  }
}
