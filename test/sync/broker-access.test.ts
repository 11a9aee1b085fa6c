// Broker access against a real mosquitto (docs/security-broker.md): TLS with client certificates,
// one account per replica, and the per-device ACL. The mosquitto.conf and the ACL file are read
// from that document, so the document shows what ran. Mosquitto denies a publish silently (MQTT
// 3.1.1 has no reason code in PUBACK), so denial is checked where it matters: a subscriber allowed
// to read everything never gets the forged messages, and does get a later legitimate one.

import t from 'tap'
import crypto from 'node:crypto'
import fs from 'node:fs'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { openLog, startSync, type Log, type SyncHandle, type SyncOptions } from '../../index.js'
import { connectionFor, type Connection, type Subscriber } from '../../sync/connection.js'
import { hasMosquitto, makeTestPki, startSecureTestBroker, type SecureTestBroker } from '../helpers/broker.js'
import { payload, tempDir, text } from '../helpers/temp.js'

interface Teardown { teardown(fn: () => unknown): void }

const PREFIX = 'interlog/v1'
const SKIP = hasMosquitto() ? false : 'mosquitto is not installed (apt-get install -y mosquitto)'
const WAIT_MS_MAX = 10_000

const DOCUMENT = fs.readFileSync(new URL('../../docs/security-broker.md', import.meta.url), 'utf8')

/** The fenced block of the document whose first line is `firstLine`. */
function documentBlock(firstLine: string): string {
  const blocks = [...DOCUMENT.matchAll(/^```[a-z]*\n([\s\S]*?)^```$/gm)].map((match) => match[1]!)
  const found = blocks.filter((block) => block.startsWith(firstLine + '\n'))
  if (found.length !== 1) throw new Error(`docs/security-broker.md has ${found.length} blocks starting with ${firstLine}`)
  return found[0]!
}

const MOSQUITTO_CONF = documentBlock('# /etc/mosquitto/mosquitto.conf')
const ACL = documentBlock('# /etc/mosquitto/interlog.acl')

const pki = makeTestPki(t)

interface Device { id: string, password: string, cert: Buffer, key: Buffer }

function replicaId(): string {
  return crypto.randomBytes(16).toString('hex')
}

/** An account on the broker and a client certificate, both named by the replica id. */
function device(id = replicaId()): Device {
  return { id, password: crypto.randomBytes(12).toString('base64url'), ...pki.client(id) }
}

async function broker(t: Teardown, devices: Device[]): Promise<SecureTestBroker> {
  return startSecureTestBroker(t, { config: MOSQUITTO_CONF, acl: ACL, users: Object.fromEntries(devices.map((d) => [d.id, d.password])), pki })
}

/** startSync's broker options for a device, as docs/security-broker.md shows them. */
function access(broker: SecureTestBroker, d: Device): Pick<SyncOptions, 'url' | 'username' | 'password' | 'clientId' | 'ca' | 'cert' | 'key'> {
  return { url: broker.url, username: d.id, password: d.password, clientId: d.id, ca: pki.ca, cert: d.cert, key: d.key }
}

/** Options of a raw MQTT client logged in as a device; no reconnection, so a refusal is final. */
function raw(d: Device, extra: IClientOptions = {}): IClientOptions {
  return { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: WAIT_MS_MAX, username: d.id, password: d.password, clientId: d.id, ca: pki.ca, cert: d.cert, key: d.key, ...extra }
}

/** Connects once: the client, or the error the broker or TLS answered with. */
async function connectOnce(t: Teardown, url: string, options: IClientOptions): Promise<{ client: MqttClient } | { error: Error & { code?: unknown } }> {
  const client = mqtt.connect(url, options)
  t.teardown(() => client.endAsync(true))
  return new Promise((resolve) => {
    client.once('connect', () => resolve({ client }))
    client.once('error', (error) => resolve({ error }))
  })
}

