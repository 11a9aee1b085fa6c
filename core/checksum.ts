// Record checksums: xxh64 (seed 0) from xxhash-wasm, loaded once per process.
// xxh64 runs at about 7 GB/s here on batch-sized inputs (xxh32 about 4 GB/s), so it is used for
// every checksum of the format. The WebAssembly module copies its input into its own memory; the
// caller passes a view of the bytes covered, and gets a bigint (one small allocation per record,
// not per event).

import xxhash from 'xxhash-wasm'

/** An xxh64 fed in parts: the same value as the checksum of the parts joined. */
export interface ChecksumStream {
  update(bytes: Uint8Array): ChecksumStream
  digest(): bigint
}

/** The checksum of `bytes`; `stream()` starts one fed in parts (one small allocation each). */
export type Checksum = ((bytes: Uint8Array) => bigint) & { stream(): ChecksumStream }

let loading: Promise<Checksum> | undefined

export function loadChecksum(): Promise<Checksum> {
  if (loading === undefined) {
    loading = xxhash().then((api) => {
      const seed = 0n
      return Object.assign((bytes: Uint8Array) => api.h64Raw(bytes, seed), { stream: () => api.create64(seed) })
    })
  }
  return loading
}
