// Recovery at open: the torn-tail table (every byte offset of the last two pages, four kinds of
// damage), corruption before the tail, torn segment creation, damaged checkpoints.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { openLog, type LogWarning } from '../../index.js'
import { batchExtents } from '../helpers/format-walk.js'
import { collect, payload, prng, tempDir, text } from '../helpers/temp.js'

const SMALL = { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 2048 }
const quiet = { onWarning: (_: LogWarning) => undefined }
const SEGMENT = '000000000000.seg'

async function buildLog(dir: string, batches: number): Promise<string[]> {
  const log = await openLog(dir, SMALL)
  const expected: string[] = []
  for (let i = 0; i < batches; i++) {
    const batch = Array.from({ length: 1 + (i % 4) }, (_, j) => payload(`batch ${i}.${j} `.padEnd(40 + ((i * 97) % 400), '.')))
    await log.appendBatch(batch)
    for (const p of batch) expected.push(text(p))
  }
  await log.close()
  return expected
}

t.test('torn tail: every byte offset of the last two pages, truncated or overwritten', async (t) => {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : undefined
  const dir = tempDir(t, base)
  const expected = await buildLog(dir, 40)
  const file = path.join(dir, SEGMENT)
  const pristine = fs.readFileSync(file)
  // Every other file too: a truncated segment makes the log move to a new origin (it writes keys).
  const others = new Map(fs.readdirSync(dir).filter((name) => name !== SEGMENT).map((name) => [name, fs.readFileSync(path.join(dir, name))]))
  const restore = (): void => {
    for (const name of fs.readdirSync(dir)) if (name !== SEGMENT && !others.has(name)) fs.rmSync(path.join(dir, name))
    for (const [name, bytes] of others) fs.writeFileSync(path.join(dir, name), bytes)
    fs.writeFileSync(file, pristine)
  }
  const batches = batchExtents(pristine)
  const dataEnd = batches[batches.length - 1]!.end
  t.equal(batches[batches.length - 1]!.eventsAfter, expected.length)
  const random = prng(20261122)
  t.comment(`seed 20261122; data end ${dataEnd}; offsets ${dataEnd - 8192} to ${dataEnd + 8}`)
  let cases = 0
  let failures = 0
  for (let k = Math.max(4096, dataEnd - 8192); k <= dataEnd + 8; k++) {
    for (const kind of ['truncate', 'zeros', 'ones', 'random'] as const) {
      const damaged = Buffer.from(pristine)
      if (kind === 'truncate') damaged.fill(0, k)
      else if (kind === 'zeros') damaged.fill(0, k)
      else if (kind === 'ones') damaged.fill(0xff, k)
      else for (let i = k; i < damaged.length; i++) damaged[i] = Math.floor(random() * 256)
      let firstDiff = k
      while (firstDiff < damaged.length && damaged[firstDiff] === pristine[firstDiff]) firstDiff++
      const keep = batches.filter((batch) => batch.end <= firstDiff).pop()?.eventsAfter ?? 0
      if (kind === 'truncate') fs.truncateSync(file, k)
      else fs.writeFileSync(file, damaged)
      try {
        const log = await openLog(dir, { ...SMALL, ...quiet, directIo: 'off' })
        const ok = log.length === keep
        let verified = true
        if (ok && (cases % 97 === 0)) {
          const events = await collect(log.read())
          verified = events.every((e, i) => text(e.payload) === expected[i]) && (await log.verify()).ok
        }
        await log.close()
        if (!ok || !verified) {
          failures++
          if (failures < 5) t.fail(`${kind} at ${k}: kept ${log.length} events, expected ${keep}`)
        }
      } catch (error) {
        failures++
        if (failures < 5) t.fail(`${kind} at ${k}: open failed: ${(error as Error).message}`)
      }
      restore()
      cases++
    }
  }
  t.equal(failures, 0, `${cases} damaged tails recovered to exactly the complete batches before the damage`)
})

