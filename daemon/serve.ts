// The daemon: opens its logs (single writer), serves them on the local socket, runs sync for each
// when a broker is configured (starting the embedded one with 'embedded'), and shuts down in
// order: stop accepting, finish requests, stop sync, flush and close the logs, release the locks.
// Log lines go to stdout, one per event, with systemd priority prefixes (<6> info, <4> warning,
// <3> error) that journald understands.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { openLog, LogError, type Log, type LogWarning } from '../core/index.js'
import { eventsBeyond, startBroker, startSync, type BrokerHandle } from '../sync/index.js'
import type { ValidatorSpec } from '../validators/index.js'
import { ConfigError, logDirectory, parseListen, readEncryptionKeys, type DaemonConfig } from './config.js'
import { LocalApiServer, newServedCounts, type Logger, type ServedLog } from './server.js'
import { SyncJournal } from './sync-journal.js'
import { diskFree, diskUse } from './disk-use.js'
import { RateLimitedJournal, troubleSummary } from './journal.js'

/** Warnings and errors the status page shows, at most (the journal has them all). */
const RECENT_WARNINGS_MAX = 50

/** The package's version (package.json beside dist/), for health reports. */
const PACKAGE_VERSION = ((): string => {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
})()

/** How often the journal checks whether each log's sync is connected. */
const SYNC_WATCH_MS = 1000

export interface Daemon {
  readonly config: DaemonConfig
  readonly logs: ReadonlyMap<string, ServedLog>
  readonly brokerUrl: string | null
  /** Where Prometheus scrapes this daemon (config metrics), or null. */
  readonly metricsUrl: string | null
  close(): Promise<void>
}

const PRIORITY = { info: '<6>', warning: '<4>', error: '<3>' } as const

export function journalLogger(write: (line: string) => void = (line) => process.stdout.write(line)): Logger {
  return (level, message) => write(`${PRIORITY[level]}${message.replace(/\n/g, ' ')}\n`)
}

function validatorSpecs(paths: readonly string[]): ValidatorSpec[] {
  return paths.map((file) => (file.endsWith('.wasm') ? { wasm: file, name: file } : { module: file, name: file }))
}

/**
 * A log of the configuration that does not exist yet is created only with `init`: a data path
 * without its logs (a mistyped --data, a card not mounted) fails with ConfigError instead of
 * starting a new identity beside the real one.
 */
function checkLogsExist(config: DaemonConfig): void {
  const exists = (file: string): boolean => {
    try {
      return fs.statSync(file, { throwIfNoEntry: false }) !== undefined
    } catch (error) {
      throw accessError(error, path.dirname(file)) // a directory this user may not enter
    }
  }
  const missing = config.logs.filter((name) => !exists(path.join(logDirectory(config, name), 'replica')))
  if (missing.length === 0) return
  if (config.init) {
    try {
      fs.mkdirSync(config.data, { recursive: true })
    } catch (error) {
      throw accessError(error, config.data)
    }
    return
  }
  const flags = missing.length === 1 && missing[0] === 'main' ? '' : missing.map((name) => ` --log ${name}`).join('')
  throw new ConfigError(`no log ${missing.join(', ')} in ${config.data}${fs.existsSync(config.data) ? '' : ' (the directory does not exist)'}: ` +
    `check the data path; to create ${missing.length === 1 ? 'it' : 'them'}, run interlog init --data ${config.data}${flags} (or serve with --init)`)
}

/** A system error of start-up, said plainly: a permission problem names the user and the path. */
function accessError(error: unknown, where: string): LogError {
  const code = error instanceof LogError ? (error.details.cause as NodeJS.ErrnoException | undefined)?.code : (error as NodeJS.ErrnoException).code
  const message = (error as Error).message
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new LogError('IO', `cannot start: ${message}. The daemon runs as ${describeUser()}, which may not read or write ${where}: ` +
      `run it as the user that owns the data directory, or give that user the directory (chown)`, { path: where, cause: error })
  }
  if (error instanceof LogError) return error
  return new LogError('IO', `cannot start: ${message}`, { path: where, cause: error })
}

/** "user NAME (uid N)", or "uid N" where the uid has no name (a container's user). */
function describeUser(): string {
  const uid = process.getuid?.() ?? -1
  try {
    return `user ${os.userInfo().username} (uid ${uid})`
  } catch {
    return `uid ${uid}`
  }
}

