// Segment files: naming, header encode/decode, creation (preallocated size, header fsynced, then
// the directory fsynced, before anything in the segment is acknowledged) and a bounded pool of
// read descriptors.
//
// Faults expected: a crash during creation leaves a file whose header is zero, torn or short;
// recovery removes such a file only when it is the last segment (nothing in it was acknowledged).
// Node has no fallocate: the size is reserved with ftruncate, and the file system allocates blocks
// on first write (zero-filling ahead would double flash wear on SD cards).

import path from 'node:path'
import { assert } from './assert.js'
import type { Checksum } from './checksum.js'
import { LogError } from './errors.js'
import {
  FORMAT_VERSION, REPLICA_ID_BYTES, SEGMENT_VERSION_BATCH_ENVELOPES, SEGMENT_VERSIONS_READ, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_USED_BYTES, SEGMENT_MAGIC,
  SEGMENT_OFFSET_CHECKSUM, SEGMENT_OFFSET_CREATED_MS, SEGMENT_OFFSET_FIRST_LOCAL_POS, SEGMENT_OFFSET_FLAGS,
  SEGMENT_OFFSET_HEADER_BYTES, SEGMENT_OFFSET_INDEX, SEGMENT_OFFSET_MAGIC, SEGMENT_OFFSET_REPLICA,
  SEGMENT_OFFSET_SIZE, SEGMENT_OFFSET_START, SEGMENT_OFFSET_VERSION, parseSegmentFileName, readU64,
  segmentFileName, writeU64,
} from './format.js'
import { closeSynced, type Storage } from './storage.js'
import { writeAllSync } from './write-all.js'

export interface Segment {
  readonly index: number
  readonly name: string
  readonly path: string
  /** Global log offset of byte 0 of the file. */
  readonly start: number
  readonly size: number
  readonly firstLocalPos: number
  /** Global offset just past the last record (all that is committed in the current segment). */
  dataEnd: number
  /** The header's version (docs/format.md): 1, 2 once a repair wrote a HOLE or fill into it, 3 (what this build creates, and its writable opens mark the last segment). */
  version?: number
  /** A stand-in for segment files that are missing (recovery fences its whole range; nothing reads it). */
  missing?: boolean
}

export interface SegmentHeader {
  /** 1, 2 or 3 (SEGMENT_VERSION_BATCH_ENVELOPES, the default). */
  version?: number
  index: number
  start: number
  size: number
  firstLocalPos: number
  replica: Uint8Array
  createdMs: number
}

/** Maximum read descriptors kept open on older segments. */
export const READ_DESCRIPTORS_MAX = 8

export function encodeSegmentHeader(header: SegmentHeader, checksum: Checksum): Buffer {
  const page = Buffer.alloc(SEGMENT_HEADER_BYTES)
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength)
  page.write(SEGMENT_MAGIC, SEGMENT_OFFSET_MAGIC, 'latin1')
  view.setUint16(SEGMENT_OFFSET_VERSION, header.version ?? SEGMENT_VERSION_BATCH_ENVELOPES, true)
  view.setUint16(SEGMENT_OFFSET_HEADER_BYTES, SEGMENT_HEADER_BYTES, true)
  view.setUint32(SEGMENT_OFFSET_FLAGS, 0, true)
  writeU64(view, SEGMENT_OFFSET_INDEX, header.index)
  writeU64(view, SEGMENT_OFFSET_START, header.start)
  writeU64(view, SEGMENT_OFFSET_SIZE, header.size)
  writeU64(view, SEGMENT_OFFSET_FIRST_LOCAL_POS, header.firstLocalPos)
  page.set(header.replica, SEGMENT_OFFSET_REPLICA)
  writeU64(view, SEGMENT_OFFSET_CREATED_MS, header.createdMs)
  view.setBigUint64(SEGMENT_OFFSET_CHECKSUM, checksum(page.subarray(0, SEGMENT_OFFSET_CHECKSUM)), true)
  return page
}

