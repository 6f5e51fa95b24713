/*
 * test-authz.c — the authorization matrix of PROTOCOL-v1 (area `authz`): every role ×
 * every message and HTTP endpoint × own and other territory, each case allowed or forbidden,
 * over the real server with real WebSocket clients and HTTP requests.
 *
 * Roles: a caseworker of 93, a coordinator, an auditor, an admin (and, for the entry
 * points, no token and a revoked one).  The rules (PROTOCOL-v1 "Authority", psl_access.h):
 * a caseworker reads and writes only in their territories (the participant's territory is
 * where it is now, whatever `terr` the client writes in its event); a coordinator reads and
 * writes everywhere; an auditor only reads; only an admin pushes participant.erased; `by`
 * and `dev` always come from the token; pii is opened for every reader but the auditor, who
 * receives it sealed.
 *
 * authz/matrix prints the whole matrix (case × role: expected, got) and fails listing every
 * cell that differs.  The other tests: a transfer brings the participant's whole history,
 * pii opened, to the new territory's live subscribers; a revoked token's live subscription
 * ends within a second of `passerelle-admin token revoke`.
 */
#include "harness.h"

#include <limits.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "psl_access.h"
#include "psl_keys.h"
#include "psl_proto.h"
#include "support/evgen.h"
#include "support/mpw.h"
#include "support/require.h"
#include "support/srv.h"
#include "support/tcli.h"
#include "support/wsc.h"

#define A_MS 10000 /* receive timeout: only reached when something is wrong */
#define A_QUIET_MS 300

static srv_t *a_srv;

#define AREQ(cond, ...) SRV_REQUIRE(a_srv, cond, __VA_ARGS__)

/* ---- Roles and the matrix. */

enum { R_CW, R_COORD, R_AUD, R_ADMIN, NROLES };
static const char *const role_label[NROLES] = {"caseworker-93", "coordinator", "auditor",
                                               "admin"};
static const char *const role_name[NROLES] = {"Camille Durand", "Dominique Lefort",
                                              "Audit FSE", "Admin Asso"};

/* Outcomes: OK allowed; NO forbidden (push/sub: `forbidden`; HTTP: 403); the HTTP rows use
 * status codes directly. */
enum { OK = 1, NO = 2 };

#define MAX_ROWS 64
typedef struct {
  char what[96];
  int expect[NROLES], got[NROLES];
} row_t;

static row_t rows[MAX_ROWS];
static size_t nrows;

static row_t *a_row(const char *what, int e_cw, int e_coord, int e_aud, int e_admin) {
  AREQ(nrows < MAX_ROWS, "too many rows");
  row_t *r = &rows[nrows++];
  snprintf(r->what, sizeof r->what, "%s", what);
  r->expect[R_CW] = e_cw;
  r->expect[R_COORD] = e_coord;
  r->expect[R_AUD] = e_aud;
  r->expect[R_ADMIN] = e_admin;
  return r;
}

static const char *a_cell(int v, char *buf, size_t n) {
  if (v == OK)
    return "allowed";
  if (v == NO)
    return "forbidden";
  if (v == 0)
    return "-";
  snprintf(buf, n, "%d", v);
  return buf;
}

/* Print the matrix; fail naming every cell that differs. */
static void a_check_matrix(void) {
  char e[16], g[16], bad[4096];
  size_t nb = 0;
  bad[0] = '\0';
  printf("\n  %-70s %-13s %-13s %-13s %-13s\n", "case", role_label[0], role_label[1],
         role_label[2], role_label[3]);
  for (size_t i = 0; i < nrows; i++) {
    printf("  %-70s", rows[i].what);
    for (int r = 0; r < NROLES; r++) {
      int ok = rows[i].expect[r] == rows[i].got[r];
      printf(" %-13s", a_cell(rows[i].got[r], g, sizeof g));
      if (!ok && nb < sizeof bad - 200)
        nb += (size_t)snprintf(bad + nb, sizeof bad - nb, "\n    %s, %s: expected %s, got %s",
                               rows[i].what, role_label[r], a_cell(rows[i].expect[r], e, sizeof e),
                               a_cell(rows[i].got[r], g, sizeof g));
    }
    printf("\n");
  }
  printf("  (%zu cases x %d roles)\n", nrows, NROLES);
  fflush(stdout);
  AREQ(nb == 0, "cells that differ from PROTOCOL-v1:%s", bad);
}

