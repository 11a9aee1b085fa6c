// The Node-RED nodes (node-red/interlog.js, docs/node-red.md) in the real Node-RED runtime
// (node-red-node-test-helper) against a real daemon: appends from a flow, a tail that commits only
// what the flow acknowledged and resumes there after the flow restarts, and errors a Catch node sees.

import t from 'tap'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import { connect } from '../../index.js'
import { startDaemon } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

const require = createRequire(import.meta.url)
// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper') as {
  init(runtime: string, settings?: object): void
  startServer(done: () => void): void
  stopServer(done: () => void): void
  load(nodes: unknown, flow: object[]): Promise<void>
  unload(): Promise<void>
  getNode(id: string): NodeRedNode
}
interface NodeRedNode {
  on(event: string, listener: (value: any) => void): void
  receive(msg: object): void
}
const interlogNodes = require('../../node-red/interlog.js')
helper.init(require.resolve('node-red'))

t.before(() => new Promise<void>((resolve) => helper.startServer(resolve)))
t.teardown(() => new Promise<void>((resolve) => helper.stopServer(resolve)))
t.afterEach(() => helper.unload())

/** Messages that reach a helper node, as they come. */
function collect(node: NodeRedNode): any[] {
  const messages: any[] = []
  node.on('input', (msg) => messages.push(msg))
  return messages
}

t.test('interlog append stores Buffers as they are, strings as UTF-8 and objects as JSON or CBOR, and passes each message on with its id', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  await helper.load(interlogNodes, [
    { id: 'd', type: 'interlog-daemon', socket: daemon.socket, log: '' },
    { id: 'asJson', type: 'interlog append', daemon: 'd', encoding: 'json', wires: [['out']] },
    { id: 'asCbor', type: 'interlog append', daemon: 'd', encoding: 'cbor', wires: [['out']] },
    { id: 'out', type: 'helper' },
  ])
  const out = collect(helper.getNode('out'))
  helper.getNode('asJson').receive({ payload: Buffer.from([1, 2, 3]) })
  helper.getNode('asJson').receive({ payload: 'temperature 21.5' })
  helper.getNode('asJson').receive({ payload: { sensor: 'a', value: 21.5 } })
  helper.getNode('asCbor').receive({ payload: { sensor: 'b', value: 7 } })
  await until(() => out.length === 4, 10_000, 'four messages through')
  const client = await connect(daemon.socket)
  t.teardown(() => client.close())
  t.same(out.map((msg) => msg.interlog.origin), Array(4).fill(client.replicaId), 'each message carries its event id')
  t.same(out.map((msg) => msg.interlog.pos).sort(), [0, 1, 2, 3])
  const stored: Buffer[] = []
  for await (const event of client.read()) stored.push(Buffer.from(event.payload))
  const byPos = new Map(out.map((msg) => [msg.interlog.pos, msg]))
  t.same(stored[byPos.get(0)!.interlog.pos], Buffer.from([1, 2, 3]), 'a Buffer as it is')
  t.equal(stored[1]!.toString(), 'temperature 21.5', 'a string as UTF-8')
  t.same(JSON.parse(stored[2]!.toString()), { sensor: 'a', value: 21.5 }, 'an object as JSON')
  const { decode } = await import('cbor-x')
  t.same(decode(stored[3]!), { sensor: 'b', value: 7 }, 'or as CBOR')
})

t.test('a refused append is an error with the message (a Catch node sees it), and the flow goes on', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  await helper.load(interlogNodes, [
    { id: 'd', type: 'interlog-daemon', socket: daemon.socket, log: '' },
    { id: 'a', type: 'interlog append', daemon: 'd', wires: [['out']] },
    { id: 'out', type: 'helper' },
  ])
  const out = collect(helper.getNode('out'))
  const errors: any[] = []
  helper.getNode('a').on('call:error', (call) => errors.push(call))
  helper.getNode('a').receive({ payload: Buffer.alloc(2 << 20), topic: 'too big' }) // over the default maxEventBytes, 1 MiB
  helper.getNode('a').receive({ payload: undefined, topic: 'nothing' })
  helper.getNode('a').receive({ payload: 'fits' })
  await until(() => errors.length === 2 && out.length === 1, 10_000, 'two errors and one append')
  const messages = errors.map((call) => `${call.args[0]?.message ?? call.args[0]}`)
  t.match(messages.join('\n'), /payload 0 has 2097152 bytes; maxEventBytes is 1048576/, 'the oversized payload is named')
  t.match(messages.join('\n'), /msg\.payload is missing/, 'the missing payload is named')
  t.same(errors.map((call) => call.args[1]?.topic).sort(), ['nothing', 'too big'], 'each error carries its message')
  t.equal(out[0].interlog.pos, 0, 'the next message is appended')
})

