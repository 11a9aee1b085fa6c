// Single writer: an exclusive, non-blocking flock on DIR/LOCK, through fs-ext. flock locks belong
// to an open file description, so a second open of the same directory fails at once whether it
// comes from this process or another. The kernel drops the lock when the process dies, so a crash
// never leaves a stale lock behind.

import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { LogError } from './errors.js'
import { FILE_NAME_LOCK } from './format.js'

const require = createRequire(import.meta.url)
const fsExt = require('fs-ext') as { flockSync(fd: number, flags: 'exnb' | 'un'): void }

export class DirectoryLock {
  private constructor(private fd: number) {}

  static acquire(directory: string): DirectoryLock {
    const lockPath = path.join(directory, FILE_NAME_LOCK)
    let fd: number
    try {
      fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
    } catch (error) {
      throw new LogError('IO', `cannot create ${lockPath}: ${(error as Error).message}`, { path: lockPath, cause: error })
    }
    try {
      fsExt.flockSync(fd, 'exnb')
    } catch (error) {
      fs.closeSync(fd)
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
        throw new LogError('LOCKED',
          `log ${directory} is open elsewhere (lock ${lockPath} is held by this or another process); ` +
          'close it there or talk to the process that owns it', { path: lockPath })
      }
      throw new LogError('IO', `cannot lock ${lockPath}: ${(error as Error).message}`, { path: lockPath, cause: error })
    }
    return new DirectoryLock(fd)
  }

  release(): void {
    if (this.fd < 0) return
    try {
      fsExt.flockSync(this.fd, 'un')
    } finally {
      fs.closeSync(this.fd)
      this.fd = -1
    }
  }
}
