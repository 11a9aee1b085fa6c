// The simulator's disk: an in-memory file system behind core's Storage interface (core/storage.ts).
// One MemoryDisk per simulated machine; one session (a Storage) per process lifetime, that is per
// open of a log. It models what a power cut does to what was not yet synced, and can crash in the
// middle of any operation, so the simulator can check recovery at any point of a run. Every random
// choice comes from the run's Prng, nothing reads the clock or the real file system: the same PRNG
// state gives the same bytes.
//
// The model:
// - Files live in a namespace (absolute POSIX path -> file) and are stored per 4 KiB page: a file
//   preallocated with ftruncate holds no bytes until its pages are written, reads of holes give
//   zeros, and SEEK_DATA / SEEK_HOLE see the written pages (page granularity). Bytes past a file's
//   size are always zero.
// - Each file has its current pages and size (the page cache: what reads see) and its durable pages
//   and size (what survives a power cut), and remembers which bytes of which pages were written (or
//   zeroed by a truncation) since its last fsync / fdatasync. A sync makes the current pages and
//   size durable (fdatasync is fsync here: both carry the size).
// - Namespace operations (a file created by open, rename, rm) are pending until an fsync of their
//   directory: fsyncDirectorySync(dir) makes durable the pending operations in dir (a rename counts
//   in both its directories) and, before each, the earlier pending operations of the same file (a
//   rename into dir carries its file's creation elsewhere). A directory created by mkdirSync is
//   durable once its parent is fsynced; until then a power cut keeps or loses it (and everything
//   under it) on its own. Directories are never removed or renamed (core does neither).
// - A crash at a chosen operation (armCrash): the n-th operation from now, of any session, is the
//   last one: a write there puts a PRNG-chosen prefix of its bytes in the page cache, and it fails
//   with EIO, as does every later operation of every session (close and unlock do nothing), until
//   the power cut.
// - The power cut (crash): every session dies and every lock is released; a random prefix of the
//   pending namespace operations survives; in each surviving file, each page written since its last
//   sync is kept, lost (its durable bytes), torn (the new bytes up to a random byte of what was
//   written, then the durable bytes) or torn with garbage (random bytes instead, up to the end of
//   what was written), independently; a cut never falls before the first byte that changed (a
//   rewrite with the same values keeps them, as docs/format.md's rule 6 assumes of sectors), and
//   the file's size is its current or its durable size when they differ. After it the disk is
//   alive again, with the new state durable; new sessions work on it. A crash with keepAll is the
//   process dying while the machine runs on: sessions die and locks go, and the page cache stays
//   as it was, as unsynced as before.
//
// What it leaves out: permissions and ownership, timestamps, hard and symbolic links, directory
// removal and renaming, O_DIRECT alignment rules (`directIo` is false), fd sharing between
// processes, reordering within a page (a torn page is new bytes then old ones, never a mix),
// metadata journalling beyond the namespace (a file's size is all or nothing), and I/O errors other
// than the crash (test/fault covers those on the real file system). Sizes and counts are bounded by
// MEMORY_DISK_BYTES_MAX of pages held (current and durable copies), beyond which writes fail with
// ENOSPC.

import crypto from 'node:crypto'
import path from 'node:path'
import { SEEK_DATA, SEEK_HOLE, type IoCallback, type OpenFlags, type OpenMode, type Storage } from '../core/index.js'
import type { Prng } from './prng.js'

/** The unit of storage, of SEEK_DATA / SEEK_HOLE and of a crash's fates. */
export const MEMORY_DISK_PAGE_BYTES = 4096
/** Bytes of pages a disk holds at most (current and durable copies together): writes beyond fail with ENOSPC. */
export const MEMORY_DISK_BYTES_MAX = 256 * 1024 * 1024
/** How a crash treats each page written since its file's last sync (weights). */
const PAGE_FATES = { kept: 4, lost: 3, torn: 2, garbage: 1 } as const
/** The first descriptor of a session (0 to 2 are stdio in a real process). */
const FIRST_FD = 3

const PAGE = MEMORY_DISK_PAGE_BYTES
const ZERO_PAGE = new Uint8Array(PAGE)

export type PageFate = keyof typeof PAGE_FATES

export interface CrashReport {
  /** Pages written since their file's last sync, by fate (pages beyond the size chosen are not counted). */
  pages: Record<PageFate, number>
  /** Pending namespace operations kept and lost. */
  namespaceKept: number
  namespaceLost: number
}

