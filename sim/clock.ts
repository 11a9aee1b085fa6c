// Simulated time: `now` moves only when the simulator advances it, and timers fire in order of
// (due time, creation), so the replicators' announcements and debounces happen at the same
// simulated instants in every run of a seed.

import type { Clock, TimerHandle } from '../sync/index.js'

interface Timer {
  id: number
  due: number
  every: number
  callback: () => void
}

export class SimClock implements Clock {
  private time: number
  private nextId = 1
  private readonly timers = new Map<number, Timer>()

  constructor(start: number) {
    this.time = start
  }

  now(): number {
    return this.time
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    return this.add(callback, ms, 0)
  }

  setInterval(callback: () => void, ms: number): TimerHandle {
    return this.add(callback, ms, Math.max(1, ms))
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as number)
  }

  clearInterval(handle: TimerHandle): void {
    this.timers.delete(handle as number)
  }

  private add(callback: () => void, ms: number, every: number): number {
    const id = this.nextId++
    this.timers.set(id, { id, due: this.time + Math.max(0, ms), every, callback })
    return id
  }

  /** When the next timer is due, or Infinity. */
  nextDue(): number {
    let due = Infinity
    for (const timer of this.timers.values()) due = Math.min(due, timer.due)
    return due
  }

  /** Fires the first timer due (moving time to it); false when none is due by `limit`. */
  fireNext(limit: number): boolean {
    let first: Timer | undefined
    for (const timer of this.timers.values()) {
      if (timer.due <= limit && (first === undefined || timer.due < first.due || (timer.due === first.due && timer.id < first.id))) first = timer
    }
    if (first === undefined) return false
    this.time = Math.max(this.time, first.due)
    if (first.every > 0) first.due += first.every
    else this.timers.delete(first.id)
    first.callback()
    return true
  }

  /** Moves time forward to `to` without firing anything. */
  advance(to: number): void {
    this.time = Math.max(this.time, to)
  }
}
