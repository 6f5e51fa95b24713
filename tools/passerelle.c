/*
 * passerelle — the field command-line client, on top of libpasserelle (passerelle.h).
 *
 *   passerelle [--home DIR] [--insecure] COMMAND ...
 *     login URL TOKEN            save the server (ws:// or wss://) and the token
 *     record TYPE [PARTICIPANT] --key value ...
 *                                record one event offline (no network); prints the new id
 *                                for referral (participant), session and partner-referral
 *     sync [--follow] [--timeout S]
 *                                push the outbox, catch up, exit (0 done; 2 unreachable;
 *                                1 other errors); --follow stays live until SIGINT/SIGTERM
 *     status                     unsent events, refused, replica, last sync, server head
 *     show participant ID        the participant's state as JSON (synced + unsent)
 *     caseload                   one JSON object per line: participants referred or active
 *     refused                    the events the server refused, with its reasons
 *
 * --home defaults to $PASSERELLE_HOME, else ~/.passerelle.  `record TYPE --help` lists the
 * flags of TYPE; they are DOMAIN.md's keys with '-' for '_'.  Never prints personal data to
 * stderr (names, notes and phones go only into the event and to `show`'s stdout).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <msgpack.h>

#include "passerelle.h"
#include "psl_proto.h"

/* ---- event shapes: one per DOMAIN.md type */

enum { K_STR, K_INT, K_BOOL, K_LIST, K_UUID, K_UUIDS };
enum { NEW_NONE, NEW_PARTICIPANT, NEW_SESSION };

typedef struct {
  const char *flag; /* without "--" */
  const char *key;  /* data or pii key */
  int kind;
  int required;
  int pii;
} flag_spec_t;

typedef struct {
  const char *name; /* record NAME */
  const char *type; /* DOMAIN.md type */
  int creates;      /* NEW_PARTICIPANT, NEW_SESSION, or NEW_NONE (takes PARTICIPANT) */
  flag_spec_t flags[12];
} shape_t;

#define REQ 1
#define OPT 0
#define PII 1

static const shape_t shapes[] = {
    {"referral", "participant.referred", NEW_PARTICIPANT,
     {{"programme", "programme", K_STR, REQ, 0},
      {"site", "site", K_STR, REQ, 0},
      {"source", "source", K_STR, REQ, 0},
      {"justice", "justice", K_STR, REQ, 0},
      {"gender", "gender", K_STR, REQ, 0},
      {"birth-year", "birth_year", K_INT, REQ, 0},
      {"education", "education", K_STR, REQ, 0},
      {"rsa", "rsa", K_BOOL, REQ, 0},
      {"name", "name", K_STR, REQ, PII},
      {"birth-date", "birth_date", K_STR, OPT, PII},
      {"phone", "phone", K_STR, OPT, PII}}},
    {"engagement", "engagement.signed", NEW_NONE,
     {{"kind", "kind", K_STR, REQ, 0}, {"objectives", "objectives", K_LIST, REQ, 0}}},
    {"diagnostic", "diagnostic.recorded", NEW_NONE,
     {{"barriers", "barriers", K_LIST, REQ, 0},
      {"strengths", "strengths", K_LIST, REQ, 0},
      {"care-obligation", "care_obligation", K_BOOL, REQ, 0},
      {"notes", "notes", K_STR, OPT, PII}}},
    {"barrier-lifted", "barrier.lifted", NEW_NONE,
     {{"barrier", "barrier", K_STR, REQ, 0}, {"how", "how", K_STR, OPT, 0}}},
    {"interview", "interview.held", NEW_NONE,
     {{"minutes", "minutes", K_INT, REQ, 0},
      {"place", "place", K_STR, REQ, 0},
      {"site", "site", K_STR, OPT, 0},
      {"topics", "topics", K_LIST, REQ, 0},
      {"notes", "notes", K_STR, OPT, PII}}},
    {"missed", "appointment.missed", NEW_NONE, {{NULL, NULL, 0, 0, 0}}},
    {"partner-referral", "partner.referred", NEW_NONE,
     {{"ref", "ref", K_UUID, OPT, 0}, /* made here when absent, and printed */
      {"partner-kind", "partner_kind", K_STR, REQ, 0},
      {"kind", "kind", K_STR, REQ, 0},
      {"partner", "partner", K_STR, REQ, 0}}},
    {"partner-update", "partner.updated", NEW_NONE,
     {{"ref", "ref", K_UUID, REQ, 0}, {"status", "status", K_STR, REQ, 0}}},
    {"outcome", "outcome.recorded", NEW_NONE, {{"kind", "kind", K_STR, REQ, 0}}},
    {"transfer", "participant.transferred", NEW_NONE,
     {{"to-terr", "terr", K_STR, OPT, 0},
      {"site", "site", K_STR, OPT, 0},
      {"programme", "programme", K_STR, OPT, 0}}},
    {"justice", "justice.changed", NEW_NONE, {{"justice", "justice", K_STR, REQ, 0}}},
    {"exit", "participant.exited", NEW_NONE, {{"reason", "reason", K_STR, REQ, 0}}},
    {"merge", "participant.merged", NEW_NONE, {{"into", "into", K_UUID, REQ, 0}}},
    {"erase", "participant.erased", NEW_NONE, {{NULL, NULL, 0, 0, 0}}},
    {"void", "event.voided", NEW_NONE,
     {{"of", "of", K_UUID, REQ, 0}, {"reason", "reason", K_STR, REQ, 0}}},
    {"session", "session.held", NEW_SESSION,
     {{"sequence", "sequence", K_STR, REQ, 0},
      {"site", "site", K_STR, REQ, 0},
      {"minutes", "minutes", K_INT, REQ, 0},
      {"attendees", "attendees", K_UUIDS, REQ, 0},
      {"programme", "programme", K_STR, OPT, 0}}},
};

