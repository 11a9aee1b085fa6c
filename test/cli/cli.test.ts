// The interlog command line, run as a real process: each subcommand's round trip, help, exit
// codes, and the demo.

import t from 'tap'
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import { openLog } from '../../index.js'
import { startDaemon, CLI } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'

interface Run { code: number | null, stdout: string, stderr: string }

function interlog(args: string[], stdin?: string | Buffer, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('latin1') })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(stdin ?? '')
  })
}

t.test('init, append from stdin, read --format json, hex and raw, against a data directory', async (t) => {
  const data = tempDir(t)
  const init = await interlog(['init', '--data', data, '--json'])
  t.equal(init.code, 0)
  const replica = (JSON.parse(init.stdout) as { logs: { main: string } }).logs.main
  t.match(replica, /^[0-9a-f]{32}$/)
  const appended = await interlog(['append', '--data', data], 'first line\nsecond line\n\u00e9t\u00e9\n')
  t.equal(appended.code, 0, appended.stderr)
  t.same(appended.stdout.trim().split('\n'), [`${replica} 0`, `${replica} 1`, `${replica} 2`], 'prints the ids')
  const read = await interlog(['read', '--data', data, '--format', 'json'])
  const lines = Buffer.from(read.stdout, 'latin1').toString('utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  t.same(lines.map((l) => l['text']), ['first line', 'second line', 'été'])
  t.same(lines.map((l) => l['localPos']), [0, 1, 2])
  t.equal(Buffer.from(lines[0]!['payload'] as string, 'base64').toString(), 'first line')
  t.ok(lines.every((l) => l['origin'] === replica && typeof l['time'] === 'number'))
  const hex = await interlog(['read', '--data', data, '--format', 'hex', '--from', '1', '--to', '2'])
  t.equal(hex.stdout, `1 ${replica} 1 ${String(lines[1]!['time'])} ${Buffer.from('second line').toString('hex')}\n`)
  const raw = await interlog(['read', '--data', data, '--format', 'raw'])
  const binary = await interlog(['append', '--data', data, '--binary', '--json'], Buffer.from(raw.stdout, 'latin1'))
  t.equal(binary.code, 0, binary.stderr)
  t.equal(binary.stdout.trim().split('\n').length, 3, 'raw output appends back with --binary')
  const tail = await interlog(['tail', '--data', data, '--format', 'json'])
  t.equal(tail.stdout.trim().split('\n').length, 6)
})

t.test('status and verify; verify exits 1 on damage', async (t) => {
  const data = tempDir(t)
  await interlog(['init', '--data', data])
  await interlog(['append', '--data', data], 'a\n')
  await interlog(['append', '--data', data], 'b\n')
  const status = await interlog(['status', '--data', data, '--json'])
  t.equal(status.code, 0, status.stderr)
  const report = JSON.parse(status.stdout) as Record<string, unknown>
  t.equal(report['length'], 2)
  t.equal(report['segments'], 1)
  t.ok((report['bytes'] as number) > 0)
  t.equal(report['via'], 'directory')
  const human = await interlog(['status', '--data', data])
  t.match(human.stdout, /events\s+2/)
  const verify = await interlog(['verify', '--data', data, '--json'])
  t.equal(verify.code, 0)
  t.equal((JSON.parse(verify.stdout) as { ok: boolean }).ok, true)
  const segment = `${data}/logs/main/000000000000.seg`
  const bytes = fs.readFileSync(segment)
  bytes[4096 + 70] = bytes[4096 + 70]! ^ 1
  fs.writeFileSync(segment, bytes)
  const damaged = await interlog(['verify', '--data', data])
  t.equal(damaged.code, 1, 'open scans a log without a checkpoint, fences early damage off and opens; verify lists it: exit 1')
  t.match(damaged.stdout, /DAMAGED/)
  t.match(damaged.stdout, /damage\s+000000000000\.seg at 4096/)
  const read = await interlog(['read', '--data', data])
  t.equal(read.code, 1, 'read prints what it can and exits 1: the output misses damaged events')
  t.match(read.stdout, /"text":"b"/)
  t.match(read.stderr, /damaged/)
  const shown = await interlog(['status', '--data', data])
  t.equal(shown.code, 0, 'status opens and shows the damage')
  t.match(shown.stdout, /damaged\s+000000000000\.seg at 4096/)

  // Damage inside checkpointed data: open trusts the checkpoint, verify finds it: exit 1.
  const other = tempDir(t)
  const log = await openLog(`${other}/logs/main`, { checkpointIntervalBytes: 4096 })
  for (let i = 0; i < 100; i++) await log.append(new Uint8Array(200).fill(i))
  await log.close()
  const file = `${other}/logs/main/000000000000.seg`
  const data2 = fs.readFileSync(file)
  data2[4096 + 100] = data2[4096 + 100]! ^ 1
  fs.writeFileSync(file, data2)
  const found = await interlog(['verify', '--data', other])
  t.equal(found.code, 1, 'verify exits 1 when it finds damage')
  t.match(found.stdout, /DAMAGED/)
})

t.test('commands work against a running daemon through its socket', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  const locked = await interlog(['init', '--data', data])
  t.equal(locked.code, 3, 'init while the daemon holds the log: LOCKED')
  const appended = await interlog(['append', '--data', data], 'via socket\n')
  t.equal(appended.code, 0, appended.stderr)
  const read = await interlog(['read', '--socket', daemon.socket])
  t.match(read.stdout, /"text":"via socket"/)
  const status = await interlog(['status', '--socket', daemon.socket, '--json'])
  t.equal((JSON.parse(status.stdout) as { via: string }).via, 'daemon')
  const verify = await interlog(['verify', '--data', data])
  t.equal(verify.code, 0)
  await daemon.stop()
  const unreachable = await interlog(['status', '--socket', daemon.socket])
  t.equal(unreachable.code, 4, 'no daemon: exit 4')
})

