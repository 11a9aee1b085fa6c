// Prometheus metrics of a running gateway (daemon/metrics.ts, docs/metrics.md): two real daemons
// syncing through a real broker, scraped over HTTP while one catches up with the other.

import t from 'tap'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { connect } from '../../index.js'
import { startTestBroker } from '../helpers/broker.js'
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

const EVENTS = 20_000

/** One scrape: every sample as `name{labels}` to its value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(url)
  if (response.status !== 200) throw new Error(`scrape answered ${response.status}`)
  const samples = new Map<string, number>()
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const space = line.lastIndexOf(' ')
    samples.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return samples
}

/** The address the daemon says it serves metrics on (it says so right after the local API). */
async function metricsUrl(daemon: DaemonProcess): Promise<string> {
  await until(() => /metrics on http:\/\/\S+/.test(daemon.output()), 10_000, 'the metrics line')
  return /metrics on (http:\/\/\S+)/.exec(daemon.output())![1]!
}

t.test('a gateway\'s metrics show a peer falling behind while it is away and the lag going to zero as it catches up', async (t) => {
  const broker = await startTestBroker(t)
  const [dataA, dataB] = [tempDir(t), tempDir(t)]
  const config = (dir: string): string => {
    const file = path.join(dir, 'config.json')
    fs.writeFileSync(file, JSON.stringify({ broker: broker.url, announceIntervalMs: 300, metrics: { listen: ':0' } }))
    return file
  }
  const a = await startDaemon(t, dataA, ['--config', config(dataA)])
  let b = await startDaemon(t, dataB, ['--config', config(dataB)])
  const urlA = await metricsUrl(a)
  t.match((await fetch(urlA)).headers.get('content-type'), /^text\/plain; version=0\.0\.4/, 'Prometheus text format')
  t.match(urlA, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'loopback by default')
  const clientA = await connect(a.socket)
  const clientB = await connect(b.socket)
  const [idA, idB] = [clientA.replicaId, clientB.replicaId]
  await clientB.close()
  await until(async () => (await scrape(urlA)).get(`interlog_peer_online{log="main",peer="${idB}"}`) === 1, 15_000, 'A to see B online')

  await b.stop()
  for (let i = 0; i < EVENTS; i += 1000) await clientA.appendBatch(Array.from({ length: 1000 }, (_, j) => Buffer.from(`reading ${i + j}`)))
  const away = await scrape(urlA)
  t.equal(away.get('interlog_log_events{log="main"}'), EVENTS)
  t.equal(away.get('interlog_appended_events_total{log="main"}'), EVENTS, 'appends through the socket are counted')
  t.ok(away.get('interlog_appended_bytes_total{log="main"}')! > EVENTS * 9, 'and their bytes')
  t.equal(away.get(`interlog_peer_lag_events{log="main",peer="${idB}"}`), EVENTS, 'B lacks every event appended while it was away')
  t.ok(away.get('interlog_fsync_seconds_count{log="main"}')! > 0, 'fsyncs are timed')
  t.ok(away.get('interlog_disk_used_bytes{log="main"}')! > 0 && away.get('interlog_disk_free_bytes{log="main"}')! > 0)
  t.equal(away.get('interlog_socket_clients'), 1)
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.ok((await scrape(urlA)).get(`interlog_peer_lag_seconds{log="main",peer="${idB}"}`)! >= 1, 'and has been behind for a second and more')

  b = await startDaemon(t, dataB, ['--config', config(dataB)])
  const urlB = await metricsUrl(b)
  await until(async () => (await scrape(urlB)).get('interlog_log_events{log="main"}') === EVENTS, 30_000, 'B to catch up')
  await until(async () => {
    const samples = await scrape(urlA)
    return samples.get(`interlog_peer_lag_events{log="main",peer="${idB}"}`) === 0 && samples.get(`interlog_peer_lag_seconds{log="main",peer="${idB}"}`) === 0
  }, 15_000, 'A to see B caught up')
  const caughtUp = await scrape(urlB)
  t.equal(caughtUp.get(`interlog_origin_lag_events{log="main",origin="${idA}"}`), 0, 'B lacks nothing of A')
  t.equal(caughtUp.get(`interlog_origin_lag_seconds{log="main",origin="${idA}"}`), 0, 'and has not lacked anything since')
  t.ok(caughtUp.get('interlog_sync_messages_received_total{log="main"}')! > 0, 'B counts the messages it received')
  t.equal(caughtUp.get('interlog_sync_events_received_total{log="main"}'), EVENTS, 'B received every event once')
  t.equal(caughtUp.get('interlog_sync_connected{log="main"}'), 1)
  const sentA = await scrape(urlA)
  t.ok(sentA.get('interlog_sync_events_sent_total{log="main"}')! >= EVENTS, 'A sent them')
  t.ok(sentA.get('interlog_sync_messages_sent_total{log="main"}')! > 0, 'in messages it counts')
  const notFound = await fetch(urlA.replace('/metrics', '/nothing'))
  t.equal(notFound.status, 404, 'only /metrics, the status page and its status.json are served')
  await clientA.close()
})