export interface MemoryDiskOptions {
  /** Bytes of pages held at most (default MEMORY_DISK_BYTES_MAX), a multiple of 4 KiB. */
  bytesMax?: number
}

const MESSAGES: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  EBADF: 'bad file descriptor',
  EAGAIN: 'resource temporarily unavailable',
  ENXIO: 'no such device or address',
  EIO: 'i/o error',
  ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory',
  EINVAL: 'invalid argument',
  ENOSPC: 'no space left on device',
}

/** The errors of simulated crashes, so that a caller can tell them from any other EIO. */
const simulatedCrashes = new WeakSet<object>()

/** Whether `error` is the EIO of a simulated crash (armCrash fired, or a session killed by crash()). */
export function isSimulatedCrash(error: unknown): boolean {
  return typeof error === 'object' && error !== null && simulatedCrashes.has(error)
}

/** An error shaped like node's: `ENOENT: no such file or directory, open '/r0/x'`. */
function fsError(code: string, syscall: string, target: string | number, detail?: string): NodeJS.ErrnoException {
  const where = typeof target === 'number' ? `fd ${target}` : `'${target}'`
  const error: NodeJS.ErrnoException = new Error(`${code}: ${MESSAGES[code] ?? code}${detail === undefined ? '' : ` (${detail})`}, ${syscall} ${where}`)
  error.code = code
  error.syscall = syscall
  if (typeof target === 'string') error.path = target
  return error
}

function normalize(p: string): string {
  return path.posix.resolve('/', p)
}

/** The bytes of [from, to) touched in a page since the last sync. */
interface Touched {
  lo: number
  hi: number
}

/** The first index of [from, to) where the two pages differ (absent pages are zeros); -1 when they do not. */
function firstDifference(a: Uint8Array | undefined, b: Uint8Array | undefined, from: number, to: number): number {
  for (let i = from; i < to; i++) if ((a?.[i] ?? 0) !== (b?.[i] ?? 0)) return i
  return -1
}

/** Pages held by a disk, against its bound. */
interface Space {
  pages: number
  pagesMax: number
}

/**
 * A file (an inode): current pages (the page cache) and durable pages, which share a page's buffer
 * while it is unchanged since the last sync (copy on write).
 */
class MemoryFile {
  readonly current = new Map<number, Uint8Array>()
  readonly durable = new Map<number, Uint8Array>()
  size = 0
  durableSize = 0
  /** Pages written or zeroed since the last sync (the others are the same in both maps). */
  readonly dirty = new Map<number, Touched>()
  /** Distinct page buffers held. */
  held = 0

  constructor(private readonly space: Space) {}

  private distinct(page: number): number {
    const c = this.current.get(page)
    const d = this.durable.get(page)
    return (c === undefined ? 0 : 1) + (d !== undefined && d !== c ? 1 : 0)
  }

  /** Changes a page's entries through `change`, keeping the count of buffers held. */
  private touch(page: number, change: () => void): void {
    const before = this.distinct(page)
    change()
    const delta = this.distinct(page) - before
    this.held += delta
    this.space.pages += delta
  }

  private setCurrent(page: number, bytes: Uint8Array | undefined): void {
    this.touch(page, () => {
      if (bytes === undefined) this.current.delete(page)
      else this.current.set(page, bytes)
    })
  }

  /** The current page's buffer, allocated or copied from the durable one so that it can be changed. */
  private own(page: number): Uint8Array {
    const c = this.current.get(page)
    if (c !== undefined && c !== this.durable.get(page)) return c
    const bytes = new Uint8Array(PAGE)
    if (c !== undefined) bytes.set(c)
    this.setCurrent(page, bytes)
    return bytes
  }

  private mark(page: number, lo: number, hi: number): void {
    if (lo >= hi) return
    const touched = this.dirty.get(page)
    if (touched === undefined) this.dirty.set(page, { lo, hi })
    else {
      touched.lo = Math.min(touched.lo, lo)
      touched.hi = Math.max(touched.hi, hi)
    }
  }

  /** New buffers a write of [position, position + length) needs. */
  pagesNeeded(position: number, length: number): number {
    let needed = 0
    for (let page = Math.floor(position / PAGE); page * PAGE < position + length; page++) {
      const c = this.current.get(page)
      if (c === undefined || c === this.durable.get(page)) needed++
    }
    return needed
  }

