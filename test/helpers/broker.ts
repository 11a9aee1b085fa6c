// A real MQTT broker for sync tests: mosquitto when it is on PATH (CI installs it), on a free
// loopback port with a config of its own; the embedded aedes broker otherwise. Tests say which.
// restart() stops and starts it on the same port, losing every session and message (persistence
// is off), which is what a broker restart does to sync.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { startBroker, type BrokerHandle } from '../../index.js'
import { tempDir } from './temp.js'

export interface TestBroker {
  kind: 'mosquitto' | 'aedes'
  url: string
  port: number
  restart(): Promise<void>
  stop(): Promise<void>
  start(): Promise<void>
}

function hasMosquitto(): boolean {
  return spawnSync('sh', ['-c', 'command -v mosquitto'], { stdio: 'ignore' }).status === 0
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const started = Date.now()
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() - started > timeoutMs) throw new Error(`broker did not listen on ${port} within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export async function startTestBroker(t: { teardown(fn: () => unknown): void }): Promise<TestBroker> {
  const port = await freePort()
  const url = `mqtt://127.0.0.1:${port}`
  if (hasMosquitto() && process.env['INTERLOG_TEST_BROKER'] !== 'aedes') {
    const dir = tempDir(t)
    const config = path.join(dir, 'mosquitto.conf')
    fs.writeFileSync(config, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false',
      'max_queued_messages 1000', 'message_size_limit 0', ...(process.getuid?.() === 0 ? ['user root'] : [])].join('\n') + '\n')
    let child: ChildProcess | undefined
    const broker: TestBroker = {
      kind: 'mosquitto', url, port,
      start: async () => {
        child = spawn('mosquitto', ['-c', config], { stdio: 'ignore' })
        await waitForPort(port, 5000)
      },
      stop: async () => {
        if (child === undefined || child.exitCode !== null) return
        const exited = new Promise((resolve) => child!.once('exit', resolve))
        child.kill('SIGKILL')
        await exited
        child = undefined
      },
      restart: async () => {
        await broker.stop()
        await broker.start()
      },
    }
    await broker.start()
    t.teardown(() => broker.stop())
    return broker
  }
  let handle: BrokerHandle | undefined
  const broker: TestBroker = {
    kind: 'aedes', url, port,
    start: async () => { handle = await startBroker({ port }) },
    stop: async () => {
      await handle?.close()
      handle = undefined
    },
    restart: async () => {
      await broker.stop()
      await broker.start()
    },
  }
  await broker.start()
  t.teardown(() => broker.stop())
  return broker
}
