;; A WebAssembly validator for fixed-size sensor readings, in WebAssembly text.
;; Payload: 8 bytes, little-endian: u32 sensor id, f32 value. Accepted when the id is not zero
;; and the value is a number within -40..125 (a typical industrial temperature range).
;;
;; ABI (docs/validators.md): export memory, alloc(len) -> ptr, validate(ptr, len) -> code
;; (0 accepts), and optionally message(code) -> pointer to a NUL-terminated UTF-8 reason.
;; Build: node validators/examples/wasm/build.mjs (needs the `wabt` npm package or `wat2wasm`).
(module
  (memory (export "memory") 1 4)

  ;; Reasons, NUL-terminated, at fixed addresses below the payload area.
  (data (i32.const 16)  "payload must be 8 bytes: u32 sensor id, f32 value\00")
  (data (i32.const 80)  "sensor id 0 is reserved\00")
  (data (i32.const 112) "value is not a number\00")
  (data (i32.const 144) "value out of range -40..125\00")

  ;; One event at a time: the payload always goes at 1024; memory grows to fit it.
  (func (export "alloc") (param $len i32) (result i32)
    (local $pages i32)
    (local.set $pages
      (i32.shr_u (i32.add (i32.add (local.get $len) (i32.const 1024)) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.lt_s (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const 0))
          (then unreachable))))
    (i32.const 1024))

  (func (export "validate") (param $ptr i32) (param $len i32) (result i32)
    (local $value f32)
    (if (i32.ne (local.get $len) (i32.const 8)) (then (return (i32.const 1))))
    (if (i32.eqz (i32.load (local.get $ptr))) (then (return (i32.const 2))))
    (local.set $value (f32.load (i32.add (local.get $ptr) (i32.const 4))))
    (if (f32.ne (local.get $value) (local.get $value)) (then (return (i32.const 3))))
    (if (f32.lt (local.get $value) (f32.const -40)) (then (return (i32.const 4))))
    (if (f32.gt (local.get $value) (f32.const 125)) (then (return (i32.const 4))))
    (i32.const 0))

  (func (export "message") (param $code i32) (result i32)
    (block $unknown
      (br_if 0 (i32.eq (local.get $code) (i32.const 0)))
      (if (i32.eq (local.get $code) (i32.const 1)) (then (return (i32.const 16))))
      (if (i32.eq (local.get $code) (i32.const 2)) (then (return (i32.const 80))))
      (if (i32.eq (local.get $code) (i32.const 3)) (then (return (i32.const 112))))
      (if (i32.eq (local.get $code) (i32.const 4)) (then (return (i32.const 144)))))
    (i32.const 0))
)
