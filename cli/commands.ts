// The CLI's subcommands. Each takes parsed options and returns an exit code:
// 0 success, 1 damage found (verify; read, when it went around a damaged range), 2 usage or configuration error, 3 the operation failed
// (a LogError: its code is printed), 4 the daemon could not be reached.

import fs from 'node:fs'
import path from 'node:path'
import { addTrustedKey, LogError, openLog, readTrustedKeys, removeTrustedKey, type DamagedRange, type LogEvent, type SecurityStatus } from '../core/index.js'
import { ConfigError, loadConfig, logDirectory, serve, journalLogger, type Daemon, type DaemonConfig } from '../daemon/index.js'
import { delta, type HealthReport } from '../sync/index.js'
import { openTarget, targetDirectory, UsageError, type Target, type TargetOptions } from './target.js'

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
async function withTarget<T>(values: Values, work: (target: Target) => Promise<T>, readOnly = true): Promise<T> {
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

type StopSignal = 'SIGTERM' | 'SIGINT' | 'SIGHUP'

/** Signals as a queue: one that comes while the daemon starts or reloads is handled after. */
function signalQueue(): { next: () => Promise<StopSignal>, dispose: () => void } {
  const queued: StopSignal[] = []
  let waiter: ((signal: StopSignal) => void) | null = null
  const on = (signal: StopSignal): void => {
    if (waiter === null) queued.push(signal)
    else {
      const wake = waiter
      waiter = null
      wake(signal)
    }
  }
  const handlers = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((signal) => [signal, () => on(signal)] as const)
  for (const [signal, handler] of handlers) process.on(signal, handler)
  return {
    next: () => {
      const signal = queued.shift()
      return signal !== undefined ? Promise.resolve(signal) : new Promise((resolve) => { waiter = resolve })
    },
    dispose: () => { for (const [signal, handler] of handlers) process.off(signal, handler) },
  }
}

/**
 * The daemon until SIGTERM or SIGINT (stop, exit 0). SIGHUP reloads: the configuration is read
 * again, and if it is valid the daemon stops and starts again with it (the logs are closed and
 * opened again, so trusted keys and validators take effect); if it is not, the daemon goes on as
 * it was and says why.
 */
export async function runServe(values: Values): Promise<number> {
  const load = (): DaemonConfig => loadConfig({
    file: values['config'] as string | undefined,
    env: process.env,
    flags: {
      data: values['data'], socket: values['socket'], broker: values['broker'],
      brokerPort: values['broker-port'] === undefined ? undefined : Number(values['broker-port']),
      logs: values['log'], durability: values['durability'], init: values['init'] === true ? true : undefined,
    },
  })
  const logger = journalLogger()
  const signals = signalQueue()
  try {
    let config: DaemonConfig
    let daemon: Daemon
    try {
      config = load()
      daemon = await serve(config, logger)
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      process.stderr.write(`interlog serve: ${error.message}\n`)
      return EXIT.usage
    }
    for (;;) {
      const signal = await signals.next()
      if (signal !== 'SIGHUP') {
        logger('info', `${signal}: stopping`)
        await daemon.close().catch((error: unknown) => logger('error', `stop failed: ${(error as Error).message}`))
        return EXIT.ok
      }
      let next: DaemonConfig
      try {
        next = load()
      } catch (error) {
        logger('error', `SIGHUP: the configuration is not valid, the daemon goes on as it was: ${(error as Error).message}`)
        continue
      }
      logger('info', 'SIGHUP: reloading: stopping, then starting with the configuration as it is now')
      await daemon.close().catch((error: unknown) => logger('error', `stop failed: ${(error as Error).message}`))
      try {
        daemon = await serve(next, logger)
        config = next
      } catch (error) {
        logger('error', `SIGHUP: cannot start with the new configuration: ${(error as Error).message}; starting with the previous one`)
        daemon = await serve(config, logger)
      }
    }
  } finally {
    signals.dispose()
  }
}

/**
 * Lines of stdin as bytes, exactly as they came (no decoding: any bytes but the newline are kept;
 * a carriage return before the newline is dropped). Each step yields the lines completed by what
 * has arrived, so a line is never held waiting for more input.
 */
async function* lineGroups(stream: NodeJS.ReadableStream): AsyncGenerator<Uint8Array[]> {
  let rest: Buffer = Buffer.alloc(0)
  for await (const chunk of stream) {
    const bytes = rest.length === 0 ? chunk as Buffer : Buffer.concat([rest, chunk as Buffer])
    const lines: Uint8Array[] = []
    let start = 0
    for (let end = bytes.indexOf(0x0a, start); end >= 0; end = bytes.indexOf(0x0a, start)) {
      lines.push(bytes.subarray(start, end > start && bytes[end - 1] === 0x0d ? end - 1 : end))
      start = end + 1
    }
    rest = bytes.subarray(start)
    if (lines.length > 0) yield lines
  }
  if (rest.length > 0) yield [rest]
}

/** Length-prefixed payloads, grouped as they arrive (see lineGroups). */
async function* binaryGroups(stream: NodeJS.ReadableStream): AsyncGenerator<Uint8Array[]> {
  let buffered: Buffer = Buffer.alloc(0)
  for await (const chunk of stream) {
    buffered = buffered.length === 0 ? chunk as Buffer : Buffer.concat([buffered, chunk as Buffer])
    const payloads: Uint8Array[] = []
    while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
      const length = buffered.readUInt32BE(0)
      payloads.push(buffered.subarray(4, 4 + length))
      buffered = buffered.subarray(4 + length)
    }
    if (payloads.length > 0) yield payloads
  }
  if (buffered.length > 0) throw new UsageError(`stdin ends inside a length-prefixed payload (${buffered.length} bytes left)`)
}

