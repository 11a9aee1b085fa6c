// interlog: an embedded, replicated, append-only event log. The package's public surface.

export * from './core/index.js'
export { ValidatorLoadError } from './validators/index.js'
export type { Validator, ValidatorEvent, ValidatorFunction, ValidatorOptions, ValidatorSpec } from './validators/index.js'
