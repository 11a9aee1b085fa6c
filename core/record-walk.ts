// A synchronous walk over records in log order, around fenced ranges, for the survey of damage a
// read found (core/survey.ts) and for repairs (core/heal.ts): small reads through one
// SegmentReader per segment, closed when the walk ends. Only written data is walked (the log
// flushes first); a record that does not read back ends the walk (ok: false).

import type { Checksum } from './checksum.js'
import type { Fences } from './damage.js'
import { EVENT_HEADER_BYTES, EVENT_OFFSET_LENGTH, EVENT_OFFSET_TIME, RECORD_FLAG_CONTINUES, RECORD_KIND_EVENTS, SEGMENT_HEADER_BYTES, readU64 } from './format.js'
import type { LocalIndex, OriginState } from './indexes.js'
import type { RemoteEvent } from './merge-buffer.js'
import { RecordHeader, bodyOf, recordOriginHex } from './records.js'
import { extensionSeal } from './seal.js'
import { SegmentReader, decodeRecordAt } from './segment-reader.js'
import type { Segment, SegmentTable } from './segments.js'
import { closeSynced, type Storage } from './storage.js'

/** The stored log as the passes that walk, fence and heal it read it. */
export interface StoredLog {
  readonly table: SegmentTable
  readonly storage: Storage
  readonly checksum: Checksum
  readonly fences: Fences
  readonly origins: Map<string, OriginState>
  readonly local: LocalIndex
  /** The largest record the log writes (a bound of the windows scanned). */
  readonly recordBytesMax: number
}

/** One record met by a walk: where, its kind, origin and positions. */
export interface Step {
  offset: number
  end: number
  kind: number
  origin: string
  localPos: number
  originPos: number
  count: number
  durable: number
  continues: boolean
  /** The link or seal it ends with, if any (a copy). */
  seal: Uint8Array | null
}

export class RecordWalk {
  readonly header = new RecordHeader()
  private readonly readers = new Map<Segment, { fd: number, reader: SegmentReader }>()

  constructor(
    private readonly table: SegmentTable,
    private readonly storage: Storage,
    private readonly checksum: Checksum,
    private readonly fences: Fences,
    /** Global offset past which nothing is walked (the written, committed end). */
    private readonly limit: number,
  ) {}

  /** Records from global offset `from` (a record boundary) until `until` (their start), skipping fences. */
  *records(from: number, until: number): Generator<Step, { ok: boolean, at: number }> {
    let offset = from
    while (offset < until && offset < this.limit) {
      const fence = this.fences.containing(offset)
      if (fence !== undefined) {
        offset = fence.end
        continue
      }
      const step = this.at(offset)
      if (step === 'end') {
        const segment = this.table.findForRead(offset)
        const next = this.table.next(segment)
        if (next === undefined) break
        offset = Math.max(offset, next.start + SEGMENT_HEADER_BYTES)
        continue
      }
      if (step === null) return { ok: false, at: offset }
      yield step
      offset = step.end
    }
    return { ok: true, at: offset }
  }

  /** The record at global offset `offset`: a step, null when it does not read back, 'end' past its segment's data. */
  at(offset: number): Step | null | 'end' {
    const segment = this.table.findForRead(offset)
    if (segment.missing === true || offset >= segment.dataEnd) return 'end'
    const reader = this.readerOf(segment)
    if (decodeRecordAt(reader, offset - segment.start, this.checksum, this.header) !== 'ok') return null
    const header = this.header
    const events = header.kind === RECORD_KIND_EVENTS
    const seal = events && header.extensionBytes > 0 ? extensionSeal(reader.bytes, header.extensionAt, header.extensionBytes) : null
    return {
      offset, end: offset + header.padded, kind: header.kind, origin: events ? recordOriginHex(reader.bytes, header) : '',
      localPos: header.localPos, originPos: header.originPos, count: header.count, durable: header.durable,
      // Copies (new Uint8Array, not Buffer#slice, which shares memory): the reader's buffer is reused.
      continues: events && (header.flags & RECORD_FLAG_CONTINUES) !== 0, seal: seal === null ? null : new Uint8Array(seal),
    }
  }

  /** The events of the record at `offset` (copies), the last with the record's link or seal. */
  eventsAt(offset: number): RemoteEvent[] | null {
    const step = this.at(offset)
    if (step === null || step === 'end' || step.kind !== RECORD_KIND_EVENTS) return null
    const reader = this.readerOf(this.table.findForRead(offset))
    const header = this.header
    const { bytes, view } = bodyOf(reader.bytes, reader.view, header)
    const events: RemoteEvent[] = []
    let at = header.bodyStart
    for (let i = 0; i < header.count; i++) {
      const length = view.getUint32(at + EVENT_OFFSET_LENGTH, true)
      const event: RemoteEvent = {
        origin: step.origin, pos: header.originPos + i, time: readU64(view, at + EVENT_OFFSET_TIME),
        payload: new Uint8Array(bytes.subarray(at + EVENT_HEADER_BYTES, at + EVENT_HEADER_BYTES + length)),
      }
      if (i === header.count - 1 && step.seal !== null) event.seal = step.seal
      events.push(event)
      at += EVENT_HEADER_BYTES + length
    }
    return events
  }

  readerOf(segment: Segment): SegmentReader {
    let entry = this.readers.get(segment)
    if (entry === undefined) {
      const fd = this.storage.openSync(segment.path, 'read')
      entry = { fd, reader: new SegmentReader(this.storage, fd, segment) }
      this.readers.set(segment, entry)
    }
    return entry.reader
  }

  close(): void {
    for (const { fd } of this.readers.values()) closeSynced(this.storage, fd)
    this.readers.clear()
  }
}
