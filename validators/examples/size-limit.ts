// Example validator: refuses empty payloads and payloads over 4 KiB, a tighter bound than the
// log's maxEventBytes for one kind of sensor data. Load the compiled module by path
// (dist/validators/examples/size-limit.js).

export const PAYLOAD_BYTES_MAX = 4096

export default function sizeLimit(event: { payload: Uint8Array }): string | undefined {
  if (event.payload.length === 0) return 'payload is empty'
  if (event.payload.length > PAYLOAD_BYTES_MAX) return `payload has ${event.payload.length} bytes, over ${PAYLOAD_BYTES_MAX}`
  return undefined
}
