// Injected I/O errors on real files: EIO, ENOSPC or a short write at the Nth I/O operation of a
// workload, for every N. The fault comes from an LD_PRELOAD shim (libiofault.c, compiled here)
// under a child process that appends with durability 'fsync' and prints each acknowledged event
// (test/fixtures/fault-workload.mjs). The shim also keeps a model of the disk: what each file
// held at its last successful fsync or fdatasync, with the pages of a failed sync lost for good,
// as Linux does after a writeback error.
//
// After each run the log is reopened here, without the shim, twice: as the child left it (a
// reopen in the same boot, page cache intact) and as the disk model says a power cut right after
// the child exited would leave it. Both times: open succeeds (never CORRUPT), every acknowledged
// event is there with its payload, verify() is clean and a new append is accepted. In the child:
// every failure is a LogError IO, and after a failed append the log refuses the next one with IO;
// but a full disk (ENOSPC), which stalls writes until there is space again: a write that found
// none is retried, and the workload goes on once it gets through; a segment that could not be
// created refuses its batch with NO_SPACE, nothing of it written, and the next append may go on.
//
// Not modelled: directory entries (a created or renamed file is taken as durable once its data
// is) and faults in reads. Replay one run: INTERLOG_FAULT_ONLY=short:3,EIO:19 (kind:N, comma
// separated). Linux only; needs a C compiler (cc).

import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { openLog, type LogWarning } from '../../index.js'
import { collect, tempDir, text } from '../helpers/temp.js'

const SHIM_SOURCE = fileURLToPath(new URL('./libiofault.c', import.meta.url))
const WORKLOAD = fileURLToPath(new URL('../fixtures/fault-workload.mjs', import.meta.url))
const KINDS = ['EIO', 'ENOSPC', 'short'] as const
type Kind = typeof KINDS[number]
const CHILDREN_CONCURRENT_MAX = 2
const CHILD_TIMEOUT_MS = 30_000
/** Problems printed one by one; the rest are counted. */
const PROBLEMS_SHOWN_MAX = 30
/** The options of the workload (WORKLOAD_OPTIONS in the fixture): reopened with the same. */
const OPTIONS = { segmentBytes: 128 << 10, cacheBytes: 64 << 10, maxEventBytes: 4096, checkpointIntervalBytes: 48 << 10 }

/** The payload of position `pos`, as the workload makes it. */
function payloadFor(pos: number): string {
  const filler = String.fromCharCode(97 + (pos % 26))
  return `e${pos}.`.padEnd(16 + ((pos * 7919) % 1000), filler)
}

interface Run { kind: Kind, at: number }

interface Ledger {
  opened: boolean
  done: boolean
  /** Acknowledged positions, and the seed of the payload each holds (the position, unless a call was refused before it). */
  acked: { pos: number, seed: number }[]
  error: { phase: string, code: string, message: string } | undefined
  followup: string | undefined
  /** onWarning codes in the child (a checkpoint that could not be written, say). */
  warnings: string[]
  oddities: string[]
}

interface ChildResult {
  ledger: Ledger
  exit: string
  stderr: string
  total: number | undefined
  /** "<call> <path>" of the injected fault, if it happened. */
  fault: string | undefined
  modelFailures: string[]
}

function skipReason(): string | false {
  if (process.platform !== 'linux') return 'LD_PRELOAD fault injection needs Linux and glibc'
  const probe = spawnSync('cc', ['--version'], { stdio: 'ignore' })
  if (probe.error !== undefined || probe.status !== 0) return 'needs a C compiler (cc) to build the fault-injection shim'
  return false
}

function compileShim(dir: string): string {
  const library = path.join(dir, 'libiofault.so')
  const result = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-pthread', '-o', library, SHIM_SOURCE, '-ldl'], { encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`cc failed to build the shim: ${result.stderr}`)
  return library
}

