// The daemon's status page (web/status.html, served next to /metrics): loaded in a real headless
// browser (Debian's chromium), its figures checked against `interlog status --json`, and a
// screenshot saved.

import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { connect } from '../../index.js'
import { startTestBroker } from '../helpers/broker.js'
import { CLI, startDaemon, type DaemonProcess } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

const run = promisify(execFile)
const CHROMIUM = '/usr/bin/chromium'

async function pageUrl(daemon: DaemonProcess): Promise<string> {
  await until(() => /metrics on http:\/\/\S+/.test(daemon.output()), 10_000, 'the metrics line')
  return /metrics on (http:\/\/\S+)\/metrics/.exec(daemon.output())![1]! + '/'
}

/** Chromium, headless, as root (no sandbox): the page's DOM once its script has run. */
async function browse(url: string, args: string[]): Promise<string> {
  const { stdout } = await run(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=5000', ...args, url], { timeout: 60_000, maxBuffer: 16 << 20 })
  return stdout
}

/** The values of the cells marked data-field="name", in document order. */
function fields(dom: string, name: string): string[] {
  return [...dom.matchAll(new RegExp(`data-field="${name}"[^>]*>([^<]*)<`, 'g'))].map((match) => match[1]!)
}

t.test('the status page shows what status --json says: events, durable, peers and their lag, consumers; and renders', async (t) => {
  t.ok(fs.existsSync(CHROMIUM), `chromium is installed at ${CHROMIUM} (.ci/run installs it)`)
  const broker = await startTestBroker(t)
  const [dataA, dataB] = [tempDir(t), tempDir(t)]
  const config = (dir: string, extra: object): string => {
    const file = path.join(dir, 'config.json')
    fs.writeFileSync(file, JSON.stringify({ broker: broker.url, announceIntervalMs: 300, ...extra }))
    return file
  }
  const a = await startDaemon(t, dataA, ['--config', config(dataA, { metrics: { listen: ':0' } })])
  const b = await startDaemon(t, dataB, ['--config', config(dataB, {})])
  const client = await connect(a.socket)
  t.teardown(() => client.close())
  const clientB = await connect(b.socket)
  const idB = clientB.replicaId
  await clientB.close()
  await client.appendBatch(Array.from({ length: 1234 }, (_, i) => Buffer.from(`reading ${i}`)))
  const consumer = await client.consumer('dashboard', { startAt: 'earliest' })
  for await (const batch of consumer.batches({ max: 200 })) {
    await consumer.commit(batch[batch.length - 1]!.localPos)
    break
  }
  await until(async () => (await client.status()).sync?.peers.some((peer) => peer.replica === idB && peer.vector[client.replicaId] === 1234) ?? false, 15_000, 'B to catch up')
  await b.stop()
  await until(async () => (await client.status()).sync?.peers.some((peer) => peer.replica === idB && !peer.online) ?? false, 15_000, 'A to see B offline')
  await client.appendBatch(Array.from({ length: 66 }, (_, i) => Buffer.from(`later ${i}`)))

  const url = await pageUrl(a)
  const dom = await browse(url, ['--dump-dom'])
  const status = JSON.parse((await run(process.execPath, [CLI, 'status', '--socket', a.socket, '--json'])).stdout) as {
    replicaId: string, length: number, durableLength: number, segments: number, consumers: { name: string, position: number, lag: number }[],
    peers: { replica: string, online: boolean, lag: number }[]
  }
  t.match(dom, /data-ready="true"/, 'the page loaded its status')
  t.same(fields(dom, 'replicaId'), [status.replicaId])
  t.same(fields(dom, 'length'), [String(status.length)], `events: ${status.length}`)
  t.same(fields(dom, 'durableLength'), [String(status.durableLength)])
  t.same(fields(dom, 'segments'), [String(status.segments)])
  t.same(fields(dom, 'peer'), status.peers.map((peer) => peer.replica), 'the same peers')
  t.same(fields(dom, 'online'), status.peers.map((peer) => (peer.online ? 'online' : 'offline')))
  t.same(fields(dom, 'peerLag'), status.peers.map((peer) => String(peer.lag)), 'the same lag per peer')
  t.same(fields(dom, 'peerLag'), ['66'], 'B, away, lacks the last 66')
  t.same(fields(dom, 'consumer'), status.consumers.map((c) => c.name))
  t.same(fields(dom, 'consumerLag'), status.consumers.map((c) => String(c.lag)), 'the consumer\'s lag')

  const screenshot = path.join(os.tmpdir(), 'interlog-status-page.png')
  fs.rmSync(screenshot, { force: true })
  await browse(url, [`--screenshot=${screenshot}`, '--window-size=1200,900'])
  const png = fs.readFileSync(screenshot)
  t.ok(png.length > 10_000 && png.subarray(1, 4).toString() === 'PNG', `a screenshot (${png.length} bytes) saved to ${screenshot}`)

  const json = await (await fetch(url + 'status.json')).json() as { logs: { log: string, diskFreeBytes: number }[] }
  t.equal(json.logs[0]!.log, 'main')
  t.ok(json.logs[0]!.diskFreeBytes > 0, 'status.json adds the free disk')
})
