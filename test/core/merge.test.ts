// merge (remote events: idempotent, gapless per origin) and eventsSince (the delta for a version
// vector), checked against each other over seeded random version vectors.

import t from 'tap'
import crypto from 'node:crypto'
import { openLog, type LogEvent, type RemoteEvent } from '../../index.js'
import { collect, payload, prng, tempDir, text } from '../helpers/temp.js'

const originA = 'a'.repeat(32)
const originB = 'b'.repeat(32)
const remote = (origin: string, pos: number): RemoteEvent => ({ origin, pos, time: 1_700_000_000_000 + pos, payload: payload(`${origin.slice(0, 1)}${pos}`) })

t.test('merge stores remote events, and duplicates are counted, never thrown', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  t.same(await log.merge([remote(originA, 0), remote(originA, 1)]), { added: 2, duplicates: 0, waiting: 0, dropped: 0, rejected: [], quarantined: 0 })
  t.same(await log.merge([remote(originA, 0), remote(originA, 1), remote(originA, 2)]), { added: 1, duplicates: 2, waiting: 0, dropped: 0, rejected: [], quarantined: 0 })
  t.same(log.versionVector(), { [originA]: 3 })
  const events = await collect(log.read())
  t.same(events.map((e) => [e.origin, e.pos, e.time, text(e.payload)]),
    [0, 1, 2].map((pos) => [originA, pos, 1_700_000_000_000 + pos, `a${pos}`]))
})

t.test('an event beyond a gap waits until the gap is filled; reordering converges', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  t.same(await log.merge([remote(originB, 2), remote(originB, 3)]), { added: 0, duplicates: 0, waiting: 2, dropped: 0, rejected: [], quarantined: 0 })
  t.equal(log.length, 0, 'nothing stored across a gap')
  t.same(await log.merge([remote(originB, 3)]), { added: 0, duplicates: 1, waiting: 0, dropped: 0, rejected: [], quarantined: 0 }, 'a held event redelivered is a duplicate')
  t.same(await log.merge([remote(originB, 1), remote(originB, 0)]), { added: 4, duplicates: 0, waiting: 0, dropped: 0, rejected: [], quarantined: 0 })
  t.same((await collect(log.read())).map((e) => e.pos), [0, 1, 2, 3])
})

t.test('the waiting buffer is bounded: beyond it events are dropped and counted', async (t) => {
  const log = await openLog(tempDir(t), { mergeWaitingEventsMax: 3 })
  t.teardown(() => log.close())
  const result = await log.merge([5, 6, 7, 8, 9].map((pos) => remote(originA, pos)))
  t.equal(result.waiting + result.dropped, 5)
  t.equal(result.dropped, 2)
  const filled = await log.merge([0, 1, 2, 3, 4].map((pos) => remote(originA, pos)))
  t.equal(filled.added, 8, 'the held events are released; the dropped ones wait for sync to resend')
  t.same(log.versionVector(), { [originA]: 8 })
})

t.test('merge survives reopen and mixes with local appends', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir)
  await log.append(payload('local 0'))
  await log.merge([remote(originA, 0), remote(originB, 0), remote(originA, 1)])
  await log.append(payload('local 1'))
  const vector = log.versionVector()
  await log.close()
  log = await openLog(dir)
  t.same(log.versionVector(), vector)
  t.same((await collect(log.read())).map((e) => text(e.payload)), ['local 0', 'a0', 'a1', 'b0', 'local 1'])
  await log.close()
})

t.test('bad remote events are refused before anything is stored', async (t) => {
  const log = await openLog(tempDir(t), { maxEventBytes: 10 })
  t.teardown(() => log.close())
  await t.rejects(log.merge([remote(originA, 0), { ...remote(originA, 1), pos: -1 }]), { code: 'INVALID_ARGUMENT' })
  await t.rejects(log.merge([remote(originA, 0), { ...remote(originA, 1), payload: new Uint8Array(11) }]), { code: 'TOO_LARGE' })
  await t.rejects(log.merge([{ origin: originA, pos: 0, time: 'now', payload: new Uint8Array() } as never]), { code: 'INVALID_ARGUMENT' })
  t.equal(log.length, 0)
})

t.test('eventsSince against random version vectors equals the full state minus the vector', async (t) => {
  const seed = Number(process.env['INTERLOG_SEED'] ?? 4242)
  t.comment(`seed ${seed}`)
  const random = prng(seed)
  const log = await openLog(tempDir(t), { segmentBytes: 256 << 10, cacheBytes: 128 << 10, maxEventBytes: 4096 })
  t.teardown(() => log.close())
  const origins = Array.from({ length: 5 }, () => crypto.randomBytes(16).toString('hex'))
  const next = new Map(origins.map((o) => [o, 0]))
  for (let round = 0; round < 400; round++) {
    if (random() < 0.3) {
      await log.appendBatch(Array.from({ length: 1 + Math.floor(random() * 20) }, (_, i) => payload(`local ${round} ${i}`.padEnd(Math.floor(random() * 600)))))
    } else {
      const origin = origins[Math.floor(random() * origins.length)]!
      const from = next.get(origin)!
      const count = 1 + Math.floor(random() * 40)
      await log.merge(Array.from({ length: count }, (_, i) => ({ ...remote(origin, from + i), payload: payload(`${origin} ${from + i}`.padEnd(Math.floor(random() * 300))) })))
      next.set(origin, from + count)
    }
  }
  const all = await collect(log.read())
  const full = log.versionVector()
  t.ok(all.length > 3000, `${all.length} events in ${Object.keys(full).length} origins`)
  for (let trial = 0; trial < 60; trial++) {
    const vector: Record<string, number> = {}
    for (const [origin, count] of Object.entries(full)) {
      const r = random()
      if (r < 0.2) continue
      vector[origin] = r < 0.3 ? count : Math.floor(random() * (count + 1))
    }
    if (trial === 0) Object.assign(vector, { ['c'.repeat(32)]: 7 })
    const delta = await collect(log.eventsSince(vector))
    const expected = all.filter((e: LogEvent) => e.pos >= (vector[e.origin] ?? 0))
    const key = (e: LogEvent): string => `${e.localPos}:${e.origin}:${e.pos}:${text(e.payload)}`
    t.same(delta.map(key), expected.map(key), `trial ${trial}`)
  }
  t.same(await collect(log.eventsSince(full)), [], 'nothing beyond the full vector')
})
