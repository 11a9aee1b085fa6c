// Types shared by the validator runtime and its callers.

/** What a validator sees of one event. The object is reused between calls: do not keep it. */
export interface ValidatorEvent {
  payload: Uint8Array
  origin: string
  pos: number
  time: number
}

/** A user validator: returns nothing (undefined or null) to accept, a reason string to reject. */
export type ValidatorFunction = (event: ValidatorEvent) => string | undefined | null | void

/** How a validator is given to openLog: a function, a compiled JS module, or a WebAssembly module. */
export type ValidatorSpec =
  | ValidatorFunction
  | { function: ValidatorFunction, name?: string }
  | { module: string, name?: string }
  | { wasm: string | Uint8Array, name?: string }

export interface ValidatorOptions {
  append?: readonly ValidatorSpec[]
  sync?: readonly ValidatorSpec[]
}

/** A loaded validator. check never throws: exceptions and traps become rejection reasons. */
export interface Validator {
  readonly name: string
  readonly kind: 'function' | 'module' | 'wasm'
  check(event: ValidatorEvent): string | undefined
}

/** A validator could not be loaded: names which one and what is wrong. */
export class ValidatorLoadError extends Error {
  override name = 'ValidatorLoadError'
  constructor(readonly validator: string, message: string) {
    super(`validator '${validator}': ${message}`)
  }
}

/** Bounds the host puts on validators. */
export interface ValidatorLimits {
  /** Largest payload handed to a validator (the log's maxEventBytes). */
  payloadBytesMax: number
  /** Largest WebAssembly memory a validator may have or grow to. */
  wasmMemoryBytesMax: number
}

/** Longest rejection reason kept (longer ones are cut), from JS or WebAssembly. */
export const REASON_CHARS_MAX = 1024