/** Payloads appended per batch by default, at most (`--batch N`). */
export const APPEND_BATCH_EVENTS_MAX = 1000

/** Codes of a refusal that concerns one payload of a batch (its index in details): the others may go in. */
const PAYLOAD_REFUSALS = new Set(['TOO_LARGE', 'VALIDATION', 'INVALID_ARGUMENT'])

/** Why one payload was refused, without the batch's wording ("payload 2 of the batch ... Nothing was written"). */
function refusal(error: LogError): string {
  const details = error.details
  if (error.code === 'VALIDATION' && typeof details['reason'] === 'string') return `VALIDATION: validator '${String(details['validator'])}' rejected it: ${details['reason']}`
  if (error.code === 'TOO_LARGE' && typeof details['bytes'] === 'number') return `TOO_LARGE: ${details['bytes']} bytes; maxEventBytes is ${String(details['maxEventBytes'])}`
  return `${error.code}: ${error.message}`
}

/**
 * Appends stdin as it arrives: the lines (or payloads) that have come are appended at once, up to
 * `--batch N` per append, and their ids printed before more input is read. A line the log refuses
 * (too large, or rejected by a validator) is reported by its number on stderr and the others go in;
 * the exit code is then 3. An error that is not about one line (a full disk, a lost daemon) stops
 * the command and says from which line nothing was appended.
 */
