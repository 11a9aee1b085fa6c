// The one error class of InterLog's public API. Every expected failure (a lock held, a checksum
// mismatch, an oversized payload, a closed log, an I/O failure, a full disk) is a LogError with a code from a
// closed set; callers switch on `code`, never on the message. Extra fields say where: segment
// file, byte offset, position, validator name.

export type LogErrorCode =
  | 'LOCKED'
  | 'CORRUPT'
  | 'TOO_LARGE'
  | 'VALIDATION'
  | 'CLOSED'
  | 'IO'
  | 'NO_SPACE'
  | 'INVALID_ARGUMENT'
  | 'BUSY'

export const LOG_ERROR_CODES: readonly LogErrorCode[] = [
  'LOCKED', 'CORRUPT', 'TOO_LARGE', 'VALIDATION', 'CLOSED', 'IO', 'NO_SPACE', 'INVALID_ARGUMENT', 'BUSY',
]

export interface LogErrorDetails {
  /** Segment file name (not a full path) where the problem was found. */
  segment?: string
  /** Byte offset inside that segment file. */
  offset?: number
  /** Path of the file or directory involved. */
  path?: string
  /** Local position of the event involved. */
  localPos?: number
  /** Index of the offending item in a batch. */
  index?: number
  /** The underlying system error, for IO. */
  cause?: unknown
  [key: string]: unknown
}

export class LogError extends Error {
  override name = 'LogError'
  readonly code: LogErrorCode
  readonly details: LogErrorDetails

  constructor(code: LogErrorCode, message: string, details: LogErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.code = code
    this.details = details
  }
}

export function isLogError(error: unknown, code?: LogErrorCode): error is LogError {
  return error instanceof LogError && (code === undefined || error.code === code)
}

/** Whether a system error says the file system is full (or the quota used up): space may come back. */
export function isNoSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}
