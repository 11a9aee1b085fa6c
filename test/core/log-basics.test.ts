import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { openLog, LogError } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

t.test('events round-trip through close and reopen', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir)
  t.match(log.replicaId, /^[0-9a-f]{32}$/)
  const first = await log.append(payload('one'))
  t.same(first, { origin: log.replicaId, pos: 0 })
  const batch = await log.appendBatch([payload('two'), payload(''), payload('four')])
  t.same(batch.map((id) => id.pos), [1, 2, 3])
  t.equal(log.length, 4)
  t.same(log.versionVector(), { [log.replicaId]: 4 })
  const id = log.replicaId
  await log.close()

  log = await openLog(dir)
  t.equal(log.replicaId, id, 'the replica id is stored in the directory')
  t.equal(log.length, 4)
  const events = await collect(log.read())
  t.same(events.map((e) => text(e.payload)), ['one', 'two', '', 'four'])
  t.same(events.map((e) => e.localPos), [0, 1, 2, 3])
  t.ok(events.every((e) => e.origin === id && typeof e.time === 'number' && e.time > 1.6e12))
  const next = await log.append(payload('five'))
  t.equal(next.pos, 4, 'positions continue after reopen')
  await log.close()
})

t.test('read honours from and to', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  await log.appendBatch(Array.from({ length: 20 }, (_, i) => payload(`e${i}`)))
  t.same((await collect(log.read({ from: 5, to: 8 }))).map((e) => text(e.payload)), ['e5', 'e6', 'e7'])
  t.same(await collect(log.read({ from: 20 })), [])
  t.same((await collect(log.read({ from: 18, to: 100 }))).length, 2)
})

t.test('many segments: round trip and reads across segment boundaries', async (t) => {
  const dir = tempDir(t)
  const options = { segmentBytes: 64 << 10, maxEventBytes: 4096, cacheBytes: 128 << 10 }
  let log = await openLog(dir, options)
  const expected: string[] = []
  for (let i = 0; i < 300; i++) {
    const batch = Array.from({ length: 1 + (i % 7) }, (_, j) => payload(`batch ${i} event ${j} `.padEnd(50 + ((i * 31 + j) % 900), 'x')))
    await log.appendBatch(batch)
    for (const p of batch) expected.push(text(p))
  }
  const segments = fs.readdirSync(dir).filter((name) => name.endsWith('.seg'))
  t.ok(segments.length > 5, `the log spans ${segments.length} segments`)
  t.same((await collect(log.read())).map((e) => text(e.payload)), expected)
  await log.close()
  log = await openLog(dir, options)
  t.equal(log.length, expected.length)
  t.same((await collect(log.read())).map((e) => text(e.payload)), expected)
  const middle = await collect(log.read({ from: 500, to: 700 }))
  t.same(middle.map((e) => text(e.payload)), expected.slice(500, 700))
  t.ok((await log.verify()).ok)
  await log.close()
})

t.test('a batch bigger than the cache is split into records and stays atomic', async (t) => {
  const dir = tempDir(t)
  const options = { cacheBytes: 256 << 10, maxEventBytes: 16 << 10, segmentBytes: 4 << 20 }
  let log = await openLog(dir, options)
  const batch = Array.from({ length: 100 }, (_, i) => new Uint8Array(16 << 10).fill(i))
  const ids = await log.appendBatch(batch)
  t.equal(ids.length, 100)
  await log.close()
  log = await openLog(dir, options)
  const events = await collect(log.read())
  t.equal(events.length, 100)
  t.ok(events.every((e, i) => e.payload.length === 16 << 10 && e.payload[0] === i && e.payload[16383] === i))
  t.ok((await log.verify()).ok)
  await log.close()
})

t.test('payload size limits: at the bound, over the bound', async (t) => {
  const log = await openLog(tempDir(t), { maxEventBytes: 1000, cacheBytes: 64 << 10, segmentBytes: 64 << 10 })
  t.teardown(() => log.close())
  await log.append(new Uint8Array(1000))
  await t.rejects(log.append(new Uint8Array(1001)), { code: 'TOO_LARGE' })
  await t.rejects(log.appendBatch([new Uint8Array(1), new Uint8Array(1001)]), { code: 'TOO_LARGE' })
  t.equal(log.length, 1, 'nothing of a rejected batch was written')
  await t.rejects(log.appendBatch(Array.from({ length: 100 }, () => new Uint8Array(1000))), { code: 'TOO_LARGE' },
    'a batch larger than a segment')
  t.equal(log.length, 1)
})

