// What a CLI command works on: a running daemon's socket, or the data directory opened directly
// (when no daemon holds it). Both expose the same verbs.

import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { isLogError, openLog, type DamagedRange, type Log, type LogEvent, type LogWarning, type VerifyResult, type VersionVector } from '../core/index.js'
import { connect, diskUse, logDirectory, type RemoteLog } from '../daemon/index.js'

export interface Target {
  readonly kind: 'daemon' | 'directory'
  readonly where: string
  readonly replicaId: string
  append(payloads: Uint8Array[]): Promise<{ origin: string, pos: number, count: number }>
  read(options: { from?: number, to?: number, onDamage?: (range: DamagedRange) => void }): AsyncIterable<LogEvent>
  tail(options: { from?: number, signal?: AbortSignal }): AsyncIterable<LogEvent>
  length(): Promise<number>
  versionVector(): Promise<VersionVector>
  /** `onProgress`: segments checked of all (through a daemon, a few times a second). */
  verify(options?: { onProgress?: (checked: number, segments: number) => void }): Promise<VerifyResult>
  /** With `fleet`, the daemon adds the other replicas' health reports (a directory has none to give). */
  status(options?: { fleet?: boolean }): Promise<Record<string, unknown>>
  close(): Promise<void>
}

export interface TargetOptions {
  data?: string | undefined
  socket?: string | undefined
  log?: string | undefined
  /** Opened directly (no daemon), the log is opened read-only: read, status and verify never change it. */
  readOnly?: boolean
}

/**
 * A log directory held by another process (another CLI command, which holds it only while it
 * runs) is waited for this long before the command fails with LOCKED.
 */
export const LOCK_WAIT_MS = 5000

async function listening(socketPath: string): Promise<boolean> {
  if (!fs.existsSync(socketPath)) return false
  return new Promise((resolve) => {
    const probe = net.connect(socketPath, () => { probe.destroy(); resolve(true) })
    probe.once('error', () => resolve(false))
  })
}

export async function openTarget(options: TargetOptions): Promise<Target> {
  // Flags win over the environment: --socket, then --data, then INTERLOG_SOCKET, then INTERLOG_DATA.
  const explicitSocket = options.socket ?? (options.data === undefined ? process.env['INTERLOG_SOCKET'] : undefined)
  const data = options.data ?? process.env['INTERLOG_DATA']
  const socket = explicitSocket ?? (data === undefined ? undefined : path.join(data, 'interlog.sock'))
  if (explicitSocket !== undefined || (socket !== undefined && await listening(socket))) {
    return remoteTarget(await connect(socket!, options.log === undefined ? {} : { log: options.log }), socket!)
  }
  if (data === undefined) throw new UsageError('give --data DIR or --socket PATH (or INTERLOG_DATA / INTERLOG_SOCKET)')
  const directory = logDirectory({ data: path.resolve(data) }, options.log ?? 'main')
  if (!fs.existsSync(directory)) throw new UsageError(`no log at ${directory}: run interlog init --data ${data} first`)
  // Warnings (a torn tail, damage fenced off) go to stderr as plain lines, not as node warnings.
  const onWarning = (warning: LogWarning): void => { process.stderr.write(`${warning.message}\n`) }
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    try {
      return localTarget(await openLog(directory, { readOnly: options.readOnly === true, onWarning }), directory)
    } catch (error) {
      if (!isLogError(error, 'LOCKED') || Date.now() >= deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

/** The log directory a directory target opens (for commands that watch it). */
export function targetDirectory(options: TargetOptions): string | undefined {
  const data = options.data ?? process.env['INTERLOG_DATA']
  return data === undefined ? undefined : logDirectory({ data: path.resolve(data) }, options.log ?? 'main')
}

export class UsageError extends Error {
  override name = 'UsageError'
}

function remoteTarget(client: RemoteLog, where: string): Target {
  return {
    kind: 'daemon', where, replicaId: client.replicaId,
    append: async (payloads) => {
      const range = await client.appendBatchRange(payloads)
      return { origin: range.origin, pos: range.pos, count: range.count }
    },
    read: (options) => client.read(options),
    tail: (options) => client.tail(options),
    length: () => client.length(),
    versionVector: () => client.versionVector(),
    verify: (options) => client.verify(options),
    status: async (options) => ({ ...(await client.status(options)) }),
    close: () => client.close(),
  }
}

function localTarget(log: Log, directory: string): Target {
  return {
    kind: 'directory', where: directory, replicaId: log.replicaId,
    append: async (payloads) => {
      const range = await log.appendBatchRange(payloads)
      return { origin: range.origin, pos: range.pos, count: range.count }
    },
    read: (options) => log.read(options),
    tail: (options) => log.tail(options),
    length: async () => log.length,
    versionVector: async () => log.versionVector(),
    verify: (options) => log.verify(options),
    status: async () => ({
      log: path.basename(directory), replicaId: log.replicaId, length: log.length, durableLength: log.durableLength,
      vector: log.versionVector(), quarantined: log.quarantined(), sync: null, directory, ...diskUse(directory),
      consumers: log.consumers(), security: log.securityStatus(), damage: log.damage(), noSpace: log.noSpace,
    }),
    close: () => log.close(),
  }
}