t.test('every metric the daemon serves is listed in docs/metrics.md, and every one listed is served', async (t) => {
  const data = tempDir(t)
  const file = path.join(data, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ metrics: { listen: '127.0.0.1:0' } }))
  const daemon = await startDaemon(t, data, ['--config', file])
  const text = await (await fetch(await metricsUrl(daemon))).text()
  const served = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]!))
  const doc = fs.readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8')
  const listed = new Set([...doc.matchAll(/^\| `(interlog_[a-z_]+)` \|/gm)].map((match) => match[1]!))
  t.same([...served].filter((name) => name.startsWith('interlog_') && !listed.has(name)), [], 'served but not documented')
  t.same([...listed].filter((name) => !served.has(name)), [], 'documented but not served')
})

t.test('a metrics setting that is not an address is refused at start-up', async (t) => {
  const { loadConfig } = await import('../../daemon/index.js')
  const data = tempDir(t)
  const file = path.join(data, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ data, metrics: { listen: 'everywhere' } }))
  t.throws(() => loadConfig({ file }), /'metrics' must be null or \{ "listen": "host:port", "hosts": \["name", \.\.\.\] \}/)
  fs.writeFileSync(file, JSON.stringify({ data, metrics: { listen: ':9464', extra: 1 } }))
  t.throws(() => loadConfig({ file }), /'metrics' must be/)
  fs.writeFileSync(file, JSON.stringify({ data, metrics: { listen: 9464 } }))
  t.same(loadConfig({ file }).metrics, { listen: ':9464', hosts: [] }, 'a port alone listens on loopback')
  fs.writeFileSync(file, JSON.stringify({ data, metrics: { listen: ':9464', hosts: ['gateway-17.example'] } }))
  t.same(loadConfig({ file }).metrics, { listen: ':9464', hosts: ['gateway-17.example'] }, 'host names it answers to')
  fs.writeFileSync(file, JSON.stringify({ data, metrics: { listen: ':9464', hosts: ['a b'] } }))
  t.throws(() => loadConfig({ file }), /hosts must be a list of host names/)
})

/** A GET naming `host` in its Host header (fetch would name the address). */
function getAs(url: string, host: string): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers: { host } }, (response) => {
      let body = ''
      response.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => resolve({ status: response.statusCode!, body }))
    }).on('error', reject)
  })
}

t.test('the endpoint answers only to its address and known names (no DNS rebinding), and closes connections that stall', async (t) => {
  const data = tempDir(t)
  const file = path.join(data, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ metrics: { listen: '127.0.0.1:0', hosts: ['gateway-17.example'] } }))
  const daemon = await startDaemon(t, data, ['--config', file])
  const url = await metricsUrl(daemon)
  const port = Number(new URL(url).port)
  for (const path of ['/metrics', '/status.json', '/']) {
    const refused = await getAs(url.replace('/metrics', path), `attacker.example:${port}`)
    t.equal(refused.status, 421, `a page on another name cannot read ${path}`)
    t.match(refused.body, /add the name to metrics\.hosts/, 'and the answer says how to allow a name')
    t.notMatch(refused.body, new RegExp(os.hostname()), 'without naming the machine')
  }
  for (const host of [`127.0.0.1.attacker.example:${port}`, '127.0.0.1.attacker.example', `localhost.attacker.example:${port}`, `gateway-17.example.attacker.example`]) {
    t.equal((await getAs(url, host)).status, 421, `${host} is refused`)
  }
  for (const host of [`127.0.0.1:${port}`, `[::1]:${port}`, `localhost:${port}`, `gateway-17.example:${port}`, 'GATEWAY-17.example.', `${os.hostname()}:${port}`]) {
    t.equal((await getAs(url, host)).status, 200, `${host} is answered`)
  }

  // More idle connections than the endpoint serves: none of them keeps Prometheus out for long.
  const started = Date.now()
  const closed = Array.from({ length: 40 }, () => new Promise<void>((resolve) => {
    net.connect(port, '127.0.0.1').on('error', () => undefined).on('close', () => resolve())
  }))
  await Promise.all(closed)
  const seconds = (Date.now() - started) / 1000
  t.ok(seconds < 9, `the endpoint closed 40 connections that sent nothing within ${seconds.toFixed(1)} s (headers are due in 5 s)`)
  t.equal((await fetch(url)).status, 200, 'and is scraped again')
})

