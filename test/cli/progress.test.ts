// Progress on a terminal: `interlog verify` of a log directory says which segment it checks when
// stderr is a TTY (a real pseudo-terminal, through script(1)), and nothing when piped or with
// --json; `interlog read` of a large range into a file says how far it got.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { openLog } from '../../index.js'
import { CLI } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'

const run = promisify(execFile)

t.test('verify shows segments checked on a terminal, and nothing when piped or with --json', async (t) => {
  const data = tempDir(t)
  const log = await openLog(path.join(data, 'logs', 'main'), { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 4096, durability: 'interval' })
  for (let i = 0; i < 120; i++) await log.appendBatch(Array.from({ length: 100 }, (_, j) => Buffer.from(`reading ${i * 100 + j} `.padEnd(60, '.'))))
  const segments = (await log.verify()).segments
  await log.close()
  t.ok(segments >= 4, `${segments} segments`)

  const command = `${process.execPath} ${CLI} verify --data ${data}`
  const terminal = (await run('script', ['-qec', command, '/dev/null'])).stdout
  t.match(terminal, new RegExp(`segment 1 of ${segments} \\(0%\\)`), 'the first segment')
  t.match(terminal, new RegExp(`segment ${segments} of ${segments} \\(100%\\)`), 'and the end')
  t.match(terminal, /ok: 12000 events/, 'then the result')

  const piped = await run(process.execPath, [CLI, 'verify', '--data', data])
  t.equal(piped.stderr, '', 'piped: no progress')
  t.match(piped.stdout, /^ok: 12000 events/)
  const json = (await run('script', ['-qec', `${command} --json`, '/dev/null'])).stdout
  t.notMatch(json, /verifying/, '--json on a terminal: no progress either')
  t.match(json, /"ok":true/)
})

t.test('read of a large range into a file says how far it got on the terminal, and nothing when all of it is piped', async (t) => {
  const data = tempDir(t)
  const log = await openLog(path.join(data, 'logs', 'main'), { durability: 'interval' })
  for (let i = 0; i < 30; i++) await log.appendBatch(Array.from({ length: 1000 }, (_, j) => Buffer.from(`reading ${i * 1000 + j}`)))
  await log.close()
  const file = path.join(data, 'out.jsonl')
  const terminal = (await run('script', ['-qec', `${process.execPath} ${CLI} read --data ${data} > ${file}`, '/dev/null'])).stdout
  t.match(terminal, /read 30000 events/, 'the terminal hears how many were read')
  t.equal(fs.readFileSync(file, 'utf8').trim().split('\n').length, 30000, 'the file holds the events, and only them')
  const piped = await run(process.execPath, [CLI, 'read', '--data', data], { maxBuffer: 64 << 20 })
  t.equal(piped.stderr, '', 'piped: no progress')
})
