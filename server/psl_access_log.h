/*
 * psl_access_log.h — the access log: who read what, for the reads that cross territories.
 *
 * DIR/access.log, append-only text, mode 0600, one line per read by a coordinator, an
 * auditor or an admin (a caseworker reads only their own territory, as their work requires;
 * those reads are not logged):
 *
 *   2025-03-14T09:26:53.589Z token=0f3a9c21b7d4 role=auditor read=sub terr=* streams=* from=0 ...
 *   2025-03-14T09:27:10.002Z token=0f3a9c21b7d4 role=auditor read=participant id=0190f5a2-...
 *
 * time (UTC, ms) · token id (never the token, never the person's name: `token list` maps the
 * id to its holder) · role · read= what was read (sub, participant, counters, report) · the
 * selection, as codes, uuids and numbers only.  No personal data is ever written: bytes of
 * the selection that are not printable ASCII are written as '?', and a line is at most
 * PSL_ALOG_LINE_MAX bytes.
 *
 * Each line is one write(2) on an O_APPEND descriptor, not fsync'd: an audit trail for
 * review, not a ledger (a crash may lose the last lines, never corrupt earlier ones).
 * Rotation is the operator's (logrotate with copytruncate).  Thread-safe.
 */
#ifndef PSL_ACCESS_LOG_H
#define PSL_ACCESS_LOG_H

#include "psl_access.h"

/* The longest line: a sub naming PSL_MAX_FILTER streams of 48 bytes takes ~3.2 KiB. */
#define PSL_ALOG_LINE_MAX 4096

typedef struct psl_alog_s psl_alog_t;

/* Open (creating, 0600) DIR/access.log for appending.  0 or PSL_E*. */
int psl_alog_open(psl_alog_t **out, const char *dir);
void psl_alog_close(psl_alog_t *a); /* accepts NULL */

/* 1 if reads by p are logged (coordinator, auditor, admin), else 0. */
int psl_alog_wants(const psl_principal_t *p);

/* Log one read by p (a no-op for a NULL a or a principal psl_alog_wants refuses): what is
 * a word ("sub", "participant", "counters", "report"), detail printf-style "key=value ..."
 * made of codes, uuids and numbers. */
void psl_alog_read(psl_alog_t *a, const psl_principal_t *p, const char *what,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif /* PSL_ACCESS_LOG_H */