/* ---- The fixture. */

typedef struct {
  srv_t srv;
  char tok[NROLES][PSL_TOKEN_LEN + 1];
  char revoked[PSL_TOKEN_LEN + 1];
  wsc_t *c[NROLES];
  uint64_t next_id;
} afx_t;

static void afx_start(afx_t *f) {
  char dir[PATH_MAX];
  static const psl_role_t roles[NROLES] = {PSL_ROLE_CASEWORKER, PSL_ROLE_COORDINATOR,
                                           PSL_ROLE_AUDITOR, PSL_ROLE_ADMIN};
  memset(f, 0, sizeof *f);
  snprintf(dir, sizeof dir, "%s/data", psl_test_tmpdir());
  AREQ(srv_init(&f->srv, psl_test_bindir(), dir) == 0, "srv_init: %s", f->srv.err);
  for (int r = 0; r < NROLES; r++)
    AREQ(srv_token(&f->srv, roles[r], r == R_CW ? "93" : NULL, role_name[r], role_label[r],
                   f->tok[r]) == 0,
         "token %s", role_label[r]);
  AREQ(srv_token(&f->srv, PSL_ROLE_COORDINATOR, NULL, "Ancien Agent", "old-laptop",
                 f->revoked) == 0,
       "token");
  psl_access_t *acc;
  AREQ(psl_access_open(&acc, dir) == 0 && psl_access_token_revoke(acc, f->revoked) == 0,
       "revoke");
  psl_access_close(acc);
  a_srv = &f->srv;
  AREQ(srv_start(&f->srv, 0) == 0, "start: %s", f->srv.err);
  for (int r = 0; r < NROLES; r++) {
    char err[1024];
    AREQ(tcli_open(&f->c[r], f->srv.port, f->tok[r], role_label[r], NULL, err, sizeof err) == 0,
         "open %s: %s", role_label[r], err);
  }
  f->next_id = 1;
}

static void afx_stop(afx_t *f) {
  for (int r = 0; r < NROLES; r++)
    wsc_close(f->c[r]);
  AREQ(srv_stop(&f->srv, 0) == 0, "stop: %s", f->srv.err);
}

static psl_msg_t a_expect(wsc_t *c, psl_msg_type_t t) {
  char err[1024];
  psl_msg_t m;
  AREQ(tcli_expect(c, t, A_MS, &m, err, sizeof err) == 0, "%s", err);
  return m;
}

/* Push one event as role r: OK (stored), NO (forbidden), or fail on anything else. */
static int a_push(afx_t *f, int r, const evgen_t *e) {
  char err[1024];
  tcli_result_t res;
  AREQ(tcli_push(f->c[r], f->next_id++, &e->ev, 1, &res, A_MS, err, sizeof err) == 0,
       "push as %s: %s", role_label[r], err);
  if (res.err == 0 && !res.dup)
    return OK;
  if (res.err == PSL_EFORBIDDEN)
    return NO;
  srv_fail(a_srv, __FILE__, __LINE__, "push %.*s as %s: err %d (%s)", (int)e->ev.type.len, e->ev.type.ptr,
         role_label[r], res.err, res.msg);
}

/* Referrals made by the coordinator for the fixture. */
static void a_setup_push(afx_t *f, evgen_t *e) {
  AREQ(a_push(f, R_COORD, e) == OK, "setup push");
}

/* ---- Subscriptions. */

typedef struct {
  size_t n;
  uint64_t seq[256];
  char terr[256][PSL_MAX_TERR + 1];
  char stream[256][PSL_MAX_STREAM + 1];
  int pii_opened[256], pii_sealed[256], pii_erased[256];
  char by[256][PSL_MAX_NAME + 1];
} seen_t;

