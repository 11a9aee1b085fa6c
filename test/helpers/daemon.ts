// Runs `interlog serve` as a real child process for tests, and waits for its socket.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))

export interface DaemonProcess {
  child: ChildProcess
  socket: string
  output: () => string
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

export async function startDaemon(t: { teardown(fn: () => unknown): void }, data: string, args: string[] = []): Promise<DaemonProcess> {
  const socket = path.join(data, 'interlog.sock')
  const child = spawn(process.execPath, [CLI, 'serve', '--init', '--data', data, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const started = Date.now()
  while (!fs.existsSync(socket) || !output.includes('local API listening')) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}: ${output}`)
    if (Date.now() - started > 15_000) throw new Error(`daemon did not start: ${output}`)
    await new Promise((resolve) => setTimeout(resolve, 30))
  }
  const daemon: DaemonProcess = {
    child, socket, output: () => output,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    },
  }
  t.teardown(() => daemon.stop('SIGKILL'))
  return daemon
}
