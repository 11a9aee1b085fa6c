// Compiles WebAssembly text for tests, with the `wabt` devDependency.
import wabtInit from 'wabt'

export async function wat(text: string): Promise<Uint8Array> {
  const wabt = await wabtInit()
  const module = wabt.parseWat('test.wat', text)
  try {
    return new Uint8Array(module.toBinary({}).buffer)
  } finally {
    module.destroy()
  }
}

/** A module with the validator ABI whose validate body is `body` (it may use $ptr and $len). */
export function validatorWat(body: string, extra = ''): string {
  return `(module
    (memory (export "memory") 1 4)
    (func (export "alloc") (param $len i32) (result i32)
      (local $pages i32)
      (local.set $pages (i32.shr_u (i32.add (local.get $len) (i32.const 66559)) (i32.const 16)))
      (if (i32.gt_u (local.get $pages) (memory.size))
        (then (drop (memory.grow (i32.sub (local.get $pages) (memory.size))))))
      (i32.const 1024))
    (func (export "validate") (param $ptr i32) (param $len i32) (result i32) ${body})
    ${extra})`
}
