// npm run bench [-- --quick]: every scenario, InterLog beside its peers and the physical limit,
// in one run, on the same data and durability. Writes bench/results/latest.json, latest.md and
// latest.svg. Ratios are the result; absolute figures drift on shared machines. Nothing here
// asserts a speed: targets are compared and reported, misses included.

import { execFile, spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { encode as cborEncode } from 'cbor-x'
import { openLog, type Log } from '../index.js'
import { PEERS, interlog, rawLimit, type Durability, type SystemFactory } from './systems.js'
import { renderMarkdown, renderSvg, type Row } from './report.js'

const quick = process.argv.includes('--quick')
const here = path.dirname(fileURLToPath(import.meta.url))
const repository = path.resolve(here, '..', '..')
const resultsDirectory = path.join(repository, 'bench', 'results')
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'interlog-bench-'))
let scratchCount = 0
const fresh = (): string => path.join(scratch, String(scratchCount++))
const rows: Row[] = []
const notes: string[] = []

function payloads(size: number, count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => new Uint8Array(size).fill(i & 0xff))
}

/** Appends `total` events in batches of `batch` and returns events/s (from the first append to a durable close). */
async function appendRate(factory: SystemFactory, durability: Durability, size: number, batch: number, total: number): Promise<number> {
  const system = await factory(fresh(), durability)
  const data = payloads(size, batch)
  await system.appendBatch(data.slice(0, 1)) // warm: first write after open
  const started = performance.now()
  for (let done = 0; done < total; done += batch) await system.appendBatch(data)
  await system.close() // durable at the end for every system
  return total / ((performance.now() - started) / 1000)
}

function eventsFor(size: number, batch: number, durability: Durability): number {
  const bytes = (quick ? 48 : 128) << 20
  const bySize = Math.max(batch, Math.floor(bytes / (size + 16) / batch) * batch)
  const durableSingles = quick ? 200 : 1000
  if (batch === 1) return Math.min(durability === 'fsync' ? durableSingles : quick ? 20_000 : 50_000, bySize)
  return Math.min(quick ? 1_000_000 : 2_000_000, bySize)
}

async function scenarioAppends(): Promise<void> {
  const sizes = quick ? [128, 16384] : [16, 128, 1024, 16384]
  const durabilities: Durability[] = quick ? ['interval', 'fsync'] : ['none', 'interval', 'fsync']
  for (const size of sizes) {
    for (const batch of [1000, 1]) {
      for (const durability of durabilities) {
        const total = eventsFor(size, batch, durability)
        const ours = await appendRate(interlog, durability, size, batch, total)
        const limit = await appendRate(rawLimit, durability, size, batch, total)
        for (const [peerName, factory] of PEERS) {
          if (quick && batch === 1 && peerName === 'hypercore') continue
          // Peers run fewer events (a rate needs no more); at least a second's worth for the slowest.
          const peerTotal = Math.max(batch, Math.min(total, batch === 1 ? 5_000 : 200_000))
          const peer = await appendRate(factory, durability, size, batch, peerTotal).catch((error: unknown) => {
            notes.push(`${peerName} failed at ${size} B x ${batch} ${durability}: ${(error as Error).message}`)
            return NaN
          })
          rows.push({ scenario: 'append', params: { size, batch, durability }, unit: 'events/s', ours, peer, peerName, limit })
        }
        process.stderr.write(`append ${size} B x ${batch} ${durability}: ${Math.round(ours)} events/s (limit ${Math.round(limit)})\n`)
      }
    }
  }
}

async function scenarioGroupCommit(): Promise<void> {
  let single = NaN
  for (const appenders of [1, 16, 128]) {
    const log = await openLog(fresh(), { durability: 'fsync' })
    const payload = new Uint8Array(128)
    const deadline = performance.now() + (quick ? 1000 : 3000)
    let count = 0
    const started = performance.now()
    await Promise.all(Array.from({ length: appenders }, async () => {
      while (performance.now() < deadline) {
        await log.append(payload)
        count++
      }
    }))
    const rate = count / ((performance.now() - started) / 1000)
    await log.close()
    if (appenders === 1) single = rate
    rows.push({ scenario: 'group commit', params: { appenders, durability: 'fsync', size: 128 }, unit: 'events/s', ours: rate, peer: single, peerName: 'interlog, 1 appender', limit: NaN })
    process.stderr.write(`group commit ${appenders} appenders: ${Math.round(rate)} events/s\n`)
  }
}

