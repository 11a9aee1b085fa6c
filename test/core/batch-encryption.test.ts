// Encryption a batch at a time (segment version 3): a log with identity seals each linked record's
// payloads with one AEAD and stores its batch envelope before the link. Reads, relays, merges,
// repairs and moves to a new origin see the same events as with one envelope per event.

import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import t from 'tap'
import { openLog, type Log, type LogRecord, type RemoteEvent, type RemoteRecord } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'
import { BATCH_ENVELOPE_BYTES, LINK_BYTES, SEAL_BYTES } from '../../core/format.js'
import { parseSeal } from '../../core/seal.js'

const KEY = { keys: [{ id: 7, key: new Uint8Array(crypto.createHash('sha256').update('batch encryption test key').digest()) }] }

function readings(from: number, count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => payload(`reading ${from + i} ${'x'.repeat((from + i) % 97)}`))
}

/** Own records from `from`, the last link signed as sync signs it. */
async function signedRecords(log: Log, from = 0): Promise<RemoteRecord[]> {
  const records: LogRecord[] = (await collect(log.recordsSince({ [log.replicaId]: from }))).filter((record) => record.origin === log.replicaId)
  const out: RemoteRecord[] = records.map((record) => ({ origin: record.origin, pos: record.pos, count: record.count, body: record.body, seal: record.seal }))
  out[out.length - 1]!.seal = await log.signSeal(records[records.length - 1] as { origin: string, seal: Uint8Array })
  return out
}

async function signedEvents(log: Log): Promise<RemoteEvent[]> {
  const events = (await collect(log.eventsSince({}, { raw: true }))).map((event) => ({ origin: event.origin, pos: event.pos, time: event.time, payload: event.payload, seal: event.seal }))
  events[events.length - 1]!.seal = await log.signSeal(events[events.length - 1] as { origin: string, seal: Uint8Array })
  return events
}

async function texts(log: Log, options: { from?: number, to?: number } = {}): Promise<string[]> {
  return (await collect(log.read(options))).map((event) => text(event.payload))
}

const expected = (from: number, count: number): string[] => readings(from, count).map(text)

t.test('an encrypted log with identity stores each linked record as ciphertext with one batch envelope, and reads it back from any position', async (t) => {
  const dir = tempDir(t)
  const log = await openLog(dir, { encryption: KEY, durability: 'interval' })
  await log.appendBatch(readings(0, 1000))
  for (let i = 1000; i < 1005; i++) await log.append(readings(i, 1)[0]!)
  await log.appendBatch(readings(1005, 500))
  await log.flush()
  const records = await collect(log.recordsSince({}))
  for (const record of records) {
    if (record.seal === undefined) continue
    const fields = parseSeal(record.seal)
    if (typeof fields === 'string') throw new Error(fields)
    t.ok(fields.envelope !== null, `record from ${record.pos}: its link carries a batch envelope`)
  }
  t.equal(records.filter((record) => record.seal !== undefined)[0]!.seal!.length, BATCH_ENVELOPE_BYTES + LINK_BYTES, 'a link with its envelope is 120 bytes')
  t.same(await texts(log), expected(0, 1505), 'reads see plaintext')
  t.same(await texts(log, { from: 500, to: 503 }), expected(500, 3), 'a read that starts and ends inside a batch')
  t.same(await texts(log, { from: 1003, to: 1200 }), expected(1003, 197), 'a read across single appends into a batch')
  const tailed: string[] = []
  const abort = new AbortController()
  for await (const event of log.tail({ from: 999, signal: abort.signal })) {
    tailed.push(text(event.payload))
    if (tailed.length === 10) abort.abort()
  }
  t.same(tailed, expected(999, 10), 'tail from inside a batch')
  await log.close()
  const segment = fs.readFileSync(path.join(dir, '000000000000.seg'))
  t.equal(segment.readUInt16LE(8), 3, 'the segment says version 3')
  t.notOk(segment.includes(Buffer.from('reading 42 ')), 'no plaintext on disk')
  const again = await openLog(dir, { encryption: KEY, readOnly: true })
  t.same(await texts(again, { from: 1490 }), expected(1490, 15), 'read back after reopening read-only')
  t.ok((await again.verify()).ok, 'verify checks the chain over the envelopes')
  await again.close()
})

