// Damage in old data on a running gateway: real daemons (`interlog serve`), a real broker, a byte
// flipped on disk. The gateway opens, serves and syncs around the damaged range, and repairs it
// from a peer; a fresh peer then gets every event.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { connect, openLog } from '../../index.js'
import { startTestBroker } from '../helpers/broker.js'
import { startDaemon, CLI } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'
import { spawnSync } from 'node:child_process'
import { until } from '../helpers/until.js'

const EVENTS = 2000

async function statusOf(socket: string): Promise<{ vector: Record<string, number>, damage: { missing: unknown[] }[], length: number }> {
  const client = await connect(socket)
  try {
    return await client.status() as unknown as { vector: Record<string, number>, damage: { missing: unknown[] }[], length: number }
  } finally {
    await client.close()
  }
}

async function readAll(socket: string): Promise<{ texts: string[], damaged: number }> {
  const client = await connect(socket)
  try {
    const texts: string[] = []
    let damaged = 0
    for await (const event of client.read({ onDamage: () => { damaged++ } })) texts.push(Buffer.from(event.payload).toString())
    return { texts, damaged }
  } finally {
    await client.close()
  }
}

function cli(args: string[]): { code: number | null, stdout: string } {
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' })
  return { code: run.status, stdout: run.stdout }
}

t.test('a gateway with a flipped byte in an old segment keeps serving and syncing, and repairs the range from a peer', async (t) => {
  const broker = await startTestBroker(t)
  const [dataA, dataB, dataC] = [tempDir(t), tempDir(t), tempDir(t)]
  // A's log on small segments, so that the damage is in a sealed, old one.
  const directoryA = path.join(dataA, 'logs', 'main')
  const log = await openLog(directoryA, { segmentBytes: 64 << 10, cacheBytes: 256 << 10, maxEventBytes: 4096 })
  const origin = log.replicaId
  for (let i = 0; i < EVENTS; i += 20) {
    await log.appendBatch(Array.from({ length: 20 }, (_, j) => Buffer.from(`event ${i + j} `.padEnd(100, '.'))))
  }
  await log.close()
  const config = (dir: string): string => {
    const file = path.join(dir, 'config.json')
    fs.writeFileSync(file, JSON.stringify({ broker: broker.url, announceIntervalMs: 300 }))
    return file
  }
  let a = await startDaemon(t, dataA, ['--config', config(dataA)])
  let b = await startDaemon(t, dataB, ['--config', config(dataB)])
  await until(async () => (await statusOf(b.socket)).vector[origin] === EVENTS, 30_000, 'B to hold all of A')
  t.pass('B holds every event of A')
  await b.stop()
  await a.stop()

  // One byte of a record in A's second segment (sealed long ago) flips.
  const segment = path.join(directoryA, '000000000001.seg')
  const bytes = fs.readFileSync(segment)
  bytes[4096 + 5000] = bytes[4096 + 5000]! ^ 0x10
  fs.writeFileSync(segment, bytes)

  a = await startDaemon(t, dataA, ['--config', config(dataA)])
  t.match(a.output(), /damaged at offset/, 'the daemon says what it fenced off, and starts')
  const damaged = await statusOf(a.socket)
  t.equal(damaged.damage.length, 1, 'status shows the damaged range')
  const read = await readAll(a.socket)
  t.ok(read.texts.length < EVENTS && read.texts.length >= EVENTS - 20, `reads serve the ${read.texts.length} other events`)
  t.equal(read.damaged, 1, 'and say which range they went around')
  const client = await connect(a.socket)
  await client.append(Buffer.from('collected while damaged'))
  await client.close()
  t.pass('appends go on')
  t.equal(cli(['verify', '--socket', a.socket]).code, 1, 'verify lists the damage: exit 1')

  b = await startDaemon(t, dataB, ['--config', config(dataB)])
  await until(async () => (await statusOf(a.socket)).damage.length === 0, 30_000, 'A to repair the range from B')
  t.match(a.output(), /repaired in place/, 'the daemon says it repaired it')
  const healed = await readAll(a.socket)
  t.equal(healed.texts.length, EVENTS + 1, 'every event reads back')
  t.same(healed.texts.slice(0, EVENTS), Array.from({ length: EVENTS }, (_, i) => `event ${i} `.padEnd(100, '.')), 'in order, as appended')
  t.equal(healed.damaged, 0)
  const verified = cli(['verify', '--socket', a.socket])
  t.equal(verified.code, 0, `verify finds nothing wrong: ${verified.stdout}`)

  // A fresh peer gets everything.
  await b.stop()
  const c = await startDaemon(t, dataC, ['--config', config(dataC)])
  await until(async () => (await statusOf(c.socket)).vector[origin] === EVENTS + 1, 30_000, 'a fresh peer to get every event of A')
  t.pass('a fresh peer gets every event')
  await c.stop()
  await a.stop()
})