t.test('help, usage errors and configuration errors have stable exit codes', async (t) => {
  for (const command of ['init', 'serve', 'append', 'read', 'tail', 'status', 'verify', 'demo']) {
    const help = await interlog([command, '--help'])
    t.equal(help.code, 0, `${command} --help`)
    t.match(help.stdout, /Usage: interlog /)
  }
  t.equal((await interlog([])).code, 2)
  t.equal((await interlog(['frobnicate'])).code, 2)
  t.equal((await interlog(['read', '--bogus'])).code, 2)
  t.equal((await interlog(['read', '--data', tempDir(t), '--format', 'xml'])).code, 2)
  const data = tempDir(t)
  fs.writeFileSync(`${data}/config.json`, JSON.stringify({ data, colour: 'blue' }))
  const serve = await interlog(['serve', '--config', `${data}/config.json`])
  t.equal(serve.code, 2)
  t.match(serve.stderr, /unknown key 'colour'/)
  const env = await interlog(['serve', '--data', data], undefined, { INTERLOG_DURABILITY: 'sometimes' })
  t.equal(env.code, 2)
  t.match(env.stderr, /INTERLOG_DURABILITY/)
})

t.test('interlog demo converges and exits 0', async (t) => {
  const demo = await interlog(['demo', '--json', '--events', '100'])
  t.equal(demo.code, 0, demo.stderr)
  const report = JSON.parse(demo.stdout.trim().split('\n').pop()!) as { agree: boolean, events: number }
  t.equal(report.agree, true)
  t.equal(report.events, 600)
})

t.test('flags win over the environment; INTERLOG_SOCKET stands in for --socket; a closed pipe is not a failure', async (t) => {
  const data = tempDir(t)
  const daemon = await startDaemon(t, data)
  await interlog(['append', '--data', data], 'one\ntwo\nthree\n')
  const viaFlag = await interlog(['status', '--data', data, '--json'], undefined, { INTERLOG_SOCKET: `${data}/nothing.sock` })
  t.equal(viaFlag.code, 0, viaFlag.stderr)
  t.equal((JSON.parse(viaFlag.stdout) as { via: string }).via, 'daemon', '--data finds the daemon despite a stale INTERLOG_SOCKET')
  const viaEnv = await interlog(['status', '--json'], undefined, { INTERLOG_SOCKET: daemon.socket })
  t.equal(viaEnv.code, 0)
  const unreachable = await interlog(['status'], undefined, { INTERLOG_SOCKET: `${data}/nothing.sock` })
  t.equal(unreachable.code, 4, 'INTERLOG_SOCKET with no daemon: exit 4, like --socket')
  const piped = await new Promise<number | null>((resolve) => {
    const shell = spawn('sh', ['-c', `"${process.execPath}" "${CLI}" read --socket "${daemon.socket}" | head -c 10 >/dev/null; exit $(( $(echo \${PIPESTATUS:-0}) ))`])
    shell.on('exit', (code) => resolve(code))
  })
  t.equal(piped, 0)
})

/** Every file under `dir` (relative path), its bytes' SHA-256, size and mtime. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const file = `${entry.parentPath}/${entry.name}`
    const stat = fs.statSync(file)
    out[file.slice(dir.length)] = entry.isFile()
      ? `${crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex')} ${stat.size} ${stat.mtimeMs}`
      : `dir ${stat.mtimeMs}`
  }
  return out
}

t.test('read, tail, status and verify change nothing on disk, even with a torn tail an open would cut', async (t) => {
  const data = tempDir(t)
  const directory = `${data}/logs/main`
  const log = await openLog(directory, { encryption: { keys: [{ id: 1, key: new Uint8Array(32).fill(3) }] } })
  for (let i = 0; i < 20; i++) await log.append(new Uint8Array(100).fill(i))
  await log.close()
  // Garbage after the last record, as a torn flush leaves it: a writable open cuts it.
  const segment = `${directory}/000000000000.seg`
  const fd = fs.openSync(segment, 'r+')
  fs.writeSync(fd, Buffer.alloc(300, 0xab), 0, 300, 4096 * 3 + 100)
  fs.closeSync(fd)
  const before = snapshot(data)
  for (const args of [['read'], ['tail'], ['status'], ['status', '--json'], ['verify'], ['verify', '--json'], ['read', '--format', 'hex']]) {
    const run = await interlog([...args, '--data', data])
    t.ok(run.code === 0 || run.code === 1, `interlog ${args.join(' ')} ran (exit ${run.code}) ${run.stderr}`)
  }
  const readOnly = await openLog(directory, { readOnly: true, onWarning: () => undefined })
  t.equal(readOnly.length, 20, 'a read-only open sees the events before the torn tail')
  t.equal(readOnly.truncations.length, 1, 'and reports the tail it would cut')
  await t.rejects(readOnly.append(new Uint8Array(1)), { code: 'INVALID_ARGUMENT' }, 'and appends nothing')
  await readOnly.close()
  t.same(snapshot(data), before, 'no file was created, written, truncated or removed, and none was touched')
  const warnings: string[] = []
  const writable = await openLog(directory, { encryption: { keys: [{ id: 1, key: new Uint8Array(32).fill(3) }] }, onWarning: (w) => { warnings.push(w.code) } })
  t.same(warnings, ['TRUNCATED_TAIL'], 'a writable open cuts the torn tail')
  t.equal(writable.length, 20)
  await writable.close()
})
