// An embedded MQTT 3.1.1 broker (aedes) on loopback, so a first user needs no broker installed.
// In memory: like mosquitto with persistence off, it is not a store; the logs are.

import net from 'node:net'
import { LogError } from '../core/index.js'

export interface BrokerHandle {
  /** mqtt://127.0.0.1:PORT */
  readonly url: string
  readonly port: number
  close(): Promise<void>
}

export async function startBroker(options: { port?: number, host?: string } = {}): Promise<BrokerHandle> {
  const { Aedes } = await import('aedes')
  const broker = await Aedes.createBroker()
  const server = net.createServer(broker.handle as (socket: net.Socket) => void)
  const host = options.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new LogError('IO', `cannot listen on ${host}:${options.port ?? 0}: ${error.message}`, { cause: error })))
    server.listen(options.port ?? 0, host, () => resolve())
  })
  const port = (server.address() as net.AddressInfo).port
  const sockets = new Set<net.Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  return {
    url: `mqtt://${host}:${port}`,
    port,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await new Promise<void>((resolve) => broker.close(() => resolve()))
    },
  }
}