async function scenarioReads(): Promise<void> {
  const total = quick ? 100_000 : 1_000_000
  const data = payloads(128, 1000)
  for (const [peerName, factory] of PEERS) {
    if (peerName === 'hypercore' && quick) continue
    const peerDir = fresh()
    let peer = await factory(peerDir, 'interval')
    for (let i = 0; i < total; i += 1000) await peer.appendBatch(data)
    await peer.close()
    peer = await factory(peerDir, 'interval')
    let started = performance.now()
    await peer.readAll()
    const peerRate = total / ((performance.now() - started) / 1000)
    await peer.close()
    const ourDir = fresh()
    let ours = await interlog(ourDir, 'interval')
    for (let i = 0; i < total; i += 1000) await ours.appendBatch(data)
    await ours.close()
    ours = await interlog(ourDir, 'interval')
    started = performance.now()
    await ours.readAll()
    const ourRate = total / ((performance.now() - started) / 1000)
    await ours.close()
    rows.push({ scenario: 'read sequential', params: { size: 128, events: total }, unit: 'events/s', ours: ourRate, peer: peerRate, peerName, limit: NaN })
  }
  // The tail of recent events, served by the head cache, beside the same read from disk after reopen.
  const dir = fresh()
  let log = await openLog(dir, { durability: 'interval' })
  for (let i = 0; i < 200; i++) await log.appendBatchRange(data)
  const from = log.length - 20_000
  let started = performance.now()
  for await (const _ of log.read({ from })) { /* count */ }
  const cached = 20_000 / ((performance.now() - started) / 1000)
  await log.close()
  log = await openLog(dir)
  started = performance.now()
  for await (const _ of log.read({ from: 0, to: 20_000 })) { /* count */ }
  const disk = 20_000 / ((performance.now() - started) / 1000)
  await log.close()
  rows.push({ scenario: 'read recent (head cache)', params: { size: 128, events: 20_000 }, unit: 'events/s', ours: cached, peer: disk, peerName: 'interlog, same read from disk', limit: NaN })
}

async function scenarioOpenAndVerify(): Promise<void> {
  const bytes = quick ? 128 << 20 : 1 << 30
  const dir = fresh()
  let log = await openLog(dir, { durability: 'none' })
  const data = payloads(1024, 1000)
  while (log.length * 1100 < bytes) await log.appendBatchRange(data)
  await log.close()
  const started = performance.now()
  log = await openLog(dir)
  await log.append(new Uint8Array(16))
  const openMs = performance.now() - started
  const verifyStarted = performance.now()
  const report = await log.verify()
  const verifySeconds = (performance.now() - verifyStarted) / 1000
  await log.close()
  rows.push({ scenario: 'open to first durable append', params: { logBytes: report.bytes }, unit: 'ms', ours: openMs, peer: 1000, peerName: 'target: 1 s', limit: NaN })
  rows.push({ scenario: 'verify', params: { logBytes: report.bytes }, unit: 'MB/s', ours: report.bytes / 1e6 / verifySeconds, peer: NaN, peerName: '', limit: NaN })
}

