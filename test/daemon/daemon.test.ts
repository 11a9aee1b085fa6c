// The daemon and its local API, with real processes and a real Unix socket.

import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, loadConfig, openLog } from '../../index.js'
import { startDaemon } from '../helpers/daemon.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

const APPENDER = fileURLToPath(new URL('../fixtures/socket-appender.mjs', import.meta.url))

function runAppender(socket: string, client: number, count: number): Promise<Map<number, string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [APPENDER, socket, String(client), String(count), '64'], { stdio: ['ignore', 'pipe', 'inherit'] })
    const acked = new Map<number, string>()
    let rest = ''
    child.stdout.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n')
      rest = lines.pop()!
      for (const line of lines) {
        const match = /^ack (\d+) (.*)$/.exec(line)
        if (match !== null) acked.set(Number(match[1]), match[2]!)
      }
    })
    child.on('exit', (code, signal) => (code === 0 ? resolve(acked) : reject(new Error(`appender ${client} exited ${code} ${signal}`))))
  })
}

t.test('8 client processes appending 10,000 events each through the socket at once', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const results = await Promise.all(Array.from({ length: 8 }, (_, client) => runAppender(daemon.socket, client, 10_000)))
  const client = await connect(daemon.socket)
  const events = await collect(client.read())
  await client.close()
  t.equal(events.length, 80_000, 'all present')
  t.equal(new Set(events.map((e) => text(e.payload))).size, 80_000, 'no duplicates')
  const lastSeq = new Map<string, number>()
  let ordered = true
  for (const event of events) {
    const [who, seq] = text(event.payload).split('-') as [string, string]
    if ((lastSeq.get(who) ?? -1) >= Number(seq)) ordered = false
    lastSeq.set(who, Number(seq))
  }
  t.ok(ordered, "each client's order is preserved")
  t.equal(results.reduce((sum, acked) => sum + acked.size, 0), 80_000, 'every append was acknowledged')
  t.equal(await daemon.stop('SIGTERM'), 0, 'SIGTERM: clean exit 0')
  t.notOk(fs.existsSync(daemon.socket), 'the socket file is removed')
  t.match(daemon.output(), /<6>SIGTERM: stopping/)
})

t.test('every append acknowledged to a client survives a SIGKILL of the daemon', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const client = await connect(daemon.socket)
  const acked: [number, string][] = []
  let stop = false
  const writers = Array.from({ length: 16 }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      const body = `w${w}-${i}`
      try {
        const id = await client.append(payload(body))
        acked.push([id.pos, body])
      } catch {
        return
      }
    }
  })
  await new Promise((resolve) => setTimeout(resolve, 600))
  await daemon.stop('SIGKILL')
  stop = true
  await Promise.all(writers)
  t.ok(acked.length > 100, `${acked.length} appends acknowledged before the kill`)
  const log = await openLog(path.join(data, 'logs', 'main'), { onWarning: () => undefined })
  const events = await collect(log.read())
  const missing = acked.filter(([pos, body]) => events[pos] === undefined || text(events[pos]!.payload) !== body)
  t.same(missing, [], 'none missing, none different')
  await log.close()
})

t.test('garbage, oversized frames and abrupt disconnects affect only that client', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const good = await connect(daemon.socket)
  t.teardown(() => good.close())
  await good.append(payload('before'))
  const raw = async (bytes: Buffer): Promise<{ text: string, closed: boolean }> => new Promise((resolve) => {
    const socket = net.connect(daemon.socket, () => socket.write(bytes))
    let received = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => { received = Buffer.concat([received, chunk]) })
    socket.on('close', () => resolve({ text: received.toString('latin1'), closed: true }))
    setTimeout(() => { socket.destroy(); resolve({ text: received.toString('latin1'), closed: false }) }, 3000)
  })
  const garbage = await raw(Buffer.from([0, 0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]))
  t.ok(garbage.closed, 'garbage: disconnected')
  t.match(garbage.text, /INVALID_ARGUMENT/, 'with an error frame')
  const oversized = Buffer.alloc(4)
  oversized.writeUInt32BE(0x7fffffff)
  const big = await raw(oversized)
  t.ok(big.closed, 'oversized frame: disconnected')
  t.match(big.text, /over the bound/)
  const noId = await raw(Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.from([0xa0])]))
  t.ok(noId.closed, 'a frame without id and op: disconnected')
  // A client that sends an append and disconnects at once.
  await new Promise<void>((resolve) => {
    const socket = net.connect(daemon.socket, () => {
      socket.write(Buffer.from([0, 0, 0, 30]))
      socket.destroy()
      resolve()
    })
  })
  await good.append(payload('after'))
  t.same((await collect(good.read())).map((e) => text(e.payload)), ['before', 'after'], 'the good client never noticed')
})

t.test('remote errors keep their codes; tails go live over the socket', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const client = await connect(daemon.socket, { log: 'main' })
  t.teardown(() => client.close())
  await t.rejects(connect(daemon.socket, { log: 'nope' }), { code: 'INVALID_ARGUMENT' })
  await t.rejects(client.append(new Uint8Array(2 << 20)), { code: 'TOO_LARGE' })
  await client.appendBatch([payload('one'), payload('two')])
  const controller = new AbortController()
  const seen: string[] = []
  const tail = (async () => {
    for await (const event of client.tail({ from: 0, signal: controller.signal })) {
      seen.push(text(event.payload))
      if (seen.length === 4) controller.abort()
    }
  })()
  await new Promise((resolve) => setTimeout(resolve, 100))
  await client.append(payload('three'))
  await client.append(payload('four'))
  await tail
  t.same(seen, ['one', 'two', 'three', 'four'])
  t.equal(await client.length(), 4)
})