t.test('a relay without the key stores and verifies encrypted batches, and a key holder reads them from it', async (t) => {
  const origin = await openLog(tempDir(t), { encryption: KEY, durability: 'interval' })
  const relay = await openLog(tempDir(t), { durability: 'interval', trust: 'open' })
  const reader = await openLog(tempDir(t), { encryption: KEY, durability: 'interval', trust: 'open' })
  t.teardown(async () => { await origin.close(); await relay.close(); await reader.close() })
  await origin.appendBatch(readings(0, 300))
  await origin.appendBatch(readings(300, 300))
  await origin.flush()
  const result = await relay.mergeRecords(await signedRecords(origin), { remote: true })
  t.equal(result.added, 600, 'the relay stores them')
  t.ok((await relay.verify()).ok, 'and verifies their chain and seal without the key')
  t.notOk(text((await collect(relay.read({ from: 0, to: 1 })))[0]!.payload).startsWith('reading'), 'the relay reads ciphertext')
  const relayed = await collect(relay.recordsSince({}))
  const merged = await reader.mergeRecords(relayed.map((record) => ({ origin: record.origin, pos: record.pos, count: record.count, body: record.body, seal: record.seal })), { remote: true })
  t.equal(merged.added, 600, 'the key holder takes what the relay forwards, seals unchanged')
  t.same(await texts(reader), expected(0, 600))
})

t.test('an altered envelope or ciphertext is refused: by the chain at a relay, by authentication at a key holder', async (t) => {
  const origin = await openLog(tempDir(t), { encryption: KEY, durability: 'interval' })
  const relay = await openLog(tempDir(t), { durability: 'interval', trust: 'open' })
  const holder = await openLog(tempDir(t), { encryption: KEY, durability: 'interval', trust: 'open' })
  t.teardown(async () => { await origin.close(); await relay.close(); await holder.close() })
  await origin.appendBatch(readings(0, 50))
  await origin.flush()
  const records = await signedRecords(origin)
  const seal = Buffer.from(records[records.length - 1]!.seal!)
  t.equal(seal.length, BATCH_ENVELOPE_BYTES + SEAL_BYTES, 'a seal with its envelope is 216 bytes')
  seal[25] = seal[25]! ^ 1 // a byte of the auth tag
  const tampered = records.map((record, i) => (i === records.length - 1 ? { ...record, seal } : record))
  const atRelay = await relay.mergeRecords(tampered, { remote: true })
  t.equal(atRelay.added, 0, 'the relay refuses it: the chain hash covers the envelope')
  t.ok((atRelay.forged ?? 0) > 0 || atRelay.rejected.length > 0 || relay.securityStatus().lastRejection !== null, 'and says why')
  // A batch whose chain holds but whose ciphertext does not open: signed by the origin over bytes encrypted under another key.
  const other = await openLog(tempDir(t), { encryption: { keys: [{ id: 7, key: new Uint8Array(32).fill(9) }] }, durability: 'interval' })
  t.teardown(() => other.close())
  await other.appendBatch(readings(0, 20))
  await other.flush()
  const foreign = await holder.mergeRecords(await signedRecords(other), { remote: true })
  t.equal(foreign.added, 0, 'a key holder refuses a batch that does not open under its key')
  const foreignEvents = await holder.merge(await signedEvents(other), { remote: true })
  t.equal(foreignEvents.added, 0, 'on the event path too')
  t.match(holder.securityStatus().lastRejection ?? '', /authentication/)
})

t.test('merge of events (eventsSince raw) carries the envelope in the link, and sync validators see plaintext', async (t) => {
  const origin = await openLog(tempDir(t), { encryption: KEY, durability: 'interval' })
  const seen: string[] = []
  const holder = await openLog(tempDir(t), {
    encryption: KEY, durability: 'interval', trust: 'open',
    validators: { sync: [{ name: 'spy', function: (event) => { seen.push(text(event.payload)); return undefined } }] },
  })
  t.teardown(async () => { await origin.close(); await holder.close() })
  await origin.appendBatch(readings(0, 40))
  await origin.append(readings(40, 1)[0]!)
  await origin.flush()
  const result = await holder.merge(await signedEvents(origin), { remote: true })
  t.equal(result.added, 41)
  t.same(seen, expected(0, 41), 'validators saw every payload in plaintext')
  t.same(await texts(holder), expected(0, 41))
})

t.test('a log without identity keeps one envelope per event', async (t) => {
  const log = await openLog(tempDir(t), { encryption: KEY, identity: false, trust: 'off', durability: 'interval' })
  t.teardown(() => log.close())
  await log.appendBatch(readings(0, 10))
  const stored = await collect(log.eventsSince({}, { raw: true }))
  t.ok(stored.every((event) => event.payload[0] === 0xe1 && event.seal === undefined), 'per-event envelopes, no links')
  t.same(await texts(log), expected(0, 10))
})

// A move of own encrypted events to a new origin (sealed again batch by batch under it) is
// test/core/own-origin.test.ts: 'a log that lost its tail ... moves those events to a new origin, in place'.
