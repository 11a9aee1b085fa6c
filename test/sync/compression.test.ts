// Compressed events messages (docs/sync.md, "Compression"): sensor readings cross the broker at a
// fraction of their size, a replica that sends uncompressed still reads compressed messages,
// ciphertext goes uncompressed, and a compressed message that lies about its size is dropped.

import t from 'tap'
import mqtt from 'mqtt'
import { decode, encode } from 'cbor-x'
import { openLog, startSync, type Log, type SyncHandle } from '../../index.js'
import { wireRecords, recordsOfEvents } from '../../sync/protocol.js'
import { startTestBroker } from '../helpers/broker.js'
import { collect, tempDir } from '../helpers/temp.js'
import zlib from 'node:zlib'

const FAST = { announceIntervalMs: 200 }

/** Readings as the demo's sensors make them: CBOR { sensor, value, unit }. */
function readings(count: number): Uint8Array[] {
  let value = 20
  let state = 11
  return Array.from({ length: count }, (_, i) => {
    state = (state * 1664525 + 1013904223) >>> 0
    value = Math.round((value + (state / 2 ** 32 - 0.5) * 2) * 10) / 10
    return encode({ sensor: `temperature-${i % 3}`, value, unit: 'C' })
  })
}

async function until(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** A raw subscriber on the log's events topics: bytes on the wire, events and compressed messages seen. */
async function wiretap(t: { teardown(fn: () => unknown): void }, url: string, logName: string): Promise<{ bytes: number, bodyBytes: number, messages: number, compressed: number }> {
  const tap = { bytes: 0, bodyBytes: 0, messages: 0, compressed: 0 }
  const client = await mqtt.connectAsync(url, { protocolVersion: 4 })
  t.teardown(() => client.endAsync())
  client.on('message', (_topic, payload) => {
    const map = decode(payload) as { z?: string, r: [number, number, Uint8Array | number][] }
    tap.bytes += payload.length
    tap.messages++
    if (map.z !== undefined) tap.compressed++
    for (const entry of map.r) tap.bodyBytes += typeof entry[2] === 'number' ? entry[2] : entry[2].length
  })
  await client.subscribeAsync(`interlog/v1/${logName}/events/+`, { qos: 1 })
  return tap
}

t.test('sensor readings go compressed, at under 35% of their uncompressed bytes, and arrive whole', async (t) => {
  const broker = await startTestBroker(t)
  const tap = await wiretap(t, broker.url, 'readings')
  const a = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20 })
  const b = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20, trust: 'open' })
  const syncs: SyncHandle[] = []
  t.teardown(async () => { for (const sync of syncs) await sync.close(); await a.close(); await b.close() })
  const all = readings(20_000)
  for (let i = 0; i < all.length; i += 10) await a.appendBatch(all.slice(i, i + 10)) // as the demo's sensors append: 10 at a time
  syncs.push(await startSync(a, { url: broker.url, logName: 'readings', ...FAST }))
  syncs.push(await startSync(b, { url: broker.url, logName: 'readings', ...FAST, compression: 'none' }))
  await until(() => b.versionVector()[a.replicaId] === all.length, 'replication')
  const recordBytes = all.reduce((sum, payload) => sum + 12 + payload.length, 0)
  await until(() => tap.bodyBytes >= recordBytes, 'the wiretap (it may lag behind b)')
  const got = (await collect(b.read({ from: 0 }))).map((event) => Buffer.from(event.payload).toString('hex'))
  t.same(got, all.map((payload) => Buffer.from(payload).toString('hex')), 'every reading arrived, byte for byte')
  t.ok(tap.compressed > 0 && tap.compressed === tap.messages, `every events message went compressed (${tap.compressed} of ${tap.messages})`)
  const share = tap.bytes / tap.bodyBytes
  t.comment(`wire: ${tap.bytes} bytes for ${tap.bodyBytes} bytes of records (${(100 * share).toFixed(1)}%), ${(tap.bytes / all.length).toFixed(1)} bytes per reading`)
  t.ok(share <= 0.35, `wire bytes are ${(100 * share).toFixed(1)}% of the uncompressed records (at most 35%)`)

  // b sends uncompressed ('none') but reads compressed; a reads what b sends.
  await b.appendBatch(readings(100))
  await until(() => a.versionVector()[b.replicaId] === 100, 'the way back')
  t.pass('a replica with compression none still syncs both ways')
})

