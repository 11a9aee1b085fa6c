// Fuzzing the decoders that read untrusted bytes: records (recovery and reads), sync messages and
// local-API frames. Seeded random inputs and mutations of valid inputs cut at every offset: only
// typed results or typed errors, no input taking over 100 ms. Replay with INTERLOG_SEED.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { encode } from 'cbor-x'
import { loadChecksum } from '../../core/checksum.js'
import { RecordHeader, decodeRecord } from '../../core/records.js'
import { FrameError, FrameReader, encodeFrame } from '../../daemon/frames.js'
import { ProtocolError, decodeMessage, encodeMessage, packRecords, unpackRecords } from '../../sync/protocol.js'
import { openLog, LogError, SEAL_BYTES } from '../../index.js'
import { prng, tempDir } from '../helpers/temp.js'

const seed = Number(process.env['INTERLOG_SEED'] ?? 90210)
const INPUT_MS_MAX = 100

function mutations(valid: Uint8Array, random: () => number, count: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let cut = 0; cut <= valid.length; cut++) out.push(valid.slice(0, cut))
  for (let i = 0; i < count; i++) {
    const copy = Uint8Array.from(valid)
    const kind = random()
    if (kind < 0.4) {
      const at = Math.floor(random() * copy.length)
      copy[at] = copy[at]! ^ (1 << Math.floor(random() * 8))
    }
    else if (kind < 0.7) for (let j = Math.floor(random() * copy.length); j < copy.length; j++) copy[j] = Math.floor(random() * 256)
    else if (kind < 0.85) copy.fill(0xff, Math.floor(random() * copy.length))
    else out.push(Uint8Array.from({ length: Math.floor(random() * 512) }, () => Math.floor(random() * 256)))
    out.push(copy)
  }
  return out
}

function timed<T>(work: () => T): { value: T, ms: number } {
  const started = performance.now()
  const value = work()
  return { value, ms: performance.now() - started }
}

t.test('record decoder: mutated and cut records give a result or a reason, never an exception', async (t) => {
  t.comment(`seed ${seed}`)
  const random = prng(seed)
  const dir = tempDir(t)
  const log = await openLog(dir, { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 1024 })
  await log.appendBatch([new Uint8Array(100).fill(1), new Uint8Array(7), new Uint8Array(300).fill(3)])
  await log.close()
  const segment = fs.readFileSync(path.join(dir, '000000000000.seg'))
  const length = segment.readUInt32LE(4096 + 8)
  const valid = segment.subarray(4096, 4096 + length + 64)
  const checksum = await loadChecksum()
  const header = new RecordHeader()
  let slowest = 0
  let inputs = 0
  let bad = 0
  for (const input of mutations(valid, random, 5000)) {
    const view = new DataView(input.buffer, input.byteOffset, input.byteLength)
    const { value, ms } = timed(() => decodeRecord(input, view, 0, input.length, checksum, header))
    if (typeof value !== 'string') bad++
    slowest = Math.max(slowest, ms)
    inputs++
  }
  t.equal(bad, 0, `${inputs} inputs: each decodes to ok, zero, short or a reason`)
  t.ok(slowest < INPUT_MS_MAX, `slowest input ${slowest.toFixed(2)} ms`)
})

t.test('recovery: segments with random damage open or fail with a LogError, never anything else', async (t) => {
  const random = prng(seed + 1)
  const dir = tempDir(t)
  let log = await openLog(dir, { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 1024 })
  for (let i = 0; i < 40; i++) await log.append(new Uint8Array(1 + (i * 37) % 500).fill(i))
  await log.close()
  const file = path.join(dir, '000000000000.seg')
  const pristine = fs.readFileSync(file)
  const outcomes = new Map<string, number>()
  let slowest = 0
  for (let round = 0; round < 150; round++) {
    const damaged = Buffer.from(pristine)
    const hits = 1 + Math.floor(random() * 8)
    for (let h = 0; h < hits; h++) damaged[Math.floor(random() * 20_000)] = Math.floor(random() * 256)
    fs.writeFileSync(file, damaged)
    fs.rmSync(path.join(dir, 'checkpoint'), { force: true })
    const started = performance.now()
    try {
      log = await openLog(dir, { segmentBytes: 64 << 10, cacheBytes: 64 << 10, maxEventBytes: 1024, onWarning: () => undefined, directIo: 'off' })
      await log.verify()
      await log.close()
      outcomes.set('opened', (outcomes.get('opened') ?? 0) + 1)
    } catch (error) {
      if (!(error instanceof LogError)) {
        t.fail(`round ${round}: ${String(error)}`)
        break
      }
      outcomes.set(error.code, (outcomes.get(error.code) ?? 0) + 1)
    }
    slowest = Math.max(slowest, performance.now() - started)
  }
  t.comment(`outcomes ${JSON.stringify(Object.fromEntries(outcomes))}, slowest open ${slowest.toFixed(1)} ms`)
  t.ok([...outcomes.keys()].every((k) => k === 'opened' || k === 'CORRUPT'), 'only opened (tail cut) or CORRUPT')
})