/** Decodes a header page; returns a reason string when it is not a valid header. */
export function decodeSegmentHeader(page: Uint8Array, checksum: Checksum): SegmentHeader | string {
  if (page.length < SEGMENT_HEADER_USED_BYTES) return 'segment header is short'
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength)
  if (Buffer.from(page.buffer, page.byteOffset, 8).toString('latin1') !== SEGMENT_MAGIC) {
    return 'segment header has no magic'
  }
  if (view.getBigUint64(SEGMENT_OFFSET_CHECKSUM, true) !== checksum(page.subarray(0, SEGMENT_OFFSET_CHECKSUM))) {
    return 'segment header checksum mismatch'
  }
  const version = view.getUint16(SEGMENT_OFFSET_VERSION, true)
  if (!SEGMENT_VERSIONS_READ.includes(version)) return `segment format version ${version} is not supported (this build reads ${SEGMENT_VERSIONS_READ.join(' and ')})`
  if (view.getUint16(SEGMENT_OFFSET_HEADER_BYTES, true) !== SEGMENT_HEADER_BYTES) return 'segment header size is not supported'
  const header = {
    version,
    index: readU64(view, SEGMENT_OFFSET_INDEX),
    start: readU64(view, SEGMENT_OFFSET_START),
    size: readU64(view, SEGMENT_OFFSET_SIZE),
    firstLocalPos: readU64(view, SEGMENT_OFFSET_FIRST_LOCAL_POS),
    replica: page.slice(SEGMENT_OFFSET_REPLICA, SEGMENT_OFFSET_REPLICA + REPLICA_ID_BYTES),
    createdMs: readU64(view, SEGMENT_OFFSET_CREATED_MS),
  }
  if (header.index < 0 || header.start < 0 || header.size <= SEGMENT_HEADER_BYTES || header.firstLocalPos < 0) {
    return 'segment header fields out of range'
  }
  return header
}

export function listSegmentFiles(storage: Storage, directory: string): { index: number, name: string }[] {
  return storage.readdirSync(directory)
    .map((name) => ({ index: parseSegmentFileName(name), name }))
    .filter((entry) => entry.index >= 0)
    .sort((a, b) => a.index - b.index)
}

/** Creates a segment file: header page written and synced, size reserved, directory synced. */
export function createSegmentFile(storage: Storage, directory: string, header: SegmentHeader, checksum: Checksum): Segment {
  const name = segmentFileName(header.index)
  const filePath = path.join(directory, name)
  const fd = storage.openSync(filePath, 'createNew')
  try {
    const page = encodeSegmentHeader(header, checksum)
    writeAllSync(storage, fd, page, 0, page.length, 0)
    storage.ftruncateSync(fd, header.size)
    storage.fsyncSync(fd)
  } catch (error) {
    // A file half made (a full disk, say) holds no record: it goes, so that the next roll can
    // create it again (recovery would remove it too, as a torn last segment).
    closeSynced(storage, fd)
    try {
      storage.rmSync(filePath, true)
      storage.fsyncDirectorySync(directory)
    } catch {
      // The error that matters is the first one.
    }
    throw error
  }
  closeSynced(storage, fd)
  storage.fsyncDirectorySync(directory)
  return {
    index: header.index, name, path: filePath, start: header.start, size: header.size,
    firstLocalPos: header.firstLocalPos, dataEnd: header.start + SEGMENT_HEADER_BYTES, version: header.version ?? SEGMENT_VERSION_BATCH_ENVELOPES,
  }
}

/**
 * Rewrites the header of `segment` to say `version` (its other fields as they are on disk) and
 * syncs it, before bytes that need that version go in: a repair's HOLE or fill (version 2), or
 * batch envelopes (version 3, each version allowing what the ones before it do).
 */
