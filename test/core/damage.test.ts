// Damage in old data: fenced off, gone around, repaired in place (core/damage.ts, core/survey.ts,
// core/heal.ts). Real files, bytes changed on disk between opens; the peer that gives events back is
// another log, fed what sync would send.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { openLog, type Log, type LogWarning, type RemoteEvent } from '../../index.js'
import { remoteOf } from '../helpers/sealed.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'
import { MemoryDisk } from '../../sim/storage.js'
import { Prng } from '../../sim/prng.js'

const SMALL = { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 2048, checkpointIntervalBytes: 1 << 30 }

/** What sync would send `to` from `from`, of `origin` from position `pos`: messages of 50, the last own link of each signed. */
async function offer(from: Log, to: Log, origin: string, pos: number): Promise<void> {
  const events = remoteOf(await collect(from.eventsSince({ ...from.versionVector(), [origin]: pos }, { raw: true }))).filter((e) => e.origin === origin)
  for (let i = 0; i < events.length; i += 50) {
    const message: RemoteEvent[] = events.slice(i, i + 50)
    for (let j = message.length - 1; j >= 0; j--) {
      if (message[j]!.seal === undefined) continue
      message[j]!.seal = await from.signSeal({ origin, seal: message[j]!.seal! })
      break
    }
    await to.merge(message, { remote: true })
  }
}

async function settle(log: Log): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
  await log.flush()
}

function flip(file: string, at: number): void {
  const bytes = fs.readFileSync(file)
  bytes[at] = bytes[at]! ^ 0x20
  fs.writeFileSync(file, bytes)
}

t.test('a range whose events live elsewhere is repaired at once with a HOLE: verify lists it as repaired, and the segment says a version that allows it', async (t) => {
  const dir = tempDir(t)
  const peer = await openLog(tempDir(t), SMALL)
  t.teardown(() => peer.close())
  await peer.appendBatch(Array.from({ length: 10 }, (_, i) => payload(`peer ${i}`)))
  let log = await openLog(dir, SMALL)
  for (let i = 0; i < 20; i++) await log.append(payload(`own ${i}`))
  const before = log.length
  await offer(peer, log, peer.replicaId, 0)
  const peerAt = (await collect(log.read())).find((e) => e.origin === peer.replicaId)!.localPos
  for (let i = 20; i < 40; i++) await log.append(payload(`own ${i}`))
  await log.close()
  // The peer's batch (10 events, one record) in this log: its origin has nothing after it here.
  const segment = path.join(dir, '000000000000.seg')
  const records = fs.readFileSync(segment)
  const marker = records.indexOf(Buffer.from('peer 4'))
  flip(segment, marker)
  const warnings: LogWarning[] = []
  log = await openLog(dir, { ...SMALL, onWarning: (w) => { warnings.push(w) } })
  t.equal(before, peerAt, 'the damaged batch starts right after the first own events')
  await settle(log)
  t.same(warnings.map((w) => w.code), ['DAMAGED', 'HEALED'], 'fenced off at open, repaired at once')
  t.same(log.damage(), [], 'nothing stays fenced')
  t.equal(log.versionVector()[peer.replicaId], undefined, 'the peer origin\'s events no longer count: sync brings them back')
  const report = await log.verify()
  t.ok(report.ok, 'verify: no damage')
  t.equal(report.repaired.length, 1, 'one repaired range')
  t.equal(report.repaired[0]?.positions, 10, 'holding the ten local positions')
  t.ok(fs.readFileSync(segment).readUInt16LE(8) >= 2, 'the segment header says a version that allows HOLE records (2; 3, which this build writes, allows them too)')
  await offer(peer, log, peer.replicaId, 0)
  t.equal(log.versionVector()[peer.replicaId], 10, 'the events come back at the end of the log')
  const texts = (await collect(log.read())).map((e) => text(e.payload))
  t.same(texts.filter((x) => x.startsWith('own')), Array.from({ length: 40 }, (_, i) => `own ${i}`), 'own events read as before')
  t.same(texts.filter((x) => x.startsWith('peer')), Array.from({ length: 10 }, (_, i) => `peer ${i}`))
  await log.close()
  const again = await openLog(dir, SMALL)
  t.ok((await again.verify()).ok, 'and all of it reopens clean')
  t.equal(again.length, 60, 'local positions: 40 own, 10 skipped, 10 back')
  await again.close()
})

t.test('a batch whose link covers the damaged records is rewritten with them: the repair widens to whole batches', async (t) => {
  const dir = tempDir(t)
  const origin = await openLog(tempDir(t), SMALL)
  t.teardown(() => origin.close())
  // One merged batch of about 40 KiB: records split at 16 KiB, one link on the last.
  await origin.appendBatch(Array.from({ length: 40 }, (_, i) => payload(`big ${i} `.padEnd(1000, '.'))))
  let log = await openLog(dir, SMALL)
  await log.append(payload('own before'))
  await offer(origin, log, origin.replicaId, 0)
  await log.append(payload('own after'))
  await log.close()
  const segment = path.join(dir, '000000000000.seg')
  flip(segment, fs.readFileSync(segment).indexOf(Buffer.from('big 2 ')))
  log = await openLog(dir, { ...SMALL, onWarning: () => undefined })
  t.teardown(() => log.close())
  const [range] = log.damage()
  t.ok(range !== undefined && range.missing.some((m) => m.origin === origin.replicaId), 'the damaged record of the big batch is fenced off')
  t.ok((await collect(log.read())).filter((e) => e.origin === origin.replicaId).length < 40, 'reads go around it')
  await offer(origin, log, origin.replicaId, 0)
  await settle(log)
  t.same(log.damage(), [], 'a peer gives the events back; the repair checks them against the link after the range')
  const events = (await collect(log.read())).filter((e) => e.origin === origin.replicaId)
  t.same(events.map((e) => text(e.payload)), Array.from({ length: 40 }, (_, i) => `big ${i} `.padEnd(1000, '.')), 'every event of the batch reads back')
  t.ok((await log.verify()).ok, 'verify checks the rewritten links')
})

