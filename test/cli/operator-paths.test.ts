// The paths an operator touches on day one, run as real processes: a sensor piping lines into
// `interlog append`, bytes that are not UTF-8, `tail --follow` of a log directory, a daemon that
// boots offline, SIGHUP, a mistyped data path, a user without rights, `--version`.

import t from 'tap'
import { execFileSync, spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { connect } from '../../index.js'
import { startDaemon, CLI } from '../helpers/daemon.js'
import { tempDir } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

interface Run { code: number | null, stdout: string, stderr: string }

/** A running `interlog` process whose stdin the test writes as it goes. */
interface Live {
  child: ChildProcessWithoutNullStreams
  stdout: () => string
  stderr: () => string
  exited: Promise<Run>
}

/** The unprivileged user the permission test runs the CLI as. */
const NOBODY = { uid: 65534, gid: 65534 }

/**
 * The CLI as `NOBODY` may run it: this checkout's, or, when the checkout sits where that user may
 * not go (a clone in a 0700 temp directory), a copy of the built package with its production
 * dependencies in a directory anyone may read.
 */
function cliForNobody(t: { teardown(fn: () => unknown): void }): string {
  if (spawnSync('test', ['-r', CLI], NOBODY).status === 0) return CLI
  const root = path.resolve(path.dirname(CLI), '..', '..')
  const copy = tempDir(t)
  fs.chmodSync(copy, 0o755)
  const dependencies = execFileSync('npm', ['ls', '--omit=dev', '--parseable', '--all'], { cwd: root }).toString().split('\n')
    .filter((dir) => dir.startsWith(path.join(root, 'node_modules') + path.sep))
  for (const dir of [path.join(root, 'dist'), path.join(root, 'package.json'), ...dependencies]) {
    fs.cpSync(dir, path.join(copy, path.relative(root, dir)), { recursive: true })
  }
  return path.join(copy, path.relative(root, CLI))
}

function start(args: string[], options: { uid?: number, gid?: number, cli?: string } = {}): Live {
  // As another user: without the test runner's NODE_OPTIONS hooks (they write files this user may not).
  const { cli = CLI, ...ids } = options
  const [command, argv] = ids.uid === undefined ? [process.execPath, [cli, ...args]] : ['env', ['-u', 'NODE_OPTIONS', process.execPath, cli, ...args]]
  const child = spawn(command, argv, { stdio: ['pipe', 'pipe', 'pipe'], ...ids })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('latin1') })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<Run>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })))
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

function interlog(args: string[], stdin: string | Buffer = '', options: { uid?: number, gid?: number, cli?: string } = {}): Promise<Run> {
  const live = start(args, options)
  live.child.stdin.end(stdin)
  return live.exited
}

const lines = (text: string): string[] => text.split('\n').filter((line) => line.length > 0)

for (const via of ['directory', 'socket'] as const) {
  t.test(`a pipe into append (${via}): each line is acknowledged before the next is written`, async (t) => {
    const data = tempDir(t)
    let target: string[]
    if (via === 'socket') {
      const daemon = await startDaemon(t, data)
      target = ['--socket', daemon.socket]
    } else {
      t.equal((await interlog(['init', '--data', data])).code, 0)
      target = ['--data', data]
    }
    const sensor = start(['append', ...target])
    for (let i = 1; i <= 3; i++) {
      sensor.child.stdin.write(`reading ${i}\n`)
      await until(() => lines(sensor.stdout()).length === i, 10_000, `the id of line ${i}`, 20)
      t.match(lines(sensor.stdout())[i - 1], /^[0-9a-f]{32} \d+$/, `line ${i} is acknowledged while stdin stays open`)
    }
    sensor.child.stdin.end()
    const done = await sensor.exited
    t.equal(done.code, 0, done.stderr)
    const read = await interlog(['read', ...target, '--format', 'json'])
    t.same(lines(read.stdout).map((line) => (JSON.parse(line) as { text: string }).text), ['reading 1', 'reading 2', 'reading 3'])
  })
}

