// Replication through a real broker (mosquitto when installed, aedes otherwise): replicas
// converge to identical version vectors and per-origin sequences through disconnections, broker
// restarts, duplicated and reordered delivery, and garbage on the topics.

import t from 'tap'
import mqtt from 'mqtt'
import { encode } from 'cbor-x'
import { openLog, startSync, type Log, type SyncHandle, type VersionVector } from '../../index.js'
import { startTestBroker, type TestBroker } from '../helpers/broker.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'
import { recordsOfEvents, wireRecords } from '../../sync/protocol.js'

const FAST = { announceIntervalMs: 200 }

interface Replica { log: Log, sync: SyncHandle | undefined, dir: string }

async function replica(t: { teardown(fn: () => unknown): void }, broker: TestBroker, logName = 'main', options: object = {}): Promise<Replica> {
  const dir = tempDir(t)
  const log = await openLog(dir, { durability: 'interval', intervalMs: 20 })
  const r: Replica = { log, dir, sync: await startSync(log, { url: broker.url, logName, ...FAST, ...options }) }
  t.teardown(async () => {
    await r.sync?.close()
    await r.log.close()
  })
  return r
}

function sameVectors(vectors: VersionVector[]): boolean {
  const keys = (v: VersionVector): string => JSON.stringify(Object.keys(v).sort().map((k) => [k, v[k]]))
  return vectors.every((v) => keys(v) === keys(vectors[0]!))
}

