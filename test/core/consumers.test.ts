// Tails with onCaughtUp, and durable consumers: commit, crash, restart, reset, delete.

import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { openLog } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

t.test('tail: catch-up then live with concurrent appends, no gap, no repeat, onCaughtUp at the head', async (t) => {
  const log = await openLog(tempDir(t), { segmentBytes: 128 << 10, cacheBytes: 64 << 10, maxEventBytes: 4096 })
  t.teardown(() => log.close())
  for (let i = 0; i < 300; i++) await log.appendBatch([payload(`backlog ${i}`.padEnd(200, '.'))])
  const caughtUp: number[] = []
  const seen: number[] = []
  const controller = new AbortController()
  const reader = (async () => {
    for await (const event of log.tail({ from: 0, signal: controller.signal, onCaughtUp: (position) => caughtUp.push(position) })) {
      seen.push(event.localPos)
      if (seen.length === 1300) controller.abort()
    }
  })()
  const writers = Array.from({ length: 4 }, async (_, w) => {
    for (let i = 0; i < 250; i++) {
      await log.append(payload(`live ${w} ${i}`))
      if (i % 25 === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })
  await Promise.all([...writers, reader])
  t.same(seen, Array.from({ length: 1300 }, (_, i) => i), 'every position exactly once, in order')
  t.ok(caughtUp.length >= 1, `onCaughtUp called ${caughtUp.length} times`)
  t.ok(caughtUp.every((position, i) => i === 0 || position > caughtUp[i - 1]!), 'each time at a later head')
  t.ok(caughtUp[0]! >= 300, 'the first call comes after the backlog')
})

t.test('a consumer resumes at its committed position after a crash (at-least-once)', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir)
  for (let i = 0; i < 100; i++) await log.append(payload(`e${i}`))
  let consumer = log.consumer('stats', { startAt: 'earliest' })
  const processed: string[] = []
  for await (const batch of consumer.batches({ max: 30 })) {
    for (const event of batch) processed.push(text(event.payload))
    if (processed.length === 60) {
      await consumer.commit(batch[batch.length - 1]!.localPos)
      break
    }
  }
  t.equal(consumer.position, 60)
  t.equal(consumer.lag, 40)
  t.same(log.consumers().map((c) => [c.name, c.position, c.lag]), [['stats', 60, 40]])
  await log.close()

  // A real crash: a child process takes a batch and dies with SIGKILL before committing it.
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    import { openLog } from ${JSON.stringify(fileURLToPath(new URL('../../dist/index.js', import.meta.url)))}
    const log = await openLog(${JSON.stringify(dir)})
    const consumer = log.consumer('stats')
    for await (const batch of consumer.batches({ max: 10 })) { console.log('took', batch.length); break }
    setInterval(() => {}, 1000)
  `], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()))
  child.kill('SIGKILL')
  await new Promise((resolve) => child.once('exit', resolve))

  log = await openLog(dir)
  t.teardown(() => log.close())
  consumer = log.consumer('stats', { startAt: 'latest' })
  t.equal(consumer.position, 60, 'the stored position wins over startAt; the uncommitted batch comes again')
  const [next] = await collect((async function* () {
    for await (const batch of consumer.batches({ max: 5 })) { yield batch; return }
  })())
  t.same(next!.map((e) => text(e.payload)), ['e60', 'e61', 'e62', 'e63', 'e64'])
})

t.test('reset rebuilds from zero; latest skips the past; delete forgets', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  for (let i = 0; i < 10; i++) await log.append(payload(`e${i}`))
  const latest = log.consumer('live', { startAt: 'latest' })
  t.equal(latest.position, 10)
  await log.append(payload('e10'))
  t.equal(log.consumer('live').position, 10, 'a latest consumer is stored at once: it does not skip e10')
  const model = log.consumer('model')
  await model.commit(9)
  t.equal(model.position, 10)
  await model.reset()
  t.equal(model.position, 0)
  const [first] = await collect((async function* () {
    for await (const batch of model.batches({ max: 3 })) { yield batch; return }
  })())
  t.same(first!.map((e) => e.localPos), [0, 1, 2])
  await model.reset({ to: 5 })
  t.equal(model.position, 5)
  t.throws(() => model.commit(100), { code: 'INVALID_ARGUMENT' })
  await model.delete()
  t.same(log.consumers().map((c) => c.name), ['live'])
  t.throws(() => log.consumer('bad/name'), { code: 'INVALID_ARGUMENT' })
})

t.test('batches wait for new events and end on abort', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  const consumer = log.consumer('waiting')
  const controller = new AbortController()
  const got: number[][] = []
  const run = (async () => {
    for await (const batch of consumer.batches({ max: 100, signal: controller.signal })) {
      got.push(batch.map((e) => e.localPos))
      if (got.flat().length === 3) controller.abort()
    }
  })()
  await new Promise((resolve) => setTimeout(resolve, 30))
  await log.appendBatch([payload('a'), payload('b')])
  await new Promise((resolve) => setTimeout(resolve, 30))
  await log.append(payload('c'))
  await run
  t.same(got.flat(), [0, 1, 2])
})
