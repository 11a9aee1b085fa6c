// Golden logs of every segment version (test/fixtures/format, made by make*.mjs there): this build
// reads them as they were written, read-only and writable, and verify finds them whole. v2 holds
// a HOLE record and a record with extension fill, as repairs write them (docs/format.md). And a
// v1 log with payload encryption as today's build writes it (make-encrypted.mjs): one envelope
// per event, kept for the day encryption moves to one envelope per record. v4-deflated holds
// deflated records (stored compression) beside plain ones.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { openLog, type RemoteRecord } from '../../index.js'
import { collect, tempDir } from '../helpers/temp.js'
import { recordExtents } from '../helpers/format-walk.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/format', import.meta.url))
const OPTIONS = { segmentBytes: 1 << 20, cacheBytes: 1 << 20, maxEventBytes: 96 << 10 }

interface Expected {
  events: { localPos: number, origin: string, pos: number, time: number, text: string }[]
  repaired: { segment: string, offset: number, bytes: number, positions: number }[]
}

for (const version of ['v1', 'v2', 'v4-deflated']) {
  t.test(`the ${version} golden log reads back as written, read-only and writable`, async (t) => {
    const source = path.join(FIXTURES, version)
    const expected = JSON.parse(fs.readFileSync(path.join(source, 'expected.json'), 'utf8')) as Expected
    const dir = path.join(tempDir(t), version)
    fs.cpSync(source, dir, { recursive: true })
    const segment = path.join(dir, '000000000000.seg')
    t.equal(fs.readFileSync(segment).readUInt16LE(8), version === 'v1' ? 1 : version === 'v2' ? 2 : 4, 'the segment header says its version')
    for (const readOnly of [true, false]) {
      const warnings: string[] = []
      const log = await openLog(dir, { ...OPTIONS, readOnly, onWarning: (w) => { warnings.push(w.code) } })
      const events = (await collect(log.read())).map((e) => ({ localPos: e.localPos, origin: e.origin, pos: e.pos, time: e.time, text: Buffer.from(e.payload).toString('latin1') }))
      t.same(events, expected.events, `${readOnly ? 'read-only' : 'writable'}: every event, at its positions`)
      t.same(warnings, [], 'nothing to warn about')
      const report = await log.verify()
      t.ok(report.ok, 'verify finds it whole')
      t.same(report.repaired, expected.repaired, 'and lists the ranges repairs rewrote')
      await log.close()
    }
    if (version === 'v4-deflated') {
      const records = recordExtents(fs.readFileSync(segment))
      t.ok(records.some((record) => (record.flags & 0x02) !== 0 && record.extensionBytes === 176), 'v4 holds a merged batch deflated, with its seal')
      t.ok(records.some((record) => (record.flags & 0x02) === 0), 'and plain records beside the deflated ones')
    }
    if (version === 'v2') {
      t.ok(expected.repaired.length > 0 && expected.repaired.every((range) => range.positions > 0), 'v2 holds a HOLE')
      const bytes = fs.readFileSync(segment)
      let fill = false
      for (let offset = 4096; offset + 64 <= bytes.length;) {
        const length = bytes.readUInt32LE(offset + 8)
        if (length === 0) break
        if (bytes[offset + 12] === 1 && ![0, 80, 176].includes(bytes.readUInt16LE(offset + 14))) fill = true
        offset += Math.ceil(length / 8) * 8
      }
      t.ok(fill, 'and a record whose extension is a link followed by fill')
    }
  })
}

for (const version of ['v1', 'v3']) t.test(`the ${version} golden log with payload encryption (${version === 'v1' ? 'one envelope per event' : 'one batch envelope per linked record'}) reads back, syncs and keeps its secrets`, async (t) => {
  const source = path.join(FIXTURES, `${version}-encrypted`)
  const expected = JSON.parse(fs.readFileSync(path.join(source, 'expected.json'), 'utf8')) as Expected
  const [id, hex] = fs.readFileSync(path.join(source, 'log.key'), 'utf8').trim().split(' ')
  const encryption = { keys: [{ id: Number(id), key: new Uint8Array(Buffer.from(hex!, 'hex')) }] }
  const dir = path.join(tempDir(t), `${version}-encrypted`)
  fs.cpSync(source, dir, { recursive: true })
  const segment = path.join(dir, '000000000000.seg')
  t.equal(fs.readFileSync(segment).readUInt16LE(8), version === 'v1' ? 1 : 3, 'the segment header says its version')
  for (const readOnly of [true, false]) {
    const log = await openLog(dir, { ...OPTIONS, readOnly, encryption })
    const events = (await collect(log.read())).map((e) => ({ localPos: e.localPos, origin: e.origin, pos: e.pos, time: e.time, text: Buffer.from(e.payload).toString('latin1') }))
    t.same(events, expected.events, `${readOnly ? 'read-only' : 'writable'}: every event decrypts, at its positions`)
    t.ok((await log.verify()).ok, 'verify finds it whole')
    await log.close()
  }
  const without = await openLog(dir, { ...OPTIONS, readOnly: true })
  const stored = await collect(without.read())
  t.ok(stored.length === expected.events.length && stored.every((e) => !Buffer.from(e.payload).toString('latin1').includes('secret')), 'without the key: no plaintext')
  if (version === 'v1') t.ok(stored.every((e) => e.payload[0] === 0xe1), 'one envelope per event')
  else t.ok(stored.filter((e) => e.seal !== undefined).every((e) => e.seal![0] === 0xe2), 'each link starts with its batch envelope')
  await without.close()
  // Its records still go to a new replica as they are (sync v2's path) and decrypt there.
  const log = await openLog(dir, { ...OPTIONS, encryption })
  const peer = await openLog(tempDir(t), { ...OPTIONS, encryption, trust: 'open' })
  t.teardown(async () => { await log.close(); await peer.close() })
  for (const origin of Object.keys(log.versionVector())) {
    const records = (await collect(log.recordsSince({}))).filter((record) => record.origin === origin)
    const last = records[records.length - 1]!
    const sealed: RemoteRecord[] = records.map((record) => ({ origin, pos: record.pos, count: record.count, body: record.body, seal: record.seal }))
    sealed[sealed.length - 1]!.seal = await log.signSeal(last as { origin: string, seal: Uint8Array })
    const result = await peer.mergeRecords(sealed, { remote: true })
    t.equal(result.added, log.versionVector()[origin], `origin ${origin.slice(0, 8)}: every event merged`)
  }
  const copied = (await collect(peer.read())).map((e) => Buffer.from(e.payload).toString('latin1')).sort()
  t.same(copied, expected.events.map((e) => e.text).sort(), 'the new replica reads the same plaintext')
})
