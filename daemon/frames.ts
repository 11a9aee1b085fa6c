// Local API frames: a u32 big-endian length, then that many bytes of CBOR (docs/local-api.md).
// The reader is incremental and bounded: a frame longer than frameBytesMax, or bytes that are not
// a CBOR map, are a FrameError and the connection is closed by the caller.

import type net from 'node:net'
import { decode, encode } from 'cbor-x'

export const FRAME_HEADER_BYTES = 4
/** Default bound on one frame (request or response). */
export const FRAME_BYTES_MAX = 16 << 20

export class FrameError extends Error {
  override name = 'FrameError'
}

export function encodeFrame(value: unknown): Buffer {
  const body = encode(value) as Uint8Array
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length)
  frame.writeUInt32BE(body.length, 0)
  frame.set(body, FRAME_HEADER_BYTES)
  return frame
}

/** Bytes of one turn's frames written at a time. */
const WRITE_PART_BYTES = 16 << 10

/**
 * Writes a socket's frames so that those of one turn of the event loop go out together: the
 * socket is corked at the turn's first frame and uncorked once the turn's work is done, and a long
 * turn goes out in parts of WRITE_PART_BYTES, so the other end starts on the first while the rest
 * are encoded. Both ends of the local API write through one.
 */
export class TurnWriter {
  private corked = false
  private readonly uncork = (): void => {
    this.corked = false
    this.socket.uncork()
  }

  constructor(private readonly socket: net.Socket) {}

  write(frame: Buffer, onWritten?: () => void): boolean {
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(this.uncork)
    }
    const ok = this.socket.write(frame, onWritten)
    if (this.socket.writableLength >= WRITE_PART_BYTES) {
      this.socket.uncork()
      this.socket.cork()
    }
    return ok
  }

  /** Hands what this turn wrote to the socket now: for frames sent while the thread stays busy (a verify's progress). */
  flush(): void {
    if (!this.corked) return
    this.socket.uncork()
    this.socket.cork()
  }
}

/** Accumulates socket bytes and returns whole decoded frames. */
export class FrameReader {
  private chunks: Buffer[] = []
  private bufferedBytes = 0
  /** The size of each frame the last push returned, header included (the server counts them against its bounds). */
  readonly sizes: number[] = []

  constructor(private readonly frameBytesMax: number = FRAME_BYTES_MAX) {}

  /** Bytes held of frames not yet complete (after push: of the one incomplete frame, if any). */
  get buffered(): number {
    return this.bufferedBytes
  }

  /** The length the incomplete frame announced (header included), or 0 when its header has not come. */
  get expected(): number {
    return this.bufferedBytes < FRAME_HEADER_BYTES ? 0 : FRAME_HEADER_BYTES + this.peek(FRAME_HEADER_BYTES).readUInt32BE(0)
  }

  push(chunk: Buffer): Record<string, unknown>[] {
    this.chunks.push(chunk)
    this.bufferedBytes += chunk.length
    const frames: Record<string, unknown>[] = []
    this.sizes.length = 0
    for (;;) {
      if (this.bufferedBytes < FRAME_HEADER_BYTES) return frames
      const head = this.peek(FRAME_HEADER_BYTES)
      const length = head.readUInt32BE(0)
      if (length > this.frameBytesMax) throw new FrameError(`frame of ${length} bytes is over the bound of ${this.frameBytesMax}`)
      if (this.bufferedBytes < FRAME_HEADER_BYTES + length) return frames
      const bytes = this.take(FRAME_HEADER_BYTES + length).subarray(FRAME_HEADER_BYTES)
      let value: unknown
      try {
        value = decode(bytes)
      } catch (error) {
        throw new FrameError(`frame is not CBOR: ${(error as Error).message}`)
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
        throw new FrameError('frame is not a CBOR map')
      }
      frames.push(value as Record<string, unknown>)
      this.sizes.push(FRAME_HEADER_BYTES + length)
    }
  }

  private peek(count: number): Buffer {
    if (this.chunks[0]!.length >= count) return this.chunks[0]!
    this.chunks = [Buffer.concat(this.chunks)]
    return this.chunks[0]!
  }

  private take(count: number): Buffer {
    const whole = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)
    const out = whole.subarray(0, count)
    const rest = whole.subarray(count)
    this.chunks = rest.length > 0 ? [rest] : []
    this.bufferedBytes -= count
    return out
  }
}
