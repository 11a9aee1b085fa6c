// Single appends that arrive together go to disk together. Each `append()` is checked on its own
// (size, validators) when it is called. The first of a turn goes in at once; the ones that follow
// it in the same turn join a group, appended as one batch (one record, one checksum, one link)
// once the turn's synchronous work is done (a microtask), and each append resolves with its own
// id. A batch is atomic, so after a crash a group is there whole or not at all; none of its
// appends was acknowledged before it was durable.
//
// Order is kept: anything else that writes own events (appendBatch, flush, close) ends the group
// first, so events are in the log in the order the calls were made.

/** Appends in one group, at most: the next one starts a new group. */
export const APPEND_GROUP_EVENTS_MAX = 1024
/** Bytes in one group, at most (smaller when a segment is small: see the Log), counting each event's payload and EVENT_BYTES_EXTRA. */
export const APPEND_GROUP_BYTES_MAX = 1 << 20
/** What an event takes in a record beyond its payload, at most: its header, and an encryption envelope. */
const EVENT_BYTES_EXTRA = 64

export interface GroupRange {
  origin: string
  pos: number
  count: number
}

export class AppendGroup {
  private payloads: Uint8Array[] = []
  private resolvers: ((id: { origin: string, pos: number }) => void)[] = []
  private rejecters: ((error: unknown) => void)[] = []
  private bytes = 0
  private scheduled = false
  private readonly onTurnEnd = (): void => {
    this.scheduled = false
    this.flush()
  }

  /** `write` appends a group's payloads as one batch. */
  constructor(private readonly write: (payloads: Uint8Array[]) => Promise<GroupRange>, private readonly bytesMax: number) {}

  /** Appends waiting for the end of the turn. */
  get pending(): number {
    return this.payloads.length
  }

  add(payload: Uint8Array): Promise<{ origin: string, pos: number }> {
    if (!this.scheduled) {
      // The first append of a turn goes straight in (a lone append waits for nothing); the ones
      // that follow it in the same turn make the group.
      this.scheduled = true
      queueMicrotask(this.onTurnEnd)
      return this.writeNow([payload]).then(firstId)
    }
    const bytes = payload.length + EVENT_BYTES_EXTRA
    if (this.payloads.length >= APPEND_GROUP_EVENTS_MAX || (this.bytes > 0 && this.bytes + bytes > this.bytesMax)) this.flush()
    this.payloads.push(payload)
    this.bytes += bytes
    return new Promise((resolve, reject) => {
      this.resolvers.push(resolve)
      this.rejecters.push(reject)
    })
  }

  /** `write`, with a synchronous throw as a rejection (every append of the group settles). */
  private writeNow(payloads: Uint8Array[]): Promise<GroupRange> {
    try {
      return this.write(payloads)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Appends the group now (before a write that must come after it). */
  flush(): void {
    if (this.payloads.length === 0) return
    const payloads = this.payloads
    const resolvers = this.resolvers
    const rejecters = this.rejecters
    this.payloads = []
    this.resolvers = []
    this.rejecters = []
    this.bytes = 0
    this.writeNow(payloads).then((range) => {
      for (let i = 0; i < resolvers.length; i++) resolvers[i]!({ origin: range.origin, pos: range.pos + i })
    }, (error: unknown) => {
      for (const reject of rejecters) reject(error)
    })
  }
}

function firstId(range: GroupRange): { origin: string, pos: number } {
  return { origin: range.origin, pos: range.pos }
}
