// The log on an injected storage (openLog option `storage`). On the simulator's in-memory disk,
// whose power cuts keep, lose or tear what was not synced, directory entries included: what a real
// power cut could take that no test on real files can show (the entries of directories the log
// creates). On real files behind a storage whose closes fail: errors no real disk here produces.

import t from 'tap'
import fs from 'node:fs'
import { nodeStorage, openLog } from '../../index.js'
import { tempDir } from '../helpers/temp.js'
import { MemoryDisk } from '../../sim/storage.js'
import { Prng } from '../../sim/prng.js'

const SEEDS = 40
const OPTIONS = { cacheBytes: 64 << 10, segmentBytes: 256 << 10, maxEventBytes: 16 << 10, onWarning: () => undefined }

t.test('a log created in new directories keeps its acknowledged events across a power cut', async (t) => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const log = await openLog('/data/gateway/log', { ...OPTIONS, storage: disk.session() })
    await log.appendBatch([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')])
    await log.simulateCrash()
    disk.crash()
    const reopened = await openLog('/data/gateway/log', { ...OPTIONS, storage: disk.session() })
    if (reopened.length !== 3 || reopened.replicaId !== log.replicaId) {
      t.fail(`seed ${seed}: after the power cut the log holds ${reopened.length} events, replica ${reopened.replicaId} (was ${log.replicaId})`)
    }
    await reopened.close()
  }
  t.pass(`${SEEDS} seeds`)
})

t.test('a consumer position committed in a new log keeps across a power cut', async (t) => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const log = await openLog('/log', { ...OPTIONS, storage: disk.session() })
    await log.appendBatch([Buffer.from('a'), Buffer.from('b')])
    const consumer = log.consumer('model')
    await consumer.commit(1)
    await log.simulateCrash()
    disk.crash()
    const reopened = await openLog('/log', { ...OPTIONS, storage: disk.session() })
    const info = reopened.consumers().find((entry) => entry.name === 'model')
    if (info?.position !== 2) t.fail(`seed ${seed}: the consumer is at ${String(info?.position)} after the power cut, committed 2`)
    await reopened.close()
  }
  t.pass(`${SEEDS} seeds`)
})

t.test('a close that reports EIO after the data was synced fails no append, and nothing is lost', async (t) => {
  const directory = tempDir(t)
  let failedCloses = 0
  // Real files; every close(2) succeeds and then reports EIO, as a file system with deferred write errors may.
  const storage = {
    ...nodeStorage,
    closeSync: (fd: number): void => {
      nodeStorage.closeSync(fd)
      failedCloses++
      throw Object.assign(new Error('EIO: i/o error, close'), { code: 'EIO' })
    },
  }
  const log = await openLog(directory, { ...OPTIONS, segmentBytes: 64 << 10, storage })
  const payload = Buffer.alloc(3000, 7)
  for (let i = 0; i < 60; i++) await log.appendBatch([payload, payload])
  const segments = fs.readdirSync(directory).filter((name) => name.endsWith('.seg')).length
  t.ok(segments >= 3, `the appends rolled segments (${segments} files)`)
  await log.close()
  t.ok(failedCloses > 0, `${failedCloses} closes reported EIO`)
  const reopened = await openLog(directory, { ...OPTIONS, segmentBytes: 64 << 10 })
  t.equal(reopened.length, 120, 'every acknowledged event is there')
  t.ok((await reopened.verify()).ok, 'verify finds nothing wrong')
  await reopened.close()
})