t.test('after a torn tail is cut, the log appends, verifies and reports what it dropped', async (t) => {
  const dir = tempDir(t)
  const expected = await buildLog(dir, 10)
  const file = path.join(dir, SEGMENT)
  const batches = batchExtents(fs.readFileSync(file))
  const last = batches[batches.length - 1]!
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, Buffer.alloc(3000, 0xab), 0, 3000, last.end - 10)
  fs.closeSync(fd)
  const warnings: LogWarning[] = []
  let log = await openLog(dir, { ...SMALL, onWarning: (w) => warnings.push(w) })
  const kept = batches[batches.length - 2]!.eventsAfter
  t.equal(log.length, kept)
  t.equal(warnings.length, 1)
  t.equal(warnings[0]!.code, 'TRUNCATED_TAIL')
  t.ok(warnings[0]!.bytes! >= 3000, `reports ${warnings[0]!.bytes} bytes dropped`)
  const report = await log.verify()
  t.ok(report.ok)
  t.equal(report.truncated.length, 1)
  t.equal(report.truncated[0]!.segment, SEGMENT)
  await log.append(payload('after the cut'))
  await log.close()
  log = await openLog(dir, SMALL)
  const events = await collect(log.read())
  t.same(events.map((e) => text(e.payload)), [...expected.slice(0, kept), 'after the cut'])
  t.same(log.versionVector(), { [log.replicaId]: kept + 1 })
  await log.close()
})

t.test('damage before the tail: one flipped byte in an early record is fenced off; the log opens, reads go around it, nothing is cut', async (t) => {
  for (const where of [4096 + 70, 4096 + 3, 4096 + 20]) {
    const dir = tempDir(t)
    const expected = await buildLog(dir, 30)
    const file = path.join(dir, SEGMENT)
    const damaged = Buffer.from(fs.readFileSync(file))
    damaged[where] = damaged[where]! ^ 0x40
    fs.writeFileSync(file, damaged)
    const warnings: LogWarning[] = []
    const log = await openLog(dir, { ...SMALL, onWarning: (w) => { warnings.push(w) } })
    t.same(warnings.map((w) => w.code), ['DAMAGED'], `flip at ${where}: reported once`)
    t.equal(warnings[0]?.segment, SEGMENT)
    t.equal(warnings[0]?.offset, 4096, 'naming the offset of the damaged record')
    const [range] = log.damage()
    t.match(range, { segment: SEGMENT, offset: 4096, localFrom: 0, elsewhere: 0 }, 'the range and what it held')
    const lost = range!.localTo - range!.localFrom
    t.same(range!.missing, [{ origin: log.replicaId, from: 0, to: lost }], 'the events a peer can send back')
    const events = await collect(log.read())
    t.same(events.map((e) => text(e.payload)), expected.slice(lost), 'reads return every other event')
    t.equal(events[0]?.localPos, lost, 'at their local positions')
    const report = await log.verify()
    t.notOk(report.ok, 'verify reports the damage')
    t.equal(report.damage[0]?.offset, 4096)
    await log.append(payload('after'))
    await log.close()
    const after = fs.readFileSync(file)
    t.same(after.subarray(0, 4096 + 2048), damaged.subarray(0, 4096 + 2048), 'nothing was cut or rewritten')
  }
})

t.test('damage in checkpointed data that open did not scan: a read fences it off and goes around it; verify lists it', async (t) => {
  const dir = tempDir(t)
  const options = { ...SMALL, segmentBytes: 1 << 20, checkpointIntervalBytes: 4096 }
  let log = await openLog(dir, options)
  for (let i = 0; i < 200; i++) await log.appendBatch([payload(`event ${i}`.padEnd(200, '-'))])
  await log.close()
  t.ok(fs.existsSync(path.join(dir, 'checkpoint')), 'a checkpoint was written')
  const file = path.join(dir, SEGMENT)
  const bytes = fs.readFileSync(file)
  bytes[4096 + 100] = bytes[4096 + 100]! ^ 1
  fs.writeFileSync(file, bytes)
  const warnings: LogWarning[] = []
  log = await openLog(dir, { ...options, onWarning: (w) => { warnings.push(w) } })
  t.equal(log.length, 200, 'open trusts the checkpoint and does not rescan old records')
  t.same(log.damage(), [], 'so it knows of no damage yet')
  const damage: unknown[] = []
  log.on('damage', (range) => damage.push(range))
  const events = await collect(log.read())
  t.equal(events.length, 199, 'a read goes around the damaged record')
  t.equal(events[0]?.localPos, 1)
  t.same(warnings.map((w) => w.code), ['DAMAGED'], 'and reports it')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(damage.length, 1, "with a 'damage' event")
  t.same(log.damage()[0]?.missing, [{ origin: log.replicaId, from: 0, to: 1 }], 'what it held is known from the indexes')
  const report = await log.verify()
  t.notOk(report.ok)
  t.equal(report.damage[0]?.segment, SEGMENT)
  t.equal(report.damage[0]?.offset, 4096)
  await log.close()
})

