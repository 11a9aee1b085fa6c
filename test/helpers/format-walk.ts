// Walks the records of a segment file by the format document alone (docs/format.md), so tests
// can say where each batch ends without going through the code under test.

export interface BatchExtent {
  /** File offset just past the batch's last record (without padding). */
  end: number
  /** Events in the log once this batch is complete. */
  eventsAfter: number
}

const SEGMENT_HEADER_BYTES = 4096
const RECORD_FLAG_CONTINUES = 1

export function batchExtents(segment: Uint8Array): BatchExtent[] {
  const view = new DataView(segment.buffer, segment.byteOffset, segment.byteLength)
  const batches: BatchExtent[] = []
  let offset = SEGMENT_HEADER_BYTES
  let events = 0
  while (offset + 64 <= segment.length) {
    const length = view.getUint32(offset + 8, true)
    if (length === 0) break
    events += view.getUint32(offset + 16, true)
    if ((view.getUint8(offset + 13) & RECORD_FLAG_CONTINUES) === 0) batches.push({ end: offset + length, eventsAfter: events })
    offset += Math.ceil(length / 8) * 8
  }
  return batches
}

/** One record of a segment file, as docs/format.md lays it out. */
export interface RecordExtent {
  offset: number
  length: number
  kind: number
  flags: number
  extensionBytes: number
  count: number
  /** The reserved field: the inflated body's bytes for a deflated record (flag 0x02), else 0. */
  reserved: number
}

/** Every record of a segment file, in order. */
export function recordExtents(segment: Uint8Array): RecordExtent[] {
  const view = new DataView(segment.buffer, segment.byteOffset, segment.byteLength)
  const records: RecordExtent[] = []
  let offset = SEGMENT_HEADER_BYTES
  while (offset + 64 <= segment.length) {
    const length = view.getUint32(offset + 8, true)
    if (length === 0) break
    records.push({
      offset, length, kind: view.getUint8(offset + 12), flags: view.getUint8(offset + 13), extensionBytes: view.getUint16(offset + 14, true),
      count: view.getUint32(offset + 16, true), reserved: view.getUint32(offset + 20, true),
    })
    offset += Math.ceil(length / 8) * 8
  }
  return records
}
