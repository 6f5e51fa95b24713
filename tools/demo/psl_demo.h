/*
 * psl_demo.h — demo data sets for passerelle (libpsl-demo, the files of tools/demo/), linked into
 * passerelle-demo, the tests and the benchmarks.
 *
 *   psl_demo_2024()      the deterministic 2024 data set whose report prints back the
 *                        figures of the organisation's 2024 activity report
 *                        (docs/DEMO.md maps each figure to the events that make it)
 *   psl_demo_scale_*()   N participants with realistic histories, streamed in time order,
 *                        for load tests and benchmarks (deterministic for a seed)
 *   psl_demo_http_get()  a small HTTP/1.1 GET with a bearer token (the API, /healthz)
 *   psl_demo_check()     the 2024 figures read back from a report's JSON, against the seed
 *
 * Every event is a *new* event of DOMAIN.md (as pushed): id, stream, type, terr, at, data,
 * pii, expect.  `expect` is the stream's version before the event (0 for its first), so that
 * writing a data set twice stores it once: the second time every event is a conflict.
 * Ids (participants, sessions, referrals, events) are UUIDv7-shaped and deterministic.
 * No real person: names are "Personne 0001" and the like.
 */
#ifndef PSL_DEMO_H
#define PSL_DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

/* Bytes of `data` one event may take: a session with PSL_DEMO_MAX_ATTENDEES uuids (18
 * bytes each) and its other keys needs ~330; an interview ~120. */
#define PSL_DEMO_MAX_DATA 512u
/* Bytes of `pii`: {name: "Personne 000001"}. */
#define PSL_DEMO_MAX_PII 64u
/* Attendees of one collective session: the report's sessions hold 4 to 12 people. */
#define PSL_DEMO_MAX_ATTENDEES 12u

typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  char stream[PSL_MAX_STREAM];
  const char *type; /* static storage */
  char terr[PSL_MAX_TERR + 1];
  int64_t at;
  int64_t expect; /* the stream's version before this event */
  uint8_t data[PSL_DEMO_MAX_DATA];
  size_t data_len;
  uint8_t pii[PSL_DEMO_MAX_PII];
  size_t pii_len; /* 0: none */
} psl_demo_event_t;

/* A psl_event_t (new event: no seq) pointing into e; valid while e is. */
void psl_demo_event_view(const psl_demo_event_t *e, psl_event_t *ev);

/* ---- The 2024 data set. */

/* All its events in the order to write them (by `at`, each stream's in version order).
 * *out is malloc'd (free it).  0 or PSL_ENOMEM; PSL_EINTERNAL if the data set cannot meet
 * its own figures (a bug: the message goes to stderr). */
int psl_demo_2024(psl_demo_event_t **out, size_t *n);

/* The id of the data set's first participant (a Villepinte detainee referred in 2023):
 * whether it is known tells whether the data set is already in a log. */
void psl_demo_2024_first_id(uint8_t id[PSL_UUID_BYTES]);

/* ---- The figures, as the report prints them. */

/* One figure of the seed (BRIEF.md §3, the 2024 activity report). */
typedef struct {
  const char *what; /* "people followed in 2024", ... */
  char seed[32];    /* as the activity report gives it: "104", "34", "30 %" */
  char got[32];     /* as read from the report's JSON, printed the way the report prints it */
  int ok;
} psl_demo_figure_t;

#define PSL_DEMO_NFIGURES 17

/* Read the seed figures from the JSON of GET /api/v1/report?year=2024 (or
 * psl_report_json) into figs[PSL_DEMO_NFIGURES].  Returns how many hold (== the count when
 * all do), or PSL_EINVALID when the JSON is not a report. */
int psl_demo_check(const char *report_json, size_t len, psl_demo_figure_t *figs);

/* ---- Histories at scale. */

typedef struct {
  size_t participants; /* how many people (referrals) */
  uint64_t seed;       /* 0: 1 */
  int first_year;      /* referrals spread over [first_year, first_year + years); 0: 2024 */
  int years;           /* 0: 1 */
} psl_demo_scale_opts_t;

typedef struct psl_demo_scale_s psl_demo_scale_t;

int psl_demo_scale_new(psl_demo_scale_t **out, const psl_demo_scale_opts_t *opts);
void psl_demo_scale_free(psl_demo_scale_t *g); /* accepts NULL */
/* The next event in time order: 0 and *e, or PSL_ENOTFOUND when every history is done. */
int psl_demo_scale_next(psl_demo_scale_t *g, psl_demo_event_t *e);

/* ---- HTTP. */

/* GET http://host:port/path with `Authorization: Bearer token` (token NULL: none), at most
 * timeout_ms.  host is an IPv4 address or a name.  *status the HTTP status; *body the body
 * (de-chunked, NUL-terminated, malloc'd: free it), *len its length (may be NULL); ctype, when
 * not NULL, gets the Content-Type (ctypelen bytes).  0, or PSL_EIO (no connection),
 * PSL_EAGAIN (timeout), PSL_EINVALID (not HTTP), PSL_ETOO_BIG (over 64 MiB). */
int psl_demo_http_get(const char *host, uint16_t port, const char *path, const char *token,
                      int timeout_ms, int *status, char **body, size_t *len, char *ctype,
                      size_t ctypelen);

/* For HTTP clients of our own (this one, the tests' TLS one in tests/support/srv.c): whether
 * buf[0..n) holds a whole answer — headers, then Content-Length bytes, or a chunked body up
 * to its 0-size chunk (without either, only EOF ends it); and a chunked body decoded in
 * place (NUL-terminated), its new length returned. */
int psl_demo_http_complete(const char *buf, size_t n);
size_t psl_demo_http_dechunk(char *body, size_t n);

#endif /* PSL_DEMO_H */
