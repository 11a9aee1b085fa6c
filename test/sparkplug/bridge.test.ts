// The Sparkplug B store-and-forward bridge (sparkplug/, docs/sparkplug.md) with a real mosquitto,
// a real daemon, an edge node publishing NBIRTH and NDATA with raw MQTT.js and sparkplug-payload, and
// a primary host application that goes OFFLINE and comes back ONLINE: it gets every NDATA, the ones
// it missed republished in order and flagged historical, and a replay cut by a SIGKILL of the
// daemon resumes after the restart.

import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { get } from 'sparkplug-payload'
import { connect } from '../../index.js'
import { startTestBroker, type TestBroker } from '../helpers/broker.js'
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

const sp = get('spBv1.0')!
const STATE = 'spBv1.0/STATE/scada'

interface Received { value: number, historical: boolean }

/** The primary host: subscribes to the group, then says ONLINE (retained), with its Last Will saying OFFLINE. */
async function hostOnline(url: string, received: Received[]): Promise<MqttClient> {
  const connectedAt = Date.now()
  const host = await mqtt.connectAsync(url, {
    protocolVersion: 5, clientId: 'scada-host', clean: true,
    will: { topic: STATE, payload: Buffer.from(JSON.stringify({ online: false, timestamp: connectedAt })), qos: 1, retain: true },
  })
  host.on('message', (topic, payload) => {
    if (!topic.startsWith('spBv1.0/plant/NDATA/')) return
    const decoded = sp.decodePayload(payload)
    const metric = decoded.metrics![0]!
    received.push({ value: metric.value as number, historical: metric.isHistorical === true })
  })
  await host.subscribeAsync('spBv1.0/plant/#', { qos: 1 })
  await host.publishAsync(STATE, JSON.stringify({ online: true, timestamp: connectedAt }), { qos: 1, retain: true })
  return host
}

async function hostOffline(host: MqttClient): Promise<void> {
  await host.publishAsync(STATE, JSON.stringify({ online: false, timestamp: Date.now() }), { qos: 1, retain: true })
  await host.endAsync()
}

async function publishReadings(edge: MqttClient, from: number, to: number): Promise<void> {
  for (let value = from; value < to; value++) {
    const payload = sp.encodePayload({ timestamp: Date.now(), seq: value % 256, metrics: [{ name: 'reading', type: 'Int32', value, timestamp: Date.now() }] })
    await edge.publishAsync('spBv1.0/plant/NDATA/line-3', Buffer.from(payload), { qos: 1 })
  }
}

/** What the daemon's status says: messages the bridge recorded, and events on disk. */
async function counts(daemon: DaemonProcess): Promise<{ recorded: number, durable: number }> {
  const client = await connect(daemon.socket)
  try {
    const status = await client.status()
    return { recorded: (status as unknown as { sparkplug: { recorded: number } }).sparkplug.recorded, durable: status.durableLength }
  } finally {
    await client.close()
  }
}

const recorded = async (daemon: DaemonProcess): Promise<number> => (await counts(daemon)).recorded
const durable = async (daemon: DaemonProcess): Promise<number> => (await counts(daemon)).durable

/** mosquitto, a daemon whose bridge records group `plant` for host `scada` (with `settings`), and an edge node. */
async function gateway(t: Test, settings: Record<string, unknown>): Promise<{ broker: TestBroker, data: string, file: string, daemon: DaemonProcess, edge: MqttClient }> {
  const broker = await startTestBroker(t)
  if (broker.kind !== 'mosquitto') t.fail('the Sparkplug tests need mosquitto (MQTT 5); CI installs it')
  const data = tempDir(t)
  const file = path.join(data, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ broker: broker.url, durability: 'interval', sparkplug: { groups: ['plant'], primaryHosts: ['scada'], ...settings } }))
  const daemon = await startDaemon(t, data, ['--config', file])
  await until(() => /sparkplug: recording groups plant/.test(daemon.output()), 15_000, 'the bridge to subscribe')
  const edge = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'line-3' })
  t.teardown(() => edge.endAsync())
  return { broker, data, file, daemon, edge }
}