async function connected(t: Teardown, url: string, options: IClientOptions): Promise<MqttClient> {
  const result = await connectOnce(t, url, options)
  if ('error' in result) throw result.error
  return result.client
}

/** The promise, or a failure after WAIT_MS_MAX (a publish on a closed client would wait forever). */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${WAIT_MS_MAX} ms: ${what}`)), WAIT_MS_MAX)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const started = Date.now()
  while (!condition()) {
    if (Date.now() - started > WAIT_MS_MAX) throw new Error(`not within ${WAIT_MS_MAX} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function openTestLog(t: Teardown): Promise<Log> {
  const log = await openLog(tempDir(t), { durability: 'interval', intervalMs: 20 })
  t.teardown(() => log.close())
  return log
}

async function sequences(log: Log): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {}
  for await (const event of log.read()) (out[event.origin] ??= [])[event.pos] = text(event.payload)
  return out
}

t.test('two replicas with their own certificates and accounts sync over mqtts through the ACL', { skip: SKIP }, async (t) => {
  const logs = [await openTestLog(t), await openTestLog(t)]
  const devices = logs.map((log) => device(log.replicaId))
  const mosquitto = await broker(t, devices)
  t.same(mosquitto.listeningPorts(), [mosquitto.port], 'mosquitto opened the TLS listener and no other')
  const problems: string[] = []
  const syncs: SyncHandle[] = []
  for (const [i, log] of logs.entries()) {
    const sync = await startSync(log, { ...access(mosquitto, devices[i]!), logName: 'main', announceIntervalMs: 200,
      logger: (level, message) => { if (level !== 'info') problems.push(message) } })
    t.teardown(() => sync.close()) // before its log's close: teardowns run last in, first out
    syncs.push(sync)
    t.equal(sync.status().connected, true, `replica ${i} is connected over TLS`)
  }
  for (let i = 0; i < 50; i++) await logs[0]!.append(payload(`a${i}`))
  await logs[1]!.appendBatch([payload('b0'), payload('b1')])
  const lengths = (): number[] => logs.map((log) => log.length)
  await until(() => lengths().every((length) => length === 52), 'both logs hold 52 events')
  t.same(logs[0]!.versionVector(), logs[1]!.versionVector())
  t.same(await sequences(logs[0]!), await sequences(logs[1]!))
  for (const [i, sync] of syncs.entries()) {
    const other = devices[1 - i]!.id
    await until(() => sync.status().peers.some((peer) => peer.replica === other && peer.online), `replica ${i} sees its peer online`)
    t.equal(sync.status().peers.find((peer) => peer.replica === other)!.node, other, 'the peer\'s node is its account (client id)')
  }
  t.not(syncs[0]!.status().node, syncs[1]!.status().node, 'two identities, two connections')
  t.same(problems, [], 'no errors or warnings: nothing sync publishes is outside its ACL')
})

t.test('anonymous login, a wrong password and an unknown account are refused', { skip: SKIP }, async (t) => {
  const known = device()
  const mosquitto = await broker(t, [known])
  const tlsOnly: IClientOptions = { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: WAIT_MS_MAX, ca: pki.ca, cert: known.cert, key: known.key }
  const attempts: [string, IClientOptions][] = [
    ['no credentials', tlsOnly],
    ['a wrong password', raw(known, { password: 'wrong' })],
    ['an unknown account', raw(known, { username: replicaId() })],
  ]
  for (const [name, options] of attempts) {
    const result = await connectOnce(t, mosquitto.url, options)
    t.ok('error' in result, `${name}: refused`)
    if ('error' in result) t.equal(result.error.code, 5, `${name}: CONNACK 5, not authorized (${result.error.message})`)
  }
  const result = await connectOnce(t, mosquitto.url, raw(known))
  t.ok('client' in result, 'the right password is accepted')
})

