// interlog demo: the README's main job on a fresh machine. Starts the embedded broker and N nodes
// (daemons) in a temporary directory, sensor processes that append through each node's socket,
// waits for replication to converge, then computes a read model in user code (per-sensor count,
// min, max, mean) from every node and shows that they agree.

import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { decode } from 'cbor-x'
import { connect, type RemoteLog } from '../daemon/index.js'
import { startBroker } from '../sync/index.js'
import type { Values } from './commands.js'
import { UsageError } from './target.js'

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url))
const SENSOR = fileURLToPath(new URL('./demo-sensor.js', import.meta.url))
/** Longest wait for replication to converge. */
const CONVERGE_TIMEOUT_MS = 60_000

interface Stats { count: number, min: number, max: number, sum: number, unit: string }

async function waitForSocket(socket: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const started = Date.now()
  for (;;) {
    if (child.exitCode !== null) throw new Error(`node exited with ${child.exitCode} before listening`)
    if (fs.existsSync(socket)) return
    if (Date.now() - started > timeoutMs) throw new Error(`no socket at ${socket} after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function exited(child: ChildProcess): Promise<number> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1)))
}

async function readModel(client: RemoteLog): Promise<Record<string, Stats>> {
  const stats: Record<string, Stats> = {}
  for await (const event of client.read()) {
    const reading = decode(event.payload) as { sensor: string, value: number, unit: string }
    const entry = stats[reading.sensor] ??= { count: 0, min: Infinity, max: -Infinity, sum: 0, unit: reading.unit }
    entry.count++
    entry.min = Math.min(entry.min, reading.value)
    entry.max = Math.max(entry.max, reading.value)
    entry.sum += reading.value
  }
  return stats
}

export async function demo(values: Values): Promise<number> {
  const nodeCount = values['nodes'] === undefined ? 3 : Number(values['nodes'])
  const perSensor = values['events'] === undefined ? 200 : Number(values['events'])
  if (!Number.isInteger(nodeCount) || nodeCount < 2 || nodeCount > 8) throw new UsageError('--nodes must be 2 to 8')
  if (!Number.isInteger(perSensor) || perSensor < 1 || perSensor > 100_000) throw new UsageError('--events must be 1 to 100000')
  const json = values['json'] === true
  const tty = process.stdout.isTTY === true && !json
  // Progress (say) only on a terminal, overwritten in place; what is done (done) always, but with --json.
  const say = (line: string): void => {
    if (tty) process.stdout.write(`\r\x1b[2K${line}`)
  }
  const done = (line: string): void => {
    if (!json) process.stdout.write(tty ? `\r\x1b[2K${line}\n` : `${line}\n`)
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'interlog-demo-'))
  const broker = await startBroker({ port: 0 })
  const nodes: { name: string, socket: string, child: ChildProcess }[] = []
  const clients: RemoteLog[] = []
  try {
    done(`embedded MQTT broker on ${broker.url}; working in ${root}`)
    for (let i = 0; i < nodeCount; i++) {
      const name = `node${i + 1}`
      const data = path.join(root, name)
      const child = spawn(process.execPath, [MAIN, 'serve', '--init', '--data', data, '--broker', broker.url, '--durability', 'interval'],
        { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, INTERLOG_CONFIG: '' } })
      nodes.push({ name, socket: path.join(data, 'interlog.sock'), child })
    }
    for (const node of nodes) {
      say(`starting ${node.name}…`)
      await waitForSocket(node.socket, node.child, 15_000)
    }
    done(`${nodeCount} nodes started`)
    const sensors: ChildProcess[] = []
    nodes.forEach((node, i) => {
      for (const [kind, unit] of [['temp', 'C'], ['humidity', '%RH']] as const) {
        sensors.push(spawn(process.execPath, [SENSOR, node.socket, `${node.name}-${kind}`, unit, String(perSensor), String(i * 7 + unit.length)],
          { stdio: ['ignore', 'ignore', 'inherit'] }))
      }
    })
    let finished = 0
    await Promise.all(sensors.map(async (sensor) => {
      const code = await exited(sensor)
      if (code !== 0) throw new Error(`a sensor process exited with ${code}`)
      say(`sensors appending through the sockets: ${++finished}/${sensors.length} done`)
    }))
    done(`${sensors.length} sensors appended ${sensors.length * perSensor} readings through ${nodeCount} sockets`)
    for (const node of nodes) clients.push(await connect(node.socket))
    const total = sensors.length * perSensor
    const started = Date.now()
    for (;;) {
      const lengths = await Promise.all(clients.map((client) => client.length()))
      say(`replicating: ${lengths.map((length, i) => `${nodes[i]!.name} ${length}/${total}`).join(', ')}`)
      if (lengths.every((length) => length === total)) break
      if (Date.now() - started > CONVERGE_TIMEOUT_MS) throw new Error(`no convergence after ${CONVERGE_TIMEOUT_MS} ms: ${lengths.join(', ')}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    done(`replication converged in ${Date.now() - started} ms: every node holds ${total} events`)
    const models = await Promise.all(clients.map((client) => readModel(client)))
    const rendered = models.map((model) => JSON.stringify(Object.keys(model).sort().map((sensor) => [sensor, model[sensor]])))
    const agree = rendered.every((text) => text === rendered[0])
    if (json) {
      process.stdout.write(JSON.stringify({ nodes: nodes.map((n) => n.name), events: total, agree, model: models[0] }) + '\n')
    } else {
      for (let i = 0; i < nodes.length; i++) {
        done(`\nread model computed from ${nodes[i]!.name}:`)
        done('  sensor              count     min     max    mean')
        for (const [sensor, stats] of Object.entries(models[i]!).sort()) {
          done(`  ${sensor.padEnd(18)} ${String(stats.count).padStart(6)} ${stats.min.toFixed(1).padStart(7)} ${stats.max.toFixed(1).padStart(7)} ${(stats.sum / stats.count).toFixed(2).padStart(7)} ${stats.unit}`)
        }
      }
      done(agree ? `\nall ${nodeCount} nodes agree.` : '\nthe nodes DISAGREE.')
    }
    return agree ? 0 : 3
  } finally {
    for (const client of clients) await client.close().catch(() => undefined)
    for (const node of nodes) node.child.kill('SIGTERM')
    await Promise.all(nodes.map((node) => exited(node.child)))
    await broker.close()
    fs.rmSync(root, { recursive: true, force: true })
  }
}
