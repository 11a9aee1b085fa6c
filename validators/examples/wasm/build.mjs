// Builds reading.wasm from reading.wat. Uses the `wabt` npm package (a devDependency of this
// repository) or, failing that, the `wat2wasm` command from Debian's wabt package.
// The compiled reading.wasm is committed, so users and tests need neither.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

const source = fileURLToPath(new URL('./reading.wat', import.meta.url))
const target = fileURLToPath(new URL('./reading.wasm', import.meta.url))

export async function watToWasm(text, name = 'module.wat') {
  const wabt = await (await import('wabt')).default()
  const module = wabt.parseWat(name, text)
  try {
    return Buffer.from(module.toBinary({}).buffer)
  } finally {
    module.destroy()
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let bytes
  try {
    bytes = await watToWasm(fs.readFileSync(source, 'utf8'), 'reading.wat')
  } catch (error) {
    if (error.code !== 'ERR_MODULE_NOT_FOUND') throw error
    execFileSync('wat2wasm', [source, '-o', target], { stdio: 'inherit' })
    bytes = fs.readFileSync(target)
  }
  fs.writeFileSync(target, bytes)
  console.log(`wrote ${target} (${bytes.length} bytes)`)
}
