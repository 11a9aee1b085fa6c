// A full disk, for real: a small tmpfs (buffered writes) and a small ext4 image on a loop device
// (O_DIRECT), filled up under durable appends. Writes stall with NO_SPACE, said once; no reader
// ever sees an event that is then gone; appends go on once space is freed, without a restart; a
// reopen holds every event any reader saw. Needs root to mount; the test says so and skips where
// it cannot.

import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { openLog, type LogWarning } from '../../index.js'
import { collect, payload, text } from '../helpers/temp.js'
import { until } from '../helpers/until.js'

interface Mount { dir: string, free(): void }

/** A tmpfs of `bytes`; freeing space remounts it four times larger. */
function mountTmpfs(t: { teardown(fn: () => unknown): void }, bytes: number): Mount | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interlog-tmpfs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'ignore' })
  } catch {
    fs.rmdirSync(dir)
    return undefined
  }
  t.teardown(() => {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' })
    fs.rmdirSync(dir)
  })
  return { dir, free: () => execFileSync('mount', ['-o', `remount,size=${bytes * 4}`, dir], { stdio: 'ignore' }) }
}

/** An ext4 file system of `bytes` on a loop device, filled but for `leftBytes`; freeing space deletes the filler. */
function mountExt4(t: { teardown(fn: () => unknown): void }, bytes: number, leftBytes: number): Mount | undefined {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'interlog-ext4-'))
  const image = path.join(work, 'disk.img')
  const dir = path.join(work, 'mnt')
  fs.mkdirSync(dir)
  let mounted = false
  t.teardown(() => {
    if (mounted) execFileSync('umount', ['-d', dir], { stdio: 'ignore' })
    fs.rmSync(work, { recursive: true, force: true })
  })
  try {
    fs.writeFileSync(image, Buffer.alloc(0))
    fs.truncateSync(image, bytes)
    execFileSync('mkfs.ext4', ['-q', '-F', image], { stdio: 'ignore' })
    execFileSync('mount', ['-o', 'loop', image, dir], { stdio: 'ignore' })
    mounted = true
  } catch {
    return undefined
  }
  const stat = fs.statfsSync(dir)
  const filler = path.join(dir, 'filler')
  fs.writeFileSync(filler, Buffer.alloc(Math.max(0, stat.bavail * stat.bsize - leftBytes)))
  return { dir, free: () => fs.rmSync(filler) }
}

async function fillUnderDurableAppends(t: Test, mount: Mount, directIo: 'off' | 'on'): Promise<void> {
  const dir = path.join(mount.dir, 'log')
  const warnings: LogWarning[] = []
  const options = { segmentBytes: 1 << 20, cacheBytes: 64 << 10, maxEventBytes: 4096, directIo, identity: false, onWarning: (w: LogWarning) => { warnings.push(w) } }
  const log = await openLog(dir, options)
  t.equal(log.direct, directIo === 'on', `O_DIRECT ${directIo}`)

  // Readers: a tail, and a poller of length; neither may ever run ahead of what is durable.
  const seen: string[] = []
  const ahead: string[] = []
  const abort = new AbortController()
  const tailing = (async () => {
    for await (const event of log.tail({ signal: abort.signal })) {
      if (event.localPos >= log.durableLength) ahead.push(`tail saw ${event.localPos} with ${log.durableLength} durable`)
      seen[event.localPos] = text(event.payload)
    }
  })()
  const poller = setInterval(() => {
    if (log.length > log.durableLength) ahead.push(`length ${log.length} with ${log.durableLength} durable`)
  }, 1)

  const acknowledged = new Map<number, string>()
  let refused: { code?: string, message: string } | undefined
  let next = 0
  const appender = async (): Promise<void> => {
    while (refused === undefined) {
      const body = `event ${next++}`.padEnd(600, '.')
      try {
        const id = await log.append(payload(body))
        acknowledged.set(id.pos, body)
      } catch (error) {
        refused ??= error as { code?: string, message: string }
      }
    }
  }
  const appenders = Promise.all(Array.from({ length: 8 }, appender))
  // Appenders block on their batch in flight when the disk fills; a prober sees the refusal.
  await until(() => {
    if (refused === undefined && warnings.some((w) => w.code === 'NO_SPACE')) {
      log.append(payload('probe')).catch((error: { code?: string, message: string }) => { refused ??= error })
    }
    return refused !== undefined
  }, 60_000, 'the disk to fill', 10)
  t.equal(refused?.code, 'NO_SPACE', `an append on the full disk is refused with NO_SPACE: ${refused?.message}`)
  t.match(refused?.message, /no space left/, 'the message says the disk is full')
  t.ok(log.noSpace, 'the log says it is stalled')
  t.ok(acknowledged.size > 50, `${acknowledged.size} events were acknowledged before the disk filled`)
  await t.rejects(log.append(payload('refused')), { code: 'NO_SPACE' }, 'appends are refused while the disk is full')
  await t.rejects(log.merge([{ origin: 'a'.repeat(32), pos: 0, time: 1, payload: payload('x') }]), { code: 'NO_SPACE' }, 'so are merges')
  t.equal((await collect(log.read({ from: 0, to: 1 }))).length, 1, 'reads go on')
  t.equal(log.length, log.durableLength, 'readers see exactly what is durable')

  mount.free()
  await until(() => warnings.some((w) => w.code === 'SPACE_AVAILABLE'), 10_000, 'writes to go on once space is freed', 10)
  await appenders
  const after = await log.append(payload('after the disk had room again'))
  t.equal(after.pos, log.length - 1, 'an append after freeing space is acknowledged, without a restart')
  t.equal(warnings.filter((w) => w.code === 'NO_SPACE').length, 1, 'the full disk was reported once')
  t.notOk(log.noSpace)

  clearInterval(poller)
  abort.abort()
  await tailing
  t.same(ahead, [], 'no reader ever saw an event before it was durable')
  await log.close()

  const reopened = await openLog(dir, { ...options, onWarning: () => undefined })
  const events = await collect(reopened.read())
  const gone = seen.flatMap((body, pos) => (body !== undefined && (events[pos] === undefined || text(events[pos]!.payload) !== body) ? [pos] : []))
  t.same(gone, [], `every one of the ${seen.filter((body) => body !== undefined).length} events readers saw is still there after a reopen`)
  const lost = [...acknowledged].filter(([pos, body]) => events[pos] === undefined || text(events[pos]!.payload) !== body)
  t.same(lost, [], 'and so is every acknowledged one')
  t.ok((await reopened.verify()).ok, 'verify finds nothing wrong')
  await reopened.close()
}

const root = process.getuid?.() === 0

t.test('a full tmpfs under durable appends stalls with NO_SPACE, hides nothing it then loses, and writes again once space is freed',
  { skip: root ? false : 'needs root to mount a small tmpfs' }, async (t) => {
  const mount = mountTmpfs(t, 512 << 10)
  if (mount === undefined) throw new Error('mount -t tmpfs failed although running as root')
  await fillUnderDurableAppends(t, mount, 'off')
})

t.test('a full ext4 disk under durable O_DIRECT appends does the same',
  { skip: root ? false : 'needs root to mount a loop device' }, async (t) => {
  const mount = mountExt4(t, 8 << 20, 300 << 10)
  if (mount === undefined) throw new Error('mkfs.ext4 or mount -o loop failed although running as root (.ci/run installs e2fsprogs)')
  await fillUnderDurableAppends(t, mount, 'on')
})
