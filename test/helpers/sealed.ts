// What sync sends for a log: its events beyond a version vector as stored (links, seals,
// ciphertext), with the last link of the log's own events signed, as each sync message is.

import type { Log, LogEvent, RemoteEvent, RemoteRecord } from '../../index.js'
import { collect } from './temp.js'

export function remoteOf(events: readonly LogEvent[]): RemoteEvent[] {
  return events.map((e) => ({ origin: e.origin, pos: e.pos, time: e.time, payload: e.payload, ...(e.seal === undefined ? {} : { seal: e.seal }) }))
}

/** The events as stored, with the last own link signed (what one sync message would carry). */
export async function signedSince(log: Log, vector = {}): Promise<RemoteEvent[]> {
  return signLast(log, remoteOf(await collect(log.eventsSince(vector, { raw: true }))))
}

/** Signs the last own link of `events` (in place) and returns them. */
export async function signLast(log: Log, events: RemoteEvent[]): Promise<RemoteEvent[]> {
  for (let i = events.length - 1; i >= 0; i--) {
    const event = events[i]!
    if (event.seal === undefined || event.origin !== log.replicaId) continue
    event.seal = await log.signSeal({ origin: event.origin, seal: event.seal })
    break
  }
  return events
}

/** The records as stored beyond `vector`, with the last own link signed (what one sync v2 message would carry). */
export async function signedRecordsSince(log: Log, vector = {}): Promise<RemoteRecord[]> {
  const records: RemoteRecord[] = (await collect(log.recordsSince(vector)))
    .map((record) => ({ origin: record.origin, pos: record.pos, count: record.count, body: record.body, ...(record.seal === undefined ? {} : { seal: record.seal }) }))
  for (let i = records.length - 1; i >= 0; i--) {
    const record = records[i]!
    if (record.seal === undefined || record.origin !== log.replicaId) continue
    record.seal = await log.signSeal({ origin: record.origin, seal: record.seal })
    break
  }
  return records
}
