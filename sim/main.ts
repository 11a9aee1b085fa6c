// npm run sim -- --seeds N [--from S] [--steps K]   runs seeds S .. S+N-1 (default 1, 100 seeds)
// npm run sim -- --seed X [--trace]                 runs one seed twice: same trace and same bytes on disk, or fails
// A failure prints its seed; `--seed` replays it exactly.

import { parseArgs } from 'node:util'
import { runSimulation, type SimResult } from './run.js'

function describe(result: SimResult): string {
  return `seed ${result.seed}: ${result.ok ? 'ok' : 'FAILED'} (${result.replicas} replicas, ${result.appended} events, ` +
    `${(result.simulatedMs / 1000).toFixed(1)} s simulated, trace ${result.traceHash.slice(0, 12)})${result.failure === null ? '' : `: ${result.failure}`}`
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: { seeds: { type: 'string' }, seed: { type: 'string' }, from: { type: 'string' }, steps: { type: 'string' }, trace: { type: 'boolean' } },
  })
  const integer = (name: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback
    if (!/^\d+$/.test(text)) throw new Error(`--${name} must be a non-negative integer`)
    return Number(text)
  }
  const steps = integer('steps', values.steps, 120)
  if (values.seed !== undefined) {
    const seed = integer('seed', values.seed, 0)
    const first = await runSimulation({ seed, steps })
    const second = await runSimulation({ seed, steps })
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
  const count = integer('seeds', values.seeds, 100)
  const from = integer('from', values.from, 1)
  const started = Date.now()
  let failed = 0
  for (let seed = from; seed < from + count; seed++) {
    const result = await runSimulation({ seed, steps })
    if (!result.ok) {
      failed++
      process.stdout.write(`${describe(result)}\n  replay: npm run sim -- --seed ${seed} --trace\n`)
    }
  }
  process.stdout.write(`${count - failed} of ${count} seeds passed (${from} to ${from + count - 1}) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
  return failed === 0 ? 0 : 1
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (error: unknown) => {
  process.stderr.write(`sim: ${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = 2
})