static void a_note(seen_t *s, const psl_event_t *ev) {
  if (s->n >= 256)
    return;
  size_t i = s->n++;
  s->seq[i] = ev->seq;
  snprintf(s->terr[i], sizeof s->terr[i], "%.*s", (int)ev->terr.len, ev->terr.ptr);
  snprintf(s->stream[i], sizeof s->stream[i], "%.*s", (int)ev->stream.len, ev->stream.ptr);
  snprintf(s->by[i], sizeof s->by[i], "%.*s", (int)ev->by.len, ev->by.ptr);
  s->pii_sealed[i] = ev->pii.len && (ev->pii.ptr[0] == 0xc4 || ev->pii.ptr[0] == 0xc5);
  s->pii_opened[i] = ev->pii.len && !s->pii_sealed[i];
  s->pii_erased[i] = ev->pii.len == sizeof psl_pii_erased &&
                     memcmp(ev->pii.ptr, psl_pii_erased, sizeof psl_pii_erased) == 0;
}

/* Send a non-live sub; OK with the events seen, or NO when answered forbidden. */
static int a_sub(afx_t *f, int r, const char *const *terr, const char *const *streams,
                 seen_t *seen) {
  uint64_t id = f->next_id++;
  memset(seen, 0, sizeof *seen);
  AREQ(tcli_sub(f->c[r], id, 0, 0, 8, terr, streams) == 0, "sub");
  for (;;) {
    psl_msg_t m = a_expect(f->c[r], PSL_MSG_NONE);
    if (m.t == PSL_MSG_ERROR) {
      int forbidden = psl_str_eq(m.u.error.code, "forbidden");
      AREQ(forbidden, "sub as %s answered %.*s", role_label[r], (int)m.u.error.code.len,
           m.u.error.code.ptr);
      psl_msg_free(&m);
      return NO;
    }
    if (m.t == PSL_MSG_CAUGHT_UP) {
      psl_msg_free(&m);
      return OK;
    }
    AREQ(m.t == PSL_MSG_EVENTS && m.u.events.sub == id, "sub as %s: unexpected message",
         role_label[r]);
    for (size_t i = 0; i < m.u.events.n; i++)
      a_note(seen, &m.u.events.events[i]);
    AREQ(tcli_ack(f->c[r], id, m.u.events.last) == 0, "ack");
    psl_msg_free(&m);
  }
}

static int a_seen_stream(const seen_t *s, const char *stream) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->stream[i], stream) == 0)
      return (int)i;
  return -1;
}

/* ---- HTTP. */

static int a_http(afx_t *f, const char *token, const char *path) {
  int status = 0;
  char *body = NULL;
  AREQ(srv_http(&f->srv, path, token, A_MS, &status, &body, NULL) == 0, "GET %s", path);
  free(body);
  return status;
}

/* The forged push of a referral: `by` and `dev` set by the client. */
static void a_forged(psl_buf_t *b, const evgen_t *e, uint64_t id) {
  mpw_t w;
  mpw_init(&w, b);
  mpw_map(&w, 3);
  mpw_str(&w, "t");
  mpw_str(&w, "push");
  mpw_str(&w, "id");
  mpw_uint(&w, id);
  mpw_str(&w, "events");
  mpw_array(&w, 1);
  mpw_map(&w, 10);
  mpw_str(&w, "id");
  mpw_bin(&w, e->ev.id, PSL_UUID_BYTES);
  mpw_str(&w, "stream");
  mpw_strn(&w, e->ev.stream.ptr, e->ev.stream.len);
  mpw_str(&w, "type");
  mpw_strn(&w, e->ev.type.ptr, e->ev.type.len);
  mpw_str(&w, "at");
  mpw_int(&w, e->ev.at);
  mpw_str(&w, "terr");
  mpw_strn(&w, e->ev.terr.ptr, e->ev.terr.len);
  mpw_str(&w, "data");
  mpw_raw(&w, e->ev.data.ptr, e->ev.data.len);
  mpw_str(&w, "pii");
  mpw_raw(&w, e->ev.pii.ptr, e->ev.pii.len);
  mpw_str(&w, "expect");
  mpw_int(&w, 0);
  mpw_str(&w, "by");
  mpw_str(&w, "mallory");
  mpw_str(&w, "dev");
  mpw_str(&w, "forged-device");
  AREQ(w.err == 0, "mpw");
}

