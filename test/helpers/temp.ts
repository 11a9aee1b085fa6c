// Test helpers: a temp directory per test, removed at teardown, and small payload makers.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

interface Teardown { teardown(fn: () => unknown): void }

/** A fresh directory under the system temp dir (or `base`), removed when the test ends. */
export function tempDir(t: Teardown, base = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(base, 'interlog-test-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

export function payload(text: string): Uint8Array {
  return new TextEncoder().encode(text)
}

export function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes)
}

/** Deterministic PRNG (mulberry32) for seeded randomised tests. */
export function prng(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of iterable) out.push(item)
  return out
}