t.test('bad arguments are INVALID_ARGUMENT', async (t) => {
  const dir = tempDir(t)
  await t.rejects(openLog(dir, { durability: 'sometimes' as never }), { code: 'INVALID_ARGUMENT' })
  await t.rejects(openLog(dir, { bogus: 1 } as never), { code: 'INVALID_ARGUMENT', message: /bogus/ })
  await t.rejects(openLog(dir, { segmentBytes: 1000 }), { code: 'INVALID_ARGUMENT' })
  await t.rejects(openLog(dir, { cacheBytes: 64 << 10 }), { code: 'INVALID_ARGUMENT', message: /cacheBytes/ })
  const log = await openLog(dir)
  t.teardown(() => log.close())
  await t.rejects(log.append('text' as never), { code: 'INVALID_ARGUMENT' })
  await t.rejects(log.appendBatch([]), { code: 'INVALID_ARGUMENT' })
  await t.rejects(collect(log.read({ from: -1 })), { code: 'INVALID_ARGUMENT' })
  await t.rejects(collect(log.eventsSince({ nothex: 1 })), { code: 'INVALID_ARGUMENT' })
  await t.rejects(log.merge([{ origin: 'x', pos: 0, time: 0, payload: new Uint8Array() }]), { code: 'INVALID_ARGUMENT' })
})

t.test('a closed log rejects with CLOSED', async (t) => {
  const log = await openLog(tempDir(t))
  await log.append(payload('x'))
  await log.close()
  await log.close()
  await t.rejects(log.append(payload('y')), { code: 'CLOSED' })
  await t.rejects(collect(log.read()), { code: 'CLOSED' })
  await t.rejects(log.merge([]), { code: 'CLOSED' })
  await t.rejects(log.verify(), { code: 'CLOSED' })
})

t.test('errors are LogError values with a code', async (t) => {
  const dir = tempDir(t)
  const log = await openLog(dir)
  t.teardown(() => log.close())
  const error = await openLog(dir).catch((e: unknown) => e)
  t.ok(error instanceof LogError)
  t.equal((error as LogError).code, 'LOCKED')
  t.match((error as LogError).message, new RegExp(path.basename(dir)))
})

t.test('durability modes: interval and none acknowledge at once and keep events over close', async (t) => {
  for (const durability of ['interval', 'none'] as const) {
    const dir = tempDir(t)
    let log = await openLog(dir, { durability, intervalMs: 10 })
    for (let i = 0; i < 100; i++) await log.append(payload(`${durability} ${i}`))
    await new Promise((resolve) => setTimeout(resolve, 30))
    await log.close()
    log = await openLog(dir)
    t.equal(log.length, 100, `${durability}: all events kept`)
    await log.close()
  }
})

t.test('concurrent durable appends share group commits and all resolve in order', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  const results = await Promise.all(Array.from({ length: 128 }, (_, i) => log.append(payload(`c${i}`))))
  t.same(results.map((r) => r.pos), Array.from({ length: 128 }, (_, i) => i))
  t.equal(log.length, 128)
})

t.test('an injected clock stamps appended events and consumer commits; a clock that is not a function is refused', async (t) => {
  const dir = tempDir(t)
  let now = 1_700_000_000_000
  const log = await openLog(dir, { now: () => now })
  await log.append(payload('first'))
  now += 5_000
  await log.appendBatch([payload('second'), payload('third')])
  t.same((await collect(log.read())).map((e) => e.time), [1_700_000_000_000, 1_700_000_005_000, 1_700_000_005_000])
  const consumer = log.consumer('stamped', { startAt: 'earliest' })
  await consumer.commit(2)
  const stored = JSON.parse(fs.readFileSync(path.join(dir, 'consumers', fs.readdirSync(path.join(dir, 'consumers'))[0]!), 'utf8')) as { updatedMs: number }
  t.equal(stored.updatedMs, 1_700_000_005_000)
  await log.close()
  await t.rejects(openLog(dir, { now: 12 as never }), { code: 'INVALID_ARGUMENT', message: /now/ })
})
