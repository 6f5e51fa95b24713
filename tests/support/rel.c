/*
 * rel.c — helpers of the reliability tests (see rel.h).
 */
#include "support/rel.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

void rel_fail(rel_fx_t *f, const char *file, int line, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (f)
    srv_dump_log(&f->srv, 2000);
  psl_test_fail(file, line, "%s", msg);
}

void rel_fx_init(rel_fx_t *f) {
  char dir[PATH_MAX];
  memset(f, 0, sizeof *f);
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  if (srv_init(&f->srv, psl_test_bindir(), dir) != 0)
    psl_test_fail(__FILE__, __LINE__, "srv_init: %s", f->srv.err);
  if (srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "rel-coordinator", "rel-tablet",
                f->coord) != 0)
    psl_test_fail(__FILE__, __LINE__, "token create failed");
}

void rel_fx_start(rel_fx_t *f) {
  REL_REQUIRE(f, srv_start(&f->srv, 0) == 0, "srv_start: %s", f->srv.err);
}

wsc_t *rel_open(rel_fx_t *f) {
  char err[1024];
  wsc_t *c = NULL;
  REL_REQUIRE(f, tcli_open(&c, f->srv.port, f->coord, "rel-tablet", NULL, err, sizeof err) == 0,
              "connect+hello: %s", err);
  return c;
}

void rel_model_add(rel_model_t *m, const uint8_t id[PSL_UUID_BYTES], uint64_t seq,
                   uint64_t ver) {
  if (m->n == m->cap) {
    m->cap = m->cap ? 2 * m->cap : 1024;
    m->v = realloc(m->v, m->cap * sizeof *m->v);
    if (!m->v)
      psl_test_fail(__FILE__, __LINE__, "realloc");
  }
  memcpy(m->v[m->n].id, id, PSL_UUID_BYTES);
  m->v[m->n].seq = seq;
  m->v[m->n].ver = ver;
  m->n++;
}

void rel_model_free(rel_model_t *m) {
  free(m->v);
  memset(m, 0, sizeof *m);
}

void rel_gen(evgen_t *g, size_t n, size_t size) {
  uint8_t pid[PSL_UUID_BYTES];
  evgen_uuid(pid);
  for (size_t i = 0; i < n; i++) {
    if (i == 0)
      evgen_referred(&g[0], pid, "93", "Reliability Test");
    else
      evgen_interview(&g[i], pid, "93", PSL_EXPECT_ANY, size);
  }
}

void rel_send(wsc_t *c, uint64_t id, const evgen_t *g, size_t n) {
  psl_event_t *evs = calloc(n ? n : 1, sizeof *evs);
  psl_msg_t m;
  if (!evs)
    psl_test_fail(__FILE__, __LINE__, "calloc");
  for (size_t i = 0; i < n; i++)
    evs[i] = g[i].ev;
  tcli_push_msg(&m, id, evs, n);
  int rc = wsc_send_msg(c, &m);
  free(evs);
  if (rc)
    psl_test_fail(__FILE__, __LINE__, "send push %llu: %s", (unsigned long long)id,
                  wsc_error(c));
}

int rel_answer(rel_fx_t *f, wsc_t *c, uint64_t id, size_t n, tcli_result_t *res, char *code) {
  char err[1024], desc[512];
  psl_msg_t m;
  REL_REQUIRE(f, tcli_expect(c, PSL_MSG_NONE, REL_T_MS, &m, err, sizeof err) == 0,
              "answer to push %llu: %s", (unsigned long long)id, err);
  tcli_describe(&m, desc, sizeof desc);
  REL_REQUIRE(f, m.has_id && m.id == id, "expected the answer to push %llu, got %s",
              (unsigned long long)id, desc);
  if (m.t == PSL_MSG_ERROR) {
    size_t k = m.u.error.code.len < 31 ? m.u.error.code.len : 31;
    memcpy(code, m.u.error.code.ptr, k);
    code[k] = '\0';
    REL_REQUIRE(f, m.u.error.msg.len > 0, "an error without a message: %s", desc);
    psl_msg_free(&m);
    return 1;
  }
  REL_REQUIRE(f, m.t == PSL_MSG_PUSHED && m.u.pushed.n == n,
              "expected `pushed` with %zu results, got %s", n, desc);
  for (size_t i = 0; i < n; i++) {
    const psl_push_result_t *r = &m.u.pushed.results[i];
    memset(&res[i], 0, sizeof res[i]);
    res[i].err = r->err;
    res[i].dup = r->dup;
    res[i].seq = r->seq;
    res[i].ver = r->ver;
    size_t k = r->msg.len < sizeof res[i].msg - 1 ? r->msg.len : sizeof res[i].msg - 1;
    if (k)
      memcpy(res[i].msg, r->msg.ptr, k);
    res[i].msg[k] = '\0';
  }
  psl_msg_free(&m);
  code[0] = '\0';
  return 0;
}

int rel_push(rel_fx_t *f, wsc_t *c, uint64_t id, const evgen_t *g, size_t n,
             tcli_result_t *res, char *code) {
  rel_send(c, id, g, n);
  return rel_answer(f, c, id, n, res, code);
}

