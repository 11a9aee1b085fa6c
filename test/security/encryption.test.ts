// Payload encryption with a shared log key: round trips, ciphertext at rest and on the relay,
// tamper detection, nonces never repeated across reopens, key rotation.

import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { openLog, type Log, type RemoteEvent } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'
import { remoteOf, signedSince } from '../helpers/sealed.js'

const KEY_1 = { id: 1, key: new Uint8Array(crypto.randomBytes(32)) }
const KEY_2 = { id: 2, key: new Uint8Array(crypto.randomBytes(32)) }
const raw = async (log: Log): Promise<RemoteEvent[]> => remoteOf(await collect(log.eventsSince({}, { raw: true })))
const segmentBytes = (dir: string): Buffer => Buffer.concat(fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).map((n) => fs.readFileSync(path.join(dir, n))))

t.test('encrypted payloads: plaintext for key holders, ciphertext on disk and at a relay without the key', async (t) => {
  const dirA = tempDir(t)
  const dirRelay = tempDir(t)
  const a = await openLog(dirA, { encryption: { keys: [KEY_1] } })
  const relay = await openLog(dirRelay, { trust: 'open' })
  const c = await openLog(tempDir(t), { encryption: { keys: [KEY_1] }, trust: 'open' })
  t.teardown(async () => { await a.close(); await relay.close(); await c.close() })
  const secrets = ['temperature 21.5 in container MSKU-0001', 'door opened at dock 7']
  await a.appendBatch(secrets.map(payload))
  t.same((await collect(a.read())).map((e) => text(e.payload)), secrets, 'the writer reads plaintext')
  t.equal(segmentBytes(dirA).indexOf(Buffer.from('MSKU-0001')), -1, 'no plaintext in the segment files')
  t.equal((await relay.merge(await signedSince(a))).added, 2, 'a relay without the key stores and verifies ciphertext')
  t.equal(segmentBytes(dirRelay).indexOf(Buffer.from('MSKU-0001')), -1)
  t.not(text((await collect(relay.read()))[0]!.payload), secrets[0], 'the relay reads only ciphertext')
  t.equal((await c.merge(await raw(relay))).added, 2)
  t.same((await collect(c.read())).map((e) => text(e.payload)), secrets, 'a key holder behind the relay reads plaintext')
  t.same((await collect(c.eventsSince({}))).map((e) => text(e.payload)), secrets, 'eventsSince decrypts unless raw')
})

t.test('flipping any byte of the envelope (tag, key id, nonce, ciphertext, auth tag) is refused by merge', async (t) => {
  // Unsigned writer and trust off: only the AEAD stands between the tamperer and the log.
  const a = await openLog(tempDir(t), { identity: false, encryption: { keys: [KEY_1] } })
  const b = await openLog(tempDir(t), { encryption: { keys: [KEY_1] } })
  t.teardown(async () => { await a.close(); await b.close() })
  await a.append(payload('open sesame'))
  const [event] = await raw(a)
  let refused = 0
  for (let byte = 0; byte < event!.payload.length; byte++) {
    for (const mask of [0x01, 0x80, 0xff]) {
      const tampered = new Uint8Array(event!.payload)
      tampered[byte]! ^= mask
      const result = await b.merge([{ ...event!, payload: tampered }])
      if (result.added !== 0) t.fail(`byte ${byte} ^ ${mask} was stored`)
      if ((result.forged ?? 0) === 1) refused++
    }
  }
  t.equal(refused, event!.payload.length * 3, `all ${refused} tampered envelopes refused`)
  t.same(b.versionVector(), {})
  t.equal((await b.merge([event!])).added, 1, 'the genuine one goes in')
  t.equal(text((await collect(b.read()))[0]!.payload), 'open sesame')
})

t.test('nonces never repeat: each open starts a new epoch, so events lost in a crash cannot reuse one', async (t) => {
  const dir = tempDir(t)
  const nonces = new Set<string>()
  let events = 0
  for (let open = 0; open < 4; open++) {
    const log = await openLog(dir, { encryption: { keys: [KEY_1] }, durability: 'none' })
    await log.appendBatch([payload('x'), payload('y')])
    await log.append(payload('z'))
    await log.close()
    events += 3
  }
  const log = await openLog(dir, { encryption: { keys: [KEY_1] } })
  t.teardown(() => log.close())
  // One batch envelope per linked record (docs/format.md), its nonce at bytes 8 to 20: two records per open.
  const envelopes = (await raw(log)).filter((event) => event.seal !== undefined).map((event) => Buffer.from(event.seal!))
  t.equal(envelopes.length, events / 3 * 2, 'each record carries its batch envelope')
  t.ok(envelopes.every((envelope) => envelope[0] === 0xe2))
  for (const envelope of envelopes) nonces.add(envelope.subarray(8, 20).toString('hex'))
  t.equal(nonces.size, envelopes.length, `${events} events in ${envelopes.length} records, ${nonces.size} distinct nonces`)
  t.equal(fs.readFileSync(path.join(dir, 'nonce-epoch'), 'latin1').trim(), '5', 'the epoch is persisted and raised per open')
})

t.test('key rotation: new events use the newest key, old ones stay readable; a missing key is a clear error', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir, { encryption: { keys: [KEY_1] } })
  await log.append(payload('under key 1'))
  await log.close()
  log = await openLog(dir, { encryption: { keys: [KEY_1, KEY_2] } })
  await log.append(payload('under key 2'))
  const events = await raw(log)
  t.same(events.map((e) => Buffer.from(e.seal!).readUInt32LE(4)), [1, 2], 'key ids in the batch envelopes')
  t.same((await collect(log.read())).map((e) => text(e.payload)), ['under key 1', 'under key 2'])
  await log.close()
  log = await openLog(dir, { encryption: { keys: [KEY_2] } })
  t.teardown(() => log.close())
  await t.rejects(collect(log.read()), { code: 'CORRUPT', message: /key id 1, which this log does not have/ })
  await t.rejects(openLog(tempDir(t), { encryption: { keys: [{ id: 1, key: new Uint8Array(16) }] } }), { code: 'INVALID_ARGUMENT', message: /encryption/ })
})
