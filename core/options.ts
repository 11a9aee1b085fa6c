// openLog options: defaults, bounds and the derived sizes every other module relies on.
// Unknown keys and wrong types are refused with INVALID_ARGUMENT naming the key, so a typo in a
// config never silently falls back to a default.

import type { ValidatorOptions } from '../validators/index.js'
import { checkEncryptionOption, type EncryptionOptions } from './crypt.js'
import { checkTrustOption, type TrustOption } from './trust.js'
import { nodeStorage, type Storage } from './storage.js'
import { LogError } from './errors.js'
import {
  ENVELOPE_OVERHEAD_BYTES, EVENT_HEADER_BYTES, MAX_EVENT_BYTES_LIMIT, SEAL_BYTES_MAX, PAGE_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, alignUp, recordBytesPadded,
} from './format.js'

export type Durability = 'fsync' | 'interval' | 'none'
export type DirectIoMode = 'auto' | 'on' | 'off'

export interface LogWarning {
  /**
   * NO_SPACE: the disk is full, writes stall (logged once per stall); SPACE_AVAILABLE: they go on
   * again. DAMAGED: a range of old data is fenced off (core/damage.ts); HEALED: a repair wrote it
   * back. ORIGIN_MOVED: this log appends under a new origin id from now on (core/log.ts says why).
   */
  code: 'TRUNCATED_TAIL' | 'CHECKPOINT_IGNORED' | 'CHECKPOINT_FAILED' | 'REMOVED_TORN_SEGMENT' | 'NO_SPACE' | 'SPACE_AVAILABLE' |
    'DAMAGED' | 'HEALED' | 'ORIGIN_MOVED'
  message: string
  segment?: string
  offset?: number
  bytes?: number
}

/** How record bodies are stored (OpenOptions.storedCompression). */
export type StoredCompression = 'none' | 'deflate-raw'

export interface OpenOptions {
  /** 'fsync' (default): an append resolves once on disk; concurrent appends share one fdatasync.
   *  'interval': flushed at most intervalMs later. 'none': flushed when the cache fills and on close. */
  durability: Durability
  /** Flush period with durability 'interval'. Default 200. */
  intervalMs: number
  /** Head page cache, allocated at open; also the write buffer. Default 8 MiB. */
  cacheBytes: number
  /** Size of each preallocated segment file. Default 64 MiB. */
  segmentBytes: number
  /** Largest payload accepted. Default 1 MiB. */
  maxEventBytes: number
  /** O_DIRECT writes: 'auto' (default: where the file system accepts them), 'on' (fail open
   *  otherwise), 'off' (buffered writes and fdatasync). */
  directIo: DirectIoMode
  /** A checkpoint (index and version vector) is written after this many new durable bytes; open
   *  scans at most about this much. Default 32 MiB. */
  checkpointIntervalBytes: number
  /** Remote events held back by a gap in merge, at most (then dropped for sync to resend). Default 100000. */
  mergeWaitingEventsMax: number
  /** Payload bytes held back by gaps in merge, at most. Default 16 MiB. */
  mergeWaitingBytesMax: number
  /** Receives recovery and checkpoint warnings. Default: process.emitWarning. */
  onWarning: (warning: LogWarning) => void
  /** The clock (milliseconds since the epoch) for event times, segment and replica headers,
   *  consumer and quarantine stamps. Default Date.now; the simulator injects its own. */
  now: () => number
  /** Validators loaded at open: `append` gate appends, `sync` gate merged remote events. Default none. */
  validators: ValidatorOptions
  /** A new log gets an Ed25519 identity (file `identity`, mode 0600), derives its replica id from
   *  the public key and signs every batch it appends. Default true. A log created without one
   *  stays unsigned. */
  identity: boolean
  /** Whom merge accepts events from: 'off' (anyone, signed or not), 'open' (anyone whose batches
   *  are validly signed), or a list of public keys (hex). Default: the `trusted-keys` file in the
   *  log directory when there is one, else the default mode: over sync, only validly signed
   *  events, from any replica (local merges may hand in unsigned ones). See docs/security.md. */
  trust: TrustOption | undefined
  /** Payload encryption with shared log keys (ChaCha20-Poly1305); null (default) for none. */
  encryption: EncryptionOptions | null
  /** Stored compression: 'deflate-raw' stores record bodies of 4 KiB and more deflated (level 1)
   *  when that saves an eighth (segment version 4, docs/format.md); 'none' (default) stores them
   *  plain. A log with encryption stores plain (ciphertext does not compress). Logs read either
   *  way whatever this says. */
  storedCompression: StoredCompression
  /** Where the files live: the real file system (default), or another implementation of
   *  core/storage.ts (the simulator's in-memory disk). */
  storage: Storage
  /** Opens without changing anything on disk (default false): no file is created, written,
   *  truncated or synced. Recovery decides as usual but repairs nothing: a torn tail it would cut
   *  is reported in `truncations` and reads stop before it; damage is fenced in memory only.
   *  Appends, merges, flush and consumer changes reject with INVALID_ARGUMENT. The directory lock
   *  is taken as for a writable open. For `interlog read|status|verify` without a daemon. */
  readOnly: boolean
}

