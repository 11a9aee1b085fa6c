// validators: user-compiled functions (JavaScript modules, WebAssembly modules, or plain
// functions) that gate appends and merges. Loaded once when a log opens; each returns nothing to
// accept an event or a reason to reject it. This file is the module's public face. It depends on
// nothing else in InterLog (core uses it, not the other way round).

import { functionValidator, loadModuleValidator } from './function-validator.js'
import { ValidatorLoadError, type Validator, type ValidatorLimits, type ValidatorSpec } from './types.js'
import { loadWasmValidator } from './wasm-validator.js'

export { ValidatorLoadError, REASON_CHARS_MAX } from './types.js'
export type { Validator, ValidatorEvent, ValidatorFunction, ValidatorLimits, ValidatorOptions, ValidatorSpec } from './types.js'

/** Default bound on a WebAssembly validator's memory. */
export const WASM_MEMORY_BYTES_MAX = 64 << 20

/** Loads a list of validators in order; the first that cannot load throws ValidatorLoadError. */
export async function loadValidators(specs: readonly ValidatorSpec[] | undefined, phase: 'append' | 'sync', limits: ValidatorLimits): Promise<Validator[]> {
  if (specs === undefined) return []
  if (!Array.isArray(specs)) throw new ValidatorLoadError(`${phase} validators`, 'must be an array')
  const validators: Validator[] = []
  const names = new Set<string>()
  for (let i = 0; i < specs.length; i++) {
    const validator = await loadOne(specs[i], `${phase} validator ${i}`, limits)
    if (names.has(validator.name)) throw new ValidatorLoadError(validator.name, `the name is used twice among the ${phase} validators`)
    names.add(validator.name)
    validators.push(validator)
  }
  return validators
}

async function loadOne(spec: unknown, fallbackName: string, limits: ValidatorLimits): Promise<Validator> {
  if (typeof spec === 'function') {
    return functionValidator(spec.name.length > 0 ? spec.name : fallbackName, 'function', spec as never)
  }
  if (typeof spec !== 'object' || spec === null) {
    throw new ValidatorLoadError(fallbackName, 'must be a function, { function }, { module: path } or { wasm: path | Uint8Array }')
  }
  const entry = spec as Record<string, unknown>
  const name = entry['name'] ?? fallbackName
  if (typeof name !== 'string' || name.length === 0) throw new ValidatorLoadError(fallbackName, 'name must be a non-empty string')
  const kinds = ['function', 'module', 'wasm'].filter((key) => entry[key] !== undefined)
  if (kinds.length !== 1) throw new ValidatorLoadError(name, 'must have exactly one of function, module or wasm')
  if (entry['function'] !== undefined) {
    if (typeof entry['function'] !== 'function') throw new ValidatorLoadError(name, 'function must be a function')
    return functionValidator(name, 'function', entry['function'] as never)
  }
  if (entry['module'] !== undefined) {
    if (typeof entry['module'] !== 'string') throw new ValidatorLoadError(name, 'module must be a path')
    return loadModuleValidator(name, entry['module'])
  }
  const wasm = entry['wasm']
  if (typeof wasm !== 'string' && !(wasm instanceof Uint8Array)) throw new ValidatorLoadError(name, 'wasm must be a path or a Uint8Array')
  return loadWasmValidator(name, wasm, limits)
}
