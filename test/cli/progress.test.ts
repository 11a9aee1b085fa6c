// Progress on a terminal: `interlog verify` of a log directory says which segment it checks when
// stderr is a TTY (a real pseudo-terminal, through script(1)), and nothing when piped or with --json.

import t from 'tap'
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
  for (let i = 0; i < 40; i++) await log.appendBatch(Array.from({ length: 100 }, (_, j) => Buffer.from(`reading ${i * 100 + j} `.padEnd(60, '.'))))
  const segments = (await log.verify()).segments
  await log.close()
  t.ok(segments >= 4, `${segments} segments`)

  const command = `${process.execPath} ${CLI} verify --data ${data}`
  const terminal = (await run('script', ['-qec', command, '/dev/null'])).stdout
  t.match(terminal, new RegExp(`segment 1 of ${segments} \\(0%\\)`), 'the first segment')
  t.match(terminal, new RegExp(`segment ${segments} of ${segments} \\(100%\\)`), 'and the end')
  t.match(terminal, /ok: 4000 events/, 'then the result')

  const piped = await run(process.execPath, [CLI, 'verify', '--data', data])
  t.equal(piped.stderr, '', 'piped: no progress')
  t.match(piped.stdout, /^ok: 4000 events/)
  const json = (await run('script', ['-qec', `${command} --json`, '/dev/null'])).stdout
  t.notMatch(json, /verifying/, '--json on a terminal: no progress either')
  t.match(json, /"ok":true/)
})
