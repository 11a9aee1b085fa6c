// Daemon configuration: a JSON file, overridden by INTERLOG_* environment variables, overridden by
// command-line flags. Every key is documented in docs/local-api.md; an unknown key or a value of
// the wrong type fails start-up with a message naming the key and where it came from.

import fs from 'node:fs'
import path from 'node:path'
import type { EncryptionKey, EncryptionOptions } from '../core/index.js'

export interface DaemonConfig {
  /** Data directory: logs live in DATA/logs/NAME. Required. */
  data: string
  /** Unix socket of the local API. Default DATA/interlog.sock. */
  socket: string
  /** 'none' (default), 'embedded' (start the in-process broker on loopback), or a broker URL. */
  broker: string
  /** Port of the embedded broker. Default 1883. */
  brokerPort: number
  /** Names of the logs to serve. Default ['main']. */
  logs: string[]
  durability: 'fsync' | 'interval' | 'none'
  intervalMs: number
  topicPrefix: string
  announceIntervalMs: number
  maxMessageBytes: number
  /** Compression of the sync events messages sent (docs/sync.md). Default 'deflate-raw'. */
  compression: 'deflate-raw' | 'none'
  /** While anything is wrong with a log (sync not connected, a full disk, damage, quarantine, little disk left), one summary line per this period. Default 60000. */
  journalSummaryMs: number
  /** Period of the retained health summary each log publishes on its health topic (docs/sync.md "Health"). Default 60000. */
  healthIntervalMs: number
  /** Prometheus metrics over HTTP (docs/metrics.md): null (default) for none, else where to listen
   *  ('host:port', ':port' or a port: 127.0.0.1 unless a host is named); `hosts`: names besides
   *  IP addresses, localhost and this machine's name that requests may use for it. */
  metrics: { listen: string, hosts: string[] } | null
  /** How the logs store record bodies (core option storedCompression, docs/format.md). Default 'none'. */
  storedCompression: 'deflate-raw' | 'none'
  /** MQTT client id of the daemon's connection (default: a random one); with mosquitto's
   *  use_username_as_clientid, set it to the username (docs/security-broker.md). */
  clientId: string | null
  username: string | null
  password: string | null
  /** Paths of PEM files for mqtts://. */
  ca: string | null
  cert: string | null
  key: string | null
  /** Validator paths (.wasm files, or JavaScript modules). */
  validators: { append: string[], sync: string[] }
  /** Whom logs accept events from: null (each log's trusted-keys file if it has one, else the default
   *  mode: over sync, any replica whose batches are validly signed), 'open' (anyone whose batches are
   *  validly signed, even with a trusted-keys file) or 'off' (unsigned events too). docs/security.md. */
  trust: 'open' | 'off' | null
  /** Path of the log key file for payload encryption (lines "ID HEX64"; mode 0600); null for none. */
  encryptionKeyFile: string | null
  /** Create the logs that do not exist yet. Default false: a data path without its logs (a mistyped
   *  --data, an unmounted card) fails start-up instead of making a new identity. */
  init: boolean
  /** A local client whose frame does not complete (while the daemon reads it), or who leaves its answers unread, this long is cut off. */
  clientStallMs: number
  /** While sync keeps failing the same way, the journal says so once per this period. */
  syncSummaryMs: number
  /** The Sparkplug B store-and-forward bridge (docs/sparkplug.md); null (default) for none. */
  sparkplug: SparkplugConfig | null
}

export interface SparkplugConfig {
  /** The broker the edge nodes and host use; null: the daemon's broker. */
  broker: string | null
  /** The log that records (default: the only log, or main). */
  log: string | null
  groups: string[]
  edgeNodes: string[] | null
  primaryHosts: string[]
  replayRatePerSecond: number
  hostDeathGraceMs: number
}