t.test('interlog tail with a consumer commits only what the flow acknowledged, and a restarted flow resumes there', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const client = await connect(daemon.socket)
  t.teardown(() => client.close())
  await client.appendBatch(Array.from({ length: 10 }, (_, i) => Buffer.from(JSON.stringify({ reading: i }))))
  const flow = [
    { id: 'd', type: 'interlog-daemon', socket: daemon.socket, log: '' },
    { id: 'tail', type: 'interlog tail', daemon: 'd', consumer: 'dashboard', from: 'start', ack: 'manual', inFlightMax: 4, output: 'json', wires: [['out']] },
    { id: 'out', type: 'helper' },
  ]
  await helper.load(interlogNodes, flow)
  let out = collect(helper.getNode('out'))
  await until(() => out.length === 4, 10_000, 'the first four')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(out.length, 4, 'no more than four wait for acknowledgement')
  t.same(out.map((msg) => msg.payload.reading), [0, 1, 2, 3], 'in order, parsed')
  t.same(Object.keys(out[0].interlog).sort(), ['consumer', 'localPos', 'origin', 'pos', 'time'])
  // An acknowledgement this tail is not waiting for (another tail's, or made up) commits nothing.
  const refusals: any[] = []
  helper.getNode('tail').on('call:error', (call) => refusals.push(call))
  helper.getNode('tail').receive({ interlog: { ...out[2].interlog, consumer: 'another' } })
  helper.getNode('tail').receive({ interlog: { ...out[2].interlog, pos: out[2].interlog.pos + 100 } })
  await until(() => refusals.length === 2, 10_000, 'both refused')
  t.match(`${refusals[0].args[0]?.message ?? refusals[0].args[0]}`, /not waiting for/)
  // The flow handles 0, 1 and 3; 2 is still being handled: only 0 and 1 may be committed.
  for (const i of [0, 1, 3]) helper.getNode('tail').receive(out[i])
  await until(() => out.length === 7, 10_000, 'three more as three were acknowledged')
  await until(async () => (await client.consumers()).find((c) => c.name === 'dashboard')?.position === 2, 10_000, 'the commit to reach 2')
  t.pass('committed up to the oldest message still in flight')

  await helper.unload()
  await helper.load(interlogNodes, flow)
  out = collect(helper.getNode('out'))
  await until(() => out.length === 4, 10_000, 'the restarted flow')
  t.same(out.map((msg) => msg.payload.reading), [2, 3, 4, 5], 'starts again at the first message not acknowledged')
  for (const msg of out) helper.getNode('tail').receive(msg)
  await until(() => out.length === 8, 10_000, 'the rest')
  for (const msg of out.slice(4)) helper.getNode('tail').receive(msg)
  await until(async () => (await client.consumers()).find((c) => c.name === 'dashboard')?.position === 10, 10_000, 'all committed')
  t.same(out.map((msg) => msg.payload.reading), [2, 3, 4, 5, 6, 7, 8, 9], 'every event, once after the restart')
})

t.test('interlog tail without a consumer follows new events from the end, and survives a daemon restart', async (t) => {
  const data = tempDir(t)
  let daemon = await startDaemon(t, data)
  let client = await connect(daemon.socket)
  await client.appendBatch([Buffer.from('old')])
  await helper.load(interlogNodes, [
    { id: 'd', type: 'interlog-daemon', socket: daemon.socket, log: '' },
    { id: 'tail', type: 'interlog tail', daemon: 'd', from: 'end', output: 'string', wires: [['out']] },
    { id: 'out', type: 'helper' },
  ])
  const out = collect(helper.getNode('out'))
  await new Promise((resolve) => setTimeout(resolve, 500))
  await client.append(Buffer.from('new 1'))
  await until(() => out.length === 1, 10_000, 'the new event')
  t.equal(out[0].payload, 'new 1', 'from the end: the old event is not sent')
  await client.close()
  await daemon.stop()
  daemon = await startDaemon(t, data)
  client = await connect(daemon.socket)
  t.teardown(() => client.close())
  await client.append(Buffer.from('new 2'))
  await until(() => out.length === 2, 15_000, 'the tail to come back')
  t.same(out.map((msg) => msg.payload), ['new 1', 'new 2'], 'nothing twice, nothing missed')
})

t.test('the example flow runs: readings appended every second, read back by a consumer that commits what the flow handled', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const flow = (JSON.parse(fs.readFileSync(new URL('../../examples/node-red-flow.json', import.meta.url), 'utf8')) as Record<string, unknown>[])
    .map((node) => (node['type'] === 'interlog-daemon' ? { ...node, socket: daemon.socket } : node))
  const inject = require('@node-red/nodes/core/common/20-inject.js')
  const fn = require('@node-red/nodes/core/function/10-function.js')
  await helper.load([interlogNodes, inject, fn], flow)
  const client = await connect(daemon.socket)
  t.teardown(() => client.close())
  await until(async () => ((await client.consumers()).find((c) => c.name === 'dashboard')?.position ?? 0) >= 3, 20_000, 'three readings committed')
  const readings: unknown[] = []
  for await (const event of client.read({ to: 3 })) readings.push(JSON.parse(Buffer.from(event.payload).toString()))
  t.same(readings, Array(3).fill({ sensor: 'line-3', celsius: 21.5 }), 'the readings, as JSON')
})
