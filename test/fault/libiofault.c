// libiofault: an LD_PRELOAD shim that fails the Nth file I/O operation of a process, and keeps a
// model of what the disk holds, for the I/O fault test (test/fault/io-faults.test.ts).
//
// Node and libuv reach the disk through these glibc calls, from the main thread (fs.*Sync) and
// from threadpool threads (fs.* callbacks): the counter is atomic and the disk model is under one
// mutex. Only operations on files under IOFAULT_DIR are counted (the path of a descriptor comes
// from /proc/self/fd). Counted: write, pwrite(64), writev, pwritev(64), pwritev2, pwritev64v2,
// fsync, fdatasync, ftruncate(64), and open/open64/openat/openat64 with O_CREAT (where a full
// disk refuses a new file).
//
// The disk model (with IOFAULT_SHADOW_DIR): for each regular file, a shadow file named after its
// inode number holds what a power cut would leave of it: its content at its last successful
// fsync or fdatasync. Writes mark byte ranges dirty; a successful sync copies the dirty ranges
// (and the size) to the shadow; a failed sync marks them clean without copying, as Linux does
// after a writeback error ("fsyncgate"): a later successful sync does not bring them back. A file
// never synced has no shadow (a power cut leaves it empty). Directory entries are not modelled.
//
// Environment:
//   IOFAULT_DIR         files under this directory are counted; unset: the shim does nothing
//   IOFAULT_AT          1-based index of the operation to fail; 0 (default): only count
//   IOFAULT_KIND        EIO | ENOSPC | short. 'short' makes a write write about half of its
//                       bytes (rounded down to 512 when that leaves something, so O_DIRECT
//                       alignment holds) and return that count, and the next write fail with
//                       ENOSPC (a disk filling up; libuv retries short writes by itself, so a
//                       lone short write never reaches JavaScript); for other calls it means EIO
//   IOFAULT_STICKY      1: every counted operation after the Nth fails too (a dead disk)
//   IOFAULT_SHADOW_DIR  where the disk model keeps its shadow files; unset: no model
//   IOFAULT_REPORT_FILE "fault <n> <call> <path>" at the fault, "total <count>" at exit
//   IOFAULT_TRACE_FILE  one line per counted operation: "<n> <call> <path> <bytes>"
//
// A failed write, open, ftruncate or sync does not reach the real call.

#define _GNU_SOURCE
// Fortified headers wrap open() in an inline function; this file defines the real symbol.
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PATH_BYTES_MAX 4096
#define LINE_BYTES_MAX (PATH_BYTES_MAX + 128)
#define SHORT_ALIGN_BYTES 512
#define IOVEC_COUNT_MAX 1024
#define FILES_MAX 128
#define DIRTY_RANGES_MAX 256
#define COPY_CHUNK_BYTES (64 * 1024)

enum kind { KIND_EIO, KIND_ENOSPC, KIND_SHORT };

static char fault_dir[PATH_BYTES_MAX];
static size_t fault_dir_bytes;
static long fault_at;
static enum kind fault_kind = KIND_EIO;
static int fault_sticky;
static char shadow_dir[PATH_BYTES_MAX];
static int report_fd = -1;
static int trace_fd = -1;
static long operation_count; // atomic: __atomic builtins only

// ---- the real calls ----------------------------------------------------------------------------

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off64_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_pwritev64v2)(int, const struct iovec *, int, off64_t, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);

// Lets a macro argument carry a leading comma (an optional parameter).
#define COMMA ,

