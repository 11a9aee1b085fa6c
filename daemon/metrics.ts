// Prometheus metrics of a running daemon (docs/metrics.md): plain HTTP, off unless the config
// names `metrics.listen`, on loopback unless it names another host. Every figure is read when
// Prometheus scrapes, from the logs, their sync and the local API server: nothing is sampled in
// the background but the disk growth behind the time-to-full estimate, a few samples per log.
// Beside /metrics: the read-only status page (web/status.html at /) and its /status.json.

import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { eventsBeyond } from '../sync/index.js'
import { diskFree, diskUse } from './disk-use.js'
import { LAG_SAMPLE_MS, LagHistory } from './lag-history.js'
import { statusOf, type ServedLog } from './server.js'

/** Series per log for per-peer and per-origin figures, at most: a fleet's origins beyond it are summed in no series (docs/metrics.md). */
export const METRICS_LABELS_MAX = 1000
/** The disk growth behind the time-to-full estimate: samples kept per log, and how far back they reach. */
const GROWTH_SAMPLES_MAX = 64
const GROWTH_WINDOW_MS = 10 * 60_000
/** Connections the HTTP endpoint serves at once, and how long one may take to send a request or idle between requests, and to be answered. */
const HTTP_CONNECTIONS_MAX = 32
const HEADERS_TIMEOUT_MS = 5000
const REQUEST_TIMEOUT_MS = 10_000
/** Buckets of the fsync latency histogram, in seconds. */
const FSYNC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

export interface MetricsSource {
  logs: Map<string, ServedLog>
  /** Local API connections open now. */
  socketClients(): number
  now(): number
  /** The daemon's last warnings and errors (for the status page), oldest first. */
  warnings(): { timeMs: number, level: string, message: string }[]
  version: string
  /** The daemon's journal (rate limited there): refused Host names, a failed sampling. */
  log?: (level: 'warning' | 'info', message: string) => void
}

/** The status page (web/status.html), read once: beside dist/ in a package, beside daemon/ in the source tree. */
function statusPage(): Buffer {
  for (const relative of ['../../web/status.html', '../web/status.html']) {
    try {
      return fs.readFileSync(new URL(relative, import.meta.url))
    } catch { /* the other layout */ }
  }
  return Buffer.from('<!doctype html><title>InterLog</title><p>The status page (web/status.html) is not installed.</p>\n')
}

export class MetricsServer {
  readonly registry = new Registry()
  private server: http.Server | null = null
  private readonly growth = new Map<string, { at: number, bytes: number }[]>()
  /** Timestamped samples of each log's vector and of what its online peers hold, by log (the lags in seconds). */
  private readonly lag = new Map<string, LagHistory>()
  private lagTimer: NodeJS.Timeout | null = null
  private readonly fsync: Histogram<'log'>
  private readonly detach: (() => void)[] = []
  private readonly page = statusPage()

