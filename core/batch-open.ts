// Reading an encrypted log in plaintext. Events come as stored, record by record; a batch whose
// link or seal carries a batch envelope (segment version 3) is one AEAD over its payloads, so its
// events are held until the record with its link arrives, then opened together. A read that starts
// inside such a batch reads the batch's earlier events back first (at most one batch). Events of
// batches without an envelope open one by one (a per-event envelope, or stored before encryption
// was turned on: returned as stored).

import type { PayloadCipher } from './crypt.js'
import { LogError } from './errors.js'
import { ENVELOPE_TAG, RECORD_FLAG_CONTINUES } from './format.js'
import { eventsOfRecord, type LogEvent, type RecordCursor } from './reader.js'
import { parseSeal } from './seal.js'

export class BatchOpener {
  /** Events of the batch still open: one origin, consecutive local positions, no link yet. */
  private pending: LogEvent[] = []

  /** Whether events wait for the rest of their batch. */
  get holding(): boolean {
    return this.pending.length > 0
  }

  constructor(
    private readonly cipher: PayloadCipher,
    /** Events stored at local positions [from, to), as stored (read back for a batch a read starts inside). */
    private readonly readStored: (from: number, to: number) => Promise<LogEvent[]>,
  ) {}

  /**
   * Takes the events of one record (all of them, in order; `continues`: more records of its batch
   * follow) and appends to `out` those now in plaintext, in order.
   */
  async take(events: readonly LogEvent[], continues: boolean, out: LogEvent[]): Promise<void> {
    if (events.length === 0) return
    const first = events[0]!
    const pending = this.pending
    if (pending.length > 0) {
      const tail = pending[pending.length - 1]!
      if (tail.origin !== first.origin || tail.localPos + 1 !== first.localPos) this.release(out)
    }
    const last = events[events.length - 1]!
    const fields = last.seal === undefined ? null : parseSeal(last.seal)
    if (fields !== null && typeof fields !== 'string' && fields.envelope !== null) {
      let group = pending.length === 0 ? events.slice() : pending.concat(events)
      this.pending = []
      // Events before the batch's first (not in it): one by one.
      let skip = 0
      while (skip < group.length && group[skip]!.pos < fields.first) out.push(this.openOne(group[skip++]!))
      if (skip > 0) group = group.slice(skip)
      if (group.length === 0 || group[0]!.pos > fields.first) {
        const head = group[0] ?? last
        const from = head.localPos - (head.pos - fields.first)
        const earlier = await this.readStored(from, head.localPos)
        if (earlier.length !== head.localPos - from || earlier.some((event, i) => event.origin !== last.origin || event.pos !== fields.first + i)) {
          throw new LogError('CORRUPT', `the batch of ${last.origin} from position ${fields.first} is not stored whole before local position ${head.localPos}`,
            { origin: last.origin, pos: fields.first })
        }
        group = earlier.concat(group)
      }
      if (group.length !== fields.count) {
        throw new LogError('CORRUPT', `the batch of ${last.origin} from position ${fields.first} holds ${group.length} events, its link says ${fields.count}`,
          { origin: last.origin, pos: fields.first })
      }
      const plain = this.cipher.decryptBatch(last.origin, fields.envelope, group.map((event) => event.payload))
      if (typeof plain === 'string') {
        throw new LogError('CORRUPT', `events ${last.origin}:${fields.first} to ${fields.first + fields.count - 1} (local positions ${group[0]!.localPos} on) cannot be decrypted: ${plain}`,
          { localPos: group[0]!.localPos, origin: last.origin, pos: fields.first })
      }
      let at = 0
      for (const event of group) {
        const length = event.payload.length
        event.payload = plain.subarray(at, at + length)
        at += length
        out.push(event)
      }
      return
    }
    for (const event of events) pending.push(event)
    // The batch ended without a batch envelope: one by one.
    if (!continues || last.seal !== undefined) this.release(out)
  }

  /**
   * Takes the stored record at `cursor` (its events up to local position `to`) and returns those
   * now in plaintext, in order, from any local position (the caller keeps what it wants). The
   * array is reused by the next call.
   */
  async takeRecord(cursor: RecordCursor, to = Infinity): Promise<LogEvent[]> {
    this.stored.length = 0
    eventsOfRecord(cursor, 0, to, this.stored)
    this.opened.length = 0
    await this.take(this.stored, (cursor.header.flags & RECORD_FLAG_CONTINUES) !== 0, this.opened)
    return this.opened
  }

  private readonly stored: LogEvent[] = []
  private readonly opened: LogEvent[] = []

  /** The events held (their batch ended without a batch envelope, or the read ends): one by one. */
  release(out: LogEvent[]): void {
    for (const event of this.pending) out.push(this.openOne(event))
    this.pending = []
  }

  /** One event with a per-event envelope opened; any other payload as stored. */
  private openOne(event: LogEvent): LogEvent {
    if (event.payload.length === 0 || event.payload[0] !== ENVELOPE_TAG) return event
    const plain = this.cipher.decrypt(event.origin, event.payload)
    if (typeof plain === 'string') {
      throw new LogError('CORRUPT', `event ${event.origin}:${event.pos} (local position ${event.localPos}) cannot be decrypted: ${plain}`,
        { localPos: event.localPos, origin: event.origin, pos: event.pos })
    }
    event.payload = plain
    return event
  }
}
