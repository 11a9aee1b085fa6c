// Lag in seconds for the metrics (docs/metrics.md): how long the oldest thing a peer lacks, or
// this log lacks, has been waiting. A log written to all the time is rarely exactly caught up at
// the moment of a scrape, so "seconds since the lag was last zero" would grow without end; instead
// each log keeps timestamped samples of its own version vector and of what its online peers hold
// (the largest count of each origin among them), and a lag is the age of the oldest sample the
// other side does not cover yet. Samples are taken about once a second and at every scrape, only
// when something changed; at most LAG_SAMPLES_MAX per log, thinned so that they lie about evenly
// in the logarithm of their age: a second apart for recent ones, about 14% of their age apart after
// an hour of uptime, 30% after a year.
// A lag is the age of a sample, a lower bound of the true one by at most the gap before it.

import type { VersionVector } from '../core/index.js'
import { eventsBeyond } from '../sync/index.js'

/** Samples kept per log, at most (the oldest always stays: it bounds the lags from below). */
export const LAG_SAMPLES_MAX = 64
/** How often the daemon samples each log's vectors, in ms (besides each scrape). */
export const LAG_SAMPLE_MS = 1000

interface Sample {
  at: number
  /** This log's version vector then. */
  ours: VersionVector
  /** For each origin, the most of it any online peer held then. */
  theirs: VersionVector
}

export class LagHistory {
  private readonly samples: Sample[] = []

  /** Notes both vectors at `now`: a sample only when one of them changed since the last. */
  note(now: number, ours: VersionVector, theirs: VersionVector): void {
    const last = this.samples[this.samples.length - 1]
    if (last !== undefined && sameVector(last.ours, ours) && sameVector(last.theirs, theirs)) return
    if (last !== undefined) {
      // Our vector may shrink (a log that moves to a new origin gives back the old one's events it
      // cannot vouch for): earlier samples are lowered to it, so they stay a growing sequence.
      const lowered: string[] = []
      for (const origin in last.ours) if ((ours[origin] ?? 0) < last.ours[origin]!) lowered.push(origin)
      for (const sample of lowered.length === 0 ? [] : this.samples) {
        for (const origin of lowered) if (sample.ours[origin] !== undefined && sample.ours[origin]! > (ours[origin] ?? 0)) sample.ours[origin] = ours[origin] ?? 0
      }
    }
    this.samples.push({ at: now, ours, theirs })
    if (this.samples.length > LAG_SAMPLES_MAX) this.thin(now)
  }

  /**
   * Drops the sample whose loss leaves the smallest gap for its age (neither the oldest nor the
   * newest): the samples end up spaced about evenly in the logarithm of their age (64 samples over
   * an hour of uptime: 1.14x apart; over a year: 1.3x).
   */
  private thin(now: number): void {
    let drop = 1
    let best = Infinity
    for (let i = 1; i < this.samples.length - 1; i++) {
      const gap = this.samples[i + 1]!.at - this.samples[i - 1]!.at
      const cost = gap / (now - this.samples[i + 1]!.at + LAG_SAMPLE_MS)
      if (cost < best) { best = cost; drop = i }
    }
    this.samples.splice(drop, 1)
  }

  /**
   * Seconds a peer holding `peer` has lacked something this log held: the age of the oldest sample
   * of ours it does not cover (0 when it covers them all and `current` too; when it covers none, the
   * age of the oldest sample, a lower bound).
   */
  peerLagSeconds(now: number, current: VersionVector, peer: VersionVector): number {
    if (eventsBeyond(current, peer) === 0) return 0
    // The samples of our vector grow (note() lowers old ones when it shrinks), so the ones a peer
    // covers are a prefix: search for its end.
    let low = 0
    let high = this.samples.length
    while (low < high) {
      const middle = (low + high) >> 1
      if (eventsBeyond(this.samples[middle]!.ours, peer) === 0) low = middle + 1
      else high = middle
    }
    const first = this.samples[low]
    return first === undefined ? 0 : Math.max(0, now - first.at) / 1000
  }

  /**
   * Seconds this log has lacked events of `origin` that an online peer held: the age of the oldest
   * sample in which a peer held more of it than this log holds now (0 when none did, or when the
   * online peers of the last sample, the one `note` took at this scrape, hold no more than this log).
   */
  originLagSeconds(now: number, origin: string, held: number): number {
    const last = this.samples[this.samples.length - 1]
    if (last === undefined || (last.theirs[origin] ?? 0) <= held) return 0
    for (const sample of this.samples) {
      if ((sample.theirs[origin] ?? 0) > held) return Math.max(0, now - sample.at) / 1000
    }
    return 0
  }
}

function sameVector(a: VersionVector, b: VersionVector): boolean {
  let keys = 0
  for (const origin in a) {
    if (a[origin] !== b[origin]) return false
    keys++
  }
  for (const _ in b) keys--
  return keys === 0
}