t.test('a line the log refuses is reported by its number; the lines around it are appended; exit 3', async (t) => {
  const data = tempDir(t)
  await interlog(['init', '--data', data])
  const big = 'x'.repeat(2 << 20)
  const run = await interlog(['append', '--data', data, '--json'], `first\n${big}\nthird\n`)
  t.equal(run.code, 3)
  t.match(run.stderr, /line 2 refused: TOO_LARGE/, 'the refused line is named by its number')
  t.match(run.stderr, /1 of 3 lines refused \(2\); the others were appended/)
  t.same(lines(run.stdout).map((line) => (JSON.parse(line) as { line: number }).line), [1, 3], 'the ids printed say which line each is')
  const read = await interlog(['read', '--data', data, '--format', 'json'])
  t.same(lines(read.stdout).map((line) => (JSON.parse(line) as { text: string }).text), ['first', 'third'])
})

t.test('line mode keeps bytes that are not UTF-8 exactly as they came', async (t) => {
  const data = tempDir(t)
  await interlog(['init', '--data', data])
  const odd = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x41])
  const run = await interlog(['append', '--data', data], Buffer.concat([odd, Buffer.from('\r\nplain\n')]))
  t.equal(run.code, 0, run.stderr)
  const raw = Buffer.from((await interlog(['read', '--data', data, '--format', 'raw'])).stdout, 'latin1')
  t.same(raw.subarray(4, 4 + raw.readUInt32BE(0)), odd, 'the payload is the line\'s bytes (no U+FFFD; the CR before the newline is dropped)')
})

t.test('tail --follow of a log directory follows appends made by other commands', async (t) => {
  const data = tempDir(t)
  await interlog(['init', '--data', data])
  await interlog(['append', '--data', data], 'before\n')
  const follower = start(['tail', '--data', data, '--follow', '--format', 'json'])
  const texts = (): string[] => lines(follower.stdout()).map((line) => (JSON.parse(line) as { text: string }).text)
  await until(() => texts().length === 1, 10_000, 'the backlog', 20)
  const appended = await interlog(['append', '--data', data], 'after 1\nafter 2\n')
  t.equal(appended.code, 0, `another command appends to the directory while it is followed: ${appended.stderr}`)
  await until(() => texts().length === 3, 10_000, 'the new events', 20)
  t.same(texts(), ['before', 'after 1', 'after 2'])
  follower.child.kill('SIGINT')
  t.equal((await follower.exited).code, 0, 'SIGINT ends it cleanly')
})

t.test('an offline boot: the socket opens at once, a sensor appends, sync errors are said once with summaries', async (t) => {
  // A broker that accepts TCP and never answers (a captive network), and one that refuses.
  const blackhole = net.createServer(() => undefined)
  await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blackhole.close())
  const refusing = net.createServer()
  await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve))
  const refusedPort = (refusing.address() as net.AddressInfo).port
  await new Promise((resolve) => refusing.close(resolve))

  for (const [what, port] of [['a broker that never answers', (blackhole.address() as net.AddressInfo).port], ['a refused connection', refusedPort]] as const) {
    const data = tempDir(t)
    const config = path.join(data, 'config.json')
    fs.writeFileSync(config, JSON.stringify({ broker: `mqtt://127.0.0.1:${port}`, syncSummaryMs: 1500 }))
    const started = Date.now()
    const daemon = await startDaemon(t, data, ['--config', config])
    const client = await connect(daemon.socket)
    await client.append(new TextEncoder().encode('offline reading'))
    const status = await client.status()
    t.equal((status['sync'] as { connected: boolean }).connected, false, `${what}: the append was acknowledged while sync is not connected`)
    t.ok(Date.now() - started < 5000, `${what}: the sensor appended ${Date.now() - started} ms after the daemon was started (it used to wait 5 s for the broker)`)
    await client.close()
    if (what === 'a refused connection') {
      await until(() => (daemon.output().match(/still not connected/g) ?? []).length >= 2, 20_000, 'two summaries', 100)
      const errors = daemon.output().split('\n').filter((line) => line.startsWith('<3>'))
      t.equal(errors.length, 1, `the failing connection is said once, not every second: ${errors.join(' | ')}`)
      t.match(daemon.output(), /still not connected to mqtt:\/\/127\.0\.0\.1:\d+ after \d+ s: \d+ failed tries so far/, 'and summarised')
    }
    t.equal(await daemon.stop(), 0)
  }
})