/** Heap bytes and GC runs per event in steady-state batch appends, measured in a child with --expose-gc. */
async function scenarioAllocation(): Promise<void> {
  const script = `
    import { PerformanceObserver } from 'node:perf_hooks'
    import { openLog } from ${JSON.stringify(path.join(repository, 'dist', 'index.js'))}
    const log = await openLog(${JSON.stringify(fresh())}, { durability: 'interval' })
    const batch = Array.from({ length: 1000 }, (_, i) => new Uint8Array(128).fill(i & 255))
    for (let i = 0; i < 200; i++) await log.appendBatchRange(batch) // warm up
    let gcs = 0
    new PerformanceObserver((list) => { gcs += list.getEntries().length }).observe({ entryTypes: ['gc'] })
    globalThis.gc()
    await new Promise((r) => setTimeout(r, 10))
    // A full collection can drop the optimized code of the append path (V8 deoptimizes it, and it
    // allocates a number per event until it is optimized again): warm up again, then measure.
    for (let i = 0; i < 100; i++) await log.appendBatchRange(batch)
    await new Promise((r) => setTimeout(r, 10))
    gcs = 0
    const before = process.memoryUsage().heapUsed
    for (let i = 0; i < 40; i++) await log.appendBatchRange(batch)
    const after = process.memoryUsage().heapUsed
    const quietGcs = gcs
    for (let i = 0; i < 2000; i++) await log.appendBatchRange(batch)
    await new Promise((r) => setTimeout(r, 10))
    console.log(JSON.stringify({ bytesPerEvent: quietGcs === 0 ? (after - before) / 40000 : null, gcPerMillion: gcs / 2.04, rss: process.memoryUsage().rss }))
    await log.close()
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--input-type=module', '-e', script])
  const result = JSON.parse(stdout) as { bytesPerEvent: number | null, gcPerMillion: number, rss: number }
  rows.push({ scenario: 'heap bytes per event', params: { size: 128, batch: 1000 }, unit: 'bytes', ours: result.bytesPerEvent ?? NaN, peer: 8, peerName: 'target: 8', limit: NaN })
  rows.push({ scenario: 'GC runs per million events', params: { size: 128, batch: 1000 }, unit: 'runs', ours: result.gcPerMillion, peer: NaN, peerName: '', limit: NaN })
  rows.push({ scenario: 'RSS while appending', params: { size: 128, batch: 1000 }, unit: 'MiB', ours: result.rss / 2 ** 20, peer: NaN, peerName: '', limit: NaN })
}

/** Socket appends from another process, beside in-process appends of the same events. */
async function scenarioSocket(): Promise<void> {
  const data = fresh()
  const cli = path.join(repository, 'dist', 'cli', 'main.js')
  const daemon = spawn(process.execPath, [cli, 'serve', '--init', '--data', data, '--durability', 'interval'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const socket = path.join(data, 'interlog.sock')
  try {
    for (let waited = 0; !fs.existsSync(socket) && waited < 10_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50))
    const total = quick ? 100_000 : 1_000_000
    for (const mode of ['pipelined single appends', 'batches of 1000']) {
      const script = `
        import { connect } from ${JSON.stringify(path.join(repository, 'dist', 'index.js'))}
        const log = await connect(${JSON.stringify(socket)})
        const payload = new Uint8Array(128)
        const batch = Array.from({ length: 1000 }, () => payload)
        const started = performance.now()
        if (${JSON.stringify(mode)} === 'batches of 1000') {
          for (let i = 0; i < ${total}; i += 1000) await log.appendBatchRange(batch)
        } else {
          let next = 0
          await Promise.all(Array.from({ length: 512 }, async () => { while (next++ < ${total}) await log.append(payload) }))
        }
        console.log(${total} / ((performance.now() - started) / 1000))
        await log.close()
      `
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script])
      const socketRate = Number(stdout)
      const inProcess = await appendRate(interlog, 'interval', 128, mode === 'batches of 1000' ? 1000 : 1, quick ? 50_000 : 200_000)
      rows.push({ scenario: 'socket appends from another process', params: { mode, size: 128, durability: 'interval' }, unit: 'events/s', ours: socketRate, peer: inProcess, peerName: 'interlog in-process', limit: NaN })
    }
  } finally {
    daemon.kill('SIGTERM')
    await new Promise((resolve) => daemon.once('exit', resolve))
  }
}

/** Validator overhead: none, a trivial JavaScript validator, a trivial WebAssembly validator. */
async function scenarioValidators(): Promise<void> {
  // wabt is a devDependency: loaded by name, so that a production build (npm ci --omit=dev) compiles without it.
  const wabtModule = 'wabt'
  const wabt = await ((await import(wabtModule)) as { default: () => Promise<{ parseWat(name: string, text: string): { toBinary(options: object): { buffer: Uint8Array }, destroy(): void } }> }).default()
  const module = wabt.parseWat('trivial.wat', '(module (memory (export "memory") 1 4) (func (export "alloc") (param i32) (result i32) (i32.const 1024)) (func (export "validate") (param i32 i32) (result i32) (i32.const 0)))')
  const trivialWasm = new Uint8Array(module.toBinary({}).buffer)
  module.destroy()
  const total = quick ? 300_000 : 2_000_000
  const batch = payloads(128, 1000)
  const rate = async (validators: object): Promise<number> => {
    const log = await openLog(fresh(), { durability: 'interval', validators })
    const started = performance.now()
    for (let i = 0; i < total; i += 1000) await log.appendBatchRange(batch)
    await log.close()
    return total / ((performance.now() - started) / 1000)
  }
  const none = await rate({})
  const js = await rate({ append: [() => undefined] })
  const wasm = await rate({ append: [{ wasm: trivialWasm, name: 'trivial' }] })
  rows.push({ scenario: 'validators', params: { validator: 'trivial JavaScript', size: 128, batch: 1000 }, unit: 'events/s', ours: js, peer: none, peerName: 'no validator', limit: NaN })
  rows.push({ scenario: 'validators', params: { validator: 'trivial WebAssembly', size: 128, batch: 1000 }, unit: 'events/s', ours: wasm, peer: none, peerName: 'no validator', limit: NaN })
}

/** Scenario 9: what signing and payload encryption cost on appends (128 B, batches of 1000). */
async function scenarioSecurity(): Promise<void> {
  const batch = payloads(128, 1000)
  const key = { keys: [{ id: 1, key: new Uint8Array(crypto.randomBytes(32)) }] }
  /**
   * Two configurations (signed and unsigned, or encrypted and not) interleaved batch by batch:
   * two logs open side by side, their batches alternating (which one goes first alternates too),
   * each append timed on its own (with 'interval', a log's timed flush may run while the other
   * log's append is timed, which both are alike), and each log's close (its last write and sync)
   * added to its own time. The disk of this shared VM drifts by 2x within a second, so runs made
   * one after the other (the estimator before this one) gave pairs from 0.67 to 1.19 for the same
   * code; interleaved, drift hits both alike. Rounds of `total` events each; the round with the
   * median ratio is reported and every round is noted.
   */
  const interleaved = async (what: string, options: { ours: object, peer: object }, total: number, batchPayloads: Uint8Array[]): Promise<{ ours: number, peer: number }> => {
    const rounds: { ours: number, peer: number }[] = []
    for (let round = 0; round < (quick ? 3 : 5); round++) {
      // Dirty pages that earlier scenarios left (the peers write through the page cache) are written back first.
      await promisify(execFile)('sync')
      const ours = await openLog(fresh(), options.ours)
      const peer = await openLog(fresh(), options.peer)
      await ours.appendBatchRange(batchPayloads)
      await peer.appendBatchRange(batchPayloads)
      let oursMs = 0
      let peerMs = 0
      const timed = async (log: Log, step: (log: Log) => Promise<unknown>): Promise<void> => {
        const started = performance.now()
        await step(log)
        if (log === ours) oursMs += performance.now() - started
        else peerMs += performance.now() - started
      }
      const append = (log: Log): Promise<unknown> => log.appendBatchRange(batchPayloads)
      for (let done = 0, turn = 0; done < total; done += batchPayloads.length, turn++) {
        await timed(turn % 2 === 0 ? peer : ours, append)
        await timed(turn % 2 === 0 ? ours : peer, append)
      }
      await timed(ours, (log) => log.close())
      await timed(peer, (log) => log.close())
      rounds.push({ ours: total / (oursMs / 1000), peer: total / (peerMs / 1000) })
    }
    rounds.sort((x, y) => x.ours / x.peer - y.ours / y.peer)
    const ratios = rounds.map((round) => (round.ours / round.peer).toFixed(2))
    notes.push(`${what}: each round's ratio (batches interleaved) ${ratios.join(', ')} (the median is reported)`)
    return rounds[rounds.length >> 1]!
  }
  const signing = (durability: 'interval' | 'fsync'): { ours: object, peer: object } => ({ ours: { durability }, peer: { durability, identity: false } })
  // Single appends: each is a batch, so each pays a link (one SHA-256 call).
  const single = await interleaved('signing, single appends, interval', signing('interval'), quick ? 50_000 : 200_000, payloads(128, 1))
  rows.push({ scenario: 'signing', params: { durability: 'interval', size: 128, batch: 1 }, unit: 'events/s', ours: single.ours, peer: single.peer, peerName: 'interlog unsigned (identity: false)', limit: NaN })
  for (const durability of ['interval', 'fsync'] as const) {
    const total = durability === 'fsync' ? (quick ? 100_000 : 300_000) : (quick ? 500_000 : 2_000_000)
    const signed = await interleaved(`signing, batches of 1000, ${durability}`, signing(durability), total, batch)
    const encrypted = await interleaved(`payload encryption, batches of 1000, ${durability}`, { ours: { durability, encryption: key }, peer: { durability } }, quick ? 50_000 : 200_000, batch)
    rows.push({ scenario: 'signing', params: { durability, size: 128, batch: 1000 }, unit: 'events/s', ours: signed.ours, peer: signed.peer, peerName: 'interlog unsigned (identity: false)', limit: NaN })
    rows.push({ scenario: 'payload encryption', params: { durability, size: 128, batch: 1000 }, unit: 'events/s', ours: encrypted.ours, peer: encrypted.peer, peerName: 'interlog signed, not encrypted', limit: NaN })
    process.stderr.write(`security ${durability}: unsigned ${Math.round(signed.peer)}, signed ${Math.round(signed.ours)}; signed+encrypted ${Math.round(encrypted.ours)} beside signed ${Math.round(encrypted.peer)} events/s\n`)
  }
}

