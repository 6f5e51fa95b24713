/*
 * psl_say.h — the server's log lines (what it says on stderr), not the event log.
 *
 * One line per call, written with a single write(2) so that lines from several threads never
 * interleave:
 *
 *   2025-11-28T09:10:11.123Z info conn=12 hello ok token=3f9a0c1b2d4e role=caseworker
 *
 * i.e. an RFC 3339 UTC time with milliseconds, the level, then key=value words chosen by the
 * caller.  Callers never pass personal data: no token text, no names or devices of people,
 * nothing from `pii` or `data`, no peer addresses.  A token is named by its id (psl_access.h),
 * a connection by its number.
 *
 * The level is set once at start (--log-level) and read without a lock afterwards.
 */
#ifndef PSL_SAY_H
#define PSL_SAY_H

#include <stdarg.h>

typedef enum {
  PSL_SAY_ERROR = 0,
  PSL_SAY_WARN = 1,
  PSL_SAY_INFO = 2,
  PSL_SAY_DEBUG = 3
} psl_say_level_t;

/* "error", "warn", "info" or "debug" → *out; PSL_EINVALID otherwise. */
int psl_say_level_parse(const char *s, psl_say_level_t *out);

/* Lines above `level` are dropped.  Default PSL_SAY_INFO. */
void psl_say_set_level(psl_say_level_t level);

/* 1 if a line at `level` would be written (to skip building costly arguments). */
int psl_say_enabled(psl_say_level_t level);

/* Write one line (a newline is added; a longer line is cut at PSL_SAY_LINE_MAX bytes). */
void psl_say(psl_say_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void psl_sayv(psl_say_level_t level, const char *fmt, va_list ap);

/* Longest line, the prefix included: a log line names a few ids and codes, never a payload. */
#define PSL_SAY_LINE_MAX 512

/* libwebsockets' own log lines (lws_set_log_level's emit function), mapped to our levels and
 * prefixed with "lws:".  Only lws errors and warnings are enabled (net.c). */
void psl_say_lws(int lws_level, const char *line);

#endif /* PSL_SAY_H */
