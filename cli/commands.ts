// The CLI's subcommands. Each takes parsed options and returns an exit code:
// 0 success, 1 damage found (verify; read, when it went around a damaged range), 2 usage or configuration error, 3 the operation failed
// (a LogError: its code is printed), 4 the daemon could not be reached.

import fs from 'node:fs'
import path from 'node:path'
import { addTrustedKey, openLog, readTrustedKeys, removeTrustedKey, type DamagedRange, type LogEvent, type SecurityStatus } from '../core/index.js'
import { ConfigError, loadConfig, logDirectory, serve, journalLogger } from '../daemon/index.js'
import { delta } from '../sync/index.js'
import { openTarget, UsageError, type Target, type TargetOptions } from './target.js'

export const EXIT = { ok: 0, damage: 1, usage: 2, failed: 3, unreachable: 4 } as const

export type Values = Record<string, string | boolean | string[] | undefined>

const out = (line: string): boolean => process.stdout.write(line + '\n')

/** What a damaged range lost, and what comes of it. */
function describeLoss(range: DamagedRange): string {
  const missing = range.missing.reduce((sum, entry) => sum + entry.to - entry.from, 0)
  return `local positions ${range.localFrom} to ${range.localTo} (${range.reason}); ` +
    `${missing} events to fetch back from peers${range.elsewhere > 0 ? `, ${range.elsewhere} held again at the end of the log once sync brings them` : ''}`
}

function describeDamage(range: DamagedRange): string {
  return `went around damaged segment ${range.segment} at ${range.offset}: ${describeLoss(range)}; interlog verify lists the damage`
}

function targetOptions(values: Values): TargetOptions {
  return { data: values['data'] as string | undefined, socket: values['socket'] as string | undefined, log: (values['log'] as string[] | undefined)?.[0] }
}

function integer(values: Values, name: string): number | undefined {
  const text = values[name]
  if (text === undefined) return undefined
  if (typeof text !== 'string' || !/^\d+$/.test(text)) throw new UsageError(`--${name} must be a non-negative integer`)
  return Number(text)
}

/** `readOnly`: a log opened directly (no daemon) is opened read-only, so the command changes nothing on disk. */
async function withTarget(values: Values, work: (target: Target) => Promise<number>, readOnly = true): Promise<number> {
  const target = await openTarget({ ...targetOptions(values), readOnly })
  try {
    return await work(target)
  } finally {
    await target.close()
  }
}

export async function init(values: Values): Promise<number> {
  const data = values['data'] as string | undefined
  if (data === undefined) throw new UsageError('init needs --data DIR')
  const names = (values['log'] as string[] | undefined) ?? ['main']
  const created: Record<string, { replicaId: string, publicKey: string | null }> = {}
  for (const name of names) {
    const log = await openLog(logDirectory({ data }, name))
    created[name] = { replicaId: log.replicaId, publicKey: log.publicKey }
    await log.close()
  }
  if (values['json'] === true) {
    out(JSON.stringify({
      data, logs: Object.fromEntries(Object.entries(created).map(([name, log]) => [name, log.replicaId])),
      publicKeys: Object.fromEntries(Object.entries(created).map(([name, log]) => [name, log.publicKey])),
    }))
  } else {
    for (const [name, { replicaId, publicKey }] of Object.entries(created)) {
      out(`log ${name}: replica ${replicaId} in ${logDirectory({ data }, name)}`)
      if (publicKey !== null) out(`  public key ${publicKey} (peers trust it with: interlog trust add ${publicKey} --data DIR)`)
    }
  }
  return EXIT.ok
}

