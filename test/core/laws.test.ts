// Laws of the log, checked with fast-check on real logs: merge is commutative, associative and
// idempotent; the state at a vector plus eventsSince(vector) is the full state; random command
// sequences match a simple in-memory model. Failures print fast-check's seed and path.

import t from 'tap'
import fc from 'fast-check'
import { openLog, type Log, type RemoteEvent } from '../../index.js'
import { collect, tempDir } from '../helpers/temp.js'

const ORIGINS = ['a'.repeat(32), 'b'.repeat(32), 'c'.repeat(32)]
const event = (origin: string, pos: number): RemoteEvent => ({ origin, pos, time: 1000 + pos, payload: new TextEncoder().encode(`${origin[0]}${pos}`) })
/** A delivery: some events of some origins (any order, duplicates allowed). */
const delivery = fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 11 })), { maxLength: 25 })
  .map((pairs) => pairs.map(([o, pos]) => event(ORIGINS[o]!, pos)))

async function sequences(log: Log): Promise<string> {
  const byOrigin: Record<string, string[]> = {}
  for await (const e of log.read()) (byOrigin[e.origin] ??= [])[e.pos] = new TextDecoder().decode(e.payload)
  return JSON.stringify(Object.keys(byOrigin).sort().map((o) => [o, byOrigin[o]]))
}

t.test('merge is commutative, associative and idempotent', async (t) => {
  const base = tempDir(t)
  let run = 0
  await fc.assert(fc.asyncProperty(delivery, delivery, delivery, async (x, y, z) => {
    const state = async (order: RemoteEvent[][]): Promise<string> => {
      const log = await openLog(`${base}/${run++}`, { durability: 'none' })
      for (const batch of order) await log.merge(batch)
      const vector = Object.entries(log.versionVector()).sort()
      const result = JSON.stringify([vector, await sequences(log)])
      await log.close()
      return result
    }
    const reference = await state([x, y, z])
    return reference === await state([z, y, x]) && // commutative
      reference === await state([x.concat(y), z]) && reference === await state([x, y.concat(z)]) && // associative
      reference === await state([x, x, y, y, z, z, x]) // idempotent
  }), { numRuns: 40 })
  t.pass('held for 40 random triples of deliveries')
})

t.test('the state at vector vv plus eventsSince(vv) equals the full state', async (t) => {
  const base = tempDir(t)
  let run = 0
  await fc.assert(fc.asyncProperty(delivery, fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 3, maxLength: 3 }), async (events, cut) => {
    const full = await openLog(`${base}/${run++}`, { durability: 'none' })
    // Gapless prefixes so that every event is stored.
    for (const origin of ORIGINS) await full.merge(Array.from({ length: 12 }, (_, pos) => event(origin, pos)))
    await full.merge(events)
    const vv: Record<string, number> = {}
    ORIGINS.forEach((origin, i) => { vv[origin] = cut[i]! })
    const partial = await openLog(`${base}/${run++}`, { durability: 'none' })
    for (const origin of ORIGINS) await partial.merge(Array.from({ length: vv[origin]! }, (_, pos) => event(origin, pos)))
    const delta = await collect(full.eventsSince(vv))
    await partial.merge(delta.map((e) => ({ origin: e.origin, pos: e.pos, time: e.time, payload: e.payload })))
    const same = await sequences(full) === await sequences(partial) && JSON.stringify(full.versionVector()) === JSON.stringify(Object.fromEntries(Object.entries(partial.versionVector()).sort()))
    await full.close()
    await partial.close()
    return same
  }), { numRuns: 30 })
  t.pass('held for 30 random version vectors')
})

t.test('random command sequences match an in-memory model, across reopen', async (t) => {
  const base = tempDir(t)
  let run = 0
  const command = fc.oneof(
    fc.record({ kind: fc.constant('append' as const), size: fc.integer({ min: 0, max: 300 }) }),
    // Batches stay below a segment (64 KiB here): larger ones are TOO_LARGE by design.
    fc.record({ kind: fc.constant('batch' as const), count: fc.integer({ min: 1, max: 30 }), size: fc.integer({ min: 0, max: 1500 }) }),
    fc.record({ kind: fc.constant('merge' as const), events: delivery }),
    fc.record({ kind: fc.constant('reopen' as const) }),
  )
  await fc.assert(fc.asyncProperty(fc.array(command, { maxLength: 30 }), async (commands) => {
    const dir = `${base}/${run++}`
    const options = { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 4096 }
    let log = await openLog(dir, options)
    const model: string[] = [] // payloads in local order
    const counts = new Map<string, number>()
    const held = new Map<string, Set<number>>()
    let serial = 0
    for (const c of commands) {
      if (c.kind === 'append') {
        const text = `local ${serial++}`.padEnd(c.size, '.')
        await log.append(new TextEncoder().encode(text))
        model.push(text)
      } else if (c.kind === 'batch') {
        const texts = Array.from({ length: c.count }, () => `batch ${serial++}`.padEnd(c.size, '.'))
        await log.appendBatch(texts.map((x) => new TextEncoder().encode(x)))
        model.push(...texts)
      } else if (c.kind === 'merge') {
        await log.merge(c.events)
        // The model: events beyond a gap are held (in memory, until reopen); every event that
        // extends its origin's gapless prefix is stored, in order of position, origins in the
        // order they first appear in the delivery.
        const order = [...new Set(c.events.map((e) => e.origin))]
        for (const origin of order) {
          const have = held.get(origin) ?? new Set<number>()
          for (const e of c.events) if (e.origin === origin) have.add(e.pos)
          let next = counts.get(origin) ?? 0
          while (have.has(next)) {
            have.delete(next)
            model.push(`${origin[0]}${next++}`)
          }
          for (const pos of have) if (pos < next) have.delete(pos)
          held.set(origin, have)
          counts.set(origin, next)
        }
      } else {
        held.clear() // the waiting buffer does not survive a reopen
        await log.close()
        log = await openLog(dir, options)
      }
    }
    const actual = (await collect(log.read())).map((e) => new TextDecoder().decode(e.payload))
    const length = log.length
    await log.close()
    return length === model.length && JSON.stringify(actual) === JSON.stringify(model)
  }), { numRuns: 40 })
  t.pass('held for 40 random command sequences')
})