  constructor(private readonly source: MetricsSource) {
    const registers = [this.registry]
    const perLog = <T>(each: (served: ServedLog) => T, set: (served: ServedLog, value: T) => void) => (): void => {
      for (const served of source.logs.values()) set(served, each(served))
    }
    const gauge = (name: string, help: string, labelNames: string[], collect: (this: Gauge) => void): void => {
      new Gauge({ name, help, labelNames, registers, collect() { this.reset(); collect.call(this) } })
    }
    const counter = (name: string, help: string, labelNames: string[], collect: (this: Counter) => void): void => {
      // Counted elsewhere (the log, sync, the server) from the daemon's start: set to that total at each scrape.
      new Counter({ name, help, labelNames, registers, collect() { this.reset(); collect.call(this) } })
    }
    const sync = (served: ServedLog) => served.sync?.status() ?? null

    gauge('interlog_log_events', 'Events the log holds (all origins).', ['log'], function () {
      perLog((s) => s.log.length, (s, v) => this.set({ log: s.name }, v))()
    })
    gauge('interlog_log_durable_events', 'Events of the log known to be on disk.', ['log'], function () {
      perLog((s) => s.log.durableLength, (s, v) => this.set({ log: s.name }, v))()
    })
    counter('interlog_appended_events_total', 'Events appended through the local API since the daemon started.', ['log'], function () {
      for (const s of source.logs.values()) this.inc({ log: s.name }, s.counts.appendedEvents)
    })
    counter('interlog_appended_bytes_total', 'Payload bytes appended through the local API since the daemon started.', ['log'], function () {
      for (const s of source.logs.values()) this.inc({ log: s.name }, s.counts.appendedBytes)
    })
    counter('interlog_appends_refused_total', 'Appends refused through the local API, by error code (VALIDATION: a validator rejected it).', ['log', 'code'], function () {
      for (const s of source.logs.values()) for (const [code, count] of s.counts.refused) this.inc({ log: s.name, code }, count)
    })
    this.fsync = new Histogram({ name: 'interlog_fsync_seconds', help: 'Time of each fdatasync of the log (the wait of a durable append).', labelNames: ['log'], buckets: FSYNC_BUCKETS, registers })
    for (const served of source.logs.values()) {
      const onSync = (seconds: number): void => this.fsync.observe({ log: served.name }, seconds)
      served.log.on('fsync', onSync)
      this.detach.push(() => served.log.off('fsync', onSync))
    }
    gauge('interlog_disk_used_bytes', 'Bytes the log directory takes on disk (allocated blocks).', ['log'], function () {
      for (const s of source.logs.values()) this.set({ log: s.name }, diskUse(s.log.directory).bytes)
    })
    gauge('interlog_disk_free_bytes', 'Bytes free for the daemon on the file system of the log.', ['log'], function () {
      for (const s of source.logs.values()) this.set({ log: s.name }, freeBytes(s.log.directory))
    })
    const growth = this.growth
    gauge('interlog_disk_full_seconds', 'Estimated seconds until the file system of the log is full, from its growth over the last ten minutes of scrapes (+Inf while it does not grow).', ['log'], function () {
      for (const s of source.logs.values()) this.set({ log: s.name }, fullSeconds(growth, s, source.now()))
    })
    gauge('interlog_sync_connected', '1 while sync is connected to its broker, else 0 (no series without a broker).', ['log'], function () {
      for (const s of source.logs.values()) { const st = sync(s); if (st !== null) this.set({ log: s.name }, st.connected ? 1 : 0) }
    })
    counter('interlog_sync_events_sent_total', 'Events sync sent to peers since the daemon started.', ['log'], function () {
      for (const s of source.logs.values()) { const st = sync(s); if (st !== null) this.inc({ log: s.name }, st.eventsSent) }
    })
    counter('interlog_sync_events_received_total', 'Events sync received and stored since the daemon started.', ['log'], function () {
      for (const s of source.logs.values()) { const st = sync(s); if (st !== null) this.inc({ log: s.name }, st.eventsReceived) }
    })
    counter('interlog_sync_messages_sent_total', 'Events messages (and fragments) sync published and the broker acknowledged.', ['log'], function () {
      for (const s of source.logs.values()) { const st = sync(s); if (st !== null) this.inc({ log: s.name }, st.messagesSent) }
    })
    counter('interlog_sync_messages_received_total', 'Messages of other replicas on the log\'s topics that decoded.', ['log'], function () {
      for (const s of source.logs.values()) { const st = sync(s); if (st !== null) this.inc({ log: s.name }, st.messagesReceived) }
    })
    counter('interlog_sync_messages_dropped_total', 'Sync messages dropped as malformed, oversized or from an older protocol.', ['log'], function () {
      for (const s of source.logs.values()) { const st = sync(s); if (st !== null) this.inc({ log: s.name }, st.messagesDropped) }
    })
    counter('interlog_events_forged_total', 'Remote events refused as forged, altered or replayed (docs/security.md).', ['log'], function () {
      for (const s of source.logs.values()) this.inc({ log: s.name }, s.log.securityStatus().forged)
    })
    gauge('interlog_equivocations', 'Origins seen signing two histories.', ['log'], function () {
      for (const s of source.logs.values()) this.set({ log: s.name }, s.log.securityStatus().equivocations.length)
    })
    gauge('interlog_quarantined_origins', 'Origins whose events merge no longer takes (a validator or an equivocation).', ['log'], function () {
      for (const s of source.logs.values()) this.set({ log: s.name }, s.log.quarantined().length)
    })
    gauge('interlog_damaged_ranges', 'Ranges of the log fenced off as damaged and not repaired yet.', ['log'], function () {
      for (const s of source.logs.values()) this.set({ log: s.name }, s.log.damage().length)
    })
    gauge('interlog_no_space', '1 while writes wait for disk space (NO_SPACE), else 0.', ['log'], function () {
      for (const s of source.logs.values()) this.set({ log: s.name }, s.log.noSpace ? 1 : 0)
    })
    gauge('interlog_peer_online', '1 while a peer of the log is online, else 0.', ['log', 'peer'], function () {
      for (const s of source.logs.values()) for (const peer of peersOf(s)) this.set({ log: s.name, peer: peer.replica }, peer.online ? 1 : 0)
    })
    gauge('interlog_peer_lag_events', 'Events this log holds that the peer does not (by the vector it last announced).', ['log', 'peer'], function () {
      for (const s of source.logs.values()) {
        const ours = s.log.versionVector()
        for (const peer of peersOf(s)) this.set({ log: s.name, peer: peer.replica }, eventsBeyond(ours, peer.vector))
      }
    })
    const lagNow = (s: ServedLog): { now: number, history: LagHistory } => {
      const now = source.now()
      return { now, history: this.sampleLag(s, now) }
    }
    gauge('interlog_peer_lag_seconds', 'Age of the oldest events this log held that the peer does not hold yet, in seconds (0 while it holds them all).', ['log', 'peer'], function () {
      for (const s of source.logs.values()) {
        const { now, history } = lagNow(s)
        const ours = s.log.versionVector()
        for (const peer of peersOf(s)) this.set({ log: s.name, peer: peer.replica }, history.peerLagSeconds(now, ours, peer.vector))
      }
    })
    gauge('interlog_origin_lag_events', 'Events of an origin that an online peer holds and this log does not yet.', ['log', 'origin'], function () {
      for (const s of source.logs.values()) {
        const ours = s.log.versionVector()
        const behind = new Map<string, number>()
        for (const [origin, count] of Object.entries(s.sync?.onlinePeersHold() ?? {})) {
          if (count > (ours[origin] ?? 0)) behind.set(origin, count - (ours[origin] ?? 0))
        }
        let series = 0
        for (const [origin, lag] of behind) if (series++ < METRICS_LABELS_MAX) this.set({ log: s.name, origin }, lag)
        for (const origin of Object.keys(ours)) if (!behind.has(origin) && series++ < METRICS_LABELS_MAX) this.set({ log: s.name, origin }, 0)
      }
    })
    gauge('interlog_origin_lag_seconds', 'Age of the oldest events of the origin that an online peer held and this log does not yet, in seconds (0 while it holds them).', ['log', 'origin'], function () {
      for (const s of source.logs.values()) {
        const { now, history } = lagNow(s)
        const ours = s.log.versionVector()
        const origins = new Set(Object.keys(ours))
        for (const peer of peersOf(s)) if (peer.online) for (const origin of Object.keys(peer.vector)) origins.add(origin)
        let series = 0
        for (const origin of origins) {
          if (series++ >= METRICS_LABELS_MAX) break
          this.set({ log: s.name, origin }, history.originLagSeconds(now, origin, ours[origin] ?? 0))
        }
      }
    })
    gauge('interlog_consumer_lag_events', 'Events after a durable consumer\'s committed position.', ['log', 'consumer'], function () {
      for (const s of source.logs.values()) for (const consumer of s.log.consumers()) this.set({ log: s.name, consumer: consumer.name }, consumer.lag)
    })
    gauge('interlog_socket_clients', 'Local API connections open.', [], function () {
      this.set(source.socketClients())
    })
  }

