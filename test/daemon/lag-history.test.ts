// Lag in seconds (daemon/lag-history.ts): the age of the oldest thing the other side lacks, from
// timestamped samples of vectors, so that a log written to all the time shows a small steady lag
// instead of one that grows for as long as the writes go on.

import t from 'tap'
import { LAG_SAMPLES_MAX, LagHistory } from '../../daemon/lag-history.js'

t.test('a peer a couple of seconds behind a log written every 100 ms shows a couple of seconds of lag, for an hour', async (t) => {
  const history = new LagHistory()
  let worst = 0
  for (let ms = 0; ms <= 3_600_000; ms += 100) {
    const ours = { a: ms / 100 }
    if (ms % 1000 === 0) history.note(ms, ours, {})
    if (ms % 15_000 === 0 && ms >= 5000) {
      const peer = { a: (ms - 2000) / 100 } // what we held two seconds ago
      const lag = history.peerLagSeconds(ms, ours, peer)
      t.ok(lag >= 1 && lag <= 3, `lag ${lag} s at ${ms / 1000} s`, { diagnostic: false })
      worst = Math.max(worst, lag)
    }
  }
  t.ok(worst <= 3, `never more than 3 s (worst ${worst})`)
})

t.test('a peer that holds everything has no lag; one that stopped holding anything new ages from then', async (t) => {
  const history = new LagHistory()
  for (let s = 0; s <= 600; s++) history.note(s * 1000, { a: s * 10, b: 5 }, {})
  const now = 600_000
  const ours = { a: 6000, b: 5 }
  t.equal(history.peerLagSeconds(now, ours, { a: 6000, b: 5, c: 1 }), 0, 'caught up (and holding more of another origin)')
  const lag = history.peerLagSeconds(now, ours, { a: 3000, b: 5 }) // what we held at 300 s
  t.ok(lag >= 270 && lag <= 300, `behind since about 300 s, known to a tenth: ${lag}`)
  t.equal(history.peerLagSeconds(now, ours, {}), 600, 'a peer holding none: the age of the oldest sample (a lower bound)')
})

t.test('samples stay within their bound, the oldest kept, whatever the uptime', async (t) => {
  const history = new LagHistory()
  for (let s = 0; s < 100_000; s++) history.note(s * 1000, { a: s }, {})
  const samples = (history as unknown as { samples: { at: number }[] }).samples
  t.ok(samples.length <= LAG_SAMPLES_MAX, `${samples.length} samples`)
  t.equal(samples[0]!.at, 0, 'the first sample stays')
  t.equal(samples[samples.length - 1]!.at, 99_999_000, 'the newest is the last noted')
  for (let i = 1; i < samples.length; i++) t.ok(samples[i]!.at > samples[i - 1]!.at, 'in order', { diagnostic: false })
  history.note(100_000_000, { a: 99_999 }, {})
  t.equal(samples.length <= LAG_SAMPLES_MAX && samples[samples.length - 1]!.at, 99_999_000, 'nothing changed: no sample')
})

t.test('an origin an online peer holds more of ages from when a peer first held it, and is 0 once this log holds it', async (t) => {
  const history = new LagHistory()
  // The peer's announced count of origin x runs ahead of ours by a few events at every step: a steady stream.
  for (let s = 0; s <= 3600; s++) history.note(s * 1000, { x: s * 10 }, { x: s * 10 + 5 })
  const now = 3_600_000
  const lag = history.originLagSeconds(now, 'x', 36_000)
  t.ok(lag <= 1, `a stream in flight lags about a second, not an hour: ${lag}`)
  history.note(now + 1000, { x: 36_005 }, { x: 36_005 })
  t.equal(history.originLagSeconds(now + 1000, 'x', 36_005), 0, 'caught up')
  t.equal(history.originLagSeconds(now + 1000, 'y', 0), 0, 'an origin no peer holds more of')
  const stuck = new LagHistory()
  for (let s = 0; s <= 100; s++) stuck.note(s * 1000, { x: 10 }, { x: s >= 40 ? 50 : 10 })
  t.equal(stuck.originLagSeconds(100_000, 'x', 10), 60, 'stuck since a peer first held more, 60 s ago')
})

t.test('when the log\'s own count of an origin shrinks (a move to a new origin), a peer close behind still shows a small lag', async (t) => {
  const history = new LagHistory()
  for (let s = 0; s <= 3000; s++) history.note(s * 1000, { f: s * 10 }, {})
  // The move: the old origin f drops to 12 events this log can vouch for; the new origin g grows.
  for (let s = 3001; s <= 3100; s++) history.note(s * 1000, { f: 12, g: (s - 3000) * 10 }, {})
  const now = 3_100_000
  const lag = history.peerLagSeconds(now, { f: 12, g: 1000 }, { f: 12, g: 980 })
  t.ok(lag <= 3, `a peer 2 s behind on the new origin: ${lag} s, not the age of the samples before the move`)
})