t.test('a device cannot publish as another replica, take its client id, or aim a Last Will at it', { skip: SKIP }, async (t) => {
  const [forger, victim, reader] = [device(), device(), device()]
  const mosquitto = await broker(t, [forger, victim, reader])
  const received: { topic: string, text: string }[] = []
  const readerClient = await connected(t, mosquitto.url, raw(reader))
  readerClient.on('message', (topic, bytes) => received.push({ topic, text: bytes.toString() }))
  await readerClient.subscribeAsync(`${PREFIX}/#`, { qos: 1 })
  const nodeTopic = (d: Device): string => `${PREFIX}/_nodes/${d.id}`
  const victimClient = await connected(t, mosquitto.url, raw(victim, { will: { topic: nodeTopic(victim), payload: Buffer.from('victim will'), qos: 1, retain: false } }))
  let victimCloses = 0
  victimClient.on('close', () => victimCloses++)
  // The forger asks for the victim's client id and a Last Will on the victim's presence topic.
  const forgerClient = await connected(t, mosquitto.url, raw(forger, {
    clientId: victim.id, will: { topic: nodeTopic(victim), payload: Buffer.from('forged will'), qos: 1, retain: false },
  }))
  await within(victimClient.publishAsync(`${PREFIX}/main/vector/${victim.id}`, 'victim still connected', { qos: 1 }), 'the victim publishes')
  const forged = [`${PREFIX}/main/events/${victim.id}`, `${PREFIX}/main/status/${victim.id}`, `${PREFIX}/main/vector/${victim.id}`, nodeTopic(victim)]
  for (const topic of forged) {
    // Acknowledged all the same: mosquitto drops a denied publish without telling the publisher.
    await within(forgerClient.publishAsync(topic, 'forged', { qos: 1, retain: topic.includes('/status/') }), `forged publish on ${topic} acknowledged`)
  }
  await within(forgerClient.publishAsync(`${PREFIX}/main/events/${forger.id}`, 'own', { qos: 1 }), 'own publish acknowledged')
  await until(() => received.some((m) => m.text === 'own'), 'the forger\'s own-topic publish arrives')
  t.equal(victimCloses, 0, 'the victim was not disconnected by a connection asking for its client id')
  // Unclean ends: the broker sends Last Wills, the forger's first.
  forgerClient.stream.destroy()
  await new Promise((resolve) => setTimeout(resolve, 300))
  victimClient.stream.destroy()
  await until(() => received.some((m) => m.text === 'victim will'), 'the victim\'s own Last Will arrives')
  t.same(received.filter((m) => m.text.startsWith('forged')), [], 'no forged publish and no forged Last Will reached the reader')
  t.same(received.map((m) => m.text), ['victim still connected', 'own', 'victim will'])
  t.equal(received.find((m) => m.text === 'own')!.topic, `${PREFIX}/main/events/${forger.id}`)
})

