// Stored compression (option storedCompression, segment version 4): record bodies of 4 KiB and
// more are stored deflated when that saves an eighth. Reads, recovery, verify, sync and the links
// see the events as if stored plain; a log reads deflated and plain records side by side.

import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import zlib from 'node:zlib'
import t from 'tap'
import { encode } from 'cbor-x'
import { openLog, type Log } from '../../index.js'
import { collect, tempDir } from '../helpers/temp.js'
import { recordExtents } from '../helpers/format-walk.js'
import { signedRecordsSince } from '../helpers/sealed.js'
import { RecordHeader, decodeRecord } from '../../core/records.js'

const DEFLATED = 0x02
const SEGMENT = '000000000000.seg'

/** Readings as the demo's sensors make them: CBOR { sensor, value, unit }. */
function readings(from: number, count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => encode({ sensor: `temperature-${(from + i) % 3}`, value: Math.round((20 + Math.sin(from + i)) * 10) / 10, unit: 'C' }))
}

async function payloads(log: Log, origin?: string): Promise<string[]> {
  return (await collect(log.read())).filter((event) => origin === undefined || event.origin === origin).map((event) => Buffer.from(event.payload).toString('hex'))
}

const hex = (list: Uint8Array[]): string[] => list.map((bytes) => Buffer.from(bytes).toString('hex'))

/** Batches of 1000 readings and of 10, alternating: 5,050 events. */
async function appendReadings(log: Log): Promise<Uint8Array[]> {
  const all: Uint8Array[] = []
  for (let b = 0; b < 10; b++) {
    const batch = readings(all.length, b % 2 === 0 ? 1000 : 10)
    all.push(...batch)
    await log.appendBatch(batch)
  }
  return all
}

t.test('batches of sensor readings are stored deflated at under a fifth of their plain bytes; small batches stay plain; reopened, the log reads and verifies the same', async (t) => {
  const plainDir = tempDir(t)
  const dir = tempDir(t)
  const plain = await openLog(plainDir, { durability: 'interval' })
  let log = await openLog(dir, { durability: 'interval', storedCompression: 'deflate-raw' })
  const all = await appendReadings(log)
  await appendReadings(plain)
  const plainBytes = (await plain.verify()).bytes
  const bytes = (await log.verify()).bytes
  t.ok(bytes < plainBytes / 5, `deflated ${bytes} bytes against ${plainBytes} plain`)
  t.same(await payloads(log), hex(all), 'reads see the events as appended')
  await log.close()
  await plain.close()
  const segment = fs.readFileSync(path.join(dir, SEGMENT))
  t.equal(segment.readUInt16LE(8), 4, 'the segment says version 4')
  t.equal(fs.readFileSync(path.join(plainDir, SEGMENT)).readUInt16LE(8), 3, 'a log without stored compression stays at version 3')
  const records = recordExtents(segment)
  const big = records.filter((record) => record.count === 1000)
  const small = records.filter((record) => record.count === 10)
  t.equal(big.length, 5)
  t.ok(big.every((record) => (record.flags & DEFLATED) !== 0 && record.reserved > record.length), 'each record of 1000 readings is deflated, its reserved field the plain body size')
  t.ok(small.every((record) => (record.flags & DEFLATED) === 0 && record.reserved === 0), 'records of 10 readings (under 4 KiB) stay plain')

  log = await openLog(dir, { durability: 'interval' })
  t.same(await payloads(log), hex(all), 'reopened without the option, the log reads its deflated records')
  const more = readings(all.length, 1000)
  await log.appendBatch(more)
  const report = await log.verify()
  t.ok(report.ok, 'verify checks every record and link, deflated or not')
  t.equal(report.events, all.length + 1000)
  await log.close()
  const last = recordExtents(fs.readFileSync(path.join(dir, SEGMENT))).at(-1)!
  t.equal(last.flags & DEFLATED, 0, 'what it appends without the option is stored plain')
})

