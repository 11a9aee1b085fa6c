// The log's side of damage (core/damage.ts): fencing what a read or verify finds (through the
// survey), keeping what merge offers for a fenced range, and running repairs (core/heal.ts) one at
// a time under the write gate, then pointing the indexes at the rewritten records and reporting.
// The log owns the fences; this file decides when to survey and when to repair.
//
// Faults expected: a repair that throws (the disk) is reported as a warning and leaves the range
// fenced, to be tried again when more events come; a log that closes or fails stops repairing.

import type { DamagedRange, Fence, Fences } from './damage.js'
import type { Healer, HealOutcome } from './heal.js'
import type { LocalIndex, OriginState } from './indexes.js'
import type { RemoteEvent } from './merge-buffer.js'
import type { LogWarning } from './options.js'
import type { Segment } from './segments.js'
import { surveyDamage, type SurveyHost } from './survey.js'

/** A repair, as reported by the log's 'healed' event. */
export interface HealedRange {
  segment: string
  /** File offsets of the region rewritten. */
  offset: number
  end: number
  /** Events written back in place. */
  events: number
  /** Local positions of the region whose events are held elsewhere in the log (or lost): now a HOLE record. */
  elsewhere: number
}

export interface RepairsHost {
  readonly fences: Fences
  /** null for a read-only open: ranges are fenced in memory, never repaired. */
  readonly healer: Healer | null
  readonly local: LocalIndex
  readonly origins: Map<string, OriginState>
  warn(warning: LogWarning): void
  emitDamage(range: DamagedRange): void
  emitHealed(range: HealedRange): void
  /** Whether the log still writes (open, not closing, no I/O failure). */
  writing(): boolean
  /** Writes what is composed, so that a survey or a repair sees it on disk (never throws). */
  writeComposed(): Promise<void>
  surveyHost(): SurveyHost
  underGate<T>(work: () => Promise<T>): Promise<T>
  /** Whether the checkpoint on disk indexes records at or after `offset`. */
  checkpointCovers(offset: number): boolean
  rewriteCheckpoint(): Promise<void>
}

export class Repairs {
  private scheduled = false

  constructor(private readonly host: RepairsHost) {}

  /** Damaged ranges fenced off, in log order, with what each held. */
  describe(): DamagedRange[] {
    return this.host.fences.all().map((fence) => fence.describe())
  }

  /**
   * A read found damage at global offset `offset`: fences off the range around it (core/survey.ts)
   * and reports it. Written data only is surveyed, so what is composed is written first.
   */
  async found(segment: Segment, offset: number, reason: string, expectedLocal: number, batchStart: number): Promise<Fence> {
    const fences = this.host.fences
    const known = fences.containing(offset)
    if (known !== undefined) return known
    if (this.host.healer !== null) await this.host.writeComposed()
    const again = fences.containing(offset)
    if (again !== undefined) return again
    const fence = surveyDamage(this.host.surveyHost(), segment, offset, reason, expectedLocal, batchStart)
    fences.add(fence)
    this.soon()
    const range = fence.describe()
    this.host.warn({
      code: 'DAMAGED', segment: range.segment, offset: range.offset,
      message: `interlog: a read found segment ${range.segment} damaged at offset ${range.offset} (${reason}); bytes ${fence.start - segment.start} to ` +
        `${range.end} (local positions ${range.localFrom} to ${range.localTo}) are fenced off: reads go around them, and sync fetches back what they held`,
    })
    this.host.emitDamage(range)
    return fence
  }

  /** Keeps a remote event a damaged range lacks (merge offers what it would count as a duplicate); true when kept. */
  offer(event: RemoteEvent): boolean {
    const healer = this.host.healer
    if (healer === null || this.host.fences.count === 0 || !healer.offer(event)) return false
    this.soon()
    return true
  }

  /** Tries the repairs that may be possible now, on the next turn (merges of one message share it). */
  soon(): void {
    if (this.host.healer === null || this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.now().catch((error: unknown) => {
        this.host.warn({ code: 'DAMAGED', message: `interlog: a repair failed: ${(error as Error).message}` })
      })
    })
  }

  /** Repairs what can be repaired now, each under the write gate (core/heal.ts). */
  private async now(): Promise<void> {
    const healer = this.host.healer
    if (healer === null || !this.host.writing()) return
    for (const fence of healer.candidates()) {
      const outcome = await this.host.underGate(async () => {
        if (!this.host.writing() || !this.host.fences.all().includes(fence)) return null
        await this.host.writeComposed()
        return healer.heal(fence)
      })
      if (outcome === null) continue
      if (outcome.healed) await this.after(fence, outcome)
      else fence.repairNote = outcome.reason
    }
  }

  /** After a repair: the fence goes, the indexes point at the new records, the checkpoint is written again if it covered them. */
  private async after(fence: Fence, outcome: HealOutcome): Promise<void> {
    this.host.fences.remove(fence)
    this.host.local.index.replaceRange(outcome.start, outcome.end, [{ position: fence.localFrom, offset: outcome.start }])
    for (const [origin, range] of fence.ranges) {
      this.host.origins.get(origin)?.index.replaceRange(outcome.start, outcome.end, [{ position: range.from, offset: outcome.start }])
    }
    if (this.host.checkpointCovers(outcome.start)) await this.host.underGate(() => this.host.rewriteCheckpoint())
    const segment = fence.segment
    const healed: HealedRange = {
      segment: segment.name, offset: outcome.start - segment.start, end: outcome.end - segment.start, events: outcome.events,
      elsewhere: Math.max(0, fence.localTo - fence.localFrom - fence.attributed),
    }
    this.host.warn({
      code: 'HEALED', segment: healed.segment, offset: healed.offset,
      message: `interlog: segment ${healed.segment} repaired in place, bytes ${healed.offset} to ${healed.end}: ${healed.events} events written back` +
        (healed.elsewhere > 0 ? `, ${healed.elsewhere} local positions left to events held elsewhere` : ''),
    })
    this.host.emitHealed(healed)
  }
}