  /** Notes a log's vector and the most of each origin its online peers hold, at `now`; returns its history. */
  private sampleLag(served: ServedLog, now: number): LagHistory {
    let history = this.lag.get(served.name)
    if (history === undefined) this.lag.set(served.name, history = new LagHistory())
    history.note(now, served.log.versionVector(), served.sync?.onlinePeersHold() ?? {})
    return history
  }

  /**
   * Samples every log's vectors, then again after LAG_SAMPLE_MS, or after a hundred times what the
   * sampling took when that is longer (a cloud replica with a thousand peers of a thousand origins
   * each): sampling takes at most about 1% of the daemon's time.
   */
  private sampleAll(): void {
    const started = performance.now()
    try {
      const now = this.source.now()
      for (const served of this.source.logs.values()) this.sampleLag(served, now)
    } catch (error) {
      this.source.log?.('warning', `metrics: sampling the logs' vectors failed: ${(error as Error).message}`)
    }
    if (this.server === null) return
    this.lagTimer = setTimeout(() => this.sampleAll(), Math.max(LAG_SAMPLE_MS, 100 * (performance.now() - started)))
    this.lagTimer.unref()
  }

  /**
   * Starts serving GET /metrics, the status page and /status.json on `host:port` (port 0: any free
   * port); returns the address. Requests naming a host other than an IP address, localhost, this
   * machine's name or one of `hosts` are refused (421): a web page whose name was made to resolve
   * to this address (DNS rebinding) cannot read the endpoint.
   */
  async listen(host: string, port: number, hosts: readonly string[] = []): Promise<{ host: string, port: number }> {
    const names = hostNames(hosts)
    const server = http.createServer({
      // A connection that sends no complete request within HEADERS_TIMEOUT_MS, or idles that long
      // between requests, is closed: clients that stall cannot hold the HTTP_CONNECTIONS_MAX.
      connectionsCheckingInterval: 1000,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: HEADERS_TIMEOUT_MS,
    }, (request, response) => {
      const path = (request.url ?? '').split('?')[0]
      const named = request.headers.host
      if (named !== undefined && !hostAllowed(named, names)) {
        // The body does not name the machine: a page that rebound its name to here can read it.
        const shown = named.slice(0, 100).replace(/[^\x20-\x7e]/g, '?')
        response.writeHead(421, { 'content-type': 'text/plain' })
          .end(`this endpoint answers to its IP address, localhost, the machine's own name and the names in metrics.hosts; to reach it as '${shown}', add the name to metrics.hosts\n`)
        this.source.log?.('warning', `metrics: refused a request for host '${shown}' (not an IP address, localhost, this machine's name or in metrics.hosts)`)
        return
      }
      if (request.method === 'GET' && path === '/') {
        response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(this.page)
        return
      }
      if (request.method === 'GET' && path === '/status.json') {
        let body: string
        try {
          body = JSON.stringify(this.statusJson())
        } catch (error) {
          response.writeHead(500, { 'content-type': 'text/plain' }).end(`status failed: ${(error as Error).message}\n`)
          return
        }
        response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body)
        return
      }
      if (request.method !== 'GET' || path !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('InterLog serves /metrics, / (the status page) and /status.json here\n')
        return
      }
      this.registry.metrics().then((text) => {
        response.writeHead(200, { 'content-type': this.registry.contentType }).end(text)
      }, (error: unknown) => {
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(error as Error).message}\n`)
      })
    })
    server.maxConnections = HTTP_CONNECTIONS_MAX
    // A socket with nothing read or written for this long is destroyed: one that never sends a
    // byte (headersTimeout does not see it) or leaves its answer unread. Set per socket: Node 20's
    // server.setTimeout did not close a connection that never sent anything (tried).
    server.on('connection', (socket) => { socket.setTimeout(HEADERS_TIMEOUT_MS, () => socket.destroy()) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => { server.off('error', reject); resolve() })
    })
    server.on('error', () => undefined) // an accept error (EMFILE) after listen: the endpoint goes on
    this.server = server
    this.sampleAll()
    const address = server.address() as { address: string, port: number }
    return { host: address.address, port: address.port }
  }

  /** What the status page shows: each log's status (as `interlog status --json` has it) with its free disk, and the recent warnings. */
  statusJson(): Record<string, unknown> {
    const logs = [...this.source.logs.values()].map((served) => {
      const free = freeBytes(served.log.directory)
      return { ...statusOf(served), diskFreeBytes: Number.isFinite(free) ? free : null }
    })
    return { version: this.source.version, timeMs: this.source.now(), logs, warnings: this.source.warnings() }
  }

  async close(): Promise<void> {
    for (const detach of this.detach) detach()
    if (this.lagTimer !== null) clearTimeout(this.lagTimer)
    this.lagTimer = null
    const server = this.server
    this.server = null
    if (server === null) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

function peersOf(served: ServedLog): { replica: string, online: boolean, vector: Record<string, number> }[] {
  const peers = served.sync?.status().peers ?? []
  return peers.length > METRICS_LABELS_MAX ? peers.slice(0, METRICS_LABELS_MAX) : peers
}

/** Bytes free on the file system of `directory` (NaN when not known). */
function freeBytes(directory: string): number {
  return diskFree(directory)?.bytes ?? NaN
}

/** Seconds until the disk is full at the rate the log directory grew over the window of samples (one sample per scrape). */
function fullSeconds(growth: Map<string, { at: number, bytes: number }[]>, served: ServedLog, now: number): number {
  const used = diskUse(served.log.directory).bytes
  const free = freeBytes(served.log.directory)
  let samples = growth.get(served.name)
  if (samples === undefined) growth.set(served.name, samples = [])
  samples.push({ at: now, bytes: used })
  while (samples.length > GROWTH_SAMPLES_MAX || (samples.length > 2 && now - samples[0]!.at > GROWTH_WINDOW_MS)) samples.shift()
  const first = samples[0]!
  const rate = now > first.at ? (used - first.bytes) / ((now - first.at) / 1000) : 0
  if (!(rate > 0) || !Number.isFinite(free)) return Infinity
  return free / rate
}

/** The host names a request may name besides IP addresses: localhost, this machine's name (and name.local), and the configured ones. */
function hostNames(configured: readonly string[]): Set<string> {
  const machine = os.hostname().toLowerCase()
  return new Set(['localhost', machine, `${machine}.local`, ...configured.map((name) => name.toLowerCase().replace(/\.$/, ''))])
}

/** Whether a Host header (name or address, with or without a port) names this endpoint. */
export function hostAllowed(header: string, names: ReadonlySet<string>): boolean {
  if (header.startsWith('[')) return net.isIPv6(header.slice(1, header.indexOf(']')))
  const colon = header.lastIndexOf(':')
  const name = (colon === -1 ? header : header.slice(0, colon)).toLowerCase().replace(/\.$/, '')
  return net.isIPv4(name) || names.has(name)
}
