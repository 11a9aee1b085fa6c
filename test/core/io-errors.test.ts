// A failed write or fsync: the log never acknowledges again (IO, read-only), and reopening
// recovers what was durable. The fault is real: a tiny tmpfs fills up (ENOSPC). Needs root to
// mount it; the test says so and skips where it cannot.

import t from 'tap'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { openLog } from '../../index.js'
import { collect, payload, tempDir, text } from '../helpers/temp.js'

function mountTiny(t: { teardown(fn: () => unknown): void }, bytes: number): string | undefined {
  const dir = tempDir(t)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'ignore' })
  } catch {
    return undefined
  }
  t.teardown(() => execFileSync('umount', ['-l', dir], { stdio: 'ignore' }))
  return dir
}

const canMount = process.getuid?.() === 0
t.test('a full disk turns the log read-only with IO; reopening keeps every acknowledged event',
  { skip: canMount ? false : 'needs root to mount a small tmpfs' }, async (t) => {
  const mount = mountTiny(t, 512 << 10)
  if (mount === undefined) throw new Error('mount -t tmpfs failed although running as root')
  const dir = path.join(mount, 'log')
  const options = { segmentBytes: 1 << 20, cacheBytes: 64 << 10, maxEventBytes: 4096, directIo: 'off' as const }
  const log = await openLog(dir, options)
  const acknowledged: string[] = []
  let failure: unknown
  for (let i = 0; i < 1000 && failure === undefined; i++) {
    const text = `event ${i}`.padEnd(1000, '.')
    try {
      await log.append(payload(text))
      acknowledged.push(text)
    } catch (error) {
      failure = error
    }
  }
  t.match(failure, { code: 'IO' }, 'the append that hit ENOSPC rejects with IO')
  t.ok(acknowledged.length > 100, `${acknowledged.length} events were acknowledged before the disk filled`)
  await t.rejects(log.append(payload('after')), { code: 'IO' }, 'never acknowledges again')
  await t.rejects(log.merge([{ origin: 'a'.repeat(32), pos: 0, time: 1, payload: payload('x') }]), { code: 'IO' })
  t.equal((await collect(log.read({ from: 0, to: 1 }))).length, 1, 'reads still work')
  await log.close()

  // Make room (as an operator would) and reopen: what was acknowledged is there.
  fs.rmSync(path.join(dir, 'checkpoint'), { force: true })
  execFileSync('mount', ['-o', 'remount,size=4m', mount], { stdio: 'ignore' })
  const reopened = await openLog(dir, { ...options, onWarning: () => undefined })
  const events = await collect(reopened.read())
  t.ok(events.length >= acknowledged.length)
  t.same(events.slice(0, acknowledged.length).map((e) => text(e.payload)), acknowledged)
  await reopened.append(payload('after recovery'))
  t.ok((await reopened.verify()).ok)
  await reopened.close()
})
