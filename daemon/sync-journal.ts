// What the journal hears of one log's sync. A gateway is offline for hours by design: sync retries
// the broker every second, and a line per failed try would bury everything else. Errors are said
// when they change; while they repeat, a summary comes every `summaryMs`; losing and finding the
// broker are said once each.

import type { Logger } from './server.js'

/** Default period of the summary while sync keeps failing the same way. */
export const SYNC_SUMMARY_MS = 5 * 60_000

export class SyncJournal {
  private lastError: string | null = null
  /** Errors since the last line said one (the repeats of lastError). */
  private repeats = 0
  /** Failed tries since the broker was last reached. */
  private failures = 0
  private offlineSince: number
  private summarizedAt: number
  private connected: boolean | null = null

  constructor(private readonly logger: Logger, private readonly name: string, private readonly url: string,
    private readonly summaryMs = SYNC_SUMMARY_MS, private readonly now: () => number = Date.now) {
    this.offlineSince = now()
    this.summarizedAt = this.offlineSince
  }

  /** The logger sync is given: errors pass when they differ from the last one said; repeats are counted. */
  readonly log: Logger = (level, message) => {
    if (level !== 'error') {
      this.logger(level, message)
      return
    }
    this.failures++
    if (message === this.lastError) {
      this.repeats++
      return
    }
    this.lastError = message
    this.repeats = 0
    this.summarizedAt = this.now()
    this.logger(level, `${message}${this.connected === false ? ' (said again only when it changes; a summary every ' + describeMs(this.summaryMs) + ')' : ''}`)
  }

  /** Called about every second with whether sync is connected: says when it connects, disconnects, and the periodic summary. */
  watch(connected: boolean): void {
    const now = this.now()
    if (connected && this.connected !== true) {
      const offline = this.connected === false && this.failures > 0 ? ` after ${describeMs(now - this.offlineSince)} offline (${this.failures} failed tries)` : ''
      this.logger('info', `sync ${this.name}: connected to ${this.url}${offline}`)
      this.reset(now)
    } else if (!connected && this.connected === true) {
      this.logger('warning', `sync ${this.name}: lost the broker at ${this.url}; retrying every second`)
      this.reset(now)
    } else if (!connected && this.repeats > 0 && now - this.summarizedAt >= this.summaryMs) {
      this.logger('warning', `sync ${this.name}: still not connected to ${this.url} after ${describeMs(now - this.offlineSince)}: ` +
        `${this.failures} failed tries so far, the last: ${this.lastError ?? ''}`)
      this.repeats = 0
      this.summarizedAt = now
    }
    this.connected = connected
  }

  private reset(now: number): void {
    this.lastError = null
    this.repeats = 0
    this.failures = 0
    this.offlineSince = now
    this.summarizedAt = now
  }
}

function describeMs(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`
  return `${(ms / 3_600_000).toFixed(1)} h`
}
