// Quick start: open a log, append events, close, reopen, read them back, verify.
// Run with `npm run example` (after `npm ci`, which builds the package).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { openLog } from 'interlog'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'interlog-quick-start-'))
const encoder = new TextEncoder()
const decoder = new TextDecoder()

let log = await openLog(dir) // durability 'fsync': each append resolves once it is on disk
console.log(`log ${dir}, replica ${log.replicaId}, O_DIRECT ${log.direct}`)
const first = await log.append(encoder.encode('{"sensor":"temp-1","value":21.5}'))
const batch = await log.appendBatch([
  encoder.encode('{"sensor":"temp-1","value":21.7}'),
  encoder.encode('{"sensor":"door","value":"open"}'),
])
console.log('appended', first, batch)
await log.close()

log = await openLog(dir)
console.log(`reopened: ${log.length} events, version vector ${JSON.stringify(log.versionVector())}`)
for await (const event of log.read()) {
  console.log(`  #${event.localPos} ${event.origin.slice(0, 8)}…/${event.pos} ${new Date(event.time).toISOString()} ${decoder.decode(event.payload)}`)
}
const report = await log.verify()
console.log(`verify: ${report.ok ? 'ok' : JSON.stringify(report.damage)} (${report.events} events, ${report.bytes} bytes)`)
await log.close()
fs.rmSync(dir, { recursive: true, force: true })
if (!report.ok || log.length !== 3) process.exit(1)