export async function runServe(values: Values): Promise<number> {
  let config
  try {
    config = loadConfig({
      file: values['config'] as string | undefined,
      env: process.env,
      flags: {
        data: values['data'], socket: values['socket'], broker: values['broker'],
        brokerPort: values['broker-port'] === undefined ? undefined : Number(values['broker-port']),
        logs: values['log'], durability: values['durability'],
      },
    })
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`interlog serve: ${error.message}\n`)
      return EXIT.usage
    }
    throw error
  }
  const logger = journalLogger()
  const daemon = await serve(config, logger)
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger('info', `${signal}: stopping`)
      daemon.close().then(resolve, (error: unknown) => {
        logger('error', `stop failed: ${(error as Error).message}`)
        resolve()
      })
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  return EXIT.ok
}

/** Reads length-prefixed payloads (u32 big-endian length, then the bytes) from a stream. */
async function* binaryPayloads(stream: NodeJS.ReadableStream): AsyncGenerator<Uint8Array> {
  let buffered = Buffer.alloc(0)
  for await (const chunk of stream) {
    buffered = Buffer.concat([buffered, chunk as Buffer])
    while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
      const length = buffered.readUInt32BE(0)
      yield buffered.subarray(4, 4 + length)
      buffered = buffered.subarray(4 + length)
    }
  }
  if (buffered.length > 0) throw new UsageError(`stdin ends inside a length-prefixed payload (${buffered.length} bytes left)`)
}

async function* linePayloads(stream: NodeJS.ReadableStream): AsyncGenerator<Uint8Array> {
  let rest = ''
  for await (const chunk of stream) {
    rest += (chunk as Buffer).toString('utf8')
    const lines = rest.split('\n')
    rest = lines.pop()!
    for (const line of lines) yield Buffer.from(line.endsWith('\r') ? line.slice(0, -1) : line, 'utf8')
  }
  if (rest.length > 0) yield Buffer.from(rest, 'utf8')
}

/** Payloads appended per batch, at most. */
const APPEND_BATCH_EVENTS_MAX = 1000

export async function append(values: Values): Promise<number> {
  return withTarget(values, async (target) => {
    const source = values['binary'] === true ? binaryPayloads(process.stdin) : linePayloads(process.stdin)
    let batch: Uint8Array[] = []
    let total = 0
    const tty = process.stderr.isTTY === true
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return
      const range = await target.append(batch)
      total += range.count
      if (tty) process.stderr.write(`\r\x1b[2Kappended ${total} events`)
      for (let i = 0; i < range.count; i++) {
        out(values['json'] === true ? JSON.stringify({ origin: range.origin, pos: range.pos + i }) : `${range.origin} ${range.pos + i}`)
      }
      batch = []
    }
    for await (const payload of source) {
      batch.push(payload)
      if (batch.length >= APPEND_BATCH_EVENTS_MAX) await flush()
    }
    await flush()
    if (tty && total > 0) process.stderr.write('\n')
    return EXIT.ok
  }, false)
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function formatEvent(event: LogEvent, format: string): string | Buffer {
  switch (format) {
    case 'hex':
      return `${event.localPos} ${event.origin} ${event.pos} ${event.time} ${Buffer.from(event.payload).toString('hex')}\n`
    case 'raw': {
      const frame = Buffer.allocUnsafe(4 + event.payload.length)
      frame.writeUInt32BE(event.payload.length, 0)
      frame.set(event.payload, 4)
      return frame
    }
    default: {
      const line: Record<string, unknown> = {
        localPos: event.localPos, origin: event.origin, pos: event.pos, time: event.time,
        payload: Buffer.from(event.payload).toString('base64'),
      }
      try {
        line['text'] = utf8.decode(event.payload)
      } catch {
        // not UTF-8: base64 only
      }
      return JSON.stringify(line) + '\n'
    }
  }
}

async function writeOut(data: string | Buffer): Promise<void> {
  if (!process.stdout.write(data)) await new Promise((resolve) => process.stdout.once('drain', resolve))
}

function checkFormat(values: Values): string {
  const format = (values['format'] as string | undefined) ?? 'json'
  if (!['json', 'hex', 'raw'].includes(format)) throw new UsageError(`--format must be json, hex or raw, got ${format}`)
  return format
}

