// Signed history: identity keys, sealed batches, authenticated merge, trust, equivocation.
// Everything runs on real logs in temporary directories; forged input is made by changing real
// sealed batches.

import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { openLog, replicaIdForKey, LINK_BYTES, SEAL_BYTES, type Log, type RemoteEvent } from '../../index.js'
import { collect, payload, prng, tempDir, text } from '../helpers/temp.js'
import { remoteOf, signLast, signedSince } from '../helpers/sealed.js'

/** As stored: links, and the seals received from others, nothing signed now. */
async function rawSince(log: Log, vector = {}): Promise<RemoteEvent[]> {
  return remoteOf(await collect(log.eventsSince(vector, { raw: true })))
}

t.test('a new log gets an Ed25519 identity: private key 0600, replica id derived from the public key, stable across opens', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir)
  const id = log.replicaId
  t.match(log.publicKey, /^[0-9a-f]{64}$/)
  t.equal(id, replicaIdForKey(Buffer.from(log.publicKey!, 'hex')), 'the id derives from the key')
  t.equal(fs.statSync(path.join(dir, 'identity')).mode & 0o777, 0o600)
  const pem = fs.readFileSync(path.join(dir, 'identity'), 'latin1')
  t.equal(crypto.createPrivateKey(pem).asymmetricKeyType, 'ed25519')
  await log.close()
  log = await openLog(dir)
  t.equal(log.replicaId, id)
  await log.close()
  const other = tempDir(t)
  fs.copyFileSync(path.join(dir, 'identity'), path.join(other, 'identity'))
  fs.copyFileSync(path.join((await openLog(tempDir(t))).directory, 'replica'), path.join(other, 'replica'))
  await t.rejects(openLog(other), { code: 'CORRUPT', message: /identity key .* derives replica id/ })
})

t.test('identity: false makes an unsigned log with a random id; its batches carry no seal', async (t) => {
  const log = await openLog(tempDir(t), { identity: false })
  t.teardown(() => log.close())
  t.equal(log.publicKey, null)
  await log.appendBatch([payload('a'), payload('b')])
  t.same((await rawSince(log)).map((e) => e.seal), [undefined, undefined])
})

t.test('each own batch ends with a link; signing a link gives the documented seal', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  await log.appendBatch([payload('a'), payload('b'), payload('c')])
  await log.append(payload('d'))
  const events = await rawSince(log)
  t.same(events.map((e) => e.seal === undefined ? 0 : e.seal.length), [0, 0, LINK_BYTES, LINK_BYTES], 'a link on the last event of each batch')
  // Recompute per docs/format.md, independently of core/seal.ts.
  const origin = Buffer.from(log.replicaId, 'hex')
  let prev = Buffer.alloc(32)
  for (const [first, count] of [[0, 3], [3, 1]] as const) {
    const link = Buffer.from(events[first + count - 1]!.seal!)
    t.equal(link[0], 2, 'kind LINK')
    t.equal(link[1], 1, 'version')
    t.equal(link.readUInt32LE(4), count)
    t.equal(Number(link.readBigUInt64LE(8)), first)
    t.same(link.subarray(16, 48), prev, 'prev links to the previous batch')
    const prefix = Buffer.alloc(68)
    prefix.write('ILOGCHN1', 0, 'latin1')
    origin.copy(prefix, 8)
    prefix.writeBigUInt64LE(BigInt(first), 24)
    prefix.writeUInt32LE(count, 32)
    prev.copy(prefix, 36)
    const hash = crypto.createHash('sha256').update(prefix)
    for (const event of events.slice(first, first + count)) {
      const header = Buffer.alloc(12)
      header.writeUInt32LE(event.payload.length, 0)
      header.writeBigUInt64LE(BigInt(event.time), 4)
      hash.update(header).update(event.payload)
    }
    const digest = hash.digest()
    t.same(link.subarray(48, 80), digest, 'chain hash')
    const seal = Buffer.from(await log.signSeal({ origin: log.replicaId, seal: link }))
    t.equal(seal.length, SEAL_BYTES)
    t.equal(seal[0], 1, 'kind SEAL')
    t.same(seal.subarray(1, 80), link.subarray(1, 80), 'a seal is the link, signed')
    t.equal(seal.subarray(80, 112).toString('hex'), log.publicKey)
    const key = crypto.createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), seal.subarray(80, 112)]), format: 'der', type: 'spki' })
    t.ok(crypto.verify(null, digest, key, seal.subarray(112, 176)), 'signature verifies with node:crypto')
    prev = digest
  }
  await t.rejects(log.signSeal({ origin: log.replicaId, seal: new Uint8Array(LINK_BYTES) }), { code: 'INVALID_ARGUMENT' })
})

