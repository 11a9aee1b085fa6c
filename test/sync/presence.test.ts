// Presence: the logs of one process share one connection; when that process dies without a
// goodbye, the connection's Last Will takes all of its logs offline at their peers.

import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { openLog, startSync, type PeerInfo } from '../../index.js'
import { startTestBroker } from '../helpers/broker.js'
import { tempDir } from '../helpers/temp.js'

const CHILD = fileURLToPath(new URL('../fixtures/sync-child.mjs', import.meta.url))

t.test('two logs over one connection; SIGKILL of that process takes both offline at their peers', async (t) => {
  const broker = await startTestBroker(t)
  const alpha = await openLog(tempDir(t))
  const beta = await openLog(tempDir(t))
  const syncAlpha = await startSync(alpha, { url: broker.url, logName: 'alpha', announceIntervalMs: 200 })
  const syncBeta = await startSync(beta, { url: broker.url, logName: 'beta', announceIntervalMs: 200 })
  t.teardown(async () => {
    await syncAlpha.close()
    await syncBeta.close()
    await alpha.close()
    await beta.close()
  })
  t.equal(syncAlpha.status().node, syncBeta.status().node, 'this process uses one connection for both logs')

  const child = spawn(process.execPath, [CHILD, tempDir(t), broker.url], { stdio: ['ignore', 'pipe', 'inherit'] })
  const [line] = await once(child.stdout, 'data') as [Buffer]
  const ids = JSON.parse(line.toString()) as { alpha: string, beta: string, nodes: string[] }
  t.equal(ids.nodes[0], ids.nodes[1], 'the child uses one connection for its two logs')

  const waitFor = (sync: typeof syncAlpha, replica: string, online: boolean): Promise<void> => new Promise((resolve) => {
    const check = (): void => {
      if (sync.status().peers.some((peer) => peer.replica === replica && peer.online === online)) {
        sync.off('peer', onPeer)
        resolve()
      }
    }
    const onPeer = (_: PeerInfo): void => check()
    sync.on('peer', onPeer)
    check()
  })
  await Promise.all([waitFor(syncAlpha, ids.alpha, true), waitFor(syncBeta, ids.beta, true)])
  const started = Date.now()
  while (alpha.length < 1 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(alpha.length, 1, 'the child\'s event arrived')

  child.kill('SIGKILL')
  await once(child, 'exit')
  await Promise.all([waitFor(syncAlpha, ids.alpha, false), waitFor(syncBeta, ids.beta, false)])
  t.pass('both of its logs went offline through the Last Will of its connection')
})
