// Storage: every file operation core makes goes through this interface, so that a log can run on
// something other than the real file system. `nodeStorage` (the default) is node:fs and fs-ext;
// the simulator (sim/storage.ts) injects an in-memory disk that models what a crash does to
// writes not yet synced, and can crash in the middle of any operation.
//
// The interface is node:fs's synchronous shape, narrowed to what core uses: descriptors are
// numbers, errors are thrown (or passed to callbacks) as errors with a `code` (ENOENT, EIO, ...).
// Three operations are asynchronous, the ones on the hot path: the flusher's write and
// fdatasync, and the reader's read. openLog resolves the log's path against the process's working
// directory before any of it reaches the storage, so an injected storage sees absolute paths.

import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(import.meta.url)
const fsExt = require('fs-ext') as {
  flockSync(fd: number, flags: 'exnb' | 'un'): void
  seekSync(fd: number, offset: number, whence: number): number
}

/**
 * How a file is opened: 'read' (must exist), 'write' (read and write, must exist), 'create' (read
 * and write, created if missing), 'createNew' (read and write, fails with EEXIST if it exists),
 * 'truncate' (write only, created or emptied).
 */
export type OpenMode = 'read' | 'write' | 'create' | 'createNew' | 'truncate'

export interface OpenFlags {
  /** O_DIRECT (only where `directIo` is true). */
  direct?: boolean
  /** Permissions of a file created (default 0o644). */
  permissions?: number
}

/** SEEK_DATA and SEEK_HOLE, as lseek(2) numbers them on Linux. */
export const SEEK_DATA = 3
export const SEEK_HOLE = 4

export type IoCallback<T> = (error: NodeJS.ErrnoException | null, result: T) => void

export interface Storage {
  /** Whether files may be opened with O_DIRECT (a probe still checks the file system accepts it). */
  readonly directIo: boolean
  openSync(path: string, mode: OpenMode, flags?: OpenFlags): number
  closeSync(fd: number): void
  /** Bytes read (fewer at the end of the file). */
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number
  /** Bytes written: possibly fewer than asked without an error (see core/write-all.ts). */
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number
  read(fd: number, buffer: Uint8Array, offset: number, length: number, position: number, done: IoCallback<number>): void
  write(fd: number, buffer: Uint8Array, offset: number, length: number, position: number, done: IoCallback<number>): void
  fdatasync(fd: number, done: (error: NodeJS.ErrnoException | null) => void): void
  fdatasyncSync(fd: number): void
  fsyncSync(fd: number): void
  /** Makes the directory's entries (files created, renamed, removed in it) durable. */
  fsyncDirectorySync(path: string): void
  ftruncateSync(fd: number, length: number): void
  fileSizeSync(fd: number): number
  /** The size of the file at `path`. */
  sizeSync(path: string): number
  readFileSync(path: string): Buffer
  /** Names in the directory (ENOENT when it does not exist). */
  readdirSync(path: string): string[]
  /** Creates the directory and its missing parents. */
  mkdirSync(path: string): void
  /** Removes a file; with `force`, a missing one is no error. */
  rmSync(path: string, force: boolean): void
  renameSync(from: string, to: string): void
  existsSync(path: string): boolean
  /** lseek with SEEK_DATA or SEEK_HOLE (ENXIO past the last data; any other error: unsupported). */
  seekSync(fd: number, offset: number, whence: typeof SEEK_DATA | typeof SEEK_HOLE): number
  /** flock: 'exnb' takes an exclusive lock or fails at once (EAGAIN), 'un' releases it. */
  flockSync(fd: number, operation: 'exnb' | 'un'): void
}

/**
 * mkdir -p, then fsyncs the parent of each directory it created, top down: a directory entry is
 * durable only once its parent is synced, and a power cut could otherwise take the new directory
 * back with every synced file in it.
 */
export function createDirectoryDurably(storage: Storage, directory: string): void {
  const missing: string[] = []
  for (let at = directory; !storage.existsSync(at); at = path.dirname(at)) {
    missing.push(at)
    if (path.dirname(at) === at) break
  }
  storage.mkdirSync(directory)
  for (const created of missing.reverse()) storage.fsyncDirectorySync(path.dirname(created))
}

/**
 * Makes durable the entries of the log directory and of its `consumers/` folder, whatever a
 * process that died before its directory fsync left pending there. Called at every writable open,
 * before anything new is written.
 */
export function syncNamesLeftPending(storage: Storage, directory: string): void {
  storage.fsyncDirectorySync(directory)
  const consumers = path.join(directory, 'consumers')
  if (storage.existsSync(consumers)) storage.fsyncDirectorySync(consumers)
}

/**
 * Closes a descriptor whose data is synced, or that was only read: close(2) may still report an
 * error (EIO of a deferred write, on some file systems), but nothing is lost then, and the caller
 * is past the point where it could act on it. The simulator's dead disk fails every close too.
 */
export function closeSynced(storage: Storage, fd: number): void {
  try {
    storage.closeSync(fd)
  } catch {
    // Synced or read-only: see above.
  }
}

/** O_DIRECT from fs.constants (16384 on x86-64, 65536 on ARM), or 0 where the platform lacks it. */
export function directFlag(): number {
  return (fs.constants as Record<string, number>)['O_DIRECT'] ?? 0
}

function nodeFlags(mode: OpenMode, flags: OpenFlags | undefined): number {
  const c = fs.constants
  const base = mode === 'read' ? c.O_RDONLY
    : mode === 'write' ? c.O_RDWR
      : mode === 'create' ? c.O_RDWR | c.O_CREAT
        : mode === 'createNew' ? c.O_RDWR | c.O_CREAT | c.O_EXCL
          : c.O_WRONLY | c.O_CREAT | c.O_TRUNC
  return base | (flags?.direct === true ? directFlag() : 0)
}

/** The real file system: node:fs, and fs-ext for flock and SEEK_DATA / SEEK_HOLE. */
export const nodeStorage: Storage = {
  directIo: directFlag() !== 0,
  openSync: (path, mode, flags) => fs.openSync(path, nodeFlags(mode, flags), flags?.permissions ?? 0o644),
  closeSync: (fd) => fs.closeSync(fd),
  readSync: (fd, buffer, offset, length, position) => fs.readSync(fd, buffer, offset, length, position),
  writeSync: (fd, buffer, offset, length, position) => fs.writeSync(fd, buffer, offset, length, position),
  read: (fd, buffer, offset, length, position, done) => fs.read(fd, buffer, offset, length, position, done),
  write: (fd, buffer, offset, length, position, done) => fs.write(fd, buffer, offset, length, position, done),
  fdatasync: (fd, done) => fs.fdatasync(fd, done),
  fdatasyncSync: (fd) => fs.fdatasyncSync(fd),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  fsyncDirectorySync: (path) => {
    const fd = fs.openSync(path, 'r')
    try {
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  },
  ftruncateSync: (fd, length) => fs.ftruncateSync(fd, length),
  fileSizeSync: (fd) => fs.fstatSync(fd).size,
  sizeSync: (path) => fs.statSync(path).size,
  readFileSync: (path) => fs.readFileSync(path),
  readdirSync: (path) => fs.readdirSync(path),
  mkdirSync: (path) => { fs.mkdirSync(path, { recursive: true }) },
  rmSync: (path, force) => fs.rmSync(path, { force }),
  renameSync: (from, to) => fs.renameSync(from, to),
  existsSync: (path) => fs.existsSync(path),
  seekSync: (fd, offset, whence) => fsExt.seekSync(fd, offset, whence),
  flockSync: (fd, operation) => fsExt.flockSync(fd, operation),
}
