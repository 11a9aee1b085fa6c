// The read-model examples produce the expected output on fixed input; the document example
// converges on two replicas and its merge does not depend on the order of events.

import t from 'tap'
import { execFile } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { encode } from 'cbor-x'
import { openLog } from '../../index.js'
import { tempDir } from '../helpers/temp.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = async (args: string[]): Promise<string> => (await promisify(execFile)(process.execPath, args, { cwd: ROOT })).stdout

t.test('sensor-stats: statistics with their position, incremental, rebuilt from zero on demand', async (t) => {
  const dir = path.join(tempDir(t), 'log')
  const state = path.join(dir, '..', 'stats.json')
  let log = await openLog(dir)
  for (const value of [20, 22, 18]) await log.append(encode({ sensor: 'temp-1', value, unit: 'C' }))
  await log.append(encode({ sensor: 'hum-1', value: 55, unit: '%RH' }))
  await log.append(new TextEncoder().encode('not a reading'))
  await log.close()
  const first = JSON.parse(await run(['examples/sensor-stats.mjs', '--dir', dir, '--state', state, '--json'])) as Record<string, any>
  t.equal(first['position'], 5)
  t.equal(first['skipped'], 1)
  t.match(first['sensors']['temp-1'], { count: 3, min: 18, max: 22, mean: 20, last: 18, unit: 'C' })
  t.match(first['sensors']['hum-1'], { count: 1, min: 55, max: 55, last: 55 })
  log = await openLog(dir)
  await log.append(encode({ sensor: 'temp-1', value: 30, unit: 'C' }))
  await log.close()
  const second = JSON.parse(await run(['examples/sensor-stats.mjs', '--dir', dir, '--state', state, '--json'])) as Record<string, any>
  t.equal(second['position'], 6, 'only the new event was processed')
  t.match(second['sensors']['temp-1'], { count: 4, max: 30, mean: 22.5, last: 30 })
  const rebuilt = JSON.parse(await run(['examples/sensor-stats.mjs', '--dir', dir, '--state', state, '--rebuild', '--json'])) as Record<string, any>
  t.same(rebuilt, second, 'a rebuild from zero gives the same model')
})

t.test('documents: two replicas edit offline, sync, and converge', async (t) => {
  const report = JSON.parse(await run(['examples/documents.mjs', '--json'])) as Record<string, any>
  t.equal(report['converged'], true)
  t.same(report['online']['a'], {
    'depot-1': { type: 'site', value: { city: 'Rotterdam' } },
    'truck-7': { type: 'vehicle', value: { cargo: { kind: 'bananas' }, driver: 'Bruno' } },
  })
  t.same(report['online']['b'], report['online']['a'])
  t.equal(report['history'].length, 6, 'the history of truck-7 lists its six changes')
})

t.test('documents: the merge is independent of the order of events', async (t) => {
  const script = `
    import { encode } from 'cbor-x'
    import { apply, view } from './examples/documents.mjs'
    const events = [
      ['k', 'set', 1, 'a', 1], ['k.x', 'set', 2, 'b', 2], ['k', 'set', 3, 'a', 3], ['k.y', 'set', 4, 'b', 4],
      ['k.y', 'delete', 5, 'a'], ['m.n', 'set', 5, 'b', 'later origin wins a tie'], ['m.n', 'set', 5, 'a', 'loses the tie'],
      ['t', 'set', 10, 'c', 'written under another type: ignored', 'site'],
    ].map(([path, op, time, origin, value, type]) => ({ time, origin: origin.repeat(32), payload: encode({ doc: 'd', type: type ?? 'thing', op, path: path.split('.'), value }) }))
    let seed = 7
    const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
    const results = new Set()
    for (let i = 0; i < 200; i++) {
      const order = [...events].sort(() => random() - 0.5)
      const store = {}
      for (const e of order) apply(store, e)
      results.add(JSON.stringify({ type: store.d.type, value: view(store.d) }))
    }
    console.log(JSON.stringify([...results]))
  `
  const results = JSON.parse(await run(['--input-type=module', '-e', script])) as string[]
  t.equal(results.length, 1, 'every order gives the same document')
  t.same(JSON.parse(results[0]!), { type: 'thing', value: { k: {}, m: { n: 'later origin wins a tie' } } },
    'LWW per attribute: k became a map after its register, k.y was deleted, ties go to the larger origin; the earliest write fixes the type')
})

t.test('presence: online state, events and lag of each node from the status messages', async (t) => {
  const report = JSON.parse((await run(['examples/presence.mjs', '--json'])).trim().split('\n').pop()!) as Record<string, any[]>
  t.same(report['before']!.map((r) => [r.name, r.online, r.lag]).sort(), [['cloud', true, 0], ['gateway-a', true, 0], ['gateway-b', true, 0]])
  t.same(report['after']!.map((r) => [r.name, r.online, r.lag]).sort(), [['cloud', true, 0], ['gateway-a', false, 1], ['gateway-b', true, 0]])
})
