// Validators gate appends (all or nothing) and merges (reject, quarantine, release); JavaScript
// and WebAssembly validators accept, reject, throw and trap without ever crashing the log.

import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { encode } from 'cbor-x'
import { openLog, LogError, type Quarantine } from '../../index.js'
import { collect, payload, tempDir } from '../helpers/temp.js'
import { validatorWat, wat } from '../helpers/wat.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SENSOR_MODULE = path.join(ROOT, 'dist/validators/examples/sensor-reading.js')
const SIZE_MODULE = path.join(ROOT, 'dist/validators/examples/size-limit.js')
const READING_WASM = path.join(ROOT, 'validators/examples/wasm/reading.wasm')

function reading(sensorId: number, value: number): Uint8Array {
  const bytes = new Uint8Array(8)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, sensorId, true)
  view.setFloat32(4, value, true)
  return bytes
}

async function rejection(promise: Promise<unknown>): Promise<LogError> {
  const error = await promise.then(() => undefined, (e: unknown) => e)
  if (!(error instanceof LogError)) throw new Error(`expected a LogError, got ${String(error)}`)
  return error
}

t.test('a JavaScript module validator accepts and rejects CBOR sensor readings', async (t) => {
  const log = await openLog(tempDir(t), { validators: { append: [{ module: SENSOR_MODULE }] } })
  t.teardown(() => log.close())
  await log.append(encode({ sensor: 'temp-1', value: 21.5, unit: 'C' }))
  const error = await rejection(log.append(encode({ sensor: 'temp-1', value: 300, unit: 'C' })))
  t.equal(error.code, 'VALIDATION')
  t.equal(error.details['validator'], 'append validator 0')
  t.match(error.message, /300 C is outside -40\.\.125/)
  t.match(error.details['reason'], /outside/)
  await t.rejects(log.append(payload('not cbor at all \xff')), { code: 'VALIDATION' })
  t.equal(log.length, 1)
})

t.test('one rejection rejects the whole batch and nothing is written', async (t) => {
  const log = await openLog(tempDir(t), { validators: { append: [{ module: SIZE_MODULE, name: 'size' }] } })
  t.teardown(() => log.close())
  await log.appendBatch([payload('a'), payload('b')])
  const error = await rejection(log.appendBatch([payload('c'), new Uint8Array(5000), payload('d')]))
  t.equal(error.details['validator'], 'size')
  t.equal(error.details['index'], 1)
  t.match(error.message, /payload 1 of the batch/)
  t.equal(log.length, 2)
  t.same((await collect(log.read())).length, 2)
})

t.test('a WebAssembly validator accepts and rejects, with the reason from its message export', async (t) => {
  const log = await openLog(tempDir(t), { validators: { append: [{ wasm: READING_WASM, name: 'reading.wasm' }] } })
  t.teardown(() => log.close())
  await log.append(reading(7, 21.5))
  await log.append(reading(7, -40))
  const cases: [Uint8Array, RegExp][] = [
    [reading(7, 126), /out of range/],
    [reading(0, 20), /sensor id 0/],
    [reading(7, Number.NaN), /not a number/],
    [payload('short'), /must be 8 bytes/],
  ]
  for (const [bytes, reason] of cases) {
    const error = await rejection(log.append(bytes))
    t.equal(error.code, 'VALIDATION')
    t.equal(error.details['validator'], 'reading.wasm')
    t.match(error.details['reason'], reason)
  }
  t.equal(log.length, 2)
})

