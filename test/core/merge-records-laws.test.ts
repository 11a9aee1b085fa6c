// A law of the record path: merging records (mergeRecords, sync v2's receiver) ends every step in
// the same state with the same result as merging the same events one by one (merge, the general
// path), whatever the delivery: messages cut anywhere, reordered, duplicated, dropped and sent
// again, some with a byte flipped, straight from the origin or relayed by a replica that stored
// them in smaller records and more segments.

import t from 'tap'
import { openLog, type Log, type MergeResult, type RemoteRecord } from '../../index.js'
import { eventsOfRecords } from '../../core/merge-records.js'
import { collect, prng, tempDir } from '../helpers/temp.js'

const SEED = Number(process.env.INTERLOG_SEED ?? 20261205)

/** Records of `origin` held by `log`, in messages of 1 to 4 records; the origin signs the last link of each (as sync does). */
async function messages(log: Log, origin: string, random: () => number): Promise<RemoteRecord[][]> {
  const stored = (await collect(log.recordsSince({}))).filter((record) => record.origin === origin)
  const out: RemoteRecord[][] = []
  for (let i = 0; i < stored.length;) {
    const size = 1 + Math.floor(random() * 4)
    const chunk = stored.slice(i, i + size)
    i += chunk.length
    const records: RemoteRecord[] = chunk.map((record) => ({ origin: record.origin, pos: record.pos, count: record.count, body: record.body, seal: record.seal }))
    const last = chunk.length - 1
    if (origin === log.replicaId && chunk[last]!.seal !== undefined) records[last]!.seal = await log.signSeal(chunk[last] as { origin: string, seal: Uint8Array })
    out.push(records)
  }
  return out
}

/** A delivery: every message at least once, some twice, some altered copies first, a share `shuffle` of them moved. */
function delivery(all: RemoteRecord[][], random: () => number, shuffle: number): RemoteRecord[][] {
  const out: RemoteRecord[][] = []
  for (const message of all) {
    if (random() < 0.15) {
      const altered = message.map((record) => ({ ...record, body: Buffer.from(record.body) }))
      const victim = altered[Math.floor(random() * altered.length)]!
      victim.body[Math.floor(random() * victim.body.length)]! ^= 1 << Math.floor(random() * 8)
      out.push(altered)
    }
    out.push(message)
    if (random() < 0.2) out.push(message)
  }
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    if (random() < shuffle) [out[i], out[j]] = [out[j]!, out[i]!]
  }
  for (const message of all) out.push(message) // what sync sends again after a later announcement
  return out
}

function summary(result: MergeResult): unknown {
  return { added: result.added, duplicates: result.duplicates, waiting: result.waiting, dropped: result.dropped, quarantined: result.quarantined, forged: result.forged ?? 0, rejected: result.rejected.length }
}

async function stored(log: Log, origin: string): Promise<string[]> {
  return (await collect(log.read({ from: 0 }))).filter((event) => event.origin === origin).map((event) => `${event.pos}:${event.time}:${Buffer.from(event.payload).toString('hex')}`)
}

t.test('mergeRecords and merge agree at every step, from the origin and through a relay', async (t) => {
  for (let round = 0; round < 8; round++) {
    const random = prng(SEED + round)
    const shuffle = round % 2 === 0 ? 0.5 : 0.05 // mostly in order: sync's common case
    const origin = await openLog(tempDir(t), { durability: 'interval', now: () => 1_700_000_000_000 + Math.floor(random() * 1e6) })
    const byRecords = await openLog(tempDir(t), { durability: 'interval', trust: 'open', segmentBytes: 64 << 10, maxEventBytes: 4096 })
    const byEvents = await openLog(tempDir(t), { durability: 'interval', trust: 'open' })
    const relayed = await openLog(tempDir(t), { durability: 'interval', trust: 'open' })
    const relayedEvents = await openLog(tempDir(t), { durability: 'interval', trust: 'open' })
    const logs = [origin, byRecords, byEvents, relayed, relayedEvents]
    try {
      const batches = 5 + Math.floor(random() * 20)
      for (let b = 0; b < batches; b++) {
        const count = 1 + Math.floor(random() * 60)
        await origin.appendBatch(Array.from({ length: count }, () => new Uint8Array(Math.floor(random() * 300)).map(() => Math.floor(random() * 256))))
      }
      await origin.flush()
      const id = origin.replicaId
      let steps = 0
      for (const message of delivery(await messages(origin, id, random), random, shuffle)) {
        const fast = await byRecords.mergeRecords(message, { remote: true, sealed: true })
        const slow = await byEvents.merge(eventsOfRecords(message, 0), { remote: true, sealed: true })
        t.same(summary(fast), summary(slow), `round ${round} step ${steps}: the same result`)
        t.same(byRecords.versionVector(), byEvents.versionVector(), `round ${round} step ${steps}: the same vector`)
        steps++
      }
      t.equal(byRecords.versionVector()[id], origin.length, `round ${round}: everything arrived (${steps} messages)`)
      t.same(await stored(byRecords, id), await stored(origin, id), `round ${round}: the same events as the origin`)
      // The relay stored them in records of at most 16 KiB (a quarter of its 64 KiB segments); its links and seals are the origin's.
      await byRecords.flush()
      for (const message of delivery(await messages(byRecords, id, random), random, shuffle)) {
        const fast = await relayed.mergeRecords(message, { remote: true, sealed: true })
        const slow = await relayedEvents.merge(eventsOfRecords(message, 0), { remote: true, sealed: true })
        t.same(summary(fast), summary(slow), `round ${round}: relayed, the same result`)
      }
      t.same(relayed.versionVector(), relayedEvents.versionVector())
      t.same(await stored(relayed, id), await stored(origin, id), `round ${round}: relayed, the same events`)
      for (const log of [byRecords, relayed]) t.ok((await log.verify()).ok, 'verify passes')
    } finally {
      for (const log of logs) await log.close()
    }
  }
})