t.test('records move between a deflated log and a plain one: links cover the plain events, so both ends check the same chain', async (t) => {
  const aDir = tempDir(t)
  const a = await openLog(aDir, { durability: 'interval', storedCompression: 'deflate-raw', trust: 'open' })
  const bDir = tempDir(t)
  const b = await openLog(bDir, { durability: 'interval', trust: 'open' })
  t.teardown(async () => { await a.close(); await b.close() })
  const fromA = await appendReadings(a)
  await a.flush() // only durable batches are signed
  const toB = await b.mergeRecords(await signedRecordsSince(a), { remote: true, sealed: true })
  t.equal(toB.added, fromA.length, 'the plain log takes every record')
  t.same(await payloads(b, a.replicaId), hex(fromA))
  t.ok((await b.verify()).ok, 'the plain log verifies the chain the deflated log made')
  const fromB = readings(100_000, 1000)
  await b.appendBatch(fromB)
  await b.flush()
  const toA = await a.mergeRecords(await signedRecordsSince(b, { [a.replicaId]: fromA.length }), { remote: true, sealed: true })
  t.equal(toA.added, 1000)
  t.same(await payloads(a, b.replicaId), hex(fromB), 'the deflated log reads back what it merged')
  t.ok((await a.verify()).ok)
  await a.flush()
  const merged = recordExtents(fs.readFileSync(path.join(aDir, SEGMENT))).at(-1)!
  t.ok(merged.count === 1000 && (merged.flags & DEFLATED) !== 0, 'and stored it deflated')
  const events = await collect(a.eventsSince({ [a.replicaId]: fromA.length }))
  t.same(hex(events.map((event) => event.payload)), hex(fromB), 'eventsSince (the per-event sync path) sees plain events too')
})

t.test('a torn deflated record at the end is cut at open; a flipped byte in an old deflated record is fenced off, and the rest reads', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir, { durability: 'fsync', storedCompression: 'deflate-raw' })
  const all = await appendReadings(log)
  await log.close()
  const file = path.join(dir, SEGMENT)
  const records = recordExtents(fs.readFileSync(file))
  const last = records.at(-1)!
  const lastDeflated = records.filter((record) => (record.flags & DEFLATED) !== 0).at(-1)!
  t.equal(last.count, 10)
  // Tear the last deflated record (the last 10 readings after it go too: they came later).
  const bytes = fs.readFileSync(file)
  bytes.fill(0, lastDeflated.offset + Math.floor(lastDeflated.length / 2), last.offset + last.length)
  fs.writeFileSync(file, bytes)
  log = await openLog(dir, { durability: 'fsync', storedCompression: 'deflate-raw', onWarning: () => {} })
  t.same(await payloads(log), hex(all.slice(0, all.length - 1010)), 'the torn record and what came after it are cut')
  await log.close()

  const first = records[0]!
  t.ok((first.flags & DEFLATED) !== 0)
  const damaged = fs.readFileSync(file)
  damaged[first.offset + 64 + 100]! ^= 0x20
  fs.writeFileSync(file, damaged)
  const warnings: string[] = []
  log = await openLog(dir, { durability: 'fsync', storedCompression: 'deflate-raw', onWarning: (warning) => { warnings.push(warning.code) } })
  t.teardown(() => log.close())
  const skipped: number[] = []
  const read = await collect(log.read({ onDamage: (range) => { skipped.push(range.localTo - range.localFrom) } }))
  t.ok(warnings.includes('DAMAGED'), 'the damage is reported')
  t.ok(read.length >= all.length - 1010 - 1000 && read.length < all.length - 1010, `the rest reads (${read.length} events)`)
  t.same(hex(read.map((event) => event.payload)), hex(all.slice(1000, all.length - 1010)), 'every event after the damaged record reads as appended')
})

t.test('a log with encryption stores its bodies plain even with storedCompression: ciphertext does not deflate', async (t) => {
  const dir = tempDir(t)
  const key = { keys: [{ id: 1, key: new Uint8Array(crypto.createHash('sha256').update('stored compression test').digest()) }] }
  const log = await openLog(dir, { durability: 'interval', storedCompression: 'deflate-raw', encryption: key })
  const all = await appendReadings(log)
  t.same(await payloads(log), hex(all))
  await log.close()
  const segment = fs.readFileSync(path.join(dir, SEGMENT))
  t.equal(segment.readUInt16LE(8), 3, 'version 3: nothing deflated')
  t.ok(recordExtents(segment).every((record) => (record.flags & DEFLATED) === 0))
})

t.test('storedCompression takes only its two values', async (t) => {
  await t.rejects(openLog(tempDir(t), { storedCompression: 'zstd' as never }), { code: 'INVALID_ARGUMENT' })
})