t.test('a damaged or stale checkpoint is ignored with a warning and the log is scanned', async (t) => {
  const dir = tempDir(t)
  const options = { ...SMALL, segmentBytes: 1 << 20, checkpointIntervalBytes: 4096 }
  let log = await openLog(dir, options)
  for (let i = 0; i < 100; i++) await log.append(payload(`e${i}`.padEnd(100, '.')))
  await log.close()
  const checkpoint = path.join(dir, 'checkpoint')
  const bytes = fs.readFileSync(checkpoint)
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff
  fs.writeFileSync(checkpoint, bytes)
  const warnings: LogWarning[] = []
  log = await openLog(dir, { ...options, onWarning: (w) => warnings.push(w) })
  t.equal(log.length, 100)
  t.ok(warnings.some((w) => w.code === 'CHECKPOINT_IGNORED'))
  t.same((await collect(log.read({ from: 99 }))).map((e) => text(e.payload).trim()), ['e99'.padEnd(100, '.')])
  await log.close()
})

t.test('a segment torn while being created is removed; a copied segment file (its header names another index) is CORRUPT', async (t) => {
  const dir = tempDir(t)
  const options = { ...SMALL, segmentBytes: 64 << 10 }
  let log = await openLog(dir, options)
  for (let i = 0; i < 20; i++) await log.append(payload(`e${i}`))
  await log.close()
  const torn = path.join(dir, '000000000001.seg')
  fs.writeFileSync(torn, Buffer.alloc(100)) // header never written
  const warnings: LogWarning[] = []
  log = await openLog(dir, { ...options, onWarning: (w) => warnings.push(w) })
  t.equal(log.length, 20)
  t.ok(warnings.some((w) => w.code === 'REMOVED_TORN_SEGMENT'))
  t.notOk(fs.existsSync(torn))
  await log.close()

  const gap = path.join(dir, '000000000003.seg')
  fs.copyFileSync(path.join(dir, SEGMENT), gap)
  fs.copyFileSync(path.join(dir, SEGMENT), path.join(dir, '000000000002.seg'))
  await t.rejects(openLog(dir, options), { code: 'CORRUPT' }, 'a segment sequence with holes is CORRUPT')
})

t.test('a damaged replica file is CORRUPT', async (t) => {
  const dir = tempDir(t)
  const log = await openLog(dir)
  await log.close()
  fs.writeFileSync(path.join(dir, 'replica'), 'garbage')
  await t.rejects(openLog(dir), { code: 'CORRUPT', message: /replica/ })
})

t.test('a checkpoint that ends exactly at the end of a segment', async (t) => {
  // 52-byte payloads make 128-byte records: 480 of them fill a 64 KiB segment exactly, and a
  // checkpoint interval of 64 KiB puts the checkpoint at that very end.
  for (const after of [0, 1, 3]) {
    const dir = tempDir(t)
    const options = { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 1024, checkpointIntervalBytes: 64 << 10 }
    let log = await openLog(dir, options)
    for (let i = 0; i < 480 + after; i++) await log.append(new Uint8Array(52).fill(i & 0xff))
    await log.close()
    log = await openLog(dir, { ...options, onWarning: (w) => t.fail(`unexpected warning ${w.message}`) })
    t.equal(log.length, 480 + after, `${after} events after the full segment`)
    t.ok((await log.verify()).ok)
    await log.append(new Uint8Array(52))
    t.equal((await collect(log.read({ from: 479 }))).length, 2 + after)
    await log.close()
  }
})

t.test('records after damage that were never synced are a torn flush: cut, not CORRUPT', async (t) => {
  // With durability 'none' nothing is synced until close, so every record carries durable 0: a
  // damaged record followed by valid ones is what a crash mid-flush with pages written out of
  // order leaves, and none of it was acknowledged as durable.
  const dir = tempDir(t)
  let log = await openLog(dir, { ...SMALL, durability: 'none' })
  for (let i = 0; i < 20; i++) await log.append(payload(`unsynced ${i}`.padEnd(200, '.')))
  await log.close()
  const file = path.join(dir, SEGMENT)
  const bytes = fs.readFileSync(file)
  const batches = batchExtents(bytes)
  const fifth = batches[4]!.end + 30 // inside the sixth record
  bytes[fifth] = bytes[fifth]! ^ 0xff
  fs.writeFileSync(file, bytes)
  const warnings: LogWarning[] = []
  log = await openLog(dir, { ...SMALL, onWarning: (w) => warnings.push(w) })
  t.equal(log.length, 5, 'kept the records before the damage')
  t.equal(warnings[0]?.code, 'TRUNCATED_TAIL')
  t.ok((await log.verify()).ok)
  await log.close()
})