/** Sync catch-up between two replicas through mosquitto (when installed), beside raw MQTT.js publishing of the same bytes. */
/**
 * Stored compression: sensor readings (CBOR, as the demo's sensors make them) appended in batches
 * of 1000 with 'interval', deflated against plain, alternating runs (the median of three rounds
 * each); and the bytes each stores per event.
 */
async function scenarioStoredCompression(): Promise<void> {
  // A random walk of 0.1-degree steps, as test/sync/compression.test.ts makes them.
  let value = 20
  let state = 11
  const batch = Array.from({ length: 1000 }, (_, i) => {
    state = (state * 1664525 + 1013904223) >>> 0
    value = Math.round((value + (state / 2 ** 32 - 0.5) * 2) * 10) / 10
    return new Uint8Array(cborEncode({ sensor: `temperature-${i % 3}`, value, unit: 'C' }))
  })
  const total = quick ? 200_000 : 1_000_000
  const rates = { 'deflate-raw': [] as number[], none: [] as number[] }
  const bytes = { 'deflate-raw': 0, none: 0 }
  for (let round = 0; round < 3; round++) {
    for (const storedCompression of round % 2 === 0 ? ['deflate-raw', 'none'] as const : ['none', 'deflate-raw'] as const) {
      const dir = fresh()
      const log = await openLog(dir, { durability: 'interval', storedCompression })
      await log.appendBatch(batch.slice(0, 1))
      const started = performance.now()
      for (let done = 0; done < total; done += batch.length) await log.appendBatch(batch)
      await log.close()
      rates[storedCompression].push(total / ((performance.now() - started) / 1000))
      const check = await openLog(dir, { readOnly: true })
      bytes[storedCompression] = (await check.verify()).bytes / (total + 1)
      await check.close()
    }
  }
  const median = (list: number[]): number => [...list].sort((a, b) => a - b)[list.length >> 1]!
  const params = { data: 'sensor readings (CBOR, about 40 B)', batch: 1000, durability: 'interval' }
  rows.push({ scenario: 'stored compression', params, unit: 'events/s', ours: median(rates['deflate-raw']), peer: median(rates.none), peerName: "interlog storedCompression 'none'", limit: NaN })
  rows.push({ scenario: 'stored compression', params, unit: 'bytes per event', ours: bytes['deflate-raw'], peer: bytes.none, peerName: "interlog storedCompression 'none'", limit: NaN })
  process.stderr.write(`stored compression: ${Math.round(median(rates['deflate-raw']))} events/s beside ${Math.round(median(rates.none))} plain; ${bytes['deflate-raw'].toFixed(1)} bytes per event beside ${bytes.none.toFixed(1)}\n`)
}