export async function serve(config: DaemonConfig, journal: Logger = journalLogger()): Promise<Daemon> {
  // Each kind of message at most JOURNAL_KIND_LINES_MAX lines a minute (daemon/journal.ts); the
  // last warnings and errors kept for the status page (daemon/metrics.ts).
  const limited = new RateLimitedJournal(journal)
  const recentWarnings: { timeMs: number, level: string, message: string }[] = []
  const logger: Logger = (level, message) => {
    if (level !== 'info') {
      recentWarnings.push({ timeMs: Date.now(), level, message })
      if (recentWarnings.length > RECENT_WARNINGS_MAX) recentWarnings.shift()
    }
    limited.log(level, message)
  }
  checkLogsExist(config)
  const logs = new Map<string, ServedLog>()
  let broker: BrokerHandle | null = null
  let server: LocalApiServer | null = null
  let watcher: NodeJS.Timeout | null = null
  let metrics: { close(): Promise<void> } | null = null
  let sparkplug: { close(): Promise<void> } | null = null
  // One summary line a period while anything is wrong (daemon/journal.ts troubleSummary).
  const summary = setInterval(() => {
    limited.roll()
    const line = troubleSummary(logs.values())
    if (line !== null) logger('warning', line)
  }, config.journalSummaryMs)
  summary.unref()
  const closeAll = async (): Promise<void> => {
    clearInterval(summary)
    if (watcher !== null) clearInterval(watcher)
    await metrics?.close().catch(() => undefined)
    await server?.close().catch(() => undefined)
    await sparkplug?.close().catch(() => undefined)
    for (const served of logs.values()) await served.sync?.close().catch(() => undefined)
    for (const served of logs.values()) await served.log.close().catch(() => undefined)
    await broker?.close().catch(() => undefined)
  }
  try {
    const encryption = config.encryptionKeyFile === null ? null : readEncryptionKeys(config.encryptionKeyFile)
    for (const name of config.logs) {
      const log: Log = await openLog(logDirectory(config, name), {
        durability: config.durability,
        storedCompression: config.storedCompression,
        intervalMs: config.intervalMs,
        validators: { append: validatorSpecs(config.validators.append), sync: validatorSpecs(config.validators.sync) },
        onWarning: (warning: LogWarning) => logger('warning', `log ${name}: ${warning.message}`),
        ...(config.trust === null ? {} : { trust: config.trust }),
        encryption,
      })
      logs.set(name, { name, log, sync: undefined, counts: newServedCounts() })
      logger('info', `log ${name} open: replica ${log.replicaId}, ${log.length} events, O_DIRECT ${log.direct}`)
      const security = log.securityStatus()
      logger(security.trust === 'off' ? 'warning' : 'info', `log ${name}: public key ${security.publicKey ?? 'none (unsigned log)'}, trust ${security.trust}` +
        (security.trust === 'keys' ? ` (${security.trustedKeys.length} keys)` : security.trust === 'off' ? ': any broker client can inject events (docs/security.md)'
          : security.trust === 'default' ? ': any replica whose signatures verify (restrict with interlog trust add)' : '') +
        `, payload encryption ${security.encrypted ? 'on' : 'off'}`)
      if (security.publicKey === null && security.trust !== 'off') {
        logger('warning', `log ${name} has no identity (unsigned): peers refuse its events over sync unless they run with trust 'off' (docs/security.md)`)
      }
      log.on('equivocation', (e) => logger('error', `log ${name}: origin ${e.origin} (key ${e.publicKey}) signed two histories from position ${e.pos}; quarantined`))
      log.on('quarantine', (q) => logger('warning', `log ${name}: origin ${q.origin} quarantined at ${q.pos} by validator ${q.validator}: ${q.reason}`))
    }
    let brokerUrl: string | null = null
    if (config.broker === 'embedded') {
      broker = await startBroker({ port: config.brokerPort })
      brokerUrl = broker.url
      logger('info', `embedded MQTT broker listening on ${broker.url}`)
    } else if (config.broker !== 'none') {
      brokerUrl = config.broker
    }
    // The socket opens before sync connects: on an offline boot, sensors append at once.
    const listening = new LocalApiServer(logs, config.socket, logger, { limits: { clientStallMs: config.clientStallMs } })
    await listening.listen() // LOCKED while another daemon listens there: its socket file stays
    server = listening
    logger('info', `local API listening on ${config.socket}`)
    let metricsUrl: string | null = null
    if (config.metrics !== null) {
      const where = parseListen(config.metrics.listen)!
      // Loaded only when asked for: prom-client stays out of processes that only use the client.
      const { MetricsServer } = await import('./metrics.js')
      const endpoint = new MetricsServer({ logs, socketClients: () => listening.clientCount, now: () => Date.now(), warnings: () => [...recentWarnings], version: PACKAGE_VERSION, log: (level, message) => logger(level, message) })
      metrics = endpoint
      const address = await endpoint.listen(where.host, where.port, config.metrics.hosts)
      metricsUrl = `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}/metrics`
      logger('info', `metrics on ${metricsUrl}`)
    }
    if (brokerUrl !== null) {
      const read = (file: string | null): Buffer | undefined => (file === null ? undefined : fs.readFileSync(file))
      const journals: [ServedLog, SyncJournal][] = []
      for (const served of logs.values()) {
        const journal = new SyncJournal(logger, served.name, brokerUrl, config.syncSummaryMs)
        served.sync = await startSync(served.log, {
          url: brokerUrl, logName: served.name, topicPrefix: config.topicPrefix, announceIntervalMs: config.announceIntervalMs,
          maxMessageBytes: config.maxMessageBytes, compression: config.compression, logger: journal.log, firstConnectWaitMs: 0,
          health: { intervalMs: Math.max(100, config.healthIntervalMs), summary: () => healthSummary(served) },
          ...(config.clientId === null ? {} : { clientId: config.clientId }),
          ...(config.username === null ? {} : { username: config.username }),
          ...(config.password === null ? {} : { password: config.password }),
          ...(config.ca === null ? {} : { ca: read(config.ca)! }),
          ...(config.cert === null ? {} : { cert: read(config.cert)! }),
          ...(config.key === null ? {} : { key: read(config.key)! }),
        })
        served.sync.on('peer', (peer) => logger('info', `log ${served.name}: peer ${peer.replica} ${peer.online ? 'online' : 'offline'}`))
        logger('info', `log ${served.name}: syncing through ${brokerUrl}`)
        journals.push([served, journal])
      }
      const watch = (): void => {
        for (const [served, journal] of journals) journal.watch(served.sync?.status().connected ?? false)
      }
      watcher = setInterval(watch, SYNC_WATCH_MS)
      watcher.unref()
    }
    if (config.sparkplug !== null) {
      const settings = config.sparkplug
      const served = settings.log !== null ? logs.get(settings.log)! : logs.size === 1 ? [...logs.values()][0]! : logs.get('main')
      if (served === undefined) throw new ConfigError(`'sparkplug.log' must name one of the daemon's logs (${[...logs.keys()].join(', ')}): there is no main`)
      // Loaded only when configured: sparkplug-payload stays out of other daemons.
      const { startSparkplugBridge } = await import('../sparkplug/index.js')
      const bridge = await startSparkplugBridge(served.log, {
        url: settings.broker ?? brokerUrl!, groups: settings.groups, edgeNodes: settings.edgeNodes, primaryHosts: settings.primaryHosts,
        replayRatePerSecond: settings.replayRatePerSecond, hostDeathGraceMs: settings.hostDeathGraceMs,
        logger: (level, message) => logger(level, `log ${served.name}: ${message}`),
        ...(settings.broker === null && config.username !== null ? { username: config.username } : {}),
        ...(settings.broker === null && config.password !== null ? { password: config.password } : {}),
        ...(settings.broker === null && config.ca !== null ? { ca: fs.readFileSync(config.ca) } : {}),
        ...(settings.broker === null && config.cert !== null ? { cert: fs.readFileSync(config.cert) } : {}),
        ...(settings.broker === null && config.key !== null ? { key: fs.readFileSync(config.key) } : {}),
      })
      sparkplug = bridge
      served.sparkplug = bridge
    }
    let closing: Promise<void> | null = null
    return {
      config,
      logs,
      brokerUrl,
      metricsUrl,
      close: () => {
        closing ??= (async () => {
          await closeAll()
          logger('info', 'stopped: logs flushed and closed, locks released')
        })()
        return closing
      },
    }
  } catch (error) {
    await closeAll()
    if (error instanceof ConfigError) throw error
    throw accessError(error, config.data)
  }
}

/**
 * The health summary a log publishes on its health topic (docs/sync.md, "Health"): what an
 * operator of a fleet wants to see of each gateway without logging in to it.
 */
function healthSummary(served: ServedLog): Record<string, unknown> {
  const { log } = served
  const vector = log.versionVector()
  const peers = served.sync?.status().peers ?? []
  let behind = 0
  for (const peer of peers) if (peer.online) behind = Math.max(behind, eventsBeyond(peer.vector, vector))
  const consumers = log.consumers()
  return {
    version: PACKAGE_VERSION, length: log.length, durableLength: log.durableLength, ownEvents: vector[log.replicaId] ?? 0,
    diskUsedBytes: diskUse(log.directory).bytes, diskFreeBytes: diskFree(log.directory)?.bytes ?? null,
    peersOnline: peers.filter((peer) => peer.online).length, behindEvents: behind,
    consumerLagMax: consumers.reduce((max, consumer) => Math.max(max, consumer.lag), 0),
    damagedRanges: log.damage().length, noSpace: log.noSpace, quarantined: log.quarantined().length, forged: log.securityStatus().forged,
  }
}
