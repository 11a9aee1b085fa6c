// Renders benchmark rows as a Markdown table and an SVG chart (append throughput by payload size,
// one line per system, batches of 1000 at 'interval' durability).

export interface Row {
  scenario: string
  params: Record<string, unknown>
  unit: string
  ours: number
  peer: number
  peerName: string
  limit: number
}

export interface Meta { date: string, quick: boolean, node: string, cpus: number, cpu: string, seconds: number }

const fmt = (n: number): string => {
  if (!Number.isFinite(n)) return '–'
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US')
  return n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)
}
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}x` : '–')
const params = (p: Record<string, unknown>): string => Object.entries(p).map(([k, v]) => `${k} ${String(v)}`).join(', ')

export function renderMarkdown(meta: Meta, rows: Row[], verdicts: { target: string, result: string }[], notes: string[]): string {
  const lines = [
    `# InterLog benchmarks${meta.quick ? ' (--quick)' : ''}`,
    '',
    `${meta.date}, Node ${meta.node}, ${meta.cpus} x ${meta.cpu}, ${meta.seconds} s. One run, side by side: the ratios are the result.`,
    '',
    '## Targets',
    '',
    '| target | result |',
    '|---|---|',
    ...verdicts.map((v) => `| ${v.target} | ${v.result} |`),
    '',
    '## Results',
    '',
    '| scenario | parameters | unit | InterLog | compared with | its value | ratio | raw limit | InterLog / limit |',
    '|---|---|---|---:|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.scenario} | ${params(r.params)} | ${r.unit} | ${fmt(r.ours)} | ${r.peerName || '–'} | ${fmt(r.peer)} | ${ratio(r.ours, r.peer)} | ${fmt(r.limit)} | ${ratio(r.ours, r.limit)} |`),
  ]
  if (notes.length > 0) lines.push('', '## Notes', '', ...notes.map((n) => `- ${n}`))
  return lines.join('\n') + '\n'
}

export function renderSvg(rows: Row[]): string {
  const appends = rows.filter((r) => r.scenario === 'append' && r.params['batch'] === 1000 && r.params['durability'] === 'interval')
  const sizes = [...new Set(appends.map((r) => r.params['size'] as number))].sort((a, b) => a - b)
  const series = new Map<string, Map<number, number>>()
  const put = (name: string, size: number, value: number): void => {
    if (!Number.isFinite(value)) return
    if (!series.has(name)) series.set(name, new Map())
    series.get(name)!.set(size, value)
  }
  for (const r of appends) {
    const size = r.params['size'] as number
    put('InterLog', size, r.ours)
    put('raw write (limit)', size, r.limit)
    put(r.peerName.split(' (')[0]!, size, r.peer)
  }
  const width = 720
  const height = 420
  const left = 80
  const bottom = 60
  const top = 40
  const right = 200
  const values = [...series.values()].flatMap((m) => [...m.values()]).filter((v) => v > 0)
  const max = Math.log10(Math.max(10, ...values))
  const min = Math.floor(Math.log10(Math.max(1, Math.min(...values, 1e9))))
  const x = (i: number): number => left + (sizes.length <= 1 ? 0 : (i * (width - left - right)) / (sizes.length - 1))
  const y = (v: number): number => top + (height - top - bottom) * (1 - (Math.log10(v) - min) / Math.max(1e-9, max - min))
  const colours = ['#d62728', '#7f7f7f', '#1f77b4', '#2ca02c', '#9467bd', '#8c564b']
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="${left}" y="20" font-size="14">Append throughput, batches of 1000, 'interval' durability (events/s, log scale)</text>`,
    `<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="#000"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="#000"/>`,
  ]
  for (let p = min; p <= Math.ceil(max); p++) {
    const v = 10 ** p
    if (v < 10 ** min || Math.log10(v) > max + 0.01) continue
    parts.push(`<line x1="${left - 4}" y1="${y(v)}" x2="${width - right}" y2="${y(v)}" stroke="#eee"/><text x="${left - 8}" y="${y(v) + 4}" text-anchor="end">1e${p}</text>`)
  }
  sizes.forEach((size, i) => parts.push(`<text x="${x(i)}" y="${height - bottom + 18}" text-anchor="middle">${size >= 1024 ? `${size / 1024} KiB` : `${size} B`}</text>`))
  parts.push(`<text x="${(left + width - right) / 2}" y="${height - 20}" text-anchor="middle">payload size</text>`)
  let index = 0
  for (const [name, points] of series) {
    const colour = colours[index % colours.length]!
    const coords = sizes.map((size, i) => (points.has(size) ? `${x(i)},${y(points.get(size)!)}` : null)).filter((c): c is string => c !== null)
    parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${coords.join(' ')}"/>`)
    for (const c of coords) parts.push(`<circle cx="${c.split(',')[0]}" cy="${c.split(',')[1]}" r="3" fill="${colour}"/>`)
    parts.push(`<rect x="${width - right + 15}" y="${top + index * 20}" width="12" height="12" fill="${colour}"/><text x="${width - right + 32}" y="${top + index * 20 + 10}">${name}</text>`)
    index++
  }
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}