async function scenarioSync(): Promise<void> {
  const hasMosquitto = await promisify(execFile)('sh', ['-c', 'command -v mosquitto']).then(() => true, () => false)
  if (!hasMosquitto) {
    notes.push('sync: mosquitto is not installed; the sync scenario was skipped')
    return
  }
  const port = 20000 + Math.floor(Math.random() * 20000)
  const config = path.join(fresh() + '.conf')
  fs.writeFileSync(config, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n${process.getuid?.() === 0 ? 'user root\n' : ''}`)
  const broker = spawn('mosquitto', ['-c', config], { stdio: 'ignore' })
  await new Promise((resolve) => setTimeout(resolve, 300))
  const url = `mqtt://127.0.0.1:${port}`
  try {
    const total = quick ? 100_000 : 500_000
    // BENCH_MODE: 'one' (sender and receiver in this process), 'two' (the sender in a child process).
    // BENCH_IDENTITY 'false': unsigned, trust off. BENCH_KEY (hex): both logs encrypt with it.
    const sender = `
      import { openLog, startSync } from ${JSON.stringify(pathToFileURL(path.join(repository, 'dist', 'index.js')).href)}
      const identity = process.env.BENCH_IDENTITY !== 'false'
      const encryption = process.env.BENCH_KEY ? { keys: [{ id: 1, key: new Uint8Array(Buffer.from(process.env.BENCH_KEY, 'hex')) }] } : null
      const a = await openLog(process.env.BENCH_DIR_A, { durability: 'interval', identity, encryption })
      const batch = Array.from({ length: 1000 }, (_, i) => new Uint8Array(128).fill(i & 255))
      for (let i = 0; i < ${total}; i += 1000) await a.appendBatchRange(batch)
      await a.close()
      const source = await openLog(a.directory, { durability: 'interval', encryption })
      const sa = await startSync(source, { url: ${JSON.stringify(url)}, logName: process.env.BENCH_LOG, announceIntervalMs: 500, logger: () => {}, compression: process.env.BENCH_COMPRESSION })
    `
    const script = `
      import { openLog, startSync } from ${JSON.stringify(path.join(repository, 'dist', 'index.js'))}
      import { spawn } from 'node:child_process'
      import mqtt from 'mqtt'
      const identity = process.env.BENCH_IDENTITY !== 'false'
      const encryption = process.env.BENCH_KEY ? { keys: [{ id: 1, key: new Uint8Array(Buffer.from(process.env.BENCH_KEY, 'hex')) }] } : null
      let stop = async () => {}
      if (process.env.BENCH_MODE === 'two') {
        // The sender in its own process: it appends, opens again and syncs; 'ready' on stdout.
        const child = spawn(process.execPath, ['--input-type=module', '-e', process.env.BENCH_SENDER + "\\nconsole.log('ready')\\nprocess.stdin.on('data', async () => { await sa.close(); await source.close(); process.exit(0) })"], { stdio: ['pipe', 'pipe', 'inherit'] })
        await new Promise((resolve) => child.stdout.on('data', resolve))
        stop = async () => { child.stdin.write('stop'); await new Promise((resolve) => child.on('exit', resolve)) }
      } else {
        await import('data:text/javascript;base64,' + Buffer.from(process.env.BENCH_SENDER + "\\nglobalThis.benchStop = async () => { await sa.close(); await source.close() }").toString('base64'))
        stop = () => globalThis.benchStop()
      }
      const b = await openLog(process.env.BENCH_DIR_B, { durability: 'interval', trust: identity ? 'open' : 'off', encryption })
      const started = performance.now()
      const sb = await startSync(b, { url: ${JSON.stringify(url)}, logName: process.env.BENCH_LOG, announceIntervalMs: 500, logger: () => {}, compression: process.env.BENCH_COMPRESSION })
      while (b.length < ${total}) await new Promise((r) => setTimeout(r, 5))
      const syncRate = ${total} / ((performance.now() - started) / 1000)
      await sb.close(); await b.close(); await stop()
      // Raw: the same bytes in messages of the same size, QoS 1, one publisher and one subscriber.
      const messageBytes = 256 * 1024
      const perMessage = Math.floor(messageBytes / 152)
      const messages = Math.ceil(${total} / perMessage)
      const payload = Buffer.alloc(perMessage * 152)
      const sub = await mqtt.connectAsync(${JSON.stringify(url)}, { protocolVersion: 4 })
      let got = 0
      const done = new Promise((resolve) => sub.on('message', () => { if (++got === messages) resolve() }))
      await sub.subscribeAsync('raw/bench', { qos: 1 })
      const pub = await mqtt.connectAsync(${JSON.stringify(url)}, { protocolVersion: 4 })
      const rawStarted = performance.now()
      const inflight = []
      for (let i = 0; i < messages; i++) {
        inflight.push(pub.publishAsync('raw/bench', payload, { qos: 1 }))
        if (inflight.length >= 16) await inflight.shift()
      }
      await Promise.all(inflight)
      await done
      const rawRate = (messages * perMessage) / ((performance.now() - rawStarted) / 1000)
      await pub.endAsync(); await sub.endAsync()
      console.log(JSON.stringify({ syncRate, rawRate }))
    `
    let runs = 0
    const run = async (settings: { identity: boolean, encrypted: boolean, processes: 'one' | 'two', compression?: 'none' }): Promise<{ syncRate: number, rawRate: number }> => {
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
        cwd: repository, timeout: 300_000,
        env: {
          ...process.env, BENCH_IDENTITY: String(settings.identity), BENCH_DIR_A: fresh(), BENCH_DIR_B: fresh(), BENCH_MODE: settings.processes,
          BENCH_KEY: settings.encrypted ? crypto.randomBytes(32).toString('hex') : '', BENCH_SENDER: sender, BENCH_LOG: `bench${runs++}`,
          BENCH_COMPRESSION: settings.compression ?? 'deflate-raw',
        },
      })
      return JSON.parse(stdout) as { syncRate: number, rawRate: number }
    }
    const result = await run({ identity: true, encrypted: false, processes: 'one' })
    rows.push({ scenario: 'sync catch-up via mosquitto', params: { size: 128, events: total }, unit: 'events/s', ours: result.syncRate, peer: result.rawRate, peerName: 'raw MQTT.js, same bytes and message size', limit: NaN })
    const separate = await run({ identity: true, encrypted: false, processes: 'two' })
    rows.push({ scenario: 'sync catch-up via mosquitto', params: { size: 128, events: total, processes: 'separate' }, unit: 'events/s', ours: separate.syncRate, peer: separate.rawRate, peerName: 'raw MQTT.js, same bytes and message size', limit: NaN })
    // The bench's payloads compress about 40 to 1 on the wire; ciphertext does not compress. The
    // cost of encryption is measured against sync without compression, and the gain of compression
    // against the same.
    const plain = await run({ identity: true, encrypted: false, processes: 'one', compression: 'none' })
    rows.push({ scenario: 'sync compression', params: { size: 128, events: total }, unit: 'events/s', ours: result.syncRate, peer: plain.syncRate, peerName: "interlog signed, compression 'none'", limit: NaN })
    const encrypted = await run({ identity: true, encrypted: true, processes: 'one' })
    rows.push({ scenario: 'sync encryption', params: { size: 128, events: total }, unit: 'events/s', ours: encrypted.syncRate, peer: plain.syncRate, peerName: "interlog signed, not encrypted, compression 'none'", limit: NaN })
    const unsigned = await run({ identity: false, encrypted: false, processes: 'one' })
    rows.push({ scenario: 'sync signing', params: { size: 128, events: total }, unit: 'events/s', ours: result.syncRate, peer: unsigned.syncRate, peerName: 'interlog unsigned, trust off', limit: NaN })
    process.stderr.write(`sync: ${Math.round(result.syncRate)} events/s (raw ${Math.round(result.rawRate)}), separate processes ${Math.round(separate.syncRate)}, uncompressed ${Math.round(plain.syncRate)}, encrypted ${Math.round(encrypted.syncRate)}, unsigned ${Math.round(unsigned.syncRate)}\n`)
  } finally {
    broker.kill('SIGTERM')
  }
}

