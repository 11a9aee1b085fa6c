// core: the durable append-only log. This file is the module's public face; other folders import
// only from here.

export { openLog, Log } from './log.js'
export type { BatchRange, EventId, LogEvents, MergeResult, Quarantine, VersionVector } from './log.js'
export type { LogEvent } from './reader.js'
export type { RemoteEvent } from './merge-buffer.js'
export type { Damage, VerifyResult } from './verify.js'
export type { Truncation } from './recovery.js'
export { LogError, isLogError, LOG_ERROR_CODES } from './errors.js'
export type { LogErrorCode, LogErrorDetails } from './errors.js'
export type { OpenOptions, Durability, DirectIoMode, LogWarning } from './options.js'
export { DEFAULT_OPTIONS } from './options.js'
export { assert, AssertionError } from './assert.js'
export { Consumer, CONSUMER_BATCH_EVENTS_DEFAULT, CONSUMER_BATCH_EVENTS_MAX } from './consumers.js'
export type { ConsumerInfo, ConsumerOptions } from './consumers.js'