  write(source: Uint8Array, position: number): void {
    let done = 0
    while (done < source.length) {
      const at = position + done
      const page = Math.floor(at / PAGE)
      const from = at - page * PAGE
      const count = Math.min(PAGE - from, source.length - done)
      this.own(page).set(source.subarray(done, done + count), from)
      this.mark(page, from, from + count)
      done += count
    }
    this.size = Math.max(this.size, position + source.length)
  }

  read(target: Uint8Array, position: number): number {
    const length = Math.max(0, Math.min(target.length, this.size - position))
    let done = 0
    while (done < length) {
      const at = position + done
      const page = Math.floor(at / PAGE)
      const from = at - page * PAGE
      const count = Math.min(PAGE - from, length - done)
      const bytes = this.current.get(page)
      if (bytes === undefined) target.fill(0, done, done + count)
      else target.set(bytes.subarray(from, from + count), done)
      done += count
    }
    return length
  }

  /** ftruncate: shrinking zeroes what lies past the new size (writes to those pages, for a crash). */
  truncate(length: number): void {
    if (length < this.size) {
      const first = Math.floor(length / PAGE)
      const extent = Math.max(this.size, this.durableSize)
      const pages = new Set<number>()
      for (const page of this.current.keys()) if (page >= first) pages.add(page)
      for (const page of this.durable.keys()) if (page >= first) pages.add(page)
      for (const page of [...pages].sort((a, b) => a - b)) {
        this.mark(page, Math.max(0, length - page * PAGE), Math.min(PAGE, extent - page * PAGE))
        if (page * PAGE >= length) this.setCurrent(page, undefined)
        else if (this.current.has(page)) this.own(page).fill(0, length - page * PAGE)
      }
    }
    this.size = length
  }

  /** fsync / fdatasync: the current pages and size become durable. */
  sync(): void {
    for (const page of this.dirty.keys()) {
      this.touch(page, () => {
        const c = this.current.get(page)
        if (c === undefined) this.durable.delete(page)
        else this.durable.set(page, c)
      })
    }
    this.dirty.clear()
    this.durableSize = this.size
  }

  /** The first offset >= `offset` in a written page, or null (ENXIO). */
  seekData(offset: number): number | null {
    if (offset >= this.size) return null
    const start = Math.floor(offset / PAGE)
    let best: number | null = null
    for (const page of this.current.keys()) {
      if (page >= start && page * PAGE < this.size && (best === null || page < best)) best = page
    }
    return best === null ? null : Math.max(offset, best * PAGE)
  }

  /** The first offset >= `offset` in a hole (the size counts as one), or null (ENXIO). */
  seekHole(offset: number): number | null {
    if (offset >= this.size) return null
    let page = Math.floor(offset / PAGE)
    if (!this.current.has(page)) return offset
    while (this.current.has(page + 1)) page++
    return Math.min(this.size, (page + 1) * PAGE)
  }

  contents(): Buffer {
    const bytes = Buffer.alloc(this.size)
    this.read(bytes, 0)
    return bytes
  }

  digest(hash: crypto.Hash): void {
    hash.update(`${this.size}\0`)
    for (let page = 0; page * PAGE < this.size; page++) {
      hash.update((this.current.get(page) ?? ZERO_PAGE).subarray(0, Math.min(PAGE, this.size - page * PAGE)))
    }
  }

  /** The power cut: each unsynced page meets its fate, the size is chosen, and the result is durable. */
  crash(prng: Prng, fates: Record<PageFate, number>): void {
    const size = this.size === this.durableSize ? this.size : prng.chance(0.5) ? this.size : this.durableSize
    for (const page of [...this.dirty.keys()].sort((a, b) => a - b)) {
      if (page * PAGE >= size) continue // dropped with the size
      const fate: PageFate = prng.weighted(PAGE_FATES)
      fates[fate]++
      if (fate === 'kept') continue
      const durable = this.durable.get(page)
      if (fate === 'lost') {
        this.setCurrent(page, durable)
        continue
      }
      const { hi } = this.dirty.get(page)!
      const fresh = this.current.get(page)
      // A torn page is cut where its new bytes start to differ, or later: a rewrite of bytes with
      // the same values (the flusher rewrites the tail page whole, docs/format.md rule 6) leaves
      // each sector old or new, and both hold them.
      const lo = firstDifference(fresh, durable, this.dirty.get(page)!.lo, hi)
      if (lo === -1) continue // rewritten with the same bytes: old or new, the page is the same
      const cut = lo + prng.int(hi - lo)
      const bytes = new Uint8Array(PAGE)
      if (fresh !== undefined) bytes.set(fresh.subarray(0, cut))
      const oldFrom = fate === 'garbage' ? hi : cut
      if (fate === 'garbage') bytes.set(prng.bytes(hi - cut), cut)
      if (durable !== undefined) bytes.set(durable.subarray(oldFrom), oldFrom)
      this.setCurrent(page, bytes)
    }
    // The chosen size: pages past it dropped, the bytes past it in its last page zero.
    for (const page of [...this.current.keys()]) {
      if (page * PAGE >= size) this.setCurrent(page, undefined)
    }
    if (size % PAGE !== 0 && this.current.has(Math.floor(size / PAGE))) this.own(Math.floor(size / PAGE)).fill(0, size % PAGE)
    this.size = size
    // Everything is durable now: the durable pages are the current ones.
    for (const page of [...this.durable.keys()]) {
      if (!this.current.has(page)) this.touch(page, () => this.durable.delete(page))
    }
    for (const [page, bytes] of this.current) this.touch(page, () => this.durable.set(page, bytes))
    this.durableSize = size
    this.dirty.clear()
  }
}

