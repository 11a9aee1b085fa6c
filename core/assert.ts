// Invariant checks that stay on in production (TigerBeetle style).
// An assertion failure is a bug in InterLog, never an expected condition: it throws an
// AssertionError that callers must not catch. Expected conditions use LogError instead.

export class AssertionError extends Error {
  override name = 'AssertionError'
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(`interlog invariant violated: ${message}`)
}
