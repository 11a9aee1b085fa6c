// Read model example 3: a presence view. Each node's status (online, version vector, lag), built
// from the messages sync already publishes: the retained per-log status of every replica and
// each connection's node status (its Last Will), in the spirit of ImSyncing's presence document
// and crdt_db's ephemeral layer. Nothing is stored in the log: presence is ephemeral.
//
//   node examples/presence.mjs [--json]
// runs three replicas on an embedded broker, shows the view, stops one, and shows it again.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { decode } from 'cbor-x'
import { openLog, startBroker, startSync } from 'interlog'

/** Follows status messages of one log on a broker; view() gives each replica's presence. */
export async function presence(url, logName, prefix = 'interlog/v1') {
  const replicas = new Map()
  const offlineNodes = new Set()
  const client = await mqtt.connectAsync(url, { protocolVersion: 4 })
  client.on('message', (topic, payload) => {
    let message
    try {
      message = decode(payload)
    } catch {
      return
    }
    if (topic.startsWith(`${prefix}/_nodes/`) && message?.k === 'n') {
      if (message.on) offlineNodes.delete(message.n)
      else offlineNodes.add(message.n)
    } else if (topic.startsWith(`${prefix}/${logName}/status/`) && message?.k === 's') {
      replicas.set(message.r, { replica: message.r, node: message.n, online: message.on, vector: message.vv, sinceMs: message.t })
    } else if (topic.startsWith(`${prefix}/${logName}/vector/`) && message?.k === 'v') {
      const known = replicas.get(message.r)
      if (known !== undefined) known.vector = message.vv
    }
  })
  await client.subscribeAsync([`${prefix}/_nodes/+`, `${prefix}/${logName}/status/+`, `${prefix}/${logName}/vector/+`], { qos: 1 })
  return {
    view() {
      const best = {}
      for (const r of replicas.values()) for (const [origin, count] of Object.entries(r.vector)) best[origin] = Math.max(best[origin] ?? 0, count)
      return [...replicas.values()].sort((a, b) => a.replica.localeCompare(b.replica)).map((r) => ({
        replica: r.replica,
        online: r.online && !offlineNodes.has(r.node),
        events: Object.values(r.vector).reduce((sum, n) => sum + n, 0),
        lag: Object.entries(best).reduce((sum, [origin, count]) => sum + count - (r.vector[origin] ?? 0), 0),
      }))
    },
    close: () => client.endAsync(),
  }
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const json = process.argv.includes('--json')
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'interlog-presence-'))
  const broker = await startBroker()
  const nodes = []
  for (const name of ['gateway-a', 'gateway-b', 'cloud']) {
    const log = await openLog(path.join(root, name))
    for (let i = 0; i < (name === 'cloud' ? 0 : 5); i++) await log.append(new TextEncoder().encode(`${name} ${i}`))
    // clientId gives each replica its own connection (and Last Will), as separate processes would have.
    nodes.push({ name, log, sync: await startSync(log, { url: broker.url, logName: 'fleet', clientId: name, announceIntervalMs: 100 }) })
  }
  const watcher = await presence(broker.url, 'fleet')
  const settle = () => new Promise((resolve) => setTimeout(resolve, 600))
  await settle()
  const names = Object.fromEntries(nodes.map((n) => [n.log.replicaId, n.name]))
  const show = (title) => {
    const rows = watcher.view().map((row) => ({ name: names[row.replica], ...row }))
    if (!json) {
      console.log(title)
      for (const row of rows) console.log(`  ${row.name.padEnd(10)} ${row.online ? 'online ' : 'offline'} events ${row.events} lag ${row.lag}`)
    }
    return rows
  }
  const before = show('all three online, synced:')
  await nodes[0].sync.close() // gateway-a drives out of coverage
  await nodes[1].log.append(new TextEncoder().encode('gateway-b while a is away'))
  await settle()
  const after = show('gateway-a offline, gateway-b appended one more:')
  if (json) console.log(JSON.stringify({ before, after }))
  await watcher.close()
  for (const node of nodes) { await node.sync.close(); await node.log.close() }
  await broker.close()
  fs.rmSync(root, { recursive: true, force: true })
}