t.test('each gateway publishes a retained health summary; status --fleet on another lists it, and garbage on the health topic is dropped', async (t) => {
  const broker = await startTestBroker(t)
  const [dataA, dataB] = [tempDir(t), tempDir(t)]
  const config = (dir: string): string => {
    const file = path.join(dir, 'config.json')
    fs.writeFileSync(file, JSON.stringify({ broker: broker.url, announceIntervalMs: 300, healthIntervalMs: 200 }))
    return file
  }
  const a = await startDaemon(t, dataA, ['--config', config(dataA)])
  const clientA = await connect(a.socket)
  t.teardown(() => clientA.close())
  await clientA.appendBatch(Array.from({ length: 500 }, (_, i) => Buffer.from(`reading ${i}`)))
  // Garbage and a forged report on the health topics, before B subscribes: retained, so B gets them at once.
  const mqtt = await import('mqtt')
  const rogue = await mqtt.connectAsync(broker.url)
  await rogue.publishAsync('interlog/v1/main/health/0123456789abcdef0123456789abcdef', Buffer.from('not json'), { qos: 1, retain: true })
  await rogue.publishAsync('interlog/v1/main/health/fedcba9876543210fedcba9876543210', JSON.stringify({ v: 1, replica: clientA.replicaId }), { qos: 1, retain: true })
  await rogue.endAsync()
  const b = await startDaemon(t, dataB, ['--config', config(dataB)])
  const clientB = await connect(b.socket)
  t.teardown(() => clientB.close())
  await until(async () => {
    const fleet = (await clientB.status({ fleet: true })).fleet ?? []
    return fleet.some((entry) => entry.replica === clientA.replicaId && entry.report['length'] === 500)
  }, 15_000, 'B to hear A\'s health with its 500 events')
  const { fleet, sync } = await clientB.status({ fleet: true })
  t.same(fleet!.map((entry) => entry.replica), [clientA.replicaId], 'only A reports: the garbage and the report on another replica\'s topic are not kept')
  const report = fleet![0]!.report
  t.equal(report['v'], 1)
  t.equal(report['log'], 'main')
  t.equal(report['durableLength'], 500)
  t.equal(report['ownEvents'], 500)
  t.ok(typeof report['diskFreeBytes'] === 'number' && typeof report['diskUsedBytes'] === 'number' && report['noSpace'] === false)
  t.ok(sync!.messagesDropped >= 2, `B dropped both (${sync!.messagesDropped} dropped)`)
  t.notOk('fleet' in (await clientB.status()), 'plain status does not carry the fleet')

  const { execFile } = await import('node:child_process')
  const { promisify } = await import('node:util')
  const { CLI } = await import('../helpers/daemon.js')
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'status', '--socket', b.socket, '--fleet'])
  t.match(stdout, new RegExp(`fleet \\(1 other replica reporting health\\)\\n  ${clientA.replicaId} \\S+: 500 events \\(500 durable\\), behind 0`), 'status --fleet lists A')
  const json = JSON.parse((await promisify(execFile)(process.execPath, [CLI, 'status', '--socket', b.socket, '--fleet', '--json'])).stdout) as { fleet: { replica: string }[] }
  t.same(json.fleet.map((entry) => entry.replica), [clientA.replicaId], 'and --json carries it')

  // A report written an hour ago by the gateway's clock, published now: a clock an hour slow, not a silent gateway.
  const gone = '00112233445566778899aabbccddeeff'
  const publisher = await mqtt.connectAsync(broker.url)
  await publisher.publishAsync(`interlog/v1/main/health/${gone}`, JSON.stringify({ v: 1, replica: gone, node: 'truck-9', log: 'main', length: 7, timeMs: Date.now() - 3_600_000, intervalMs: 60_000 }), { qos: 1, retain: true })
  await publisher.endAsync()
  await until(async () => ((await clientB.status({ fleet: true })).fleet ?? []).some((entry) => entry.replica === gone), 15_000, 'B to hear the report')
  const slow = (await promisify(execFile)(process.execPath, [CLI, 'status', '--socket', b.socket, '--fleet'])).stdout
  t.match(slow, new RegExp(`  ${gone} truck-9: 7 events .*reported \\d s ago, its clock 3[56]\\d\\d s behind ours\\n`), 'a live report: aged from its arrival, the slow clock said')
  t.match(stdout, /reported \d s ago\n/, 'a live report in time is not marked')

  // B restarts: the broker hands it the report it kept, an hour old by the gateway's clock, and nothing since.
  await clientB.close()
  await b.stop()
  const b2 = await startDaemon(t, dataB, ['--config', config(dataB)])
  const clientB2 = await connect(b2.socket)
  t.teardown(() => clientB2.close())
  await until(async () => ((await clientB2.status({ fleet: true })).fleet ?? []).some((entry) => entry.replica === gone), 15_000, 'B to get the kept report')
  const silent = (await promisify(execFile)(process.execPath, [CLI, 'status', '--socket', b2.socket, '--fleet'])).stdout
  t.match(silent, new RegExp(`  ${gone} truck-9: 7 events .*reported 3[56]\\d\\d s ago \\(kept by the broker\\); SILENT \\(reports every 60 s\\)`), 'a kept report: aged from when it was written, and marked silent')
})
