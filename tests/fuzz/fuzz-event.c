/*
 * fuzz-event.c — event validation (psl_domain_validate) on what a hostile device pushes, and
 * the projections' fold (psl_proj_apply) on whatever validation lets through.
 *
 * The input is one frame.  When it decodes as a `push`, its events are taken as the server
 * takes them: each validated at the version its stream has reached (the server's rule, with
 * the client's `expect` when given), the valid ones stamped as the log would (seq, ver, rec,
 * by, dev), put through the canonical form and folded into an in-memory projection store,
 * whose recomputations (event.voided, a late transfer) read the earlier events of the same
 * input.  Then the participants, counters and reports of the years touched are read and
 * rendered (JSON, CSV, Markdown).
 *
 * Properties checked beyond memory safety: validation answers 0 or PSL_EINVALID with a
 * reason; a valid event always has a canonical form and folds without an error other than
 * PSL_ENOMEM.
 */
#include "fuzz.h"

#include <string.h>

#include "psl_domain.h"
#include "psl_proto.h"

/* What the fuzzer can make a push hold is bounded by the decoder (PSL_MAX_PUSH_EVENTS). */
typedef struct {
  psl_event_t ev;     /* stamped, pointing into canon */
  psl_buf_t canon;    /* canonical bytes */
} stored_t;

typedef struct {
  stored_t *st;
  size_t n;
} run_t;

static int iter(void *arg, psl_str_t stream, uint64_t before_seq, psl_event_fn fn,
                void *fnarg) {
  run_t *r = arg;
  for (size_t i = 0; i < r->n && r->st[i].ev.seq < before_seq; i++) {
    const psl_event_t *e = &r->st[i].ev;
    if (e->stream.len != stream.len || memcmp(e->stream.ptr, stream.ptr, stream.len) != 0)
      continue;
    int rc = fn(fnarg, e);
    if (rc)
      return rc;
  }
  return 0;
}

/* The version stream has reached among the events stored so far. */
static uint64_t stream_ver(const run_t *r, psl_str_t stream) {
  uint64_t v = 0;
  for (size_t i = 0; i < r->n; i++)
    if (r->st[i].ev.stream.len == stream.len &&
        memcmp(r->st[i].ev.stream.ptr, stream.ptr, stream.len) == 0)
      v++;
  return v;
}

static void read_back(psl_proj_t *p, const run_t *r) {
  psl_buf_t out;
  psl_buf_init(&out, 0);
  for (size_t i = 0; i < r->n; i++) {
    const psl_event_t *e = &r->st[i].ev;
    uint8_t id[PSL_UUID_BYTES];
    static const char pfx[] = "participant/";
    size_t pl = sizeof pfx - 1;
    if (e->stream.len == pl + PSL_UUID_STR && memcmp(e->stream.ptr, pfx, pl) == 0 &&
        psl_uuid_parse(e->stream.ptr + pl, PSL_UUID_STR, id) == 0) {
      psl_participant_t st;
      if (psl_proj_participant(p, id, &st) == 0) {
        psl_buf_reset(&out);
        (void)psl_participant_json(&out, &st, e->at);
        psl_participant_free(&st);
      }
    }
    int year, month;
    psl_local_ym(e->at, &year, &month);
    psl_counters_query_t q;
    psl_counters_t c;
    if (psl_counters_query_init(&q, 0, year, month, 0, NULL) == 0 &&
        psl_proj_counters(p, &q, &c) == 0) {
      psl_buf_reset(&out);
      (void)psl_counters_json(&out, &c);
    }
    if (i == 0) { /* one yearly report per input: it walks every participant */
      psl_report_t rep;
      memset(&rep, 0, sizeof rep);
      if (psl_proj_report(p, year, 0, &rep) == 0) {
        psl_buf_reset(&out);
        (void)psl_report_json(&out, &rep);
        psl_buf_reset(&out);
        (void)psl_report_csv(&out, &rep);
        psl_buf_reset(&out);
        (void)psl_report_md(&out, &rep);
      }
      psl_report_free(&rep);
    }
  }
  psl_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  psl_msg_t m;
  if (psl_msg_decode(data, size, &m, NULL) != 0)
    return 0;
  if (m.t != PSL_MSG_PUSH || m.u.push.n == 0) {
    psl_msg_free(&m);
    return 0;
  }
  run_t r = {calloc(m.u.push.n, sizeof(stored_t)), 0};
  psl_proj_t *p = NULL;
  if (!r.st || psl_proj_new(&p) != 0)
    goto done;
  for (size_t i = 0; i < m.u.push.n; i++) {
    psl_event_t ev = m.u.push.events[i];
    psl_diag_t diag;
    uint64_t cur = stream_ver(&r, ev.stream);
    diag.msg[0] = '\0';
    int rc = psl_domain_validate(&ev, ev.expect >= 0 ? (uint64_t)ev.expect : cur, &diag);
    FUZZ_CHECK(rc == 0 || rc == PSL_EINVALID);
    if (rc) {
      FUZZ_CHECK(diag.msg[0] != '\0');
      continue;
    }
    if (ev.expect >= 0 && (uint64_t)ev.expect != cur)
      continue; /* the log would answer conflict */
    stored_t *s = &r.st[r.n];
    ev.seq = r.n + 1;
    ev.ver = cur + 1;
    ev.rec = ev.at;
    ev.by = psl_str("fuzz-caseworker");
    ev.dev = psl_str("fuzz-device");
    psl_buf_init(&s->canon, 0);
    rc = psl_event_encode_canonical(&s->canon, &ev);
    if (rc == PSL_ETOO_BIG) { /* the log answers "event too big" */
      psl_buf_free(&s->canon);
      continue;
    }
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(psl_event_decode_stored(psl_buf_data(&s->canon), s->canon.len, &s->ev, NULL) ==
               0);
    r.n++;
    rc = psl_proj_apply(p, &s->ev, iter, &r);
    FUZZ_CHECK(rc == 0 || rc == PSL_ENOMEM);
  }
  read_back(p, &r);
done:
  psl_proj_free(p);
  for (size_t i = 0; r.st && i < r.n; i++)
    psl_buf_free(&r.st[i].canon);
  free(r.st);
  psl_msg_free(&m);
  return 0;
}
