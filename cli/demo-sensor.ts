// A sensor process of the demo: appends `count` CBOR readings { sensor, value, unit } through a
// node's socket, in small batches, then exits. Usage: demo-sensor SOCKET SENSOR UNIT COUNT SEED
import { encode } from 'cbor-x'
import { connect } from '../daemon/index.js'

const [socket, sensor, unit, countText, seedText] = process.argv.slice(2)
const count = Number(countText)
let state = Number(seedText) >>> 0
const random = (): number => {
  state = (state * 1664525 + 1013904223) >>> 0
  return state / 2 ** 32
}
const client = await connect(socket!)
let value = unit === 'C' ? 20 : 50
for (let sent = 0; sent < count;) {
  const batch: Uint8Array[] = []
  for (let i = 0; i < 10 && sent < count; i++, sent++) {
    value = Math.round((value + (random() - 0.5) * 2) * 10) / 10
    batch.push(encode({ sensor, value, unit }))
  }
  await client.appendBatch(batch)
  await new Promise((resolve) => setTimeout(resolve, 2))
}
await client.close()
