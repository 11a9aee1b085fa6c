// Aligned memory for O_DIRECT writes. Node has no aligned allocation, and O_DIRECT refuses (EINVAL)
// a write whose memory address, file offset or length is not a multiple of the logical block size.
// WebAssembly memories are page-aligned mappings, so an arena carved from one is aligned at offset
// 0 on every platform tried; the probe below still checks it with real O_DIRECT writes (in steps
// of 8 bytes, the worst case of a plain Buffer) before the arena is trusted.
//
// Faults expected: a file system that refuses O_DIRECT opens (tmpfs on some kernels) or writes
// (EINVAL): the caller then falls back to buffered writes and fdatasync.

import path from 'node:path'
import { DIRECT_IO_ALIGN_BYTES, PAGE_BYTES } from './format.js'
import { closeSynced, type Storage } from './storage.js'

const WASM_PAGE_BYTES = 65536

// The TypeScript libs used here (ES2022, no DOM) do not declare WebAssembly; this is the part used.
interface WasmMemoryConstructor { new(descriptor: { initial: number, maximum: number, shared: boolean }): { buffer: SharedArrayBuffer } }
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryConstructor } }).WebAssembly.Memory

export interface Arena {
  /** Aligned view of `bytes` bytes. */
  readonly memory: Buffer
  /** Whether O_DIRECT writes from `memory` were accepted by the file system of the probe. */
  readonly direct: boolean
}

// Shared, so that a worker thread can hash records in place (core/seal-pipeline.ts).
function allocateRaw(bytes: number): Buffer {
  const pages = Math.ceil(bytes / WASM_PAGE_BYTES)
  const memory = new WasmMemory({ initial: pages, maximum: pages, shared: true })
  return Buffer.from(memory.buffer, 0, pages * WASM_PAGE_BYTES)
}

/**
 * Allocates `bytes` (a multiple of PAGE_BYTES) of memory aligned for O_DIRECT writes, probing in
 * `directory`. With `wantDirect` false no probe runs and the arena is used for buffered writes.
 */
export function allocateArena(storage: Storage, bytes: number, directory: string, wantDirect: boolean): Arena {
  const raw = allocateRaw(bytes + PAGE_BYTES)
  if (!wantDirect || !storage.directIo) return { memory: raw.subarray(0, bytes), direct: false }
  const probePath = path.join(directory, `.direct-probe-${process.pid}`)
  let fd: number
  try {
    fd = storage.openSync(probePath, 'create', { direct: true, permissions: 0o600 })
  } catch {
    return { memory: raw.subarray(0, bytes), direct: false }
  }
  try {
    for (let shift = 0; shift < DIRECT_IO_ALIGN_BYTES; shift += 8) {
      try {
        storage.writeSync(fd, raw, shift, DIRECT_IO_ALIGN_BYTES, 0)
        return { memory: raw.subarray(shift, shift + bytes), direct: true }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL') break
      }
    }
    return { memory: raw.subarray(0, bytes), direct: false }
  } finally {
    closeSynced(storage, fd)
    storage.rmSync(probePath, true)
  }
}