export const DEFAULT_OPTIONS: Readonly<OpenOptions> = {
  durability: 'fsync',
  intervalMs: 200,
  cacheBytes: 8 << 20,
  segmentBytes: 64 << 20,
  maxEventBytes: 1 << 20,
  directIo: 'auto',
  checkpointIntervalBytes: 32 << 20,
  mergeWaitingEventsMax: 100_000,
  mergeWaitingBytesMax: 16 << 20,
  onWarning: (warning) => process.emitWarning(warning.message, { code: `INTERLOG_${warning.code}` }),
  now: () => Date.now(),
  validators: {},
  identity: true,
  trust: undefined,
  encryption: null,
  storedCompression: 'none',
  storage: nodeStorage,
  readOnly: false,
}

/** Sizes derived from the options, checked once at open. */
export interface Layout {
  /** Largest record: one event of maxEventBytes, or the split size of big batches. */
  recordBytesMax: number
  /** Big batches are split into records of about this many bytes. */
  recordSplitBytes: number
  /** Bytes of a segment available to records. */
  segmentDataBytes: number
}

type Checker = (value: unknown) => boolean

const STORAGE_METHODS = Object.keys(nodeStorage).filter((name) => typeof nodeStorage[name as keyof Storage] === 'function')
const isInteger = (min: number, max: number): Checker =>
  (value) => typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max

const CHECKS: Record<keyof OpenOptions, [Checker, string]> = {
  durability: [(v) => v === 'fsync' || v === 'interval' || v === 'none', `'fsync', 'interval' or 'none'`],
  intervalMs: [isInteger(1, 3_600_000), 'an integer from 1 to 3600000'],
  cacheBytes: [isInteger(64 << 10, 2 ** 31), 'an integer from 65536 to 2^31'],
  segmentBytes: [(v) => isInteger(64 << 10, 2 ** 40)(v) && (v as number) % PAGE_BYTES === 0,
    `a multiple of ${PAGE_BYTES} from 65536 to 2^40`],
  maxEventBytes: [isInteger(0, MAX_EVENT_BYTES_LIMIT), `an integer from 0 to ${MAX_EVENT_BYTES_LIMIT}`],
  directIo: [(v) => v === 'auto' || v === 'on' || v === 'off', `'auto', 'on' or 'off'`],
  checkpointIntervalBytes: [isInteger(PAGE_BYTES, 2 ** 40), 'an integer from 4096 to 2^40'],
  mergeWaitingEventsMax: [isInteger(0, 10_000_000), 'an integer from 0 to 10000000'],
  mergeWaitingBytesMax: [isInteger(0, 2 ** 31), 'an integer from 0 to 2^31'],
  onWarning: [(v) => typeof v === 'function', 'a function'],
  now: [(v) => typeof v === 'function', 'a function returning milliseconds'],
  validators: [(v) => typeof v === 'object' && v !== null && !Array.isArray(v) &&
    Object.keys(v).every((key) => key === 'append' || key === 'sync') &&
    Object.values(v).every((list) => list === undefined || Array.isArray(list)), '{ append?: [...], sync?: [...] }'],
  identity: [(v) => typeof v === 'boolean', 'true or false'],
  storedCompression: [(v) => v === 'none' || v === 'deflate-raw', `'none' or 'deflate-raw'`],
  trust: [checkTrustOption, `'off', 'open' or a list of public keys (64 lowercase hex characters each)`],
  encryption: [checkEncryptionOption, '{ keys: [{ id, key: 32-byte Uint8Array }, ...], current?: id } or null'],
  storage: [(v) => typeof v === 'object' && v !== null && STORAGE_METHODS.every((name) => typeof (v as Record<string, unknown>)[name] === 'function'),
    'an object with the methods of core/storage.ts Storage'],
  readOnly: [(v) => typeof v === 'boolean', 'true or false'],
}

