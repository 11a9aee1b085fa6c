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

t.test('a seed replays to the same trace, step for step, and leaves the same bytes on disk', async (t) => {
  for (const seed of ['7', '31']) {
    const run = await sim(['--seed', seed])
    t.equal(run.code, 0, run.stdout + run.stderr)
    t.match(run.stdout, /replayed: the same trace and the same bytes on disk/)
  }
})
