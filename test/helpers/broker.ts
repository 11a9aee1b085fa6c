// A real MQTT broker for sync tests: mosquitto when it is on PATH (CI installs it), on a free
// loopback port with a config of its own; the embedded aedes broker otherwise. Tests say which.
// restart() stops and starts it on the same port, losing every session and message (persistence
// is off), which is what a broker restart does to sync.
//
// startSecureTestBroker runs mosquitto the way docs/security-broker.md configures it (TLS with
// client certificates, password file, per-device ACL), from the configuration text that document
// shows; makeTestPki makes the throwaway CA and certificates it needs, with the openssl commands
// that document shows.

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

export function hasMosquitto(): boolean {
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

/** Validity of the throwaway certificates, in days. */
const TEST_CERT_DAYS = 2

export interface TestPki {
  /** Holds ca.crt, ca.key, server.crt, server.key and the issued client certificates. */
  dir: string
  /** PEM of the CA that signed the broker's and the clients' certificates. */
  ca: Buffer
  /** PEM of a CA that signed nothing here: a client trusting only it must refuse the broker. */
  otherCa: Buffer
  /** Issues a client certificate (and its key) with this common name. */
  client(commonName: string): { cert: Buffer, key: Buffer }
}

function openssl(dir: string, args: string[]): void {
  const result = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (${result.status}): ${result.stderr}`)
}

/** openssl arguments for a new P-256 key and a certificate request (or a self-signed CA with -x509). */
function newKey(name: string, commonName: string): string[] {
  return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${commonName}`, '-keyout', `${name}.key`]
}

function signWithCa(dir: string, name: string, extensions: string): void {
  fs.writeFileSync(path.join(dir, `${name}.ext`), extensions + '\n')
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', String(TEST_CERT_DAYS), '-extfile', `${name}.ext`, '-out', `${name}.crt`])
}

/** A throwaway CA, a broker certificate for 127.0.0.1 and localhost, and client certificates on demand. */
export function makeTestPki(t: { teardown(fn: () => unknown): void }): TestPki {
  const dir = tempDir(t)
  openssl(dir, ['req', '-x509', ...newKey('ca', 'interlog-test-ca'), '-days', String(TEST_CERT_DAYS), '-out', 'ca.crt'])
  openssl(dir, ['req', ...newKey('server', 'localhost'), '-out', 'server.csr'])
  signWithCa(dir, 'server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth')
  const other = path.join(dir, 'other')
  fs.mkdirSync(other)
  openssl(other, ['req', '-x509', ...newKey('ca', 'interlog-test-other-ca'), '-days', String(TEST_CERT_DAYS), '-out', 'ca.crt'])
  return {
    dir,
    ca: fs.readFileSync(path.join(dir, 'ca.crt')),
    otherCa: fs.readFileSync(path.join(other, 'ca.crt')),
    client: (commonName) => {
      const name = `client-${commonName}`
      openssl(dir, ['req', ...newKey(name, commonName), '-out', `${name}.csr`])
      signWithCa(dir, name, 'extendedKeyUsage=clientAuth')
      return { cert: fs.readFileSync(path.join(dir, `${name}.crt`)), key: fs.readFileSync(path.join(dir, `${name}.key`)) }
    },
  }
}

export interface SecureTestBrokerOptions {
  /** A production mosquitto.conf (docs/security-broker.md): its /etc/mosquitto paths are pointed at
   *  this test's files and its one `listener 8883` line at a free loopback port. */
  config: string
  /** The ACL file's text. */
  acl: string
  /** Accounts written to the password file with mosquitto_passwd: name -> password. */
  users: Record<string, string>
  pki: TestPki
}

export interface SecureTestBroker {
  /** mqtts://127.0.0.1:port */
  url: string
  port: number
  /** The configuration mosquitto runs, after the substitutions. */
  config: string
  /** Ports mosquitto says it opened (a listener setting above the first `listener` line opens 1883). */
  listeningPorts(): number[]
  stop(): Promise<void>
}

/** The start of mosquitto's stderr log kept, at most (the listeners are announced first). */
const BROKER_LOG_BYTES_MAX = 64 << 10

/** mosquitto with TLS, a password file and an ACL file; the caller checks hasMosquitto() first. */
export async function startSecureTestBroker(t: { teardown(fn: () => unknown): void }, options: SecureTestBrokerOptions): Promise<SecureTestBroker> {
  const port = await freePort()
  const dir = tempDir(t)
  const passwords = path.join(dir, 'interlog.passwd')
  Object.entries(options.users).forEach(([user, password], index) => {
    const args = [...(index === 0 ? ['-c'] : []), '-b', passwords, user, password]
    const result = spawnSync('mosquitto_passwd', args, { encoding: 'utf8' })
    if (result.status !== 0) throw new Error(`mosquitto_passwd ${args.slice(0, -1).join(' ')} failed: ${result.stderr}`)
  })
  fs.writeFileSync(path.join(dir, 'interlog.acl'), options.acl)
  const listeners = options.config.split('\n').filter((line) => line.trim() === 'listener 8883')
  if (listeners.length !== 1) throw new Error('the configuration must have exactly one line `listener 8883`')
  const config = options.config
    .replace(/^listener 8883$/m, `listener ${port} 127.0.0.1`)
    .replaceAll('/etc/mosquitto/certs/', options.pki.dir + '/')
    .replaceAll('/etc/mosquitto/', dir + '/') + (process.getuid?.() === 0 ? 'user root\n' : '')
  if (config.includes('/etc/')) throw new Error(`a path was not pointed at the test's files:\n${config}`)
  const configPath = path.join(dir, 'mosquitto.conf')
  fs.writeFileSync(configPath, config)
  const child = spawn('mosquitto', ['-c', configPath], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr = (stderr + chunk).slice(0, BROKER_LOG_BYTES_MAX) })
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }
  t.teardown(stop)
  const exitedEarly = new Promise<never>((_resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`mosquitto exited (${code}) before listening:\n${stderr}`)))
  })
  exitedEarly.catch(() => undefined)
  await Promise.race([waitForPort(port, 5000), exitedEarly])
  // It logs its listeners, then 'running', before it accepts: wait for that line to reach us.
  for (let waitedMs = 0; !/ version \S+ running/.test(stderr); waitedMs += 10) {
    if (waitedMs > 2000) throw new Error(`mosquitto listens on ${port} but did not log 'running':\n${stderr}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const listeningPorts = (): number[] => [...new Set([...stderr.matchAll(/Opening ipv[46] listen socket on port (\d+)\./g)].map((m) => Number(m[1])))]
  return { url: `mqtts://127.0.0.1:${port}`, port, config, listeningPorts, stop }
}
