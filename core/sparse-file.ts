// Segment files are sparse: ftruncate reserves their size and only written pages hold blocks.
// SEEK_DATA / SEEK_HOLE (through fs-ext) find the written regions, so recovery can check that
// nothing lies past the end of the log without reading megabytes of holes. Where a file system
// does not support them, the whole range counts as data (slower, same answer).

import { PAGE_BYTES, alignUp } from './format.js'
import { SEEK_DATA, SEEK_HOLE, type Storage } from './storage.js'
import { writeAllSync } from './write-all.js'
/** Data regions looked at, at most, before the rest counts as one region. */
const DATA_REGIONS_MAX = 4096

/** Regions of [from, to) that may hold non-zero bytes. */
export function dataRegions(storage: Storage, fd: number, from: number, to: number): [number, number][] {
  const regions: [number, number][] = []
  let offset = from
  while (offset < to) {
    let start: number
    let end: number
    try {
      start = storage.seekSync(fd, offset, SEEK_DATA)
      if (start >= to) break
      end = Math.min(to, storage.seekSync(fd, start, SEEK_HOLE))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENXIO') break // no data after offset
      return [...regions, [offset, to]] // SEEK_DATA unsupported: read it all
    }
    if (regions.length >= DATA_REGIONS_MAX) return [...regions, [start, to]]
    regions.push([start, end])
    offset = end
  }
  return regions
}

/**
 * Makes [from, fileEnd) read as zeros: zeros written up to the next page boundary, the rest
 * released by truncating to it and extending back to `size`.
 */
export function zeroTail(storage: Storage, fd: number, from: number, size: number): void {
  const pageEnd = Math.min(alignUp(from, PAGE_BYTES), size)
  if (pageEnd > from) writeAllSync(storage, fd, Buffer.alloc(pageEnd - from), 0, pageEnd - from, from)
  storage.ftruncateSync(fd, pageEnd)
  storage.ftruncateSync(fd, size)
}
