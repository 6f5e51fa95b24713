/*
 * faultfs.c — an LD_PRELOAD shim that makes the disk under one file fail on demand, for the
 * fault tests (tests/test-faults.c) of the real passerelled.  Built as
 * $(B)/lib/libpsl-faultfs.so, without sanitizers (it only forwards calls).
 *
 * Environment (read once, at load):
 *   PSL_FAULT_PATH     substring of the path of the files to hurt, e.g. "/log/data.mdb"
 *   PSL_FAULT_TRIGGER  a file; while it exists, its first byte says what fails:
 *                        's'  space: a write that would make a hurt file longer fails with
 *                             ENOSPC (what a full disk does: overwriting blocks the file
 *                             already has still works, as LMDB's meta pages do);
 *                        'y'  sync: fdatasync / fsync of a hurt file fail with EIO;
 *                        'b'  both.
 *                      The test creates it to fill the disk and removes it to give the space
 *                      back, while the server runs.
 *
 * Calls hurt: write, pwrite, pwrite64, writev, pwritev, pwritev64, fdatasync, fsync.  Each
 * call on a hurt descriptor costs a readlink and an fstat (tests only).  Every other call is
 * forwarded untouched (dlsym RTLD_NEXT).  Under a sanitizer build of the server, ASan must be
 * told not to insist on coming first (ASAN_OPTIONS=verify_asan_link_order=0).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *fault_path;    /* NULL: the shim does nothing */
static const char *fault_trigger;

__attribute__((constructor)) static void faultfs_init(void) {
  fault_path = getenv("PSL_FAULT_PATH");
  fault_trigger = getenv("PSL_FAULT_TRIGGER");
  if (fault_path && !*fault_path)
    fault_path = NULL;
  if (!fault_trigger || !*fault_trigger)
    fault_path = NULL;
}

/* The trigger's mode byte, or 0 when it does not exist.  Raw syscalls of the read side only:
 * nothing here goes through the calls this file replaces. */
static char trigger_mode(void) {
  int fd = open(fault_trigger, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char c = 's';
  if (read(fd, &c, 1) != 1)
    c = 's'; /* an empty trigger: a full disk */
  close(fd);
  return c;
}

static int hurt_fd(int fd) {
  char link[64], path[PATH_MAX];
  if (!fault_path)
    return 0;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0)
    return 0;
  path[n] = '\0';
  return strstr(path, fault_path) != NULL;
}

/* 1 when writing n bytes at off (off < 0: the current offset) must fail for lack of space. */
static int no_space(int fd, off_t off, size_t n) {
  if (!hurt_fd(fd))
    return 0;
  char m = trigger_mode();
  if (m != 's' && m != 'b')
    return 0;
  struct stat st;
  if (fstat(fd, &st) != 0)
    return 0;
  if (off < 0) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_APPEND))
      return n > 0;
    off = lseek(fd, 0, SEEK_CUR);
    if (off < 0)
      return 0;
  }
  return (off_t)(off + (off_t)n) > st.st_size;
}

static int sync_fails(int fd) {
  if (!hurt_fd(fd))
    return 0;
  char m = trigger_mode();
  return m == 'y' || m == 'b';
}

static size_t iov_bytes(const struct iovec *iov, int cnt) {
  size_t n = 0;
  for (int i = 0; i < cnt; i++)
    n += iov[i].iov_len;
  return n;
}

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef int (*sync_fn)(int);

/* The next definition of name (libc's), looked up once. */
#define REAL(type, name)                                                                 \
  static type real_##name;                                                               \
  if (!real_##name)                                                                      \
  real_##name = (type)dlsym(RTLD_NEXT, #name)

#define FAIL_IF(cond, err)                                                               \
  do {                                                                                   \
    if (cond) {                                                                          \
      errno = (err);                                                                     \
      return -1;                                                                         \
    }                                                                                    \
  } while (0)

ssize_t write(int fd, const void *buf, size_t n) {
  REAL(write_fn, write);
  FAIL_IF(no_space(fd, -1, n), ENOSPC);
  return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite_fn, pwrite);
  FAIL_IF(no_space(fd, off, n), ENOSPC);
  return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite_fn, pwrite64);
  FAIL_IF(no_space(fd, off, n), ENOSPC);
  return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  REAL(writev_fn, writev);
  FAIL_IF(no_space(fd, -1, iov_bytes(iov, cnt)), ENOSPC);
  return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev_fn, pwritev);
  FAIL_IF(no_space(fd, off, iov_bytes(iov, cnt)), ENOSPC);
  return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev_fn, pwritev64);
  FAIL_IF(no_space(fd, off, iov_bytes(iov, cnt)), ENOSPC);
  return real_pwritev64(fd, iov, cnt, off);
}

int fdatasync(int fd) {
  REAL(sync_fn, fdatasync);
  FAIL_IF(sync_fails(fd), EIO);
  return real_fdatasync(fd);
}

int fsync(int fd) {
  REAL(sync_fn, fsync);
  FAIL_IF(sync_fails(fd), EIO);
  return real_fsync(fd);
}
