/*
 * say.c — the server's log lines (psl_say.h): one line per event, to stderr, one write(2).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "psl_error.h"
#include "psl_say.h"

static psl_say_level_t say_level = PSL_SAY_INFO;

static const char *const say_names[] = {"error", "warn", "info", "debug"};

int psl_say_level_parse(const char *s, psl_say_level_t *out) {
  for (int i = 0; i < 4; i++) {
    if (s && strcmp(s, say_names[i]) == 0) {
      *out = (psl_say_level_t)i;
      return 0;
    }
  }
  return PSL_EINVALID;
}

void psl_say_set_level(psl_say_level_t level) { say_level = level; }

int psl_say_enabled(psl_say_level_t level) { return level <= say_level; }

/* Write all of buf, retrying on EINTR; a log line that cannot be written is dropped (there is
 * nowhere else to say so). */
static void say_write(const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDERR_FILENO, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    buf += n;
    len -= (size_t)n;
  }
}

void psl_sayv(psl_say_level_t level, const char *fmt, va_list ap) {
  if (!psl_say_enabled(level))
    return;
  char line[PSL_SAY_LINE_MAX];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000L, say_names[level]);
  if (n < 0)
    return;
  size_t len = (size_t)n;
  int m = vsnprintf(line + len, sizeof line - len, fmt, ap);
  if (m < 0)
    return;
  len += (size_t)m;
  if (len > sizeof line - 2)
    len = sizeof line - 2; /* cut, keep room for the newline */
  while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
    len--;
  line[len++] = '\n';
  say_write(line, len);
}

void psl_say(psl_say_level_t level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  psl_sayv(level, fmt, ap);
  va_end(ap);
}

void psl_say_lws(int lws_level, const char *line) {
  psl_say_level_t level = PSL_SAY_DEBUG;
  if (lws_level & LLL_ERR)
    level = PSL_SAY_ERROR;
  else if (lws_level & LLL_WARN)
    level = PSL_SAY_WARN;
  else if (lws_level & (LLL_NOTICE | LLL_USER))
    level = PSL_SAY_INFO;
  psl_say(level, "lws: %s", line);
}
