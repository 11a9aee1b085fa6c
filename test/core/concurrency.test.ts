// Behaviours under concurrency and at edges found by review: many readers over many segments,
// a tail parked at the very end of a segment, merges larger than a segment, close during a batch
// larger than the cache, and a damaged record length met by a read.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { openLog, LogError, type LogWarning } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

const SMALL = { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 4096 }

t.test('40 concurrent reads over 34 segments each see exactly their events', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir, SMALL)
  for (let i = 0; i < 2000; i += 10) {
    await log.appendBatch(Array.from({ length: 10 }, (_, j) => payload(`#${i + j}`.padEnd(1000, '.'))))
  }
  await log.close()
  log = await openLog(dir, SMALL)
  t.teardown(() => log.close())
  t.ok(fs.readdirSync(dir).filter((name) => name.endsWith('.seg')).length > 30)
  const readers = Array.from({ length: 40 }, async (_, r) => {
    const from = (r * 53) % 2000
    let expected = from
    for await (const event of log.read({ from })) {
      if (event.localPos !== expected || text(event.payload).slice(0, 8).trim().replace(/\.+$/, '') !== `#${expected}`) {
        return `reader ${r}: wanted ${expected}, got ${event.localPos} ${text(event.payload).slice(0, 8)}`
      }
      expected++
    }
    return expected === 2000 ? 'ok' : `reader ${r} stopped at ${expected}`
  })
  const results = await Promise.all(readers)
  t.same(results.filter((r) => r !== 'ok'), [])
})

t.test('a tail parked at the exact end of a full segment ends with CLOSED when the log closes', async (t) => {
  const log = await openLog(tempDir(t), { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 8192 })
  // 8 events of 7604 bytes make 8 records of 7680 bytes: exactly the 61440 data bytes of a segment.
  for (let i = 0; i < 8; i++) await log.append(new Uint8Array(7604).fill(i))
  const seen: number[] = []
  const tail = (async () => {
    for await (const event of log.tail()) seen.push(event.localPos)
  })()
  await new Promise((resolve) => setTimeout(resolve, 50))
  await log.close()
  const error = await tail.then(() => undefined, (e: unknown) => e)
  t.same(seen, [0, 1, 2, 3, 4, 5, 6, 7])
  t.ok(error instanceof LogError && error.code === 'CLOSED', `ends with ${String(error)}`)
})

t.test('a merge larger than a segment is stored in pieces; held events are never lost', async (t) => {
  const log = await openLog(tempDir(t), SMALL)
  t.teardown(() => log.close())
  const origin = 'e'.repeat(32)
  const event = (pos: number) => ({ origin, pos, time: 1, payload: new Uint8Array(1000).fill(pos & 0xff) })
  t.same(await log.merge(Array.from({ length: 100 }, (_, i) => event(i))), { added: 100, duplicates: 0, waiting: 0, dropped: 0, rejected: [], quarantined: 0 })
  t.same(await log.merge(Array.from({ length: 99 }, (_, i) => event(101 + i))), { added: 0, duplicates: 0, waiting: 99, dropped: 0, rejected: [], quarantined: 0 })
  t.same(await log.merge([event(100)]), { added: 100, duplicates: 0, waiting: 0, dropped: 0, rejected: [], quarantined: 0 })
  t.same(log.versionVector(), { [origin]: 200 })
  t.ok((await log.verify()).ok)
})

t.test('close during a batch larger than the cache finishes the batch: no torn tail next time', async (t) => {
  const dir = tempDir(t)
  const log = await openLog(dir, SMALL)
  for (let i = 0; i < 30; i++) await log.append(new Uint8Array(1000))
  const batch = log.appendBatch(Array.from({ length: 150 }, () => new Uint8Array(1000)))
  await log.close()
  const outcome = await batch.then(() => 'stored', (e: unknown) => (e as LogError).code)
  const warnings: LogWarning[] = []
  const again = await openLog(dir, { ...SMALL, onWarning: (w) => warnings.push(w) })
  t.same(warnings, [], 'a clean close leaves no torn tail')
  t.equal(again.length, outcome === 'stored' ? 180 : 30, `the batch was ${outcome}`)
  await again.close()
})

t.test('a record whose length field runs past the written data is fenced off on read, not a hang', async (t) => {
  const dir = tempDir(t)
  const options = { ...SMALL, segmentBytes: 1 << 20, checkpointIntervalBytes: 4096 }
  let log = await openLog(dir, options)
  for (let i = 0; i < 200; i++) await log.append(new Uint8Array(1000).fill(1))
  await log.close()
  const file = path.join(dir, '000000000000.seg')
  const fd = fs.openSync(file, 'r+')
  const length = Buffer.alloc(4)
  length.writeUInt32LE(60000)
  fs.writeSync(fd, length, 0, 4, 4096 + 8) // the first record claims 60000 bytes
  fs.closeSync(fd)
  log = await openLog(dir, { ...options, onWarning: () => undefined })
  t.teardown(() => log.close())
  const events = await collect(log.read())
  t.equal(events.length, 199, 'the read goes around it')
  t.equal(log.damage()[0]?.offset, 4096, 'and fences it off')
})
