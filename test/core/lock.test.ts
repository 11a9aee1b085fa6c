import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { openLog } from '../../index.js'
import { tempDir } from '../helpers/temp.js'

const DIST = fileURLToPath(new URL('../../dist/index.js', import.meta.url))

t.test('a second open in the same process fails at once with LOCKED', async (t) => {
  const dir = tempDir(t)
  const log = await openLog(dir)
  await t.rejects(openLog(dir), { code: 'LOCKED' })
  await log.close()
  const again = await openLog(dir)
  t.pass('the lock is released by close')
  await again.close()
})

t.test('an open from another process fails at once with LOCKED', async (t) => {
  const dir = tempDir(t)
  const log = await openLog(dir)
  t.teardown(() => log.close())
  const script = `import(${JSON.stringify(DIST)}).then(({ openLog }) => openLog(${JSON.stringify(dir)}))
    .then(() => console.log('OPENED'), (e) => console.log(e.code))`
  const started = Date.now()
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  t.equal(result.stdout.trim(), 'LOCKED')
  t.ok(Date.now() - started < 5000, 'it does not wait for the lock')
})