export function raiseSegmentVersion(storage: Storage, segment: Segment, version: number, checksum: Checksum): void {
  if ((segment.version ?? FORMAT_VERSION) >= version) return
  const fd = storage.openSync(segment.path, 'write')
  try {
    const page = Buffer.alloc(SEGMENT_HEADER_BYTES)
    storage.readSync(fd, page, 0, page.length, 0)
    const view = new DataView(page.buffer, page.byteOffset, page.byteLength)
    const u64 = (at: number): number => view.getUint32(at, true) + view.getUint32(at + 4, true) * 0x1_0000_0000
    const header: SegmentHeader = {
      index: u64(16), start: u64(24), size: u64(32), firstLocalPos: u64(40), replica: new Uint8Array(page.subarray(48, 64)), createdMs: u64(64), version,
    }
    const encoded = encodeSegmentHeader(header, checksum)
    writeAllSync(storage, fd, encoded, 0, encoded.length, 0)
    storage.fdatasyncSync(fd)
    segment.version = version
  } finally {
    closeSynced(storage, fd)
  }
}

interface ReadDescriptor {
  fd: number
  /** Reads in flight on it: a descriptor is closed only at zero, so its number is never reused under a read. */
  refs: number
}

/** The ordered segments of a log, and a small pool of read descriptors over them. */
export class SegmentTable {
  readonly segments: Segment[] = []
  private readonly readDescriptors = new Map<number, ReadDescriptor>()
  private closed = false

  constructor(readonly storage: Storage) {}

  get last(): Segment {
    const segment = this.segments[this.segments.length - 1]
    assert(segment !== undefined, 'a log has at least one segment')
    return segment
  }

  add(segment: Segment): void {
    const previous = this.segments[this.segments.length - 1]
    assert(previous === undefined || segment.start === previous.start + previous.size, 'segments are contiguous')
    this.segments.push(segment)
  }

  /** The segment holding global offset `offset`. */
  find(offset: number): Segment {
    let low = 0
    let high = this.segments.length - 1
    while (low < high) {
      const middle = (low + high + 1) >> 1
      if ((this.segments[middle] as Segment).start <= offset) low = middle
      else high = middle - 1
    }
    const segment = this.segments[low]
    assert(segment !== undefined && offset >= segment.start && offset < segment.start + segment.size,
      `offset ${offset} lies in a segment`)
    return segment
  }

  /** Like find, but the end of the last segment (where a reader may stop) maps to the last segment. */
  findForRead(offset: number): Segment {
    const last = this.last
    return offset >= last.start + last.size ? last : this.find(offset)
  }

  /** The segment after `segment`, if any. */
  next(segment: Segment): Segment | undefined {
    return this.segments[this.segments.indexOf(segment) + 1]
  }

  /** A read descriptor for `segment`; give it back with releaseRead once the read completed. */
  acquireRead(segment: Segment): number {
    let entry = this.readDescriptors.get(segment.index)
    if (entry !== undefined) {
      this.readDescriptors.delete(segment.index) // re-insert: most recently used last
    } else {
      try {
        entry = { fd: this.storage.openSync(segment.path, 'read'), refs: 0 }
      } catch (error) {
        throw new LogError('IO', `cannot open segment ${segment.name} for reading: ${(error as Error).message}`,
          { segment: segment.name, path: segment.path, cause: error })
      }
    }
    entry.refs++
    this.readDescriptors.set(segment.index, entry)
    this.trim()
    return entry.fd
  }

  releaseRead(segment: Segment): void {
    const entry = this.readDescriptors.get(segment.index)
    assert(entry !== undefined && entry.refs > 0, 'a read descriptor is released once')
    entry.refs--
    this.trim()
  }

  /** Closes idle descriptors beyond READ_DESCRIPTORS_MAX (all idle ones once closed), oldest first. */
  private trim(): void {
    for (const [index, entry] of this.readDescriptors) {
      if (!this.closed && this.readDescriptors.size <= READ_DESCRIPTORS_MAX) return
      if (entry.refs > 0) continue
      this.readDescriptors.delete(index)
      closeSynced(this.storage, entry.fd)
    }
  }

  /** Closes the pool; descriptors with reads in flight close when those reads complete. */
  closeAll(): void {
    this.closed = true
    this.trim()
  }
}
