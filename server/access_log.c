/*
 * access_log.c — DIR/access.log (psl_access_log.h documents the line format).
 */
#include "psl_access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "psl_say.h"

struct psl_alog_s {
  int fd;
  pthread_mutex_t mu;
};

int psl_alog_open(psl_alog_t **out, const char *dir) {
  char path[PATH_MAX];
  *out = NULL;
  if ((size_t)snprintf(path, sizeof path, "%s/access.log", dir) >= sizeof path)
    return PSL_EINVALID;
  psl_alog_t *a = calloc(1, sizeof *a);
  if (!a)
    return PSL_ENOMEM;
  a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (a->fd < 0) {
    int rc = psl_err_from_errno(errno);
    free(a);
    return rc;
  }
  pthread_mutex_init(&a->mu, NULL);
  *out = a;
  return 0;
}

void psl_alog_close(psl_alog_t *a) {
  if (!a)
    return;
  close(a->fd);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

int psl_alog_wants(const psl_principal_t *p) {
  return p && !p->revoked &&
         (p->role == PSL_ROLE_COORDINATOR || p->role == PSL_ROLE_AUDITOR ||
          p->role == PSL_ROLE_ADMIN);
}

/* Printable ASCII but space is kept (the detail's separators); the rest becomes '?'. */
static void alog_clean(char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c > 0x7e)
      s[i] = '?';
  }
}

void psl_alog_read(psl_alog_t *a, const psl_principal_t *p, const char *what,
                   const char *fmt, ...) {
  char line[PSL_ALOG_LINE_MAX];
  struct timespec ts;
  struct tm tm;
  if (!a || !psl_alog_wants(p))
    return;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line,
                   "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ token=%s role=%s read=%s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, p->id, psl_role_name(p->role), what);
  if (n < 0 || (size_t)n >= sizeof line - 1)
    return;
  size_t head = (size_t)n;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + head, sizeof line - head - 1, fmt, ap);
  va_end(ap);
  size_t len = head + (m < 0 ? 0 : (size_t)m < sizeof line - head - 1 ? (size_t)m
                                                                       : sizeof line - head - 2);
  alog_clean(line + head, len - head);
  line[len++] = '\n';
  pthread_mutex_lock(&a->mu);
  ssize_t w = write(a->fd, line, len);
  pthread_mutex_unlock(&a->mu);
  if (w != (ssize_t)len)
    psl_say(PSL_SAY_WARN, "access log: write failed: %s", w < 0 ? strerror(errno) : "short");
}
