// A full disk, from the log's side (the flusher stalls: core/flusher.ts). Says so once per stall,
// tries the writes again every NO_SPACE_RETRY_MS (and at most that often when an append or a merge
// asks), wakes what waits for space when a write gets through, and says that too.
//
// Bounds: one timer while stalled (not unref'd: batches wait to be written, and a process that
// exits meanwhile would lose them); waiters are the one batch composed in steps that holds the
// write gate (others are refused with NO_SPACE before they queue).

import type { LogError } from './errors.js'
import type { LogWarning } from './options.js'

/** How often a log stalled on a full disk tries to write again (an append or a merge also tries, at most this often). */
export const NO_SPACE_RETRY_MS = 1000

export interface NoSpaceHost {
  readonly directory: string
  warn(warning: LogWarning): void
  /** Starts a write round (with a sync) on the next turn. */
  retry(): void
  /** Whether the log is closed or closing: no more retries, and waiters go. */
  ending(): boolean
  /** The stall of the flusher now, or null. */
  stall(): LogError | null
  /** A write got through after a stall (a checkpoint that failed for lack of space may be tried again). */
  resumed(): void
}

export class NoSpaceWatch {
  private timer: NodeJS.Timeout | null = null
  private lastRetryMs = 0
  private waiters: (() => void)[] = []

  constructor(private readonly host: NoSpaceHost) {}

  /** The flusher stalled (once per stall). */
  stalled(error: LogError): void {
    this.host.warn({ code: 'NO_SPACE', message: `interlog: ${error.message}` })
    this.lastRetryMs = Date.now()
    this.timer ??= setInterval(() => this.retry(true), NO_SPACE_RETRY_MS)
  }

  /** A round got through after a stall. */
  cleared(): void {
    this.stop()
    this.host.resumed()
    this.host.warn({ code: 'SPACE_AVAILABLE', message: `interlog: log ${this.host.directory} writes again: the disk has space` })
    this.wake()
  }

  /** Tries the writes again (from the timer; from an append or a merge, at most every NO_SPACE_RETRY_MS). */
  retry(fromTimer = false): void {
    const now = Date.now()
    if (!fromTimer && now - this.lastRetryMs < NO_SPACE_RETRY_MS) return
    this.lastRetryMs = now
    if (!this.host.ending()) this.host.retry()
  }

  /** Resolves once the stall ends, or at once when there is none or the log is ending. */
  untilSpace(): Promise<void> {
    if (this.host.stall() === null || this.host.ending()) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** Wakes everything waiting for space (a stall ended, or the log closes). */
  wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }

  /** Stops retrying (the stall ended, or the log closed). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
