// Progress on a terminal: `interlog verify` of a log directory says which segment it checks when
// stderr is a TTY (a real pseudo-terminal, through script(1)), and nothing when piped or with
// --json; `interlog read` of a large range into a file says how far it got.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { connect, openLog } from '../../index.js'
import { CLI, startDaemon } from '../helpers/daemon.js'
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

  const pipedDirectory = await run(process.execPath, [CLI, 'verify', '--data', data])
  t.equal(pipedDirectory.stderr, '', 'piped: no progress')
  t.match(pipedDirectory.stdout, /^ok: 12000 events/)
  const json = (await run('script', ['-qec', `${command} --json`, '/dev/null'])).stdout
  t.notMatch(json, /verifying/, '--json on a terminal: no progress either')
  t.match(json, /"ok":true/)

  // Through a running daemon: the same lines, from progress frames.
  const daemon = await startDaemon(t, data)
  const throughDaemon = (await run('script', ['-qec', `${process.execPath} ${CLI} verify --socket ${daemon.socket}`, '/dev/null'])).stdout
  t.match(throughDaemon, new RegExp(`segment ${segments} of ${segments} \\(100%\\)`), 'through the daemon: progress to the end')
  t.match(throughDaemon, /ok: 12000 events/, 'then the result')
  const client = await connect(daemon.socket)
  const heard: number[] = []
  const result = await client.verify({ onProgress: (checked, all) => { heard.push(checked); t.equal(all, segments, 'of all the segments', { diagnostic: false }) } })
  await client.close()
  t.ok(result.ok && heard.length >= 1 && heard[heard.length - 1] === segments, `the client heard ${heard.length} progress frames, the last at the end`)
  const piped = await run(process.execPath, [CLI, 'verify', '--socket', daemon.socket])
  t.equal(piped.stderr, '', 'piped through the daemon: no progress')
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

t.test('through a daemon, progress frames arrive while verify runs, not in one burst at its end', async (t) => {
  const data = tempDir(t)
  const log = await openLog(path.join(data, 'logs', 'main'), { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 4096, durability: 'none' })
  const batch = Array.from({ length: 50 }, (_, j) => Buffer.alloc(1000, j))
  for (let i = 0; i < 400; i++) await log.appendBatch(batch)
  await log.close()
  const daemon = await startDaemon(t, data)
  const client = await connect(daemon.socket)
  t.teardown(() => client.close())
  const heard: number[] = []
  const started = performance.now()
  const verifying = client.verify({ onProgress: () => heard.push(performance.now()) })
  // The daemon goes on collecting while it verifies: appends from another client are acknowledged meanwhile.
  const sensor = await connect(daemon.socket)
  t.teardown(() => sensor.close())
  let appendedAt = 0
  let verifiedAt = 0
  const appending = (async () => {
    for (let i = 0; i < 20; i++) await sensor.appendBatch(Array.from({ length: 50 }, () => Buffer.alloc(1000, 9)))
    appendedAt = performance.now()
  })()
  const result = await verifying.then((r) => { verifiedAt = performance.now(); return r })
  await appending
  const took = verifiedAt - started
  t.ok(result.ok && result.segments >= 400, `${result.segments} segments verified in ${Math.round(took)} ms: what was appended meanwhile is not taken for garbage`)
  t.ok(appendedAt < verifiedAt, `1,000 events appended ${Math.round(appendedAt - started)} ms into a verify of ${Math.round(took)} ms`)
  t.ok((await client.verify()).ok, 'and a verify after them finds them in order')
  const spread = heard[heard.length - 1]! - heard[0]!
  t.ok(heard.length >= 2 && spread > 0.4 * took, `${heard.length} progress frames over ${Math.round(spread)} ms of the ${Math.round(took)} ms verify took`)
})