#define NSHAPES (sizeof shapes / sizeof shapes[0])
#define MAX_FLAGS 12

static const char *prog = "passerelle";

static void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int code, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(code);
}

static void usage(void) {
  fprintf(stderr,
          "usage: %s [--home DIR] [--insecure] COMMAND\n"
          "  login URL TOKEN\n"
          "  record TYPE [PARTICIPANT] --key value ...   (record TYPE --help)\n"
          "    types:",
          prog);
  for (size_t i = 0; i < NSHAPES; i++)
    fprintf(stderr, " %s", shapes[i].name);
  fprintf(stderr, "\n  sync [--follow] [--timeout SECONDS]\n  status\n"
                  "  show participant ID\n  caseload\n  refused\n");
  exit(1);
}

/* ---- packing values */

static void pack_cstr(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

static void parse_uuid_or_die(const char *s, uint8_t id[16]) {
  if (psl_uuid_parse(s, strlen(s), id))
    die(1, "not a uuid: %s", s);
}

/* Comma-separated list: "a,b,c" → array (empty string → empty array). */
static void pack_list(msgpack_packer *pk, const char *v, int uuids) {
  size_t n = 0;
  char *copy = strdup(v), *save = NULL;
  if (!copy)
    die(1, "out of memory");
  for (const char *p = v; *p; p++)
    n += *p == ',';
  n = v[0] ? n + 1 : 0;
  msgpack_pack_array(pk, n);
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (uuids) {
      uint8_t id[16];
      parse_uuid_or_die(t, id);
      msgpack_pack_bin(pk, 16);
      msgpack_pack_bin_body(pk, id, 16);
    } else {
      pack_cstr(pk, t);
    }
  }
  free(copy);
}

static void pack_value(msgpack_packer *pk, const flag_spec_t *f, const char *v) {
  char *end;
  uint8_t id[16];
  switch (f->kind) {
  case K_STR:
    pack_cstr(pk, v);
    break;
  case K_INT: {
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end)
      die(1, "--%s: not an integer", f->flag);
    msgpack_pack_int64(pk, n);
    break;
  }
  case K_BOOL:
    if (strcmp(v, "true") == 0)
      msgpack_pack_true(pk);
    else
      msgpack_pack_false(pk);
    break;
  case K_LIST:
    pack_list(pk, v, 0);
    break;
  case K_UUIDS:
    pack_list(pk, v, 1);
    break;
  case K_UUID:
    parse_uuid_or_die(v, id);
    msgpack_pack_bin(pk, 16);
    msgpack_pack_bin_body(pk, id, 16);
    break;
  }
}

