// What readers see: the visible end of the log. With durability 'fsync', visibility follows
// durability, as Kafka's high watermark does: `length`, read, tail, consumers, eventsSince and the
// version vector show a batch only once the fdatasync that covers it has returned, so no reader
// ever sees an event that a crash, a failed write or a full disk can then take away. With
// 'interval' and 'none', a batch is visible once committed (appends there resolve before they are
// durable anyway), and a crash may take back what was visible beyond `durableLength`.
//
// Invariants: the visible count and end never decrease and never pass the committed ones; an
// origin's `visibleCount` is the number of its events below the visible count. Memory: one entry
// per batch committed and not yet durable, in arrays that grow to the largest such backlog and
// are then reused (no allocation per batch once warm).

import { assert } from './assert.js'
import type { OriginState } from './indexes.js'

export class Visibility {
  /** Events visible to readers (a batch boundary). */
  count: number
  /** Global offset just past the last visible record. */
  end: number
  /** Batches committed and not yet visible, oldest first: their origin, events and local end. */
  private origins: (OriginState | null)[] = []
  private counts: number[] = []
  private localEnds: number[] = []
  private head = 0
  private tail = 0

  /**
   * `followsDurability`: true with durability 'fsync' (see above). `onGrow` is called each time
   * the visible count grows (tails waiting for new events wake on it).
   */
  constructor(readonly followsDurability: boolean, count: number, end: number, private readonly onGrow: () => void) {
    this.count = count
    this.end = end
  }

  /** A batch of `events` of `origin` was committed; the log's committed count and end are now `localEnd` and `end`. */
  committed(origin: OriginState, events: number, localEnd: number, end: number): void {
    if (!this.followsDurability) {
      origin.visibleCount += events
      this.count = localEnd
      this.end = end
      this.onGrow()
      return
    }
    if (this.tail === this.origins.length) this.grow()
    this.origins[this.tail] = origin
    this.counts[this.tail] = events
    this.localEnds[this.tail] = localEnd
    this.tail++
  }

  /** An fdatasync made everything up to `count` events (ending at global offset `end`) durable. */
  durable(count: number, end: number): void {
    if (!this.followsDurability || count <= this.count) return
    assert(end >= this.end, 'the durable end moves forward')
    while (this.head < this.tail && (this.localEnds[this.head] as number) <= count) {
      const origin = this.origins[this.head] as OriginState
      origin.visibleCount += this.counts[this.head] as number
      this.origins[this.head] = null
      this.head++
    }
    if (this.head === this.tail) this.head = this.tail = 0
    this.count = count
    this.end = end
    this.onGrow()
  }

  /** Makes room at the tail: compacts when the head has moved, else doubles. */
  private grow(): void {
    const live = this.tail - this.head
    const size = live < this.origins.length / 2 ? this.origins.length : Math.max(64, this.origins.length * 2)
    const origins = new Array<OriginState | null>(size).fill(null)
    const counts = new Array<number>(size).fill(0)
    const localEnds = new Array<number>(size).fill(0)
    for (let i = 0; i < live; i++) {
      origins[i] = this.origins[this.head + i] as OriginState
      counts[i] = this.counts[this.head + i] as number
      localEnds[i] = this.localEnds[this.head + i] as number
    }
    this.origins = origins
    this.counts = counts
    this.localEnds = localEnds
    this.head = 0
    this.tail = live
  }
}
