// A production install, as a gateway's package would do it: the repository's files in a clean
// directory, `npm ci --omit=dev` (no test or benchmark tools), then the installed CLI serves a log.

import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect } from '../../index.js'
import { tempDir } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

function run(command: string, args: string[], cwd: string): Promise<{ code: number | null, output: string }> {
  return new Promise((resolve) => {
    // Outside the test runner's hooks: an install and a daemon as a user would run them.
    const env = { ...process.env }
    delete env['NODE_OPTIONS']
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.on('exit', (code) => resolve({ code, output }))
  })
}

t.test('npm ci --omit=dev in a clean copy installs a CLI that prints its version and serves a log', async (t) => {
  const copy = tempDir(t)
  // The files a clone has (committed, or new and not ignored): no node_modules, no dist.
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: ROOT }).toString().split('\0').filter((file) => file.length > 0)
  for (const file of files) {
    if (!fs.existsSync(path.join(ROOT, file))) continue // deleted in the work tree
    fs.mkdirSync(path.dirname(path.join(copy, file)), { recursive: true })
    fs.copyFileSync(path.join(ROOT, file), path.join(copy, file))
  }
  // `npm` from PATH: under tap that is node_modules/.bin/npm, the npm 10 node-red brings (Node 20's
  // own npm), and the lock file must suit it as well as npm 11 (it did not, once: an optional peer).
  const install = await run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], copy)
  t.equal(install.code, 0, `npm ci --omit=dev: ${install.output.slice(-2000)}`)
  t.notOk(fs.existsSync(path.join(copy, 'node_modules', 'tap')), 'the dev dependencies are not installed')
  const cli = path.join(copy, 'dist', 'cli', 'main.js')
  const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
  const printed = await run(process.execPath, [cli, '--version'], copy)
  t.equal(printed.output, `interlog ${version}\n`, 'interlog --version')

  const data = tempDir(t)
  const daemon = spawn(process.execPath, [cli, 'serve', '--init', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  daemon.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  daemon.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)))
  t.teardown(() => { daemon.kill('SIGKILL') })
  await until(() => output.includes('local API listening') || daemon.exitCode !== null, 15_000, 'the installed daemon to listen', 50)
  const socket = path.join(data, 'interlog.sock')
  const client = await connect(socket)
  await client.append(new TextEncoder().encode('from the production install'))
  t.equal(await client.length(), 1, 'the installed daemon appends')
  await client.close()
  daemon.kill('SIGTERM')
  t.equal(await exited, 0, `SIGTERM: exit 0 (${output.trim().split('\n').pop() ?? ''})`)
})
