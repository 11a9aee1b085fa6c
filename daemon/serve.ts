// The daemon: opens its logs (single writer), serves them on the local socket, runs sync for each
// when a broker is configured (starting the embedded one with 'embedded'), and shuts down in
// order: stop accepting, finish requests, stop sync, flush and close the logs, release the locks.
// Log lines go to stdout, one per event, with systemd priority prefixes (<6> info, <4> warning,
// <3> error) that journald understands.

import fs from 'node:fs'
import { openLog, LogError, type Log, type LogWarning } from '../core/index.js'
import { startBroker, startSync, type BrokerHandle } from '../sync/index.js'
import type { ValidatorSpec } from '../validators/index.js'
import { logDirectory, readEncryptionKeys, type DaemonConfig } from './config.js'
import { LocalApiServer, type Logger, type ServedLog } from './server.js'

export interface Daemon {
  readonly config: DaemonConfig
  readonly logs: ReadonlyMap<string, ServedLog>
  readonly brokerUrl: string | null
  close(): Promise<void>
}

const PRIORITY = { info: '<6>', warning: '<4>', error: '<3>' } as const

export function journalLogger(write: (line: string) => void = (line) => process.stdout.write(line)): Logger {
  return (level, message) => write(`${PRIORITY[level]}${message.replace(/\n/g, ' ')}\n`)
}

function validatorSpecs(paths: readonly string[]): ValidatorSpec[] {
  return paths.map((file) => (file.endsWith('.wasm') ? { wasm: file, name: file } : { module: file, name: file }))
}

export async function serve(config: DaemonConfig, logger: Logger = journalLogger()): Promise<Daemon> {
  fs.mkdirSync(config.data, { recursive: true })
  const logs = new Map<string, ServedLog>()
  let broker: BrokerHandle | null = null
  const closeAll = async (): Promise<void> => {
    for (const served of logs.values()) await served.sync?.close().catch(() => undefined)
    for (const served of logs.values()) await served.log.close().catch(() => undefined)
    await broker?.close().catch(() => undefined)
  }
  try {
    const encryption = config.encryptionKeyFile === null ? null : readEncryptionKeys(config.encryptionKeyFile)
    for (const name of config.logs) {
      const log: Log = await openLog(logDirectory(config, name), {
        durability: config.durability,
        intervalMs: config.intervalMs,
        validators: { append: validatorSpecs(config.validators.append), sync: validatorSpecs(config.validators.sync) },
        onWarning: (warning: LogWarning) => logger('warning', `log ${name}: ${warning.message}`),
        ...(config.trust === null ? {} : { trust: config.trust }),
        encryption,
      })
      logs.set(name, { name, log, sync: undefined })
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
    if (brokerUrl !== null) {
      const read = (file: string | null): Buffer | undefined => (file === null ? undefined : fs.readFileSync(file))
      for (const served of logs.values()) {
        served.sync = await startSync(served.log, {
          url: brokerUrl, logName: served.name, topicPrefix: config.topicPrefix, announceIntervalMs: config.announceIntervalMs,
          maxMessageBytes: config.maxMessageBytes, logger,
          ...(config.clientId === null ? {} : { clientId: config.clientId }),
          ...(config.username === null ? {} : { username: config.username }),
          ...(config.password === null ? {} : { password: config.password }),
          ...(config.ca === null ? {} : { ca: read(config.ca)! }),
          ...(config.cert === null ? {} : { cert: read(config.cert)! }),
          ...(config.key === null ? {} : { key: read(config.key)! }),
        })
        served.sync.on('peer', (peer) => logger('info', `log ${served.name}: peer ${peer.replica} ${peer.online ? 'online' : 'offline'}`))
        logger('info', `log ${served.name}: syncing through ${brokerUrl} (${served.sync.status().connected ? 'connected' : 'not connected yet, retrying'})`)
      }
    }
    const server = new LocalApiServer(logs, config.socket, logger)
    await server.listen()
    logger('info', `local API listening on ${config.socket}`)
    let closing: Promise<void> | null = null
    return {
      config,
      logs,
      brokerUrl,
      close: () => {
        closing ??= (async () => {
          await server.close()
          await closeAll()
          logger('info', 'stopped: logs flushed and closed, locks released')
        })()
        return closing
      },
    }
  } catch (error) {
    await closeAll()
    if (error instanceof LogError) throw error
    throw new LogError('IO', `cannot start: ${(error as Error).message}`, { cause: error })
  }
}
