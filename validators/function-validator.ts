// JavaScript validators: a function given directly, or the default export of a module the user
// compiled (from TypeScript or anything else), loaded by path once at open. A thrown exception or
// a return value that is neither a string nor nothing is a rejection naming the validator, never a
// crash of the log.

import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { REASON_CHARS_MAX, ValidatorLoadError, type Validator, type ValidatorEvent, type ValidatorFunction } from './types.js'

export function functionValidator(name: string, kind: 'function' | 'module', fn: ValidatorFunction): Validator {
  return {
    name,
    kind,
    check(event: ValidatorEvent): string | undefined {
      let result: unknown
      try {
        result = fn(event)
      } catch (error) {
        return cut(`threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`)
      }
      if (result === undefined || result === null) return undefined
      if (typeof result === 'string') return cut(result.length === 0 ? 'rejected (empty reason)' : result)
      return `returned ${typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function' ? 'a Promise' : `a ${typeof result}`}; a validator returns a string to reject or nothing to accept, synchronously`
    },
  }
}

export async function loadModuleValidator(name: string, modulePath: string): Promise<Validator> {
  const resolved = path.resolve(modulePath)
  if (!fs.existsSync(resolved)) throw new ValidatorLoadError(name, `module ${resolved} does not exist`)
  let loaded: { default?: unknown }
  try {
    loaded = await import(pathToFileURL(resolved).href) as { default?: unknown }
  } catch (error) {
    throw new ValidatorLoadError(name, `module ${resolved} failed to load: ${(error as Error).message}`)
  }
  if (typeof loaded.default !== 'function') {
    throw new ValidatorLoadError(name, `module ${resolved} has no default export function (found ${typeof loaded.default})`)
  }
  return functionValidator(name, 'module', loaded.default as ValidatorFunction)
}

function cut(reason: string): string {
  return reason.length > REASON_CHARS_MAX ? `${reason.slice(0, REASON_CHARS_MAX)}…` : reason
}
