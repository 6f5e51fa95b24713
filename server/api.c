/*
 * api.c — the HTTP API of PROTOCOL-v1 ("HTTP on the same port"): territory counters, one
 * participant's state and the yearly report, read from the projections that the log's
 * writer keeps in its own transactions (server.c opens the log with psl_projection_hooks).
 *
 *   GET /api/v1/counters?year=Y[&terr=T][&month=M][&programme=P][&site=S]
 *   GET /api/v1/participants/<uuid>
 *   GET /api/v1/report?year=Y[&terr=T][&format=json|csv|md]
 *
 * Every request carries `Authorization: Bearer <token>`.  Answers, the first that applies:
 *   503 unavailable   the server is starting (its log opens, projections catch up): retry
 *   401 unauthorized  no token, another scheme, an unknown or revoked token
 *                     (with `WWW-Authenticate: Bearer realm="passerelle"`)
 *   400 invalid       a parameter unknown (a typo is answered, not ignored), repeated,
 *                     malformed or out of range; a path that does not end in a uuid
 *   403 forbidden     authority, below
 *   404 not_found     a participant the projections do not know (never referred, or its
 *                     referral voided)
 *   200               JSON (application/json); the report in CSV (text/csv) or Markdown
 *                     (text/markdown) when asked with `format`
 * Every error is a JSON object {"error": "<PROTOCOL-v1 code>", "msg": "<why>"}: the message
 * names the parameter, never a value (values may be personal data) nor the token.
 *
 * Authority (psl_access_may_read: the one rule set of psl_access.h):
 *   counters     a caseworker: only one of their territories, and `terr` is then required
 *                (all territories at once would show others'); every other role: anything
 *   participant  a caseworker: only a participant whose *current* territory is theirs.  One
 *                transferred away is answered 403, not 404: the field app then knows the
 *                record moved on, and does not re-create the person (a duplicate);
 *                every other role: anyone
 *   report       coordinator, auditor, admin; a caseworker gets 403
 *
 * Access log (psl_access_log.h): each read a coordinator, auditor or admin is answered
 * (after the authority checks) is logged with its selection: territory, year, participant id.
 *
 * Values: codes as DOMAIN.md spells them (terr 75, programme rsa93, site qsl-sante); `terr`
 * may also be `all` (or empty) for every territory.  `year` 2000..2099, `month` 1..12.
 * Times: the counters of a year in progress count months followed up to now (wall clock); a
 * participant's `age` and `months_followed` are those of now.
 *
 * Threads: on the loop thread, one short read transaction per request (the writer never
 * waits for it).  A query's cost follows the people it visits (one territory's or every
 * territory's year), not the log's length; the yearly report visits them once per row: on
 * bench-proj's 10-million-event log (~60,000 people a year) counters take ~2 ms at the
 * median and the report ~0.1 s, which the loop spends there (a worker thread would be the
 * next step if reports are asked for often at that size).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "http_query.h"
#include "psl_access_log.h"
#include "psl_domain.h"
#include "psl_say.h"

#define API_JSON "application/json; charset=utf-8"
/* Longest Authorization header read: "Bearer ", a token of at most PSL_HTTP_TOKEN_MAX and
 * spaces around; a longer one is not a token of ours (401). */
#define API_MAX_AUTH (PSL_HTTP_TOKEN_MAX + 32)
/* Longest query part (key=value) read from lws: http_query.h's bounds on both, and '='. */
#define API_MAX_PART (PSL_HTTP_KEY_MAX + PSL_HTTP_VALUE_MAX + 2)

static const char *const api_www_authenticate[] = {"www-authenticate:",
                                                   "Bearer realm=\"passerelle\"", NULL};

static int64_t api_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A JSON error answer.  msg is our own static text: plain ASCII without quotes. */
static int api_error(psl__http_resp_t *resp, unsigned status, int err, const char *msg) {
  char text[256];
  int n = snprintf(text, sizeof text, "{\"error\":\"%s\",\"msg\":\"%s\"}\n", psl_err_code(err),
                   msg);
  resp->status = status;
  resp->ctype = API_JSON;
  if (status == 401)
    resp->headers = api_www_authenticate;
  psl_buf_reset(resp->body);
  return psl_buf_append(resp->body, text, n > 0 && (size_t)n < sizeof text ? (size_t)n : 0);
}

