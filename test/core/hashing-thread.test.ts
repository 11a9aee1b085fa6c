// A log with identity hashes large own records off the compose path (core/seal-pipeline.ts): on a
// worker thread while it composes them (durability 'interval' and 'none'), or, with 'fsync', in
// the flusher while the disk takes all but the page of the record with the link (a large record
// is split in two, the link on the one with its last event). Whatever the mix of large batches,
// small appends, concurrent writers, reads of the head, cache slides and segment rolls, every
// record's link is the chain hash of its events (verify() recomputes each), the chain continues
// across reopens, and a receiver accepts the signed history.

import t, { type Test } from 'tap'
import fs from 'node:fs'
import { nodeStorage, openLog, type Log } from '../../index.js'
import { MemoryDisk } from '../../sim/storage.js'
import { Prng } from '../../sim/prng.js'
import { remoteOf, signLast, signedSince } from '../helpers/sealed.js'
import { collect, prng, tempDir } from '../helpers/temp.js'

const SEED = Number(process.env['INTERLOG_SEED'] ?? Date.now() % 1_000_000)

/** Records the log hashed off the compose path since open (a private counter, read for this test only). */
function hashedOffPath(log: Log): number {
  return (log as unknown as { pipeline: { recordsPosted: number } }).pipeline.recordsPosted
}

function batchOf(random: () => number, tag: string, large = random() < 0.5): Uint8Array[] {
  // Half the batches are large (bodies over the 64 KiB threshold, up to several records).
  // A large batch has at least 500 events of at least 140 bytes: a body over 64 KiB.
  const count = large ? 500 + Math.floor(random() * 1300) : 1 + Math.floor(random() * 20)
  const size = large ? 140 + Math.floor(random() * 260) : 1 + Math.floor(random() * 2000)
  return Array.from({ length: count }, (_, i) => Buffer.from(`${tag}:${i}:`.padEnd(size, String.fromCharCode(97 + (i % 26)))))
}

/** The batch of the fsync write tests: 1000 events of 128 bytes, one record of about 140 KiB. */
function thousandOf128(): Buffer[] {
  return Array.from({ length: 1000 }, (_, i) => Buffer.from(`event ${i} `.padEnd(128, '.')))
}

async function checkChain(t: Test, log: Log, expected: string[], when: string): Promise<void> {
  const report = await log.verify()
  t.ok(report.ok, `${when}: verify recomputes every link (${JSON.stringify(report.damage.slice(0, 2))})`)
  const events = await collect(log.read())
  t.equal(events.length, expected.length, `${when}: every event is there`)
  t.ok(events.every((e, i) => Buffer.from(e.payload).toString() === expected[i]), `${when}: in order, intact`)
}

for (const durability of ['interval', 'fsync'] as const) t.test(`${durability}: mixed large and small appends, concurrent writers, reads, slides and rolls: every link verifies, across reopen`, async (t) => {
  t.comment(`seed ${SEED} (replay with INTERLOG_SEED=${SEED})`)
  const random = prng(SEED)
  const dir = tempDir(t)
  const options = { cacheBytes: 512 << 10, segmentBytes: 4 << 20, maxEventBytes: 4096, durability }
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
    onWorker += hashedOffPath(log)
    await log.close()
    log = await openLog(dir, options)
    await checkChain(t, log, expected, `round ${round}, reopened`)
  }
  t.ok((await log.verify()).segments > 1, 'the workload rolled segments')
  t.ok(onWorker > 0, `${onWorker} records were hashed off the compose path`)
  await log.close()
})

for (const durability of ['interval', 'fsync'] as const) t.test(`${durability}: a receiver accepts a history hashed off the compose path, sealed when sent`, async (t) => {
  const random = prng(SEED + 1)
  const source = await openLog(tempDir(t), { durability })
  const receiver = await openLog(tempDir(t), { trust: 'open' })
  const expected: string[] = []
  for (let i = 0; i < 12; i++) {
    const batch = batchOf(random, `b${i}`, i % 2 === 0)
    await source.appendBatch(batch)
    for (const p of batch) expected.push(p.toString())
    // The worker starts with the first large record; until it is up, records are hashed inline.
    if (i === 0 && durability === 'interval') await new Promise((resolve) => setTimeout(resolve, 300))
  }
  await source.flush()
  t.ok(hashedOffPath(source) > 0, 'some of it was hashed off the compose path')
  const result = await receiver.merge(await signedSince(source))
  t.equal(result.forged, undefined, 'nothing refused')
  t.same(receiver.versionVector(), { [source.replicaId]: expected.length }, 'everything stored')
  t.ok((await receiver.verify()).ok, 'the receiver verifies the chain it stored')
  await source.close()
  await receiver.close()
})