/* ==== The matrix. */

/* Per role, the participants its cases act on (made by the coordinator). */
enum { P93, P75, T93, T75, E93, E75, NPART };

TEST_T(authz, matrix, 120) {
  static afx_t f;
  static evgen_t e[NROLES][NPART], ev;
  static seen_t seen;
  uint8_t pid[NROLES][NPART][PSL_UUID_BYTES], sid[PSL_UUID_BYTES];
  char path[160], u[PSL_UUID_STR + 1];
  afx_start(&f);
  for (int r = 0; r < NROLES; r++)
    for (int p = 0; p < NPART; p++) {
      char name[64];
      snprintf(name, sizeof name, "Person %d-%d", r, p);
      evgen_uuid(pid[r][p]);
      evgen_referred(&e[r][p], pid[r][p], p == P75 || p == T75 || p == E75 ? "75" : "93", name);
      a_setup_push(&f, &e[r][p]);
    }

  /* -- push */
  row_t *row = a_row("push participant.referred, own territory (93)", OK, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    uint8_t p[PSL_UUID_BYTES];
    evgen_uuid(p);
    evgen_referred(&ev, p, "93", "New Person");
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push participant.referred, other territory (75)", NO, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    uint8_t p[PSL_UUID_BYTES];
    evgen_uuid(p);
    evgen_referred(&ev, p, "75", "New Person");
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push interview.held on a participant in 93", OK, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_interview(&ev, pid[r][P93], "93", -1, 0);
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push interview.held on a participant in 75", NO, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_interview(&ev, pid[r][P75], "75", -1, 0);
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push interview.held on a participant in 75, its terr forged to 93", NO, OK, NO,
              OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_interview(&ev, pid[r][P75], "93", -1, 0);
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push participant.transferred 93 -> 77", OK, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_transferred(&ev, pid[r][T93], "77");
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push participant.transferred 75 -> 93", NO, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_transferred(&ev, pid[r][T75], "93");
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push participant.erased, participant in 93", NO, NO, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_bare(&ev, pid[r][E93], "93", "participant.erased");
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push participant.erased, participant in 75", NO, NO, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_bare(&ev, pid[r][E75], "75", "participant.erased");
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push session.held in 93", OK, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_uuid(sid);
    evgen_session(&ev, sid, "93", pid[r][P93]);
    row->got[r] = a_push(&f, r, &ev);
  }
  row = a_row("push session.held in 75", NO, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    evgen_uuid(sid);
    evgen_session(&ev, sid, "75", pid[r][P75]);
    row->got[r] = a_push(&f, r, &ev);
  }
  /* forged by/dev: stored with the token's name (read back by the coordinator below) */
  row = a_row("push with forged by/dev: stored, by = the token's", OK, OK, NO, OK);
  static evgen_t forged[NROLES];
  for (int r = 0; r < NROLES; r++) {
    uint8_t p[PSL_UUID_BYTES];
    psl_buf_t b;
    evgen_uuid(p);
    evgen_referred(&forged[r], p, "93", "Forged Person");
    psl_buf_init(&b, 0);
    a_forged(&b, &forged[r], f.next_id);
    AREQ(wsc_send_binary(f.c[r], psl_buf_data(&b), b.len) == 0, "send forged");
    psl_buf_free(&b);
    psl_msg_t m = a_expect(f.c[r], PSL_MSG_PUSHED);
    AREQ(m.id == f.next_id && m.u.pushed.n == 1, "pushed");
    row->got[r] = m.u.pushed.results[0].err == 0 ? OK
                  : m.u.pushed.results[0].err == PSL_EFORBIDDEN ? NO
                                                                : -1;
    psl_msg_free(&m);
    f.next_id++;
  }
  AREQ(a_sub(&f, R_COORD, NULL, NULL, &seen) == OK, "coordinator reads everything");
  for (int r = 0; r < NROLES; r++) {
    int i = a_seen_stream(&seen, forged[r].stream);
    if (row->got[r] == OK && (i < 0 || strcmp(seen.by[i], role_name[r]) != 0))
      row->got[r] = -2; /* stored with a forged author: a failure the matrix shows */
  }

  /* -- sub */
  static const char *const t93[] = {"93", NULL}, *const t75[] = {"75", NULL},
                           *const tboth[] = {"93", "75", NULL};
  row = a_row("sub terr=[93]", OK, OK, OK, OK);
  for (int r = 0; r < NROLES; r++)
    row->got[r] = a_sub(&f, r, t93, NULL, &seen);
  row = a_row("sub terr=[75]", NO, OK, OK, OK);
  for (int r = 0; r < NROLES; r++)
    row->got[r] = a_sub(&f, r, t75, NULL, &seen);
  row = a_row("sub terr=[93, 75]", NO, OK, OK, OK);
  for (int r = 0; r < NROLES; r++)
    row->got[r] = a_sub(&f, r, tboth, NULL, &seen);
  /* Without a filter every reader gets what it may read: the caseworker only 93 (and the
   * history of the participants transferred into 93); the others everything. */
  uint64_t head;
  AREQ(a_sub(&f, R_ADMIN, NULL, NULL, &seen) == OK, "admin");
  head = seen.n ? seen.seq[seen.n - 1] : 0;
  row = a_row("sub without filter: another territory's events", NO, OK, OK, OK);
  for (int r = 0; r < NROLES; r++) {
    AREQ(a_sub(&f, r, NULL, NULL, &seen) == OK, "sub without filter");
    int foreign = 0;
    for (size_t i = 0; i < seen.n; i++) {
      int moved_in = 0;
      for (int q = 0; q < NROLES; q++)
        moved_in |= strcmp(seen.stream[i], e[q][T75].stream) == 0 && q != R_CW && q != R_AUD;
      foreign |= strcmp(seen.terr[i], "93") != 0 && !moved_in;
    }
    row->got[r] = foreign ? OK : NO;
    if (r != R_CW)
      AREQ(seen.n == head, "%s sees %zu of %llu events", role_label[r], seen.n,
           (unsigned long long)head);
  }
  row = a_row("sub streams=[a participant in 75]: its events", NO, OK, OK, OK);
  for (int r = 0; r < NROLES; r++) {
    const char *s75[] = {e[r][P75].stream, NULL};
    AREQ(a_sub(&f, r, NULL, s75, &seen) == OK, "a stream filter is not refused");
    row->got[r] = seen.n > 0 ? OK : NO;
  }
  row = a_row("sub: pii of a participant in 93 arrives opened", OK, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    const char *s93[] = {e[r][P93].stream, NULL};
    AREQ(a_sub(&f, r, NULL, s93, &seen) == OK && seen.n >= 1, "sub of a 93 stream");
    row->got[r] = seen.pii_opened[0] ? OK : seen.pii_sealed[0] ? NO : -1;
  }
  /* (the auditor gets the sealed bytes, as for everything: it never reads a name) */
  row = a_row("sub: pii of an erased participant (in 93) reads {erased: true}", OK, OK, NO, OK);
  for (int r = 0; r < NROLES; r++) {
    const char *s[] = {e[R_ADMIN][E93].stream, NULL};
    AREQ(a_sub(&f, r, NULL, s, &seen) == OK && seen.n >= 1, "sub of an erased stream");
    row->got[r] = seen.pii_erased[0] ? OK : seen.pii_sealed[0] ? NO : -1;
  }

  /* -- live fan-out: each role subscribes live; the coordinator writes in 75 then 93. */
  row = a_row("live fan-out: an event in 75", NO, OK, OK, OK);
  row_t *row93 = a_row("live fan-out: an event in 93", OK, OK, OK, OK);
  uint64_t live_id[NROLES];
  uint8_t id93[PSL_UUID_BYTES];
  for (int r = 0; r < NROLES; r++) {
    live_id[r] = f.next_id++;
    AREQ(tcli_sub(f.c[r], live_id[r], 0, 1, 64, NULL, NULL) == 0, "live sub");
    for (;;) { /* catch-up, acked, until caught_up */
      psl_msg_t m = a_expect(f.c[r], PSL_MSG_NONE);
      int done = m.t == PSL_MSG_CAUGHT_UP;
      if (m.t == PSL_MSG_EVENTS)
        AREQ(tcli_ack(f.c[r], live_id[r], m.u.events.last) == 0, "ack");
      psl_msg_free(&m);
      if (done)
        break;
    }
  }
  {
    /* the writes come from a connection of their own: the coordinator's first one now
     * receives its live events */
    char err[1024];
    tcli_result_t res;
    wsc_t *w = NULL;
    evgen_t ev93;
    AREQ(tcli_open(&w, f.srv.port, f.tok[R_COORD], "writer", NULL, err, sizeof err) == 0,
         "open: %s", err);
    evgen_interview(&ev, pid[R_COORD][P75], "75", -1, 0);
    AREQ(tcli_push(w, 1, &ev.ev, 1, &res, A_MS, err, sizeof err) == 0 && res.err == 0,
         "live push in 75: %s", err);
    evgen_interview(&ev93, pid[R_COORD][P93], "93", -1, 0);
    AREQ(tcli_push(w, 2, &ev93.ev, 1, &res, A_MS, err, sizeof err) == 0 && res.err == 0,
         "live push in 93: %s", err);
    wsc_close(w);
    memcpy(id93, ev93.ev.id, PSL_UUID_BYTES);
  }
  for (int r = 0; r < NROLES; r++) {
    int got75 = 0, got93 = 0;
    char err[512];
    psl_msg_t m;
    while (!got93 && tcli_expect(f.c[r], PSL_MSG_EVENTS, A_MS, &m, err, sizeof err) == 0) {
      for (size_t i = 0; i < m.u.events.n; i++) {
        got75 |= memcmp(m.u.events.events[i].id, ev.ev.id, PSL_UUID_BYTES) == 0;
        got93 |= memcmp(m.u.events.events[i].id, id93, PSL_UUID_BYTES) == 0;
      }
      psl_msg_free(&m);
    }
    row->got[r] = got75 ? OK : NO;
    row93->got[r] = got93 ? OK : NO;
  }

  /* -- HTTP (a separate connection per request; the WebSocket subs stay as they are) */
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  int year = tm.tm_year + 1900;
  struct {
    const char *what;
    const char *fmt;
    int part; /* -1: none; else the participant of the role's caseworker fixture */
    int expect[NROLES];
  } http[] = {
      {"GET /api/v1/counters?terr=93", "/api/v1/counters?year=%d&terr=93", -1,
       {200, 200, 200, 200}},
      {"GET /api/v1/counters?terr=75", "/api/v1/counters?year=%d&terr=75", -1,
       {403, 200, 200, 200}},
      {"GET /api/v1/counters (all territories)", "/api/v1/counters?year=%d", -1,
       {403, 200, 200, 200}},
      {"GET /api/v1/participants/<in 93>", NULL, P93, {200, 200, 200, 200}},
      {"GET /api/v1/participants/<in 75>", NULL, P75, {403, 200, 200, 200}},
      {"GET /api/v1/participants/<moved 93 -> 77>", NULL, T93, {403, 200, 200, 200}},
      {"GET /api/v1/report", "/api/v1/report?year=%d", -1, {403, 200, 200, 200}},
      {"GET /api/v1/report?terr=93&format=csv", "/api/v1/report?year=%d&terr=93&format=csv", -1,
       {403, 200, 200, 200}},
  };
  for (size_t h = 0; h < sizeof http / sizeof http[0]; h++) {
    row = a_row(http[h].what, http[h].expect[0], http[h].expect[1], http[h].expect[2],
                http[h].expect[3]);
    for (int r = 0; r < NROLES; r++) {
      if (http[h].part >= 0) {
        /* the caseworker's fixture participant, moved by the caseworker itself for T93 */
        psl_uuid_format(pid[R_CW][http[h].part], u);
        snprintf(path, sizeof path, "/api/v1/participants/%s", u);
      } else {
        snprintf(path, sizeof path, http[h].fmt, year);
      }
      row->got[r] = a_http(&f, f.tok[r], path);
    }
  }
  a_check_matrix();

  /* -- entry points without a valid token */
  psl_uuid_format(pid[R_CW][P93], u);
  snprintf(path, sizeof path, "/api/v1/participants/%s", u);
  AREQ(a_http(&f, NULL, path) == 401, "no token: 401");
  AREQ(a_http(&f, f.revoked, path) == 401, "revoked token: 401");
  AREQ(a_http(&f, "psl_not-a-token-at-all-xxxxxxxxxxxxxxx", path) == 401, "unknown: 401");
  AREQ(a_http(&f, NULL, "/healthz") == 200, "/healthz is public");
  AREQ(a_http(&f, NULL, "/metrics") == 200, "/metrics is public (and has no personal data)");
  {
    char err[1024];
    wsc_t *c = NULL;
    AREQ(tcli_open(&c, f.srv.port, f.revoked, "old", NULL, err, sizeof err) != 0,
         "a revoked token's hello was accepted");
    AREQ(strstr(err, "unauthorized"), "revoked hello: %s", err);
  }
  printf("  entry points: no token, unknown or revoked token -> 401 / unauthorized; "
         "/healthz, /metrics public\n");
  afx_stop(&f);
}