/** Parses `host:port`, `:port` or a port number; the host defaults to 127.0.0.1. Returns null when it is neither. */
export function parseListen(value: unknown): { host: string, port: number } | null {
  const text = typeof value === 'number' ? `:${value}` : value
  if (typeof text !== 'string') return null
  const match = /^(?:\[([0-9a-fA-F:]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text)
  if (match === null) return null
  const port = Number(match[3])
  if (port > 65535) return null
  return { host: match[1] ?? (match[2] === '' || match[2] === undefined ? '127.0.0.1' : match[2]), port }
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

export const DEFAULT_CONFIG: Omit<DaemonConfig, 'data' | 'socket'> = {
  broker: 'none',
  brokerPort: 1883,
  logs: ['main'],
  durability: 'fsync',
  intervalMs: 200,
  topicPrefix: 'interlog/v1',
  announceIntervalMs: 5000,
  maxMessageBytes: 256 << 10,
  compression: 'deflate-raw',
  storedCompression: 'none',
  metrics: null,
  healthIntervalMs: 60_000,
  journalSummaryMs: 60_000,
  clientId: null,
  username: null,
  password: null,
  ca: null,
  cert: null,
  key: null,
  validators: { append: [], sync: [] },
  trust: null,
  encryptionKeyFile: null,
  init: false,
  clientStallMs: 30_000,
  syncSummaryMs: 5 * 60_000,
  sparkplug: null,
}

type Kind = 'string' | 'port' | 'integer' | 'names' | 'durability' | 'compression' | 'metrics' | 'nullable-string' | 'validators' | 'trust' | 'boolean' | 'sparkplug'

const KEYS: Record<keyof DaemonConfig, Kind> = {
  data: 'string', socket: 'string', broker: 'string', brokerPort: 'port', logs: 'names', durability: 'durability',
  intervalMs: 'integer', topicPrefix: 'string', announceIntervalMs: 'integer', maxMessageBytes: 'integer', compression: 'compression', storedCompression: 'compression', metrics: 'metrics', healthIntervalMs: 'integer', journalSummaryMs: 'integer',
  clientId: 'nullable-string', username: 'nullable-string', password: 'nullable-string', ca: 'nullable-string', cert: 'nullable-string', key: 'nullable-string',
  validators: 'validators', trust: 'trust', encryptionKeyFile: 'nullable-string', init: 'boolean', clientStallMs: 'integer', syncSummaryMs: 'integer', sparkplug: 'sparkplug',
}

const ENV: Partial<Record<keyof DaemonConfig, string>> = {
  data: 'INTERLOG_DATA', socket: 'INTERLOG_SOCKET', broker: 'INTERLOG_BROKER', brokerPort: 'INTERLOG_BROKER_PORT',
  logs: 'INTERLOG_LOGS', durability: 'INTERLOG_DURABILITY', intervalMs: 'INTERLOG_INTERVAL_MS',
  topicPrefix: 'INTERLOG_TOPIC_PREFIX', clientId: 'INTERLOG_CLIENT_ID', username: 'INTERLOG_USERNAME', password: 'INTERLOG_PASSWORD',
  trust: 'INTERLOG_TRUST', encryptionKeyFile: 'INTERLOG_ENCRYPTION_KEY_FILE', init: 'INTERLOG_INIT',
}

const LOG_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}$/

function check(key: keyof DaemonConfig, value: unknown, where: string): unknown {
  const fail = (expected: string): never => {
    throw new ConfigError(`${where}: '${key}' must be ${expected}, got ${JSON.stringify(value)}`)
  }
  switch (KEYS[key]) {
    case 'string':
      return typeof value === 'string' && value.length > 0 ? value : fail('a non-empty string')
    case 'nullable-string':
      return value === null || (typeof value === 'string' && value.length > 0) ? value : fail('a non-empty string or null')
    case 'port':
      return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 65535 ? value : fail('a port number (0 to 65535)')
    case 'integer':
      return Number.isSafeInteger(value) && (value as number) > 0 ? value : fail('a positive integer')
    case 'boolean':
      return typeof value === 'boolean' ? value : fail('true or false')
    case 'trust':
      return value === null || value === 'open' || value === 'off' ? value : fail(`'open', 'off' or null (the trusted-keys file of each log)`)
    case 'durability':
      return value === 'fsync' || value === 'interval' || value === 'none' ? value : fail(`'fsync', 'interval' or 'none'`)
    case 'compression':
      return value === 'deflate-raw' || value === 'none' ? value : fail(`'deflate-raw' or 'none'`)
    case 'metrics': {
      if (value === null) return null
      const shape = `null or { "listen": "host:port", "hosts": ["name", ...] } (":port" or a port listens on 127.0.0.1; hosts optional)`
      if (typeof value !== 'object' || Array.isArray(value) || !Object.keys(value as object).every((k) => k === 'listen' || k === 'hosts')) fail(shape)
      const { listen, hosts } = value as { listen?: unknown, hosts?: unknown }
      if (parseListen(listen) === null) fail(shape)
      if (hosts !== undefined && !(Array.isArray(hosts) && hosts.every((h) => typeof h === 'string' && /^[A-Za-z0-9.-]{1,253}$/.test(h)))) fail(`${shape}: hosts must be a list of host names`)
      return { listen: typeof listen === 'number' ? `:${listen}` : String(listen), hosts: (hosts as string[] | undefined) ?? [] }
    }
    case 'sparkplug': {
      if (value === null) return null
      const shape = '{ "groups": [group ids], "primaryHosts"?: [host ids], "edgeNodes"?: [edge node ids], "broker"?: URL, "log"?: name, "replayRatePerSecond"?: integer, "hostDeathGraceMs"?: integer } or null'
      if (typeof value !== 'object' || Array.isArray(value)) fail(shape)
      const v = value as Record<string, unknown>
      const known = ['groups', 'primaryHosts', 'edgeNodes', 'broker', 'log', 'replayRatePerSecond', 'hostDeathGraceMs']
      for (const k of Object.keys(v)) if (!known.includes(k)) throw new ConfigError(`${where}: unknown key 'sparkplug.${k}' (known: ${known.join(', ')})`)
      const ids = (k: string, list: unknown, optional: boolean): string[] | null => {
        if (list === undefined && optional) return null
        if (!Array.isArray(list) || (!optional && list.length === 0) || !list.every((id) => typeof id === 'string' && id.length > 0 && !/[/+#]/.test(id))) {
          throw new ConfigError(`${where}: 'sparkplug.${k}' must be a ${optional ? '' : 'non-empty '}list of Sparkplug ids (no / + #)`)
        }
        return list as string[]
      }
      const integer = (k: string, min: number, max: number, otherwise: number): number => {
        const n = v[k]
        if (n === undefined) return otherwise
        if (!Number.isSafeInteger(n) || (n as number) < min || (n as number) > max) throw new ConfigError(`${where}: 'sparkplug.${k}' must be an integer from ${min} to ${max}`)
        return n as number
      }
      if (v['broker'] !== undefined && (typeof v['broker'] !== 'string' || !/^(mqtts?|tcp|ssl|wss?):\/\//.test(v['broker']))) throw new ConfigError(`${where}: 'sparkplug.broker' must be an mqtt:// or mqtts:// URL`)
      if (v['log'] !== undefined && (typeof v['log'] !== 'string' || !LOG_NAME.test(v['log']))) throw new ConfigError(`${where}: 'sparkplug.log' must be a log name`)
      return {
        broker: (v['broker'] as string | undefined) ?? null,
        log: (v['log'] as string | undefined) ?? null,
        groups: ids('groups', v['groups'], false)!,
        edgeNodes: ids('edgeNodes', v['edgeNodes'], true),
        primaryHosts: ids('primaryHosts', v['primaryHosts'], true) ?? [],
        replayRatePerSecond: integer('replayRatePerSecond', 1, 1_000_000, 500),
        hostDeathGraceMs: integer('hostDeathGraceMs', 0, 3_600_000, 90_000),
      }
    }
    case 'names':
      return Array.isArray(value) && value.length > 0 && value.every((n) => typeof n === 'string' && LOG_NAME.test(n)) && new Set(value).size === value.length
        ? value : fail('a non-empty list of distinct log names (A-Z a-z 0-9 _ . -)')
    case 'validators': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('{ "append": [paths], "sync": [paths] }')
      const v = value as Record<string, unknown>
      for (const k of Object.keys(v)) if (k !== 'append' && k !== 'sync') throw new ConfigError(`${where}: unknown key 'validators.${k}' (known: append, sync)`)
      for (const k of ['append', 'sync']) {
        if (v[k] !== undefined && !(Array.isArray(v[k]) && (v[k] as unknown[]).every((p) => typeof p === 'string'))) {
          throw new ConfigError(`${where}: 'validators.${k}' must be a list of paths`)
        }
      }
      return { append: (v['append'] as string[] | undefined) ?? [], sync: (v['sync'] as string[] | undefined) ?? [] }
    }
  }
}

function fromEnv(key: keyof DaemonConfig, text: string): unknown {
  switch (KEYS[key]) {
    case 'port':
    case 'integer':
      return /^\d+$/.test(text) ? Number(text) : text
    case 'names':
      return text.split(',').map((n) => n.trim()).filter((n) => n.length > 0)
    case 'boolean':
      return text === 'true' || text === '1' ? true : text === 'false' || text === '0' ? false : text
    default:
      return text
  }
}

/** Builds the configuration: defaults < file < environment < flags. */
export function loadConfig(input: { file?: string | undefined, env?: NodeJS.ProcessEnv, flags?: Partial<Record<keyof DaemonConfig, unknown>> }): DaemonConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG, validators: { append: [], sync: [] } }
  if (input.file !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(fs.readFileSync(input.file, 'utf8'))
    } catch (error) {
      throw new ConfigError(`config file ${input.file}: ${(error as Error).message}`)
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`config file ${input.file}: must be a JSON object`)
    for (const [key, value] of Object.entries(parsed)) {
      if (!(key in KEYS)) throw new ConfigError(`config file ${input.file}: unknown key '${key}' (known: ${Object.keys(KEYS).join(', ')})`)
      merged[key] = check(key as keyof DaemonConfig, value, `config file ${input.file}`)
    }
  }
  const env = input.env ?? {}
  for (const [key, name] of Object.entries(ENV) as [keyof DaemonConfig, string][]) {
    const text = env[name]
    if (text !== undefined && text !== '') merged[key] = check(key, fromEnv(key, text), `environment ${name}`)
  }
  for (const [key, value] of Object.entries(input.flags ?? {})) {
    if (value === undefined) continue
    if (!(key in KEYS)) throw new ConfigError(`unknown setting '${key}'`)
    merged[key] = check(key as keyof DaemonConfig, value, `flag --${key}`)
  }
  if (typeof merged['data'] !== 'string') throw new ConfigError(`'data' is required: --data DIR, INTERLOG_DATA, or "data" in the config file`)
  merged['data'] = path.resolve(merged['data'])
  merged['socket'] = path.resolve((merged['socket'] as string | undefined) ?? path.join(merged['data'] as string, 'interlog.sock'))
  const broker = merged['broker'] as string
  if (broker !== 'none' && broker !== 'embedded' && !/^(mqtts?|tcp|ssl|wss?):\/\//.test(broker)) {
    throw new ConfigError(`'broker' must be 'none', 'embedded' or an mqtt:// or mqtts:// URL, got ${JSON.stringify(broker)}`)
  }
  const sparkplug = merged['sparkplug'] as SparkplugConfig | null
  if (sparkplug !== null) {
    if (sparkplug.broker === null && broker === 'none') throw new ConfigError(`'sparkplug' needs a broker: 'sparkplug.broker', or the daemon's 'broker'`)
    const logs = merged['logs'] as string[]
    if (sparkplug.log !== null && !logs.includes(sparkplug.log)) throw new ConfigError(`'sparkplug.log' is ${sparkplug.log}, not one of the daemon's logs (${logs.join(', ')})`)
  }
  return merged as unknown as DaemonConfig
}

export function logDirectory(config: Pick<DaemonConfig, 'data'>, name: string): string {
  return path.join(config.data, 'logs', name)
}

/**
 * Reads a log key file: one key per line, "ID HEX64" (id a non-negative integer, the key 32 bytes
 * in hex); '#' starts a comment. The largest id encrypts new events; the others still decrypt.
 */
export function readEncryptionKeys(file: string): EncryptionOptions {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (error) {
    throw new ConfigError(`encryptionKeyFile ${file}: ${(error as Error).message}`)
  }
  const keys: EncryptionKey[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*/, '').trim()
    if (line === '') continue
    const match = /^(\d{1,10})\s+([0-9a-fA-F]{64})$/.exec(line)
    if (match === null || Number(match[1]) > 0xffff_ffff) {
      throw new ConfigError(`encryptionKeyFile ${file} line ${i + 1}: expected "ID HEX64" (a key id, then 32 bytes in hex)`)
    }
    const id = Number(match[1])
    if (keys.some((key) => key.id === id)) throw new ConfigError(`encryptionKeyFile ${file} line ${i + 1}: key id ${id} appears twice`)
    keys.push({ id, key: new Uint8Array(Buffer.from(match[2]!, 'hex')) })
  }
  if (keys.length === 0) throw new ConfigError(`encryptionKeyFile ${file} holds no key`)
  return { keys }
}
