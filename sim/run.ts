// One simulated run: 3 to 7 replicas, each a real log (core) synced by the real replicator (sync)
// through the simulated broker and clock. One seeded PRNG picks every step: appends (batches,
// large events split into fragments), flushes, deliveries, timers, dropped, duplicated and delayed
// messages, partitions, broker restarts, replica restarts and crashes, and a rogue client
// publishing forged and garbage messages. Each run picks its security as a deployment would: an
// allow-list of the replicas' keys, explicit 'open' or the default trust, and payload encryption in
// half the runs. After each step the run waits until every replica is quiet, so what
// happens depends on the seed, not on I/O timing.
//
// Safety, checked all along: every durable event survives its replica's crashes (with 'fsync',
// every acknowledged one), every acknowledged event survives clean restarts; no replica
// stores an event that its origin did not append (or a corrupt one); per-origin sequences agree
// wherever replicas hold them. Liveness: once faults stop, all replicas converge to every
// acknowledged event within a bounded simulated time.
//
// Storage: each replica's log runs on its own in-memory disk (sim/storage.ts), injected through
// openLog's `storage` option, which models what a power cut does: each page written since the
// file's last sync is kept, lost, torn at a random byte, or torn with garbage, and a random prefix
// of the unsynced namespace operations (files created, renamed, removed) survives. Half the
// crashes are armed to come inside a storage operation (the n-th from then: a write torn part
// way, an fdatasync that never returns) during a burst of appends and a flush; about a third of
// all crashes do (the others come between operations). About a fifth of the crashes crash
// again inside the recovery that follows (a quarter are armed to). A quarter of the cuts are the
// process dying alone (the page cache survives, unsynced). Checkpoints are written every 48 KiB
// and segments are 64 KiB, so crashes meet checkpoints and segment rolls too; a read model's
// consumer commits now and then, and its committed position must survive every crash. Half the
// replicas run with durability 'none' (durable at flush steps only), so crashes do lose
// acknowledged events there, which must never have been sent. Encrypted runs check that nonce
// epochs only grow across opens. I/O errors (EIO, ENOSPC, short writes) at every operation on real
// files are test/fault/io-faults.test.ts's job.

import crypto from 'node:crypto'
import { encode } from 'cbor-x'
import { isLogError, openLog, type Log, type VersionVector } from '../core/index.js'
import { startSyncOver, type SyncHandle } from '../sync/index.js'
import { PROTOCOL_VERSION, recordsOfEvents, wireRecords } from '../sync/protocol.js'
import { SimBroker, type SimConnection } from './broker.js'
import { SimClock } from './clock.js'
import { Prng } from './prng.js'
import { MemoryDisk, type CrashReport } from './storage.js'

/** A crash inside a burst comes at most this many storage operations after it is armed (a burst takes about 3 to 16). */
const CRASH_OPS_MAX = 12
/** Small segments (the least allowed), so that runs roll segments and crashes meet the rolls. */
const SEGMENT_BYTES = 64 << 10
/** The read model's consumer on every replica. */
const CONSUMER = 'model'
/** Checkpoints every 48 KiB of log (the default is 32 MiB), so that runs write them, crash while writing them, and open from them. */
const CHECKPOINT_INTERVAL_BYTES = 48 << 10
/** A crash inside recovery comes at most this many operations after it is armed (an open takes about 18). */
const RECOVERY_CRASH_OPS_MAX = 24

export interface SimOptions {
  /** An unsigned 64-bit integer (sim/prng.ts). */
  seed: bigint | number
  /** Steps with faults before healing. Default 120. */
  steps?: number
  /** Simulated time allowed to converge after healing. Default 120 s. */
  convergeMs?: number
}

export interface SimResult {
  seed: bigint
  ok: boolean
  failure: string | null
  replicas: number
  steps: number
  appended: number
  /** SHA-256 of the trace: the same seed gives the same hash. */
  traceHash: string
  /** SHA-256 of every byte the replicas left on disk: the same seed gives the same hash. */
  storageHash: string
  trace: string[]
  simulatedMs: number
}

