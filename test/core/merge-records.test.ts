// Merging whole records (what recordsSince yields and sync v2 carries): stored as they came when an
// origin's records arrive in order, with exactly merge()'s checks and results otherwise.

import t from 'tap'
import { openLog, type Log, type LogRecord, type RemoteRecord } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'
import { eventsOfRecords } from '../../core/merge-records.js'

/** The records of `log`'s own origin from `from`, the last link signed as sync signs it. */
async function signedRecords(log: Log, from = 0): Promise<RemoteRecord[]> {
  const records: LogRecord[] = (await collect(log.recordsSince({ [log.replicaId]: from }))).filter((record) => record.origin === log.replicaId)
  const out: RemoteRecord[] = records.map((record) => ({ origin: record.origin, pos: record.pos, count: record.count, body: record.body, seal: record.seal }))
  const last = records.length - 1
  out[last]!.seal = await log.signSeal(records[last] as { origin: string, seal: Uint8Array })
  return out
}

async function texts(log: Log, origin: string): Promise<string[]> {
  return (await collect(log.read({ from: 0 }))).filter((event) => event.origin === origin).map((event) => text(event.payload))
}

t.test('records of a signed origin, in order, are stored as they came and read back the same', async (t) => {
  const a = await openLog(tempDir(t), { durability: 'interval' })
  const b = await openLog(tempDir(t), { durability: 'interval', trust: 'open' })
  t.teardown(async () => { await a.close(); await b.close() })
  for (let i = 0; i < 5; i++) await a.appendBatch(Array.from({ length: 300 }, (_, k) => payload(`reading ${i}-${k}`)))
  await a.append(payload('one more'))
  await a.flush()
  const records = await signedRecords(a)
  t.equal(records.length, 6, 'one record per batch')
  t.equal(records.reduce((sum, record) => sum + record.count, 0), 1501)
  const result = await b.mergeRecords(records, { remote: true })
  t.same({ added: result.added, duplicates: result.duplicates, waiting: result.waiting, forged: result.forged }, { added: 1501, duplicates: 0, waiting: 0, forged: undefined })
  t.same(await texts(b, a.replicaId), await texts(a, a.replicaId), 'the same events, in order')
  t.ok((await b.verify()).ok, 'the chain and checksums verify')
  const again = await b.mergeRecords(records, { remote: true })
  t.same({ added: again.added, duplicates: again.duplicates }, { added: 0, duplicates: 1501 }, 'merging them again counts duplicates')
})

t.test('records are checked as merge checks events: altered, unsigned, or from a gap', async (t) => {
  const a = await openLog(tempDir(t), { durability: 'interval' })
  const b = await openLog(tempDir(t), { durability: 'interval', trust: 'open' })
  t.teardown(async () => { await a.close(); await b.close() })
  await a.appendBatch([payload('first'), payload('second')])
  await a.appendBatch([payload('third')])
  await a.flush()
  const records = await signedRecords(a)

  const altered = records.map((record) => ({ ...record, body: Buffer.from(record.body) }))
  altered[0]!.body[14]! ^= 1 // a payload byte
  const forged = await b.mergeRecords(altered, { remote: true })
  t.equal(forged.added, 0, 'an altered body is not stored')
  t.ok((forged.forged ?? 0) > 0, `it is counted as forged: ${b.securityStatus().lastRejection}`)

  const unsigned = records.map(({ seal: _seal, ...rest }) => rest)
  const refused = await b.mergeRecords(unsigned, { remote: true })
  t.equal(refused.added, 0, 'records without links or seals from the network are refused')
  t.equal(b.versionVector()[a.replicaId], undefined)

  const ahead = await b.mergeRecords([records[1]!], { remote: true })
  t.same({ added: ahead.added, waiting: ahead.waiting }, { added: 0, waiting: 1 }, 'a record beyond a gap waits')
  const filled = await b.mergeRecords([records[0]!], { remote: true })
  t.equal(filled.added, 3, 'the gap filled: both go in')
  t.same(await texts(b, a.replicaId), ['first', 'second', 'third'])
})