/* Pack the flags given (values[i] non-NULL) whose pii matches into one map. */
static void pack_map(msgpack_sbuffer *sb, const shape_t *sh, const char **values, int pii) {
  msgpack_packer pk;
  size_t n = 0;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  for (int i = 0; i < MAX_FLAGS && sh->flags[i].flag; i++)
    n += values[i] && sh->flags[i].pii == pii;
  msgpack_pack_map(&pk, n);
  for (int i = 0; i < MAX_FLAGS && sh->flags[i].flag; i++) {
    if (!values[i] || sh->flags[i].pii != pii)
      continue;
    pack_cstr(&pk, sh->flags[i].key);
    pack_value(&pk, &sh->flags[i], values[i]);
  }
}

/* ---- the client */

static const char *home_dir(const char *flag) {
  static char buf[PATH_MAX];
  const char *env = getenv("PASSERELLE_HOME"), *h = getenv("HOME");
  if (flag)
    return flag;
  if (env && env[0])
    return env;
  snprintf(buf, sizeof buf, "%s/.passerelle", h ? h : ".");
  return buf;
}

static int g_verbose;
static int g_no_deflate;

static void on_state(void *arg, psl_client_state_t st, int err) {
  if (g_verbose)
    fprintf(stderr, "%s: sync %s%s%s\n", prog, psl_client_state_name(st), err ? ": " : "",
            err ? psl_strerror(err) : "");
}

static void on_refused(void *arg, const psl_client_refusal_t *r) {
  char id[PSL_UUID_STR + 1];
  psl_uuid_format(r->event->id, id);
  fprintf(stderr, "%s: refused %s %s: %s%s%s\n", prog, r->event->type, id, psl_err_code(r->err),
          r->msg[0] ? ": " : "", r->msg);
}

static psl_client_t *open_client(const char *home, int insecure) {
  psl_client_t *c;
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.home = home;
  o.agent = "passerelle-cli/1";
  o.tls_insecure = insecure;
  o.cb.on_state = on_state;
  o.cb.on_refused = on_refused;
  int rc = psl_client_open(&c, &o);
  if (rc)
    die(1, "cannot open the store in %s: %s", home, psl_strerror(rc));
  return c;
}

/* ---- record */

static int64_t parse_at(const char *s) {
  struct tm tm;
  char *end;
  memset(&tm, 0, sizeof tm);
  long long ms = strtoll(s, &end, 10);
  if (*end == '\0' && end != s)
    return ms;
  end = strptime(s, "%Y-%m-%dT%H:%M", &tm);
  if (!end)
    end = strptime(s, "%Y-%m-%d", &tm);
  if (!end || *end)
    die(1, "--at: expected ms since the epoch or YYYY-MM-DD[THH:MM] (UTC)");
  return (int64_t)timegm(&tm) * 1000;
}

/* The territory a participant is in now, from the local state. */
static void participant_terr(psl_client_t *c, const uint8_t id[16], char *terr, size_t cap) {
  char *json = NULL;
  int rc = psl_client_participant_json(c, id, &json);
  if (rc)
    die(1, "unknown participant (not in the local store): give --terr or sync first");
  const char *p = strstr(json, "\"terr\":\"");
  if (!p)
    die(1, "participant without a territory: give --terr");
  p += 8;
  size_t n = strcspn(p, "\"");
  if (n == 0 || n >= cap)
    die(1, "participant without a territory: give --terr");
  memcpy(terr, p, n);
  terr[n] = '\0';
  free(json);
}

static void shape_help(const shape_t *sh) {
  printf("record %s%s: %s\n", sh->name, sh->creates == NEW_NONE ? " PARTICIPANT" : "",
         sh->type);
  if (sh->creates != NEW_NONE)
    printf("  --terr CODE (required)\n");
  else
    printf("  --terr CODE (default: the participant's)\n");
  for (int i = 0; i < MAX_FLAGS && sh->flags[i].flag; i++) {
    const flag_spec_t *f = &sh->flags[i];
    const char *what = f->kind == K_INT    ? " N"
                       : f->kind == K_BOOL ? ""
                       : f->kind == K_LIST ? " A,B,..."
                       : f->kind == K_UUIDS ? " UUID,UUID,..."
                       : f->kind == K_UUID ? " UUID"
                                           : " TEXT";
    printf("  --%s%s%s%s\n", f->flag, what, f->required && f->kind != K_BOOL ? " (required)" : "",
           f->kind == K_BOOL ? " (or --no-" : "");
    if (f->kind == K_BOOL)
      printf("      %s)\n", f->flag);
  }
  printf("  --at TIME (ms since the epoch, or YYYY-MM-DD[THH:MM] UTC; default now)\n");
  exit(0);
}

