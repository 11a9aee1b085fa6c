// The deterministic simulator (sim/) in CI: 1,000 seeds of 3 to 7 replicas running the real log and
// replicator over the simulated disk, broker and clock, with drops, duplicates, delays,
// partitions, broker restarts, replica restarts and power cuts inside an operation or between two
// (unsynced pages kept, lost, torn or garbage; unsynced creations and renames undone), a rogue
// client, allow-lists or open or default trust, encrypted payloads; and seeds replayed twice to the
// same trace and the same bytes on disk. The simulated disk itself: test/sim/memory-storage.test.ts.
// A failure names its seed: `npm run sim -- --seed N --trace` replays it.

import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const MAIN = fileURLToPath(new URL('../../dist/sim/main.js', import.meta.url))
const SEEDS = Number(process.env['INTERLOG_SIM_SEEDS'] ?? 1000)
/** Longer runs: more restarts and crashes of one replica in one run (each crash checks durability). */
const LONG_SEEDS = Number(process.env['INTERLOG_SIM_LONG_SEEDS'] ?? 200)
const LONGER_SEEDS = Number(process.env['INTERLOG_SIM_LONGER_SEEDS'] ?? 40)

function sim(args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    // Without tap's NODE_OPTIONS loader: the simulator runs the built code.
    const env = { ...process.env }
    delete env['NODE_OPTIONS']
    const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test(`${SEEDS} simulated seeds keep safety and converge after the faults heal`, async (t) => {
  const half = Math.ceil(SEEDS / 2)
  const runs = await Promise.all([sim(['--seeds', String(half), '--from', '1']), sim(['--seeds', String(SEEDS - half), '--from', String(half + 1)])])
  for (const run of runs) {
    t.equal(run.code, 0, run.stdout.split('\n').filter((line) => /FAILED|replay|sim:/.test(line)).join('\n') + run.stderr)
    t.match(run.stdout, /(\d+) of \1 seeds passed/)
    t.comment(run.stdout.trim().split('\n').at(-1) ?? '')
  }
})

t.test(`${LONG_SEEDS} seeds of 600 steps and ${LONGER_SEEDS} of 1,200 keep safety and converge`, async (t) => {
  // Seeds far from the short runs', so the two sets do not overlap.
  const runs = await Promise.all([
    sim(['--seeds', String(LONG_SEEDS), '--from', '1000000', '--steps', '600']),
    sim(['--seeds', String(LONGER_SEEDS), '--from', '2000000', '--steps', '1200']),
  ])
  for (const run of runs) {
    t.equal(run.code, 0, run.stdout.split('\n').filter((line) => /FAILED|replay|sim:/.test(line)).join('\n') + run.stderr)
    t.match(run.stdout, /(\d+) of \1 seeds passed/)
    t.comment(run.stdout.trim().split('\n').at(-1) ?? '')
  }
})

t.test('seeds that lost durable events in long runs (a segment whose directory entry a dead process never synced) now pass', async (t) => {
  for (const seed of ['1717161752', '2473003180', '1584279780']) {
    const run = await sim(['--seed', seed, '--steps', '600'])
    t.equal(run.code, 0, run.stdout + run.stderr)
  }
})

t.test('seeds are 64-bit: a seed above 2^32 is its own run, not its low 32 bits again', async (t) => {
  const wide = await sim(['--seed', String((1n << 40n) + 7n), '--steps', '30'])
  const narrow = await sim(['--seed', '7', '--steps', '30'])
  t.equal(wide.code, 0, wide.stdout + wide.stderr)
  const trace = (stdout: string): string => /trace ([0-9a-f]{12})/.exec(stdout)?.[1] ?? ''
  t.not(trace(wide.stdout), trace(narrow.stdout), 'another trace')
  const tooLarge = await sim(['--seed', String(1n << 64n)])
  t.equal(tooLarge.code, 2, 'a seed past 2^64 - 1 is refused')
  t.match(tooLarge.stderr, /--seed must be an integer from 0 to 2\^64 - 1/)
})

t.test('a failure prints the whole command that replays it, steps and bounds included', async (t) => {
  // No simulated time to converge in: runs whose replicas differ when the faults stop fail.
  const run = await sim(['--seeds', '4', '--from', '3', '--steps', '40', '--converge-ms', '0'])
  t.equal(run.code, 1, 'some of the four runs fail')
  const hints = run.stdout.split('\n').filter((line) => line.includes('replay:'))
  t.ok(hints.length > 0, 'each failure says how to replay it')
  for (const hint of hints) t.match(hint, /replay: npm run sim -- --seed \d+ --steps 40 --converge-ms 0 --trace$/)
  const seed = /--seed (\d+)/.exec(hints[0] ?? '')?.[1] ?? '3'
  const replay = await sim(['--seed', seed, '--steps', '40', '--converge-ms', '0'])
  t.equal(replay.code, 1, 'the replay fails the same way')
  t.match(replay.stdout, /replayed: the same trace and the same bytes on disk/)
})

t.test('a seed replays to the same trace, step for step, and leaves the same bytes on disk', async (t) => {
  for (const seed of ['7', '31']) {
    const run = await sim(['--seed', seed])
    t.equal(run.code, 0, run.stdout + run.stderr)
    t.match(run.stdout, /replayed: the same trace and the same bytes on disk/)
  }
})
