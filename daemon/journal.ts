// What reaches the journal, and how much of it. Two things on top of the priorities
// (daemon/serve.ts journalLogger):
// - Rate limiting per kind of message: a kind is the message with its numbers and ids taken out
//   ("log main: peer # offline"); each kind passes JOURNAL_KIND_LINES_MAX lines a minute, and the
//   lines it drops are counted and said once the minute is over.
// - One structured summary line a minute while anything is wrong with a log: sync not connected,
//   a full disk, damage, quarantined origins, little disk left. Nothing while all is well.

import { diskFree } from './disk-use.js'
import type { Logger, ServedLog } from './server.js'

/** Lines of one kind the journal takes a minute; the rest are counted. */
export const JOURNAL_KIND_LINES_MAX = 10
/** Kinds tracked at once, at most (a flood of distinct messages is itself one kind beyond it). */
const JOURNAL_KINDS_MAX = 256
const MINUTE_MS = 60_000
/** Below this share of its file system free, a log counts as short of disk in the summary. */
const DISK_LOW_FRACTION = 0.05

/** The kind of a message: its text with numbers, ids and quoted parts replaced by '#'. */
export function messageKind(message: string): string {
  return message.replace(/'[^']*'|"[^"]*"/g, '#').replace(/[0-9a-f]{8,}|\d+(\.\d+)?/gi, '#').slice(0, 200)
}

export class RateLimitedJournal {
  private readonly kinds = new Map<string, { lines: number, dropped: number, level: 'info' | 'warning' | 'error' }>()
  private windowStart: number

  constructor(private readonly write: Logger, private readonly now: () => number = Date.now) {
    this.windowStart = now()
  }

  readonly log: Logger = (level, message) => {
    this.roll()
    let kind = messageKind(message)
    if (!this.kinds.has(kind) && this.kinds.size >= JOURNAL_KINDS_MAX) kind = '(other messages)'
    const entry = this.kinds.get(kind) ?? { lines: 0, dropped: 0, level }
    this.kinds.set(kind, entry)
    if (entry.lines < JOURNAL_KIND_LINES_MAX) {
      entry.lines++
      this.write(level, message)
      return
    }
    entry.dropped++
    if (level === 'error') entry.level = 'error'
    else if (level === 'warning' && entry.level === 'info') entry.level = 'warning'
  }

  /** Ends the minute once it is over: says how many lines of each kind were dropped in it. */
  roll(): void {
    const now = this.now()
    if (now - this.windowStart < MINUTE_MS) return
    for (const [kind, entry] of this.kinds) {
      if (entry.dropped > 0) this.write(entry.level, `${entry.dropped} more lines like "${kind}" in the last minute (at most ${JOURNAL_KIND_LINES_MAX} a minute of a kind)`)
    }
    this.kinds.clear()
    this.windowStart = now
  }
}

/**
 * The summary of what is wrong with the served logs, one `key=value` line (logfmt), or null when
 * all is well: `summary log=main sync=not-connected damaged=2 no_space=true quarantined=1 disk_free_percent=3`.
 */
export function troubleSummary(logs: Iterable<ServedLog>): string | null {
  const parts: string[] = []
  for (const served of logs) {
    const { log } = served
    const trouble: string[] = []
    const sync = served.sync?.status()
    if (sync !== undefined && !sync.connected) trouble.push('sync=not-connected')
    if (log.noSpace) trouble.push('no_space=true')
    const damaged = log.damage().length
    if (damaged > 0) trouble.push(`damaged=${damaged}`)
    const quarantined = log.quarantined().length
    if (quarantined > 0) trouble.push(`quarantined=${quarantined}`)
    const free = diskFree(log.directory)
    if (free !== null && free.fraction < DISK_LOW_FRACTION) trouble.push(`disk_free_percent=${(100 * free.fraction).toFixed(1)}`)
    if (trouble.length > 0) parts.push(`log=${served.name} ${trouble.join(' ')}`)
  }
  return parts.length === 0 ? null : `summary ${parts.join(' ')}`
}