t.test('SIGHUP reloads a valid configuration, keeps running on an invalid one; SIGTERM exits 0', async (t) => {
  const data = tempDir(t)
  const config = path.join(data, 'config.json')
  fs.writeFileSync(config, JSON.stringify({ durability: 'interval' }))
  const daemon = await startDaemon(t, data, ['--config', config])
  const append = async (text: string): Promise<number> => {
    const client = await connect(daemon.socket)
    try {
      await client.append(new TextEncoder().encode(text))
      return await client.length()
    } finally {
      await client.close()
    }
  }
  t.equal(await append('before'), 1)
  fs.writeFileSync(config, JSON.stringify({ durability: 'fsync' }))
  daemon.child.kill('SIGHUP')
  await until(() => (daemon.output().match(/local API listening/g) ?? []).length === 2, 15_000, 'the daemon to start again', 50)
  t.match(daemon.output(), /SIGHUP: reloading/)
  t.equal(await append('after a reload'), 2, 'served after the reload, the log as it was')
  fs.writeFileSync(config, '{"durability": "sometimes"}')
  daemon.child.kill('SIGHUP')
  await until(() => /SIGHUP: the configuration is not valid, the daemon goes on as it was/.test(daemon.output()), 15_000, 'the refusal', 50)
  t.equal(await append('after a refused reload'), 3, 'an invalid configuration leaves the daemon serving')
  t.equal(daemon.child.exitCode, null, 'still running')
  t.equal(await daemon.stop('SIGTERM'), 0, 'SIGTERM: exit 0')
  t.match(daemon.output(), /stopped: logs flushed and closed/)
})

t.test('serve on a data path without a log refuses to start (exit 2) and creates nothing, unless --init', async (t) => {
  const base = tempDir(t)
  const typo = path.join(base, 'var-lib-interlgo')
  const run = await interlog(['serve', '--data', typo])
  t.equal(run.code, 2)
  t.match(run.stderr, /no log main in .*var-lib-interlgo \(the directory does not exist\): check the data path/)
  t.notOk(fs.existsSync(typo), 'nothing was created')
  const empty = path.join(base, 'empty')
  fs.mkdirSync(empty)
  t.equal((await interlog(['serve', '--data', empty])).code, 2, 'an existing directory without a log: the same')
  t.same(fs.readdirSync(empty), [])
})

t.test('serve as a user without rights on the data directory: a plain error naming the user and the path, exit 3', { skip: process.getuid?.() !== 0 ? 'needs root to run as another user' : false }, async (t) => {
  const base = tempDir(t)
  fs.chmodSync(base, 0o755)
  const cli = cliForNobody(t)
  for (const mode of [0o755, 0o700]) {
    const data = path.join(base, `data-${mode.toString(8)}`)
    t.equal((await interlog(['init', '--data', data])).code, 0)
    fs.chmodSync(data, mode)
    const run = await interlog(['serve', '--data', data, '--socket', path.join(base, `s-${mode.toString(8)}.sock`)], '', { ...NOBODY, cli })
    t.equal(run.code, 3, `mode ${mode.toString(8)}: exit 3`)
    t.match(run.stderr, /permission denied.*runs as (user \w+ \()?uid 65534/i, `mode ${mode.toString(8)}: says the user`)
    t.match(run.stderr, new RegExp(data.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'and the path')
    t.notMatch(run.stderr, /\n\s+at /, 'no stack trace')
  }
})

t.test('--version prints the package version', async (t) => {
  const { version } = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  for (const flag of ['--version', '-V', 'version']) {
    const run = await interlog([flag])
    t.equal(run.code, 0)
    t.equal(run.stdout, `interlog ${version}\n`, flag)
  }
})
