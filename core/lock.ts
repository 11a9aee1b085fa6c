// Single writer: an exclusive, non-blocking flock on DIR/LOCK (through the storage: fs-ext on real files). flock locks belong
// to an open file description, so a second open of the same directory fails at once whether it
// comes from this process or another. The kernel drops the lock when the process dies, so a crash
// never leaves a stale lock behind.

import path from 'node:path'
import { LogError } from './errors.js'
import { FILE_NAME_LOCK } from './format.js'
import { closeSynced, type Storage } from './storage.js'

export class DirectoryLock {
  private constructor(private readonly storage: Storage, private fd: number) {}

  /** `readOnly`: the LOCK file is opened, never created (a log without one is locked by nobody). */
  static acquire(storage: Storage, directory: string, readOnly = false): DirectoryLock {
    const lockPath = path.join(directory, FILE_NAME_LOCK)
    let fd: number
    try {
      if (readOnly && !storage.existsSync(lockPath)) return new DirectoryLock(storage, -1)
      fd = storage.openSync(lockPath, readOnly ? 'read' : 'create')
    } catch (error) {
      throw new LogError('IO', `cannot create ${lockPath}: ${(error as Error).message}`, { path: lockPath, cause: error })
    }
    try {
      storage.flockSync(fd, 'exnb')
    } catch (error) {
      closeSynced(storage, fd)
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
        throw new LogError('LOCKED',
          `log ${directory} is open elsewhere (lock ${lockPath} is held by this or another process); ` +
          'close it there or talk to the process that owns it', { path: lockPath })
      }
      throw new LogError('IO', `cannot lock ${lockPath}: ${(error as Error).message}`, { path: lockPath, cause: error })
    }
    return new DirectoryLock(storage, fd)
  }

  release(): void {
    if (this.fd < 0) return
    try {
      this.storage.flockSync(this.fd, 'un')
    } finally {
      closeSynced(this.storage, this.fd)
      this.fd = -1
    }
  }
}
