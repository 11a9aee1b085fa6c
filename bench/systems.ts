// The systems compared in the append and read scenarios, behind one small interface: InterLog,
// the physical limit (raw writes of the same bytes), better-sqlite3, classic-level and hypercore.
// Each is opened in its own fresh directory with the durability asked for:
//   none     : nothing synced until close
//   interval : InterLog syncs every 200 ms; SQLite WAL synchronous=NORMAL; level and hypercore
//              write without sync (what they offer short of a sync per write)
//   fsync    : every batch durable before it is acknowledged (SQLite synchronous=FULL, level
//              sync: true, raw write + fdatasync per batch). Hypercore has no such switch: it is
//              reported as it is (its default), and the table says so.

import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { openLog, type Log } from '../index.js'

const require = createRequire(import.meta.url)

export type Durability = 'none' | 'interval' | 'fsync'

export interface System {
  name: string
  appendBatch(payloads: Uint8Array[]): Promise<void>
  readAll(): Promise<number>
  close(): Promise<void>
}

export type SystemFactory = (dir: string, durability: Durability) => Promise<System>

export const interlog: SystemFactory = async (dir, durability) => {
  const log: Log = await openLog(dir, { durability })
  return {
    name: 'interlog',
    appendBatch: async (payloads) => {
      if (payloads.length === 1) await log.append(payloads[0]!)
      else await log.appendBatchRange(payloads)
    },
    readAll: async () => {
      let n = 0
      for await (const event of log.read()) n += event.payload.length > -1 ? 1 : 0
      return n
    },
    close: () => log.close(),
  }
}

/** The same bytes written with fs.writeSync in 1 MiB chunks (none/interval: one fdatasync at close; fsync: one per batch). */
export const rawLimit: SystemFactory = async (dir, durability) => {
  fs.mkdirSync(dir, { recursive: true })
  const fd = fs.openSync(path.join(dir, 'raw'), 'w')
  const chunk = Buffer.allocUnsafe(1 << 20)
  let used = 0
  const drain = (): void => {
    if (used > 0) fs.writeSync(fd, chunk, 0, used)
    used = 0
  }
  return {
    name: 'raw write',
    appendBatch: async (payloads) => {
      for (const payload of payloads) {
        if (used + payload.length > chunk.length) drain()
        if (payload.length > chunk.length) fs.writeSync(fd, payload)
        else {
          chunk.set(payload, used)
          used += payload.length
        }
      }
      if (durability === 'fsync') {
        drain()
        fs.fdatasyncSync(fd)
      }
    },
    readAll: async () => 0,
    close: async () => {
      drain()
      fs.fdatasyncSync(fd)
      fs.closeSync(fd)
    },
  }
}

export const sqlite: SystemFactory = async (dir, durability) => {
  const Database = require('better-sqlite3') as new (file: string) => {
    pragma(text: string): unknown
    exec(sql: string): void
    prepare(sql: string): { run(...args: unknown[]): unknown, iterate(): IterableIterator<unknown> }
    transaction<T extends unknown[]>(fn: (...args: T) => void): (...args: T) => void
    close(): void
  }
  fs.mkdirSync(dir, { recursive: true })
  const db = new Database(path.join(dir, 'events.db'))
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${durability === 'fsync' ? 'FULL' : durability === 'interval' ? 'NORMAL' : 'OFF'}`)
  db.exec('CREATE TABLE IF NOT EXISTS events (pos INTEGER PRIMARY KEY, time INTEGER, payload BLOB)')
  const insert = db.prepare('INSERT INTO events (time, payload) VALUES (?, ?)')
  const batch = db.transaction((payloads: Uint8Array[]) => {
    const time = Date.now()
    for (const payload of payloads) insert.run(time, payload)
  })
  return {
    name: `better-sqlite3 (WAL, synchronous=${durability === 'fsync' ? 'FULL' : durability === 'interval' ? 'NORMAL' : 'OFF'})`,
    appendBatch: async (payloads) => batch(payloads),
    readAll: async () => {
      let n = 0
      for (const _ of db.prepare('SELECT pos, time, payload FROM events ORDER BY pos').iterate()) n++
      return n
    },
    close: async () => db.close(),
  }
}

export const level: SystemFactory = async (dir, durability) => {
  const { ClassicLevel } = require('classic-level') as { ClassicLevel: new (dir: string, options: object) => {
    open(): Promise<void>, batch(ops: object[], options: object): Promise<void>, close(): Promise<void>,
    iterator(options?: object): AsyncIterable<unknown> & { close(): Promise<void> }
  } }
  const db = new ClassicLevel(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
  await db.open()
  let pos = 0
  const key = Buffer.alloc(8)
  return {
    name: `classic-level (sync: ${durability === 'fsync'})`,
    appendBatch: async (payloads) => {
      const ops = payloads.map((payload) => {
        key.writeBigUInt64BE(BigInt(pos++))
        return { type: 'put', key: Buffer.from(key), value: payload }
      })
      await db.batch(ops, { sync: durability === 'fsync' })
    },
    readAll: async () => {
      let n = 0
      for await (const _ of db.iterator()) n++
      return n
    },
    close: () => db.close(),
  }
}

export const hypercore: SystemFactory = async (dir) => {
  const Hypercore = require('hypercore') as new (dir: string) => {
    ready(): Promise<void>, append(blocks: Uint8Array[] | Uint8Array): Promise<unknown>, get(index: number): Promise<Uint8Array>,
    length: number, close(): Promise<void>
  }
  const core = new Hypercore(dir)
  await core.ready()
  return {
    name: 'hypercore 11.37.1 (default durability)',
    appendBatch: async (payloads) => {
      await core.append(payloads.length === 1 ? payloads[0]! : payloads)
    },
    readAll: async () => {
      let n = 0
      for (let i = 0; i < core.length; i++) {
        await core.get(i)
        n++
      }
      return n
    },
    close: () => core.close(),
  }
}

export const PEERS: [string, SystemFactory][] = [['better-sqlite3', sqlite], ['classic-level', level], ['hypercore', hypercore]]