async function converge(replicas: Replica[], timeoutMs = 30_000): Promise<void> {
  const started = Date.now()
  while (!sameVectors(replicas.map((r) => r.log.versionVector()))) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`no convergence in ${timeoutMs} ms: ${JSON.stringify(replicas.map((r) => r.log.versionVector()))}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Each origin's events, in order, as text: must be identical on every replica. */
async function sequences(log: Log): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {}
  for await (const event of log.read()) (out[event.origin] ??= [])[event.pos] = text(event.payload)
  return out
}

t.test('two replicas converge, then live appends flow', async (t) => {
  const broker = await startTestBroker(t)
  t.comment(`broker: ${broker.kind}`)
  const a = await replica(t, broker)
  for (let i = 0; i < 500; i++) await a.log.append(payload(`a${i}`))
  const b = await replica(t, broker)
  let convergedEvents = 0
  b.sync!.on('converged', () => convergedEvents++)
  await b.log.appendBatch([payload('b0'), payload('b1')])
  await converge([a, b])
  t.same(await sequences(a.log), await sequences(b.log))
  const started = Date.now()
  while (convergedEvents === 0 && Date.now() - started < 5000) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(convergedEvents > 0, "'converged' is emitted")
  await a.log.append(payload('live'))
  await converge([a, b])
  t.equal(b.log.length, 503)
  const status = b.sync!.status()
  t.equal(status.connected, true)
  t.equal(status.peers.length, 1)
  t.equal(status.peers[0]!.replica, a.log.replicaId)
  t.ok(status.eventsReceived >= 501)
})

t.test('five replicas appending at once converge to identical sequences', async (t) => {
  const broker = await startTestBroker(t)
  const replicas = await Promise.all(Array.from({ length: 5 }, () => replica(t, broker)))
  await Promise.all(replicas.map(async (r, i) => {
    for (let j = 0; j < 40; j++) await r.log.appendBatch(Array.from({ length: 5 }, (_, k) => payload(`r${i}-${j}-${k}`)))
  }))
  await converge(replicas)
  const first = await sequences(replicas[0]!.log)
  t.equal(Object.keys(first).length, 5)
  for (const r of replicas.slice(1)) t.same(await sequences(r.log), first)
  t.ok(replicas.every((r) => r.log.length === 1000))
})

t.test('a replica offline while both sides append catches up when it comes back', async (t) => {
  const broker = await startTestBroker(t)
  const a = await replica(t, broker)
  const b = await replica(t, broker)
  await a.log.append(payload('before'))
  await converge([a, b])
  await b.sync!.close()
  b.sync = undefined
  for (let i = 0; i < 300; i++) await a.log.append(payload(`while away a${i}`))
  for (let i = 0; i < 200; i++) await b.log.append(payload(`while away b${i}`))
  b.sync = await startSync(b.log, { url: broker.url, logName: 'main', ...FAST })
  await converge([a, b])
  t.same(await sequences(a.log), await sequences(b.log))
  t.equal(a.log.length, 501)
})

t.test('the broker restarted in the middle of a catch-up', async (t) => {
  const broker = await startTestBroker(t)
  const a = await replica(t, broker)
  const batch = Array.from({ length: 1000 }, (_, i) => new Uint8Array(512).fill(i & 0xff))
  for (let i = 0; i < 40; i++) await a.log.appendBatch(batch)
  const b = await replica(t, broker)
  const started = Date.now()
  while (b.log.length === 0 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 5))
  t.ok(b.log.length < 40_000, `restart after ${b.log.length} of 40000 events`)
  await broker.restart()
  await converge([a, b], 60_000)
  t.equal(b.log.length, 40_000)
  t.same(b.log.versionVector(), a.log.versionVector())
})

t.test('duplicated and reordered delivery stores nothing twice', async (t) => {
  const broker = await startTestBroker(t)
  const captured: { topic: string, payload: Buffer }[] = []
  const spy = await mqtt.connectAsync(broker.url, { protocolVersion: 4 })
  t.teardown(() => spy.endAsync())
  await spy.subscribeAsync('interlog/v1/main/events/+', { qos: 1 })
  spy.on('message', (topic, message) => captured.push({ topic, payload: message }))
  const a = await replica(t, broker, 'main', { maxMessageBytes: 2048 })
  const b = await replica(t, broker, 'main', { maxMessageBytes: 2048 })
  for (let i = 0; i < 50; i++) await a.log.appendBatch(Array.from({ length: 4 }, (_, j) => payload(`e${i}-${j}`.padEnd(100, '.'))))
  await converge([a, b])
  t.ok(captured.length > 5, `${captured.length} event messages captured`)
  // A third replica receives them all again, reversed and each twice, before sync catches up.
  const c = await replica(t, broker)
  const raw = await mqtt.connectAsync(broker.url, { protocolVersion: 4 })
  t.teardown(() => raw.endAsync())
  for (const message of [...captured].reverse().flatMap((m) => [m, m])) await raw.publishAsync(message.topic, message.payload, { qos: 1 })
  await converge([a, b, c])
  t.same(await sequences(c.log), await sequences(a.log))
  t.equal(c.log.length, 200)
  t.ok((await c.log.verify()).ok)
})

t.test('malformed messages are dropped with a reason and the replica keeps syncing', async (t) => {
  const broker = await startTestBroker(t)
  const lines: string[] = []
  const a = await replica(t, broker)
  const b = await replica(t, broker, 'main', { logger: (_level: string, line: string) => lines.push(line) })
  const raw = await mqtt.connectAsync(broker.url, { protocolVersion: 4 })
  t.teardown(() => raw.endAsync())
  const fake = 'f'.repeat(32)
  const garbage: [string, Uint8Array][] = [
    [`interlog/v1/main/events/${fake}`, new Uint8Array([1, 2, 3, 250, 251])],
    [`interlog/v1/main/events/${fake}`, encode({ v: 2, k: 'e', s: fake, o: fake, r: wireRecords(recordsOfEvents([{ pos: 0, time: 1, payload: new Uint8Array(4) }])) }).subarray(0, 10)],
    [`interlog/v1/main/events/${fake}`, encode({ v: 2, k: 'e', s: fake, o: fake, r: [['zero', 1, 'text']] })],
    [`interlog/v1/main/events/${fake}`, encode({ v: 2, k: 'e', s: fake, o: fake, r: [[0, 2, Buffer.alloc(13)]] })], // a body that does not hold its count
    [`interlog/v1/main/events/${fake}`, encode({ v: 1, k: 'e', s: fake, o: fake, e: [[0, 1, new Uint8Array(4)]] })], // protocol version 1
    [`interlog/v1/main/vector/${fake}`, encode({ v: 2, k: 'v', r: fake, vv: { [fake]: -5 } })],
    [`interlog/v1/main/vector/${fake}`, encode({ v: 2, k: 'v', r: 'not-an-id', vv: {} })],
    [`interlog/v1/main/events/${fake}`, encode({ v: 2, k: 'f', s: fake, o: fake, p: 0, t: 1, n: 2 ** 40, at: 0, d: new Uint8Array(8) })],
    [`interlog/v1/main/status/${fake}`, encode({ v: 3, k: 's' })],
    [`interlog/v1/main/events/${fake}`, new Uint8Array([0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])], // a huge declared length
    [`interlog/v1/main/events/${a.log.replicaId}`, encode({ v: 2, k: 'e', s: fake, o: fake, r: wireRecords(recordsOfEvents([{ pos: 0, time: 1, payload: new Uint8Array(4) }])) })], // wrong sender
  ]
  for (const [topic, bytes] of garbage) await raw.publishAsync(topic, Buffer.from(bytes), { qos: 1 })
  await a.log.append(payload('still syncing'))
  await converge([a, b])
  const started = Date.now()
  while (b.sync!.status().messagesDropped < garbage.length && Date.now() - started < 5000) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(b.sync!.status().messagesDropped, garbage.length, 'every malformed message was dropped')
  t.ok(lines.length > 0 && lines.every((line) => /dropped a message on interlog\/v1\/main\//.test(line)), `each with a logged reason: ${lines.join(' | ')}`)
  t.ok(lines.some((line) => /protocol version 1: the sender runs an older InterLog/.test(line)), 'a version 1 peer is refused with the reason')
  t.equal(b.log.versionVector()[fake], undefined, 'nothing was stored from them')
  t.equal(b.log.length, 1)
})

t.test('filtered sync takes only the chosen origins; events larger than a message arrive whole', async (t) => {
  const broker = await startTestBroker(t)
  const a = await replica(t, broker)
  const b = await replica(t, broker)
  const c = await replica(t, broker, 'main', { origins: [a.log.replicaId], maxMessageBytes: 4096 })
  const big = new Uint8Array(100_000).map((_, i) => i & 0xff)
  await a.log.append(big)
  await a.log.append(payload('small'))
  await b.log.append(payload('not wanted by c'))
  await converge([a, b])
  const started = Date.now()
  while (c.log.length < 2 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(c.log.versionVector(), { [a.log.replicaId]: 2 })
  const events = await sequences(c.log)
  t.equal(events[a.log.replicaId]!.length, 2)
  const [first] = await collect(c.log.read({ from: 0, to: 1 }))
  if (first === undefined) throw new Error('no event read')
  t.same(Buffer.from(first.payload), Buffer.from(big), 'the 100 kB event was reassembled from messages of at most 4 KiB')
})

t.test('several named logs share a broker without mixing', async (t) => {
  const broker = await startTestBroker(t)
  const a1 = await replica(t, broker, 'alpha')
  const b1 = await replica(t, broker, 'alpha')
  const a2 = await replica(t, broker, 'beta')
  const b2 = await replica(t, broker, 'beta')
  await a1.log.append(payload('alpha event'))
  await a2.log.append(payload('beta event'))
  await converge([a1, b1])
  await converge([a2, b2])
  t.same((await sequences(b1.log))[a1.log.replicaId], ['alpha event'])
  t.same((await sequences(b2.log))[a2.log.replicaId], ['beta event'])
  t.equal(b1.log.length, 1)
  t.equal(b2.log.length, 1)
})

t.test('a replica joining while the origin keeps appending catches up without waiting for a pause', async (t) => {
  const broker = await startTestBroker(t)
  const a = await replica(t, broker)
  for (let i = 0; i < 50; i++) await a.log.append(payload(`old ${i}`))
  let appending = true
  const writer = (async () => {
    for (let i = 0; appending; i++) {
      await a.log.append(payload(`new ${i}`))
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })()
  const b = await replica(t, broker)
  const started = Date.now()
  while ((b.log.versionVector()[a.log.replicaId] ?? 0) < 50 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 20))
  const caughtUp = b.log.versionVector()[a.log.replicaId] ?? 0
  appending = false
  await writer
  t.ok(caughtUp >= 50, `the late joiner holds ${caughtUp} events while the origin appends`)
  await converge([a, b])
})

t.test('names that would break presence are refused', async (t) => {
  const broker = await startTestBroker(t)
  const log = await openLog(tempDir(t))
  t.teardown(() => log.close())
  await t.rejects(startSync(log, { url: broker.url, logName: '_nodes' }), { code: 'INVALID_ARGUMENT' })
  await t.rejects(startSync(log, { url: broker.url, logName: 'main', clientId: 'gw+1' }), { code: 'INVALID_ARGUMENT' })
  await t.rejects(startSync(log, { url: 'http://example', logName: 'main' }), { code: 'INVALID_ARGUMENT' })
  await t.rejects(startSync(log, { url: broker.url, logName: 'main', bogus: 1 } as never), { code: 'INVALID_ARGUMENT' })
})