/* api_error for the steps before a handler's own work: 1 once answered (the handler then
 * returns 0), or the PSL_E* of a failed answer. */
static int api_refuse(psl__http_resp_t *resp, unsigned status, int err, const char *msg) {
  int rc = api_error(resp, status, err, msg);
  return rc ? rc : 1;
}

/* ---- What every request goes through. */

typedef struct {
  psl_principal_t who;
  psl_http_query_t q;
} api_call_t;

/* The bearer token's principal: 0, or PSL_EUNAUTHORIZED (answered 401 by the caller). */
static int api_authenticate(const psl__http_req_t *req, psl_principal_t *who) {
  char auth[API_MAX_AUTH];
  psl_str_t token;
  int len = lws_hdr_total_length(req->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
  if (len <= 0 || (size_t)len >= sizeof auth ||
      lws_hdr_copy(req->wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) != len ||
      psl_http_bearer(auth, (size_t)len, &token) != 0)
    return PSL_EUNAUTHORIZED;
  int rc = psl_access_token_check(req->srv->access, token.ptr, token.len, who);
  if (rc != 0) {
    char id[PSL_TOKEN_ID_LEN + 1];
    psl_access_token_id(token.ptr, token.len, id);
    psl_say(PSL_SAY_INFO, "api %s refused: token %s %s", req->path, id,
            rc == PSL_EUNAUTHORIZED ? (who->revoked ? "revoked" : "unknown") : psl_strerror(rc));
    return PSL_EUNAUTHORIZED;
  }
  return 0;
}

/* The query, part by part as lws decoded them (http_query.h: never joined, so an encoded
 * '&' inside a value stays inside it).  0 or PSL_EINVALID / PSL_ETOO_BIG. */
static int api_query(const psl__http_req_t *req, psl_http_query_t *q) {
  char part[API_MAX_PART];
  psl_http_query_init(q);
  for (int i = 0;; i++) {
    int len = lws_hdr_fragment_length(req->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (len <= 0)
      return 0;
    if ((size_t)len >= sizeof part)
      return PSL_ETOO_BIG;
    if (lws_hdr_copy_fragment(req->wsi, part, sizeof part, WSI_TOKEN_HTTP_URI_ARGS, i) != len)
      return PSL_EINVALID;
    int rc = psl_http_query_add(q, part, (size_t)len);
    if (rc)
      return rc;
  }
}

/* Start of every handler: 503 while starting, 401, 400 for a query with keys not in known.
 * Returns 1 when it answered (the handler returns 0), 0 to go on, or PSL_E* of ours. */
static int api_begin(const psl__http_req_t *req, psl__http_resp_t *resp,
                     const char *const *known, api_call_t *call) {
  psl__server_t *srv = req->srv;
  if (srv->starting || !srv->log || !srv->projdb)
    return api_refuse(resp, 503, PSL_EUNAVAILABLE, "starting: the projections are not ready");
  if (api_authenticate(req, &call->who) != 0)
    return api_refuse(resp, 401, PSL_EUNAUTHORIZED, "a valid bearer token is required");
  int rc = api_query(req, &call->q);
  if (rc == PSL_ETOO_BIG)
    return api_refuse(resp, 400, PSL_EINVALID, "query: too many or too long parameters");
  if (rc)
    return api_refuse(resp, 400, PSL_EINVALID,
                     "query: a malformed or repeated parameter");
  if (psl_http_query_only(&call->q, known) != 0)
    return api_refuse(resp, 400, PSL_EINVALID, "query: unknown parameter");
  return 0;
}

/* ---- Parameters.  Each returns 0, or answers 400 and returns 1 (or PSL_E* of ours). */

static int api_year(const api_call_t *call, psl__http_resp_t *resp, int *year) {
  int64_t v;
  int rc = psl_http_query_int(&call->q, "year", 2000, 2099, &v);
  if (rc == PSL_ENOTFOUND)
    return api_refuse(resp, 400, PSL_EINVALID, "year: required");
  if (rc)
    return api_refuse(resp, 400, PSL_EINVALID, "year: an integer from 2000 to 2099");
  *year = (int)v;
  return 0;
}

/* An optional code of table t under key: 0 when absent (or "all"/"" for terr). */
static int api_code(const api_call_t *call, psl__http_resp_t *resp, const char *key,
                    psl_code_table_t t, const char *msg, int *code) {
  const char *v = psl_http_query_get(&call->q, key);
  *code = 0;
  if (!v || !*v || (t == PSL_CODE_TERR && strcmp(v, "all") == 0))
    return 0;
  *code = psl_code_lookup(t, v, strlen(v));
  return *code ? 0 : api_refuse(resp, 400, PSL_EINVALID, msg);
}

/* ---- Reads in one short transaction. */

typedef struct {
  psl_projdb_t *db;
  const psl_counters_query_t *q;
  psl_counters_t *counters;
  const uint8_t *id;
  psl_participant_t *st;
  int year, terr;
  psl_report_t *report;
} api_read_t;

static int api_read_counters(void *arg, MDB_txn *txn) {
  api_read_t *r = arg;
  return psl_projdb_counters(r->db, txn, r->q, r->counters);
}

static int api_read_participant(void *arg, MDB_txn *txn) {
  api_read_t *r = arg;
  return psl_projdb_participant(r->db, txn, r->id, r->st);
}

static int api_read_report(void *arg, MDB_txn *txn) {
  api_read_t *r = arg;
  return psl_projdb_report(r->db, txn, r->year, r->terr, r->report);
}

/* ---- GET /api/v1/counters */

int psl__api_counters(const psl__http_req_t *req, psl__http_resp_t *resp) {
  static const char *const known[] = {"year", "terr", "month", "programme", "site", NULL};
  api_call_t call;
  int rc, year, terr, programme;
  int64_t month = 0;
  if ((rc = api_begin(req, resp, known, &call)) != 0 ||
      (rc = api_year(&call, resp, &year)) != 0 ||
      (rc = api_code(&call, resp, "terr", PSL_CODE_TERR, "terr: unknown territory", &terr)) ||
      (rc = api_code(&call, resp, "programme", PSL_CODE_PROGRAMME, "programme: unknown code",
                     &programme)))
    return rc > 0 ? 0 : rc;
  rc = psl_http_query_int(&call.q, "month", 1, 12, &month);
  if (rc && rc != PSL_ENOTFOUND)
    return api_error(resp, 400, PSL_EINVALID, "month: an integer from 1 to 12");
  const char *site = psl_http_query_get(&call.q, "site");
  if (site && *site && !psl_site_valid(site, strlen(site)))
    return api_error(resp, 400, PSL_EINVALID, "site: 1 to 48 characters of a-z, 0-9 and -");

  if (terr == 0 && call.who.role == PSL_ROLE_CASEWORKER)
    return api_error(resp, 403, PSL_EFORBIDDEN, "terr: a caseworker must name one of theirs");
  if (terr && psl_access_may_read(&call.who, psl_str(psl_code_name(PSL_CODE_TERR, terr))) != 0)
    return api_error(resp, 403, PSL_EFORBIDDEN, "terr: not one of this token's territories");

  psl_counters_query_t q;
  psl_counters_t c;
  if (psl_counters_query_init(&q, terr, year, (int)month, programme, site) != 0)
    return api_error(resp, 400, PSL_EINVALID, "query: invalid");
  q.now_ms = api_wall_ms();
  psl_alog_read(req->srv->alog, &call.who, "counters",
                "terr=%s year=%d month=%d programme=%s site=%s",
                terr ? psl_code_name(PSL_CODE_TERR, terr) : "*", year, (int)month,
                programme ? psl_code_name(PSL_CODE_PROGRAMME, programme) : "*",
                site && *site ? site : "*");
  api_read_t r = {.db = req->srv->projdb, .q = &q, .counters = &c};
  if ((rc = psl_log_with_read_txn(req->srv->log, api_read_counters, &r)) != 0)
    return rc;
  resp->ctype = API_JSON;
  rc = psl_counters_json(resp->body, &c);
  return rc ? rc : psl_buf_append(resp->body, "\n", 1);
}

/* ---- GET /api/v1/participants/<uuid> */

#define API_PARTICIPANTS "/api/v1/participants/"

int psl__api_participant(const psl__http_req_t *req, psl__http_resp_t *resp) {
  static const char *const known[] = {NULL};
  api_call_t call;
  uint8_t id[PSL_UUID_BYTES];
  int rc = api_begin(req, resp, known, &call);
  if (rc)
    return rc > 0 ? 0 : rc;
  if (psl_http_path_uuid(req->path, strlen(req->path), API_PARTICIPANTS, id) != 0)
    return api_error(resp, 400, PSL_EINVALID, "path: /api/v1/participants/<uuid>");

  psl_participant_t st;
  api_read_t r = {.db = req->srv->projdb, .id = id, .st = &st};
  rc = psl_log_with_read_txn(req->srv->log, api_read_participant, &r);
  if (rc == PSL_ENOTFOUND)
    return api_error(resp, 404, PSL_ENOTFOUND, "no such participant");
  if (rc)
    return rc;
  const char *terr = psl_code_name(PSL_CODE_TERR, st.terr);
  if (!terr || psl_access_may_read(&call.who, psl_str(terr)) != 0) {
    psl_participant_free(&st);
    return api_error(resp, 403, PSL_EFORBIDDEN, "the participant is in another territory");
  }
  char uuid[PSL_UUID_STR + 1];
  psl_uuid_format(id, uuid);
  psl_alog_read(req->srv->alog, &call.who, "participant", "id=%s", uuid);
  resp->ctype = API_JSON;
  rc = psl_participant_json(resp->body, &st, api_wall_ms());
  psl_participant_free(&st);
  return rc ? rc : psl_buf_append(resp->body, "\n", 1);
}

/* ---- GET /api/v1/report */

int psl__api_report(const psl__http_req_t *req, psl__http_resp_t *resp) {
  static const char *const known[] = {"year", "terr", "format", NULL};
  api_call_t call;
  int rc, year, terr;
  if ((rc = api_begin(req, resp, known, &call)) != 0 ||
      (rc = api_year(&call, resp, &year)) != 0 ||
      (rc = api_code(&call, resp, "terr", PSL_CODE_TERR, "terr: unknown territory", &terr)))
    return rc > 0 ? 0 : rc;
  const char *format = psl_http_query_get(&call.q, "format");
  if (!format || !*format)
    format = "json";
  if (strcmp(format, "json") && strcmp(format, "csv") && strcmp(format, "md"))
    return api_error(resp, 400, PSL_EINVALID, "format: json, csv or md");
  psl_role_t role = call.who.role;
  if (role != PSL_ROLE_COORDINATOR && role != PSL_ROLE_AUDITOR && role != PSL_ROLE_ADMIN)
    return api_error(resp, 403, PSL_EFORBIDDEN, "the report is for coordinators and auditors");
  psl_alog_read(req->srv->alog, &call.who, "report", "year=%d terr=%s format=%s", year,
                terr ? psl_code_name(PSL_CODE_TERR, terr) : "*", format);

  psl_report_t report;
  api_read_t r = {.db = req->srv->projdb, .year = year, .terr = terr, .report = &report};
  if ((rc = psl_log_with_read_txn(req->srv->log, api_read_report, &r)) != 0)
    return rc;
  if (format[0] == 'j') {
    resp->ctype = API_JSON;
    rc = psl_report_json(resp->body, &report);
    if (!rc)
      rc = psl_buf_append(resp->body, "\n", 1);
  } else if (format[0] == 'c') {
    resp->ctype = "text/csv; charset=utf-8; header=present";
    rc = psl_report_csv(resp->body, &report);
  } else {
    resp->ctype = "text/markdown; charset=utf-8";
    rc = psl_report_md(resp->body, &report);
  }
  psl_report_free(&report);
  return rc;
}
