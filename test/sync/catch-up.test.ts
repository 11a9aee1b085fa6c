// A catch-up of 100,000 events streams in bounded memory: the receiver runs in its own process
// and its peak RSS is measured while it catches up.

import t from 'tap'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { openLog, startSync } from '../../index.js'
import { startTestBroker } from '../helpers/broker.js'
import { tempDir } from '../helpers/temp.js'

const RECEIVER = fileURLToPath(new URL('../fixtures/sync-receiver.mjs', import.meta.url))
const EVENTS = 100_000
/** A receiver that buffered the backlog would hold far more; Node and the log's cache take about 80 MB. */
const PEAK_RSS_BYTES_MAX = 200 << 20

t.test(`a catch-up of ${EVENTS} events of 128 bytes with bounded memory`, async (t) => {
  const broker = await startTestBroker(t)
  t.comment(`broker: ${broker.kind}`)
  const log = await openLog(tempDir(t), { durability: 'interval' })
  const batch = Array.from({ length: 1000 }, (_, i) => new Uint8Array(128).fill(i & 0xff))
  for (let i = 0; i < EVENTS / 1000; i++) await log.appendBatchRange(batch)
  const sync = await startSync(log, { url: broker.url, logName: 'catchup', announceIntervalMs: 500 })
  t.teardown(async () => {
    await sync.close()
    await log.close()
  })
  const { stdout } = await promisify(execFile)(process.execPath, [RECEIVER, tempDir(t), broker.url, String(EVENTS)], { timeout: 180_000 })
  const report = JSON.parse(stdout) as { length: number, ms: number, peakRssBytes: number }
  t.comment(`caught up ${report.length} events in ${report.ms} ms (${Math.round(report.length / (report.ms / 1000))} events/s), peak RSS ${(report.peakRssBytes / 2 ** 20).toFixed(0)} MiB`)
  t.equal(report.length, EVENTS)
  t.ok(report.peakRssBytes < PEAK_RSS_BYTES_MAX, `peak RSS ${(report.peakRssBytes / 2 ** 20).toFixed(0)} MiB is under ${PEAK_RSS_BYTES_MAX / 2 ** 20} MiB`)
})