const targets: { what: string, holds: () => boolean | null }[] = [
  { what: 'append 128 B, batches of 1000, interval: at least 2,000,000 events/s', holds: () => find('append', { size: 128, batch: 1000, durability: 'interval' })?.ours! >= 2_000_000 },
  { what: 'same, at least 5x better-sqlite3', holds: () => ratioOf('append', { size: 128, batch: 1000, durability: 'interval' }, 'better-sqlite3') >= 5 },
  { what: 'same, at least 20x hypercore', holds: () => ratioOf('append', { size: 128, batch: 1000, durability: 'interval' }, 'hypercore') >= 20 },
  { what: 'at least 25% of the raw write for 128 B payloads', holds: () => limitShare('append', { size: 128, batch: 1000, durability: 'interval' }) >= 0.25 },
  { what: 'at least 50% of the raw write for 16 KiB payloads', holds: () => limitShare('append', { size: 16384, batch: 1000, durability: 'interval' }) >= 0.5 },
  { what: '128 concurrent durable appenders: at least 30x one appender', holds: () => { const r = find('group commit', { appenders: 128 }); return r === undefined ? null : r.ours / r.peer >= 30 } },
  { what: 'open to first append under 1 s', holds: () => { const r = find('open to first durable append', {}); return r === undefined ? null : r.ours < 1000 } },
  { what: 'under 8 heap bytes per event in steady-state batch appends', holds: () => { const r = find('heap bytes per event', {}); return r === undefined || Number.isNaN(r.ours) ? null : r.ours < 8 } },
  { what: 'socket appends: at least 300,000 events/s and 30% of in-process', holds: () => { const r = find('socket appends from another process', { mode: 'batches of 1000' }); return r === undefined ? null : r.ours >= 300_000 && r.ours / r.peer >= 0.3 } },
  { what: 'socket pipelined single appends: at least 300,000 events/s', holds: () => { const r = find('socket appends from another process', { mode: 'pipelined single appends' }); return r === undefined ? null : r.ours >= 300_000 } },
  { what: 'trivial validator costs under 20% (JavaScript)', holds: () => { const r = find('validators', { validator: 'trivial JavaScript' }); return r === undefined ? null : r.ours / r.peer >= 0.8 } },
  { what: 'trivial validator costs under 20% (WebAssembly)', holds: () => { const r = find('validators', { validator: 'trivial WebAssembly' }); return r === undefined ? null : r.ours / r.peer >= 0.8 } },
  { what: 'signing costs under 25% of append throughput (128 B, batches of 1000, interval)', holds: () => { const r = find('signing', { durability: 'interval', batch: 1000 }); return r === undefined ? null : r.ours / r.peer >= 0.75 } },
  { what: 'signing costs under 25% of append throughput (128 B, batches of 1000, fsync)', holds: () => { const r = find('signing', { durability: 'fsync', batch: 1000 }); return r === undefined ? null : r.ours / r.peer >= 0.75 } },
  { what: 'sync catch-up: at least 600,000 events/s and 25% of raw MQTT.js on the same bytes (one process, signed)', holds: () => { const r = find('sync catch-up via mosquitto', {}); return r === undefined ? null : r.ours >= 600_000 && r.ours / r.peer >= 0.25 } },
  { what: 'sync catch-up with encryption: at least 70% of signed sync (both without compression: ciphertext does not compress)', holds: () => { const r = find('sync encryption', {}); return r === undefined ? null : r.ours / r.peer >= 0.7 } },
  { what: 'encrypted appends (128 B, batches of 1000, interval): at least 0.7x unencrypted', holds: () => { const r = find('payload encryption', { durability: 'interval', batch: 1000 }); return r === undefined ? null : r.ours / r.peer >= 0.7 } },
]