t.test('WebAssembly given as bytes; a payload at the bound is validated, over it is TOO_LARGE', async (t) => {
  const bytes = await wat(validatorWat(`(i32.ne (local.get $len) (i32.const 65536))`, `
    (func (export "message") (param i32) (result i32) (i32.const 0))`))
  // alloc puts the payload at 1024; memory may grow to 2 pages: 65536 bytes at 1024 need both.
  const grow = await wat(`(module (memory (export "memory") 1 2)
    (func (export "alloc") (param $len i32) (result i32)
      (drop (memory.grow (i32.const 1))) (i32.const 1024))
    (func (export "validate") (param $ptr i32) (param $len i32) (result i32)
      (i32.ne (i32.load8_u (i32.add (local.get $ptr) (i32.sub (local.get $len) (i32.const 1)))) (i32.const 7))))`)
  const log = await openLog(tempDir(t), { maxEventBytes: 65536, validators: { append: [{ wasm: grow, name: 'last-byte' }, { wasm: bytes, name: 'exact' }] } })
  t.teardown(() => log.close())
  await log.append(new Uint8Array(65536).fill(7))
  await t.rejects(log.append(new Uint8Array(65537)), { code: 'TOO_LARGE' })
  const error = await rejection(log.append(new Uint8Array(100).fill(7)))
  t.equal(error.details['validator'], 'exact')
  t.equal(error.details['reason'], 'rejected with code 1', 'an empty message falls back to the code')
})

t.test('traps are rejections with a clear reason, and the validator keeps working after them', async (t) => {
  const trapping = await wat(validatorWat(`
    (if (i32.eq (local.get $len) (i32.const 1)) (then unreachable))
    (if (i32.eq (local.get $len) (i32.const 2)) (then (drop (i32.load (i32.const 200000)))))
    (if (i32.eq (local.get $len) (i32.const 3)) (then (drop (call $recurse (i32.const 0)))))
    (i32.const 0)`, `(func $recurse (param $n i32) (result i32) (call $recurse (i32.add (local.get $n) (i32.const 1))))`))
  const log = await openLog(tempDir(t), { validators: { append: [{ wasm: trapping, name: 'trapper' }] } })
  t.teardown(() => log.close())
  const unreachable = await rejection(log.append(new Uint8Array(1)))
  t.match(unreachable.details['reason'], /trap: unreachable/)
  const outOfBounds = await rejection(log.append(new Uint8Array(2)))
  t.match(outOfBounds.details['reason'], /trap: memory access out of bounds/)
  const overflow = await rejection(log.append(new Uint8Array(3)))
  t.match(overflow.details['reason'], /stack overflow/)
  await log.append(new Uint8Array(4))
  t.equal(log.length, 1, 'the log and the validator go on after traps')
})

t.test('a JavaScript validator that throws or returns a Promise rejects, naming itself', async (t) => {
  function explosive(event: { payload: Uint8Array }): string | undefined {
    if (event.payload[0] === 1) throw new TypeError('boom')
    return undefined
  }
  const log = await openLog(tempDir(t), {
    validators: { append: [explosive, { function: () => Promise.resolve(undefined) as never, name: 'async-by-mistake' }] },
  })
  t.teardown(() => log.close())
  const thrown = await rejection(log.append(new Uint8Array([1])))
  t.equal(thrown.details['validator'], 'explosive')
  t.match(thrown.details['reason'], /threw TypeError: boom/)
  const promised = await rejection(log.append(new Uint8Array([2])))
  t.equal(promised.details['validator'], 'async-by-mistake')
  t.match(promised.details['reason'], /returned a Promise/)
  t.equal(log.length, 0)
})

