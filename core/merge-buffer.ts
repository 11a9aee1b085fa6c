// Remote events that arrived beyond a gap in their origin's sequence wait here until the gap is
// filled. Bounded by count and payload bytes (mergeWaitingEventsMax, mergeWaitingBytesMax): when
// full, the events furthest ahead are dropped, and sync fetches them again later (the version
// vector still says they are missing). Held in memory only: a crash forgets them, which is safe
// for the same reason.

export interface RemoteEvent {
  origin: string
  pos: number
  time: number
  payload: Uint8Array
  /** On the last event of a signed batch: the batch's seal, as the origin made it. */
  seal?: Uint8Array | undefined
}

export class MergeBuffer {
  private readonly byOrigin = new Map<string, Map<number, RemoteEvent>>()
  /** Origins with events held on the signed path (waiting for a seal): never released unsigned. */
  private readonly sealedOrigins = new Set<string>()
  events = 0
  bytes = 0

  constructor(private readonly eventsMax: number, private readonly bytesMax: number) {}

  has(origin: string, pos: number): boolean {
    return this.byOrigin.get(origin)?.has(pos) ?? false
  }

  /** Whether any event of `origin` waits here. */
  holdsAny(origin: string): boolean {
    return this.byOrigin.has(origin)
  }

  /** Whether events of `origin` wait for a seal. */
  holdsSealed(origin: string): boolean {
    return this.sealedOrigins.has(origin)
  }

  /** Holds `event` (`sealed`: on the signed path, waiting for a seal); returns false when it was dropped for lack of room. */
  hold(event: RemoteEvent, sealed = false): boolean {
    if (this.events + 1 > this.eventsMax || this.bytes + event.payload.length > this.bytesMax) {
      if (!this.evictAbove(event)) return false
    }
    let waiting = this.byOrigin.get(event.origin)
    if (waiting === undefined) {
      waiting = new Map()
      this.byOrigin.set(event.origin, waiting)
    }
    waiting.set(event.pos, event)
    if (sealed) this.sealedOrigins.add(event.origin)
    this.events++
    this.bytes += event.payload.length
    return true
  }

  /** Removes and returns the run of events of `origin` starting at `pos`. */
  takeRun(origin: string, pos: number): RemoteEvent[] {
    const waiting = this.byOrigin.get(origin)
    const run: RemoteEvent[] = []
    if (waiting === undefined) return run
    for (let next = pos; ; next++) {
      const event = waiting.get(next)
      if (event === undefined) break
      waiting.delete(next)
      this.events--
      this.bytes -= event.payload.length
      run.push(event)
    }
    // Anything left below `pos` is now a duplicate.
    for (const held of waiting.keys()) {
      if (held < pos) {
        this.bytes -= waiting.get(held)!.payload.length
        this.events--
        waiting.delete(held)
      }
    }
    if (waiting.size === 0) this.forget(origin)
    return run
  }

  /** Holds `event` in place of any held event at its position (signed batches: the seal decides later which copy is genuine). */
  holdReplacing(event: RemoteEvent): boolean {
    const waiting = this.byOrigin.get(event.origin)
    const old = waiting?.get(event.pos)
    if (old !== undefined) {
      waiting!.delete(event.pos)
      this.events--
      this.bytes -= old.payload.length
    }
    return this.hold(event, true)
  }

  /** Forgets every held event of `origin` (its sync is quarantined). */
  dropOrigin(origin: string): void {
    const waiting = this.byOrigin.get(origin)
    if (waiting === undefined) return
    for (const event of waiting.values()) {
      this.events--
      this.bytes -= event.payload.length
    }
    this.forget(origin)
  }

  private forget(origin: string): void {
    this.byOrigin.delete(origin)
    this.sealedOrigins.delete(origin)
  }

  /** Makes room for `incoming` by dropping the held event furthest ahead of it, if any is further. */
  private evictAbove(incoming: RemoteEvent): boolean {
    let victimOrigin: string | undefined
    let victimPos = -1
    for (const [origin, waiting] of this.byOrigin) {
      for (const pos of waiting.keys()) {
        if (pos > victimPos && (origin !== incoming.origin || pos > incoming.pos)) {
          victimOrigin = origin
          victimPos = pos
        }
      }
    }
    if (victimOrigin === undefined) return false
    const waiting = this.byOrigin.get(victimOrigin)!
    const victim = waiting.get(victimPos)!
    waiting.delete(victimPos)
    if (waiting.size === 0) this.forget(victimOrigin)
    this.events--
    this.bytes -= victim.payload.length
    return this.events + 1 <= this.eventsMax && this.bytes + incoming.payload.length <= this.bytesMax
  }
}