#define RESOLVE(name)                                                                           \
  do { if (real_##name == NULL) real_##name = dlsym(RTLD_NEXT, #name); } while (0)

// ---- reports -----------------------------------------------------------------------------------

// Reports and shadows go straight to the kernel: write() and friends here are the shim's own.
static void emit(int fd, const char *line) {
  if (fd < 0) return;
  size_t length = strlen(line);
  while (length > 0) {
    ssize_t written = syscall(SYS_write, fd, line, length);
    if (written <= 0) return;
    line += written;
    length -= (size_t)written;
  }
}

static int open_report(const char *variable) {
  const char *path = getenv(variable);
  if (path == NULL || path[0] == '\0') return -1;
  return (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void copy_variable(const char *variable, char *out, size_t *length_out) {
  const char *value = getenv(variable);
  size_t length = value == NULL ? 0 : strlen(value);
  while (length > 1 && value[length - 1] == '/') length--;
  if (length >= PATH_BYTES_MAX) length = 0;
  if (length > 0) memcpy(out, value, length);
  out[length] = '\0';
  if (length_out != NULL) *length_out = length;
}

__attribute__((constructor)) static void iofault_init(void) {
  copy_variable("IOFAULT_DIR", fault_dir, &fault_dir_bytes);
  if (fault_dir_bytes == 0) return;
  copy_variable("IOFAULT_SHADOW_DIR", shadow_dir, NULL);
  const char *at = getenv("IOFAULT_AT");
  fault_at = at == NULL ? 0 : strtol(at, NULL, 10);
  const char *kind = getenv("IOFAULT_KIND");
  if (kind != NULL && strcmp(kind, "ENOSPC") == 0) fault_kind = KIND_ENOSPC;
  else if (kind != NULL && strcmp(kind, "short") == 0) fault_kind = KIND_SHORT;
  const char *sticky = getenv("IOFAULT_STICKY");
  fault_sticky = sticky != NULL && strcmp(sticky, "1") == 0;
  report_fd = open_report("IOFAULT_REPORT_FILE");
  trace_fd = open_report("IOFAULT_TRACE_FILE");
}

__attribute__((destructor)) static void iofault_fini(void) {
  char line[64];
  snprintf(line, sizeof line, "total %ld\n", __atomic_load_n(&operation_count, __ATOMIC_SEQ_CST));
  emit(report_fd, line);
}

// ---- which operations count --------------------------------------------------------------------

static int under_fault_dir(const char *path) {
  return fault_dir_bytes > 0 && strncmp(path, fault_dir, fault_dir_bytes) == 0 &&
    (path[fault_dir_bytes] == '/' || path[fault_dir_bytes] == '\0');
}

// The path of `fd` into `path`, or "" when it is not under the fault directory.
static void path_of_fd(int fd, char *path) {
  char link[64];
  path[0] = '\0';
  if (fault_dir_bytes == 0 || fd < 0) return;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t length = readlink(link, path, PATH_BYTES_MAX - 1);
  path[length < 0 ? 0 : length] = '\0';
  if (!under_fault_dir(path)) path[0] = '\0';
}

// The absolute form of `given` (relative to `dirfd` or the working directory) into `path`, or "".
static void path_of_name(int dirfd, const char *given, char *path) {
  char base[PATH_BYTES_MAX];
  path[0] = '\0';
  if (fault_dir_bytes == 0 || given == NULL) return;
  if (given[0] == '/') {
    snprintf(path, PATH_BYTES_MAX, "%s", given);
  } else {
    if (dirfd == AT_FDCWD) {
      if (getcwd(base, sizeof base) == NULL) return;
    } else {
      char link[64];
      snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
      ssize_t length = readlink(link, base, sizeof base - 1);
      if (length < 0) return;
      base[length] = '\0';
    }
    if (snprintf(path, PATH_BYTES_MAX, "%s/%s", base, given) >= PATH_BYTES_MAX) path[0] = '\0';
  }
  if (!under_fault_dir(path)) path[0] = '\0';
}

// Counts one operation on `path` (none when it is ""); returns whether it is to fail.
static int count_and_decide(const char *call, const char *path, size_t bytes) {
  if (path[0] == '\0') return 0;
  long n = __atomic_add_fetch(&operation_count, 1, __ATOMIC_SEQ_CST);
  char line[LINE_BYTES_MAX];
  if (trace_fd >= 0) {
    snprintf(line, sizeof line, "%ld %s %s %zu\n", n, call, path, bytes);
    emit(trace_fd, line);
  }
  if (fault_at <= 0 || n < fault_at || (n > fault_at && !fault_sticky)) return 0;
  if (n == fault_at) {
    snprintf(line, sizeof line, "fault %ld %s %s\n", n, call, path);
    emit(report_fd, line);
  }
  return 1;
}

static int fail_with(int error) {
  errno = error;
  return -1;
}

// The error of a failed call other than a write ('short' means EIO there).
static int fail_with_errno(void) {
  return fail_with(fault_kind == KIND_ENOSPC ? ENOSPC : EIO);
}

static size_t short_bytes(size_t bytes) {
  size_t half = bytes / 2;
  size_t aligned = half - half % SHORT_ALIGN_BYTES;
  return aligned > 0 ? aligned : half;
}

// ---- the disk model ----------------------------------------------------------------------------

struct range { off_t start, end; };

struct file {
  ino_t inode;     // 0: free slot
  int shadow_fd;   // -1 until the first successful sync
  int dirty_count;
  struct range dirty[DIRTY_RANGES_MAX];
};

static pthread_mutex_t model_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct file files[FILES_MAX];
static char copy_buffer[COPY_CHUNK_BYTES];

static void model_failure(const char *what) {
  char line[256];
  snprintf(line, sizeof line, "model-failure %s (errno %d)\n", what, errno);
  emit(report_fd, line);
}

// The model entry of regular file `fd`, created when `create`; NULL for other descriptors.
static struct file *file_of(int fd, int create) {
  struct stat status;
  if (shadow_dir[0] == '\0' || fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) return NULL;
  struct file *free_slot = NULL;
  for (int i = 0; i < FILES_MAX; i++) {
    if (files[i].inode == status.st_ino) return &files[i];
    if (files[i].inode == 0 && free_slot == NULL) free_slot = &files[i];
  }
  if (!create) return NULL;
  if (free_slot == NULL) { model_failure("more files than FILES_MAX"); return NULL; }
  free_slot->inode = status.st_ino;
  free_slot->shadow_fd = -1;
  free_slot->dirty_count = 0;
  return free_slot;
}

static void mark_dirty(int fd, off_t start, off_t end) {
  struct file *file = file_of(fd, 1);
  if (file == NULL || end <= start) return;
  for (int i = 0; i < file->dirty_count; i++) {
    struct range *range = &file->dirty[i];
    if (start <= range->end && end >= range->start) {
      if (start < range->start) range->start = start;
      if (end > range->end) range->end = end;
      return;
    }
  }
  if (file->dirty_count == DIRTY_RANGES_MAX) { model_failure("more dirty ranges than DIRTY_RANGES_MAX"); return; }
  file->dirty[file->dirty_count++] = (struct range){ start, end };
}

// A new, empty file: whatever the model knew of an earlier file with this inode number is void.
static void forget_file(int fd) {
  struct file *file = file_of(fd, 0);
  if (file == NULL) return;
  if (file->shadow_fd >= 0) syscall(SYS_close, file->shadow_fd);
  char path[PATH_BYTES_MAX + 32];
  snprintf(path, sizeof path, "%s/%lu", shadow_dir, (unsigned long)file->inode);
  syscall(SYS_unlinkat, AT_FDCWD, path, 0);
  file->inode = 0;
}

// Copies [start, end) of the file to its shadow.
static int copy_range(int from_fd, int to_fd, off_t start, off_t end) {
  while (start < end) {
    size_t want = end - start < COPY_CHUNK_BYTES ? (size_t)(end - start) : COPY_CHUNK_BYTES;
    ssize_t got = syscall(SYS_pread64, from_fd, copy_buffer, want, start);
    if (got < 0) return -1;
    if (got == 0) return 0; // past the end of the file: the size says the rest
    if (syscall(SYS_pwrite64, to_fd, copy_buffer, (size_t)got, start) != got) return -1;
    start += got;
  }
  return 0;
}

// After a successful sync of `fd`: the dirty ranges and the size reach the shadow.
static void note_synced(int fd) {
  struct file *file = file_of(fd, 1);
  if (file == NULL) return;
  if (file->shadow_fd < 0) {
    char path[PATH_BYTES_MAX + 32];
    snprintf(path, sizeof path, "%s/%lu", shadow_dir, (unsigned long)file->inode);
    file->shadow_fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (file->shadow_fd < 0) { model_failure("cannot create a shadow file"); return; }
  }
  // A descriptor of our own, without O_DIRECT, to read what was written.
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  int read_fd = (int)syscall(SYS_openat, AT_FDCWD, link, O_RDONLY | O_CLOEXEC);
  struct stat status;
  if (read_fd < 0 || fstat(fd, &status) != 0) { model_failure("cannot read a synced file"); return; }
  for (int i = 0; i < file->dirty_count; i++) {
    if (copy_range(read_fd, file->shadow_fd, file->dirty[i].start, file->dirty[i].end) != 0) model_failure("copy to shadow");
  }
  if (syscall(SYS_ftruncate, file->shadow_fd, status.st_size) != 0) model_failure("shadow size");
  syscall(SYS_close, read_fd);
  file->dirty_count = 0;
}

// After a failed sync: the kernel marks the pages clean; they never reach the disk.
static void note_sync_failed(int fd) {
  struct file *file = file_of(fd, 0);
  if (file != NULL) file->dirty_count = 0;
}

// ---- the interposed calls ----------------------------------------------------------------------
// Each call on a counted file runs under the model mutex, from the decision to the bookkeeping.

// A short write leaves the rest for a retry (libuv retries short writes by itself), and on a
// full disk the retry fails: the next counted write after a short one fails with ENOSPC.
static int short_write_pending; // under model_mutex

// Decides a write of `bytes`: returns an errno value when it is to fail, else 0 with the count of
// bytes to write in `keep`.
static int decide_write(const char *call, const char *path, size_t bytes, size_t *keep) {
  *keep = bytes;
  int fail = count_and_decide(call, path, bytes);
  if (short_write_pending) {
    short_write_pending = 0;
    return ENOSPC;
  }
  if (!fail) return 0;
  if (fault_kind != KIND_SHORT || bytes < 2) return fault_kind == KIND_ENOSPC ? ENOSPC : EIO;
  *keep = short_bytes(bytes);
  short_write_pending = 1;
  return 0;
}

static off_t write_offset(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return lseek(fd, 0, flags >= 0 && (flags & O_APPEND) != 0 ? SEEK_END : SEEK_CUR);
}

ssize_t write(int fd, const void *buffer, size_t bytes) {
  RESOLVE(write);
  char path[PATH_BYTES_MAX];
  path_of_fd(fd, path);
  if (path[0] == '\0') return real_write(fd, buffer, bytes);
  pthread_mutex_lock(&model_mutex);
  off_t offset = write_offset(fd);
  size_t keep;
  int error = decide_write("write", path, bytes, &keep);
  ssize_t written = error != 0 ? fail_with(error) : real_write(fd, buffer, keep);
  if (written > 0) mark_dirty(fd, offset, offset + written);
  pthread_mutex_unlock(&model_mutex);
  return written;
}

#define DEFINE_PWRITE(name, offset_type)                                                        \
  ssize_t name(int fd, const void *buffer, size_t bytes, offset_type offset) {                  \
    RESOLVE(name);                                                                              \
    char path[PATH_BYTES_MAX];                                                                  \
    path_of_fd(fd, path);                                                                       \
    if (path[0] == '\0') return real_##name(fd, buffer, bytes, offset);                         \
    pthread_mutex_lock(&model_mutex);                                                           \
    size_t keep;                                                                                \
    int error = decide_write(#name, path, bytes, &keep);                                        \
    ssize_t written = error != 0 ? fail_with(error) : real_##name(fd, buffer, keep, offset); \
    if (written > 0) mark_dirty(fd, offset, offset + written);                                  \
    pthread_mutex_unlock(&model_mutex);                                                         \
    return written;                                                                             \
  }
DEFINE_PWRITE(pwrite, off_t)
DEFINE_PWRITE(pwrite64, off64_t)

static size_t iovec_bytes(const struct iovec *iov, int count) {
  size_t total = 0;
  for (int i = 0; i < count; i++) total += iov[i].iov_len;
  return total;
}

// A copy of `iov` covering its first `keep` bytes into `out`; returns the count of entries.
static int truncate_iovec(const struct iovec *iov, int count, size_t keep, struct iovec *out) {
  int used = 0;
  for (int i = 0; i < count && i < IOVEC_COUNT_MAX && keep > 0; i++) {
    out[used] = iov[i];
    if (out[used].iov_len > keep) out[used].iov_len = keep;
    keep -= out[used].iov_len;
    used++;
  }
  return used;
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
  RESOLVE(writev);
  char path[PATH_BYTES_MAX];
  path_of_fd(fd, path);
  if (path[0] == '\0') return real_writev(fd, iov, count);
  pthread_mutex_lock(&model_mutex);
  off_t offset = write_offset(fd);
  size_t bytes = iovec_bytes(iov, count);
  size_t keep;
  struct iovec kept[IOVEC_COUNT_MAX];
  int error = decide_write("writev", path, bytes, &keep);
  ssize_t written = error != 0 ? fail_with(error)
    : keep == bytes ? real_writev(fd, iov, count) : real_writev(fd, kept, truncate_iovec(iov, count, keep, kept));
  if (written > 0) mark_dirty(fd, offset, offset + written);
  pthread_mutex_unlock(&model_mutex);
  return written;
}

#define DEFINE_PWRITEV(name, offset_type, flags_parameter, flags_argument)                      \
  ssize_t name(int fd, const struct iovec *iov, int count, offset_type offset flags_parameter) { \
    RESOLVE(name);                                                                              \
    char path[PATH_BYTES_MAX];                                                                  \
    path_of_fd(fd, path);                                                                       \
    if (path[0] == '\0') return real_##name(fd, iov, count, offset flags_argument);             \
    pthread_mutex_lock(&model_mutex);                                                           \
    size_t bytes = iovec_bytes(iov, count);                                                     \
    size_t keep;                                                                                \
    struct iovec kept[IOVEC_COUNT_MAX];                                                         \
    int error = decide_write(#name, path, bytes, &keep);                                        \
    ssize_t written = error != 0 ? fail_with(error)               \
      : keep == bytes ? real_##name(fd, iov, count, offset flags_argument)                      \
      : real_##name(fd, kept, truncate_iovec(iov, count, keep, kept), offset flags_argument);   \
    if (written > 0) mark_dirty(fd, offset, offset + written);                                  \
    pthread_mutex_unlock(&model_mutex);                                                         \
    return written;                                                                             \
  }
DEFINE_PWRITEV(pwritev, off_t, , )
DEFINE_PWRITEV(pwritev64, off64_t, , )
DEFINE_PWRITEV(pwritev2, off_t, COMMA int flags, COMMA flags)
DEFINE_PWRITEV(pwritev64v2, off64_t, COMMA int flags, COMMA flags)

#define DEFINE_SYNC(name)                                                                       \
  int name(int fd) {                                                                            \
    RESOLVE(name);                                                                              \
    char path[PATH_BYTES_MAX];                                                                  \
    path_of_fd(fd, path);                                                                       \
    if (path[0] == '\0') return real_##name(fd);                                                \
    pthread_mutex_lock(&model_mutex);                                                           \
    int result;                                                                                 \
    if (count_and_decide(#name, path, 0)) {                                                     \
      result = fail_with_errno();                                                               \
      note_sync_failed(fd);                                                                     \
    } else {                                                                                    \
      result = real_##name(fd);                                                                 \
      if (result == 0) note_synced(fd);                                                         \
    }                                                                                           \
    pthread_mutex_unlock(&model_mutex);                                                         \
    return result;                                                                              \
  }
DEFINE_SYNC(fsync)
DEFINE_SYNC(fdatasync)

#define DEFINE_FTRUNCATE(name, offset_type)                                                     \
  int name(int fd, offset_type length) {                                                        \
    RESOLVE(name);                                                                              \
    char path[PATH_BYTES_MAX];                                                                  \
    path_of_fd(fd, path);                                                                       \
    if (path[0] == '\0') return real_##name(fd, length);                                        \
    pthread_mutex_lock(&model_mutex);                                                           \
    int result = count_and_decide(#name, path, (size_t)length) ? fail_with_errno() : real_##name(fd, length); \
    pthread_mutex_unlock(&model_mutex);                                                         \
    return result;                                                                              \
  }
DEFINE_FTRUNCATE(ftruncate, off_t)
DEFINE_FTRUNCATE(ftruncate64, off64_t)

// O_CREAT opens (and O_TMPFILE, which also needs room) are counted; other opens pass through.
static int creates(int flags) {
  return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
}

// After a creating open: an empty file is new to the model (its inode number may be reused).
static int opened(int fd) {
  struct stat status;
  if (fd >= 0 && fstat(fd, &status) == 0 && S_ISREG(status.st_mode) && status.st_size == 0) forget_file(fd);
  return fd;
}

#define DEFINE_OPEN(name, dirfd_parameter, dirfd_argument, dirfd_value)                         \
  int name(dirfd_parameter const char *given, int flags, ...) {                                 \
    RESOLVE(name);                                                                              \
    mode_t mode = 0;                                                                            \
    if (!creates(flags)) return real_##name(dirfd_argument given, flags);                       \
    va_list arguments;                                                                          \
    va_start(arguments, flags);                                                                 \
    mode = va_arg(arguments, mode_t);                                                           \
    va_end(arguments);                                                                          \
    char path[PATH_BYTES_MAX];                                                                  \
    path_of_name(dirfd_value, given, path);                                                     \
    if (path[0] == '\0') return real_##name(dirfd_argument given, flags, mode);                 \
    pthread_mutex_lock(&model_mutex);                                                           \
    int fd = count_and_decide(#name, path, 0) ? fail_with_errno() : opened(real_##name(dirfd_argument given, flags, mode)); \
    pthread_mutex_unlock(&model_mutex);                                                         \
    return fd;                                                                                  \
  }
DEFINE_OPEN(open, , , AT_FDCWD)
DEFINE_OPEN(open64, , , AT_FDCWD)
DEFINE_OPEN(openat, int dirfd COMMA, dirfd COMMA, dirfd)
DEFINE_OPEN(openat64, int dirfd COMMA, dirfd COMMA, dirfd)
