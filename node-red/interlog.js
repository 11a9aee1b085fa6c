// Node-RED nodes for InterLog (docs/node-red.md): a config node for a daemon's socket, `interlog
// append` (msg.payload into the log) and `interlog tail` (the log into the flow, from a position
// or a durable consumer that commits once the flow says it handled a message). They talk to the
// daemon through the package's client (`connect`); nothing here opens a log file.
//
// CommonJS because Node-RED 4 loads nodes with require(); the client is ESM and imported once.

'use strict'

const path = require('node:path')
const { pathToFileURL } = require('node:url')

/** Messages a tail with `ack: manual` sends before it waits for the flow to acknowledge them. */
const IN_FLIGHT_MAX_DEFAULT = 100
const IN_FLIGHT_MAX_LIMIT = 10_000
/** How long a tail waits before it tries the daemon again after losing it. */
const RETRY_MS = 2000
/** Events a tail asks the daemon for at a time. */
const BATCH_MAX = 100

let clientModule = null
/** The InterLog client (dist/index.js beside this folder), imported once. */
function interlog() {
  clientModule ??= import(pathToFileURL(path.join(__dirname, '..', 'dist', 'index.js')).href)
  return clientModule
}

let cborModule = null
function cbor() {
  cborModule ??= require('cbor-x')
  return cborModule
}

/** msg.payload as the bytes of one event: a Buffer or bytes as they are, a string as UTF-8, anything else as JSON or CBOR. */
function toBytes(payload, encoding) {
  if (Buffer.isBuffer(payload)) return payload
  if (payload instanceof Uint8Array) return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8')
  if (payload === undefined) throw new TypeError('msg.payload is missing: nothing to append')
  if (encoding === 'cbor') return Buffer.from(cbor().encode(payload))
  return Buffer.from(JSON.stringify(payload), 'utf8')
}

/** An event's payload as the tail node's `output` says: a Buffer, a UTF-8 string, or decoded JSON or CBOR (the Buffer when it does not decode). */
function fromBytes(bytes, output) {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (output === 'string') return buffer.toString('utf8')
  if (output === 'json') {
    try { return JSON.parse(buffer.toString('utf8')) } catch { return buffer }
  }
  if (output === 'cbor') {
    try { return cbor().decode(buffer) } catch { return buffer }
  }
  return buffer
}

/** Waits `ms`, or less when `signal` aborts; leaves no listener behind. */
const sleep = (ms, signal) => new Promise((resolve) => {
  const onAbort = () => { clearTimeout(timer); resolve() }
  const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
  signal.addEventListener('abort', onAbort, { once: true })
})

/** Lets the rest of the flow run between batches (Node-RED delivers messages asynchronously). */
const turn = () => new Promise((resolve) => setImmediate(resolve))

/** Whether an error means the connection to the daemon is gone (then the next use connects again). */
const connectionLost = (error) => error?.code === 'CLOSED'

/** Consumers in use by a tail, by config node and name. */
const tailsByConsumer = new Set()