t.test('sync validators: a rejected remote event quarantines its origin; release takes it again', async (t) => {
  let strict = true
  const dir = tempDir(t)
  const log = await openLog(dir, {
    validators: { sync: [{ name: 'no-bad', function: (e) => (strict && new TextDecoder().decode(e.payload).includes('bad') ? 'contains bad' : undefined) }] },
  })
  t.teardown(() => log.close())
  const noisy = 'd'.repeat(32)
  const good = 'e'.repeat(32)
  const events: Quarantine[] = []
  log.on('quarantine', (q) => events.push(q))
  const result = await log.merge([
    { origin: noisy, pos: 0, time: 1, payload: payload('ok 0') },
    { origin: noisy, pos: 1, time: 1, payload: payload('bad 1') },
    { origin: noisy, pos: 2, time: 1, payload: payload('ok 2') },
    { origin: good, pos: 0, time: 1, payload: payload('fine') },
  ])
  t.equal(result.added, 2, 'the event before the rejection and the other origin are stored')
  t.equal(result.rejected.length, 1)
  t.match(result.rejected[0], { origin: noisy, pos: 1, validator: 'no-bad', reason: 'contains bad' })
  t.equal(result.quarantined, 1, 'the event after it waits behind the quarantine')
  t.same(log.versionVector(), { [noisy]: 1, [good]: 1 })
  t.equal(events.length, 1, 'a quarantine event is emitted')
  t.match(log.quarantined(), [{ origin: noisy, pos: 1 }])

  const later = await log.merge([{ origin: noisy, pos: 1, time: 1, payload: payload('bad 1') }, { origin: good, pos: 1, time: 1, payload: payload('more') }])
  t.equal(later.quarantined, 1, 'a quarantined origin is skipped without running validators again')
  t.equal(later.added, 1, 'other origins keep syncing')

  strict = false // the operator deploys a fixed validator...
  t.equal(log.releaseQuarantine(noisy), true) // ...and lifts the quarantine
  t.same(log.quarantined(), [])
  const resent = await log.merge([1, 2].map((pos) => ({ origin: noisy, pos, time: 1, payload: payload(pos === 1 ? 'bad 1' : 'ok 2') })))
  t.equal(resent.added, 2)
  t.same(log.versionVector(), { [noisy]: 3, [good]: 2 })
})

t.test('load errors fail openLog with INVALID_ARGUMENT naming the validator', async (t) => {
  const dir = tempDir(t)
  const missingExport = await wat(`(module (memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) (i32.const 0)))`)
  const noDefault = path.join(dir, 'no-default.mjs')
  fs.writeFileSync(noDefault, 'export const x = 1\n')
  const cases: [unknown, RegExp][] = [
    [{ module: path.join(dir, 'missing.js'), name: 'gone' }, /'gone'.*does not exist/],
    [{ module: noDefault, name: 'nodefault' }, /'nodefault'.*no default export/],
    [{ wasm: new Uint8Array([0, 1, 2, 3]), name: 'junk' }, /'junk'.*not a valid WebAssembly module/],
    [{ wasm: path.join(dir, 'missing.wasm'), name: 'nofile' }, /'nofile'.*cannot read/],
    [{ wasm: missingExport, name: 'partial' }, /'partial'.*does not export function validate/],
    [{ name: 'nothing' }, /'nothing'.*exactly one of/],
    [42, /append validator 0/],
  ]
  for (const [spec, message] of cases) {
    const error = await rejection(openLog(dir, { validators: { append: [spec as never] } }))
    t.equal(error.code, 'INVALID_ARGUMENT')
    t.match(error.message, message)
  }
  await t.rejects(openLog(dir, { validators: { before: [] } as never }), { code: 'INVALID_ARGUMENT' })
  const log = await openLog(dir)
  t.pass('after failed loads the directory opens normally (the lock was not taken)')
  await log.close()
})

t.test('a module that grows its memory past the bound, or calls an import, is a rejection', async (t) => {
  const greedy = await wat(`(module
    (import "env" "abort" (func $abort (param i32)))
    (memory (export "memory") 1)
    (func (export "alloc") (param $len i32) (result i32) (i32.const 1024))
    (func (export "validate") (param $ptr i32) (param $len i32) (result i32)
      (if (i32.eq (local.get $len) (i32.const 1)) (then (drop (memory.grow (i32.const 1100)))))
      (if (i32.eq (local.get $len) (i32.const 2)) (then (call $abort (i32.const 0))))
      (i32.const 0)))`)
  const log = await openLog(tempDir(t), { validators: { append: [{ wasm: greedy, name: 'greedy' }] } })
  t.teardown(() => log.close())
  t.match((await rejection(log.append(new Uint8Array(1)))).details['reason'], /memory grew beyond the bound of 67108864 bytes/)
  t.match((await rejection(log.append(new Uint8Array(2)))).details['reason'], /called imported function env\.abort/)
  await log.append(new Uint8Array(3))
  t.equal(log.length, 1)
})
