// Segments and bytes on disk of a log directory (allocated blocks: segments are sparse files).
import fs from 'node:fs'
import path from 'node:path'

export function diskUse(directory: string): { segments: number, bytes: number } {
  let segments = 0
  let bytes = 0
  for (const name of fs.readdirSync(directory)) {
    const stat = fs.statSync(path.join(directory, name))
    if (name.endsWith('.seg')) segments++
    bytes += stat.blocks * 512
  }
  return { segments, bytes }
}

/** Bytes free for this user on the file system of `directory`, and their share of it; null when statfs fails. */
export function diskFree(directory: string): { bytes: number, fraction: number } | null {
  try {
    const stats = fs.statfsSync(directory)
    return { bytes: stats.bavail * stats.bsize, fraction: stats.blocks > 0 ? stats.bavail / stats.blocks : 1 }
  } catch {
    return null
  }
}