/** Events framed as a record body: per event a u32 length and a u64 time, then the payload. */
function framed(sizes: number[]): Uint8Array {
  const body = Buffer.alloc(sizes.reduce((sum, size) => sum + 12 + size, 0))
  let at = 0
  for (const size of sizes) {
    body.writeUInt32LE(size, at)
    body.writeUInt32LE(1, at + 4)
    at += 12 + size
  }
  return body
}

t.test('sync message decoder: only messages or ProtocolErrors', async (t) => {
  const random = prng(seed + 2)
  const id = 'a'.repeat(32)
  const valid = [
    encodeMessage({ kind: 'events', sender: id, origin: id, records: [{ pos: 0, count: 1, body: framed([20]) }, { pos: 1, count: 2, body: framed([3, 0]), seal: new Uint8Array(SEAL_BYTES).fill(7) }], sealed: true }),
    encodeMessage({ kind: 'vector', replica: id, vector: { [id]: 5 }, origins: null, maxMessageBytes: 4096 }),
    encodeMessage({ kind: 'status', replica: id, node: 'n', online: true, vector: {}, origins: [id], maxMessageBytes: 4096, timeMs: 1 }),
    encodeMessage({ kind: 'fragment', sender: id, origin: id, pos: 0, time: 1, total: 10, offset: 0, bytes: new Uint8Array(10), sealed: true, seal: new Uint8Array(SEAL_BYTES) }),
    encode({ v: 1, k: 'e', s: id, o: id, e: [[0, 1, new Uint8Array(1)]] }),
    encode({ v: 2, k: 'e', s: id, o: id, r: [[0, 1, framed([1])]] }),
    encodeMessage({ kind: 'events', sender: id, origin: id, records: [{ pos: 0, count: 2, body: framed([5, 9]) }], sealed: false, packed: packRecords([{ pos: 0, count: 2, body: framed([5, 9]) }]) }),
  ]
  let slowest = 0
  let count = 0
  for (const base of valid) {
    for (const input of mutations(base, random, 2000)) {
      const started = performance.now()
      try {
        const message = decodeMessage(input, 1 << 20)
        if (message.kind === 'events') unpackRecords(message)
      } catch (error) {
        if (!(error instanceof ProtocolError)) {
          t.fail(`not a ProtocolError: ${String(error)}`)
          return
        }
      }
      slowest = Math.max(slowest, performance.now() - started)
      count++
    }
  }
  t.ok(slowest < INPUT_MS_MAX, `${count} inputs, slowest ${slowest.toFixed(2)} ms`)
})

t.test('local API frame reader: only frames or FrameErrors, whatever the chunking', async (t) => {
  const random = prng(seed + 3)
  const valid = Buffer.concat([encodeFrame({ id: 1, op: 'append', payload: new Uint8Array(50) }), encodeFrame({ id: 2, op: 'length' })])
  let count = 0
  for (const input of mutations(valid, random, 3000)) {
    const reader = new FrameReader(1 << 16)
    try {
      for (let at = 0; at < input.length;) {
        const step = 1 + Math.floor(random() * 40)
        reader.push(Buffer.from(input.subarray(at, at + step)))
        at += step
      }
    } catch (error) {
      if (!(error instanceof FrameError)) {
        t.fail(`not a FrameError: ${String(error)}`)
        return
      }
    }
    count++
  }
  t.pass(`${count} inputs`)
})