t.test('linked batches wait for a seal; a seal vouches for every batch before it', async (t) => {
  const a = await openLog(tempDir(t))
  const b = await openLog(tempDir(t), { trust: [a.publicKey!] })
  t.teardown(async () => { await a.close(); await b.close() })
  for (let i = 0; i < 3; i++) await a.appendBatch([payload(`${i}a`), payload(`${i}b`)])
  const links = await rawSince(a)
  const waiting = await b.merge(links.slice(0, 4), { sealed: true })
  t.same([waiting.added, waiting.waiting], [0, 4], 'links alone are not enough')
  t.equal((await b.merge(await signLast(a, links.slice(4)), { sealed: true })).added, 6, 'the seal of the third batch lets all three in')
  t.same(b.versionVector(), a.versionVector())
})

t.test('an allow-list accepts the trusted origin, refuses others, and the chain continues across reopens', async (t) => {
  const a = await openLog(tempDir(t))
  const stranger = await openLog(tempDir(t))
  const dirB = tempDir(t)
  let b = await openLog(dirB, { trust: [a.publicKey!] })
  t.teardown(async () => { await a.close(); await stranger.close(); await b.close() })
  await a.appendBatch([payload('a0'), payload('a1')])
  await stranger.append(payload('s0'))
  t.same(await b.merge(await signedSince(a)), { added: 2, duplicates: 0, waiting: 0, dropped: 0, rejected: [], quarantined: 0 })
  const refused = await b.merge(await signedSince(stranger))
  t.equal(refused.forged, 1, 'an untrusted key is refused')
  t.equal(b.securityStatus().forged, 1)
  t.match(b.securityStatus().lastRejection, /no trusted key derives this origin id/)
  await b.close()
  b = await openLog(dirB, { trust: [a.publicKey!] })
  await a.append(payload('a2'))
  t.equal((await b.merge(await signedSince(a, b.versionVector()))).added, 1, 'the chain head is found on disk after reopen')
  t.same((await collect(b.read())).map((e) => text(e.payload)), ['a0', 'a1', 'a2'])
  t.same(b.versionVector(), { [a.replicaId]: 3 })
})

t.test('a relay without the key in its list forwards sealed batches that the final receiver verifies', async (t) => {
  const a = await openLog(tempDir(t))
  const relay = await openLog(tempDir(t), { trust: 'open' })
  const c = await openLog(tempDir(t), { trust: [a.publicKey!] })
  t.teardown(async () => { await a.close(); await relay.close(); await c.close() })
  for (let i = 0; i < 5; i++) await a.appendBatch([payload(`x${i}`), payload(`y${i}`)])
  t.equal((await relay.merge(await signedSince(a))).added, 10)
  t.equal((await c.merge(await rawSince(relay))).added, 10, 'links and seals survive storage and forwarding')
  t.same(c.versionVector(), a.versionVector())
})

t.test('trust open refuses unsigned events and events claimed under an id the key does not derive', async (t) => {
  const a = await openLog(tempDir(t))
  const b = await openLog(tempDir(t), { trust: 'open' })
  t.teardown(async () => { await a.close(); await b.close() })
  await a.appendBatch([payload('p'), payload('q')])
  const events = await signedSince(a)
  const unsigned = events.map(({ seal: _seal, ...rest }) => rest)
  t.equal((await b.merge(unsigned)).forged, 2, 'unsigned events are refused where seals are required')
  const impostor = events.map((e) => ({ ...e, origin: 'c'.repeat(32) }))
  t.equal((await b.merge(impostor)).forged, 2, 'another replica id with this key is refused')
  t.same(b.versionVector(), {})
  t.equal((await b.merge(events)).added, 2)
})

t.test('in trust mode off, an origin known to sign cannot continue unsigned', async (t) => {
  const a = await openLog(tempDir(t))
  const b = await openLog(tempDir(t))
  t.teardown(async () => { await a.close(); await b.close() })
  await a.append(payload('signed'))
  t.equal((await b.merge(await signedSince(a))).added, 1)
  const forged: RemoteEvent = { origin: a.replicaId, pos: 1, time: Date.now(), payload: payload('injected') }
  t.equal((await b.merge([forged])).forged, 1)
  t.same(b.versionVector(), { [a.replicaId]: 1 })
})

