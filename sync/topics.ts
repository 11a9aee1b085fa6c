// Topic layout (docs/sync.md): {prefix}/{log}/{status|vector|events|health}/{replica}.
// The prefix carries the protocol version ('interlog/v1' by default).

export type Channel = 'status' | 'vector' | 'events' | 'health'

const NAME = /^[A-Za-z0-9.-][A-Za-z0-9_.-]{0,127}$/

/** A log name: 1 to 128 of A-Z a-z 0-9 _ . -, not starting with _ (reserved: P/_nodes). */
export function isTopicName(value: string): boolean {
  return NAME.test(value)
}

export function topic(prefix: string, log: string, channel: Channel, replica: string): string {
  return `${prefix}/${log}/${channel}/${replica}`
}

export function subscription(prefix: string, log: string, channel: Channel): string {
  return `${prefix}/${log}/${channel}/+`
}

/** The channel and replica of a topic of this log, or undefined. */
export function parseTopic(prefix: string, log: string, value: string): { channel: Channel, replica: string } | undefined {
  const head = `${prefix}/${log}/`
  if (!value.startsWith(head)) return undefined
  const [channel, replica, ...rest] = value.slice(head.length).split('/')
  if (rest.length > 0 || replica === undefined) return undefined
  if (channel !== 'status' && channel !== 'vector' && channel !== 'events' && channel !== 'health') return undefined
  return { channel, replica }
}
