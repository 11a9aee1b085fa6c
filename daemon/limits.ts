// The local API server's bounds (docs/local-api.md, "Limits"): how many connections, requests and
// streams it serves, and how many bytes it holds for them. Memory the server holds for its clients
// is bounded by these figures whatever the clients do; a client that holds its share without
// making progress is cut off after `clientStallMs`, and the others are served meanwhile.

/** Connections served at once; a further one is answered `BUSY` and closed (the client retries). */
export const CONNECTIONS_MAX = 256
/** Requests of one connection in service at once; further frames wait unread. */
export const CONNECTION_REQUESTS_MAX = 1024
/** Streams (reads and tails) open on one connection; a further one is refused with `BUSY`. */
export const CONNECTION_STREAMS_MAX = 32
/** Streams open on the whole server; a further one is refused with `BUSY`. */
export const STREAMS_MAX = 128
/** Bytes of requests one connection holds without drawing on the receive pool. */
export const RECEIVE_FREE_BYTES = 64 << 10
/**
 * The receive pool: bytes of requests (incomplete frames by their announced size, and requests
 * waiting or in service) that connections hold beyond RECEIVE_FREE_BYTES each, all together.
 */
export const RECEIVE_POOL_BYTES = 64 << 20
/** The send pool: bytes of stream chunks being gathered or waiting for the socket, all connections together. */
export const SEND_POOL_BYTES = 64 << 20
/** The part of the send pool one connection may hold. */
export const CONNECTION_SEND_BYTES_MAX = 8 << 20
/** Unread answers one connection may leave queued before it is cut off. */
export const CONNECTION_QUEUE_BYTES_MAX = 32 << 20
/** A client whose frame does not complete (while the server reads it), or who leaves answers unread, this long is cut off. */
export const CLIENT_STALL_MS = 30_000
/** Connections the kernel queues before the server accepts them (Linux caps it at net.core.somaxconn). */
export const LISTEN_BACKLOG = 1024

export interface ServerLimits {
  connectionsMax: number
  connectionRequestsMax: number
  connectionStreamsMax: number
  streamsMax: number
  receiveFreeBytes: number
  receivePoolBytes: number
  sendPoolBytes: number
  connectionSendBytesMax: number
  connectionQueueBytesMax: number
  clientStallMs: number
  listenBacklog: number
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = {
  connectionsMax: CONNECTIONS_MAX,
  connectionRequestsMax: CONNECTION_REQUESTS_MAX,
  connectionStreamsMax: CONNECTION_STREAMS_MAX,
  streamsMax: STREAMS_MAX,
  receiveFreeBytes: RECEIVE_FREE_BYTES,
  receivePoolBytes: RECEIVE_POOL_BYTES,
  sendPoolBytes: SEND_POOL_BYTES,
  connectionSendBytesMax: CONNECTION_SEND_BYTES_MAX,
  connectionQueueBytesMax: CONNECTION_QUEUE_BYTES_MAX,
  clientStallMs: CLIENT_STALL_MS,
  listenBacklog: LISTEN_BACKLOG,
}

/** Who draws on a pool: its share is counted against a bound of its own. */
export interface PoolOwner {
  sendHeld: number
}

interface Waiter {
  owner: PoolOwner
  bytes: number
  resolve: (granted: boolean) => void
}

/**
 * Bytes shared by all connections, with a bound per connection: `take` waits (first come, first
 * served among those that fit) until both bounds have room; `give` returns bytes and wakes waiters.
 */
export class SendPool {
  used = 0
  private readonly waiters: Waiter[] = []

  constructor(private readonly bytesMax: number, private readonly ownerBytesMax: number) {}

  /** Resolves true once `bytes` are taken, false if `signal` aborts first. */
  take(owner: PoolOwner, bytes: number, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false)
    // Waiters are granted as soon as they fit (give), so none that waits fits now: one that does goes at once.
    if (this.fits(owner, bytes)) {
      this.grant(owner, bytes)
      return Promise.resolve(true)
    }
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = { owner, bytes, resolve }
      const onAbort = (): void => {
        const at = this.waiters.indexOf(waiter)
        if (at >= 0) this.waiters.splice(at, 1)
        resolve(false)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      waiter.resolve = (granted) => {
        signal.removeEventListener('abort', onAbort)
        resolve(granted)
      }
      this.waiters.push(waiter)
    })
  }

  give(owner: PoolOwner, bytes: number): void {
    owner.sendHeld -= bytes
    this.used -= bytes
    for (let i = 0; i < this.waiters.length;) {
      const waiter = this.waiters[i]!
      if (!this.fits(waiter.owner, waiter.bytes)) {
        i++
        continue
      }
      this.waiters.splice(i, 1)
      this.grant(waiter.owner, waiter.bytes)
      waiter.resolve(true)
    }
  }

  private fits(owner: PoolOwner, bytes: number): boolean {
    // One grant always fits an owner that holds nothing, so a chunk larger than the bound still goes.
    return (this.used === 0 || this.used + bytes <= this.bytesMax) && (owner.sendHeld === 0 || owner.sendHeld + bytes <= this.ownerBytesMax)
  }

  private grant(owner: PoolOwner, bytes: number): void {
    owner.sendHeld += bytes
    this.used += bytes
  }
}
