// Attacks found in review, each kept as a behaviour: events under a log's own id, old seals
// replayed to fake an equivocation, signing links that are not the log's own or not yet durable,
// flooding the merge buffer with origins nobody trusts, and events held for a seal in the default
// trust mode being released by an unsigned local merge.

import t from 'tap'
import { openLog, LINK_BYTES, type RemoteEvent } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'
import { remoteOf, signLast, signedSince } from '../helpers/sealed.js'

t.test('events under a log\'s own id are refused by merge, so they can never enter its signed chain', async (t) => {
  const victim = await openLog(tempDir(t))
  const peer = await openLog(tempDir(t), { trust: [victim.publicKey!] })
  t.teardown(async () => { await victim.close(); await peer.close() })
  const injected: RemoteEvent = { origin: victim.replicaId, pos: 0, time: Date.now(), payload: payload('ATTACKER: open the valve') }
  const result = await victim.merge([injected])
  t.equal(result.forged, 1)
  t.equal(victim.length, 0)
  await victim.append(payload('genuine'))
  t.equal((await peer.merge(await signedSince(victim))).added, 1)
  t.same((await collect(peer.read())).map((e) => text(e.payload)), ['genuine'])
})

t.test('an old genuine seal replayed at new positions is a forgery, not an equivocation', async (t) => {
  const a = await openLog(tempDir(t))
  const dirB = tempDir(t)
  let b = await openLog(dirB, { trust: [a.publicKey!] })
  t.teardown(async () => { await a.close(); await b.close() })
  const seals: RemoteEvent[] = []
  for (let i = 0; i < 3; i++) {
    await a.append(payload(`a${i}`))
    const [event] = await signLast(a, remoteOf(await collect(a.eventsSince({ [a.replicaId]: i }, { raw: true }))))
    seals.push(event!)
    await b.merge([event!])
  }
  await b.close()
  b = await openLog(dirB, { trust: [a.publicKey!] })
  const replay: RemoteEvent = { ...seals[0]!, pos: 3, payload: payload('replayed') }
  const result = await b.merge([replay])
  t.equal(result.forged, 1)
  t.same(result.rejected, [], 'no quarantine')
  t.same(b.securityStatus().equivocations, [])
  await a.append(payload('a3'))
  t.equal((await b.merge(await signedSince(a, b.versionVector()))).added, 1, 'the genuine origin keeps syncing')
})

t.test('signSeal signs only links stored in this log, of durable batches', async (t) => {
  const dir = tempDir(t)
  let log = await openLog(dir, { durability: 'interval', intervalMs: 20 })
  for (let i = 0; i < 3; i++) await log.append(payload(`e${i}`))
  while (log.durableLength < 3) await new Promise((resolve) => setTimeout(resolve, 10))
  const links = remoteOf(await collect(log.eventsSince({}, { raw: true })))
  const fake = new Uint8Array(links[1]!.seal!)
  fake[60] = fake[60]! ^ 1 // another chain hash for the batch ending at 2
  await t.rejects(log.signSeal({ origin: log.replicaId, seal: fake }), { code: 'INVALID_ARGUMENT', message: /not one of this log's own batches/ })
  await log.close()
  log = await openLog(dir, { durability: 'none' })
  t.teardown(() => log.close())
  t.equal((await log.signSeal({ origin: log.replicaId, seal: links[0]!.seal! })).length, 176, 'an old genuine link is signed after reopen')
  await log.append(payload('not durable yet'))
  const [fresh] = remoteOf(await collect(log.eventsSince({ [log.replicaId]: 3 }, { raw: true })))
  t.equal(fresh!.seal!.length, LINK_BYTES)
  await t.rejects(log.signSeal({ origin: log.replicaId, seal: fresh!.seal! }), { code: 'INVALID_ARGUMENT', message: /not durable yet/ })
})

t.test('with an allow-list, events of origins no listed key derives are refused before they take buffer room', async (t) => {
  const a = await openLog(tempDir(t))
  const b = await openLog(tempDir(t), { trust: [a.publicKey!], mergeWaitingEventsMax: 10 })
  t.teardown(async () => { await a.close(); await b.close() })
  const junk: RemoteEvent[] = Array.from({ length: 50 }, (_, i) => ({ origin: i.toString(16).padStart(32, '0'), pos: 5, time: 1, payload: payload('junk') }))
  const result = await b.merge(junk, { sealed: true })
  t.equal(result.forged, 50)
  t.equal(result.waiting, 0)
  await a.appendBatch([payload('x'), payload('y')])
  const genuine = await signedSince(a)
  t.equal((await b.merge(genuine.slice(0, 1), { sealed: true })).waiting, 1, 'the genuine origin still gets room')
  t.equal((await b.merge(genuine.slice(1), { sealed: true })).added, 2)
})

t.test('a signed batch larger than the receiver\'s merge buffer syncs record by record, as sync sends it', async (t) => {
  const a = await openLog(tempDir(t), { maxEventBytes: 256 << 10 })
  const b = await openLog(tempDir(t), { trust: [a.publicKey!], maxEventBytes: 256 << 10, mergeWaitingBytesMax: 512 << 10 })
  t.teardown(async () => { await a.close(); await b.close() })
  await a.appendBatch(Array.from({ length: 16 }, (_, i) => new Uint8Array(128 << 10).fill(i)))
  const events = remoteOf(await collect(a.eventsSince({}, { raw: true })))
  t.equal(events.filter((e) => e.seal !== undefined).length, 16, 'every record of the 2 MiB batch ends with a link')
  // Messages of about 256 KiB, each with its last link signed: what streamOrigin publishes.
  for (let from = 0; from < events.length; from += 2) {
    const result = await b.merge(await signLast(a, events.slice(from, from + 2)), { sealed: true })
    t.equal(result.added, 2, `message ${from / 2} stored on arrival`)
  }
  t.same(b.versionVector(), a.versionVector())
  t.ok((await b.verify()).ok)
})

t.test('default trust: events a sync message held for a seal are never released by the application\'s unsigned merge', async (t) => {
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  const bridged = 'ab'.repeat(16)
  const event = (pos: number, text: string): RemoteEvent => ({ origin: bridged, pos, time: 1, payload: payload(text) })
  t.equal((await log.merge([event(0, 'genuine 0')])).added, 1, 'the application bridges an unsigned origin itself')
  // A broker client: position 2 in a message that claims signed history, without a seal (held for one).
  const injected = await log.merge([event(2, 'INJECTED 2')], { remote: true, sealed: true })
  t.equal(injected.added, 0)
  const local = await log.merge([event(1, 'genuine 1'), event(2, 'genuine 2')])
  t.equal(local.added, 2, 'the application\'s events are stored')
  t.equal(local.duplicates, 0, 'not mistaken for duplicates of the held event')
  t.same((await collect(log.read())).map((e) => text(e.payload)), ['genuine 0', 'genuine 1', 'genuine 2'], 'the injected event is not stored')
})