/** Every way of damaging a sealed batch we generate; each must leave the receiver unchanged. */
function* forgeries(batch: readonly RemoteEvent[], otherBatch: readonly RemoteEvent[], random: () => number): Generator<[string, RemoteEvent[]]> {
  const clone = (): RemoteEvent[] => batch.map((e) => ({ ...e, payload: new Uint8Array(e.payload), ...(e.seal === undefined ? {} : { seal: new Uint8Array(e.seal) }) }))
  const last = batch.length - 1
  for (let byte = 0; byte < SEAL_BYTES; byte++) {
    for (const bit of [0, 3, 7]) {
      const events = clone()
      events[last]!.seal![byte]! ^= 1 << bit
      yield [`seal byte ${byte} bit ${bit}`, events]
    }
  }
  for (let i = 0; i <= last; i++) {
    for (let byte = 0; byte < batch[i]!.payload.length; byte++) {
      const events = clone()
      events[i]!.payload[byte]! ^= 1 + Math.floor(random() * 255)
      yield [`payload ${i} byte ${byte}`, events]
    }
    for (const delta of [1, -1, 1000, 2 ** 32]) {
      const events = clone()
      events[i]!.time = Math.max(0, events[i]!.time + delta)
      yield [`time of ${i} + ${delta}`, events]
    }
    const longer = clone()
    longer[i]!.payload = new Uint8Array([...longer[i]!.payload, 0])
    yield [`payload ${i} extended`, longer]
    const shorter = clone()
    shorter[i]!.payload = shorter[i]!.payload.subarray(0, Math.max(0, shorter[i]!.payload.length - 1))
    yield [`payload ${i} cut`, shorter]
  }
  for (let i = 0; i < last; i++) {
    const swapped = clone()
    const p = swapped[i]!.payload
    swapped[i]!.payload = swapped[i + 1]!.payload
    swapped[i + 1]!.payload = p
    yield [`payloads ${i} and ${i + 1} swapped`, swapped]
    const dropped = clone()
    dropped.splice(i, 1)
    yield [`event ${i} left out`, dropped]
  }
  const moved = clone()
  moved[0]!.seal = moved[last]!.seal
  delete moved[last]!.seal
  yield ['seal moved to the first event', moved]
  const spliced = clone()
  spliced[0]!.payload = otherBatch[0]!.payload
  yield ['event from another batch spliced in', spliced]
  const shifted = clone().map((e) => ({ ...e, pos: e.pos + 1 }))
  yield ['replayed one position later', shifted]
  const foreignSeal = clone()
  foreignSeal[last]!.seal = otherBatch[otherBatch.length - 1]!.seal
  yield ['seal of another batch', foreignSeal]
  for (let k = 0; k < 40; k++) {
    const events = clone()
    const seal = events[last]!.seal!
    for (let n = 0; n < 4; n++) seal[Math.floor(random() * SEAL_BYTES)] = Math.floor(random() * 256)
    yield [`seal scrambled ${k}`, events]
  }
}

t.test('at least 10,000 forged, altered, truncated and replayed variants are all refused; the version vector never moves', async (t) => {
  const a = await openLog(tempDir(t))
  const b = await openLog(tempDir(t), { trust: [a.publicKey!] })
  t.teardown(async () => { await a.close(); await b.close() })
  const random = prng(Number(process.env['INTERLOG_SEED'] ?? 77))
  await a.appendBatch([payload('first batch, event zero'), payload('one')])
  await a.appendBatch(Array.from({ length: 5 }, (_, i) => new Uint8Array(24).map(() => Math.floor(random() * 256)).fill(i, 0, 1)))
  await a.appendBatch([payload('third batch')])
  // Each batch as the last of its own sync message: its link signed.
  const all = await rawSince(a)
  const first = await signLast(a, all.slice(0, 2))
  const second = await signLast(a, all.slice(2, 7))
  const third = await signLast(a, all.slice(7))
  t.equal((await b.merge(first)).added, 2)
  const vector = b.versionVector()
  let variants = 0
  let refused = 0
  const kinds = new Set<string>()
  for (let round = 0; variants < 10_000; round++) {
    for (const [what, events] of forgeries(second, third, random)) {
      const result = await b.merge(events, { sealed: true })
      variants++
      kinds.add(what.replace(/\d+/g, 'N'))
      if (result.added !== 0) t.fail(`variant '${what}' was stored`)
      if ((result.forged ?? 0) > 0) refused++
    }
    const replay = await b.merge(first)
    variants++
    if (replay.added !== 0 || replay.duplicates !== 2) t.fail('an exact replay is only a duplicate')
  }
  t.same(b.versionVector(), vector, 'the version vector is unchanged after all variants')
  t.ok(variants >= 10_000, `${variants} variants`)
  t.ok(refused / variants > 0.9, `${refused} of ${variants} refused outright; the rest wait for a seal that never comes`)
  t.ok(kinds.size >= 12, `${kinds.size} kinds of damage`)
  t.ok(b.securityStatus().forged >= refused)
  // The genuine batches still go in afterwards: nothing the forgeries left behind blocks them.
  t.equal((await b.merge([...second, ...third])).added, 6)
  t.same(b.versionVector(), a.versionVector())
  t.ok((await b.verify()).ok)
})