t.test('events that do not match the chain held are not written back', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir, SMALL)
  for (let i = 0; i < 30; i++) await log.append(payload(`own ${i}`))
  const origin = log.replicaId
  await log.close()
  flip(path.join(dir, '000000000000.seg'), fs.readFileSync(path.join(dir, '000000000000.seg')).indexOf(Buffer.from('own 3')))
  log = await openLog(dir, { ...SMALL, onWarning: () => undefined })
  t.teardown(() => log.close())
  const [range] = log.damage()
  const lost = range!.missing[0]!
  // Forged events for the hole: right positions, other payloads, the log's own link taken from elsewhere.
  const forged: RemoteEvent[] = []
  for (let pos = lost.from; pos < lost.to; pos++) forged.push({ origin, pos, time: 1, payload: payload(`forged ${pos}`) })
  const result = await log.merge(forged, { remote: true })
  t.equal(result.healing, forged.length, 'merge hands them to the repair')
  await settle(log)
  t.equal(log.damage().length, 1, 'which refuses them: the range stays fenced off')
  t.notOk((await collect(log.read())).some((e) => text(e.payload).startsWith('forged')), 'and nothing forged is read')
})

t.test('a sealed segment whose header does not read back is rebuilt from its neighbours; a missing segment file is fenced off', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir, SMALL)
  for (let i = 0; i < 600; i++) await log.append(payload(`event ${i} `.padEnd(300, '.')))
  await log.close()
  const files = fs.readdirSync(dir).filter((name) => name.endsWith('.seg')).sort()
  t.ok(files.length >= 4, `${files.length} segments`)
  flip(path.join(dir, files[1]!), 30)
  const warnings: LogWarning[] = []
  log = await openLog(dir, { ...SMALL, onWarning: (w) => { warnings.push(w) } })
  t.match(warnings.map((w) => w.message).join('\n'), /header of segment 000000000001\.seg did not read back.*rebuilt/, 'the header is rebuilt and written back')
  t.equal((await collect(log.read())).length, 600, 'every event reads')
  t.ok((await log.verify()).ok)
  await log.close()

  fs.rmSync(path.join(dir, files[2]!))
  warnings.length = 0
  log = await openLog(dir, { ...SMALL, onWarning: (w) => { warnings.push(w) } })
  t.match(warnings[0]?.message, /segment file 000000000002\.seg is missing/, 'a missing segment file is reported')
  const events = await collect(log.read())
  t.ok(events.length < 600 && events.length > 300, `reads go around it (${events.length} events)`)
  t.equal(events[events.length - 1]?.pos, 599, 'and on to the end')
  const report = await log.verify()
  t.notOk(report.ok)
  t.match(report.damage[0], { segment: files[2], reason: 'segment file missing' })
  await log.append(payload('appends go on'))
  await log.close()
})

t.test('a crash inside a repair leaves the range fenced or repaired, never worse', async (t) => {
  let healed = 0
  let fenced = 0
  for (let step = 1; step <= 12; step++) {
    const disk = new MemoryDisk(new Prng(step))
    const options = { ...SMALL, identity: false, storage: disk.session(), onWarning: () => undefined }
    const peer = await openLog('/peer', { ...options, storage: disk.session() })
    await peer.appendBatch(Array.from({ length: 10 }, (_, i) => payload(`peer ${i}`)))
    let log = await openLog('/log', options)
    for (let i = 0; i < 20; i++) await log.append(payload(`own ${i}`))
    await log.merge((await collect(peer.eventsSince({}, { raw: true }))).map((e) => ({ origin: e.origin, pos: e.pos, time: e.time, payload: e.payload })))
    for (let i = 20; i < 40; i++) await log.append(payload(`own ${i}`))
    await log.close()
    await peer.close()
    const session = disk.session()
    const bytes = session.readFileSync('/log/000000000000.seg')
    const at = bytes.indexOf(Buffer.from('peer 4'))
    const fd = session.openSync('/log/000000000000.seg', 'write')
    session.writeSync(fd, Buffer.from([bytes[at]! ^ 0x20]), 0, 1, at)
    session.fsyncSync(fd)
    session.closeSync(fd)
    disk.armCrash(step + 20)
    try {
      log = await openLog('/log', { ...options, storage: disk.session() })
      await settle(log).catch(() => undefined)
      await log.simulateCrash().catch(() => undefined)
    } catch {
      // the crash came during open itself
    }
    disk.disarm()
    disk.crash()
    log = await openLog('/log', { ...options, storage: disk.session() })
    const own = (await collect(log.read())).filter((e) => text(e.payload).startsWith('own')).map((e) => text(e.payload))
    if (own.length !== 40) t.fail(`crash at step ${step}: ${own.length} own events read back`)
    await settle(log)
    if (log.damage().length === 0 && (await log.verify()).ok) healed++
    else fenced++
    await log.close()
  }
  t.equal(healed + fenced, 12, `every run opens and reads its own events (${healed} repaired by the reopen, ${fenced} still fenced)`)
  t.ok(healed > 0, 'repairs run to the end after the crash')
})
