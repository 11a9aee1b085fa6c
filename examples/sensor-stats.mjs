// Read model example 1: per-sensor statistics (count, min, max, mean, last value) kept in a JSON
// file together with the log position they reflect: the exactly-once pattern. State and position
// are written in one atomic step (temp file, fsync, rename), so after a crash the model resumes
// exactly where its state ends: no event counted twice, none missed. --rebuild starts from zero.
//
//   node examples/sensor-stats.mjs (--dir LOGDIR | --socket PATH) [--state FILE] [--rebuild] [--json]
//
// Events are CBOR maps { sensor, value, unit } (what `interlog demo` and the sensor-reading
// validator use); other events are skipped and counted.
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { decode } from 'cbor-x'
import { connect, openLog } from 'interlog'

const { values } = parseArgs({ options: { dir: { type: 'string' }, socket: { type: 'string' }, state: { type: 'string' }, rebuild: { type: 'boolean' }, json: { type: 'boolean' } } })
if ((values.dir === undefined) === (values.socket === undefined)) {
  console.error('usage: sensor-stats (--dir LOGDIR | --socket PATH) [--state FILE] [--rebuild] [--json]')
  process.exit(2)
}
const stateFile = values.state ?? path.join(values.dir ?? '.', 'sensor-stats.json')
const empty = () => ({ position: 0, skipped: 0, sensors: {} })
let state = empty()
if (!values.rebuild && fs.existsSync(stateFile)) state = JSON.parse(fs.readFileSync(stateFile, 'utf8'))

const log = values.socket !== undefined ? await connect(values.socket) : await openLog(values.dir)
for await (const event of log.read({ from: state.position })) {
  let reading
  try {
    reading = decode(event.payload)
  } catch {
    reading = undefined
  }
  if (typeof reading?.sensor !== 'string' || typeof reading.value !== 'number') {
    state.skipped++
  } else {
    const s = state.sensors[reading.sensor] ??= { count: 0, min: reading.value, max: reading.value, sum: 0, last: reading.value, unit: reading.unit ?? '' }
    s.count++
    s.min = Math.min(s.min, reading.value)
    s.max = Math.max(s.max, reading.value)
    s.sum += reading.value
    s.last = reading.value
    s.mean = Math.round((s.sum / s.count) * 1000) / 1000
  }
  state.position = event.localPos + 1
}
await log.close()

// State and position together, atomically: the exactly-once step.
const temporary = `${stateFile}.tmp`
const fd = fs.openSync(temporary, 'w')
fs.writeSync(fd, JSON.stringify(state, null, 2) + '\n')
fs.fsyncSync(fd)
fs.closeSync(fd)
fs.renameSync(temporary, stateFile)

if (values.json) {
  console.log(JSON.stringify(state))
} else {
  console.log(`position ${state.position} (${state.skipped} events skipped)`)
  for (const [name, s] of Object.entries(state.sensors).sort()) {
    console.log(`${name.padEnd(20)} count ${String(s.count).padStart(6)}  min ${s.min}  max ${s.max}  mean ${s.mean}  last ${s.last} ${s.unit}`)
  }
}