export async function read(values: Values): Promise<number> {
  const format = checkFormat(values)
  const from = integer(values, 'from')
  const to = integer(values, 'to')
  return withTarget(values, async (target) => {
    const skipped: DamagedRange[] = []
    const onDamage = (range: DamagedRange): void => { skipped.push(range) }
    for await (const event of target.read({ ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }), onDamage })) {
      await writeOut(formatEvent(event, format))
    }
    // The output misses the events of damaged ranges: said on stderr, and exit 1 (as verify on damage).
    for (const range of skipped) process.stderr.write(`interlog read: ${describeDamage(range)}\n`)
    return skipped.length > 0 ? EXIT.damage : EXIT.ok
  })
}

export async function tail(values: Values): Promise<number> {
  const format = checkFormat(values)
  const from = integer(values, 'from')
  return withTarget(values, async (target) => {
    const length = await target.length()
    const start = from ?? Math.max(0, length - 10)
    if (values['follow'] !== true) {
      for await (const event of target.read({ from: start })) await writeOut(formatEvent(event, format))
      return EXIT.ok
    }
    const controller = new AbortController()
    const stop = (): void => controller.abort()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    try {
      for await (const event of target.tail({ from: start, signal: controller.signal })) await writeOut(formatEvent(event, format))
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }
    return EXIT.ok
  })
}

export async function status(values: Values): Promise<number> {
  return withTarget(values, async (target) => {
    const report = await target.status()
    const vector = report['vector'] as Record<string, number>
    const sync = report['sync'] as { connected: boolean, peers: { replica: string, online: boolean, vector: Record<string, number> }[] } | null
    const peers = (sync?.peers ?? []).map((peer) => ({
      replica: peer.replica, online: peer.online,
      lag: [...delta(vector, peer.vector).values()].reduce((sum, [from, to]) => sum + (to - from), 0),
      behind: [...delta(peer.vector, vector).values()].reduce((sum, [from, to]) => sum + (to - from), 0),
    }))
    const result = { via: target.kind, ...report, peers }
    if (values['json'] === true) {
      out(JSON.stringify(result))
      return EXIT.ok
    }
    out(`log ${String(report['log'])} (${target.kind} ${target.where})`)
    out(`  replica   ${target.replicaId}`)
    out(`  events    ${String(report['length'])} (${String(report['durableLength'])} durable)`)
    out(`  segments  ${String(report['segments'])}, ${((report['bytes'] as number) / 2 ** 20).toFixed(1)} MiB on disk`)
    for (const [origin, count] of Object.entries(vector)) out(`  origin    ${origin} ${count}`)
    const security = report['security'] as SecurityStatus | undefined
    if (security !== undefined) {
      out(`  key       ${security.publicKey ?? 'none (unsigned log)'}`)
      out(`  trust     ${security.trust}${security.trust === 'keys' ? ` (${security.trustedKeys.length} keys)` : ''}, encryption ${security.encrypted ? 'on' : 'off'}`)
      out(`  refused   ${security.forged} forged events, ${security.equivocations.length} equivocations${security.lastRejection === null ? '' : `; last: ${security.lastRejection}`}`)
    }
    out(`  sync      ${sync === null ? 'off' : sync.connected ? 'connected' : 'not connected'}`)
    for (const peer of peers) out(`  peer      ${peer.replica} ${peer.online ? 'online' : 'offline'}, lacks ${peer.lag} of ours, has ${peer.behind} we lack`)
    for (const consumer of (report['consumers'] as { name: string, position: number, lag: number }[] | undefined) ?? []) {
      out(`  consumer  ${consumer.name} at ${consumer.position}, lag ${consumer.lag}`)
    }
    if (report['noSpace'] === true) out('  disk      full: writes are stalled (appends get NO_SPACE) until space is freed')
    for (const range of (report['damage'] as DamagedRange[] | undefined) ?? []) out(`  damaged   ${range.segment} at ${range.offset}: ${describeLoss(range)}`)
    return EXIT.ok
  })
}