/* ==== A transfer brings the whole history, pii opened, to the new territory. */

TEST_T(authz, transfer_delivers_history_with_pii, 60) {
  afx_t f;
  char cw77[PSL_TOKEN_LEN + 1], err[1024];
  evgen_t ref, itw, other, tr;
  uint8_t pid[PSL_UUID_BYTES], pid2[PSL_UUID_BYTES];
  afx_start(&f);
  AREQ(srv_token(&f.srv, PSL_ROLE_CASEWORKER, "77", "Sacha Martin", "tablet-77", cw77) == 0,
       "token 77");
  evgen_uuid(pid);
  evgen_referred(&ref, pid, "93", "Moving Person");
  evgen_set_pii(&ref, "Moving Person", "0611223344", NULL);
  evgen_interview(&itw, pid, "93", -1, 0);
  evgen_set_pii(&itw, NULL, NULL, "notes from 93");
  evgen_uuid(pid2);
  evgen_referred(&other, pid2, "93", "Staying Person");
  AREQ(a_push(&f, R_CW, &ref) == OK && a_push(&f, R_CW, &itw) == OK &&
           a_push(&f, R_CW, &other) == OK,
       "the 93 caseworker's records");

  /* The 77 caseworker, live, sees nothing of 93 ... */
  wsc_t *c77 = NULL;
  AREQ(tcli_open(&c77, f.srv.port, cw77, "tablet-77", NULL, err, sizeof err) == 0, "%s", err);
  AREQ(tcli_sub(c77, 1, 0, 1, 4, NULL, NULL) == 0, "live sub of 77");
  for (;;) {
    psl_msg_t m = a_expect(c77, PSL_MSG_NONE);
    int done = m.t == PSL_MSG_CAUGHT_UP;
    AREQ(done || (m.t == PSL_MSG_EVENTS && m.u.events.n == 0), "77 saw a 93 event");
    psl_msg_free(&m);
    if (done)
      break;
  }
  /* ... until the 93 caseworker transfers the participant to 77. */
  evgen_transferred(&tr, pid, "77");
  AREQ(a_push(&f, R_CW, &tr) == OK, "transfer 93 -> 77 by the 93 caseworker");
  psl_msg_t m = a_expect(c77, PSL_MSG_EVENTS);
  AREQ(m.u.events.n == 3, "77 received %zu events, not the history and the transfer",
       m.u.events.n);
  const psl_event_t *h = m.u.events.events;
  AREQ(memcmp(h[0].id, ref.ev.id, PSL_UUID_BYTES) == 0 &&
           memcmp(h[1].id, itw.ev.id, PSL_UUID_BYTES) == 0 &&
           memcmp(h[2].id, tr.ev.id, PSL_UUID_BYTES) == 0,
       "the history in order, then the transfer");
  AREQ(h[0].pii.len == ref.ev.pii.len && memcmp(h[0].pii.ptr, ref.ev.pii.ptr, ref.ev.pii.len) == 0,
       "the referral's pii opened for the new territory");
  AREQ(h[1].pii.len == itw.ev.pii.len && memcmp(h[1].pii.ptr, itw.ev.pii.ptr, itw.ev.pii.len) == 0,
       "the interview's notes opened for the new territory");
  psl_msg_free(&m);
  /* the participant's later events reach 77; the one who stayed never does */
  evgen_t after, other_after;
  evgen_interview(&after, pid, "77", -1, 0);
  AREQ(a_push(&f, R_COORD, &after) == OK, "an event in 77");
  evgen_interview(&other_after, pid2, "93", -1, 0);
  AREQ(a_push(&f, R_COORD, &other_after) == OK, "an event in 93");
  m = a_expect(c77, PSL_MSG_EVENTS);
  AREQ(m.u.events.n == 1 && memcmp(m.u.events.events[0].id, after.ev.id, PSL_UUID_BYTES) == 0,
       "77 gets the moved participant's new event");
  psl_msg_free(&m);
  AREQ(tcli_expect(c77, PSL_MSG_NONE, A_QUIET_MS, &m, err, sizeof err) == PSL_EAGAIN,
       "77 received something of 93");
  /* and the 93 caseworker may no longer write for the moved participant */
  evgen_interview(&after, pid, "93", -1, 0);
  AREQ(a_push(&f, R_CW, &after) == NO, "the old territory writes for a moved participant");
  wsc_close(c77);
  afx_stop(&f);
}