const LOG_NAME = 'sim'
const TOPIC_PREFIX = 'interlog/v1'
const START_MS = 1_800_000_000_000
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

class SafetyError extends Error {}

interface Replica {
  index: number
  dir: string
  /** The replica's disk: it outlives the log's crashes and restarts. */
  disk: MemoryDisk
  /** 'fsync': acknowledged means durable; 'none': durable at flush steps only (crashes may lose the rest). */
  durability: 'fsync' | 'none'
  log: Log
  sync: SyncHandle
  connection: SimConnection
  id: string
}

/** Writes an Ed25519 identity made from PRNG bytes, so replica ids are the same in every run of a seed; returns the public key (hex). */
function writeIdentity(disk: MemoryDisk, dir: string, prng: Prng): string {
  const key = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, prng.bytes(32)]), format: 'der', type: 'pkcs8' })
  const pem = Buffer.from(key.export({ format: 'pem', type: 'pkcs8' }) as string, 'latin1')
  const storage = disk.session()
  storage.mkdirSync(dir)
  storage.fsyncDirectorySync('/')
  const fd = storage.openSync(`${dir}/identity`, 'truncate', { permissions: 0o600 })
  storage.writeSync(fd, pem, 0, pem.length, 0)
  storage.fsyncSync(fd)
  storage.closeSync(fd)
  storage.fsyncDirectorySync(dir)
  return (crypto.createPublicKey(key).export({ format: 'der', type: 'spki' }) as Buffer).subarray(-32).toString('hex')
}

function describeCrash(report: CrashReport): string {
  const { pages } = report
  return `pages kept ${pages.kept}, lost ${pages.lost}, torn ${pages.torn}, garbage ${pages.garbage}; namespace kept ${report.namespaceKept}, lost ${report.namespaceLost}`
}

