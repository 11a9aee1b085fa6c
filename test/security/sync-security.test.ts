// Authenticated, encrypted replication through a real broker: a rogue client on the broker
// publishes forged events under a trusted replica's id; receivers refuse them, count them in
// status, and keep syncing the genuine ones. Large signed batches split over several messages
// still verify.

import t from 'tap'
import crypto from 'node:crypto'
import mqtt from 'mqtt'
import { encode } from 'cbor-x'
import { openLog, startSync, type SyncHandle } from '../../index.js'
import { startTestBroker } from '../helpers/broker.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'
import { recordsOfEvents, wireRecords } from '../../sync/protocol.js'

const FAST = { announceIntervalMs: 200 }
const KEY = { id: 1, key: new Uint8Array(crypto.randomBytes(32)) }

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('signed, encrypted sync through mosquitto; forged publishes under a trusted id are refused and counted', async (t) => {
  const broker = await startTestBroker(t)
  t.comment(`broker: ${broker.kind}`)
  const a = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20, encryption: { keys: [KEY] } })
  const b = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20, encryption: { keys: [KEY] }, trust: [a.publicKey!] })
  const cloud = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20, trust: 'open' })
  const syncs: SyncHandle[] = []
  t.teardown(async () => {
    for (const sync of syncs) await sync.close()
    for (const log of [a, b, cloud]) await log.close()
  })
  // Small messages: batches of 200 events go in several messages each.
  for (const log of [a, b, cloud]) syncs.push(await startSync(log, { url: broker.url, logName: 'secure', maxMessageBytes: 4096, ...FAST }))
  for (let i = 0; i < 5; i++) await a.appendBatch(Array.from({ length: 200 }, (_, k) => payload(`reading ${i}-${k}`)))
  await until(() => (b.versionVector()[a.replicaId] ?? 0) === 1000 && (cloud.versionVector()[a.replicaId] ?? 0) === 1000, 'replication')
  t.equal(text((await collect(b.read({ from: 999 })))[0]!.payload), 'reading 4-199', 'b decrypts')
  t.not(text((await collect(cloud.read({ from: 999 })))[0]!.payload), 'reading 4-199', 'the cloud relay holds ciphertext')

  // A rogue client: its own topic, a.replicaId as origin, a copied seal on altered events.
  const genuine = await collect(a.eventsSince({ [a.replicaId]: 800 }, { raw: true }))
  const rogueId = 'e'.repeat(32)
  const forged = recordsOfEvents(genuine.map((e) => ({ ...e, pos: e.pos + 200 })))
  const altered = recordsOfEvents(genuine.map((e) => ({ ...e, payload: new Uint8Array(e.payload.length).fill(1) })))
  const rogue = await mqtt.connectAsync(broker.url, { clientId: 'rogue', protocolVersion: 4 })
  t.teardown(() => rogue.endAsync())
  for (const events of [forged, altered]) {
    await rogue.publishAsync(`interlog/v1/secure/events/${rogueId}`, Buffer.from(encode({ v: 2, k: 'e', s: rogueId, o: a.replicaId, r: wireRecords(events), sl: true })), { qos: 1 })
  }
  const unsigned = recordsOfEvents([{ pos: 1000, time: Date.now(), payload: payload('injected') }])
  await rogue.publishAsync(`interlog/v1/secure/events/${rogueId}`, Buffer.from(encode({ v: 2, k: 'e', s: rogueId, o: a.replicaId, r: wireRecords(unsigned) })), { qos: 1 })
  await until(() => syncs[1]!.status().eventsForged > 0 && syncs[2]!.status().eventsForged > 0, 'the refusals')
  t.ok(syncs[1]!.status().eventsForged >= 1, `b refused ${syncs[1]!.status().eventsForged} events`)
  t.ok(syncs[2]!.status().eventsForged >= 1, `the cloud refused ${syncs[2]!.status().eventsForged} events`)
  t.equal(b.versionVector()[a.replicaId], 1000, 'nothing forged stored at b')
  t.equal(cloud.versionVector()[a.replicaId], 1000, 'nothing forged stored at the cloud')
  t.same(b.quarantined(), [], 'a replayed seal is not mistaken for equivocation')
  t.same(b.securityStatus().equivocations, [])

  // Genuine sync goes on.
  await a.appendBatch([payload('after the attack')])
  await until(() => b.versionVector()[a.replicaId] === 1001 && cloud.versionVector()[a.replicaId] === 1001, 'sync after the attack')
  t.equal(text((await collect(b.read({ from: 1000 })))[0]!.payload), 'after the attack')
  t.ok((await b.verify()).ok && (await cloud.verify()).ok)
})

t.test('default trust (no allow-list, no option): sync takes signed replicas and refuses unsigned events, under a fresh id too; explicit off takes them', async (t) => {
  const broker = await startTestBroker(t)
  const a = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20 })
  const b = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20 })
  const legacy = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20, trust: 'off' })
  t.equal(b.securityStatus().trust, 'default')
  const syncs: SyncHandle[] = []
  t.teardown(async () => {
    for (const sync of syncs) await sync.close()
    for (const log of [a, b, legacy]) await log.close()
  })
  for (const log of [a, b, legacy]) syncs.push(await startSync(log, { url: broker.url, logName: 'default-trust', ...FAST }))
  await a.appendBatch([payload('signed 0'), payload('signed 1')])
  await until(() => b.versionVector()[a.replicaId] === 2 && legacy.versionVector()[a.replicaId] === 2, 'signed replication')

  // A broker client makes up a replica id and publishes unsigned events under it.
  const madeUp = 'd'.repeat(32)
  const rogue = await mqtt.connectAsync(broker.url, { clientId: 'rogue-default', protocolVersion: 4 })
  t.teardown(() => rogue.endAsync())
  const injected = recordsOfEvents([{ pos: 0, time: Date.now(), payload: payload('injected 0') }, { pos: 1, time: Date.now(), payload: payload('injected 1') }])
  await rogue.publishAsync(`interlog/v1/default-trust/events/${madeUp}`, Buffer.from(encode({ v: 2, k: 'e', s: madeUp, o: madeUp, r: wireRecords(injected) })), { qos: 1 })
  await until(() => syncs[1]!.status().eventsForged >= 2 && legacy.versionVector()[madeUp] === 2, 'the refusal at b, the acceptance at the legacy log')
  t.equal(b.versionVector()[madeUp], undefined, 'b stored none of the unsigned events')
  t.match(b.securityStatus().lastRejection, /unsigned/, `b says why: ${b.securityStatus().lastRejection}`)
  t.equal(legacy.versionVector()[madeUp], 2, "trust 'off' (explicit) takes unsigned events, as before signing existed")

  // The application's own merge() may still hand in unsigned events (the caller vouches for them),
  // unless it says they came from the network.
  const local = await b.merge([{ origin: madeUp, pos: 0, time: 1, payload: payload('from my own code') }])
  t.equal(local.added, 1, 'a local merge of unsigned events is taken in the default mode')
  const remote = await b.merge([{ origin: 'c'.repeat(32), pos: 0, time: 1, payload: payload('relayed') }], { remote: true })
  t.equal(remote.added, 0)
  t.equal(remote.forged, 1, 'the same merge marked remote is refused')
})