function parseLedger(stdout: string): Ledger {
  const ledger: Ledger = { opened: false, done: false, acked: [], error: undefined, followup: undefined, warnings: [], oddities: [] }
  for (const line of stdout.split('\n')) {
    const [word, ...rest] = line.split(' ')
    if (word === 'ack') ledger.acked.push({ pos: Number(rest[0]), seed: Number(rest[1] ?? rest[0]) })
    else if (word === 'open') ledger.opened = true
    else if (word === 'done') ledger.done = true
    else if (word === 'error') ledger.error = { phase: rest[0] ?? '', code: rest[1] ?? '', message: rest.slice(2).join(' ') }
    else if (word === 'followup') ledger.followup = rest.join(' ')
    else if (word === 'warn') ledger.warnings.push(rest[0] ?? '')
    else if (word === 'mismatch') ledger.oddities.push(`acknowledged position ${rest[1]} where ${rest[0]} was expected`)
  }
  return ledger
}

function runChild(library: string, runDir: string, run: Run): Promise<ChildResult> {
  fs.mkdirSync(path.join(runDir, 'shadow'), { recursive: true })
  const reportFile = path.join(runDir, 'report')
  const env = {
    ...process.env, LD_PRELOAD: library, UV_USE_IO_URING: '0', IOFAULT_DIR: path.join(runDir, 'log'),
    IOFAULT_AT: String(run.at), IOFAULT_KIND: run.kind, IOFAULT_SHADOW_DIR: path.join(runDir, 'shadow'), IOFAULT_REPORT_FILE: reportFile,
  }
  return new Promise((resolve, reject) => {
    // Through env -u: tap adds an --import of its process-info hook to every child's NODE_OPTIONS,
    // about 200 ms of start-up for each of hundreds of runs, and these children are not measured.
    const command = ['-u', 'NODE_OPTIONS', process.execPath, WORKLOAD, path.join(runDir, 'log')]
    const child = spawn('env', command, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const report = fs.existsSync(reportFile) ? fs.readFileSync(reportFile, 'utf8').split('\n') : []
      const total = report.find((line) => line.startsWith('total '))
      const fault = report.find((line) => line.startsWith('fault '))
      resolve({
        ledger: parseLedger(stdout), exit: signal !== null ? `signal ${signal}` : `code ${code}`, stderr,
        total: total === undefined ? undefined : Number(total.split(' ')[1]),
        fault: fault?.split(' ').slice(2).join(' '),
        modelFailures: report.filter((line) => line.startsWith('model-failure')),
      })
    })
  })
}

/**
 * What the child itself must have done: finish or fail with IO, and refuse appends after a
 * failure; a full disk fails with NO_SPACE only where nothing was written (a segment that could not
 * be created), and the log writes again once there is space (the shim's fault happens once).
 */
function childProblems(run: Run, result: ChildResult): string[] {
  const problems: string[] = [...result.modelFailures]
  const { ledger } = result
  const noSpace = ledger.error?.code === 'NO_SPACE'
  // A refused call shifts the positions of the calls after it; only then may positions differ from the workload's guess.
  if (!noSpace) problems.push(...ledger.oddities)
  if (result.exit !== 'code 0') problems.push(`the child exited with ${result.exit}: ${result.stderr.trim().slice(0, 500)}`)
  else if (!ledger.done && ledger.error === undefined) problems.push('the child stopped without finishing or reporting an error')
  if (run.at > 0 && result.fault === undefined) problems.push(`no fault happened: the workload did ${result.total} operations this time`)
  const allowed = run.kind === 'EIO' ? ['IO'] : ['IO', 'NO_SPACE']
  if (ledger.error !== undefined && !allowed.includes(ledger.error.code)) {
    problems.push(`${ledger.error.phase} failed with ${ledger.error.code} (${ledger.error.message}), not LogError ${allowed.join(' or ')}`)
  }
  if (ledger.error?.phase === 'append' && !noSpace && ledger.followup !== 'rejected IO') {
    problems.push(`after a failed append the log was not read-only: the next append was ${ledger.followup}`)
  }
  if (noSpace && ledger.followup?.startsWith('accepted') !== true) {
    problems.push(`after a refusal for lack of space (the fault happens once) the next append was ${ledger.followup}, not accepted`)
  }
  return problems
}

