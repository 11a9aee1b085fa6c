// The simulator's in-memory disk (sim/storage.ts): files behave as on a file system (sparse
// preallocation, SEEK_DATA / SEEK_HOLE, open modes, errors with node's codes, flock), and a crash
// does what a power cut does: synced bytes and fsynced directory entries survive, unsynced pages
// are kept, lost, torn or torn with garbage, unsynced namespace operations survive as a prefix, and
// the same seed gives the same bytes.

import t from 'tap'
import { SEEK_DATA, SEEK_HOLE } from '../../core/storage.js'
import { MemoryDisk, MEMORY_DISK_PAGE_BYTES, isSimulatedCrash, type MemorySession } from '../../sim/storage.js'
import { Prng } from '../../sim/prng.js'

const PAGE = MEMORY_DISK_PAGE_BYTES

function page(byte: number, count = 1): Buffer {
  return Buffer.alloc(PAGE * count, byte)
}

/** Writes the whole buffer at `position` (the disk never writes short outside a crash). */
function put(s: MemorySession, fd: number, bytes: Uint8Array, position: number): void {
  if (s.writeSync(fd, bytes, 0, bytes.length, position) !== bytes.length) throw new Error('short write')
}

function get(s: MemorySession, fd: number, length: number, position: number): Buffer {
  const bytes = Buffer.alloc(length)
  return bytes.subarray(0, s.readSync(fd, bytes, 0, length, position))
}