t.test('configuration: file < environment < flags; unknown keys and wrong types are named', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ data: dir, logs: ['a', 'b'], durability: 'interval' }))
  const config = loadConfig({ file, env: { INTERLOG_DURABILITY: 'none' }, flags: { logs: ['c'] } })
  t.same(config.logs, ['c'])
  t.equal(config.durability, 'none')
  t.equal(config.socket, path.join(dir, 'interlog.sock'))
  fs.writeFileSync(file, JSON.stringify({ data: dir, brokr: 'embedded' }))
  t.throws(() => loadConfig({ file }), /unknown key 'brokr'/)
  fs.writeFileSync(file, JSON.stringify({ data: dir, brokerPort: 'high' }))
  t.throws(() => loadConfig({ file }), /'brokerPort' must be a port number/)
  t.throws(() => loadConfig({ env: { INTERLOG_DATA: dir, INTERLOG_BROKER_PORT: 'x' } }), /environment INTERLOG_BROKER_PORT: 'brokerPort'/)
  t.throws(() => loadConfig({}), /'data' is required/)
  fs.writeFileSync(file, '{ not json')
  t.throws(() => loadConfig({ file }), /config file/)
})

t.test('tails with onCaughtUp and durable consumers work the same over the socket', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const client = await connect(daemon.socket)
  t.teardown(() => client.close())
  for (let i = 0; i < 25; i++) await client.append(payload(`e${i}`))
  const caughtUp: number[] = []
  const controller = new AbortController()
  const seen: number[] = []
  const tail = (async () => {
    for await (const event of client.tail({ from: 0, signal: controller.signal, onCaughtUp: (p) => caughtUp.push(p) })) {
      seen.push(event.localPos)
      if (seen.length === 30) controller.abort()
    }
  })()
  while (caughtUp.length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  t.same(caughtUp, [25], 'caught up after the backlog')
  for (let i = 25; i < 30; i++) await client.append(payload(`e${i}`))
  await tail
  t.same(seen, Array.from({ length: 30 }, (_, i) => i))

  const consumer = await client.consumer('remote-model', { startAt: 'earliest' })
  const got: number[] = []
  for await (const batch of consumer.batches({ max: 12 })) {
    got.push(...batch.map((e) => e.localPos))
    if (got.length >= 24) {
      await consumer.commit(got[got.length - 1]!)
      break
    }
  }
  t.equal(consumer.position, 24)
  const listed = await client.consumers()
  t.same(listed.map((c) => [c.name, c.position, c.lag]), [['remote-model', 24, 6]])
  const again = await client.consumer('remote-model')
  t.equal(again.position, 24, 'the position is kept by the daemon')
  const status = await client.status()
  t.same(status.consumers.map((c) => c.name), ['remote-model'])
  await again.reset()
  t.equal((await client.consumers())[0]!.position, 0)
  await again.delete()
  t.same(await client.consumers(), [])
})

t.test('consumers through the daemon: commits never go backwards, reset rewinds a running batches()', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const client = await connect(daemon.socket)
  t.teardown(() => client.close())
  for (let i = 0; i < 20; i++) await client.append(payload(`e${i}`))
  const consumer = await client.consumer('c')
  await Promise.all([consumer.commit(10), consumer.commit(5)])
  t.equal((await client.consumers())[0]!.position, 11, 'a late, older commit does not move the position back')
  const seen: number[][] = []
  for await (const batch of consumer.batches({ max: 5 })) {
    seen.push(batch.map((e) => e.localPos))
    if (seen.length === 1) await consumer.reset({ to: 0 })
    if (seen.length === 3) break
  }
  t.same(seen, [[11, 12, 13, 14, 15], [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], 'after reset the batches start again from 0')
  await t.rejects(client.consumer('..'), { code: 'INVALID_ARGUMENT' })
})

t.test('a client that sends requests but never reads answers is paused, not buffered', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const { encode } = await import('cbor-x')
  const frame = (value: unknown): Buffer => {
    const body = encode(value) as Uint8Array
    const head = Buffer.alloc(4)
    head.writeUInt32BE(body.length)
    return Buffer.concat([head, body])
  }
  const socket = net.connect(daemon.socket)
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.pause() // never reads
  socket.write(frame({ id: 1, op: 'hello' }))
  const requests = Buffer.concat(Array.from({ length: 2000 }, (_, i) => frame({ id: i + 2, op: 'status' })))
  let written = 0
  const deadline = Date.now() + 3000
  while (Date.now() < deadline) {
    if (socket.write(requests)) written++
    else await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(written < 400, `the daemon stopped reading (${written} writes of 2000 requests went through before the pipe filled)`)
  const other = await connect(daemon.socket)
  await other.append(payload('others are served'))
  t.equal(await other.length(), 1)
  await other.close()
  socket.destroy()
})