/** The seed a payload was made from (it starts with `e<seed>.`), or -1 when it is not one of the workload's. */
function seedOf(payload: string): number {
  const match = /^e(\d+)\./.exec(payload)
  return match === null || payloadFor(Number(match[1])) !== payload ? -1 : Number(match[1])
}

/** Makes `logDir` what the disk model says survives a power cut: each file as last synced, or empty. */
function applyDiskModel(logDir: string, shadowDir: string): void {
  if (!fs.existsSync(logDir)) return
  for (const entry of fs.readdirSync(logDir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    const file = path.join(entry.parentPath, entry.name)
    const shadow = path.join(shadowDir, String(fs.statSync(file, { bigint: true }).ino))
    if (fs.existsSync(shadow)) fs.copyFileSync(shadow, file)
    else fs.truncateSync(file, 0)
  }
}

/** Reopens `dir` without the shim and checks it against the ledger; returns what is wrong. */
async function viewProblems(dir: string, ledger: Ledger, warnings: Map<string, number>): Promise<string[]> {
  let log: Awaited<ReturnType<typeof openLog>>
  try {
    log = await openLog(dir, { ...OPTIONS, onWarning: (w: LogWarning) => { warnings.set(w.code, (warnings.get(w.code) ?? 0) + 1) } })
  } catch (error) {
    return [`reopen failed: ${(error as { code?: string }).code ?? 'no code'}: ${(error as Error).message}`]
  }
  const problems: string[] = []
  try {
    const events = await collect(log.read())
    const missing = ledger.acked.filter(({ pos, seed }) => events[pos] === undefined || text(events[pos]!.payload) !== payloadFor(seed))
    if (missing.length > 0) problems.push(`${missing.length} acknowledged events missing or different, first at position ${missing[0]!.pos} (log length ${events.length})`)
    const odd = events.findIndex((e, i) => e.localPos !== i || e.pos !== i || e.origin !== log.replicaId || seedOf(text(e.payload)) < 0)
    if (odd >= 0) problems.push(`event ${odd} of ${events.length} is not the one the workload appended there`)
    const report = await log.verify()
    if (!report.ok) problems.push(`verify found damage: ${JSON.stringify(report.damage).slice(0, 300)}`)
    await log.append(new TextEncoder().encode('after the fault'))
  } catch (error) {
    problems.push(`after reopening: ${(error as { code?: string }).code ?? ''} ${(error as Error).message}`)
  } finally {
    await log.close().catch(() => undefined)
  }
  return problems
}

/** Runs `work` over `items`, at most `concurrency` at a time, in order of start. */
async function forEachConcurrently<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]!)
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
}

function runsWanted(total: number): Run[] {
  const only = process.env['INTERLOG_FAULT_ONLY']
  if (only !== undefined && only !== '') {
    return only.split(',').map((item) => {
      const [kind, at] = item.split(':')
      if (!KINDS.includes(kind as Kind) || !(Number(at) >= 1)) throw new Error(`INTERLOG_FAULT_ONLY: '${item}' is not kind:N (kinds ${KINDS.join(', ')})`)
      return { kind: kind as Kind, at: Number(at) }
    })
  }
  return KINDS.flatMap((kind) => Array.from({ length: total }, (_, i) => ({ kind, at: i + 1 })))
}

/** "fdatasync 000000000001.seg" -> "fdatasync segment", for the summary. */
function operationClass(fault: string | undefined): string {
  if (fault === undefined) return 'none'
  const [call, file] = fault.split(' ')
  const name = path.basename(file ?? '')
  const kind = name.endsWith('.seg') ? 'segment' : name.startsWith('.direct-probe') ? 'direct-io probe' : name === 'log' ? 'directory' : name
  return `${(call ?? '').replace(/64$/, '')} ${kind}`
}

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}