t.test('a damaged range of deflated records is repaired in place from a peer\'s events, deflated again to fit', async (t) => {
  const options = { segmentBytes: 1 << 20, cacheBytes: 1 << 20, maxEventBytes: 4096, checkpointIntervalBytes: 1 << 30, storedCompression: 'deflate-raw' as const }
  const origin = await openLog(tempDir(t), { durability: 'interval' })
  t.teardown(() => origin.close())
  const batch = readings(0, 2000)
  await origin.appendBatch(batch.slice(0, 1000))
  await origin.appendBatch(batch.slice(1000))
  await origin.flush()
  const dir = tempDir(t)
  let log = await openLog(dir, options)
  await log.append(readings(9000, 1)[0]!)
  t.equal((await log.mergeRecords(await signedRecordsSince(origin), { remote: true, sealed: true })).added, 2000)
  await log.append(readings(9001, 1)[0]!)
  await log.close()
  const file = path.join(dir, SEGMENT)
  // The origin's first batch: its second goes on after it, so the repair needs the events back.
  const merged = recordExtents(fs.readFileSync(file)).find((record) => record.count > 1)!
  t.ok(merged.count === 1000 && (merged.flags & DEFLATED) !== 0, 'the merged batches are stored deflated')
  const bytes = fs.readFileSync(file)
  bytes[merged.offset + 64 + 40]! ^= 0x20
  fs.writeFileSync(file, bytes)
  log = await openLog(dir, { ...options, onWarning: () => undefined })
  t.teardown(() => log.close())
  t.ok((await collect(log.read())).length < 2002, 'reads go around the damaged record')
  t.ok(log.damage().length > 0, 'it is fenced off')
  await log.mergeRecords(await signedRecordsSince(origin), { remote: true, sealed: true })
  for (let i = 0; i < 20 && log.damage().length > 0; i++) await new Promise((resolve) => setImmediate(resolve))
  await log.flush()
  t.same(log.damage(), [], 'the peer\'s events fill the range again')
  t.same(await payloads(log, origin.replicaId), hex(batch), 'every event of the batch reads back')
  const report = await log.verify()
  t.ok(report.ok, 'verify checks the rewritten records and their link')
  t.equal(report.repaired.length, 0, 'the events took their old place: no HOLE, no fill')
  const rewritten = recordExtents(fs.readFileSync(file)).filter((record) => record.count > 1)
  t.ok(rewritten.length > 0 && rewritten.every((record) => (record.flags & DEFLATED) !== 0), 'and they are stored deflated again')
})

t.test('a deflated record that lies about its body is refused with a reason, never inflated past its bound', async (t) => {
  const events = Buffer.concat(readings(0, 100).map((reading) => {
    const header = Buffer.alloc(12)
    header.writeUInt32LE(reading.length, 0)
    return Buffer.concat([header, reading])
  }))
  const record = (stream: Buffer, reserved: number): Buffer => {
    const bytes = Buffer.alloc(64 + stream.length)
    bytes.writeUInt32LE(bytes.length, 8)
    bytes[12] = 1 // EVENTS
    bytes[13] = DEFLATED
    bytes.writeUInt32LE(100, 16)
    bytes.writeUInt32LE(reserved, 20)
    stream.copy(bytes, 64)
    return bytes
  }
  const decode = (bytes: Buffer): string => decodeRecord(bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, bytes.length, null, new RecordHeader())
  const stream = zlib.deflateRawSync(events)
  t.equal(decode(record(stream, events.length)), 'ok', 'the honest record decodes')
  t.match(decode(record(Buffer.concat([stream, Buffer.from('trailing')]), events.length)), /8 bytes after its deflate stream/, 'bytes after the stream')
  t.match(decode(record(stream, events.length - 1)), /does not inflate to/, 'a body larger than it says')
  t.match(decode(record(stream, events.length + 1)), /inflates to \d+ bytes, not/, 'a body smaller than it says')
  t.match(decode(record(stream, (1 << 20) + 1)), /claims 1048577 bytes/, 'more than 1 MiB is refused before inflating')
  t.match(decode(record(Buffer.from('not a deflate stream at all'), events.length)), /does not inflate/, 'not deflate at all')
})