export async function append(values: Values): Promise<number> {
  const batchText = values['batch'] as string | undefined
  const batchMax = batchText === undefined ? APPEND_BATCH_EVENTS_MAX : Number(batchText)
  if (!/^\d+$/.test(batchText ?? '1') || !Number.isSafeInteger(batchMax) || batchMax < 1 || batchMax > 100_000) {
    throw new UsageError(`--batch must be 1 to 100000, got ${String(batchText)}`)
  }
  const binary = values['binary'] === true
  const json = values['json'] === true
  const unit = binary ? 'payload' : 'line'
  return withTarget(values, async (target) => {
    const source = binary ? binaryGroups(process.stdin) : lineGroups(process.stdin)
    let total = 0
    let next = 1 // the number of the next line
    const refused: number[] = []
    const tty = process.stderr.isTTY === true
    const put = async (payloads: Uint8Array[], first: number): Promise<void> => {
      let at = 0
      while (at < payloads.length) {
        const batch = payloads.slice(at)
        let range: { origin: string, pos: number, count: number }
        try {
          range = await target.append(batch)
        } catch (error) {
          const index = error instanceof LogError && PAYLOAD_REFUSALS.has(error.code) ? error.details.index : undefined
          if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0 || index >= batch.length) {
            throw new LogError(error instanceof LogError ? error.code : 'IO',
              `${(error as Error).message} (nothing from ${unit} ${first + at} on was appended)`, error instanceof LogError ? error.details : { cause: error })
          }
          if (index > 0) await put(batch.slice(0, index), first + at)
          process.stderr.write(`interlog append: ${unit} ${first + at + index} refused: ${refusal(error as LogError)}\n`)
          refused.push(first + at + index)
          at += index + 1
          continue
        }
        total += range.count
        for (let i = 0; i < range.count; i++) {
          out(json ? JSON.stringify({ origin: range.origin, pos: range.pos + i, [unit]: first + at + i }) : `${range.origin} ${range.pos + i}`)
        }
        at = payloads.length
      }
    }
    for await (const group of source) {
      for (let i = 0; i < group.length; i += batchMax) {
        const part = group.slice(i, i + batchMax)
        await put(part, next)
        next += part.length
      }
      if (tty) process.stderr.write(`\r\x1b[2Kappended ${total} events`)
    }
    if (tty && total > 0) process.stderr.write('\n')
    if (refused.length === 0) return EXIT.ok
    const shown = refused.slice(0, 20).join(', ') + (refused.length > 20 ? ', ...' : '')
    process.stderr.write(`interlog append: ${refused.length} of ${next - 1} ${unit}s refused (${shown}); the others were appended\n`)
    return EXIT.failed
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
    // Progress on stderr when it is a terminal and the events go elsewhere (a file, a pipe): a
    // line at most every READ_PROGRESS_MS, for ranges of READ_PROGRESS_MIN_EVENTS and more.
    const start = from ?? 0
    const end = Math.min(to ?? Infinity, await target.length())
    const progress = process.stderr.isTTY === true && process.stdout.isTTY !== true && end - start >= READ_PROGRESS_MIN_EVENTS
    let saidAt = 0
    let count = 0
    for await (const event of target.read({ ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }), onDamage })) {
      await writeOut(formatEvent(event, format))
      count++
      if (progress && (count & 1023) === 0 && Date.now() - saidAt >= READ_PROGRESS_MS) {
        saidAt = Date.now()
        process.stderr.write(`\x1b[2Kreading: ${count} of ${end - start} events (${Math.floor(100 * count / (end - start))}%)\r`)
      }
    }
    if (progress) process.stderr.write(`\x1b[2Kread ${count} events\n`)
    // The output misses the events of damaged ranges: said on stderr, and exit 1 (as verify on damage).
    for (const range of skipped) process.stderr.write(`interlog read: ${describeDamage(range)}\n`)
    return skipped.length > 0 ? EXIT.damage : EXIT.ok
  })
}

/** `read` shows progress on a terminal for ranges of at least this many events, at most this often. */
const READ_PROGRESS_MIN_EVENTS = 10_000
const READ_PROGRESS_MS = 250

/** A followed log directory (no daemon) is read again when it changes, or at least this often. */
export const FOLLOW_POLL_MS = 1000

export async function tail(values: Values): Promise<number> {
  const format = checkFormat(values)
  const from = integer(values, 'from')
  const controller = new AbortController()
  const stop = (): void => controller.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    const start = await withTarget(values, async (target) => {
      const begin = from ?? Math.max(0, await target.length() - 10)
      if (values['follow'] !== true) {
        for await (const event of target.read({ from: begin })) await writeOut(formatEvent(event, format))
        return -1
      }
      if (target.kind === 'directory') return begin // followed below, without holding the directory
      for await (const event of target.tail({ from: begin, signal: controller.signal })) await writeOut(formatEvent(event, format))
      return -1
    })
    if (start >= 0) await followDirectory(values, start, format, controller.signal)
    return EXIT.ok
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
}

/**
 * `tail --follow` of a log directory no daemon serves: the log is opened read-only, read to its end
 * and closed again (so that other commands may write it meanwhile), then read again when the
 * directory changes, until SIGINT. A daemon that starts meanwhile is followed through its socket.
 */