/** A namespace operation waiting for an fsync of its directory. */
type NamespaceOperation =
  | { kind: 'link', path: string, file: MemoryFile }
  | { kind: 'rename', from: string, to: string, file: MemoryFile }
  | { kind: 'unlink', path: string, file: MemoryFile }

function directoriesOf(operation: NamespaceOperation): string[] {
  return operation.kind === 'rename'
    ? [path.posix.dirname(operation.from), path.posix.dirname(operation.to)]
    : [path.posix.dirname(operation.path)]
}

function apply(namespace: Map<string, MemoryFile>, operation: NamespaceOperation): void {
  switch (operation.kind) {
    case 'link':
      namespace.set(operation.path, operation.file)
      break
    case 'rename':
      if (namespace.get(operation.from) === operation.file) namespace.delete(operation.from)
      namespace.set(operation.to, operation.file)
      break
    case 'unlink':
      if (namespace.get(operation.path) === operation.file) namespace.delete(operation.path)
      break
  }
}

interface Descriptor {
  file: MemoryFile
  path: string
  readable: boolean
  writable: boolean
}

/** What a disk and its sessions share. */
class DiskState {
  readonly space: Space
  /** The current namespace (what sessions see). */
  files = new Map<string, MemoryFile>()
  /** The durable namespace (what a crash starts from). */
  durableFiles = new Map<string, MemoryFile>()
  /** Directories that exist (what sessions see). */
  directories = new Set<string>(['/'])
  /** Directories whose entry in their parent is durable (and their parents', up to '/'). */
  durableDirectories = new Set<string>(['/'])
  /** Directories created since their parent's last fsync, in creation order. */
  pendingDirectories: string[] = []
  pending: NamespaceOperation[] = []
  readonly locks = new Map<MemoryFile, { session: Session, fd: number }>()
  /** Sessions of this generation holding descriptors. */
  readonly sessions = new Set<Session>()
  /** Incremented by each crash(): sessions of older generations are dead. */
  generation = 0
  operations = 0
  /** The operation at which the armed crash fires, 0 when none is armed. */
  armedAt = 0
  /** The operation the crash fired at, while the disk is dead. */
  crashedAt: number | null = null

  constructor(readonly prng: Prng, bytesMax: number) {
    this.space = { pages: 0, pagesMax: Math.floor(bytesMax / PAGE) }
  }

  get dead(): boolean {
    return this.crashedAt !== null
  }

  /** Kills the disk at the current operation: the error that operation fails with. */
  die(syscall: string, target: string | number): NodeJS.ErrnoException {
    this.crashedAt = this.operations
    const error = fsError('EIO', syscall, target, `simulated crash at operation ${this.operations}`)
    simulatedCrashes.add(error)
    return error
  }

  deadError(syscall: string, target: string | number): NodeJS.ErrnoException {
    const detail = this.crashedAt === null
      ? 'simulated crash: this process died at a power cut'
      : `simulated crash at operation ${this.crashedAt}: the disk is dead`
    const error = fsError('EIO', syscall, target, detail)
    simulatedCrashes.add(error)
    return error
  }