t.test('ciphertext of larger events goes uncompressed (it does not compress), and syncs', async (t) => {
  const broker = await startTestBroker(t)
  const tap = await wiretap(t, broker.url, 'secret')
  const key = { keys: [{ id: 1, key: new Uint8Array(32).fill(5) }] }
  const a = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20, encryption: key })
  const b = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20, trust: 'open', encryption: key })
  const syncs: SyncHandle[] = []
  t.teardown(async () => { for (const sync of syncs) await sync.close(); await a.close(); await b.close() })
  // 1 KiB each: the envelope's and the framing's few compressible bytes are too few to matter.
  // (Small ones, like the readings above, do compress by about a third even encrypted, and go so.)
  const all = Array.from({ length: 1000 }, (_, i) => new Uint8Array(1024).fill(i & 255))
  for (let i = 0; i < all.length; i += 100) await a.appendBatch(all.slice(i, i + 100))
  for (const log of [a, b] as Log[]) syncs.push(await startSync(log, { url: broker.url, logName: 'secret', ...FAST, maxMessageBytes: 16 << 10 }))
  await until(() => b.versionVector()[a.replicaId] === all.length, 'replication')
  await until(() => tap.bodyBytes >= all.length * (12 + 1024 + 33), 'the wiretap (it may lag behind b)')
  t.ok(tap.messages > 60, `${tap.messages} messages`)
  t.ok(tap.compressed === 0 && tap.messages > 0, `none went compressed (${tap.compressed} of ${tap.messages}); one in 65 tries it`)
  t.ok(tap.bytes > tap.bodyBytes, 'the wire carries every byte of the records')
})

t.test('compressed messages that lie are dropped with a reason', async (t) => {
  const broker = await startTestBroker(t)
  const lines: string[] = []
  const b = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20, trust: 'off' })
  const sync = await startSync(b, { url: broker.url, logName: 'main', ...FAST, logger: (_level, line) => lines.push(line) })
  t.teardown(async () => { await sync.close(); await b.close() })
  const raw = await mqtt.connectAsync(broker.url, { protocolVersion: 4 })
  t.teardown(() => raw.endAsync())
  const fake = 'f'.repeat(32)
  const records = recordsOfEvents([{ pos: 0, time: 1, payload: new Uint8Array(40).fill(1) }])
  const body = records[0]!.body
  const packed = zlib.deflateRawSync(body)
  const bomb = zlib.deflateRawSync(Buffer.alloc(32 << 20))
  const message = (fields: object): Buffer => Buffer.from(encode({ v: 2, k: 'e', s: fake, o: fake, ...fields }))
  const lies: Buffer[] = [
    message({ z: 'zstd', d: packed, r: [[0, 1, body.length]] }), // a compression it does not read
    message({ z: 'deflate-raw', d: Buffer.from('not deflate'), r: [[0, 1, body.length]] }),
    message({ z: 'deflate-raw', d: packed, r: [[0, 1, body.length + 8]] }), // declares more than inflates
    message({ z: 'deflate-raw', d: bomb, r: [[0, 1, body.length]] }), // inflates to far more than declared
    message({ z: 'deflate-raw', d: packed, r: [[0, 1, 20 << 20]] }), // declares more than a message may inflate to
    message({ z: 'deflate-raw', d: packed, r: wireRecords(records) }), // a body where a length belongs
  ]
  for (const lie of lies) await raw.publishAsync(`interlog/v1/main/events/${fake}`, lie, { qos: 1 })
  await until(() => sync.status().messagesDropped >= lies.length, 'the drops', 10_000)
  t.equal(sync.status().messagesDropped, lies.length, 'each is dropped')
  t.equal(b.length, 0, 'nothing stored')
  t.ok(lines.every((line) => /dropped a message/.test(line)), lines.join(' | '))
  t.ok(lines.some((line) => /not a compression this replica reads/.test(line)))
  t.ok(lines.some((line) => /does not inflate|inflates to/.test(line)))
  // The honest one goes in.
  await raw.publishAsync(`interlog/v1/main/events/${fake}`, message({ z: 'deflate-raw', d: packed, r: [[0, 1, body.length]] }), { qos: 1 })
  await until(() => b.length === 1, 'the honest message')
})