static int cmd_record(psl_client_t *c, int argc, char **argv) {
  const shape_t *sh = NULL;
  const char *values[MAX_FLAGS] = {0};
  const char *terr = NULL, *participant = NULL;
  char terr_buf[16], stream[PSL_MAX_STREAM], idtext[PSL_UUID_STR + 1], reftext[PSL_UUID_STR + 1];
  uint8_t sid[16], evid[16];
  int64_t at = 0;
  if (argc < 1)
    usage();
  for (size_t i = 0; i < NSHAPES; i++)
    if (strcmp(argv[0], shapes[i].name) == 0)
      sh = &shapes[i];
  if (!sh)
    die(1, "unknown event type '%s' (see %s --help)", argv[0], prog);
  int a = 1;
  if (sh->creates == NEW_NONE) {
    if (a < argc && strcmp(argv[a], "--help") == 0)
      shape_help(sh);
    if (a >= argc || strncmp(argv[a], "--", 2) == 0)
      die(1, "record %s: PARTICIPANT id missing", sh->name);
    participant = argv[a++];
  }
  for (; a < argc; a++) {
    const char *arg = argv[a];
    int found = 0;
    if (strcmp(arg, "--help") == 0)
      shape_help(sh);
    if (strcmp(arg, "--terr") == 0 && a + 1 < argc) {
      terr = argv[++a];
      continue;
    }
    if (strcmp(arg, "--at") == 0 && a + 1 < argc) {
      at = parse_at(argv[++a]);
      continue;
    }
    for (int i = 0; i < MAX_FLAGS && sh->flags[i].flag && !found; i++) {
      const flag_spec_t *f = &sh->flags[i];
      if (strncmp(arg, "--", 2) != 0)
        break;
      if (f->kind == K_BOOL && strcmp(arg + 2, f->flag) == 0) {
        values[i] = "true";
        found = 1;
      } else if (f->kind == K_BOOL && strncmp(arg + 2, "no-", 3) == 0 &&
                 strcmp(arg + 5, f->flag) == 0) {
        values[i] = "false";
        found = 1;
      } else if (f->kind != K_BOOL && strcmp(arg + 2, f->flag) == 0) {
        if (a + 1 >= argc)
          die(1, "--%s: value missing", f->flag);
        values[i] = argv[++a];
        found = 1;
      }
    }
    if (!found)
      die(1, "record %s: unknown argument '%s' (record %s --help)", sh->name, arg, sh->name);
  }
  for (int i = 0; i < MAX_FLAGS && sh->flags[i].flag; i++) {
    const flag_spec_t *f = &sh->flags[i];
    if (!values[i] && f->kind == K_BOOL)
      values[i] = "false";
    if (!values[i] && f->required)
      die(1, "record %s: --%s is required", sh->name, f->flag);
  }

  /* The stream, and the ids this command makes. */
  if (sh->creates == NEW_NONE) {
    parse_uuid_or_die(participant, sid);
    if (!terr) {
      participant_terr(c, sid, terr_buf, sizeof terr_buf);
      terr = terr_buf;
    }
  } else {
    if (!terr)
      die(1, "record %s: --terr is required", sh->name);
    psl_uuid_v7(sid, at ? at : (int64_t)time(NULL) * 1000);
  }
  if (strcmp(sh->type, "participant.transferred") == 0) {
    for (int i = 0; i < MAX_FLAGS && sh->flags[i].flag; i++)
      if (strcmp(sh->flags[i].flag, "to-terr") == 0 && values[i])
        terr = values[i]; /* the event's own terr is the new one */
  }
  if (strcmp(sh->type, "partner.referred") == 0 && !values[0]) {
    uint8_t ref[16];
    psl_uuid_v7(ref, (int64_t)time(NULL) * 1000);
    psl_uuid_format(ref, reftext);
    values[0] = reftext;
  }
  psl_uuid_format(sid, idtext);
  snprintf(stream, sizeof stream, "%s/%s", sh->creates == NEW_SESSION ? "session" : "participant",
           idtext);

  msgpack_sbuffer data, pii;
  msgpack_sbuffer_init(&data);
  msgpack_sbuffer_init(&pii);
  pack_map(&data, sh, values, 0);
  pack_map(&pii, sh, values, 1);
  psl_client_new_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.stream = stream;
  ev.type = sh->type;
  ev.terr = terr;
  ev.at = at;
  ev.data = (const uint8_t *)data.data;
  ev.data_len = data.size;
  if (pii.size > 1) { /* more than an empty map */
    ev.pii = (const uint8_t *)pii.data;
    ev.pii_len = pii.size;
  }
  ev.expect = sh->creates == NEW_NONE ? PSL_EXPECT_ANY : 0;
  char why[200];
  int rc = psl_client_append(c, &ev, evid, why, sizeof why);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&pii);
  if (rc)
    die(1, "record %s: %s%s%s", sh->name, psl_strerror(rc), why[0] ? ": " : "", why);
  if (sh->creates != NEW_NONE)
    printf("%s\n", idtext);
  else if (strcmp(sh->type, "partner.referred") == 0)
    printf("%s\n", values[0]);
  else {
    char e[PSL_UUID_STR + 1];
    psl_uuid_format(evid, e);
    printf("%s\n", e); /* the event id (for a later `record void --of`) */
  }
  return 0;
}

