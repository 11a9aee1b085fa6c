// The simulator's one source of randomness: sfc32 seeded from a 64-bit seed (its low 32 bits in
// one word of state, its high 32 bits mixed into another, so seeds below 2^32 give the streams
// they always gave). Every choice of a run comes from here, in order, so a seed replays its run.

/** The largest seed: seeds are unsigned 64-bit integers. */
export const SEED_MAX = (1n << 64n) - 1n

export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number | bigint) {
    const wide = BigInt(seed)
    if (wide < 0n || wide > SEED_MAX) throw new RangeError(`a seed is an integer from 0 to 2^64 - 1, got ${wide}`)
    this.a = 0x9e3779b9
    this.b = 0x243f6a88
    this.c = (0xb7e15162 ^ Number(wide >> 32n)) >>> 0
    this.d = Number(wide & 0xffff_ffffn)
    for (let i = 0; i < 16; i++) this.next()
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 0x1_0000_0000) * n)
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T
  }

  /** A key of `weights`, with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const keys = Object.keys(weights) as K[]
    let total = 0
    for (const key of keys) total += weights[key]
    let at = this.next() / 0x1_0000_0000 * total
    for (const key of keys) {
      at -= weights[key]
      if (at < 0) return key
    }
    return keys[keys.length - 1]!
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff
    return out
  }
}
