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
