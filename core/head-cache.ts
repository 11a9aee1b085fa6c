// The head page cache: one aligned buffer, allocated at open, holding the most recent bytes of
// the current segment. It is the write buffer too: records are composed in place, written from it
// in whole pages (O_DIRECT where possible) and read back from it without I/O.
//
// Invariants: `windowStart` is page-aligned and maps to memory[0]; the bytes from `composedEnd`
// to the end of its page are zero, so a page written with a partial tail carries zeros after the
// last record (the flusher writes up to that page's end, never further; readers read only below
// `composedEnd`). Further on the window may hold stale bytes of records it held before it slid:
// composeRecord zeroes the rest of the page it ends in, so nothing needs to clear them ahead. The
// window only moves (slide) when nothing is in flight and every byte before the new start has
// been written.

import { assert } from './assert.js'
import { PAGE_BYTES, alignDown, alignUp } from './format.js'
import type { Segment } from './segments.js'

export class HeadCache {
  readonly memory: Buffer
  readonly view: DataView
  /** The segment whose bytes the window holds. */
  segment: Segment
  /** Global offset of memory[0]. */
  windowStart: number
  /** Global offset just past the last composed byte. */
  composedEnd: number
  /**
   * Finishes records whose links a worker is still hashing (core/seal-pipeline.ts): all of them, or
   * those that start before global offset `end`. Called before the window moves or its bytes are
   * copied out; the flusher calls it before writing.
   */
  settle: (end?: number) => void = () => {}
  /**
   * The byte ranges that `settle` will still write (memory indexes, two numbers per range, in
   * order) into `out`; returns how many numbers. Zero tells the flusher to settle first and write
   * in one go: nothing is pending, or a worker hashes (core/log.ts hooks this only without one).
   */
  pendingFields: (out: Float64Array) => number = () => 0

  constructor(memory: Buffer, segment: Segment, end: number) {
    assert(memory.length % PAGE_BYTES === 0 && memory.length >= 4 * PAGE_BYTES, 'cache holds whole pages')
    this.memory = memory
    this.view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength)
    this.segment = segment
    this.windowStart = alignDown(end, PAGE_BYTES)
    this.composedEnd = end
  }

  /** Points the window at `end` in `segment`, dropping what it held. The caller loads the tail page. */
  reset(segment: Segment, end: number): void {
    this.settle()
    this.memory.fill(0)
    this.segment = segment
    this.windowStart = alignDown(end, PAGE_BYTES)
    this.composedEnd = end
  }

  /** Memory index of global offset `offset`. */
  at(offset: number): number {
    return offset - this.windowStart
  }

  /** Bytes that can still be composed without sliding. */
  room(): number {
    return this.windowStart + this.memory.length - this.composedEnd
  }

  /** Moves the window so it keeps at most `keepBytes` before the composed end. */
  slide(keepBytes: number): void {
    const newStart = Math.max(this.windowStart, alignDown(this.composedEnd - keepBytes, PAGE_BYTES))
    if (newStart === this.windowStart) return
    this.settle()
    const shift = newStart - this.windowStart
    const used = this.composedEnd - this.windowStart
    this.memory.copyWithin(0, shift, used)
    // Only the rest of the composed end's page needs zeros (see the top of this file); the stale
    // bytes after it are overwritten as records are composed. (Zeroing all of them cost about a
    // tenth of the time of batch appends.)
    this.memory.fill(0, used - shift, Math.min(used, alignUp(used - shift, PAGE_BYTES)))
    this.windowStart = newStart
  }

  /**
   * Bytes written elsewhere (a repair, core/heal.ts) at global offset `start` of `segment`: the
   * part the window holds is copied in, so that the tail page written again at the next flush
   * carries them. Only bytes before the composed end (committed records) are ever given.
   */
  rewrite(segment: Segment, start: number, bytes: Uint8Array): void {
    if (segment !== this.segment) return
    const from = Math.max(start, this.windowStart)
    const to = Math.min(start + bytes.length, this.composedEnd)
    if (to <= from) return
    this.settle(to)
    this.memory.set(bytes.subarray(from - start, to - start), this.at(from))
  }

  /** Whether [offset, end) of `segment` is in the window. */
  holds(segment: Segment, offset: number, end: number): boolean {
    return segment === this.segment && offset >= this.windowStart && end <= this.composedEnd
  }

  /** A fresh copy of [offset, end): readers keep it, the window moves on. */
  copyOut(offset: number, end: number): Buffer {
    this.settle(end)
    const copy = Buffer.allocUnsafe(end - offset)
    this.memory.copy(copy, 0, this.at(offset), this.at(end))
    return copy
  }
}