async function followDirectory(values: Values, start: number, format: string, signal: AbortSignal): Promise<void> {
  const directory = targetDirectory(targetOptions(values))!
  let next = start
  let changed = true
  let wake: (() => void) | null = null
  const watcher = watchDirectory(directory, () => {
    changed = true
    wake?.()
  })
  const onAbort = (): void => wake?.()
  signal.addEventListener('abort', onAbort)
  try {
    while (!signal.aborted) {
      if (changed) {
        changed = false
        const done = await withTarget(values, async (target) => {
          if (target.kind === 'daemon') {
            for await (const event of target.tail({ from: next, signal })) await writeOut(formatEvent(event, format))
            return true
          }
          for await (const event of target.read({ from: next })) {
            await writeOut(formatEvent(event, format))
            next = event.localPos + 1
          }
          return false
        })
        if (done) return
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { changed = true; resolve() }, FOLLOW_POLL_MS)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      wake = null
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    watcher?.close()
  }
}

/** Watches a directory for changes (inotify); null where the platform cannot (the poll covers it). */
function watchDirectory(directory: string, onChange: () => void): fs.FSWatcher | null {
  try {
    const watcher = fs.watch(directory, { persistent: false }, onChange)
    watcher.on('error', () => undefined)
    return watcher
  } catch {
    return null
  }
}

export async function status(values: Values): Promise<number> {
  return withTarget(values, async (target) => {
    const fleet = values['fleet'] === true
    const report = await target.status(fleet ? { fleet: true } : {})
    if (fleet && report['fleet'] === undefined) {
      process.stderr.write('status --fleet: the health reports come from a running daemon with sync; none runs on this log\n')
      report['fleet'] = []
    }
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
    if (fleet) printFleet(report['fleet'] as HealthReport[])
    return EXIT.ok
  })
}

export async function verify(values: Values): Promise<number> {
  return withTarget(values, async (target) => {
    // Progress on a terminal only (stderr a TTY, no --json): segments checked of all, from a directory.
    const progress = process.stderr.isTTY === true && values['json'] !== true
    if (progress) process.stderr.write(`verifying ${target.where}…\r`)
    const result = await target.verify(progress ? {
      onProgress: (checked, segments) => process.stderr.write(`\x1b[2Kverifying ${target.where}: segment ${Math.min(checked + 1, segments)} of ${segments} (${Math.floor(100 * checked / Math.max(1, segments))}%)\r`),
    } : {})
    if (progress) process.stderr.write('\x1b[2K')
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

/** The other replicas' health reports (docs/sync.md, "Health"), one line each: what a fleet's operator checks first. */
function printFleet(fleet: HealthReport[]): void {
  out(`fleet (${fleet.length} other replica${fleet.length === 1 ? '' : 's'} reporting health)`)
  const now = Date.now()
  // Reports are not authenticated: only numbers and plain text reach the terminal.
  const text = (value: unknown): string => (typeof value === 'string' ? value.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?') : '?')
  for (const { replica, retained, receivedMs, report } of fleet) {
    // A report that came as published is aged from its arrival (our clock); one the broker kept
    // and handed over at subscribe may be old: aged from when the gateway wrote it (its clock).
    const timeMs = typeof report['timeMs'] === 'number' && Number.isFinite(report['timeMs']) ? report['timeMs'] as number : null
    const written = retained === true && timeMs !== null ? timeMs : receivedMs
    const ageMs = now - written
    const age = Math.round(ageMs / 1000)
    const interval = typeof report['intervalMs'] === 'number' && report['intervalMs'] > 0 ? report['intervalMs'] as number : null
    // A gateway without a real-time clock shows here: its clock against ours, on a live report.
    const skew = retained !== true && timeMs !== null ? Math.round((timeMs - receivedMs) / 1000) : 0
    const when = `reported ${Math.max(0, age)} s ago${retained === true ? ' (kept by the broker)' : ''}${Math.abs(skew) > 30 ? `, its clock ${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} ours` : ''}`
    const number = (key: string): string => (typeof report[key] === 'number' ? String(report[key]) : '?')
    const free = typeof report['diskFreeBytes'] === 'number' ? `${((report['diskFreeBytes'] as number) / 2 ** 30).toFixed(1)} GiB free` : 'disk ?'
    const trouble = [
      // Three reports missed, with ten seconds for the broker and clocks.
      interval !== null && ageMs > 3 * interval + 10_000 ? `SILENT (reports every ${Math.round(interval / 1000)} s)` : '',
      report['noSpace'] === true ? 'DISK FULL' : '',
      typeof report['damagedRanges'] === 'number' && report['damagedRanges'] > 0 ? `${number('damagedRanges')} damaged` : '',
      typeof report['quarantined'] === 'number' && report['quarantined'] > 0 ? `${number('quarantined')} quarantined` : '',
    ].filter((text) => text !== '')
    out(`  ${text(replica)} ${text(report['node'])}: ${number('length')} events (${number('durableLength')} durable), behind ${number('behindEvents')}, ` +
      `${number('peersOnline')} peers online, ${free}, ${when}${trouble.length > 0 ? `; ${trouble.join(', ')}` : ''}`)
  }
}