  /** Recounts the pages held, over the files still reachable (named, durably named, pending, open). */
  recount(): void {
    const reachable = new Set<MemoryFile>([...this.files.values(), ...this.durableFiles.values()])
    for (const operation of this.pending) reachable.add(operation.file)
    for (const session of this.sessions) for (const file of session.openFiles()) reachable.add(file)
    let pages = 0
    for (const file of reachable) pages += file.held
    this.space.pages = pages
  }

  /** The parent directory of `p`, checked: ENOENT when missing, ENOTDIR when a file. */
  checkParent(p: string, syscall: string): void {
    const parent = path.posix.dirname(p)
    if (this.files.has(parent)) throw fsError('ENOTDIR', syscall, p)
    if (!this.directories.has(parent)) throw fsError('ENOENT', syscall, p)
  }

  syncDirectory(directory: string): void {
    for (const created of this.pendingDirectories) if (path.posix.dirname(created) === directory) this.durableDirectories.add(created)
    this.pendingDirectories = this.pendingDirectories.filter((created) => !this.durableDirectories.has(created))
    const done = new Set<number>()
    for (let i = 0; i < this.pending.length; i++) {
      const operation = this.pending[i]!
      if (!directoriesOf(operation).includes(directory)) continue
      // The earlier operations of the same file first (its creation, an earlier rename).
      for (let j = 0; j <= i; j++) {
        if (!done.has(j) && this.pending[j]!.file === operation.file) {
          apply(this.durableFiles, this.pending[j]!)
          done.add(j)
        }
      }
    }
    this.pending = this.pending.filter((_, i) => !done.has(i))
    this.recount()
  }
}

/** A process's Storage on a disk, and whether that process is dead (the disk crashed since it began, or is dead now). */
export type MemorySession = Storage & { readonly crashed: boolean }

/** One process's view of a disk; dead after a crash of the disk. */
class Session implements MemorySession {
  readonly directIo = false
  private readonly descriptors = new Map<number, Descriptor>()
  private nextFd = FIRST_FD

  constructor(private readonly disk: DiskState, private readonly generation: number) {}

  /** Whether this session's process is dead (the disk crashed since it began, or is dead now). */
  get crashed(): boolean {
    return this.disk.dead || this.generation !== this.disk.generation
  }

  /** The files this session holds open. */
  openFiles(): MemoryFile[] {
    return [...this.descriptors.values()].map((descriptor) => descriptor.file)
  }

  /** Counts an operation: throws if the session is dead; true when the armed crash fires at it. */
  private enter(syscall: string, target: string | number): boolean {
    if (this.crashed) throw this.disk.deadError(syscall, target)
    this.disk.operations++
    if (this.disk.armedAt !== 0 && this.disk.operations >= this.disk.armedAt) {
      this.disk.armedAt = 0
      return true
    }
    return false
  }

  /** An operation that is not a write: fails if the crash fires at it. */
  private begin(syscall: string, target: string | number): void {
    if (this.enter(syscall, target)) throw this.disk.die(syscall, target)
  }

  private descriptor(fd: number, syscall: string): Descriptor {
    const descriptor = this.descriptors.get(fd)
    if (descriptor === undefined) throw fsError('EBADF', syscall, fd)
    return descriptor
  }

  private checkRange(buffer: Uint8Array, offset: number, length: number, position: number, syscall: string, fd: number): void {
    const ok = Number.isSafeInteger(offset) && Number.isSafeInteger(length) && Number.isSafeInteger(position)
      && offset >= 0 && length >= 0 && position >= 0 && offset + length <= buffer.length
    if (!ok) throw fsError('EINVAL', syscall, fd, `offset ${offset}, length ${length}, position ${position}, buffer of ${buffer.length}`)
  }

  openSync = (filePath: string, mode: OpenMode, _flags?: OpenFlags): number => {
    this.begin('open', filePath)
    const disk = this.disk
    const p = normalize(filePath)
    if (disk.directories.has(p)) throw fsError('EISDIR', 'open', filePath)
    disk.checkParent(p, 'open')
    let file = disk.files.get(p)
    if (file === undefined) {
      if (mode === 'read' || mode === 'write') throw fsError('ENOENT', 'open', filePath)
      file = new MemoryFile(disk.space)
      disk.files.set(p, file)
      disk.pending.push({ kind: 'link', path: p, file })
    } else if (mode === 'createNew') {
      throw fsError('EEXIST', 'open', filePath)
    } else if (mode === 'truncate') {
      file.truncate(0)
    }
    const fd = this.nextFd++
    this.descriptors.set(fd, { file, path: p, readable: mode !== 'truncate', writable: mode !== 'read' })
    disk.sessions.add(this)
    return fd
  }