t.test('a wrong CA, a missing client certificate or a wrong password is reported, not thrown', { skip: SKIP }, async (t) => {
  const known = device()
  const mosquitto = await broker(t, [known])
  const { cert: _cert, key: _key, ...withoutClientCertificate } = access(mosquitto, known)
  const cases: [string, Partial<SyncOptions>, RegExp][] = [
    ['trusting the wrong CA', { ...access(mosquitto, known), ca: pki.otherCa },
      /^mqtts:\/\/127\.0\.0\.1:\d+: TLS: the broker's certificate is not signed by a CA in the 'ca' option \(SELF_SIGNED_CERT_IN_CHAIN: /],
    ['without a client certificate', withoutClientCertificate,
      /^mqtts:\/\/127\.0\.0\.1:\d+: TLS: the broker requires a client certificate: set 'cert' and 'key' \(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: /],
    ['with a wrong password', { ...access(mosquitto, known), password: 'wrong' },
      new RegExp(`^mqtts://127\\.0\\.0\\.1:\\d+: the broker refused the login as user '${known.id}': check username and password .*\\(Connection refused: Not authorized\\)$`)],
  ]
  const lines: string[][] = cases.map(() => [])
  const syncs = await Promise.all(cases.map(async ([, options], i) => {
    const log = await openTestLog(t)
    const sync = await startSync(log, { url: mosquitto.url, ...options, logName: 'main', logger: (_level, message) => lines[i]!.push(message) })
    t.teardown(() => sync.close())
    return sync
  }))
  for (const [i, [name, , expected]] of cases.entries()) {
    const status = syncs[i]!.status()
    t.equal(status.connected, false, `${name}: not connected`)
    t.match(status.lastError, expected, `${name}: lastError says why: ${status.lastError}`)
    t.ok(lines[i]!.some((line) => expected.test(line.replace(/^sync main: /, ''))), `${name}: the logger got it`)
  }
  await Promise.all(syncs.map((sync) => sync.close()))
  // Past a reconnection period: nothing left emits an error nobody handles.
  await new Promise((resolve) => setTimeout(resolve, 1200))
  t.pass('closed cleanly, and the process is alive')
})

t.test('logs with different client certificates do not share a connection; the pool key holds no secret', async (t) => {
  const [one, two] = [device(), device()]
  // Nothing listens on port 1: the connections fail and retry, with no log attached.
  const settings = { url: 'mqtts://127.0.0.1:1', topicPrefix: 'pool-test', username: 'device', password: 'secret-password', ca: pki.ca, cert: one.cert, key: one.key }
  const first = connectionFor(settings)
  const distinct: Connection[] = [first]
  t.equal(connectionFor({ ...settings, cert: one.cert.toString('utf8'), key: Buffer.from(one.key) }), first, 'the same identity, as text or as bytes')
  for (const other of [{ ...settings, cert: two.cert, key: two.key }, { ...settings, password: 'other' }, { ...settings, ca: pki.otherCa }]) {
    const connection = connectionFor(other)
    t.not(distinct.includes(connection), true, 'another certificate, password or CA: another connection')
    distinct.push(connection)
  }
  for (const connection of distinct) t.notMatch(connection.key, /secret-password|BEGIN|other/, 'no password or PEM in the key')
  // Handled by the connection itself, so no uncaught 'error' event while no log is attached.
  await new Promise((resolve) => first.client.once('error', resolve))
  const nobody: Subscriber = { receive: async () => false, nodeStatus: () => undefined, onConnect: () => undefined }
  for (const connection of distinct) await connection.detach(nobody)
  t.not(connectionFor(settings), first, 'a detached connection left the pool')
  await connectionFor(settings).detach(nobody)
})

t.test('startSync refuses TLS material and credentials it cannot use', async (t) => {
  const log = await openTestLog(t)
  const [one, two] = [device(), device()]
  const base = { url: 'mqtts://127.0.0.1:8883', logName: 'main' }
  const refused: [string, SyncOptions, RegExp][] = [
    ['a PEM file path', { ...base, ca: '/etc/interlog/ca.crt' }, /ca must be PEM text or a Buffer of it \(the file's content, not its path\)/],
    ['a cert without its key', { ...base, cert: one.cert }, /cert and key go together/],
    ['TLS material on mqtt://', { ...base, url: 'mqtt://127.0.0.1:1883', ca: pki.ca }, /need an mqtts:\/\/ or wss:\/\/ url/],
    ['credentials in the URL', { ...base, url: 'mqtts://device:secret@127.0.0.1:8883' }, /url must not carry credentials/],
    ['a password without a username', { ...base, password: 'secret' }, /a password needs a username/],
    ['an empty username', { ...base, username: '' }, /username must be a non-empty string/],
    ['the key of another certificate', { ...base, ca: pki.ca, cert: one.cert, key: two.key }, /ca, cert or key cannot be used: .*key values mismatch/],
  ]
  for (const [name, options, message] of refused) {
    await t.rejects(startSync(log, options), { code: 'INVALID_ARGUMENT', message }, name)
  }
})
