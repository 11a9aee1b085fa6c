// Single appends made in one turn go in as one batch: one record, one checksum, one link, each
// append with its own id, in the order the calls were made.

import t, { type Test } from 'tap'
import { openLog, type Log } from '../../index.js'
import { APPEND_GROUP_EVENTS_MAX } from '../../core/append-group.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

async function bytesOf(t: Test, fill: (log: Log) => Promise<unknown>): Promise<number> {
  const log = await openLog(tempDir(t), { durability: 'interval' })
  await fill(log)
  const bytes = (await log.verify()).bytes
  await log.close()
  return bytes
}

t.test('128 appends of one turn take two records (the first, then the group of the rest), not 128', async (t) => {
  const payloads = Array.from({ length: 128 }, (_, i) => payload(`reading ${i}`))
  const grouped = await bytesOf(t, (log) => Promise.all(payloads.map((p) => log.append(p))))
  const twoBatches = await bytesOf(t, async (log) => { await log.appendBatch(payloads.slice(0, 1)); await log.appendBatch(payloads.slice(1)) })
  const oneByOne = await bytesOf(t, async (log) => { for (const p of payloads) await log.append(p) })
  t.equal(grouped, twoBatches, `grouped: ${grouped} bytes, as a batch of 1 and a batch of 127`)
  t.ok(grouped < oneByOne / 4, `one record per append when each waits for the last: ${oneByOne} bytes`)
})

t.test('each append of a group resolves with its own id, and reads back in call order', async (t) => {
  const log = await openLog(tempDir(t), { durability: 'fsync' })
  const ids = await Promise.all(Array.from({ length: 300 }, (_, i) => log.append(payload(`e${i}`))))
  t.same(ids.map((id) => id.pos), Array.from({ length: 300 }, (_, i) => i))
  t.ok(ids.every((id) => id.origin === log.replicaId))
  const events = await collect(log.read())
  t.same(events.map((e) => text(e.payload)), Array.from({ length: 300 }, (_, i) => `e${i}`))
  await log.close()
})

t.test('appendBatch, flush and close end the group first: the log keeps the order of the calls', async (t) => {
  const dir = tempDir(t)
  const log = await openLog(dir, { durability: 'interval' })
  const first = log.append(payload('a'))
  const batch = log.appendBatch([payload('b'), payload('c')])
  const last = log.append(payload('d'))
  await Promise.all([first, batch, last])
  t.same((await first).pos, 0)
  t.same((await batch).map((id) => id.pos), [1, 2])
  t.same((await last).pos, 3)
  const unawaited = log.append(payload('e'))
  await log.close() // called in the same turn as the append: it still goes in
  t.equal((await unawaited).pos, 4)
  const again = await openLog(dir)
  t.same((await collect(again.read())).map((e) => text(e.payload)), ['a', 'b', 'c', 'd', 'e'])
  await again.close()
})

t.test('a single append refused (too large, rejected by a validator) fails alone; the rest of its turn goes in', async (t) => {
  const log = await openLog(tempDir(t), {
    durability: 'interval', maxEventBytes: 1024,
    validators: { append: [{ name: 'no-x', function: (event: { payload: Uint8Array }) => (text(event.payload).startsWith('x') ? 'starts with x' : undefined) }] },
  })
  const results = await Promise.allSettled([
    log.append(payload('one')), log.append(new Uint8Array(2048)), log.append(payload('x marks')), log.append(payload('two')),
  ])
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'rejected', 'fulfilled'])
  t.match((results[1] as PromiseRejectedResult).reason, { code: 'TOO_LARGE' })
  t.match((results[2] as PromiseRejectedResult).reason, { code: 'VALIDATION' })
  t.same((await collect(log.read())).map((e) => text(e.payload)), ['one', 'two'])
  await log.close()
})

t.test(`a turn of more than ${APPEND_GROUP_EVENTS_MAX} appends goes in as several groups, every append with its id`, async (t) => {
  const log = await openLog(tempDir(t), { durability: 'interval' })
  const count = APPEND_GROUP_EVENTS_MAX * 3 + 5
  const ids = await Promise.all(Array.from({ length: count }, (_, i) => log.append(payload(String(i)))))
  t.same(ids.map((id) => id.pos), Array.from({ length: count }, (_, i) => i))
  t.equal(log.length, count)
  t.equal((await log.verify()).ok, true)
  await log.close()
})

t.test('appends of a turn to a closed log reject with CLOSED', async (t) => {
  const log = await openLog(tempDir(t))
  await log.close()
  await t.rejects(log.append(payload('late')), { code: 'CLOSED' })
})

t.test('a full turn of small encrypted appends into 64 KiB segments goes in: a group stays within what a segment holds', async (t) => {
  const key = new Uint8Array(32).fill(7)
  const log = await openLog(tempDir(t), { durability: 'interval', segmentBytes: 64 << 10, maxEventBytes: 1024, encryption: { keys: [{ id: 1, key }] } })
  const ids = await Promise.all(Array.from({ length: APPEND_GROUP_EVENTS_MAX }, (_, i) => log.append(payload(`reading ${String(i).padStart(7, '0')}`))))
  t.equal(ids.length, APPEND_GROUP_EVENTS_MAX)
  t.equal(log.length, APPEND_GROUP_EVENTS_MAX)
  t.equal((await collect(log.read({ from: 1000 }))).map((e) => text(e.payload))[0], 'reading 0001000')
  await log.close()
})