/* ---- sync */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = 1; }

static void on_event_follow(void *arg, const psl_client_event_t *ev) {
  char id[PSL_UUID_STR + 1];
  psl_uuid_format(ev->id, id);
  printf("%llu %s %s %s\n", (unsigned long long)ev->seq, ev->type, ev->stream, id);
  fflush(stdout);
}

static int cmd_sync(const char *home, int insecure, int argc, char **argv) {
  int follow = 0, timeout_s = 0;
  psl_client_status_t before, after;
  for (int a = 0; a < argc; a++) {
    if (strcmp(argv[a], "--follow") == 0)
      follow = 1;
    else if (strcmp(argv[a], "--timeout") == 0 && a + 1 < argc)
      timeout_s = atoi(argv[++a]);
    else if (strcmp(argv[a], "-v") == 0)
      g_verbose = 1;
    else
      usage();
  }
  psl_client_t *c;
  psl_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.home = home;
  o.agent = "passerelle-cli/1";
  o.tls_insecure = insecure;
  o.no_deflate = g_no_deflate;
  o.cb.on_state = on_state;
  o.cb.on_refused = on_refused;
  if (follow)
    o.cb.on_event = on_event_follow;
  int rc = psl_client_open(&c, &o);
  if (rc)
    die(1, "cannot open the store in %s: %s", home, psl_strerror(rc));
  psl_client_status(c, &before);
  if (!before.url[0])
    die(1, "not logged in: %s login URL TOKEN", prog);
  if (follow) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    g_verbose = 1;
    rc = psl_client_start(c, 1);
    if (rc)
      die(1, "sync: %s", psl_strerror(rc));
    while (!g_stop)
      pause();
    psl_client_close(c);
    return 0;
  }
  rc = psl_client_sync(c, timeout_s * 1000);
  psl_client_status(c, &after);
  if (rc == PSL_EUNAVAILABLE) {
    psl_client_close(c);
    die(2, "sync: server unreachable at %s (%llu events kept in the outbox)", before.url,
        (unsigned long long)after.outbox);
  }
  if (rc) {
    psl_client_close(c);
    die(rc == PSL_EAGAIN ? 3 : 1, "sync: %s", rc == PSL_EAGAIN ? "timed out" : psl_strerror(rc));
  }
  printf("synced: pushed %llu, refused %llu, received %llu; checkpoint %llu, server head %llu\n",
         (unsigned long long)(before.outbox - after.outbox -
                              (after.refused - before.refused)),
         (unsigned long long)(after.refused - before.refused),
         (unsigned long long)(after.replica_events >= before.replica_events
                                  ? after.replica_events - before.replica_events
                                  : after.replica_events),
         (unsigned long long)after.checkpoint, (unsigned long long)after.server_head);
  psl_client_close(c);
  return 0;
}

/* ---- status, show, caseload, refused */

static void print_time(const char *label, int64_t ms) {
  char buf[64];
  if (!ms) {
    printf("%s never\n", label);
    return;
  }
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  printf("%s %s\n", label, buf);
}

