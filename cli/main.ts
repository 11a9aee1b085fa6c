#!/usr/bin/env node
// interlog: the command line. `interlog <command> [options]`; `interlog <command> --help`.
// Exit codes: 0 success, 1 damage found (verify), 2 usage or configuration error, 3 the operation
// failed (a LogError; its code is printed), 4 the daemon could not be reached.

import fs from 'node:fs'
import { parseArgs } from 'node:util'
import { LogError } from '../core/index.js'
import { EXIT, append, init, read, runServe, status, tail, trust, verify, type Values } from './commands.js'
import { demo } from './demo.js'
import { UsageError } from './target.js'

type OptionSpec = { type: 'string' | 'boolean', multiple?: boolean, short?: string }

const COMMON: Record<string, OptionSpec> = {
  data: { type: 'string' },
  socket: { type: 'string' },
  log: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
}

interface Command {
  summary: string
  usage: string
  options: Record<string, OptionSpec>
  run: (values: Values, positionals: string[]) => Promise<number>
  /** Takes positional arguments (only `trust`). */
  positionals?: boolean
}

const TARGET = `Works on a running daemon's socket (--socket PATH, or DATA/interlog.sock when a daemon listens
there) or opens the data directory directly (--data DIR) when no daemon holds it.`

const COMMANDS: Record<string, Command> = {
  init: {
    summary: 'create a data directory and its logs (replica ids)',
    usage: `interlog init --data DIR [--log NAME]... [--json]`,
    options: COMMON, run: init,
  },
  serve: {
    summary: 'run the daemon: logs, local socket API, sync',
    usage: `interlog serve --data DIR [--init] [--socket PATH] [--broker URL|embedded|none] [--broker-port N]
               [--log NAME]... [--durability fsync|interval|none] [--config FILE]
  Serves the logs in DIR; a log that does not exist there fails start-up (exit 2) unless --init
  creates it (or run interlog init first): a mistyped --data never starts a new identity.
  Config: a JSON file (docs/local-api.md), overridden by INTERLOG_* variables, overridden by flags.
  The socket opens before sync connects; sync retries the broker in the background.
  SIGTERM/SIGINT: stop accepting, flush, close, release locks, exit 0. SIGHUP: read the
  configuration again and restart with it (a configuration that is not valid is refused, and the
  daemon goes on as it was). Logs: stdout, systemd priorities.`,
    options: {
      ...COMMON, init: { type: 'boolean' }, broker: { type: 'string' }, 'broker-port': { type: 'string' }, durability: { type: 'string' }, config: { type: 'string' },
    },
    run: runServe,
  },
  append: {
    summary: 'append stdin lines (or length-prefixed binary) and print the ids',
    usage: `interlog append (--data DIR | --socket PATH) [--log NAME] [--binary] [--batch N] [--json]
  Each stdin line is one event: its bytes exactly (any bytes, not only UTF-8), without the newline
  (and a carriage return before it). With --binary, stdin holds payloads each preceded by its
  length as a 4-byte big-endian integer. Lines are appended as they arrive (what has arrived goes
  in at once, at most N per batch, default 1000) and "origin pos" is printed per event once it is
  durable. A line the log refuses (too large, rejected by a validator) is named by its number on
  stderr and the other lines go in; the exit code is then 3. --json adds "line" (with --binary "payload") to each id.
  ${TARGET}`,
    options: { ...COMMON, binary: { type: 'boolean' }, batch: { type: 'string' } }, run: append,
  },
  read: {
    summary: 'print events [from, to)',
    usage: `interlog read (--data DIR | --socket PATH) [--log NAME] [--from N] [--to N] [--format json|hex|raw]
  json: JSON Lines { localPos, origin, pos, time, payload (base64), text (when UTF-8) }.
  hex: "localPos origin pos time payloadhex". raw: payloads length-prefixed as append --binary reads them.
  ${TARGET}`,
    options: { ...COMMON, from: { type: 'string' }, to: { type: 'string' }, format: { type: 'string' } }, run: read,
  },
  tail: {
    summary: 'print the last events, and with --follow new ones as they come',
    usage: `interlog tail (--data DIR | --socket PATH) [--log NAME] [--from N] [--follow] [--format json|hex|raw]
  Without --from, starts 10 events before the end. --follow waits for new events until SIGINT:
  through the daemon, or on a log directory (no daemon) by reading it again as it changes; the
  directory is not held between reads, so other commands can append to it.
  ${TARGET}`,
    options: { ...COMMON, from: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, format: { type: 'string' } }, run: tail,
  },
  status: {
    summary: 'replica id, version vector, length, segments, disk use, sync peers and lag',
    usage: `interlog status (--data DIR | --socket PATH) [--log NAME] [--json] [--fleet]\n  ${TARGET}\n  --fleet  also list the health reports of the log's other replicas (from a running daemon with sync)`,
    options: { ...COMMON, fleet: { type: 'boolean' } }, run: status,
  },
  verify: {
    summary: 'check every checksum; exit 1 if anything is damaged',
    usage: `interlog verify (--data DIR | --socket PATH) [--log NAME] [--json]\n  ${TARGET}`,
    options: COMMON, run: verify,
  },
  trust: {
    summary: 'the keys a log accepts events from: add KEY, rm KEY, ls',
    usage: `interlog trust add PUBLIC-KEY [--note TEXT] | rm PUBLIC-KEY-OR-REPLICA-ID | ls  --data DIR [--log NAME] [--json]
  Edits DATA/logs/NAME/trusted-keys. With the file present, the log accepts only events signed by
  the keys listed (and its own); changes take effect when the log is next opened. docs/security.md.`,
    options: { ...COMMON, note: { type: 'string' } }, run: trust, positionals: true,
  },
  demo: {
    summary: 'three nodes, an embedded broker, sensors appending through sockets; show they agree',
    usage: `interlog demo [--nodes N] [--events N] [--json]
  Starts the embedded broker and N nodes (default 3) in a temporary directory, sensor processes that
  append through each node's socket, waits for replication to converge, and prints per-sensor
  statistics computed from each node. Exits 0 when every node agrees.`,
    options: { help: COMMON['help']!, json: COMMON['json']!, nodes: { type: 'string' }, events: { type: 'string' } }, run: demo,
  },
}

