/*
 * rel.h — helpers of the reliability tests (tests/test-faults.c, tests/test-netfaults.c):
 * a server fixture, pushes of generated events, a model of what was acknowledged, and the
 * check of a whole log against it through a subscription from 0.
 *
 * Failures end the test (psl_test_fail) with the tail of the server's log; messages name
 * seqs and ids, never data or pii.
 */
#ifndef PSL_TESTS_REL_H
#define PSL_TESTS_REL_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"
#include "support/evgen.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

/* Receive timeout: generous (ASan, a loaded machine); it only matters when something is
 * wrong. */
#define REL_T_MS 15000

typedef struct {
  srv_t srv;
  char coord[PSL_TOKEN_LEN + 1]; /* a coordinator token */
} rel_fx_t;

/* Fresh data folder under the test's tmpdir, a coordinator token; not started. */
void rel_fx_init(rel_fx_t *f);
/* Start (and wait for /healthz 200). */
void rel_fx_start(rel_fx_t *f);
/* A connection that said hello as the coordinator. */
wsc_t *rel_open(rel_fx_t *f);

/* What was acknowledged: id → (seq, ver). */
typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  uint64_t seq, ver;
} rel_ack_t;

typedef struct {
  rel_ack_t *v;
  size_t n, cap;
} rel_model_t;

void rel_model_add(rel_model_t *m, const uint8_t id[PSL_UUID_BYTES], uint64_t seq,
                   uint64_t ver);
void rel_model_free(rel_model_t *m);

/* A participant's referral then n - 1 interviews of about `size` bytes (0: small), into g
 * (n slots).  The push is valid on its own whatever else the log holds. */
void rel_gen(evgen_t *g, size_t n, size_t size);

/* Send a push of g[0..n) with request id `id` (no wait). */
void rel_send(wsc_t *c, uint64_t id, const evgen_t *g, size_t n);
/* The next message: `pushed` of id (results into res, n of them, 0 returned), or `error` of
 * id (its code copied into code[32], 1 returned).  Anything else fails the test. */
int rel_answer(rel_fx_t *f, wsc_t *c, uint64_t id, size_t n, tcli_result_t *res, char *code);
/* rel_send then rel_answer. */
int rel_push(rel_fx_t *f, wsc_t *c, uint64_t id, const evgen_t *g, size_t n,
             tcli_result_t *res, char *code);
/* Every result stored anew (not dup); recorded in m. */
void rel_require_stored(rel_fx_t *f, const evgen_t *g, size_t n, const tcli_result_t *res,
                        rel_model_t *m);

/* Subscribe from 0 (non-live) on a new connection and check what comes: seqs 1..head in
 * order without a gap, no id twice, every acknowledged event at its seq.  Returns the head. */
uint64_t rel_check_log(rel_fx_t *f, const rel_model_t *m);
/* The same while the log cannot commit (disk full, fsync failing): events acknowledged just
 * before the fault may be durable in the server's journal but not yet readable, so an
 * acknowledged seq past the head is allowed; every one at or below it is checked. */
uint64_t rel_check_log_readable(rel_fx_t *f, const rel_model_t *m);

/* GET path: the status (body discarded). */
int rel_http_status(rel_fx_t *f, const char *path, char *body, size_t bodylen);

/* Fail the test with the server's log tail. */
void rel_fail(rel_fx_t *f, const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
#define REL_REQUIRE(f, cond, ...)                                                        \
  do {                                                                                   \
    if (!(cond))                                                                         \
      rel_fail((f), __FILE__, __LINE__, __VA_ARGS__);                                    \
  } while (0)

#endif /* PSL_TESTS_REL_H */
