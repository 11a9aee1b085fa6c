// What reaches the journal (daemon/journal.ts): each kind of message at most ten lines a minute,
// with the rest counted; and one summary line a period while anything is wrong with a log.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { RateLimitedJournal, messageKind } from '../../daemon/journal.js'
import { startDaemon } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

t.test('a kind of message passes ten lines a minute; the rest are counted and said when the minute ends', async (t) => {
  let now = 1_000_000
  const lines: string[] = []
  const journal = new RateLimitedJournal((level, message) => { lines.push(`${level} ${message}`) }, () => now)
  t.equal(messageKind('log main: peer 0123456789abcdef0123456789abcdef offline'), messageKind('log main: peer fedcba9876543210fedcba9876543210 offline'), 'ids do not make a kind')
  for (let i = 0; i < 100; i++) journal.log('warning', `log main: origin ${i.toString(16).padStart(32, '0')} quarantined at ${i}`)
  journal.log('error', 'log main: cannot write: disk gone')
  t.equal(lines.length, 11, 'ten of the hundred, and the other kind')
  t.match(lines[10]!, /^error log main: cannot write/)
  now += 30_000
  journal.roll()
  t.equal(lines.length, 11, 'nothing said before the minute is over')
  now += 31_000
  journal.log('warning', 'log main: origin 00000000000000000000000000000001 quarantined at 1')
  t.equal(lines.length, 13, 'the count of the dropped lines, then the new minute\'s first line')
  t.match(lines[11]!, /^warning 90 more lines like "log main: origin # quarantined at #" in the last minute/)
  t.match(lines[12]!, /quarantined at 1$/)
})

t.test('a daemon whose sync cannot reach its broker says so in one summary line a period; a healthy one says nothing', async (t) => {
  const data = tempDir(t)
  const file = path.join(data, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ broker: 'mqtt://127.0.0.1:1', journalSummaryMs: 200 }))
  const troubled = await startDaemon(t, data, ['--config', file])
  await until(() => (troubled.output().match(/summary log=main sync=not-connected/g) ?? []).length >= 2, 10_000, 'two summary lines')
  t.match(troubled.output(), /<4>summary log=main sync=not-connected/, 'at warning priority, key=value')

  const healthyData = tempDir(t)
  const healthyFile = path.join(healthyData, 'config.json')
  fs.writeFileSync(healthyFile, JSON.stringify({ journalSummaryMs: 100 }))
  const healthy = await startDaemon(t, healthyData, ['--config', healthyFile])
  await new Promise((resolve) => setTimeout(resolve, 700))
  t.notMatch(healthy.output(), /summary/, 'no summary while all is well')
})