export function resolveOptions(given: unknown): OpenOptions {
  if (given !== undefined && (typeof given !== 'object' || given === null || Array.isArray(given))) {
    throw new LogError('INVALID_ARGUMENT', 'openLog options must be an object')
  }
  const options: Record<string, unknown> = { ...DEFAULT_OPTIONS }
  for (const [key, value] of Object.entries(given ?? {})) {
    const check = CHECKS[key as keyof OpenOptions]
    if (check === undefined) {
      throw new LogError('INVALID_ARGUMENT', `unknown openLog option '${key}'`, { option: key })
    }
    if (value === undefined) continue
    if (!check[0](value)) {
      throw new LogError('INVALID_ARGUMENT', `openLog option '${key}' must be ${check[1]}, got ${String(value)}`, { option: key })
    }
    options[key] = value
  }
  return options as unknown as OpenOptions
}

export function deriveLayout(options: OpenOptions): Layout {
  // One event of maxEventBytes, encrypted, with the seal of its batch.
  const singleEventRecord = recordBytesPadded(RECORD_HEADER_BYTES + EVENT_HEADER_BYTES + options.maxEventBytes + ENVELOPE_OVERHEAD_BYTES + SEAL_BYTES_MAX)
  const segmentDataBytes = options.segmentBytes - SEGMENT_HEADER_BYTES
  const recordSplitBytes = Math.max(
    RECORD_HEADER_BYTES + EVENT_HEADER_BYTES,
    Math.min(256 << 10, alignUp(segmentDataBytes / 4, 8), alignUp(options.cacheBytes / 4, 8)),
  )
  const recordBytesMax = Math.max(singleEventRecord, recordSplitBytes)
  // The cache must hold a record being composed plus the page in flight before it.
  if (alignUp(recordBytesMax, PAGE_BYTES) * 2 + 2 * PAGE_BYTES > options.cacheBytes) {
    throw new LogError('INVALID_ARGUMENT',
      `cacheBytes (${options.cacheBytes}) must be at least ${alignUp(recordBytesMax, PAGE_BYTES) * 2 + 2 * PAGE_BYTES} ` +
      `to hold two records of maxEventBytes (${options.maxEventBytes}); raise cacheBytes or lower maxEventBytes`,
      { option: 'cacheBytes' })
  }
  if (recordBytesMax > segmentDataBytes) {
    throw new LogError('INVALID_ARGUMENT',
      `segmentBytes (${options.segmentBytes}) must hold one event of maxEventBytes (${options.maxEventBytes}) ` +
      `plus headers: at least ${alignUp(recordBytesMax + SEGMENT_HEADER_BYTES, PAGE_BYTES)}`, { option: 'segmentBytes' })
  }
  return { recordBytesMax, recordSplitBytes, segmentDataBytes }
}