t.test('links after the last seal wait for it; a record cut at the end carries no link', async (t) => {
  const a = await openLog(tempDir(t), { durability: 'interval' })
  const b = await openLog(tempDir(t), { durability: 'interval', trust: 'open' })
  t.teardown(async () => { await a.close(); await b.close() })
  for (let i = 0; i < 3; i++) await a.appendBatch([payload(`${i}a`), payload(`${i}b`)])
  await a.flush()
  const stored = (await collect(a.recordsSince({}))).filter((record) => record.origin === a.replicaId)
  const plain: RemoteRecord[] = stored.map((record) => ({ origin: record.origin, pos: record.pos, count: record.count, body: record.body, seal: record.seal }))
  // The first two end with their links (not signed): they wait; the third's seal vouches for all.
  const first = await b.mergeRecords(plain.slice(0, 2), { remote: true, sealed: true })
  t.same({ added: first.added, waiting: first.waiting }, { added: 0, waiting: 4 })
  const sealed = { ...plain[2]!, seal: await a.signSeal(stored[2] as { origin: string, seal: Uint8Array }) }
  const second = await b.mergeRecords([sealed], { remote: true, sealed: true })
  t.equal(second.added, 6, 'the seal releases what waited')
  t.same(await texts(b, a.replicaId), ['0a', '0b', '1a', '1b', '2a', '2b'])

  const clipped = await collect(a.recordsSince({ [a.replicaId]: 3 }))
  t.same(clipped.map((record) => [record.pos, record.count, record.seal !== undefined]), [[3, 1, true], [4, 2, true]], 'a record cut at its start keeps its link')
})

t.test('an origin that does not sign (trust off): records go in pieces as merge cuts them', async (t) => {
  const a = await openLog(tempDir(t), { durability: 'interval', identity: false })
  const b = await openLog(tempDir(t), { durability: 'interval', trust: 'off', segmentBytes: 1 << 20, maxEventBytes: 4096 })
  t.teardown(async () => { await a.close(); await b.close() })
  const big = new Uint8Array(1000).fill(7)
  for (let i = 0; i < 4; i++) await a.appendBatch(Array.from({ length: 200 }, () => big))
  await a.flush()
  const records = (await collect(a.recordsSince({}))).map((record) => ({ origin: record.origin, pos: record.pos, count: record.count, body: record.body }))
  const result = await b.mergeRecords(records, { remote: true })
  t.equal(result.added, 800)
  t.equal(b.versionVector()[a.replicaId], 800)
  t.ok((await b.verify()).ok)
})

t.test('malformed records are refused whole with a named reason', async (t) => {
  const b = await openLog(tempDir(t), { durability: 'interval', trust: 'off', maxEventBytes: 100 })
  t.teardown(() => b.close())
  const origin = 'c'.repeat(32)
  const body = (sizes: number[]): Buffer => {
    const bytes = Buffer.alloc(sizes.reduce((sum, size) => sum + 12 + size, 0))
    let at = 0
    for (const size of sizes) {
      bytes.writeUInt32LE(size, at)
      at += 12 + size
    }
    return bytes
  }
  await t.rejects(b.mergeRecords([{ origin, pos: 0, count: 2, body: body([5]) }]), { code: 'INVALID_ARGUMENT', message: /record 0 event 1 of 2 runs past the body/ })
  await t.rejects(b.mergeRecords([{ origin, pos: 0, count: 1, body: body([5, 5]) }]), { code: 'INVALID_ARGUMENT', message: /more than 1 events/ })
  await t.rejects(b.mergeRecords([{ origin, pos: 0, count: 1, body: body([101]) }]), { code: 'TOO_LARGE' })
  await t.rejects(b.mergeRecords([{ origin: 'nope', pos: 0, count: 1, body: body([1]) }]), { code: 'INVALID_ARGUMENT' })
  t.equal(b.length, 0, 'nothing was stored')
  const ok = await b.mergeRecords([{ origin, pos: 0, count: 2, body: body([5, 0]) }])
  t.equal(ok.added, 2)
})