t.test('equivocation: the same key signing two histories is detected, reported and quarantines the origin', async (t) => {
  const dirA = tempDir(t)
  const a = await openLog(dirA)
  await a.appendBatch([payload('shared 0'), payload('shared 1')])
  await a.close()
  const dirTwin = tempDir(t)
  for (const name of fs.readdirSync(dirA)) if (name !== 'LOCK') fs.copyFileSync(path.join(dirA, name), path.join(dirTwin, name))
  const original = await openLog(dirA)
  const twin = await openLog(dirTwin)
  t.equal(twin.replicaId, original.replicaId, 'a cloned directory: one key, two writers')
  await original.appendBatch([payload('original 2'), payload('original 3')])
  await twin.appendBatch([payload('twin 2'), payload('twin 3')])
  await twin.appendBatch([payload('twin 4')])

  const viaDuplicate = await openLog(tempDir(t), { trust: [original.publicKey!] })
  const viaChain = await openLog(tempDir(t), { trust: [original.publicKey!] })
  t.teardown(async () => { await original.close(); await twin.close(); await viaDuplicate.close(); await viaChain.close() })
  const seen: unknown[] = []
  viaDuplicate.on('equivocation', (e) => seen.push(e))
  t.equal((await viaDuplicate.merge(await signedSince(original))).added, 4)
  // The twin's message ending at position 4: its signed seal covers the same batch end as the original's.
  const result = await viaDuplicate.merge(await signLast(twin, (await rawSince(twin)).slice(0, 4)))
  t.equal(result.added, 0)
  t.equal(result.rejected[0]?.validator, 'equivocation')
  t.equal(seen.length, 1, 'reported as an event')
  t.equal(viaDuplicate.securityStatus().equivocations.length, 1)
  t.equal(viaDuplicate.quarantined()[0]?.origin, original.replicaId, 'the origin is quarantined')

  t.equal((await viaChain.merge(await signedSince(original))).added, 4)
  const twinTail = (await signedSince(twin)).filter((e) => e.pos >= 4)
  const chained = await viaChain.merge(twinTail)
  t.equal(chained.rejected[0]?.validator, 'equivocation', 'a batch linking to the other history is equivocation too')
  t.same(viaChain.versionVector(), { [original.replicaId]: 4 })
})

t.test('a seal on every piece: batches split over several merges wait and then go in whole', async (t) => {
  const a = await openLog(tempDir(t))
  const b = await openLog(tempDir(t), { trust: 'open' })
  t.teardown(async () => { await a.close(); await b.close() })
  await a.appendBatch(Array.from({ length: 50 }, (_, i) => payload(`e${i}`)))
  const events = await signedSince(a)
  for (let from = 0; from < 40; from += 10) {
    const result = await b.merge(events.slice(from, from + 10), { sealed: true })
    t.equal(result.added, 0)
    t.equal(result.waiting, 10)
  }
  t.equal((await b.merge(events.slice(40), { sealed: true })).added, 50)
  t.same(b.versionVector(), a.versionVector())
})

t.test('verify checks the hash chain: an event altered on disk with a recomputed checksum is found', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir)
  await log.appendBatch([payload('first batch 0'), payload('first batch 1')])
  await log.append(payload('second batch'))
  t.ok((await log.verify()).ok, 'a genuine chain verifies')
  await log.close()
  const { loadChecksum } = await import('../../core/checksum.js')
  const checksum = await loadChecksum()
  const file = path.join(dir, '000000000000.seg')
  const bytes = fs.readFileSync(file)
  const at = bytes.indexOf(Buffer.from('first batch 1'))
  bytes[at] = 'F'.charCodeAt(0)
  // Re-checksum the record so that only the chain can tell (what a deliberate edit would do).
  const record = 4096
  const length = bytes.readUInt32LE(record + 8)
  bytes.writeBigUInt64LE(checksum(bytes.subarray(record + 8, record + length)), record)
  fs.writeFileSync(file, bytes)
  log = await openLog(dir)
  t.teardown(() => log.close())
  const report = await log.verify()
  t.notOk(report.ok)
  t.match(report.damage.map((d) => d.reason).join('; '), /events do not hash to their link/)
})