export async function verify(values: Values): Promise<number> {
  return withTarget(values, async (target) => {
    if (process.stderr.isTTY === true) process.stderr.write(`verifying ${target.where}…\r`)
    const result = await target.verify()
    if (process.stderr.isTTY === true) process.stderr.write('\x1b[2K')
    if (values['json'] === true) out(JSON.stringify(result))
    else {
      out(`${result.ok ? 'ok' : 'DAMAGED'}: ${result.events} events, ${result.segments} segments, ${result.bytes} bytes checked`)
      for (const damage of result.damage) out(`  damage  ${damage.segment} at ${damage.offset}: ${damage.reason}`)
      for (const range of result.repaired ?? []) out(`  repaired  ${range.segment} at ${range.offset}: ${range.bytes} bytes, ${range.positions} local positions whose events live elsewhere`)
      for (const cut of result.truncated) out(`  cut at open  ${cut.segment} at ${cut.offset}: ${cut.bytes} bytes (${cut.reason})`)
    }
    return result.ok ? EXIT.ok : EXIT.damage
  })
}

/** interlog trust add KEY [--note TEXT] | rm KEY-OR-ID | ls: the allow-list of a log (its trusted-keys file). */
export async function trust(values: Values, positionals: string[]): Promise<number> {
  const data = values['data'] as string | undefined ?? process.env['INTERLOG_DATA']
  if (data === undefined) throw new UsageError('trust needs --data DIR (or INTERLOG_DATA)')
  const directory = logDirectory({ data }, (values['log'] as string[] | undefined)?.[0] ?? 'main')
  const [verb, key, ...extra] = positionals
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`)
  if (!fs.existsSync(directory)) throw new UsageError(`no log at ${directory}: run interlog init --data ${data} first`)
  switch (verb) {
    case 'add': {
      if (key === undefined) throw new UsageError('trust add needs a public key (64 hex characters)')
      const added = addTrustedKey(directory, key.toLowerCase(), (values['note'] as string | undefined) ?? '')
      out(added ? `trusted ${key.toLowerCase()}` : `already trusted: ${key.toLowerCase()}`)
      out('takes effect when the log is next opened (restart the daemon)')
      return EXIT.ok
    }
    case 'rm': {
      if (key === undefined) throw new UsageError('trust rm needs a public key or replica id')
      const removed = removeTrustedKey(directory, key.toLowerCase())
      if (!removed) {
        process.stderr.write(`interlog trust: ${key} is not on the list\n`)
        return EXIT.failed
      }
      out(`removed ${key.toLowerCase()}; takes effect when the log is next opened`)
      if ((readTrustedKeys(directory) ?? []).length === 0) {
        process.stderr.write(`interlog trust: the list is now empty: the log accepts events from no peer (delete ${path.join(directory, 'trusted-keys')} to go back to the default: any replica whose signatures verify)\n`)
      }
      return EXIT.ok
    }
    case 'ls': {
      if (key !== undefined) throw new UsageError('trust ls takes no argument')
      const keys = readTrustedKeys(directory)
      if (values['json'] === true) out(JSON.stringify({ directory, mode: keys === null ? 'default' : 'keys', keys: keys ?? [] }))
      else if (keys === null) out(`no trusted-keys file in ${directory}: default trust (over sync, any replica whose signatures verify; docs/security.md)`)
      else for (const entry of keys) out(`${entry.publicKey} replica ${entry.replicaId}${entry.note === '' ? '' : ` ${entry.note}`}`)
      return EXIT.ok
    }
    default:
      throw new UsageError(`trust needs add, rm or ls, got ${verb === undefined ? 'nothing' : `'${verb}'`}`)
  }
}
