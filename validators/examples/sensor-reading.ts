// Example append/sync validator, in TypeScript: a payload must be a CBOR map
// { sensor: string, value: number, unit: string } with a known unit and a value in its range.
// Compile it with the package (`npm run build` puts it at dist/validators/examples/sensor-reading.js)
// and load it by path: openLog(dir, { validators: { append: [{ module: '.../sensor-reading.js' }] } }).

import { decode } from 'cbor-x'

/** Accepted units and their ranges (inclusive). */
export const RANGES: Readonly<Record<string, readonly [number, number]>> = {
  'C': [-40, 125],
  '%RH': [0, 100],
  'hPa': [300, 1100],
  'V': [0, 60],
}

/** The most characters a sensor name may have. */
export const SENSOR_CHARS_MAX = 64

export default function sensorReading(event: { payload: Uint8Array }): string | undefined {
  let reading: unknown
  try {
    reading = decode(event.payload)
  } catch {
    return 'payload is not CBOR'
  }
  if (typeof reading !== 'object' || reading === null || Array.isArray(reading)) return 'payload is not a CBOR map'
  const { sensor, value, unit } = reading as Record<string, unknown>
  if (typeof sensor !== 'string' || sensor.length === 0 || sensor.length > SENSOR_CHARS_MAX) {
    return `sensor must be a string of 1 to ${SENSOR_CHARS_MAX} characters`
  }
  if (typeof unit !== 'string' || RANGES[unit] === undefined) return `unit must be one of ${Object.keys(RANGES).join(', ')}`
  if (typeof value !== 'number' || !Number.isFinite(value)) return 'value must be a finite number'
  const [low, high] = RANGES[unit]
  if (value < low || value > high) return `${sensor}: ${value} ${unit} is outside ${low}..${high}`
  return undefined
}