/** A host that will die without a word: its Last Will says OFFLINE with the timestamp of its ONLINE. */
async function hostThatDies(url: string, keepalive: number, received?: Received[]): Promise<MqttClient> {
  const connectedAt = Date.now()
  const host = await mqtt.connectAsync(url, {
    protocolVersion: 5, clientId: 'scada-host', keepalive, reconnectPeriod: 0,
    will: { topic: STATE, payload: Buffer.from(JSON.stringify({ online: false, timestamp: connectedAt })), qos: 1, retain: true },
  })
  host.on('message', (topic, payload) => {
    if (topic.startsWith('spBv1.0/plant/NDATA/')) received?.push({ value: sp.decodePayload(payload).metrics![0]!.value as number, historical: false })
  })
  await host.subscribeAsync('spBv1.0/plant/#', { qos: 1 })
  await host.publishAsync(STATE, JSON.stringify({ online: true, timestamp: connectedAt }), { qos: 1, retain: true })
  return host
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

t.test('a primary host that goes OFFLINE gets what it missed when ONLINE again: in order, historical, once; a replay cut by a crash resumes', async (t) => {
  const started = await gateway(t, { replayRatePerSecond: 200 })
  const { broker, data, file, edge } = started
  let daemon = started.daemon
  await edge.publishAsync('spBv1.0/plant/NBIRTH/line-3', Buffer.from(sp.encodePayload({ timestamp: Date.now(), seq: 0, metrics: [{ name: 'reading', type: 'Int32', value: 0 }] })), { qos: 1 })
  const received: Received[] = []
  const hosts: MqttClient[] = []
  t.teardown(() => Promise.all(hosts.map((client) => client.endAsync(true))))
  let host = await hostOnline(broker.url, received)
  hosts.push(host)
  await until(() => /host scada online/.test(daemon.output()), 10_000, 'the bridge to see the host online')

  // Online: the host gets the readings live.
  await publishReadings(edge, 0, 20)
  await until(() => received.length === 20, 10_000, 'the live readings')
  // Offline: the bridge records what the host misses.
  await hostOffline(host)
  await until(() => /host scada offline/.test(daemon.output()), 10_000, 'the bridge to see the host offline')
  await publishReadings(edge, 20, 60)
  await until(async () => (await recorded(daemon)) >= 61, 10_000, 'the bridge to record the birth and 60 readings')
  // Online again: the 40 it missed come as historical, while new readings come live.
  host = await hostOnline(broker.url, received)
  hosts.push(host)
  await publishReadings(edge, 60, 80)
  await until(() => received.length === 80, 15_000, 'every reading, live or replayed')
  const historical = received.filter((r) => r.historical).map((r) => r.value)
  const live = received.filter((r) => !r.historical).map((r) => r.value)
  t.same(historical, range(20, 60), 'the 40 readings it missed, in order, each flagged is_historical')
  t.same(live, [...range(0, 20), ...range(60, 80)], 'the others live, once')

  // A replay cut by a SIGKILL of the daemon: after the restart it goes on from its consumer.
  await hostOffline(host)
  await until(() => (daemon.output().match(/host scada offline/g) ?? []).length === 2, 10_000, 'offline again')
  await publishReadings(edge, 80, 380)
  await until(async () => (await recorded(daemon)) >= 361 && (await durable(daemon)) >= 361, 15_000, 'the 300 readings recorded and on disk')
  const before = received.length
  host = await hostOnline(broker.url, received)
  hosts.push(host)
  await until(() => received.length >= before + 120, 15_000, 'the replay to be under way')
  await daemon.stop('SIGKILL')
  daemon = await startDaemon(t, data, ['--config', file])
  await until(() => new Set(received.slice(before).map((r) => r.value)).size === 300, 30_000, 'the replay to finish after the restart')
  const second = received.slice(before)
  t.ok(second.every((r) => r.historical), 'all of them historical')
  const firstSeen: number[] = []
  for (const r of second) if (!firstSeen.includes(r.value)) firstSeen.push(r.value)
  t.same(firstSeen, range(80, 380), 'every missed reading, in order')
  const repeats = second.length - 300
  t.ok(repeats <= 100, `${repeats} repeated after the crash (at most the 100 since the replay's last commit)`)
  // The order holds within each run: the repeats start again from the last commit.
  const restart = second.findIndex((r, i) => i > 0 && r.value <= second[i - 1]!.value)
  t.same(second.slice(restart === -1 ? 0 : restart).map((r) => r.value), range(second[restart === -1 ? 0 : restart]!.value, 380), 'the resumed replay in order to the end')
})

t.test('a sparkplug setting that cannot work is refused at start-up with what is wrong', async (t) => {
  const { loadConfig } = await import('../../daemon/index.js')
  const data = tempDir(t)
  const file = path.join(data, 'config.json')
  const refused = (sparkplug: unknown, broker = 'mqtt://127.0.0.1:1883'): unknown => {
    fs.writeFileSync(file, JSON.stringify({ data, broker, sparkplug }))
    return loadConfig({ file })
  }
  t.throws(() => refused({ groups: [] }), /'sparkplug.groups' must be a non-empty list/)
  t.throws(() => refused({ groups: ['plant/#'] }), /no \/ \+ #/)
  t.throws(() => refused({ groups: ['plant'], replay: true }), /unknown key 'sparkplug.replay'/)
  t.throws(() => refused({ groups: ['plant'], log: 'other' }), /'sparkplug.log' is other, not one of the daemon's logs/)
  t.throws(() => refused({ groups: ['plant'] }, 'none'), /'sparkplug' needs a broker/)
  t.throws(() => refused({ groups: ['plant'], replayRatePerSecond: 0 }), /replayRatePerSecond' must be an integer from 1/)
  t.same((refused({ groups: ['plant'], primaryHosts: ['scada'] }) as { sparkplug: unknown }).sparkplug,
    { broker: null, log: null, groups: ['plant'], edgeNodes: null, primaryHosts: ['scada'], replayRatePerSecond: 500, hostDeathGraceMs: 90_000 }, 'defaults')
})

t.test('a host that dies without a word (its Last Will) still gets what it missed: the gap counts from hostDeathGraceMs before the will', async (t) => {
  const { broker, daemon, edge } = await gateway(t, { hostDeathGraceMs: 3000 })
  const received: Received[] = []
  const dying = await hostThatDies(broker.url, 1, received)
  await until(() => /host scada online/.test(daemon.output()), 10_000, 'the host online')
  await publishReadings(edge, 0, 10)
  await until(() => received.length === 10, 10_000, 'the live readings')
  dying.stream.destroy() // no DISCONNECT: the broker fires the will after a keep-alive and a half
  await publishReadings(edge, 10, 20) // lost to the host: the broker still thinks it is there
  await until(() => /host scada offline \(counted from 3 s before\)/.test(daemon.output()), 10_000, 'the will to reach the bridge')
  await publishReadings(edge, 20, 30)
  await until(async () => (await recorded(daemon)) >= 30, 10_000, 'the readings recorded')
  const host = await hostOnline(broker.url, received)
  t.teardown(() => host.endAsync(true))
  await until(() => received.some((r) => r.historical && r.value === 29), 15_000, 'the replay')
  await new Promise((resolve) => setTimeout(resolve, 300))
  const historical = received.filter((r) => r.historical).map((r) => r.value)
  t.ok(range(10, 30).every((value) => historical.includes(value)), `the readings sent while the host was dead and after: all replayed (${historical.join(' ')})`)
  t.same(historical, [...historical].sort((a, b) => a - b), 'in order')
  t.ok(historical.length - 20 <= 10, `at most the readings of the grace before them repeat (${historical.length - 20})`)
})

t.test('a host that dies and comes straight back (will and ONLINE back to back) still gets what the broker sent it while dead', async (t) => {
  const { broker, daemon, edge } = await gateway(t, { hostDeathGraceMs: 5000 })
  const received: Received[] = []
  const dying = await hostThatDies(broker.url, 60)
  await until(() => /host scada online/.test(daemon.output()), 10_000, 'the host online')
  dying.stream.destroy() // gone without a word; the broker learns of it only when the host comes back
  await publishReadings(edge, 0, 20)
  await until(async () => (await recorded(daemon)) >= 20, 10_000, 'the readings recorded')
  await new Promise((resolve) => setTimeout(resolve, 1500)) // the bridge commits what it thinks went live
  const host = await hostOnline(broker.url, received) // same client id: the broker fires the will, then ONLINE
  t.teardown(() => host.endAsync(true))
  await until(() => range(0, 20).every((value) => received.some((r) => r.historical && r.value === value)), 15_000, 'the readings sent to the dead host, replayed')
  t.pass('the will rolled the consumer back although ONLINE came right after it')
})

t.test('a replay cut by OFFLINE, then a crash, then ONLINE: the host gets the rest and what came since', async (t) => {
  const started = await gateway(t, { replayRatePerSecond: 50 })
  const { broker, data, file, edge } = started
  let daemon = started.daemon
  const received: Received[] = []
  let host = await hostOnline(broker.url, received)
  await until(() => /host scada online/.test(daemon.output()), 10_000, 'the host online')
  await hostOffline(host)
  await until(() => /host scada offline/.test(daemon.output()), 10_000, 'offline')
  await publishReadings(edge, 0, 100)
  await until(async () => (await recorded(daemon)) >= 100, 10_000, 'recorded')
  host = await hostOnline(broker.url, received)
  await until(() => received.length >= 20, 10_000, 'the replay under way')
  await hostOffline(host) // cut
  await until(() => (daemon.output().match(/host scada offline/g) ?? []).length === 2, 10_000, 'offline again')
  await publishReadings(edge, 100, 150)
  await until(async () => (await recorded(daemon)) >= 150 && (await durable(daemon)) >= 150, 10_000, 'recorded and on disk')
  await daemon.stop('SIGKILL')
  daemon = await startDaemon(t, data, ['--config', file])
  await until(() => /sparkplug: recording groups plant/.test(daemon.output()), 15_000, 'the bridge again')
  host = await hostOnline(broker.url, received)
  t.teardown(() => host.endAsync(true))
  await until(() => new Set(received.filter((r) => r.historical).map((r) => r.value)).size === 150, 30_000, 'every reading replayed')
  t.pass('the replay after the crash went past the end the cut replay had')
})

t.test('consumer names of host ids: within 64 characters, and no host\'s name is another\'s', async (t) => {
  const { hostConsumerNames } = await import('../../sparkplug/index.js')
  const long = hostConsumerNames('Ignition Gateway Primary Host Application at the plant in Linz')
  t.ok(long.position.length <= 64 && long.until.length <= 64, `${long.position} and ${long.until}`)
  t.match(long.position, /^[A-Za-z0-9_.-]+$/)
  t.notSame(hostConsumerNames('foo').position, hostConsumerNames('foo.until').until)
  t.notSame(hostConsumerNames('foo').until, hostConsumerNames('foo.until').position)
  t.notSame(hostConsumerNames('a b').position, hostConsumerNames('a_b').position, 'names made safe keep apart')
})