export async function runSimulation(options: SimOptions): Promise<SimResult> {
  const prng = new Prng(options.seed)
  const clock = new SimClock(START_MS)
  const trace: string[] = []
  const note = (line: string): void => { trace.push(`${clock.now() - START_MS} ${line}`) }
  const count = 3 + prng.int(5)
  const broker = new SimBroker(prng, { dropRate: 0.05 + prng.int(10) / 100, duplicateRate: 0.05, delayMaxMs: 20 + prng.int(400) }, () => clock.now())
  const replicas: Replica[] = []
  /** Acknowledged payloads per origin, in position order: the ledger kept outside the replicas. */
  const ledger = new Map<string, Buffer[]>()
  const steps = options.steps ?? 120
  let appended = 0
  const result = (ok: boolean, failure: string | null): SimResult => ({
    seed: BigInt(options.seed), ok, failure, replicas: count, steps, appended,
    traceHash: crypto.createHash('sha256').update(trace.join('\n')).digest('hex'), storageHash: '', trace, simulatedMs: clock.now() - START_MS,
  })
  let outcome: SimResult
  const security: { trust?: 'open' | string[], encryption?: { keys: { id: number, key: Uint8Array }[] } } = {}

  const openReplica = async (index: number, dir: string, disk: MemoryDisk, durability: 'fsync' | 'none'): Promise<Replica> => {
    // A small cache (64 KiB, the least that holds two 16 KiB events): replicas with durability 'none' write records
    // (several pages at a time) before they sync them, so crashes tear, drop and garble real records page by page.
    // Event times, segment and replica headers read the simulated clock (sync gets it as `clock`).
    const log = await openLog(dir, {
      durability, ...security, now: () => clock.now(), storage: disk.session(), cacheBytes: 64 << 10, segmentBytes: SEGMENT_BYTES, maxEventBytes: 16 << 10,
      checkpointIntervalBytes: CHECKPOINT_INTERVAL_BYTES,
      // In every other run replica 0 stores record bodies of 4 KiB and more deflated (segment version 4).
      storedCompression: BigInt(options.seed) % 2n === 1n && index === 0 ? 'deflate-raw' : 'none',
      onWarning: () => undefined,
    })
    const connection = broker.connections.get(`node-${index}`) ?? broker.connect(`node-${index}`)
    // In every other run one replica sends its events messages uncompressed (the others compress:
    // a mixed network, as when an operator turns compression off on one gateway).
    const compression = BigInt(options.seed) % 2n === 0n && index === 1 ? 'none' : 'deflate-raw'
    const sync = startSyncOver(log, { logName: LOG_NAME, topicPrefix: TOPIC_PREFIX, announceIntervalMs: 1000, maxMessageBytes: 4096, compression, logger: process.env['INTERLOG_SIM_LOG'] === '1' ? (level, message) => process.stderr.write(`r${index} ${level}: ${message}\n`) : () => undefined },
      { connection, clock })
    return { index, dir, disk, durability, log, sync, connection, id: log.replicaId }
  }

  /** Waits until no replica is working (lanes idle, logs unchanged), then routes what was published. */
  const quiet = async (): Promise<void> => {
    let last = ''
    let stable = 0
    for (let spins = 0; spins < 100_000; spins++) {
      await new Promise((resolve) => setImmediate(resolve))
      const busy = replicas.some((r) => r.sync.busy)
      const signature = replicas.map((r) => `${r.log.length}:${r.log.durableLength}`).join(',')
      if (!busy && signature === last) {
        if (++stable >= 3) {
          broker.settle()
          return
        }
      } else {
        stable = 0
      }
      last = signature
    }
    throw new Error('the replicas never went quiet')
  }

  /** Safety: what a replica stores is what origins appended, in order, uncorrupted. */
  const checkStored = async (replica: Replica): Promise<void> => {
    const next = new Map<string, number>()
    for await (const event of replica.log.read()) {
      const expected = next.get(event.origin) ?? 0
      if (event.pos !== expected) throw new SafetyError(`replica ${replica.index} holds ${event.origin}:${event.pos} after ${expected} events of it`)
      next.set(event.origin, expected + 1)
      const acknowledged = ledger.get(event.origin)?.[event.pos]
      if (acknowledged === undefined) {
        // An origin's own events are in the ledger once acknowledged; others must have been appended by a replica.
        throw new SafetyError(`replica ${replica.index} holds ${event.origin}:${event.pos}, which no replica appended`)
      }
      if (!acknowledged.equals(event.payload)) throw new SafetyError(`replica ${replica.index} holds a different payload for ${event.origin}:${event.pos}`)
    }
    const own = ledger.get(replica.id)?.length ?? 0
    if ((next.get(replica.id) ?? 0) < own) {
      throw new SafetyError(`replica ${replica.index} lost acknowledged events: holds ${next.get(replica.id) ?? 0} of its ${own}`)
    }
  }

  /** Per replica, the highest consumer position committed (commits are durable when they resolve). */
  const committed = new Map<number, number>()
  const checkConsumer = (replica: Replica): void => {
    const floor = committed.get(replica.index) ?? 0
    const position = replica.log.consumers().find((consumer) => consumer.name === CONSUMER)?.position ?? 0
    if (position < floor) throw new SafetyError(`replica ${replica.index}: consumer ${CONSUMER} is at ${position} after a restart, committed ${floor}`)
  }

  /**
   * Safety of encryption: each open of an encrypted log takes a nonce epoch above every one an
   * earlier open of it used, across crashes too (a repeated epoch would reuse nonces under one key).
   */
  const epochs = new Map<number, number>()
  const checkEpoch = (replica: Replica): void => {
    if (security.encryption === undefined) return
    const epoch = Number(replica.disk.session().readFileSync(`${replica.dir}/nonce-epoch`).toString('latin1').trim())
    const before = epochs.get(replica.index) ?? 0
    if (!(epoch > before)) throw new SafetyError(`replica ${replica.index} reopened with nonce epoch ${epoch}, but an earlier open used ${before}: nonces would repeat`)
    epochs.set(replica.index, epoch)
  }

  const vectors = (): string => replicas.map((r) => JSON.stringify(Object.entries(r.log.versionVector()).sort())).join(' ')

  try {
    const disks = Array.from({ length: count }, () => new MemoryDisk(prng))
    const dirs = Array.from({ length: count }, (_, i) => `/replica-${i}`)
    const publicKeys = dirs.map((dir, i) => writeIdentity(disks[i]!, dir, prng))
    // Security as a deployment picks it: an allow-list of the replicas' keys, explicit 'open', or
    // the default; payload encryption with a shared log key in half the runs.
    const trustMode = prng.pick(['keys', 'open', 'default'] as const)
    if (trustMode === 'keys') security.trust = publicKeys
    else if (trustMode === 'open') security.trust = 'open'
    if (prng.chance(0.5)) security.encryption = { keys: [{ id: 1, key: prng.bytes(32) }] }
    for (let i = 0; i < count; i++) {
      replicas.push(await openReplica(i, dirs[i]!, disks[i]!, prng.chance(0.5) ? 'fsync' : 'none'))
      checkEpoch(replicas[i]!)
    }
    for (const replica of replicas) {
      replica.connection.reconnect()
      ledger.set(replica.id, [])
    }
    await quiet()
    note(`start ${count} replicas: ${replicas.map((r) => r.id.slice(0, 8)).join(' ')}; trust ${trustMode}, encryption ${security.encryption === undefined ? 'off' : 'on'}`)

    /** Appends to a replica and records the acknowledged payloads in the ledger. */
    const appendTo = async (replica: Replica, payloads: Buffer[]): Promise<void> => {
      const range = await replica.log.appendBatchRange(payloads)
      const own = ledger.get(replica.id)!
      if (range.pos !== own.length) throw new SafetyError(`replica ${replica.index} appended at ${range.pos}, expected ${own.length}`)
      own.push(...payloads)
      appended += payloads.length
    }

    /** In runs where replica 0 deflates stored records, payloads of 4 bits a byte: what deflate saves on (random bytes stay plain). */
    const compressible = (bytes: Buffer): Buffer => (BigInt(options.seed) % 2n === 1n ? bytes.map((byte) => byte & 0x0f) as Buffer : bytes)

    const step = async (faults: boolean): Promise<void> => {
      const roll = prng.int(100)
      if (roll < 30) {
        const replica = prng.pick(replicas)
        // Large events straddle the 4096-byte message limit: some go whole, some in fragments.
        const large = prng.chance(0.08)
        const payloads = Array.from({ length: large ? 1 : 1 + prng.int(5) }, () => compressible(Buffer.from(prng.bytes(large ? 3000 + prng.int(7000) : 8 + prng.int(200)))))
        await appendTo(replica, payloads)
        note(`append r${replica.index} ${payloads.length}${large ? ' large' : ''}`)
      } else if (roll < 70) {
        const due = broker.nextDelivery()
        if (due === Infinity) return
        clock.advance(due)
        if (await broker.deliverNext(clock.now())) note('deliver')
      } else if (roll < 73) {
        const replica = prng.pick(replicas)
        await replica.log.flush()
        note(`flush r${replica.index}`)
        if (replica.log.length > 0 && prng.chance(0.5)) {
          // A read model commits how far it got (a consumer): the position must survive crashes.
          const position = replica.log.length - 1 - prng.int(Math.min(replica.log.length, 8))
          await replica.log.consumer(CONSUMER).commit(position)
          committed.set(replica.index, Math.max(committed.get(replica.index) ?? 0, position + 1))
          note(`commit r${replica.index} ${position}`)
        }
      } else if (roll < 88) {
        const due = clock.nextDue()
        if (due === Infinity) return
        clock.advance(due)
        clock.fireNext(clock.now())
        note('timer')
      } else if (faults && roll < 93) {
        const replica = prng.pick(replicas)
        replica.connection.partitioned = !replica.connection.partitioned
        if (replica.connection.partitioned) replica.connection.drop()
        else replica.connection.reconnect()
        note(`${replica.connection.partitioned ? 'partition' : 'heal'} r${replica.index}`)
      } else if (faults && roll < 94) {
        broker.restart()
        for (const replica of replicas) replica.connection.reconnect()
        note('broker restart')
      } else if (faults && roll < 95) {
        const replica = prng.pick(replicas)
        await replica.sync.close()
        await replica.log.close()
        const reopened = await openReplica(replica.index, replica.dir, replica.disk, replica.durability)
        replicas[replica.index] = reopened
        checkEpoch(reopened)
        checkConsumer(reopened)
        await checkStored(reopened)
        reopened.connection.reconnect()
        note(`restart r${replica.index}`)
      } else if (faults && roll < 97) {
        await crash(prng.pick(replicas))
      } else if (faults) {
        rogue(prng.pick(replicas))
        note('rogue')
      }
    }

    /**
     * A crash: the power goes, inside a storage operation (half the crashes: the n-th from an
     * armed point, during a burst of appends and a flush) or between operations; the disk keeps,
     * loses, tears or garbles what was not synced (sim/storage.ts); then the replica restarts,
     * and recovery itself may crash once. Events durable at the crash must survive; acknowledged
     * events beyond them (durability 'none') may be lost, and were never sent, since sync sends
     * only durable events. Appends in flight at the crash were not acknowledged: they may
     * survive whole, and then count as appended.
     */
    const crash = async (replica: Replica): Promise<void> => {
      const disk = replica.disk
      const durable = new Map<string, number>()
      for await (const event of replica.log.read({ to: replica.log.durableLength })) durable.set(event.origin, event.pos + 1)
      const inside = prng.chance(0.5)
      if (inside) disk.armCrash(1 + prng.int(CRASH_OPS_MAX))
      /** Payloads of appends that failed (the crash came inside them): not acknowledged, but they may survive. */
      const inFlight: Buffer[] = []
      /** Runs `work`; false when the crash came inside it (any other error is thrown). */
      const attempt = async (work: () => Promise<unknown>): Promise<boolean> => {
        try {
          await work()
          return true
        } catch (error) {
          if (!disk.dead || !isLogError(error)) throw error
          return false
        }
      }
      if (inside || prng.chance(0.5)) {
        // A burst larger than the cache: records are written page by page without a sync
        // (durability 'none'), so the crash meets several unsynced pages.
        const burst = Array.from({ length: 8 + prng.int(24) }, () => compressible(Buffer.from(prng.bytes(1000 + prng.int(3500)))))
        for (let i = 0; i < burst.length && !disk.dead; i += 4) {
          const batch = burst.slice(i, i + 4)
          if (!(await attempt(() => appendTo(replica, batch)))) inFlight.push(...batch)
        }
        // One turn of the event loop: a flush the burst scheduled writes it (without a sync).
        await new Promise((resolve) => setImmediate(resolve))
        if (inside && !disk.dead) await attempt(() => replica.log.flush())
        note(`burst r${replica.index} ${burst.length}`)
      }
      const died = disk.dead
      disk.disarm()
      replica.connection.drop()
      await replica.log.simulateCrash()
      await replica.sync.close()
      // Events the log knew durable when it died (read after simulateCrash, which lets a flush in
      // flight finish; a dead disk fails every later sync, so the count cannot grow past the crash).
      let knownDurable = replica.log.durableLength
      const report = disk.crash({ keepAll: prng.int(4) === 0 })
      // Recovery may crash too (its repairs, the checkpoint, the nonce epoch), once.
      let reopened: Replica | null = null
      if (prng.chance(0.25)) {
        disk.armCrash(1 + prng.int(RECOVERY_CRASH_OPS_MAX))
        try {
          reopened = await openReplica(replica.index, replica.dir, disk, replica.durability)
        } catch (error) {
          if (!disk.dead || !isLogError(error)) throw error
        }
        disk.disarm()
        if (reopened !== null && disk.dead) {
          await reopened.log.simulateCrash()
          await reopened.sync.close()
          knownDurable = Math.max(knownDurable, reopened.log.durableLength)
          reopened = null
        }
        if (reopened === null) {
          const again = disk.crash({ keepAll: prng.int(4) === 0 })
          note(`crash r${replica.index} in recovery (${describeCrash(again)})`)
        }
      }
      reopened ??= await openReplica(replica.index, replica.dir, disk, replica.durability)
      replicas[replica.index] = reopened
      checkEpoch(reopened)
      checkConsumer(reopened)
      if (reopened.log.length < knownDurable) {
        throw new SafetyError(`replica ${replica.index} lost durable events in a crash: ${reopened.log.length} events after it, ${knownDurable} were durable`)
      }
      const survived = reopened.log.versionVector()[reopened.id] ?? 0
      const held = reopened.log.versionVector()
      for (const [origin, count] of durable) {
        if ((held[origin] ?? 0) < count) throw new SafetyError(`replica ${replica.index} lost durable events of ${origin} in a crash: ${held[origin] ?? 0} of ${count} survived`)
      }
      const own = ledger.get(reopened.id)!
      if (replica.durability === 'fsync' && survived < own.length) {
        throw new SafetyError(`replica ${replica.index} (durability fsync) lost acknowledged events in a crash: ${survived} of ${own.length} survived`)
      }
      if (survived > own.length) {
        // Only appends in flight at the crash may survive beyond what was acknowledged, and only in order.
        if (survived - own.length > inFlight.length) {
          throw new SafetyError(`replica ${replica.index} holds ${survived} own events after a crash; ${own.length} were acknowledged and ${inFlight.length} in flight`)
        }
        const extra = survived - own.length
        own.push(...inFlight.slice(0, extra))
        appended += extra
      }
      own.length = Math.min(own.length, survived)
      await checkStored(reopened)
      reopened.connection.reconnect()
      note(`crash r${replica.index} (${replica.durability}) ${died ? 'inside an operation' : 'between operations'} (${describeCrash(report)}; ` +
        `${survived} own events survive, ${inFlight.length} were in flight)`)
    }

    /** A client on the broker publishing forged events under a replica's id, or garbage. */
    const rogueKey = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, Buffer.alloc(32, 7)]), format: 'der', type: 'pkcs8' })
    const rogue = (victim: Replica): void => {
      const rogueId = 'f'.repeat(32)
      const pos = victim.log.versionVector()[victim.id] ?? 0
      const events: [number, number, Buffer][] = [[pos, clock.now(), Buffer.from(prng.bytes(16))]]
      // A well-formed link (kind 2, version 1, count 1, first = pos) with made-up hashes, or the
      // same signed by a key that is not the victim's: it passes parsing and fails the checks.
      const fake = Buffer.alloc(prng.chance(0.5) ? 80 : 176)
      fake[0] = fake.length === 80 ? 2 : 1
      fake[1] = 1
      fake.writeUInt32LE(1, 4)
      fake.writeUInt32LE(pos, 8)
      Buffer.from(prng.bytes(64)).copy(fake, 16)
      if (fake.length === 176) {
        const publicKey = crypto.createPublicKey(rogueKey).export({ format: 'der', type: 'spki' }).subarray(12)
        publicKey.copy(fake, 80)
        crypto.sign(null, fake.subarray(48, 80), rogueKey).copy(fake, 112)
      }
      // Sometimes behind a made-up batch envelope (tag 0xE2, version 1, random key id, nonce and tag), as encrypted logs send them.
      const envelope = Buffer.alloc(40)
      envelope[0] = 0xe2
      envelope[1] = 1
      Buffer.from(prng.bytes(32)).copy(envelope, 4)
      envelope.fill(0, 36)
      const sent = prng.chance(0.3) ? Buffer.concat([envelope, fake]) : fake
      const link = prng.chance(0.8) ? [sent] : []
      const payload = prng.chance(0.2) ? Buffer.from(prng.bytes(1 + prng.int(64)))
        : Buffer.from(encode({
          v: PROTOCOL_VERSION, k: 'e', s: rogueId, o: victim.id, ...(prng.chance(0.5) ? { sl: true } : {}),
          r: wireRecords(recordsOfEvents([{ pos: events[0]![0], time: events[0]![1], payload: events[0]![2], ...(link.length === 0 ? {} : { seal: link[0]! }) }])),
        }))
      broker.accept('rogue', `${TOPIC_PREFIX}/${LOG_NAME}/events/${rogueId}`, payload, false)
    }

    for (let i = 0; i < steps; i++) {
      await step(true)
      await quiet()
      trace.push(vectors())
    }
    for (const replica of replicas) await checkStored(replica)

    // Heal: faults stop, partitions end; everyone must converge within options.convergeMs.
    broker.faultsOn = false
    for (const replica of replicas) {
      replica.connection.partitioned = false
      if (!replica.connection.connected) replica.connection.reconnect()
      await replica.log.flush()
    }
    await quiet()
    note('heal all')
    const deadline = clock.now() + (options.convergeMs ?? 120_000)
    const want = JSON.stringify([...ledger].map(([origin, events]) => [origin, events.length]).filter(([, n]) => (n as number) > 0).sort())
    const converged = (): boolean => replicas.every((r) => JSON.stringify(Object.entries(r.log.versionVector() as VersionVector).sort()) === want)
    while (!converged()) {
      // Replicas with durability 'none' make what they received durable now and then, as a real one does when its cache fills.
      if (prng.chance(0.2)) await prng.pick(replicas).log.flush()
      if (clock.now() > deadline) {
        const states = replicas.map((r) => {
          const status = r.sync.status()
          return `r${r.index} sent ${status.eventsSent} received ${status.eventsReceived} dropped ${status.messagesDropped} forged ${status.eventsForged}` +
            ` last ${status.lastError ?? '-'} / ${r.log.securityStatus().lastRejection ?? '-'}`
        })
        throw new Error(`liveness: no convergence ${options.convergeMs ?? 120_000} ms after healing: ${vectors()} (want ${want}); ${states.join('; ')}`)
      }
      const delivery = broker.nextDelivery()
      const timer = clock.nextDue()
      if (delivery <= timer && delivery !== Infinity) {
        clock.advance(delivery)
        await broker.deliverNext(clock.now())
      } else if (timer !== Infinity) {
        clock.advance(timer)
        clock.fireNext(clock.now())
      } else {
        throw new Error('liveness: nothing left to deliver or fire, and the replicas differ')
      }
      await quiet()
    }
    note(`converged ${vectors()}`)
    for (const replica of replicas) {
      await checkStored(replica)
      const report = await replica.log.verify()
      if (!report.ok) throw new SafetyError(`replica ${replica.index}: verify found damage: ${JSON.stringify(report.damage.slice(0, 3))}`)
    }
    outcome = result(true, null)
  } catch (error) {
    note(`failed: ${(error as Error).message}`)
    outcome = result(false, `${error instanceof SafetyError ? 'safety' : 'error'}: ${(error as Error).message}`)
  } finally {
    for (const replica of replicas) {
      await replica.sync.close().catch(() => undefined)
      await replica.log.close().catch(() => undefined)
    }
  }
  // The same seed leaves the same bytes: every file of every replica, after a clean close.
  const storage = crypto.createHash('sha256')
  for (const replica of replicas) storage.update(replica.disk.digest())
  outcome.storageHash = storage.digest('hex')
  return outcome
}
