// The trust allow-list from the command line, and the daemon's security settings: interlog init
// prints the public key, interlog trust add|rm|ls edits the log's trusted-keys file, the log then
// accepts only listed keys; the daemon encrypts with a key file and reports its settings.

import t from 'tap'
import crypto from 'node:crypto'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { loadConfig, openLog, readEncryptionKeys, serve, connect, type RemoteEvent } from '../../index.js'
import { CLI } from '../helpers/daemon.js'
import { signedSince } from '../helpers/sealed.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

interface Run { code: number | null, stdout: string, stderr: string }

function interlog(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('init prints the key; trust add, ls and rm edit the allow-list the log then enforces', async (t) => {
  const gateway = tempDir(t)
  const cloud = tempDir(t)
  const init = await interlog(['init', '--data', gateway, '--json'])
  t.equal(init.code, 0, init.stderr)
  const { logs, publicKeys } = JSON.parse(init.stdout) as { logs: { main: string }, publicKeys: { main: string } }
  t.match(publicKeys.main, /^[0-9a-f]{64}$/)
  t.equal((await interlog(['init', '--data', cloud])).code, 0)

  const added = await interlog(['trust', 'add', publicKeys.main, '--note', 'truck 17', '--data', cloud])
  t.equal(added.code, 0, added.stderr)
  t.match(added.stdout, /trusted/)
  t.match((await interlog(['trust', 'add', publicKeys.main, '--data', cloud])).stdout, /already trusted/)
  const listed = await interlog(['trust', 'ls', '--data', cloud, '--json'])
  const list = JSON.parse(listed.stdout) as { mode: string, keys: { publicKey: string, replicaId: string, note: string }[] }
  t.equal(list.mode, 'keys')
  t.same(list.keys, [{ publicKey: publicKeys.main, replicaId: logs.main, note: 'truck 17' }])

  const stranger = await openLog(tempDir(t))
  await stranger.append(payload('not on the list'))
  const truck = await openLog(path.join(gateway, 'logs', 'main'))
  await truck.append(payload('from truck 17'))
  const raw = (log: typeof truck): Promise<RemoteEvent[]> => signedSince(log)
  let receiver = await openLog(path.join(cloud, 'logs', 'main'))
  t.equal(receiver.securityStatus().trust, 'keys')
  t.equal((await receiver.merge(await raw(truck))).added, 1)
  t.equal((await receiver.merge(await raw(stranger))).forged, 1)
  await receiver.close()

  t.equal((await interlog(['trust', 'rm', logs.main, '--data', cloud])).code, 0, 'removed by replica id')
  t.equal((await interlog(['trust', 'rm', logs.main, '--data', cloud])).code, 3, 'removing again fails')
  receiver = await openLog(path.join(cloud, 'logs', 'main'))
  await truck.append(payload('after removal'))
  t.equal((await receiver.merge(await raw(truck))).forged, 2, 'every event of a removed key is refused at the next open')
  await receiver.close()
  await truck.close()
  await stranger.close()

  t.equal((await interlog(['trust', 'add', 'nothex', '--data', cloud])).code, 3)
  t.equal((await interlog(['trust', 'frobnicate', '--data', cloud])).code, 2)
})

t.test('the daemon encrypts with its key file, refuses a malformed one, and reports its security settings', async (t) => {
  const data = tempDir(t)
  const keyFile = path.join(data, 'log.key')
  fs.writeFileSync(keyFile, `# log key\n1 ${crypto.randomBytes(32).toString('hex')}\n`, { mode: 0o600 })
  t.equal(readEncryptionKeys(keyFile).keys[0]!.id, 1)
  fs.writeFileSync(path.join(data, 'bad.key'), '1 abc\n')
  t.throws(() => readEncryptionKeys(path.join(data, 'bad.key')), /line 1: expected "ID HEX64"/)
  t.throws(() => loadConfig({ flags: { data, trust: 'maybe' } }), /'trust' must be/)
  const config = loadConfig({ flags: { data, encryptionKeyFile: keyFile, trust: 'open', init: true } })
  const lines: string[] = []
  const daemon = await serve(config, (_level, message) => { lines.push(message) })
  t.teardown(() => daemon.close())
  const client = await connect(config.socket)
  t.teardown(() => client.close())
  await client.append(payload('sealed and encrypted'))
  t.same((await collect(client.read())).map((e) => text(e.payload)), ['sealed and encrypted'])
  const status = await client.status() as unknown as { security: { trust: string, encrypted: boolean, publicKey: string } }
  t.equal(status.security.trust, 'open')
  t.equal(status.security.encrypted, true)
  t.ok(lines.some((line) => /trust open, payload encryption on/.test(line)), 'the start-up log says so')
  const segments = fs.readdirSync(path.join(data, 'logs', 'main')).filter((n) => n.endsWith('.seg'))
  t.equal(fs.readFileSync(path.join(data, 'logs', 'main', segments[0]!)).indexOf('sealed and encrypted'), -1, 'ciphertext on disk')
})