/** The package's version (package.json beside dist/). */
function version(): string {
  const file = new URL('../../package.json', import.meta.url)
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version
}

function help(): string {
  const lines = Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(8)} ${command.summary}`)
  return `interlog: an embedded, replicated, append-only event log\n\nUsage: interlog <command> [options]\n\n${lines.join('\n')}\n\n` +
    `interlog <command> --help for its options; interlog --version for the version.\n` +
    `Exit codes: 0 ok, 1 damage found, 2 usage, 3 failed, 4 daemon unreachable.\n`
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help())
    return name === undefined ? EXIT.usage : EXIT.ok
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`interlog ${version()}\n`)
    return EXIT.ok
  }
  const command = COMMANDS[name]
  if (command === undefined) {
    process.stderr.write(`interlog: unknown command '${name}'\n\n${help()}`)
    return EXIT.usage
  }
  let values: Values
  let positionals: string[]
  try {
    const parsed = parseArgs({ args: rest, options: command.options, strict: true, allowPositionals: command.positionals === true })
    values = parsed.values as Values
    positionals = parsed.positionals
  } catch (error) {
    process.stderr.write(`interlog ${name}: ${(error as Error).message}\n\nUsage: ${command.usage}\n`)
    return EXIT.usage
  }
  if (values['help'] === true) {
    process.stdout.write(`${command.summary}\n\nUsage: ${command.usage}\n`)
    return EXIT.ok
  }
  try {
    return await command.run(values, positionals)
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`interlog ${name}: ${error.message}\n`)
      return EXIT.usage
    }
    if (error instanceof LogError) {
      process.stderr.write(`interlog ${name}: ${error.code}: ${error.message}\n`)
      return error.code === 'IO' && /cannot connect to the daemon/.test(error.message) ? EXIT.unreachable : EXIT.failed
    }
    // A system error (a permission, a missing file) is said plainly; only a bug shows its stack.
    const code = (error as NodeJS.ErrnoException | null)?.code
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
      process.stderr.write(`interlog ${name}: ${(error as Error).message}\n`)
      return EXIT.failed
    }
    throw error
  }
}

// A reader that went away (`interlog read | head -1`) ends the output, not the command with a failure.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0)
  throw error
})

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
}, (error: unknown) => {
  process.stderr.write(`interlog: ${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = EXIT.failed
})