t.test('I/O faults at every operation of a workload: nothing unsynced is acknowledged, reopening recovers',
  { skip: skipReason() }, async (t) => {
  const started = Date.now()
  const root = tempDir(t)
  const library = compileShim(root)
  const counting = await runChild(library, path.join(root, 'count'), { kind: 'EIO', at: 0 })
  t.same(childProblems({ kind: 'EIO', at: 0 }, counting), [], 'the workload runs clean under the shim')
  t.ok(counting.ledger.done && counting.total !== undefined && counting.total > 50, `it does ${counting.total} counted I/O operations`)
  const total = counting.total ?? 0
  const runs = runsWanted(total)
  const outcomes = new Map<string, number>()
  const absorbed = new Map<string, number>()
  const warnings = new Map<string, number>()
  const childWarnings = new Map<string, number>()
  const problemsPerKind = new Map<string, number>()
  const problems: string[] = []
  let acknowledged = 0
  await forEachConcurrently(runs, CHILDREN_CONCURRENT_MAX, async (run) => {
    const runDir = path.join(root, `${run.kind}-${run.at}`)
    const logDir = path.join(runDir, 'log')
    const result = await runChild(library, runDir, run)
    const found = childProblems(run, result)
    if (fs.existsSync(logDir)) fs.cpSync(logDir, path.join(runDir, 'same-boot'), { recursive: true })
    for (const problem of await viewProblems(path.join(runDir, 'same-boot'), result.ledger, warnings)) found.push(`same boot: ${problem}`)
    applyDiskModel(logDir, path.join(runDir, 'shadow'))
    for (const problem of await viewProblems(logDir, result.ledger, warnings)) found.push(`after a power cut: ${problem}`)
    const outcome = result.ledger.error?.phase ?? (result.ledger.done ? 'absorbed' : 'none')
    count(outcomes, `${run.kind} ${outcome}`)
    if (outcome === 'absorbed') count(absorbed, `${run.kind} ${operationClass(result.fault)}`)
    acknowledged += result.ledger.acked.length
    for (const code of result.ledger.warnings) count(childWarnings, code)
    if (found.length > 0) count(problemsPerKind, run.kind)
    if (found.length > 0) problems.push(`${run.kind} at operation ${run.at} (${result.fault ?? 'no fault'}): ${found.join('; ')} [replay: INTERLOG_FAULT_ONLY=${run.kind}:${run.at}]`)
    fs.rmSync(runDir, { recursive: true, force: true })
  })
  t.comment(`T = ${total} counted operations; ${runs.length} runs (${KINDS.join(', ')} at each) in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
    `${acknowledged} acknowledged events checked twice (same boot, power cut)`)
  t.comment(`where the fault surfaced: ${JSON.stringify(Object.fromEntries([...outcomes].sort()))}`)
  t.comment(`faults absorbed without an error: ${JSON.stringify(Object.fromEntries([...absorbed].sort()))}`)
  t.comment(`warnings in the children: ${JSON.stringify(Object.fromEntries([...childWarnings].sort()))}; ` +
    `at reopen: ${JSON.stringify(Object.fromEntries([...warnings].sort()))}`)
  if (problems.length > 0) t.comment(`runs with problems: ${JSON.stringify(Object.fromEntries([...problemsPerKind].sort()))}`)
  problems.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
  for (const problem of problems.slice(0, PROBLEMS_SHOWN_MAX)) t.fail(problem)
  t.equal(problems.length, 0, `every run recovers every acknowledged event${problems.length > PROBLEMS_SHOWN_MAX ? ` (${problems.length - PROBLEMS_SHOWN_MAX} more problems not shown)` : ''}`)
})