function matches(row: Row, params: Record<string, unknown>): boolean {
  return Object.entries(params).every(([key, value]) => row.params[key] === value)
}
function find(scenario: string, params: Record<string, unknown>): Row | undefined {
  return rows.find((row) => row.scenario === scenario && matches(row, params))
}
function ratioOf(scenario: string, params: Record<string, unknown>, peer: string): number {
  const row = rows.find((r) => r.scenario === scenario && matches(r, params) && r.peerName.startsWith(peer))
  return row === undefined ? NaN : row.ours / row.peer
}
function limitShare(scenario: string, params: Record<string, unknown>): number {
  const row = find(scenario, params)
  return row === undefined ? NaN : row.ours / row.limit
}

const started = Date.now()
try {
  await scenarioAppends()
  await scenarioGroupCommit()
  await scenarioReads()
  await scenarioOpenAndVerify()
  await scenarioAllocation()
  await scenarioSocket()
  await scenarioValidators()
  await scenarioSecurity()
  await scenarioStoredCompression()
  await scenarioSync()
} finally {
  fs.rmSync(scratch, { recursive: true, force: true })
}
const verdicts = targets.map((target) => {
  const holds = target.holds()
  return { target: target.what, result: holds === null || Number.isNaN(holds) ? 'not measured' : holds ? 'met' : 'MISSED' }
})
const meta = { date: new Date().toISOString(), quick, node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', seconds: Math.round((Date.now() - started) / 1000) }
fs.mkdirSync(resultsDirectory, { recursive: true })
const suffix = quick ? '-quick' : ''
fs.writeFileSync(path.join(resultsDirectory, `latest${suffix}.json`), JSON.stringify({ meta, rows, verdicts, notes }, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n')
fs.writeFileSync(path.join(resultsDirectory, `latest${suffix}.md`), renderMarkdown(meta, rows, verdicts, notes))
fs.writeFileSync(path.join(resultsDirectory, `latest${suffix}.svg`), renderSvg(rows))
process.stdout.write(renderMarkdown(meta, rows, verdicts, notes))