void rel_require_stored(rel_fx_t *f, const evgen_t *g, size_t n, const tcli_result_t *res,
                        rel_model_t *m) {
  for (size_t i = 0; i < n; i++) {
    REL_REQUIRE(f, res[i].err == 0 && !res[i].dup && res[i].seq > 0,
                "event %zu: expected stored, got {err %s dup %d seq %llu msg \"%s\"}", i,
                res[i].err ? psl_err_code(res[i].err) : "-", res[i].dup,
                (unsigned long long)res[i].seq, res[i].msg);
    if (m)
      rel_model_add(m, g[i].ev.id, res[i].seq, res[i].ver);
  }
}

typedef struct {
  uint8_t id[PSL_UUID_BYTES];
  uint64_t ver;
} seen_t;

static int by_id(const void *a, const void *b) {
  return memcmp(a, b, PSL_UUID_BYTES);
}

static uint64_t check_log(rel_fx_t *f, const rel_model_t *m, int readable_only) {
  wsc_t *c = rel_open(f);
  seen_t *by_seq = NULL;
  size_t cap = 0;
  uint64_t last = 0, head = 0;
  char err[1024], desc[512];
  REL_REQUIRE(f, tcli_sub(c, 1, 0, 0, 8, NULL, NULL) == 0, "sub: %s", wsc_error(c));
  for (;;) {
    psl_msg_t msg;
    REL_REQUIRE(f, tcli_expect(c, PSL_MSG_NONE, REL_T_MS, &msg, err, sizeof err) == 0,
                "catch-up: %s", err);
    if (msg.t == PSL_MSG_CAUGHT_UP) {
      head = msg.u.caught_up.head;
      psl_msg_free(&msg);
      break;
    }
    tcli_describe(&msg, desc, sizeof desc);
    REL_REQUIRE(f, msg.t == PSL_MSG_EVENTS, "catch-up: unexpected %s", desc);
    for (size_t i = 0; i < msg.u.events.n; i++) {
      const psl_event_t *ev = &msg.u.events.events[i];
      REL_REQUIRE(f, ev->seq == last + 1, "catch-up: seq %llu after %llu",
                  (unsigned long long)ev->seq, (unsigned long long)last);
      last = ev->seq;
      if (last >= cap) {
        cap = cap ? 2 * cap : 4096;
        while (cap <= last)
          cap *= 2;
        by_seq = realloc(by_seq, cap * sizeof *by_seq);
        REL_REQUIRE(f, by_seq, "realloc");
      }
      memcpy(by_seq[last].id, ev->id, PSL_UUID_BYTES);
      by_seq[last].ver = ev->ver;
    }
    uint64_t upto = msg.u.events.last;
    psl_msg_free(&msg);
    REL_REQUIRE(f, tcli_ack(c, 1, upto) == 0, "ack: %s", wsc_error(c));
  }
  wsc_close(c);
  REL_REQUIRE(f, last == head, "caught_up at head %llu after seq %llu", (unsigned long long)head,
              (unsigned long long)last);
  for (size_t i = 0; m && i < m->n; i++) {
    const rel_ack_t *a = &m->v[i];
    if (readable_only && a->seq > head)
      continue;
    REL_REQUIRE(f, a->seq >= 1 && a->seq <= head,
                "LOST: an event acknowledged at seq %llu; the log ends at %llu",
                (unsigned long long)a->seq, (unsigned long long)head);
    REL_REQUIRE(f, memcmp(by_seq[a->seq].id, a->id, PSL_UUID_BYTES) == 0 &&
                       by_seq[a->seq].ver == a->ver,
                "CHANGED: seq %llu is not the event acknowledged with it",
                (unsigned long long)a->seq);
  }
  if (head) { /* no id twice */
    seen_t *s = malloc(head * sizeof *s);
    REL_REQUIRE(f, s, "malloc");
    memcpy(s, by_seq + 1, head * sizeof *s);
    qsort(s, head, sizeof *s, by_id);
    for (uint64_t i = 1; i < head; i++)
      REL_REQUIRE(f, memcmp(s[i - 1].id, s[i].id, PSL_UUID_BYTES) != 0,
                  "an event id is stored twice");
    free(s);
  }
  free(by_seq);
  return head;
}

uint64_t rel_check_log(rel_fx_t *f, const rel_model_t *m) { return check_log(f, m, 0); }

uint64_t rel_check_log_readable(rel_fx_t *f, const rel_model_t *m) {
  return check_log(f, m, 1);
}

int rel_http_status(rel_fx_t *f, const char *path, char *body, size_t bodylen) {
  int status = 0;
  char *b = NULL;
  REL_REQUIRE(f, srv_http_get(f->srv.port, path, REL_T_MS, &status, &b, NULL) == 0,
              "GET %s failed", path);
  if (body && bodylen) {
    snprintf(body, bodylen, "%s", b ? b : "");
  }
  free(b);
  return status;
}
