// One origin, one history: a log that lost part of its own history (a truncated segment, a zeroed
// tail, a restored backup) never appends at positions a peer may hold. It moves to a new origin
// when open finds a reason, takes its history back from a peer when it appended nothing since,
// or moves the events it appended since to a new origin, in place, when it did.

import t, { type Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { openLog, type Log, type LogWarning } from '../../index.js'
import { remoteOf } from '../helpers/sealed.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

const OPTIONS = { segmentBytes: 1 << 20, cacheBytes: 256 << 10, maxEventBytes: 4096 }
const EVENTS = 600

/** Gives `to` what `from` holds beyond `to`'s vector, as sync would: messages of 50, the last own link of each signed. */
async function replicate(from: Log, to: Log, origin?: string): Promise<void> {
  const vector = to.versionVector()
  const events = remoteOf(await collect(from.eventsSince(vector, { raw: true }))).filter((e) => origin === undefined || e.origin === origin)
  for (let i = 0; i < events.length; i += 50) {
    const message = events.slice(i, i + 50)
    for (let j = message.length - 1; j >= 0; j--) {
      if (message[j]!.seal === undefined) continue
      message[j]!.seal = await from.signSeal({ origin: message[j]!.origin, seal: message[j]!.seal! })
      break
    }
    await to.merge(message, { remote: true })
  }
}

async function withHistory(t: Test, options = {}): Promise<{ dirA: string, b: Log, origin: string }> {
  const dirA = tempDir(t)
  const a = await openLog(dirA, { ...OPTIONS, ...options })
  for (let i = 0; i < EVENTS; i += 20) await a.appendBatch(Array.from({ length: 20 }, (_, j) => payload(`event ${i + j} `.padEnd(100, '.'))))
  const b = await openLog(tempDir(t), OPTIONS)
  t.teardown(() => b.close().catch(() => undefined))
  await replicate(a, b)
  const origin = a.replicaId
  await a.close()
  return { dirA, b, origin }
}

const texts = async (log: Log, origin: string): Promise<string[]> => (await collect(log.read())).filter((e) => e.origin === origin).map((e) => text(e.payload))
const expected = Array.from({ length: EVENTS }, (_, i) => `event ${i} `.padEnd(100, '.'))

/** `a` takes the old origin back from `b`, and `b` ends with one history of it and `newEvents` of `a`'s new origin. */
async function oneHistoryAfterSync(t: Test, a: Log, b: Log, origin: string, newEvents: number): Promise<void> {
  await replicate(b, a, origin)
  t.equal(a.versionVector()[origin], EVENTS, 'the old origin comes back from the peer, checked against its key and chain')
  t.same(await texts(a, origin), expected)
  await replicate(a, b)
  t.equal(b.versionVector()[origin], EVENTS, 'the peer keeps one history of the old origin')
  t.equal(b.versionVector()[a.replicaId], newEvents, 'and takes the events of the new origin')
  t.same(b.securityStatus().equivocations, [])
}

t.test('a log whose last segment was truncated moves to a new origin at open, and takes its old history back as any origin', async (t) => {
  const { dirA, b, origin } = await withHistory(t)
  fs.truncateSync(path.join(dirA, '000000000000.seg'), 4096 + 20_000)
  const warnings: LogWarning[] = []
  const a = await openLog(dirA, { ...OPTIONS, onWarning: (w) => { warnings.push(w) } })
  t.teardown(() => a.close().catch(() => undefined))
  t.not(a.replicaId, origin, 'it appends under a new origin')
  t.ok(warnings.some((w) => w.code === 'ORIGIN_MOVED' && /truncated/.test(w.message)), 'and says why')
  t.same(a.originsRetired().map((r) => r.replicaId), [origin])
  const kept = a.versionVector()[origin]!
  t.ok(kept > 0 && kept < EVENTS, `it kept ${kept} events of the old origin`)
  const appended = await a.append(payload('after the loss'))
  t.same(appended, { origin: a.replicaId, pos: 0 }, 'a new append is position 0 of the new origin, not a position of the old one')
  await oneHistoryAfterSync(t, a, b, origin, 1)
  await a.close()
  const again = await openLog(dirA, OPTIONS)
  t.equal(again.replicaId, a.replicaId, 'the move holds across a reopen')
  t.ok((await again.verify()).ok)
  await again.close()
})

t.test('a log that lost its tail without a trace and appended nothing takes its history back before appending', async (t) => {
  const { dirA, b, origin } = await withHistory(t)
  // The last pages zeroed: open cannot tell this from a torn tail, and cuts it.
  const file = path.join(dirA, '000000000000.seg')
  const bytes = fs.readFileSync(file)
  const end = bytes.length - [...bytes].reverse().findIndex((byte) => byte !== 0)
  bytes.fill(0, end - 8192, end)
  fs.writeFileSync(file, bytes)
  const a = await openLog(dirA, { ...OPTIONS, onWarning: () => undefined })
  t.teardown(() => a.close().catch(() => undefined))
  t.equal(a.replicaId, origin, 'open sees no reason to move')
  const kept = a.versionVector()[origin]!
  t.ok(kept < EVENTS, `it holds ${kept} of its ${EVENTS} events`)
  t.equal(await a.ownOriginSeen(EVENTS), 'restoring', 'a peer holding more: it takes them back')
  await replicate(b, a, origin)
  t.equal(a.versionVector()[origin], EVENTS, 'its own events come back through merge')
  t.same(await a.append(payload('next')), { origin, pos: EVENTS }, 'and it appends after them')
  t.equal(await a.ownOriginSeen(EVENTS), 'ok')
  t.ok((await a.verify()).ok)
})

t.test('a log that lost its tail without a trace and appended since moves those events to a new origin, in place', async (t) => {
  const { dirA, b, origin } = await withHistory(t, { encryption: { keys: [{ id: 1, key: new Uint8Array(32).fill(9) }] } })
  const file = path.join(dirA, '000000000000.seg')
  const bytes = fs.readFileSync(file)
  const end = bytes.length - [...bytes].reverse().findIndex((byte) => byte !== 0)
  bytes.fill(0, end - 8192, end)
  fs.writeFileSync(file, bytes)
  const encryption = { keys: [{ id: 1, key: new Uint8Array(32).fill(9) }] }
  const a = await openLog(dirA, { ...OPTIONS, encryption, onWarning: () => undefined })
  t.teardown(() => a.close().catch(() => undefined))
  const kept = a.versionVector()[origin]!
  // Offline: it appends before it hears of the peer.
  for (let i = 0; i < 5; i++) await a.appendBatch([payload(`offline ${i}a`), payload(`offline ${i}b`)])
  t.equal(a.versionVector()[origin], kept + 10, 'appended at positions the peer holds (not published yet)')
  const moved: unknown[] = []
  a.on('originMoved', (m) => moved.push(m))
  t.equal(await a.ownOriginSeen(EVENTS), 'moved', 'a peer holding more: the events appended since open move')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(moved.length, 1, "an 'originMoved' event")
  t.not(a.replicaId, origin)
  t.same(a.versionVector(), { [origin]: kept, [a.replicaId]: 10 }, 'the old origin is back at what it held at open; the new one holds the ten')
  t.same(await texts(a, a.replicaId), Array.from({ length: 5 }, (_, i) => [`offline ${i}a`, `offline ${i}b`]).flat(), 'the moved events read back, decrypted')
  await oneHistoryAfterSync(t, a, b, origin, 10)
  t.ok((await a.verify()).ok, 'verify checks the new chain')
  await a.close()
  const again = await openLog(dirA, { ...OPTIONS, encryption })
  t.same(again.versionVector(), { [origin]: EVENTS, [a.replicaId]: 10 }, 'and all of it holds across a reopen')
  await again.close()
})

t.test('a copy of a log directory that appends a second history is caught by a peer, however old the positions it reuses', async (t) => {
  const dirA = tempDir(t)
  const a = await openLog(dirA, OPTIONS)
  for (let i = 0; i < 100; i++) await a.append(payload(`first ${i}`))
  await a.close()
  const dirCopy = path.join(tempDir(t), 'copy')
  fs.cpSync(dirA, dirCopy, { recursive: true })
  const original = await openLog(dirA, OPTIONS)
  for (let i = 100; i < 400; i++) await original.append(payload(`first ${i}`))
  const dirB = tempDir(t)
  let b = await openLog(dirB, OPTIONS)
  await replicate(original, b)
  await original.close()
  await b.close()
  // The peer restarts: it remembers no recent batch of the origin.
  b = await openLog(dirB, OPTIONS)
  t.teardown(() => b.close().catch(() => undefined))
  const copy = await openLog(dirCopy, OPTIONS)
  t.teardown(() => copy.close().catch(() => undefined))
  t.equal(copy.replicaId, original.replicaId, 'the copy holds the same key')
  for (let i = 100; i < 150; i++) await copy.append(payload(`second ${i}`))
  const seen: unknown[] = []
  b.on('equivocation', (e) => seen.push(e))
  const events = remoteOf(await collect(copy.eventsSince({ [copy.replicaId]: 100 }, { raw: true })))
  for (let i = 0; i < events.length; i += 10) {
    const message = events.slice(i, i + 10)
    message[message.length - 1]!.seal = await copy.signSeal({ origin: copy.replicaId, seal: message[message.length - 1]!.seal! })
    await b.merge(message, { remote: true })
  }
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(b.securityStatus().equivocations.length, 1, 'the peer reports the second history')
  t.equal(seen.length, 1, "with an 'equivocation' event")
  t.match(b.quarantined()[0], { origin: original.replicaId, validator: 'equivocation' }, 'and quarantines the origin')
  t.equal(b.versionVector()[original.replicaId], 400, 'and keeps the history it holds')
})