module.exports = function (RED) {
  /** One connection to a daemon, shared by the nodes that name this config node; made again after it fails. */
  function InterlogDaemonNode(config) {
    RED.nodes.createNode(this, config)
    this.socket = config.socket
    this.logName = config.log || ''
    let connecting = null
    /** The client, connecting on first use. */
    this.connection = () => {
      connecting ??= interlog()
        .then(({ connect }) => connect(this.socket, this.logName === '' ? {} : { log: this.logName }))
        .catch((error) => { connecting = null; throw error })
      return connecting
    }
    /** After an error that may mean the daemon went away: the next use connects again. */
    this.forget = (remote) => {
      if (connecting === null) return
      connecting.then((current) => {
        if (current === remote) {
          connecting = null
          remote.close().catch(() => undefined)
        }
      }, () => undefined)
    }
    this.on('close', (done) => {
      const closing = connecting
      connecting = null
      if (closing === null) return done()
      closing.then((remote) => remote.close(), () => undefined).then(() => done(), () => done())
    })
  }
  RED.nodes.registerType('interlog-daemon', InterlogDaemonNode)

  /** Appends each message's payload as one event; passes the message on with msg.interlog = { origin, pos } once durable. */
  function InterlogAppendNode(config) {
    RED.nodes.createNode(this, config)
    const daemon = RED.nodes.getNode(config.daemon)
    const encoding = config.encoding === 'cbor' ? 'cbor' : 'json'
    let appended = 0
    if (!daemon) {
      this.status({ fill: 'red', shape: 'ring', text: 'no daemon configured' })
    }
    this.on('input', (msg, send, done) => {
      if (!daemon) return done(new Error('interlog append: no daemon configured (pick an interlog-daemon config node)'))
      let bytes
      try {
        bytes = toBytes(msg.payload, encoding)
      } catch (error) {
        return done(error)
      }
      let remote = null
      daemon.connection()
        .then((connected) => { remote = connected; return connected.append(bytes) })
        .then((id) => {
          msg.interlog = { origin: id.origin, pos: id.pos }
          if (++appended % 100 === 1) this.status({ fill: 'green', shape: 'dot', text: `appended, last at ${id.pos}` })
          send(msg)
          done()
        }, (error) => {
          this.status({ fill: 'red', shape: 'ring', text: error.code ?? error.message })
          if (remote !== null && connectionLost(error)) daemon.forget(remote)
          done(error)
        })
    })
  }
  RED.nodes.registerType('interlog append', InterlogAppendNode)

  /**
   * Sends each event of the log as a message. Without a consumer: from a position (`from`: 'end',
   * 'start' or a local position), for as long as the flow runs. With a consumer: from its committed
   * position; `ack: 'auto'` commits each batch once sent, `ack: 'manual'` commits only what the
   * flow sends back to this node's input (a message with msg.interlog.localPos), in order, and stops
   * sending while `inFlightMax` messages wait for theirs.
   */
  function InterlogTailNode(config) {
    RED.nodes.createNode(this, config)
    const daemon = RED.nodes.getNode(config.daemon)
    const output = ['buffer', 'string', 'json', 'cbor'].includes(config.output) ? config.output : 'buffer'
    const consumerName = (config.consumer || '').trim()
    const manual = consumerName !== '' && config.ack === 'manual'
    const inFlightMax = Math.min(IN_FLIGHT_MAX_LIMIT, Math.max(1, Number.parseInt(config.inFlightMax, 10) || IN_FLIGHT_MAX_DEFAULT))
    const from = config.from === 'start' || config.from === 'end' ? config.from : Number.isSafeInteger(Number(config.from)) && config.from !== '' ? Number(config.from) : 'end'
    const stop = new AbortController()
    if (consumerName !== '') {
      // Two tails on one consumer would each commit the other's messages.
      const key = `${config.daemon}\u0000${consumerName}`
      if (tailsByConsumer.has(key)) this.warn(`interlog tail: another tail of this flow uses the consumer ${consumerName}: each would commit what the other sent`)
      tailsByConsumer.add(key)
    }
    /** Messages sent and not yet acknowledged (manual): local position to `origin:pos`, in the order sent. */
    const inFlight = new Map()
    let lastSent = -1
    let wake = null
    let consumer = null
    /** The highest position to commit, and the one commit loop running (acks faster than commits merge). */
    let commitTarget = -1
    let committing = null
    /** Where a tail without a consumer goes on after losing the daemon: after the last event it sent. */
    let resumeAt = null

    const commitAcknowledged = () => {
      // Everything before the oldest message still in flight has been handled.
      let upTo = lastSent
      for (const localPos of inFlight.keys()) { upTo = localPos - 1; break }
      if (consumer === null || upTo < consumer.position) return
      commitTarget = Math.max(commitTarget, upTo)
      committing ??= (async () => {
        const target = consumer
        try {
          while (commitTarget >= target.position) await target.commit(commitTarget)
        } catch (error) {
          this.warn(`interlog tail: commit of ${commitTarget} failed: ${error.message}`)
        } finally {
          committing = null
        }
      })()
    }

    if (manual) {
      this.on('input', (msg, send, done) => {
        const ack = msg.interlog
        if (!Number.isSafeInteger(ack?.localPos)) return done(new Error('interlog tail: an acknowledgement needs msg.interlog.localPos (send back the message this node sent)'))
        // Only this tail's own messages: another tail's (another consumer or log) would commit what nobody handled.
        if (ack.consumer !== consumerName || inFlight.get(ack.localPos) !== `${ack.origin}:${ack.pos}`) {
          return done(new Error(`interlog tail ${consumerName}: an acknowledgement of a message this tail is not waiting for (consumer ${ack.consumer}, local position ${ack.localPos})`))
        }
        inFlight.delete(ack.localPos)
        commitAcknowledged()
        wake?.()
        done()
      })
    }

    const deliver = (event) => {
      const msg = {
        payload: fromBytes(event.payload, output),
        interlog: { origin: event.origin, pos: event.pos, localPos: event.localPos, time: event.time },
      }
      if (consumerName !== '') msg.interlog.consumer = consumerName
      lastSent = event.localPos
      if (manual) inFlight.set(event.localPos, `${event.origin}:${event.pos}`)
      this.send(msg)
    }

    const run = async (remote) => {
      if (consumerName === '') {
        const start = resumeAt ?? (from === 'end' ? await remote.length() : from === 'start' ? 0 : from)
        this.status({ fill: 'green', shape: 'dot', text: `tailing from ${start}` })
        let sent = 0
        for await (const event of remote.tail({ from: start, signal: stop.signal })) {
          deliver(event)
          resumeAt = event.localPos + 1
          if (++sent % BATCH_MAX === 0) await turn()
        }
        return
      }
      consumer = await remote.consumer(consumerName, { startAt: from === 'end' ? 'latest' : from === 'start' ? 'earliest' : from })
      inFlight.clear()
      lastSent = consumer.position - 1
      this.status({ fill: 'green', shape: 'dot', text: `${consumerName} at ${consumer.position}` })
      for await (const batch of consumer.batches({ max: BATCH_MAX, signal: stop.signal })) {
        for (const event of batch) {
          while (manual && inFlight.size >= inFlightMax && !stop.signal.aborted) {
            this.status({ fill: 'yellow', shape: 'ring', text: `${inFlight.size} waiting for acknowledgement` })
            await new Promise((resolve) => {
              const onAbort = () => resolve()
              wake = () => { stop.signal.removeEventListener('abort', onAbort); resolve() }
              stop.signal.addEventListener('abort', onAbort, { once: true })
            })
            wake = null
          }
          if (stop.signal.aborted) return
          deliver(event)
        }
        if (!manual) commitAcknowledged()
        this.status({ fill: 'green', shape: 'dot', text: `${consumerName} sent up to ${lastSent}` })
        await turn()
      }
    }

    const loop = async () => {
      if (!daemon) {
        this.status({ fill: 'red', shape: 'ring', text: 'no daemon configured' })
        this.error('interlog tail: no daemon configured (pick an interlog-daemon config node)')
        return
      }
      while (!stop.signal.aborted) {
        let remote = null
        try {
          remote = await daemon.connection()
          await run(remote)
        } catch (error) {
          if (stop.signal.aborted) break
          this.status({ fill: 'red', shape: 'ring', text: error.code ?? error.message })
          this.warn(`interlog tail: ${error.message}; trying again in ${RETRY_MS / 1000} s`)
          if (remote !== null && connectionLost(error)) daemon.forget(remote)
        }
        await sleep(RETRY_MS, stop.signal)
      }
    }
    const running = loop()

    this.on('close', (done) => {
      stop.abort()
      running.then(() => committing).then(() => done(), () => done())
      if (consumerName !== '') tailsByConsumer.delete(`${config.daemon}\u0000${consumerName}`)
    })
  }
  RED.nodes.registerType('interlog tail', InterlogTailNode)
}
