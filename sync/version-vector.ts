// Version vectors: for each origin replica, how many of its events a log holds. Each origin's
// events form a gapless sequence, so a count says exactly which events are held: the log is a
// grow-only set per origin, and merging two states is taking the larger count per origin.

import type { VersionVector } from '../core/index.js'

export type Order = 'equal' | 'before' | 'after' | 'concurrent'

/** How `a` relates to `b`: before = b holds everything a holds and more. */
export function compare(a: VersionVector, b: VersionVector): Order {
  let less = false
  let more = false
  for (const origin of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[origin] ?? 0
    const y = b[origin] ?? 0
    if (x < y) less = true
    if (x > y) more = true
  }
  return less && more ? 'concurrent' : less ? 'before' : more ? 'after' : 'equal'
}

/** The join: the larger count per origin. */
export function mergeVectors(a: VersionVector, b: VersionVector): VersionVector {
  const out: VersionVector = { ...a }
  for (const [origin, count] of Object.entries(b)) if (count > (out[origin] ?? 0)) out[origin] = count
  return out
}

/** What `have` holds that `peer` lacks: origin -> [from, to) positions. */
export function delta(have: VersionVector, peer: VersionVector): Map<string, [number, number]> {
  const missing = new Map<string, [number, number]>()
  for (const [origin, count] of Object.entries(have)) {
    const theirs = peer[origin] ?? 0
    if (count > theirs) missing.set(origin, [theirs, count])
  }
  return missing
}

/** How many events `have` holds that `peer` lacks (the sum of delta's ranges). */
export function eventsBeyond(have: VersionVector, peer: VersionVector): number {
  let events = 0
  for (const [origin, count] of Object.entries(have)) events += Math.max(0, count - (peer[origin] ?? 0))
  return events
}

export function equalVectors(a: VersionVector, b: VersionVector): boolean {
  return compare(a, b) === 'equal'
}
