// npm run sim -- --seeds N [--from S] [--steps K] [--converge-ms M]   runs seeds S .. S+N-1 (default 1, 100 seeds)
// npm run sim -- --seed X [--steps K] [--converge-ms M] [--trace]     runs one seed twice: same trace and same bytes on disk, or fails
// Seeds are unsigned 64-bit integers. A failure prints the whole command that replays it.

import { parseArgs } from 'node:util'
import { SEED_MAX } from './prng.js'
import { runSimulation, type SimResult } from './run.js'

/** Steps of a run when --steps is not given. */
const STEPS_DEFAULT = 120
/** Simulated time allowed to converge after healing, when --converge-ms is not given. */
const CONVERGE_MS_DEFAULT = 120_000

function describe(result: SimResult): string {
  return `seed ${result.seed}: ${result.ok ? 'ok' : 'FAILED'} (${result.replicas} replicas, ${result.steps} steps, ${result.appended} events, ` +
    `${(result.simulatedMs / 1000).toFixed(1)} s simulated, trace ${result.traceHash.slice(0, 12)})${result.failure === null ? '' : `: ${result.failure}`}`
}

/** The command that replays one run exactly: every option that shapes a run, always spelled out. */
function replayCommand(seed: bigint, steps: number, convergeMs: number): string {
  return `npm run sim -- --seed ${seed} --steps ${steps}${convergeMs === CONVERGE_MS_DEFAULT ? '' : ` --converge-ms ${convergeMs}`} --trace`
}

function seedArgument(name: string, text: string | undefined, fallback: bigint): bigint {
  if (text === undefined) return fallback
  if (!/^\d+$/.test(text) || BigInt(text) > SEED_MAX) throw new Error(`--${name} must be an integer from 0 to 2^64 - 1 (${SEED_MAX}), got ${text}`)
  return BigInt(text)
}

function countArgument(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new Error(`--${name} must be a non-negative integer, got ${text}`)
  return Number(text)
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      seeds: { type: 'string' }, seed: { type: 'string' }, from: { type: 'string' }, steps: { type: 'string' }, 'converge-ms': { type: 'string' },
      trace: { type: 'boolean' },
    },
  })
  const steps = countArgument('steps', values.steps, STEPS_DEFAULT)
  const convergeMs = countArgument('converge-ms', values['converge-ms'], CONVERGE_MS_DEFAULT)
  if (values.seed !== undefined) {
    const seed = seedArgument('seed', values.seed, 0n)
    const first = await runSimulation({ seed, steps, convergeMs })
    const second = await runSimulation({ seed, steps, convergeMs })
    if (values.trace === true) for (const line of first.trace) process.stdout.write(`${line}\n`)
    process.stdout.write(`${describe(first)}\n`)
    if (first.traceHash !== second.traceHash) {
      const at = first.trace.findIndex((line, i) => line !== second.trace[i])
      process.stdout.write(`replay differs at trace line ${at}:\n  ${first.trace[at]}\n  ${second.trace[at]}\n`)
      return 1
    }
    if (first.storageHash !== second.storageHash) {
      process.stdout.write(`replay left different bytes on disk: storage ${first.storageHash.slice(0, 12)} vs ${second.storageHash.slice(0, 12)}\n`)
      return 1
    }
    process.stdout.write(`replayed: the same trace and the same bytes on disk (storage ${first.storageHash.slice(0, 12)})\n`)
    return first.ok ? 0 : 1
  }
  const count = countArgument('seeds', values.seeds, 100)
  const from = seedArgument('from', values.from, 1n)
  const last = from + BigInt(count) - 1n
  if (last > SEED_MAX) throw new Error(`--from ${from} with --seeds ${count} runs past the largest seed (${SEED_MAX})`)
  const started = Date.now()
  let failed = 0
  for (let seed = from; seed <= last; seed++) {
    const result = await runSimulation({ seed, steps, convergeMs })
    if (!result.ok) {
      failed++
      process.stdout.write(`${describe(result)}\n  replay: ${replayCommand(seed, steps, convergeMs)}\n`)
    }
  }
  process.stdout.write(`${count - failed} of ${count} seeds passed (${from} to ${last}, ${steps} steps) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
  return failed === 0 ? 0 : 1
}

// A reader that stops early (`| head`) is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  throw error
})

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (error: unknown) => {
  process.stderr.write(`sim: ${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = 2
})
