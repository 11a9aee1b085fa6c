// The log on an injected storage (openLog option `storage`): the simulator's in-memory disk, whose
// power cuts keep, lose or tear what was not synced, directory entries included. What is checked
// here is what a real power cut could take that no test on real files can show: the entries of
// directories the log creates.

import t from 'tap'
import { openLog } from '../../index.js'
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
