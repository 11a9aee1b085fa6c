// Read model example 2: a document store, the data model of ImSyncing and DimpleDb. Documents
// have an immutable type and a tree of maps and registers. Every change is an event (CBOR):
//   { doc, type, op: 'set', path: ['a', 'b'], value }   set a register (creating maps on the way)
//   { doc, type, op: 'delete', path: ['a', 'b'] }        delete a map field
// Conflicting writes merge last-writer-wins per attribute, by (time, origin): the same events in
// any order give the same documents, so replicas that edited offline converge once synced. The
// first event of a document (lowest stamp) fixes its type; events with another type are ignored.
//
//   node examples/documents.mjs [--json]
// runs the story: two replicas edit the same documents while offline, then sync through an
// embedded broker, and both compute the same documents; the history of one document is shown.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { encode, decode } from 'cbor-x'
import { openLog, startBroker, startSync } from 'interlog'

/** Compares stamps [time, origin]: later time wins, then the larger origin id. */
const later = (a, b) => b === null || (a[0] !== b[0] ? a[0] > b[0] : a[1] > b[1])

/**
 * Applies one change event. The store keeps, per document, the latest write per path (LWW per
 * attribute) and the type of every write: a pure function of the set of events, so any order of
 * the same events gives the same store.
 */
export function apply(store, event) {
  let change
  try {
    change = decode(event.payload)
  } catch {
    return
  }
  if (typeof change?.doc !== 'string' || typeof change.type !== 'string' || !Array.isArray(change.path) || change.path.length === 0) return
  if (change.op !== 'set' && change.op !== 'delete') return
  const stamp = [event.time, event.origin]
  const doc = store[change.doc] ??= { type: change.type, typeStamp: stamp, writes: {} }
  if (later(doc.typeStamp, stamp)) { doc.type = change.type; doc.typeStamp = stamp } // the earliest write fixes the type
  const key = JSON.stringify([change.type, change.path])
  const current = doc.writes[key]
  if (current === undefined || later(stamp, current.stamp)) doc.writes[key] = { stamp, type: change.type, path: change.path, op: change.op, value: change.value }
}

/**
 * The visible value of a document. A key holds a register when its own latest write is later than
 * every write below it; otherwise it is a map of the writes below it made after its own last write.
 */
export function view(doc) {
  const root = { self: null, children: new Map() }
  for (const write of Object.values(doc.writes)) {
    if (write.type !== doc.type) continue // written under another type: ignored
    let node = root
    for (const key of write.path) {
      if (!node.children.has(key)) node.children.set(key, { self: null, children: new Map() })
      node = node.children.get(key)
    }
    node.self = write
  }
  return render(root, null).value ?? {}
}

function render(node, cutoff) {
  const self = node.self !== null && later(node.self.stamp, cutoff) ? node.self : null
  const childCutoff = self === null ? cutoff : self.stamp
  const fields = {}
  let latest = null
  for (const key of [...node.children.keys()].sort()) {
    const child = render(node.children.get(key), childCutoff)
    if (child.latest !== null && later(child.latest, latest)) latest = child.latest
    if (child.present) fields[key] = child.value
  }
  if (self !== null && later(self.stamp, latest)) {
    return self.op === 'delete' ? { present: false, latest: self.stamp } : { present: true, value: self.value, latest: self.stamp }
  }
  if (latest !== null) return { present: true, value: fields, latest }
  return { present: false, latest: self === null ? null : self.stamp }
}

async function documents(log) {
  const store = {}
  for await (const event of log.read()) apply(store, event)
  return Object.fromEntries(Object.keys(store).sort().map((id) => [id, { type: store[id].type, value: view(store[id]) }]))
}

async function history(log, docId) {
  const out = []
  for await (const event of log.read()) {
    const change = decode(event.payload)
    if (change.doc === docId) out.push({ localPos: event.localPos, origin: event.origin.slice(0, 8), time: event.time, op: change.op, path: change.path.join('.'), value: change.value })
  }
  return out
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const json = process.argv.includes('--json')
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'interlog-documents-'))
  const a = await openLog(path.join(root, 'a'))
  const b = await openLog(path.join(root, 'b'))
  const change = (c) => encode(c)
  // Offline: both replicas edit the same truck document; the clock decides conflicts.
  await a.append(change({ doc: 'truck-7', type: 'vehicle', op: 'set', path: ['driver'], value: 'Ana' }))
  await a.append(change({ doc: 'truck-7', type: 'vehicle', op: 'set', path: ['cargo', 'kind'], value: 'bananas' }))
  await a.append(change({ doc: 'truck-7', type: 'vehicle', op: 'set', path: ['cargo', 'tempC'], value: 13 }))
  await new Promise((resolve) => setTimeout(resolve, 5))
  await b.append(change({ doc: 'truck-7', type: 'vehicle', op: 'set', path: ['driver'], value: 'Bruno' }))
  await b.append(change({ doc: 'truck-7', type: 'vehicle', op: 'delete', path: ['cargo', 'tempC'] }))
  await b.append(change({ doc: 'depot-1', type: 'site', op: 'set', path: ['city'], value: 'Rotterdam' }))
  await b.append(change({ doc: 'truck-7', type: 'site', op: 'set', path: ['driver'], value: 'ignored: wrong type' }))
  const offline = { a: await documents(a), b: await documents(b) }
  // Online: sync through an embedded broker until both hold everything.
  const broker = await startBroker()
  const syncA = await startSync(a, { url: broker.url, logName: 'docs', announceIntervalMs: 100 })
  const syncB = await startSync(b, { url: broker.url, logName: 'docs', announceIntervalMs: 100 })
  while (a.length < 7 || b.length < 7) await new Promise((resolve) => setTimeout(resolve, 20))
  const online = { a: await documents(a), b: await documents(b) }
  const converged = JSON.stringify(online.a) === JSON.stringify(online.b)
  const truckHistory = await history(a, 'truck-7')
  await syncA.close(); await syncB.close(); await a.close(); await b.close(); await broker.close()
  fs.rmSync(root, { recursive: true, force: true })
  if (json) {
    console.log(JSON.stringify({ offline, online, converged, history: truckHistory }))
  } else {
    console.log('offline, replica a:', JSON.stringify(offline.a))
    console.log('offline, replica b:', JSON.stringify(offline.b))
    console.log('after sync, replica a:', JSON.stringify(online.a))
    console.log('after sync, replica b:', JSON.stringify(online.b))
    console.log(converged ? 'the replicas converged to the same documents' : 'the replicas DIVERGE')
    console.log('history of truck-7 (replica a, local order):')
    for (const h of truckHistory) console.log(`  #${h.localPos} ${h.origin}… t=${h.time} ${h.op} ${h.path}${h.value === undefined ? '' : ` = ${JSON.stringify(h.value)}`}`)
  }
  process.exitCode = converged ? 0 : 1
}
