// WebAssembly validators. The ABI (docs/validators.md):
//   exports memory, alloc(len: i32) -> i32, validate(ptr: i32, len: i32) -> i32 (0 accepts),
//   optionally message(code: i32) -> i32, a pointer to a NUL-terminated UTF-8 reason.
// The module is compiled and instantiated once at open; each event costs one copy of its payload
// into the module's memory and two calls. The host bounds the payload (the log's maxEventBytes)
// and the memory (wasmMemoryBytesMax). A trap (unreachable, out-of-bounds access, stack overflow)
// or a memory over the bound is a rejection with the reason, and the module is instantiated afresh
// so that state a trap left half-updated does not leak into the next event.

import fs from 'node:fs'
import { REASON_CHARS_MAX, ValidatorLoadError, type Validator, type ValidatorEvent, type ValidatorLimits } from './types.js'

// The TypeScript libs used here (ES2022, no DOM) do not declare WebAssembly; this is the part used.
interface WasmModule { readonly brand: 'module' }
interface WasmInstance { exports: Record<string, unknown> }
interface WasmApi {
  Module: { new(bytes: Uint8Array): WasmModule, imports(module: WasmModule): { module: string, name: string, kind: string }[] }
  Instance: new(module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance
  Memory: new(descriptor: { initial: number }) => { buffer: ArrayBuffer }
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

type I32Function = (...args: number[]) => number

interface Exports {
  memory: { buffer: ArrayBuffer }
  alloc: I32Function
  validate: I32Function
  message: I32Function | undefined
}

const decoder = new TextDecoder('utf-8', { fatal: false })

export function loadWasmValidator(name: string, source: string | Uint8Array, limits: ValidatorLimits): Validator {
  let bytes: Uint8Array
  if (typeof source === 'string') {
    try {
      bytes = fs.readFileSync(source)
    } catch (error) {
      throw new ValidatorLoadError(name, `cannot read WebAssembly file ${source}: ${(error as Error).message}`)
    }
  } else {
    bytes = source
  }
  let module: WasmModule
  try {
    module = new Wasm.Module(bytes)
  } catch (error) {
    throw new ValidatorLoadError(name, `not a valid WebAssembly module: ${(error as Error).message}`)
  }
  const imports = importsFor(name, module)
  const instantiate = (): Exports => checkExports(name, new Wasm.Instance(module, imports).exports, limits)
  let current: Exports
  try {
    current = instantiate()
  } catch (error) {
    if (error instanceof ValidatorLoadError) throw error
    throw new ValidatorLoadError(name, `instantiation failed: ${(error as Error).message}`)
  }
  let view = new Uint8Array(current.memory.buffer)

  const overBound = (): string => {
    current = instantiate()
    view = new Uint8Array(current.memory.buffer)
    return `memory grew beyond the bound of ${limits.wasmMemoryBytesMax} bytes`
  }
  const check = (event: ValidatorEvent): string | undefined => {
    const payload = event.payload
    if (payload.length > limits.payloadBytesMax) {
      return `payload of ${payload.length} bytes is over the bound of ${limits.payloadBytesMax} bytes for WebAssembly validators`
    }
    try {
      const pointer = current.alloc(payload.length) >>> 0
      // A grown memory detaches the old buffer (byteLength 0): the memory getter is not cheap, so
      // it is read only then.
      if (view.byteLength === 0) {
        view = new Uint8Array(current.memory.buffer)
        if (view.length > limits.wasmMemoryBytesMax) return overBound()
      }
      if (pointer + payload.length > view.length) return `alloc(${payload.length}) returned ${pointer}, outside memory`
      view.set(payload, pointer)
      const code = current.validate(pointer, payload.length) | 0
      if (view.byteLength === 0) {
        view = new Uint8Array(current.memory.buffer)
        if (view.length > limits.wasmMemoryBytesMax) return overBound()
      }
      if (code === 0) return undefined
      return messageFor(current, code)
    } catch (error) {
      current = instantiate()
      view = new Uint8Array(current.memory.buffer)
      const what = error instanceof RangeError ? 'stack overflow' : 'trap'
      return `${what}: ${(error as Error).message}`
    }
  }
  return { name, kind: 'wasm', check }
}

/** Every imported function traps if called (AssemblyScript's env.abort, for example); other imports are refused. */
function importsFor(name: string, module: WasmModule): Record<string, Record<string, unknown>> {
  const imports: Record<string, Record<string, unknown>> = {}
  for (const entry of Wasm.Module.imports(module)) {
    if (entry.kind !== 'function') {
      throw new ValidatorLoadError(name, `imports ${entry.kind} ${entry.module}.${entry.name}; validators may import only functions`)
    }
    imports[entry.module] ??= {}
    imports[entry.module]![entry.name] = () => {
      throw new Error(`called imported function ${entry.module}.${entry.name}`)
    }
  }
  return imports
}

function checkExports(name: string, exports: Record<string, unknown>, limits: ValidatorLimits): Exports {
  const memory = exports['memory'] as { buffer?: unknown } | undefined
  if (memory === undefined || !(memory.buffer instanceof ArrayBuffer)) throw new ValidatorLoadError(name, 'does not export memory')
  for (const required of ['alloc', 'validate']) {
    if (typeof exports[required] !== 'function') throw new ValidatorLoadError(name, `does not export function ${required}`)
  }
  if (exports['message'] !== undefined && typeof exports['message'] !== 'function') {
    throw new ValidatorLoadError(name, 'exports message, but not as a function')
  }
  if (memory.buffer.byteLength > limits.wasmMemoryBytesMax) {
    throw new ValidatorLoadError(name, `starts with ${memory.buffer.byteLength} bytes of memory, over the bound of ${limits.wasmMemoryBytesMax}`)
  }
  return {
    memory: memory as { buffer: ArrayBuffer },
    alloc: exports['alloc'] as I32Function,
    validate: exports['validate'] as I32Function,
    message: exports['message'] as I32Function | undefined,
  }
}

function messageFor(exports: Exports, code: number): string {
  if (exports.message === undefined) return `rejected with code ${code}`
  const pointer = exports.message(code) >>> 0
  const bytes = new Uint8Array(exports.memory.buffer)
  if (pointer >= bytes.length) return `rejected with code ${code} (message pointer ${pointer} is outside memory)`
  let end = pointer
  const limit = Math.min(bytes.length, pointer + REASON_CHARS_MAX)
  while (end < limit && bytes[end] !== 0) end++
  const text = decoder.decode(bytes.subarray(pointer, end))
  return text.length === 0 ? `rejected with code ${code}` : text
}
