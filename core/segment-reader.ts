// Synchronous chunked reads of one segment file for recovery and verify: a window of the file kept
// in one buffer, refilled on demand. Bytes past the end of a short (truncated) file read as zeros,
// which is what a preallocated segment holds there.

import type { Checksum } from './checksum.js'
import { LogError } from './errors.js'
import { RECORD_BYTES_LIMIT, RECORD_HEADER_BYTES, RECORD_OFFSET_LENGTH } from './format.js'
import { decodeRecord, type DecodeResult, type RecordHeader } from './records.js'
import type { Segment } from './segments.js'
import type { Storage } from './storage.js'

export const RECOVERY_CHUNK_BYTES = 1 << 20

export class SegmentReader {
  bytes: Buffer = Buffer.alloc(RECOVERY_CHUNK_BYTES)
  view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength)
  /** File offset of bytes[0]. */
  chunkStart = 0
  /** Valid bytes in the buffer (zeros past the file end included). */
  chunkLength = 0
  readonly fileBytes: number

  constructor(readonly storage: Storage, readonly fd: number, readonly segment: Segment) {
    this.fileBytes = storage.fileSizeSync(fd)
  }

  /** Makes file bytes [offset, offset + length) (clipped to the segment size) available; returns the buffer index of offset. */
  ensure(offset: number, length: number): number {
    const end = Math.min(offset + length, this.segment.size)
    if (offset >= this.chunkStart && end <= this.chunkStart + this.chunkLength) return offset - this.chunkStart
    const want = Math.min(Math.max(length, RECOVERY_CHUNK_BYTES), this.segment.size - offset)
    if (want > this.bytes.length) {
      this.bytes = Buffer.alloc(want)
      this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength)
    }
    let got = 0
    try {
      got = offset < this.fileBytes ? this.storage.readSync(this.fd, this.bytes, 0, Math.min(want, this.fileBytes - offset), offset) : 0
    } catch (error) {
      throw new LogError('IO', `cannot read segment ${this.segment.name} at ${offset}: ${(error as Error).message}`,
        { segment: this.segment.name, offset, cause: error })
    }
    this.bytes.fill(0, got, want)
    this.chunkStart = offset
    this.chunkLength = want
    return 0
  }

  /** File offset just past the buffer's valid bytes. */
  get chunkEnd(): number {
    return this.chunkStart + this.chunkLength
  }
}

/** Decodes the record at file offset `fileOffset` of the reader's segment, reading as much as it claims. */
export function decodeRecordAt(reader: SegmentReader, fileOffset: number, checksum: Checksum, header: RecordHeader, inflate = true): DecodeResult {
  if (fileOffset + RECORD_HEADER_BYTES > reader.segment.size) return 'zero'
  let at = reader.ensure(fileOffset, RECORD_HEADER_BYTES)
  let result = decodeRecord(reader.bytes, reader.view, at, reader.chunkLength, checksum, header, inflate)
  if (result === 'short') {
    const length = reader.view.getUint32(at + RECORD_OFFSET_LENGTH, true)
    if (length > RECORD_BYTES_LIMIT || fileOffset + length > reader.segment.size) return 'record runs past the end of its segment'
    at = reader.ensure(fileOffset, length)
    result = decodeRecord(reader.bytes, reader.view, at, reader.chunkLength, checksum, header, inflate)
    if (result === 'short') return 'record runs past the end of its segment'
  }
  return result
}
