// Synchronous writes that either write every byte or throw. a synchronous write may return a short count
// without an error (libuv reports the bytes written before a failure such as ENOSPC); a file
// written short and then synced and renamed would look whole. Found by test/fault/io-faults.test.ts.

import type { Storage } from './storage.js'

/** Writes bytes [offset, offset + length) of `buffer` at file `position`, all of them, or throws. */
export function writeAllSync(storage: Storage, fd: number, buffer: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0
  while (done < length) {
    const written = storage.writeSync(fd, buffer, offset + done, length - done, position + done)
    if (written <= 0) {
      throw Object.assign(new Error(`short write: ${done} of ${length} bytes at ${position}`), { code: 'EIO' })
    }
    done += written
  }
}

/** Short counts in a row that move no aligned block forward before writeAll gives up (the next write usually says why). */
const WRITE_STALLS_MAX = 3

/**
 * The asynchronous twin of writeAllSync, for the flusher: a short count is followed by another
 * write of the rest, so that a disk filling up reports its real error (ENOSPC) instead of a bare
 * "short write". The rest restarts at the last `alignBytes` boundary written (O_DIRECT needs
 * aligned offsets), rewriting the same bytes where a short count ended mid-block.
 */
export function writeAll(storage: Storage, fd: number, buffer: Uint8Array, offset: number, length: number, position: number,
  alignBytes: number, done: (error: NodeJS.ErrnoException | null) => void): void {
  let written = 0
  let stalls = 0
  const next = (): void => {
    storage.write(fd, buffer, offset + written, length - written, position + written, (error, count) => {
      if (error !== null) return done(error)
      const reached = written + count
      if (reached >= length) return done(null)
      const advanced = reached - (reached % alignBytes)
      if (advanced > written) stalls = 0
      else if (++stalls >= WRITE_STALLS_MAX) return done(Object.assign(new Error(`short write: ${reached} of ${length} bytes at ${position}`), { code: 'EIO' }))
      written = Math.max(written, advanced)
      next()
    })
  }
  next()
}
