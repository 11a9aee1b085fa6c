// A log with identity hashes large own records on a worker thread while it composes them
// (core/seal-pipeline.ts). Whatever the mix of large batches, small appends, concurrent writers,
// reads of the head, cache slides and segment rolls, every record's link is the chain hash of its
// events (verify() recomputes each), the chain continues across reopens, and a receiver accepts
// the signed history.

import t, { type Test } from 'tap'
import { openLog, type Log } from '../../index.js'
import { signedSince } from '../helpers/sealed.js'
import { collect, prng, tempDir } from '../helpers/temp.js'

const SEED = Number(process.env['INTERLOG_SEED'] ?? Date.now() % 1_000_000)

/** Records the log handed to its hashing thread since open (a private counter, read for this test only). */
function hashedOnWorker(log: Log): number {
  return (log as unknown as { pipeline: { recordsPosted: number } }).pipeline.recordsPosted
}

function batchOf(random: () => number, tag: string, large = random() < 0.5): Uint8Array[] {
  // Half the batches are large (bodies over the 64 KiB threshold, up to several records).
  // A large batch has at least 500 events of at least 140 bytes: a body over 64 KiB.
  const count = large ? 500 + Math.floor(random() * 1300) : 1 + Math.floor(random() * 20)
  const size = large ? 140 + Math.floor(random() * 260) : 1 + Math.floor(random() * 2000)
  return Array.from({ length: count }, (_, i) => Buffer.from(`${tag}:${i}:`.padEnd(size, String.fromCharCode(97 + (i % 26)))))
}

async function checkChain(t: Test, log: Log, expected: string[], when: string): Promise<void> {
  const report = await log.verify()
  t.ok(report.ok, `${when}: verify recomputes every link (${JSON.stringify(report.damage.slice(0, 2))})`)
  const events = await collect(log.read())
  t.equal(events.length, expected.length, `${when}: every event is there`)
  t.ok(events.every((e, i) => Buffer.from(e.payload).toString() === expected[i]), `${when}: in order, intact`)
}

t.test('mixed large and small appends, concurrent writers, reads, slides and rolls: every link verifies, across reopen', async (t) => {
  t.comment(`seed ${SEED} (replay with INTERLOG_SEED=${SEED})`)
  const random = prng(SEED)
  const dir = tempDir(t)
  const options = { cacheBytes: 512 << 10, segmentBytes: 4 << 20, maxEventBytes: 4096, durability: 'interval' as const }
  let log = await openLog(dir, options)
  const expected: string[] = []
  let onWorker = 0
  for (let round = 0; round < 3; round++) {
    for (let step = 0; step < 40; step++) {
      const choice = random()
      if (choice < 0.5) {
        const batch = batchOf(random, `r${round}s${step}`)
        const ids = await log.appendBatch(batch)
        t.equal(ids[0]!.pos, expected.length)
        for (const p of batch) expected.push(p.toString())
      } else if (choice < 0.75) {
        // Writers racing: their order is the order of the calls.
        const batches = [batchOf(random, `r${round}s${step}a`), [Buffer.from(`r${round}s${step}single`)], batchOf(random, `r${round}s${step}b`)]
        await Promise.all(batches.map((batch) => log.appendBatch(batch)))
        for (const batch of batches) for (const p of batch) expected.push(p.toString())
      } else if (choice < 0.9) {
        // Reading the head settles records the worker is still hashing.
        const last = await collect(log.eventsSince({ [log.replicaId]: Math.max(0, expected.length - 3) }, { raw: true }))
        t.equal(last.length, Math.min(3, expected.length))
      } else {
        await log.flush()
      }
    }
    await checkChain(t, log, expected, `round ${round}, open`)
    onWorker += hashedOnWorker(log)
    await log.close()
    log = await openLog(dir, options)
    await checkChain(t, log, expected, `round ${round}, reopened`)
  }
  t.ok((await log.verify()).segments > 1, 'the workload rolled segments')
  t.ok(onWorker > 0, `${onWorker} records were hashed on the worker`)
  await log.close()
})

t.test('a receiver accepts a history hashed on the worker thread, sealed when sent', async (t) => {
  const random = prng(SEED + 1)
  const source = await openLog(tempDir(t))
  const receiver = await openLog(tempDir(t), { trust: 'open' })
  const expected: string[] = []
  for (let i = 0; i < 12; i++) {
    const batch = batchOf(random, `b${i}`, i % 2 === 0)
    await source.appendBatch(batch)
    for (const p of batch) expected.push(p.toString())
    // The worker starts with the first large record; until it is up, records are hashed inline.
    if (i === 0) await new Promise((resolve) => setTimeout(resolve, 300))
  }
  await source.flush()
  t.ok(hashedOnWorker(source) > 0, 'the worker hashed some of it')
  const result = await receiver.merge(await signedSince(source))
  t.equal(result.forged, undefined, 'nothing refused')
  t.same(receiver.versionVector(), { [source.replicaId]: expected.length }, 'everything stored')
  t.ok((await receiver.verify()).ok, 'the receiver verifies the chain it stored')
  await source.close()
  await receiver.close()
})

/** The log's hashing pipeline (private), for the failure tests below. */
function pipelineOf(log: Log): { worker: { terminate(): Promise<number> } | null, failed: boolean, ready(): boolean } {
  return (log as unknown as { pipeline: ReturnType<typeof pipelineOf> }).pipeline
}

t.test('a hashing thread that dies with records pending: they are hashed inline, nothing is lost, later records too', async (t) => {
  const random = prng(SEED + 2)
  const dir = tempDir(t)
  const log = await openLog(dir)
  const expected: string[] = []
  const append = async (tag: string): Promise<void> => {
    const batch = batchOf(random, tag, true)
    await log.appendBatch(batch)
    for (const p of batch) expected.push(p.toString())
  }
  await append('warm-up')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok(pipelineOf(log).ready(), 'the worker is up')
  // The thread is killed and its exit not yet seen (the event loop has not run): records go to it.
  await pipelineOf(log).worker!.terminate()
  pipelineOf(log).failed = false
  const started = Date.now()
  await append('to a dead worker')
  await log.flush()
  t.ok(pipelineOf(log).failed, 'the stalled worker was noticed')
  t.ok(Date.now() - started < 10_000, `settled inline after the stall bound (${Date.now() - started} ms)`)
  await append('after')
  await checkChain(t, log, expected, 'after the worker died')
  await log.close()
  const reopened = await openLog(dir)
  await checkChain(t, reopened, expected, 'reopened')
  await reopened.close()
})
