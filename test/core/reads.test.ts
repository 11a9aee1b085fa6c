// Reads: the head cache and the files give the same events; tails go live without gaps or
// repeats; both write paths (O_DIRECT and buffered) work.

import t from 'tap'
import fs from 'node:fs'
import { nodeStorage, openLog } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

t.test('tail reads the backlog, then new events as they are appended, and stops on abort', async (t) => {
  const log = await openLog(tempDir(t), { segmentBytes: 128 << 10, cacheBytes: 64 << 10, maxEventBytes: 1024 })
  t.teardown(() => log.close())
  for (let i = 0; i < 50; i++) await log.append(payload(`old ${i}`))
  const controller = new AbortController()
  const seen: string[] = []
  const reader = (async () => {
    for await (const event of log.tail({ from: 10, signal: controller.signal })) {
      seen.push(text(event.payload))
      if (seen.length === 40 + 500) controller.abort()
    }
  })()
  const writer = (async () => {
    for (let i = 0; i < 500; i += 5) {
      await log.appendBatch(Array.from({ length: 5 }, (_, j) => payload(`new ${i + j}`.padEnd(300, '.'))))
      if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
  })()
  await Promise.all([reader, writer])
  const expected = [...Array.from({ length: 40 }, (_, i) => `old ${i + 10}`), ...Array.from({ length: 500 }, (_, i) => `new ${i}`.padEnd(300, '.'))]
  t.same(seen, expected, 'no gap, no repeat, across segment rolls')
})

t.test('an aborted tail waiting for events ends', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  const controller = new AbortController()
  const done = collect(log.tail({ signal: controller.signal }))
  setTimeout(() => controller.abort(), 20)
  t.same(await done, [])
})

t.test('events read from the cache and from disk are the same', async (t) => {
  const dir = tempDir(t)
  const options = { cacheBytes: 64 << 10, maxEventBytes: 1024, segmentBytes: 1 << 20 }
  const log = await openLog(dir, options)
  for (let i = 0; i < 2000; i++) await log.appendBatch([payload(`e${i}`.padEnd(100 + (i % 50), '#'))])
  const live = await collect(log.read())
  await log.close()
  const reopened = await openLog(dir, options)
  t.teardown(() => reopened.close())
  const cold = await collect(reopened.read())
  t.same(cold.map((e) => [e.localPos, e.pos, e.time, text(e.payload)]), live.map((e) => [e.localPos, e.pos, e.time, text(e.payload)]))
  const kept = live[5]!.payload
  await reopened.append(payload('more'))
  t.equal(text(kept), 'e5'.padEnd(105, '#'), 'a payload stays valid after more appends')
})

t.test('both write paths: O_DIRECT where accepted, buffered writes and fdatasync otherwise', async (t) => {
  const disk = tempDir(t)
  const log = await openLog(disk, { directIo: 'auto' })
  t.comment(`O_DIRECT on ${disk}: ${log.direct}`)
  for (let i = 0; i < 100; i++) await log.append(payload(`direct ${i}`))
  await log.close()
  const again = await openLog(disk, { directIo: 'off' })
  t.equal(again.direct, false)
  t.equal((await collect(again.read())).length, 100)
  await again.close()

  if (fs.existsSync('/dev/shm')) {
    const shm = tempDir(t, '/dev/shm')
    const fallback = await openLog(shm, { directIo: 'auto' })
    t.comment(`O_DIRECT on tmpfs: ${fallback.direct}`)
    for (let i = 0; i < 100; i++) await fallback.append(payload(`buffered ${i}`))
    await fallback.close()
    const reopened = await openLog(shm)
    t.same((await collect(reopened.read({ from: 99 }))).map((e) => text(e.payload)), ['buffered 99'])
    await reopened.close()
    if (!fallback.direct) await t.rejects(openLog(shm, { directIo: 'on' }), { code: 'INVALID_ARGUMENT' })
  }
})

t.test("with durability 'fsync' no reader sees a batch before its fdatasync returns; with 'interval' readers see it at once", async (t) => {
  // Real files; each fdatasync waits until the test lets it go.
  let release: (() => void) | null = null
  const gated = {
    ...nodeStorage,
    fdatasync: (fd: number, done: (error: NodeJS.ErrnoException | null) => void): void => {
      nodeStorage.fdatasync(fd, (error) => {
        if (error !== null) return done(error)
        release = () => done(null)
      })
    },
  }
  const log = await openLog(tempDir(t), { storage: gated, identity: false })
  t.teardown(() => log.close())
  await log.flush()
  const consumer = log.consumer('model')
  const tailed: number[] = []
  const controller = new AbortController()
  const tailing = (async () => { for await (const event of log.tail({ signal: controller.signal })) tailed.push(event.localPos) })()
  const appended = log.appendBatch([payload('a'), payload('b')])
  while (release === null) await new Promise((resolve) => setImmediate(resolve))
  // The batch is composed and written; its fdatasync has not returned.
  t.equal(log.length, 0, 'length')
  t.equal(log.durableLength, 0, 'durableLength')
  t.same(log.versionVector(), {}, 'version vector')
  t.same(await collect(log.read()), [], 'read')
  t.same(await collect(log.eventsSince({})), [], 'eventsSince')
  t.equal(consumer.lag, 0, 'a consumer has nothing to read')
  t.same(tailed, [], 'a tail')
  ;(release as () => void)()
  await appended
  t.equal(log.length, 2, 'visible once durable')
  t.equal(consumer.lag, 2)
  t.same(log.versionVector(), { [log.replicaId]: 2 })
  t.same((await collect(log.read())).map((e) => text(e.payload)), ['a', 'b'])
  while (tailed.length < 2) await new Promise((resolve) => setImmediate(resolve))
  t.same(tailed, [0, 1], 'the tail wakes when the batch is durable')
  controller.abort()
  await tailing

  const interval = await openLog(tempDir(t), { durability: 'interval', intervalMs: 60_000, identity: false })
  t.teardown(() => interval.close())
  await interval.append(payload('x'))
  t.equal(interval.length, 1, "'interval': visible once committed")
  t.equal(interval.durableLength, 0, 'before it is durable')
})