  closeSync = (fd: number): void => {
    if (this.crashed) return
    this.begin('close', fd)
    const descriptor = this.descriptor(fd, 'close')
    this.unlock(descriptor.file, fd)
    this.descriptors.delete(fd)
    if (this.descriptors.size === 0) this.disk.sessions.delete(this)
    if (this.disk.files.get(descriptor.path) !== descriptor.file) this.disk.recount()
  }

  readSync = (fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number => {
    this.begin('read', fd)
    const descriptor = this.descriptor(fd, 'read')
    if (!descriptor.readable) throw fsError('EBADF', 'read', fd, 'not open for reading')
    this.checkRange(buffer, offset, length, position, 'read', fd)
    return descriptor.file.read(buffer.subarray(offset, offset + length), position)
  }

  writeSync = (fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number => {
    const disk = this.disk
    if (this.enter('write', fd)) {
      // The crash fires here: a prefix of the bytes (possibly none, possibly all) reaches the page cache.
      try {
        this.writeNow(fd, buffer, offset, length, position, true)
      } catch {
        // a write that would have failed anyway writes nothing
      }
      throw disk.die('write', fd)
    }
    return this.writeNow(fd, buffer, offset, length, position, false)
  }

  private writeNow(fd: number, buffer: Uint8Array, offset: number, length: number, position: number, crashing: boolean): number {
    const descriptor = this.descriptor(fd, 'write')
    if (!descriptor.writable) throw fsError('EBADF', 'write', fd, 'not open for writing')
    this.checkRange(buffer, offset, length, position, 'write', fd)
    const disk = this.disk
    const count = crashing ? disk.prng.int(length + 1) : length
    const file = descriptor.file
    if (disk.space.pages + file.pagesNeeded(position, count) > disk.space.pagesMax) {
      throw fsError('ENOSPC', 'write', fd, `the memory disk holds ${disk.space.pagesMax * PAGE} bytes at most`)
    }
    file.write(buffer.subarray(offset, offset + count), position)
    return count
  }

  read = (fd: number, buffer: Uint8Array, offset: number, length: number, position: number, done: IoCallback<number>): void => {
    later(() => this.readSync(fd, buffer, offset, length, position), 0, done)
  }

  write = (fd: number, buffer: Uint8Array, offset: number, length: number, position: number, done: IoCallback<number>): void => {
    later(() => this.writeSync(fd, buffer, offset, length, position), 0, done)
  }

  fdatasync = (fd: number, done: (error: NodeJS.ErrnoException | null) => void): void => {
    later(() => this.fdatasyncSync(fd), undefined, (error) => done(error))
  }

  fdatasyncSync = (fd: number): void => {
    this.begin('fdatasync', fd)
    this.descriptor(fd, 'fdatasync').file.sync()
  }

  fsyncSync = (fd: number): void => {
    this.begin('fsync', fd)
    this.descriptor(fd, 'fsync').file.sync()
  }

  fsyncDirectorySync = (directory: string): void => {
    this.begin('fsync', directory)
    const p = normalize(directory)
    if (this.disk.files.has(p)) throw fsError('ENOTDIR', 'fsync', directory)
    if (!this.disk.directories.has(p)) throw fsError('ENOENT', 'open', directory)
    this.disk.syncDirectory(p)
  }

  ftruncateSync = (fd: number, length: number): void => {
    this.begin('ftruncate', fd)
    const descriptor = this.descriptor(fd, 'ftruncate')
    if (!descriptor.writable || !Number.isSafeInteger(length) || length < 0) throw fsError('EINVAL', 'ftruncate', fd)
    descriptor.file.truncate(length)
  }

  fileSizeSync = (fd: number): number => {
    this.begin('fstat', fd)
    return this.descriptor(fd, 'fstat').file.size
  }

  sizeSync = (filePath: string): number => this.fileAt(filePath, 'stat').size

  readFileSync = (filePath: string): Buffer => this.fileAt(filePath, 'open').contents()

  private fileAt(filePath: string, syscall: string): MemoryFile {
    this.begin(syscall, filePath)
    const p = normalize(filePath)
    if (this.disk.directories.has(p)) throw fsError('EISDIR', syscall, filePath)
    const file = this.disk.files.get(p)
    if (file === undefined) throw fsError('ENOENT', syscall, filePath)
    return file
  }

  readdirSync = (directory: string): string[] => {
    this.begin('scandir', directory)
    const p = normalize(directory)
    if (this.disk.files.has(p)) throw fsError('ENOTDIR', 'scandir', directory)
    if (!this.disk.directories.has(p)) throw fsError('ENOENT', 'scandir', directory)
    const names: string[] = []
    for (const entry of [...this.disk.files.keys(), ...this.disk.directories]) {
      if (entry !== '/' && path.posix.dirname(entry) === p) names.push(path.posix.basename(entry))
    }
    return names.sort()
  }

  mkdirSync = (directory: string): void => {
    this.begin('mkdir', directory)
    const p = normalize(directory)
    if (this.disk.files.has(p)) throw fsError('EEXIST', 'mkdir', directory)
    const missing: string[] = []
    for (let at = p; !this.disk.directories.has(at); at = path.posix.dirname(at)) {
      if (this.disk.files.has(at)) throw fsError('ENOTDIR', 'mkdir', directory)
      missing.push(at)
    }
    for (const at of missing.reverse()) {
      this.disk.directories.add(at)
      this.disk.pendingDirectories.push(at)
    }
  }

  rmSync = (filePath: string, force: boolean): void => {
    this.begin('rm', filePath)
    const p = normalize(filePath)
    if (this.disk.directories.has(p)) throw fsError('EISDIR', 'rm', filePath)
    const file = this.disk.files.get(p)
    if (file === undefined) {
      if (force) return
      throw fsError('ENOENT', 'rm', filePath)
    }
    this.disk.files.delete(p)
    this.disk.pending.push({ kind: 'unlink', path: p, file })
    this.disk.recount()
  }

  renameSync = (from: string, to: string): void => {
    this.begin('rename', from)
    const disk = this.disk
    const a = normalize(from)
    const b = normalize(to)
    if (disk.directories.has(a)) throw fsError('EISDIR', 'rename', from, 'renaming a directory is not simulated')
    const file = disk.files.get(a)
    if (file === undefined) throw fsError('ENOENT', 'rename', from)
    disk.checkParent(b, 'rename')
    if (disk.directories.has(b)) throw fsError('EISDIR', 'rename', to)
    if (a === b) return
    disk.files.delete(a)
    disk.files.set(b, file)
    disk.pending.push({ kind: 'rename', from: a, to: b, file })
    disk.recount()
  }

  existsSync = (filePath: string): boolean => {
    this.begin('access', filePath)
    const p = normalize(filePath)
    return this.disk.files.has(p) || this.disk.directories.has(p)
  }

  seekSync = (fd: number, offset: number, whence: typeof SEEK_DATA | typeof SEEK_HOLE): number => {
    this.begin('lseek', fd)
    const file = this.descriptor(fd, 'lseek').file
    if (!Number.isSafeInteger(offset) || offset < 0 || (whence !== SEEK_DATA && whence !== SEEK_HOLE)) throw fsError('EINVAL', 'lseek', fd)
    const at = whence === SEEK_DATA ? file.seekData(offset) : file.seekHole(offset)
    if (at === null) throw fsError('ENXIO', 'lseek', fd)
    return at
  }

  flockSync = (fd: number, operation: 'exnb' | 'un'): void => {
    if (operation === 'un' && this.crashed) return
    this.begin('flock', fd)
    const file = this.descriptor(fd, 'flock').file
    if (operation === 'un') {
      this.unlock(file, fd)
      return
    }
    const holder = this.disk.locks.get(file)
    if (holder !== undefined && (holder.session !== this || holder.fd !== fd)) throw fsError('EAGAIN', 'flock', fd)
    this.disk.locks.set(file, { session: this, fd })
  }

  private unlock(file: MemoryFile, fd: number): void {
    const holder = this.disk.locks.get(file)
    if (holder !== undefined && holder.session === this && holder.fd === fd) this.disk.locks.delete(file)
  }
}

/** Runs `work` now (so operations happen in call order) and reports its outcome on a later turn. */
function later<T>(work: () => T, failed: T, done: IoCallback<T>): void {
  let result: T
  try {
    result = work()
  } catch (error) {
    setImmediate(() => done(error as NodeJS.ErrnoException, failed))
    return
  }
  setImmediate(() => done(null, result))
}

/** A simulated machine's disk: sessions on it, crashes of it, a digest of its files. */
export class MemoryDisk {
  private readonly state: DiskState

  /** `prng` makes every random choice of the disk (the bytes a crash keeps); it may be the run's. */
  constructor(prng: Prng, options: MemoryDiskOptions = {}) {
    const bytesMax = options.bytesMax ?? MEMORY_DISK_BYTES_MAX
    if (!Number.isSafeInteger(bytesMax) || bytesMax < 0) throw new RangeError(`bytesMax must be a byte count, got ${bytesMax}`)
    this.state = new DiskState(prng, bytesMax)
  }

  /** A process's Storage on this disk; it dies at the next crash. */
  session(): MemorySession {
    return new Session(this.state, this.state.generation)
  }

  /** Whether an armed crash has fired (every operation fails until crash()). */
  get dead(): boolean {
    return this.state.dead
  }

  /** Operations of all sessions so far (those that failed because the disk was dead excepted). */
  get operations(): number {
    return this.state.operations
  }

  /** Bytes of pages held (current and durable copies), against the bound. */
  get bytesHeld(): number {
    return this.state.space.pages * PAGE
  }

  /** Makes the n-th operation from now (n >= 1), of any session, the last: it and all after fail with EIO. */
  armCrash(n: number): void {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`armCrash needs n >= 1, got ${n}`)
    if (this.state.dead) throw new Error('the disk is dead already: crash() it first')
    this.state.armedAt = this.state.operations + n
  }

  /** Cancels an armed crash. */
  disarm(): void {
    this.state.armedAt = 0
  }

  /**
   * The crash (after an armed crash fired, or between operations): every session dies and every
   * lock is released. A power cut (the default): what was not durable meets its fate, and the disk
   * is alive again with that state durable. With keepAll, only the process died: the page cache
   * stays as it was, still not durable (a later power cut may yet lose it).
   */
  crash(options: { keepAll?: boolean } = {}): CrashReport {
    const state = this.state
    state.generation++
    state.crashedAt = null
    state.armedAt = 0
    state.locks.clear()
    state.sessions.clear()
    const pending = state.pending
    if (options.keepAll === true) {
      let dirty = 0
      for (const file of new Set(state.files.values())) dirty += file.dirty.size
      state.recount()
      return { pages: { kept: dirty, lost: 0, torn: 0, garbage: 0 }, namespaceKept: pending.length + state.pendingDirectories.length, namespaceLost: 0 }
    }
    const kept = state.prng.int(pending.length + 1)
    for (const operation of pending.slice(0, kept)) apply(state.durableFiles, operation)
    state.pending = []
    // Each directory created since its parent's last fsync is kept or lost on its own; one whose
    // parent is lost is lost with it, and so is every file under a lost directory.
    let directoriesKept = 0
    for (const created of state.pendingDirectories) {
      if (state.prng.chance(0.5) && state.durableDirectories.has(path.posix.dirname(created))) {
        state.durableDirectories.add(created)
        directoriesKept++
      }
    }
    const directoriesLost = state.pendingDirectories.length - directoriesKept
    state.pendingDirectories = []
    // A directory made durable in a parent that itself was not is gone too (shortest paths first).
    const reachable = new Set<string>(['/'])
    for (const directory of [...state.durableDirectories].sort((x, y) => x.length - y.length || (x < y ? -1 : 1))) {
      if (directory !== '/' && reachable.has(path.posix.dirname(directory))) reachable.add(directory)
    }
    state.durableDirectories = reachable
    state.directories = new Set(reachable)
    const report: CrashReport = {
      pages: { kept: 0, lost: 0, torn: 0, garbage: 0 },
      namespaceKept: kept + directoriesKept, namespaceLost: pending.length - kept + directoriesLost,
    }
    const files = new Map<string, MemoryFile>()
    const done = new Set<MemoryFile>()
    for (const p of [...state.durableFiles.keys()].sort()) {
      if (!state.directories.has(path.posix.dirname(p))) continue // its directory did not survive
      const file = state.durableFiles.get(p)!
      if (!done.has(file)) file.crash(state.prng, report.pages)
      done.add(file)
      files.set(p, file)
    }
    state.files = files
    state.durableFiles = new Map(files)
    state.recount()
    return report
  }

  /** SHA-256 over every file (what reads see), sorted by path: path, size, bytes up to the size. */
  digest(): string {
    const hash = crypto.createHash('sha256')
    for (const p of [...this.state.files.keys()].sort()) {
      hash.update(`${p}\0`)
      this.state.files.get(p)!.digest(hash)
    }
    return hash.digest('hex')
  }
}