t.test('fsync: a large record\'s link rides on a second record with its last event; messages cut anywhere, even between the two, are all taken', async (t) => {
  const random = prng(SEED + 2)
  const source = await openLog(tempDir(t), { durability: 'fsync' })
  const receiver = await openLog(tempDir(t), { trust: 'open' })
  let total = 0
  for (let i = 0; i < 6; i++) {
    const batch = batchOf(random, `c${i}`, i % 3 !== 2)
    await source.appendBatch(batch)
    total += batch.length
  }
  const events = await collect(source.eventsSince({}, { raw: true }))
  const linked = events.flatMap((e, i) => (e.seal === undefined ? [] : [i]))
  t.ok(linked.some((at, k) => at - (k === 0 ? -1 : linked[k - 1]!) >= 500), 'a link covers several hundred events')
  // What sync does: messages, each saying its origin signs, the last own link of each signed;
  // events after it wait for the next. Messages end at random places and just before each linked
  // event (between the two records a large one is split into).
  const cuts = new Set(linked)
  for (let at = 0; at < events.length; at += 1 + Math.floor(random() * 700)) cuts.add(at)
  cuts.add(events.length)
  let sent = 0
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    if (cut === 0) continue
    const piece = await signLast(source, remoteOf(events.slice(sent, cut)))
    const result = await receiver.merge(piece, { sealed: true, remote: true })
    if (result.forged !== undefined) t.fail(`message [${sent}, ${cut}) refused: ${JSON.stringify(result)}`)
    sent = cut
  }
  t.same(receiver.versionVector(), { [source.replicaId]: total }, 'everything stored once the last link came')
  t.ok((await receiver.verify()).ok, 'the receiver verifies the chain it stored')
  t.ok((await source.verify()).ok, 'and the source its own')
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
  const log = await openLog(dir, { durability: 'interval' })
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
  const reopened = await openLog(dir, { durability: 'interval' })
  await checkChain(t, reopened, expected, 'reopened')
  await reopened.close()
})

t.test('fsync: a large batch goes to the disk before its link is hashed, but for the page of its last event, which follows', async (t) => {
  const PAGE = 4096
  // Each write as issued: where it goes, and the two pages just after it as they are in memory at
  // that moment (the cache is the write buffer).
  const writes: { position: number, length: number, pagesAfter: Buffer }[] = []
  const storage = {
    ...nodeStorage,
    write(fd: number, buffer: Uint8Array, offset: number, length: number, position: number, callback: (error: NodeJS.ErrnoException | null, written: number) => void): void {
      writes.push({ position, length, pagesAfter: Buffer.from(buffer.subarray(offset + length, offset + length + 2 * PAGE)) })
      nodeStorage.write(fd, buffer, offset, length, position, callback)
    },
  }
  const dir = tempDir(t)
  const log = await openLog(dir, { durability: 'fsync', storage })
  const batch = thousandOf128()
  await log.appendBatch(batch)
  writes.length = 0
  await log.appendBatch(batch)
  t.equal(writes.length, 2, 'the batch went out in two writes')
  const [early, late] = writes
  t.ok(early!.length >= 16 * PAGE, `first a run of ${early!.length / PAGE} pages`)
  t.ok(late!.length <= 2 * PAGE, `then ${late!.length / PAGE} page(s): the record of the last event and the link`)
  t.equal(late!.position, early!.position + early!.length, 'together they tile one span: no page written twice, none left out')
  // What only the hash can write: the last record's checksum and its link's hash, both after the
  // early run. When it went to the disk, they were still zero in memory; on disk they are set.
  const segment = fs.readdirSync(dir).find((name) => name.endsWith('.seg'))!
  const fd = fs.openSync(`${dir}/${segment}`, 'r')
  const onDisk = Buffer.alloc(late!.length)
  fs.readSync(fd, onDisk, 0, late!.length, late!.position)
  fs.closeSync(fd)
  const then = early!.pagesAfter.subarray(0, late!.length)
  const changed = [...then.keys()].filter((i) => then[i] !== onDisk[i])
  t.ok(changed.length >= 8 + 8 && changed.every((i) => then[i] === 0) && changed.at(-1)! - changed[0]! < 512,
    `the page(s) after the run held a zero checksum and zero link hash then, set before they were written (${changed.length} bytes changed)`)
  t.ok((await log.verify()).ok, 'every link and checksum on disk verifies')
  await log.close()
  const reopened = await openLog(dir)
  t.equal(reopened.versionVector()[reopened.replicaId], 2000, 'all of it reopens')
  t.ok((await reopened.verify()).ok, 'and verifies')
  await reopened.close()
})

t.test('fsync: a power cut at any step of a large batch\'s split write keeps every acknowledged batch, and all or none of that one', async (t) => {
  const batch = thousandOf128()
  const options = { durability: 'fsync' as const, onWarning: () => undefined }
  const outcomes = new Set<string>()
  for (let seed = 1; seed <= 30; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const log = await openLog('/log', { ...options, storage: disk.session() })
    await log.appendBatch(batch)
    const before = disk.operations
    await log.appendBatch(batch)
    // A batch's operations: all but its last page, that page (with the link), the fdatasync;
    // step 4 comes after them (the batch is acknowledged, then the power fails).
    t.equal(disk.operations - before, 3, 'a batch is two writes and an fdatasync')
    const step = 1 + (seed % 4)
    disk.armCrash(step)
    const acknowledged = await log.appendBatch(batch).then(() => true, () => false)
    await log.simulateCrash()
    disk.crash()
    const reopened = await openLog('/log', { ...options, storage: disk.session() })
    const held = reopened.length
    outcomes.add(`${acknowledged ? 'acknowledged' : 'failed'}, ${held} held`)
    if (acknowledged ? held !== 3000 : held !== 2000 && held !== 3000) t.fail(`seed ${seed}, crash at step ${step}: ${held} events after the power cut (acknowledged: ${acknowledged})`)
    const report = await reopened.verify()
    if (!report.ok) t.fail(`seed ${seed}, crash at step ${step}: ${JSON.stringify(report.damage.slice(0, 2))}`)
    const events = await collect(reopened.read())
    if (!events.every((e, i) => Buffer.from(e.payload).equals(batch[i % 1000]!))) t.fail(`seed ${seed}: an event differs`)
    await reopened.close()
  }
  t.ok(outcomes.has('failed, 2000 held'), `crashes inside the batch's writes lost it whole (${[...outcomes].join('; ')})`)
  t.ok(outcomes.has('acknowledged, 3000 held'), 'a batch acknowledged before the crash was kept')
})