/* ==== Revocation with the real passerelle-admin ends a live subscription within a second. */

static double a_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST_T(authz, revoked_live_sub_ends_within_a_second, 60) {
  afx_t f;
  char id[PSL_TOKEN_ID_LEN + 1], admin[PATH_MAX + 32], err[512];
  afx_start(&f);
  psl_access_token_id(f.tok[R_CW], PSL_TOKEN_LEN, id);
  AREQ(tcli_sub(f.c[R_CW], 1, 0, 1, 4, NULL, NULL) == 0, "live sub");
  psl_msg_t m = a_expect(f.c[R_CW], PSL_MSG_CAUGHT_UP);
  psl_msg_free(&m);
  snprintf(admin, sizeof admin, "%s/passerelle-admin", psl_test_bindir());
  pid_t pid = fork();
  if (pid == 0) {
    freopen("/dev/null", "w", stdout);
    execl(admin, admin, "--data", f.srv.dir, "token", "revoke", id, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  AREQ(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
       "passerelle-admin token revoke failed (status 0x%x)", st);
  double t0 = a_now();
  /* the live subscription ends: an `unauthorized` error, then the close */
  int r = tcli_expect(f.c[R_CW], PSL_MSG_ERROR, 2000, &m, err, sizeof err);
  double t = a_now() - t0;
  AREQ(r == 0 && psl_str_eq(m.u.error.code, "unauthorized"), "after revocation: %s", err);
  psl_msg_free(&m);
  AREQ(t <= 1.0, "the revoked token's subscription lasted %.2f s after the revoke", t);
  AREQ(wsc_wait_closed(f.c[R_CW], 2000, NULL) == 0, "closed after the revocation");
  /* a push from the coordinator no longer reaches it, and the token cannot come back */
  wsc_t *c = NULL;
  AREQ(tcli_open(&c, f.srv.port, f.tok[R_CW], "again", NULL, err, sizeof err) != 0,
       "the revoked token said hello again");
  printf("  revoked token's live subscription ended %.0f ms after passerelle-admin returned\n",
         t * 1000);
  afx_stop(&f);
}