static int cmd_status(psl_client_t *c) {
  psl_client_status_t st;
  int rc = psl_client_status(c, &st);
  if (rc)
    die(1, "status: %s", psl_strerror(rc));
  printf("unsent events:  %llu\n", (unsigned long long)st.outbox);
  printf("refused events: %llu\n", (unsigned long long)st.refused);
  printf("replica:        %llu events, %llu bytes, up to seq %llu\n",
         (unsigned long long)st.replica_events, (unsigned long long)st.replica_bytes,
         (unsigned long long)st.checkpoint);
  printf("server head:    %llu\n", (unsigned long long)st.server_head);
  print_time("last sync:     ", st.last_sync_ms);
  printf("server:         %s\n", st.url[0] ? st.url : "(not logged in)");
  printf("server log id:  %s\n", st.server_id[0] ? st.server_id : "(never synced)");
  printf("role:           %s\n", st.role[0] ? st.role : "(unknown)");
  return 0;
}

static int cmd_show(psl_client_t *c, int argc, char **argv) {
  uint8_t id[16];
  char *json = NULL;
  if (argc != 2 || strcmp(argv[0], "participant") != 0)
    usage();
  parse_uuid_or_die(argv[1], id);
  int rc = psl_client_participant_json(c, id, &json);
  if (rc == PSL_ENOTFOUND)
    die(1, "show: no such participant in the local store");
  if (rc)
    die(1, "show: %s", psl_strerror(rc));
  printf("%s\n", json);
  free(json);
  return 0;
}

static int caseload_line(void *arg, const uint8_t id[16], const char *json) {
  char u[PSL_UUID_STR + 1];
  psl_uuid_format(id, u);
  printf("{\"id\":\"%s\",\"state\":%s}\n", u, json);
  (*(size_t *)arg)++;
  return 0;
}

static int cmd_caseload(psl_client_t *c) {
  size_t n = 0;
  int rc = psl_client_caseload(c, caseload_line, &n);
  if (rc)
    die(1, "caseload: %s", psl_strerror(rc));
  return 0;
}

static int refused_line(void *arg, const psl_client_refusal_t *r) {
  char id[PSL_UUID_STR + 1];
  psl_uuid_format(r->event->id, id);
  printf("%s %s %s %s ver=%llu %s\n", id, r->event->type, r->event->stream, psl_err_code(r->err),
         (unsigned long long)r->server_ver, r->msg);
  return 0;
}

int main(int argc, char **argv) {
  const char *home = NULL;
  int insecure = 0, a = 1, rc = 0;
  lws_set_log_level(LLL_ERR, NULL); /* this program's choice: lws is quiet but for errors */
  for (; a < argc && strncmp(argv[a], "--", 2) == 0; a++) {
    if (strcmp(argv[a], "--home") == 0 && a + 1 < argc)
      home = argv[++a];
    else if (strcmp(argv[a], "--insecure") == 0)
      insecure = 1;
    else if (strcmp(argv[a], "--no-deflate") == 0)
      g_no_deflate = 1;
    else
      usage();
  }
  if (a >= argc)
    usage();
  home = home_dir(home);
  const char *cmd = argv[a++];
  if (strcmp(cmd, "sync") == 0)
    return cmd_sync(home, insecure, argc - a, argv + a);
  psl_client_t *c = open_client(home, insecure);
  if (strcmp(cmd, "login") == 0) {
    if (argc - a != 2)
      usage();
    rc = psl_client_login(c, argv[a], argv[a + 1]);
    if (rc)
      die(1, "login: %s (URL: ws://host:port or wss://host:port)", psl_strerror(rc));
  } else if (strcmp(cmd, "record") == 0) {
    rc = cmd_record(c, argc - a, argv + a);
  } else if (strcmp(cmd, "status") == 0) {
    rc = cmd_status(c);
  } else if (strcmp(cmd, "show") == 0) {
    rc = cmd_show(c, argc - a, argv + a);
  } else if (strcmp(cmd, "caseload") == 0) {
    rc = cmd_caseload(c);
  } else if (strcmp(cmd, "refused") == 0) {
    rc = psl_client_refused_read(c, refused_line, NULL);
  } else {
    usage();
  }
  psl_client_close(c);
  return rc ? 1 : 0;
}