t.test('encrypted logs: signed records under the shared key go in; under another key they are refused', async (t) => {
  const key = { keys: [{ id: 1, key: new Uint8Array(32).fill(9) }] }
  const other = { keys: [{ id: 1, key: new Uint8Array(32).fill(8) }] }
  const a = await openLog(tempDir(t), { durability: 'interval', encryption: key })
  const b = await openLog(tempDir(t), { durability: 'interval', trust: 'open', encryption: key })
  const c = await openLog(tempDir(t), { durability: 'interval', trust: 'open', encryption: other })
  t.teardown(async () => { await a.close(); await b.close(); await c.close() })
  await a.appendBatch(Array.from({ length: 100 }, (_, k) => payload(`secret ${k}`)))
  await a.appendBatch([payload('last secret')])
  await a.flush()
  const records = await signedRecords(a)
  const taken = await b.mergeRecords(records, { remote: true })
  t.equal(taken.added, 101)
  t.same((await texts(b, a.replicaId)).slice(-2), ['secret 99', 'last secret'], 'b reads the plaintext')
  const refused = await c.mergeRecords(records, { remote: true })
  t.equal(refused.added, 0, 'another key: nothing stored')
  t.ok((refused.forged ?? 0) > 0, `counted as forged: ${c.securityStatus().lastRejection}`)
})

t.test('signSeal signs a handed-out link only as read, and only while its batch is held', async (t) => {
  const a = await openLog(tempDir(t), { durability: 'fsync', onWarning: () => undefined })
  t.teardown(() => a.close())
  const origin = a.replicaId
  for (let i = 0; i < 3; i++) await a.appendBatch([payload(`x${i}a`), payload(`x${i}b`)])
  const records = (await collect(a.recordsSince({}))).filter((record) => record.origin === origin)
  const first = records[0]!
  const altered = { ...first, seal: Buffer.from(first.seal!) }
  altered.seal[40]! ^= 0xff
  first.seal = altered.seal // the handed-out record itself, its link altered
  await t.rejects(a.signSeal(first as { origin: string, seal: Uint8Array }), { code: 'INVALID_ARGUMENT' }, 'an altered link is refused')
  // A peer holds more of this origin: the events appended since open move to a new origin, and the
  // old id's batches are no longer held under it; a lane that read them before must not sign them.
  const last = records[records.length - 1]!
  t.equal(await a.ownOriginSeen(100), 'moved')
  await t.rejects(a.signSeal(last as { origin: string, seal: Uint8Array }), { code: 'INVALID_ARGUMENT' }, 'a link of a batch moved away is refused')
})

t.test('events held for later keep their own bytes, not the whole message they came in', async (t) => {
  const b = await openLog(tempDir(t), { durability: 'interval', trust: 'off' })
  t.teardown(() => b.close())
  const origin = 'ab'.repeat(16)
  // One message: a large record of events beyond a gap (they wait), in a body of 4 MiB.
  const body = Buffer.alloc(4 << 20)
  const count = body.length / (12 + 1012)
  for (let i = 0; i < count; i++) body.writeUInt32LE(1012, i * 1024)
  const result = await b.mergeRecords([{ origin, pos: 5, count, body }])
  t.equal(result.waiting + result.dropped, count, 'they wait (or are dropped when the buffer is full)')
  // The held payloads are copies: none of them is a view into the 4 MiB body.
  const held = await b.mergeRecords([{ origin, pos: 0, count: 1, body: Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]) }])
  t.equal(held.added, 1, 'position 0 goes in; the gap at 1 to 4 keeps the rest waiting')
  const probe = eventsOfRecords([{ origin, pos: 5, count: 1, body: body.subarray(0, 1024) }], 0)[0]!
  t.not(probe.payload.buffer, body.buffer, 'the general path copies each payload out of the message')
})
