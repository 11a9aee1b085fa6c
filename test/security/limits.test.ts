// Hostile sync messages at the limits: oversize, too many vector entries, too many events, CBOR
// claiming huge lengths, deep nesting, bad seals. Each is a ProtocolError within 100 ms, and the
// heap does not grow with what the message claims.

import t from 'tap'
import { encode } from 'cbor-x'
import { SEAL_BYTES } from '../../index.js'
import { MESSAGE_EVENTS_MAX, ProtocolError, VECTOR_ENTRIES_MAX, decodeMessage } from '../../sync/protocol.js'

const ID = 'a'.repeat(32)
const hex = (i: number): string => i.toString(16).padStart(32, '0')

function hostile(): [string, Uint8Array, number][] {
  const bigVector: Record<string, number> = {}
  for (let i = 0; i <= VECTOR_ENTRIES_MAX; i++) bigVector[hex(i)] = 1
  const manyEvents = [[0, MESSAGE_EVENTS_MAX + 1, Buffer.alloc(12 * (MESSAGE_EVENTS_MAX + 1))]]
  const nested = new Uint8Array(100_001).fill(0x81)
  nested[100_000] = 0
  const hugeArrayHeader = new Uint8Array([0xa3, 0x61, 0x76, 0x01, 0x61, 0x6b, 0x61, 0x65, 0x61, 0x65, 0x9b, 0, 0, 0, 1, 0, 0, 0, 0])
  const hugeBytesHeader = new Uint8Array([0x5b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
  const big = 64 << 20
  return [
    ['10 MiB message over the limit', new Uint8Array(10 << 20), 256 << 10],
    ['vector with one entry too many', encode({ v: 2, k: 'v', r: ID, vv: bigVector, o: null, m: 4096 }), big],
    ['events with one entry too many', encode({ v: 2, k: 'e', s: ID, o: ID, r: manyEvents }), big],
    ['CBOR array claiming 2^32 entries', hugeArrayHeader, big],
    ['CBOR bytes claiming 2^32 bytes', hugeBytesHeader, big],
    ['100,000 levels of nesting', nested, big],
    ['a seal of the wrong size', encode({ v: 2, k: 'e', s: ID, o: ID, r: [[0, 1, Buffer.alloc(13), Buffer.alloc(SEAL_BYTES - 1)]] }), big],
    ['a sealed flag that is not true', encode({ v: 2, k: 'e', s: ID, o: ID, r: [[0, 1, Buffer.alloc(13)]], sl: 1 }), big],
  ]
}

t.test('each hostile message is a ProtocolError within 100 ms, with bounded memory', async (t) => {
  const inputs = hostile()
  global.gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  for (const [what, bytes, maxMessageBytes] of inputs) {
    // The best of three: the bound is on the work a message costs, not on what else the machine
    // (other test files run in parallel) is doing meanwhile.
    let ms = Infinity
    let error: unknown = null
    for (let attempt = 0; attempt < 3; attempt++) {
      const started = performance.now()
      try {
        decodeMessage(bytes, maxMessageBytes)
        error = null
      } catch (caught) {
        error = caught
      }
      ms = Math.min(ms, performance.now() - started)
    }
    t.ok(error instanceof ProtocolError, `${what}: ${String(error)}`)
    t.ok(ms < 100, `${what}: rejected in ${ms.toFixed(1)} ms`)
  }
  const grown = process.memoryUsage().heapUsed - heapBefore
  t.ok(grown < 256 << 20, `heap grew ${(grown / 2 ** 20).toFixed(1)} MiB while rejecting messages claiming up to 4 GiB`)
})
