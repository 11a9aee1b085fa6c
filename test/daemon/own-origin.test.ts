// One origin, one history on real gateways: a daemon whose log lost its tail without a trace comes
// back while its peer is away, appends at once, and hears of the peer only from the broker's
// retained status. Its new events never go out under positions the peer holds: they move to a new
// origin, its old history comes back from the peer, and the peer never sees a second history.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect } from '../../index.js'
import { startTestBroker } from '../helpers/broker.js'
import { startDaemon } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

const EVENTS = 2000

async function withClient<T>(socket: string, work: (client: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> {
  const client = await connect(socket)
  try {
    return await work(client)
  } finally {
    await client.close()
  }
}

/** The replicas with a retained health report on the broker now. */
async function retainedHealth(url: string): Promise<Set<string>> {
  const mqtt = await import('mqtt')
  const client = await mqtt.connectAsync(url)
  const replicas = new Set<string>()
  client.on('message', (topic, payload, packet) => { if (packet.retain && payload.length > 0) replicas.add(topic.split('/').pop()!) })
  await client.subscribeAsync('interlog/v1/main/health/+', { qos: 1 })
  await new Promise((resolve) => setTimeout(resolve, 300))
  await client.endAsync()
  return replicas
}

const vectorOf = (socket: string): Promise<Record<string, number>> => withClient(socket, async (client) => (await client.status()).vector)

t.test('a gateway that lost its tail and appends before it hears its peer starts a new origin; the peer never sees two histories', async (t) => {
  const broker = await startTestBroker(t)
  const [dataA, dataB] = [tempDir(t), tempDir(t)]
  const config = (dir: string): string => {
    const file = path.join(dir, 'config.json')
    fs.writeFileSync(file, JSON.stringify({ broker: broker.url, announceIntervalMs: 500, healthIntervalMs: 500 }))
    return file
  }
  let a = await startDaemon(t, dataA, ['--config', config(dataA)])
  let b = await startDaemon(t, dataB, ['--config', config(dataB)])
  const origin = await withClient(a.socket, async (client) => {
    for (let i = 0; i < EVENTS; i += 100) await client.appendBatch(Array.from({ length: 100 }, (_, j) => Buffer.from(`event ${i + j}`)))
    return client.replicaId
  })
  await until(async () => (await vectorOf(b.socket))[origin] === EVENTS, 30_000, 'B to hold all of A')
  await b.stop()
  await a.stop()

  // A's last pages go to zeros: open cannot tell them from a torn tail.
  const segment = path.join(dataA, 'logs', 'main', '000000000000.seg')
  const bytes = fs.readFileSync(segment)
  let end = Math.min(bytes.length, 4 << 20)
  while (end > 0 && bytes[end - 1] === 0) end--
  bytes.fill(0, end - 8192, end)
  fs.writeFileSync(segment, bytes)

  a = await startDaemon(t, dataA, ['--config', config(dataA)])
  const kept = (await vectorOf(a.socket))[origin] ?? 0
  t.ok(kept < EVENTS, `A came back with ${kept} of its ${EVENTS} events`)
  const appended = await withClient(a.socket, async (client) => client.appendBatch(Array.from({ length: 10 }, (_, i) => Buffer.from(`after ${i}`))))
  t.equal(appended.length, 10, 'A appends at once')
  await until(async () => (await withClient(a.socket, async (client) => client.replicaId)) !== origin, 15_000, 'A to move to a new origin')
  const moved = await withClient(a.socket, async (client) => client.replicaId)
  t.match(a.output(), /holds 2000 events of this log's own origin|no longer as/, 'the journal says why')
  await until(async () => {
    const retained = await retainedHealth(broker.url)
    return retained.has(moved) && !retained.has(origin)
  }, 15_000, 'the old id\'s retained health report cleared and the new id reporting')
  t.pass('a fleet view does not keep showing the old id as a gateway')

  b = await startDaemon(t, dataB, ['--config', config(dataB)])
  await until(async () => {
    const [va, vb] = [await vectorOf(a.socket), await vectorOf(b.socket)]
    return va[origin] === EVENTS && vb[moved] === 10
  }, 30_000, 'A to get its old history back and B the new events')
  const fromB = await withClient(b.socket, async (client) => {
    const texts: string[] = []
    for await (const event of client.read()) if (event.origin === origin) texts.push(Buffer.from(event.payload).toString())
    return { texts, status: await client.status() }
  })
  t.same(fromB.texts, Array.from({ length: EVENTS }, (_, i) => `event ${i}`), 'B holds one history of the old origin, the original')
  t.equal(fromB.status.vector[origin], EVENTS)
  t.equal((fromB.status as unknown as { security: { equivocations: unknown[] } }).security.equivocations.length, 0, 'and saw no second one')
  const fromA = await withClient(a.socket, async (client) => {
    const texts: string[] = []
    for await (const event of client.read()) if (event.origin === moved) texts.push(Buffer.from(event.payload).toString())
    return texts
  })
  t.same(fromA, Array.from({ length: 10 }, (_, i) => `after ${i}`), 'the events A appended after the loss are under its new origin')
  await b.stop()
  await a.stop()
})