function asPromise<T>(start: (done: (error: NodeJS.ErrnoException | null, result: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => start((error, result) => (error === null ? resolve(result) : reject(error))))
}

t.test('writes read back; a 64 MiB ftruncate allocates nothing and its holes read as zeros', async (t) => {
  const disk = new MemoryDisk(new Prng(1))
  const s = disk.session()
  s.mkdirSync('/r0')
  s.fsyncDirectorySync('/')
  const fd = s.openSync('/r0/00000001.seg', 'createNew')
  t.equal(fd, 3, 'descriptors start at 3')
  put(s, fd, Buffer.from('hello, world'), 5000)
  t.equal(s.fileSizeSync(fd), 5012)
  t.same(get(s, fd, 12, 5000), Buffer.from('hello, world'))
  t.same(get(s, fd, 5000, 0), Buffer.alloc(5000), 'the bytes before the write are zeros')
  t.equal(get(s, fd, 100, 5006).length, 6, 'a read at the end is short')
  t.equal(get(s, fd, 100, 9000).length, 0, 'a read past the end reads nothing')

  s.ftruncateSync(fd, 64 << 20)
  t.equal(s.fileSizeSync(fd), 64 << 20)
  t.equal(s.sizeSync('/r0/00000001.seg'), 64 << 20)
  t.equal(disk.bytesHeld, PAGE, 'only the written page is held')
  t.same(get(s, fd, 1 << 20, 32 << 20), Buffer.alloc(1 << 20), 'a hole reads as zeros')
  put(s, fd, Buffer.from('end'), (64 << 20) - 3)
  t.same(get(s, fd, 10, (64 << 20) - 3), Buffer.from('end'))
  t.equal(disk.bytesHeld, 2 * PAGE)

  s.ftruncateSync(fd, 5003)
  t.same(get(s, fd, 100, 5000), Buffer.from('hel'), 'a shrink cuts the bytes')
  s.ftruncateSync(fd, 8192)
  t.same(get(s, fd, 100, 5000), Buffer.concat([Buffer.from('hel'), Buffer.alloc(97)]), 'bytes cut by a shrink read as zeros when the file grows again')
  t.equal(disk.bytesHeld, PAGE, 'the pages past a shrink are freed')
  s.closeSync(fd)

  t.same(s.readdirSync('/'), ['r0'])
  t.same(s.readdirSync('/r0'), ['00000001.seg'])
  t.ok(s.existsSync('/r0') && s.existsSync('/r0/00000001.seg') && !s.existsSync('/r0/nothing'))
  t.equal(s.readFileSync('/r0/00000001.seg').length, 8192)
})

t.test('open modes, errors with their codes, and async operations that complete later in call order', async (t) => {
  const s = new MemoryDisk(new Prng(2)).session()
  t.throws(() => s.openSync('/missing/file', 'create'), { code: 'ENOENT', message: /\/missing\/file/ }, 'no file in a missing directory')
  t.throws(() => s.readdirSync('/missing'), { code: 'ENOENT' })
  s.mkdirSync('/a/b/c')
  t.ok(s.existsSync('/a') && s.existsSync('/a/b'), 'mkdir creates the missing parents')
  t.throws(() => s.openSync('/a/x', 'read'), { code: 'ENOENT', message: /open '\/a\/x'/ })
  t.throws(() => s.openSync('/a/x', 'write'), { code: 'ENOENT' })
  t.throws(() => s.openSync('/a/b', 'create'), { code: 'EISDIR' })
  const fd = s.openSync('/a/x', 'create')
  put(s, fd, Buffer.from('abc'), 0)
  t.throws(() => s.openSync('/a/x', 'createNew'), { code: 'EEXIST' })
  t.throws(() => s.openSync('/a/x/y', 'create'), { code: 'ENOTDIR' })
  t.throws(() => s.mkdirSync('/a/x'), { code: 'EEXIST' })
  const readOnly = s.openSync('/a/x', 'read')
  t.throws(() => s.writeSync(readOnly, Buffer.from('z'), 0, 1, 0), { code: 'EBADF' }, 'no write through a read descriptor')
  const truncating = s.openSync('/a/x', 'truncate')
  t.equal(s.fileSizeSync(fd), 0, "'truncate' empties the file")
  t.throws(() => s.readSync(truncating, Buffer.alloc(1), 0, 1, 0), { code: 'EBADF' }, "no read through a 'truncate' descriptor")
  t.throws(() => s.readSync(99, Buffer.alloc(1), 0, 1, 0), { code: 'EBADF', message: /fd 99/ })
  t.throws(() => s.rmSync('/a/nothing', false), { code: 'ENOENT' })
  s.rmSync('/a/nothing', true)
  t.throws(() => s.renameSync('/a/nothing', '/a/y'), { code: 'ENOENT' })
  t.throws(() => s.renameSync('/a/x', '/nowhere/y'), { code: 'ENOENT' })
  t.throws(() => s.seekSync(fd, 0, SEEK_DATA), { code: 'ENXIO' }, 'an empty file has no data')
  t.equal(s.directIo, false)

  const order: string[] = []
  s.write(fd, Buffer.from('first'), 0, 5, 0, (error, written) => order.push(`write ${error?.code ?? written}`))
  s.read(fd, Buffer.alloc(5), 0, 5, 0, (error, read) => order.push(`read ${error?.code ?? read}`))
  s.fdatasync(fd, (error) => order.push(`fdatasync ${error?.code ?? 'ok'}`))
  s.write(readOnly, Buffer.from('x'), 0, 1, 0, (error) => order.push(`bad write ${error?.code}`))
  t.same(order, [], 'callbacks come on a later turn')
  t.same(get(s, fd, 5, 0), Buffer.from('first'), 'but the work is done at the call')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(order, ['write 5', 'read 5', 'fdatasync ok', 'bad write EBADF'])
})

t.test('SEEK_DATA and SEEK_HOLE find the written pages', async (t) => {
  const s = new MemoryDisk(new Prng(3)).session()
  const fd = s.openSync('/seg', 'create')
  s.ftruncateSync(fd, 256 << 10)
  put(s, fd, Buffer.alloc(5000, 1), 0) // pages 0 and 1
  put(s, fd, Buffer.alloc(10, 2), 25 * PAGE + 100) // page 25
  t.equal(s.seekSync(fd, 0, SEEK_DATA), 0)
  t.equal(s.seekSync(fd, 0, SEEK_HOLE), 2 * PAGE)
  t.equal(s.seekSync(fd, 100, SEEK_DATA), 100, 'an offset in data is data')
  t.equal(s.seekSync(fd, 2 * PAGE, SEEK_DATA), 25 * PAGE)
  t.equal(s.seekSync(fd, 3 * PAGE + 7, SEEK_HOLE), 3 * PAGE + 7, 'an offset in a hole is a hole')
  t.equal(s.seekSync(fd, 25 * PAGE, SEEK_HOLE), 26 * PAGE)
  t.throws(() => s.seekSync(fd, 26 * PAGE, SEEK_DATA), { code: 'ENXIO' }, 'no data after the last written page')
  t.throws(() => s.seekSync(fd, 256 << 10, SEEK_HOLE), { code: 'ENXIO' }, 'nothing at or past the size')
  s.ftruncateSync(fd, 25 * PAGE + 50)
  t.equal(s.seekSync(fd, 25 * PAGE, SEEK_HOLE), 25 * PAGE + 50, 'the size counts as a hole')
  s.ftruncateSync(fd, 20 * PAGE)
  t.throws(() => s.seekSync(fd, 2 * PAGE, SEEK_DATA), { code: 'ENXIO' }, 'a page truncated away holds no data')
})

t.test('synced data and fsynced directory entries survive any crash', async (t) => {
  for (let seed = 1; seed <= 50; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const s = disk.session()
    s.mkdirSync('/r0')
    s.fsyncDirectorySync('/')
    const fd = s.openSync('/r0/data', 'create')
    put(s, fd, page(7, 3), 0)
    s.ftruncateSync(fd, 256 << 10)
    s.fdatasyncSync(fd)
    s.fsyncDirectorySync('/r0')
    disk.crash()
    t.ok(s.crashed, 'the session died')
    const after = disk.session()
    const fd2 = after.openSync('/r0/data', 'read')
    if (after.fileSizeSync(fd2) !== 256 << 10 || !get(after, fd2, 3 * PAGE, 0).equals(page(7, 3))) {
      t.fail(`seed ${seed}: synced data changed`)
      return
    }
  }
  t.pass('50 seeds')
})

t.test('a crash with keepAll (the process dies, the machine runs on) keeps every unsynced write, size and namespace operation, still unsynced', async (t) => {
  const disk = new MemoryDisk(new Prng(4))
  const s = disk.session()
  s.mkdirSync('/r0')
  const fd = s.openSync('/r0/a', 'create')
  put(s, fd, Buffer.from('unsynced'), 10000)
  s.renameSync('/r0/a', '/r0/b')
  const before = disk.digest()
  const report = disk.crash({ keepAll: true })
  t.same(report, { pages: { kept: 1, lost: 0, torn: 0, garbage: 0 }, namespaceKept: 3, namespaceLost: 0 }, 'the directory, the creation and the rename')
  t.equal(disk.digest(), before, 'the same bytes')
  const after = disk.session()
  t.same(after.readdirSync('/r0'), ['b'])
  t.same(after.readFileSync('/r0/b').subarray(10000), Buffer.from('unsynced'))
  // The process crash made nothing durable: a power cut after it still meets the unsynced page and operations.
  const cut = disk.crash()
  t.equal(cut.namespaceKept + cut.namespaceLost, 3, 'the three namespace operations are still pending')
  t.ok(cut.pages.kept + cut.pages.lost + cut.pages.torn + cut.pages.garbage <= 1, 'at most the one page met a fate')
  t.same(disk.crash(), { pages: { kept: 0, lost: 0, torn: 0, garbage: 0 }, namespaceKept: 0, namespaceLost: 0 }, 'after a power cut, everything left is durable')
})

t.test('a directory created and not yet fsynced in its parent can vanish at a power cut, with its synced files; never after', async (t) => {
  let vanished = 0
  for (let seed = 1; seed <= 40; seed++) {
    for (const syncParent of [false, true]) {
      const disk = new MemoryDisk(new Prng(seed))
      const s = disk.session()
      s.mkdirSync('/data/log')
      if (syncParent) {
        s.fsyncDirectorySync('/')
        s.fsyncDirectorySync('/data')
      }
      const fd = s.openSync('/data/log/f', 'create')
      put(s, fd, Buffer.from('synced'), 0)
      s.fsyncSync(fd)
      s.fsyncDirectorySync('/data/log')
      disk.crash()
      const exists = disk.session().existsSync('/data/log/f')
      if (syncParent) t.ok(exists, `seed ${seed}: with its parents fsynced, the directory and its file survive`)
      else if (!exists) vanished++
    }
  }
  t.ok(vanished > 0, `without the parents' fsync the file vanished in ${vanished} of 40 seeds`)
})

t.test('a power cut after a process crash can still lose what the process wrote and never synced', async (t) => {
  let lost = 0
  for (let seed = 1; seed <= 40; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const s = disk.session()
    s.mkdirSync('/r0')
    const fd = s.openSync('/r0/a', 'create')
    put(s, fd, Buffer.from('unsynced'), 0)
    disk.crash({ keepAll: true })
    t.same(disk.session().readFileSync('/r0/a'), Buffer.from('unsynced'), `seed ${seed}: the page cache outlives the process`)
    disk.crash()
    const after = disk.session()
    if (!after.existsSync('/r0/a') || !after.readFileSync('/r0/a').equals(Buffer.from('unsynced'))) lost++
  }
  t.ok(lost > 0, `the power cut lost the unsynced file in ${lost} of 40 seeds`)
})

t.test('over many seeds, unsynced pages meet all four fates and synced pages never change', async (t) => {
  const totals = { kept: 0, lost: 0, torn: 0, garbage: 0 }
  const seen = { kept: 0, lost: 0, torn: 0, garbage: 0 }
  const sizes = new Set<number>()
  for (let seed = 1; seed <= 200; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const s = disk.session()
    const fd = s.openSync('/f', 'create')
    put(s, fd, page(0xaa, 4), 0)
    s.fsyncSync(fd)
    s.fsyncDirectorySync('/')
    put(s, fd, page(0xbb), 2 * PAGE) // a synced page rewritten
    for (let i = 4; i < 12; i++) put(s, fd, page(i), i * PAGE) // new pages
    const report = disk.crash()
    for (const fate of ['kept', 'lost', 'torn', 'garbage'] as const) totals[fate] += report.pages[fate]
    const after = disk.session()
    const bytes = after.readFileSync('/f')
    sizes.add(bytes.length)
    const counted = report.pages.kept + report.pages.lost + report.pages.torn + report.pages.garbage
    if (!(bytes.length === 4 * PAGE && counted === 1) && !(bytes.length === 12 * PAGE && counted === 9)) {
      t.fail(`seed ${seed}: size ${bytes.length} with ${counted} pages counted`)
      return
    }
    for (const i of [0, 1, 3]) {
      if (!bytes.subarray(i * PAGE, (i + 1) * PAGE).equals(page(0xaa))) {
        t.fail(`seed ${seed}: synced page ${i} changed`)
        return
      }
    }
    // The rewritten page: the new bytes up to a point, then the old ones (or garbage).
    const rewritten = bytes.subarray(2 * PAGE, 3 * PAGE)
    let cut = 0
    while (cut < PAGE && rewritten[cut] === 0xbb) cut++
    if (cut === PAGE) seen.kept++
    else if (cut === 0 && rewritten.equals(page(0xaa))) seen.lost++
    else if (rewritten.subarray(cut).equals(Buffer.alloc(PAGE - cut, 0xaa))) seen.torn++
    else seen.garbage++
    // The new pages, when the size kept them: a prefix of their bytes, then zeros or garbage.
    if (bytes.length === 12 * PAGE && report.pages.garbage === 0) {
      for (let i = 4; i < 12; i++) {
        const p = bytes.subarray(i * PAGE, (i + 1) * PAGE)
        let end = 0
        while (end < PAGE && p[end] === i) end++
        if (!p.subarray(end).equals(Buffer.alloc(PAGE - end))) {
          t.fail(`seed ${seed}: new page ${i} is neither kept, lost nor torn`)
          return
        }
      }
    }
  }
  t.ok(totals.kept > 0 && totals.lost > 0 && totals.torn > 0 && totals.garbage > 0, `fates reported: ${JSON.stringify(totals)}`)
  t.ok(seen.kept > 0 && seen.lost > 0 && seen.torn > 0 && seen.garbage > 0, `rewritten page seen: ${JSON.stringify(seen)}`)
  t.same([...sizes].sort((a, b) => a - b), [4 * PAGE, 12 * PAGE], 'the size is the durable or the current one')
  t.ok(totals.kept > totals.garbage && totals.lost > totals.garbage, 'weighted 4, 3, 2, 1')
})

t.test('a shrink not synced: the crash keeps the old size or the new', async (t) => {
  const sizes = new Set<number>()
  for (let seed = 1; seed <= 40; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const s = disk.session()
    const fd = s.openSync('/f', 'create')
    put(s, fd, page(0xaa, 3), 0)
    s.fsyncSync(fd)
    s.fsyncDirectorySync('/')
    s.ftruncateSync(fd, 100)
    disk.crash()
    const bytes = disk.session().readFileSync('/f')
    sizes.add(bytes.length)
    if (!bytes.subarray(0, 100).equals(Buffer.alloc(100, 0xaa))) t.fail(`seed ${seed}: bytes before the new size changed`)
  }
  t.same([...sizes].sort((a, b) => a - b), [100, 3 * PAGE])
})

t.test('a created file can vanish at a crash until its directory is fsynced', async (t) => {
  let vanished = 0
  let survived = 0
  for (let seed = 1; seed <= 100; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const s = disk.session()
    s.mkdirSync('/r0')
    s.fsyncDirectorySync('/')
    const fd = s.openSync('/r0/new', 'createNew')
    put(s, fd, Buffer.from('data'), 0)
    s.fsyncSync(fd) // the data is durable, its name is not
    disk.crash()
    if (disk.session().existsSync('/r0/new')) survived++
    else vanished++
  }
  t.ok(vanished > 0 && survived > 0, `vanished ${vanished}, survived ${survived}`)
  for (let seed = 1; seed <= 100; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const s = disk.session()
    s.mkdirSync('/r0')
    s.fsyncDirectorySync('/')
    s.mkdirSync('/r1')
    s.fsyncDirectorySync('/')
    const fd = s.openSync('/r0/new', 'createNew')
    put(s, fd, Buffer.from('data'), 0)
    s.fsyncSync(fd)
    s.openSync('/r1/other', 'create')
    s.fsyncDirectorySync('/r0')
    const report = disk.crash()
    t.equal(report.namespaceKept + report.namespaceLost, 1, 'the other directory\'s entry is still pending')
    const after = disk.session()
    if (!after.existsSync('/r0/new') || after.readFileSync('/r0/new').toString() !== 'data') {
      t.fail(`seed ${seed}: a file in an fsynced directory vanished`)
      return
    }
  }
})

t.test('a removal can be undone by a crash until the directory is fsynced', async (t) => {
  const outcomes = new Set<boolean>()
  for (let seed = 1; seed <= 40; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const s = disk.session()
    const fd = s.openSync('/f', 'create')
    put(s, fd, Buffer.from('kept'), 0)
    s.fsyncSync(fd)
    s.fsyncDirectorySync('/')
    s.rmSync('/f', false)
    t.notOk(s.existsSync('/f'))
    disk.crash()
    const after = disk.session()
    outcomes.add(after.existsSync('/f'))
    if (after.existsSync('/f')) t.equal(after.readFileSync('/f').toString(), 'kept')
  }
  t.same([...outcomes].sort(), [false, true])
})

t.test('rename is atomic: after a crash the target holds the old or the new content, whole', async (t) => {
  const old = Buffer.alloc(3 * PAGE + 17, 'o')
  const fresh = Buffer.alloc(2 * PAGE + 5, 'n')
  const seen = new Set<string>()
  for (const syncDirectory of [false, true]) {
    for (let seed = 1; seed <= 60; seed++) {
      const disk = new MemoryDisk(new Prng(seed))
      const s = disk.session()
      s.mkdirSync('/d')
      s.fsyncDirectorySync('/')
      const fd = s.openSync('/d/meta', 'createNew')
      put(s, fd, old, 0)
      s.fsyncSync(fd)
      s.closeSync(fd)
      s.fsyncDirectorySync('/d')
      // core/replica.ts writeFileAtomically: temp file, fsync, rename (then the directory's fsync).
      s.rmSync('/d/meta.tmp', true)
      const tmp = s.openSync('/d/meta.tmp', 'truncate')
      put(s, tmp, fresh, 0)
      s.fsyncSync(tmp)
      s.closeSync(tmp)
      s.renameSync('/d/meta.tmp', '/d/meta')
      if (syncDirectory) s.fsyncDirectorySync('/d')
      disk.crash()
      const content = disk.session().readFileSync('/d/meta')
      const which = content.equals(old) ? 'old' : content.equals(fresh) ? 'new' : 'torn'
      if (which === 'torn' || (syncDirectory && which === 'old')) {
        t.fail(`seed ${seed}: the target holds ${which} content (directory fsynced: ${syncDirectory})`)
        return
      }
      if (!syncDirectory) seen.add(which)
    }
  }
  t.same([...seen].sort(), ['new', 'old'], 'without the directory fsync, both outcomes happen')
})

t.test('armCrash(n): the n-th operation fails with EIO, then everything fails but close and unlock', async (t) => {
  const disk = new MemoryDisk(new Prng(5))
  const s = disk.session()
  const other = disk.session()
  s.mkdirSync('/r0')
  s.fsyncDirectorySync('/')
  const fd = s.openSync('/r0/f', 'create')
  const lockFd = s.openSync('/r0/lock', 'create')
  s.flockSync(lockFd, 'exnb')
  disk.armCrash(3)
  put(s, fd, Buffer.from('one'), 0) // 1
  t.same(get(s, fd, 3, 0), Buffer.from('one')) // 2
  let error: unknown
  try {
    s.fsyncSync(fd) // 3
  } catch (e) {
    error = e
  }
  t.match(error, { code: 'EIO', message: /simulated crash/ }, 'the third operation fails')
  t.ok(isSimulatedCrash(error))
  t.ok(disk.dead && s.crashed && other.crashed, 'every session is dead')
  t.throws(() => s.openSync('/r0/g', 'create'), { code: 'EIO' })
  t.throws(() => other.existsSync('/r0'), { code: 'EIO', message: /simulated crash/ })
  t.throws(() => s.readSync(fd, Buffer.alloc(1), 0, 1, 0), { code: 'EIO' })
  t.throws(() => s.flockSync(fd, 'exnb'), { code: 'EIO' })
  await t.rejects(asPromise<number>((done) => s.write(fd, Buffer.from('x'), 0, 1, 0, done)), { code: 'EIO' }, 'async operations call back with it')
  await t.rejects(asPromise<void>((done) => s.fdatasync(fd, (e) => done(e, undefined))), { code: 'EIO' })
  s.flockSync(lockFd, 'un')
  s.closeSync(fd)
  s.closeSync(lockFd)
  t.pass('close and unlock do nothing')
  const operations = disk.operations
  t.throws(() => s.fileSizeSync(fd), { code: 'EIO' })
  t.equal(disk.operations, operations, 'operations of the dead are not counted')

  disk.crash()
  t.notOk(disk.dead)
  t.ok(s.crashed, 'a session stays dead after the power cut')
  t.throws(() => s.existsSync('/r0'), { code: 'EIO' })
  const after = disk.session()
  t.notOk(after.crashed)
  t.ok(after.existsSync('/r0'), 'new sessions work')
})

t.test('armCrash counts every operation, async ones too, and disarm cancels it', async (t) => {
  const disk = new MemoryDisk(new Prng(6))
  const s = disk.session()
  const fd = s.openSync('/f', 'create')
  disk.armCrash(2)
  t.equal(await asPromise<number>((done) => s.write(fd, Buffer.from('ab'), 0, 2, 0, done)), 2)
  await t.rejects(asPromise<number>((done) => s.read(fd, Buffer.alloc(2), 0, 2, 0, done)), { code: 'EIO', message: /simulated crash at operation 3/ })
  disk.crash()
  const again = disk.session()
  disk.armCrash(1)
  disk.disarm()
  t.ok(again.existsSync('/'), 'a disarmed crash does not fire')
  t.notOk(disk.dead)
})

t.test('a crash at a write leaves a prefix of its bytes in the page cache', async (t) => {
  const lengths = new Set<number>()
  for (let seed = 1; seed <= 30; seed++) {
    const disk = new MemoryDisk(new Prng(seed))
    const s = disk.session()
    const fd = s.openSync('/f', 'create')
    disk.armCrash(1)
    t.throws(() => s.writeSync(fd, Buffer.alloc(10000, 0x5a), 0, 10000, 0), { code: 'EIO' })
    disk.crash({ keepAll: true })
    const bytes = disk.session().readFileSync('/f')
    if (!bytes.equals(Buffer.alloc(bytes.length, 0x5a))) t.fail(`seed ${seed}: not a prefix`)
    lengths.add(bytes.length)
  }
  t.ok(lengths.size > 10, `prefix lengths vary (${[...lengths].slice(0, 5).join(', ')}, ...)`)
})

t.test('flock: EAGAIN for another session or descriptor; released by unlock, close and crash', async (t) => {
  const disk = new MemoryDisk(new Prng(7))
  const a = disk.session()
  const b = disk.session()
  a.mkdirSync('/r0')
  a.fsyncDirectorySync('/')
  const fdA = a.openSync('/r0/lock', 'create')
  a.flockSync(fdA, 'exnb')
  a.flockSync(fdA, 'exnb')
  const fdB = b.openSync('/r0/lock', 'create')
  t.throws(() => b.flockSync(fdB, 'exnb'), { code: 'EAGAIN' }, 'another session')
  const fdA2 = a.openSync('/r0/lock', 'write')
  t.throws(() => a.flockSync(fdA2, 'exnb'), { code: 'EAGAIN' }, 'another descriptor of the same session')
  a.flockSync(fdA, 'un')
  b.flockSync(fdB, 'exnb')
  t.throws(() => a.flockSync(fdA, 'exnb'), { code: 'EAGAIN' })
  b.closeSync(fdB)
  a.flockSync(fdA, 'exnb')
  t.pass('closing released it')
  disk.crash()
  const c = disk.session()
  const fdC = c.openSync('/r0/lock', 'create')
  c.flockSync(fdC, 'exnb')
  t.pass('the crash released it')
})

/** A seeded workload: files written, synced or not, renamed and removed, crashes at armed operations. */
function workload(seed: number): { digest: string, reports: string } {
  const prng = new Prng(seed)
  const disk = new MemoryDisk(prng)
  const reports: string[] = []
  for (let round = 0; round < 6; round++) {
    const s = disk.session()
    s.mkdirSync('/r0')
    s.fsyncDirectorySync('/')
    disk.armCrash(5 + prng.int(60))
    try {
      const fds: number[] = []
      for (let step = 0; step < 80; step++) {
        const name = `/r0/${prng.int(4)}.seg`
        const choice = prng.int(10)
        if (choice === 0 || fds.length === 0) {
          const fd = s.openSync(name, 'create')
          if (s.fileSizeSync(fd) === 0) s.ftruncateSync(fd, 256 << 10)
          fds.push(fd)
        } else if (choice < 6) {
          const bytes = prng.bytes(1 + prng.int(6000))
          s.writeSync(prng.pick(fds), bytes, 0, bytes.length, prng.int(256 << 10))
        } else if (choice === 6) s.fdatasyncSync(prng.pick(fds))
        else if (choice === 7) s.fsyncDirectorySync('/r0')
        else if (choice === 8) {
          const names = s.readdirSync('/r0')
          if (names.length > 0) s.renameSync(`/r0/${prng.pick(names)}`, name)
        }
        else s.rmSync(name, true)
      }
      disk.disarm()
    } catch (error) {
      if (!isSimulatedCrash(error)) throw error
    }
    reports.push(JSON.stringify(disk.crash({ keepAll: prng.chance(0.25) })))
  }
  return { digest: disk.digest(), reports: reports.join('\n') }
}

t.test('the same seed gives the same bytes', async (t) => {
  for (const seed of [1, 2, 3, 42]) {
    const first = workload(seed)
    const second = workload(seed)
    t.equal(second.digest, first.digest, `seed ${seed}: the same digest`)
    t.equal(second.reports, first.reports, `seed ${seed}: the same crashes`)
  }
  t.not(workload(1).digest, workload(2).digest, 'another seed, other bytes')
  const empty = new MemoryDisk(new Prng(1))
  t.equal(empty.digest(), new MemoryDisk(new Prng(2)).digest(), 'the digest depends on the files only')
})

t.test('ENOSPC at the bound on bytes held; removed files free their pages', async (t) => {
  const disk = new MemoryDisk(new Prng(8), { bytesMax: 16 * PAGE })
  const s = disk.session()
  const fd = s.openSync('/big', 'create')
  put(s, fd, page(1, 16), 0)
  t.equal(disk.bytesHeld, 16 * PAGE)
  t.throws(() => s.writeSync(fd, Buffer.from('x'), 0, 1, 16 * PAGE), { code: 'ENOSPC', message: /no space left/ })
  t.equal(s.fileSizeSync(fd), 16 * PAGE, 'the failed write changed nothing')
  put(s, fd, Buffer.from('rewrite'), 100)
  t.pass('rewriting a page not synced needs no new one')
  s.ftruncateSync(fd, 1 << 30)
  t.pass('a sparse size takes no space')
  s.fsyncSync(fd)
  t.throws(() => s.writeSync(fd, Buffer.from('x'), 0, 1, 0), { code: 'ENOSPC' }, 'a synced page changed needs its copy')
  s.closeSync(fd)
  s.rmSync('/big', false)
  t.equal(disk.bytesHeld, 16 * PAGE, 'a removal not durable keeps the pages (a crash may bring the file back)')
  s.fsyncDirectorySync('/')
  t.equal(disk.bytesHeld, 0, 'a durable removal frees them')
  const small = s.openSync('/small', 'create')
  put(s, small, page(2, 4), 0)
  t.equal(disk.bytesHeld, 4 * PAGE)
})
