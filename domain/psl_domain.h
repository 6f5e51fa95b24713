/*
 * psl_domain.h — the domain of DOMAIN.md as a library: event validation, the participant
 * projection, territory counters, caseloads and the yearly report, kept in memory (client,
 * tests, tools) or in LMDB next to the event log (server).  Server and client-lib both link
 * this one library: the fold code exists once.
 *
 * Semantics this library fixes where DOMAIN.md leaves a choice (docs/ARCHITECTURE.md cites
 * them; the tests check them against a naive reference):
 *
 *  - Voided events count as if they had never been recorded.  An `event.voided` may itself be
 *    voided (which restores its target); a void whose `of` is not an earlier event of the same
 *    stream has no effect.  The participant projection is the fold of the stream's effective
 *    events (those not voided by an effective void).
 *  - "Latest" fields (justice, current placement, care obligation, exit, barrier open or
 *    lifted, partner referral status) take the event with the greatest (at, seq): a
 *    caseworker's late sync of an older event does not override a newer one.
 *  - Placement: the referral gives (terr, programme, site); each `participant.transferred`
 *    opens a new placement from its `at` (its own `terr`; `programme` and `site` carried over
 *    when absent).  An event at time t counts under the placement in effect at t (the last
 *    placement whose at <= t; before the referral's at, the referral's).
 *  - Dates: `at` is read in Europe/Paris local time (EU summer-time rules) to find its year and
 *    month, since funders' periods are French calendar months.
 *  - Status: erased > merged > exited > active (an engagement signed or an interview held)
 *    > referred.  A participant whose referral is voided is unknown (PSL_ENOTFOUND).
 *  - Activity ("followed: participants with any event in the period"): every effective event
 *    of the participant's own stream but `event.voided`, `participant.merged` and
 *    `participant.erased`.  Session attendance counts in `sessions_attended` and
 *    `session_attendance` but does not by itself make a participant followed.
 *  - Merged participants are duplicates of their `into` record: they are left out of every
 *    per-person figure (followed, referred, active, exited, gender, age, education, shares,
 *    rsa, months, ESF+); their recorded activity (interviews, missed, partner referrals,
 *    outcomes) still counts.  Erased participants keep counting: erasure destroys personal
 *    data (pii), never the anonymous figures already reported to funders.
 *  - Per-person figures of a period: `referred` (referral dated in it, counted under its
 *    placement), `active` (followed, and an engagement or interview dated before the period's
 *    end), `exited` (the latest exit dated in it, under its placement, by reason), shares of
 *    `housing-none`/`housing-precarious`/care obligation (in a diagnostic dated before the
 *    period's end), `mean_months_followed` (referral to exit, or to the period's end, in
 *    days / 30.44).  Sessions count under their own terr, site and programme (none: they
 *    match no programme filter); everything else under the participant's placement.
 *
 * Nothing here holds pii: states, counters and reports are made of `data` alone, and error
 * messages name keys, never values.
 *
 * Threads: nothing here is global (a few read-only tables are built once under
 * pthread_once).  A psl_proj_t (memory) is used by one thread at a time.  A psl_projdb_t is
 * shared: psl_projdb_apply and psl_projdb_store from one writer thread at a time (the log's),
 * queries, compare and verify from any thread, each with its own LMDB transaction.
 */
#ifndef PSL_DOMAIN_H
#define PSL_DOMAIN_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "psl_error.h"
#include "psl_log.h" /* types only: psl_log_hooks_t, psl_log_t */
#include "psl_proto.h"

/* ---- Codes.  Each table numbers its codes 1..n in DOMAIN.md's order; 0 means "none". */

typedef enum {
  PSL_CODE_TERR,            /* 75 77 93 94 */
  PSL_CODE_PROGRAMME,       /* rsa93 dynamiques-emploi en-route-idf o2r */
  PSL_CODE_SOURCE,          /* spip mission-locale epi chrs pjj france-travail self other */
  PSL_CODE_JUSTICE,         /* detained sas semi-liberty open-custody electronic-monitoring released */
  PSL_CODE_GENDER,          /* f m x */
  PSL_CODE_EDUCATION,       /* none infra3 3 4 5+ */
  PSL_CODE_BARRIER,         /* housing-none ... judicial-constraints (16) */
  PSL_CODE_ENGAGEMENT,      /* cer contrat-engagement charte */
  PSL_CODE_PLACE,           /* detention office phone video outreach */
  PSL_CODE_PARTNER_KIND,    /* siae training france-travail csapa health housing other */
  PSL_CODE_REFERRAL_KIND,   /* pmsmp training job care housing rights other */
  PSL_CODE_REFERRAL_STATUS, /* accepted refused started completed cancelled */
  PSL_CODE_OUTCOME,         /* cdi cdd-6m business cdd-short interim cddi training other-siae */
  PSL_CODE_OUTCOME_CLASS,   /* durable transitional positive */
  PSL_CODE_EXIT_REASON,     /* completed job training reincarcerated moved lost-contact declined deceased other */
  PSL_CODE_SEQUENCE,        /* info career-analysis ... other */
  PSL_CODE_STATUS,          /* referred active exited merged erased */
  PSL_CODE_ISCED,           /* 0-2 3-4 5-8 */
  PSL_CODE__N
} psl_code_table_t;

/* Codes that the projections use by number. */
enum { PSL_TERR_75 = 1, PSL_TERR_77, PSL_TERR_93, PSL_TERR_94 };
enum { PSL_GENDER_F = 1, PSL_GENDER_M, PSL_GENDER_X };
enum { PSL_BARRIER_HOUSING_NONE = 1, PSL_BARRIER_HOUSING_PRECARIOUS = 2 };
enum { PSL_STATUS_REFERRED = 1, PSL_STATUS_ACTIVE, PSL_STATUS_EXITED, PSL_STATUS_MERGED,
       PSL_STATUS_ERASED };
enum { PSL_CLASS_DURABLE = 1, PSL_CLASS_TRANSITIONAL, PSL_CLASS_POSITIVE };
enum { PSL_EXIT_JOB = 2, PSL_EXIT_TRAINING = 3 };
enum { PSL_OUTCOME_TRAINING = 7 };

/* Largest count of any table (the barriers): sizes the per-code arrays below. */
#define PSL_CODE_MAX 16
#define PSL_NTERR 4
#define PSL_NPROGRAMME 4
#define PSL_NEXIT 9
#define PSL_NREFKIND 7
#define PSL_NOUTCOME 8
#define PSL_NBARRIER 16

/* Number of codes of table t (0 for a bad t). */
int psl_code_count(psl_code_table_t t);
/* Name of code c of table t (static storage), or NULL when c is 0 or out of range. */
const char *psl_code_name(psl_code_table_t t, int c);
/* Code of name s (s[0..len), no NUL needed) in table t: 1..n, or 0 if unknown. */
int psl_code_lookup(psl_code_table_t t, const char *s, size_t len);
/* Class of an outcome code (PSL_CLASS_*), 0 for a bad code. */
int psl_outcome_class(int outcome);
/* ISCED group (1: 0-2, 2: 3-4, 3: 5-8) of an education code, 0 for none. */
int psl_education_isced(int education);

/* A site is an open list of codes (DOMAIN.md: "at least" the listed ones): 1 to
 * PSL_SITE_MAX characters of [a-z0-9-].  Keeping it a code keeps personal data out of it. */
#define PSL_SITE_MAX 48
int psl_site_valid(const char *s, size_t len);

/* ---- Dates: Europe/Paris calendar (EU summer time: last Sunday of March to last Sunday of
 * October, 01:00 UTC; exact from 1996, the rule's first year, to 2099). */

/* Local year and month (1..12) of at (ms since the epoch, UTC). */
void psl_local_ym(int64_t at, int *year, int *month);
/* UTC ms of local midnight on the first day of (year, month); month 13 means January of
 * year + 1.  A period [start(y, m), start(y, m + 1)) is one month. */
int64_t psl_local_month_start(int year, int month);

/* ---- Validation. */

/* Bounds on `at`: after 2000-01-01 and before 2100-01-01 UTC, so that every date maps to a
 * calendar month the reports know and a hostile clock cannot overflow the date arithmetic. */
#define PSL_AT_MIN INT64_C(946684800000)
#define PSL_AT_MAX INT64_C(4102444800000)
/* `data.minutes` of an interview or session: at most a day. */
#define PSL_MINUTES_MAX 1440
/* `data.birth_year`: a person alive and of working age around the programmes' years. */
#define PSL_BIRTH_YEAR_MIN 1900
#define PSL_BIRTH_YEAR_MAX 2100

/* Check ev (a new event, as pushed) against DOMAIN.md, its stream's current version being
 * stream_ver (0: the stream does not exist yet).  Returns 0, or PSL_EINVALID with diag (when
 * not NULL) naming the key ("data.programme: unknown code", "data.barriers[2]: unknown code",
 * "pii.name: missing") — never a value.  Reads ev->data and ev->pii as hostile bytes. */
int psl_domain_validate(const psl_event_t *ev, uint64_t stream_ver, psl_diag_t *diag);

/* ---- Participant state. */

/* (at, seq) orders events for "latest wins" fields. */
typedef struct {
  int64_t at;
  uint64_t seq;
} psl_when_t;

/* One partner referral (`partner.referred` and its `partner.updated`s), by `ref`. */
typedef struct {
  uint8_t ref[PSL_UUID_BYTES];
  int referred;              /* 1 once its partner.referred is folded */
  uint8_t kind, partner_kind; /* PSL_CODE_REFERRAL_KIND, PSL_CODE_PARTNER_KIND */
  uint8_t status;            /* PSL_CODE_REFERRAL_STATUS; 0 while no update ("referred") */
  psl_when_t referred_when, updated_when;
} psl_referral_t;

/* One `participant.transferred`: terr always, programme and site when given. */
typedef struct {
  psl_when_t when;
  uint8_t terr, programme; /* programme 0: unchanged */
  char site[PSL_SITE_MAX + 1]; /* "": unchanged */
} psl_transfer_t;

/* The projection of one participant.  Plain data: copy with psl_participant_copy, release
 * with psl_participant_free.  It never holds pii.  The "view" fields are what DOMAIN.md lists;
 * the rest is what the fold needs to stay exact whatever order events arrive in. */
typedef struct psl_participant_s {
  /* Fields are grouped by how often the fold touches them, not by meaning: a rebuild visits
   * a cold state per event, and the first cache lines are the ones it pays for. */
  uint8_t id[PSL_UUID_BYTES];
  int known;  /* an effective participant.referred has been folded */
  int status; /* view: PSL_STATUS_* (0 while unknown) */
  int64_t max_at; /* bookkeeping: greatest at of the folded events */
  uint32_t interviews;            /* view */
  uint32_t missed;                /* view */
  uint64_t interview_minutes;     /* view */
  int64_t last_interview;         /* view: at of the latest interview, 0 if none */
  int64_t activated_at;           /* first engagement.signed or interview.held, 0 if none */
  uint32_t *marks; /* bookkeeping: activity, sorted (month index << 16 | placement index) */
  size_t nmarks, cap_marks;
  psl_transfer_t *transfers; /* bookkeeping: sorted by when */
  size_t ntransfers, cap_transfers;
  uint8_t ref_terr, ref_programme; /* bookkeeping: the referral's placement */
  char ref_site[PSL_SITE_MAX + 1];
  uint32_t outcomes[PSL_NOUTCOME + 1]; /* view: by outcome code */
  int64_t employment_at, training_at;  /* first outcome of that class, 0 if none */
  psl_referral_t *referrals;           /* view: sorted by ref */
  size_t nreferrals, cap_referrals;

  /* view */
  uint8_t terr, programme; /* current placement */
  char site[PSL_SITE_MAX + 1];
  uint8_t justice, gender, education, source;
  int rsa;
  int birth_year;
  uint32_t barriers_open, barriers_lifted; /* bit (code - 1) of PSL_CODE_BARRIER */
  int care_obligation;                     /* -1 no diagnostic yet, else 0 or 1 */
  uint32_t sessions_attended; /* from session.held attendees (another stream) */
  int64_t referred_at, exited_at; /* 0 if none */
  uint8_t exit_reason;
  uint8_t into[PSL_UUID_BYTES]; /* status merged: the record this one continues in */

  /* bookkeeping */
  psl_when_t ref_when, justice_when, care_when, exit_when, merged_when;
  int64_t housing_at, homeless_at, care_at; /* first diagnostic saying so, 0 if none */
  int merged, erased;
  uint8_t barrier_state[PSL_NBARRIER + 1]; /* 0 none, 1 open, 2 lifted */
  psl_when_t barrier_when[PSL_NBARRIER + 1];
} psl_participant_t;

void psl_participant_init(psl_participant_t *st, const uint8_t id[PSL_UUID_BYTES]);
void psl_participant_free(psl_participant_t *st); /* frees the arrays; accepts NULL */
/* Deep copy into dst (whose arrays, if any, the caller has freed: they are overwritten).
 * PSL_ENOMEM leaves dst empty. */
int psl_participant_copy(psl_participant_t *dst, const psl_participant_t *src);
/* 1 if the two states are equal in everything the projection defines. */
int psl_participant_equal(const psl_participant_t *a, const psl_participant_t *b);
/* Age in year (year - birth_year), -1 when the birth year is unknown. */
int psl_participant_age(const psl_participant_t *st, int year);
/* Days from referral to exit, or to now_ms if not exited (0 if unknown). */
int64_t psl_participant_days_followed(const psl_participant_t *st, int64_t now_ms);

/* JSON object of the state, appended to out: id, status, programme, terr, site, justice,
 * gender, birth_year, age (in now_ms's year), education, source, rsa, barriers_open,
 * barriers_lifted (arrays of codes), care_obligation (null before any diagnostic),
 * interviews, interview_minutes, last_interview (ms or null), missed, sessions_attended,
 * referrals ({"<ref uuid>": {kind, partner_kind, status}}, status "referred" until an
 * update), outcomes (counts by code), referred_at, exited_at (ms or null), exit_reason,
 * months_followed (to the exit, else to now_ms), and into (merged only).  now_ms 0 reads
 * "now" as the participant's latest event.  Codes are printed as codes; nothing of pii.
 * Returns 0 or PSL_ENOMEM. */
int psl_participant_json(psl_buf_t *out, const psl_participant_t *st, int64_t now_ms);

/* ---- Territory counters. */

typedef struct {
  int terr;      /* PSL_CODE_TERR code, 0: every territory */
  int year;
  int month;     /* 1..12, 0: the whole year */
  int programme; /* PSL_CODE_PROGRAMME code, 0: every programme */
  char site[PSL_SITE_MAX + 1]; /* "": every site */
  /* Period end for mean_months_followed when earlier than the period's own end (a year in
   * progress); 0: the period's end. */
  int64_t now_ms;
} psl_counters_query_t;

/* Every figure is an exact integer; means and shares are sums and counts to divide. */
typedef struct {
  psl_counters_query_t q;
  int64_t referred, followed, active;
  int64_t exited[PSL_NEXIT + 1];      /* by exit reason code */
  int64_t interviews, interview_minutes, missed, sessions, session_attendance;
  int64_t partner_referrals[PSL_NREFKIND + 1]; /* by referral kind code */
  int64_t outcomes[PSL_NOUTCOME + 1];          /* by outcome code */
  int64_t outcome_classes[4];                  /* by PSL_CLASS_* */
  int64_t gender[4];                           /* by gender code */
  int64_t age_sum, age_n;                      /* mean_age = age_sum / age_n */
  int64_t education[4];                        /* by ISCED group (psl_education_isced) */
  int64_t housing, homeless, care_obligation;  /* shares: / followed */
  int64_t rsa;
  int64_t days_followed_sum, days_followed_n;  /* mean_months_followed, in days */
  /* EU ESF+ participant indicators (participants = followed) */
  int64_t esf_under18, esf_18_29, esf_55plus;
  int64_t esf_exit_training, esf_exit_employment; /* exited in the period, at exit */
} psl_counters_t;

/* Fill a query; site may be NULL.  PSL_EINVALID for a bad year, month or site. */
int psl_counters_query_init(psl_counters_query_t *q, int terr, int year, int month,
                            int programme, const char *site);
/* The JSON object of DOMAIN.md, appended to out: the query (terr, year, month, programme, site;
 * null when not filtered), then referred, followed, active, exited {reason: n},
 * interviews, interview_minutes, missed, sessions, session_attendance, partner_referrals
 * {kind: n}, outcomes {kind: n}, outcomes_by_class {durable, transitional, positive},
 * gender {f, m, x}, mean_age, education {"0-2", "3-4", "5-8"}, housing_barrier_share,
 * homeless_share, care_obligation_share (0..1, of followed), rsa, mean_months_followed.
 * Breakdowns list every code (zeros too); a mean or share of nobody is null.
 * Returns 0 or PSL_ENOMEM. */
int psl_counters_json(psl_buf_t *out, const psl_counters_t *c);
/* 1 if the two carry the same query and the same figures. */
int psl_counters_equal(const psl_counters_t *a, const psl_counters_t *b);

/* ---- The yearly report: per territory, programme and site, with ESF+ indicators. */

typedef struct {
  const char *dimension; /* "total", "terr", "programme", "site" (static) */
  char code[PSL_SITE_MAX + 1]; /* the territory, programme or site ("" for the total) */
  psl_counters_t c;
} psl_report_row_t;

typedef struct {
  int year, terr; /* terr 0: every territory */
  psl_report_row_t *rows;
  size_t nrows;
} psl_report_t;

/* Rows: "total" first (the territory asked, or all), then each territory (when all were
 * asked), programme and site with any figure that year.  Built by psl_proj_report or
 * psl_projdb_report; the rows are the caller's to free. */
void psl_report_free(psl_report_t *r); /* the rows; accepts NULL */
/* {"year", "terr", "rows": [{"dimension", "code", <the counters' figures>, "esf": {
 * participants, under_18, age_18_29, age_55_plus, isced_0_2, isced_3_4, isced_5_8,
 * homeless_or_housing_exclusion, exit_in_education_or_training, exit_in_employment}}]} */
int psl_report_json(psl_buf_t *out, const psl_report_t *r);
/* One header line, one line per row (CRLF, RFC 4180); breakdowns as one column per code. */
int psl_report_csv(psl_buf_t *out, const psl_report_t *r);
/* Markdown tables with French headings, as the organisation's activity report is written. */
int psl_report_md(psl_buf_t *out, const psl_report_t *r);

/* ---- Stores.  The same fold (domain/engine.c) runs in both.
 *
 * How voids stay exact: the participant projection is DEFINED as the fold of the stream's
 * effective events.  A normal event folds in O(1).  An event.voided — and a
 * participant.transferred dated at or before an event already folded, which moves that event
 * to another placement — recomputes the stream: the store's iterator supplies every earlier
 * event of the stream, the effective sets before and after are folded from scratch, and the
 * counters receive the difference of their contributions.  A session stream's void works the
 * same way on its session.held records and their attendees. */

/* Where a recomputation reads a stream's earlier events: call fn once for each event of
 * `stream` recorded before the one being applied — those whose seq is below before_seq; when
 * before_seq is 0 (a client's unsent event), every event recorded so far — in the order they
 * were recorded.  The events and their bytes need only live during fn.  Return 0, fn's
 * nonzero result (stop), or a PSL_E* of your own. */
typedef int (*psl_event_fn)(void *fnarg, const psl_event_t *ev);
typedef int (*psl_stream_iter_fn)(void *arg, psl_str_t stream, uint64_t before_seq,
                                  psl_event_fn fn, void *fnarg);

/* A caseload entry: st is valid only during the call; a nonzero return stops the walk and
 * is returned by it. */
typedef int (*psl_caseload_fn)(void *arg, const psl_participant_t *st);

/* -- In memory (client-lib, tests, tools, rebuilds). */
typedef struct psl_proj_s psl_proj_t;

int psl_proj_new(psl_proj_t **out); /* 0 or PSL_ENOMEM; free with psl_proj_free */
void psl_proj_free(psl_proj_t *p);  /* accepts NULL */

/* Fold one event (stored, or a client's new one with seq 0) into the projections; ev and its
 * bytes need only live during the call.  iter (with arg) supplies the stream's earlier events
 * for recomputations; it may be NULL only if no void or early-dated transfer comes (else
 * PSL_EINVALID).  Events that do not parse (a newer client's type or key) count as activity
 * of their stream only; events of another kind of stream are ignored.  Returns 0,
 * PSL_ENOMEM, PSL_EINVALID or iter's error; after an error the store may hold part of the
 * event: rebuild it. */
int psl_proj_apply(psl_proj_t *p, const psl_event_t *ev, psl_stream_iter_fn iter, void *arg);

/* The greatest seq applied (0 if none). */
uint64_t psl_proj_seq(const psl_proj_t *p);

/* Copy of a participant's state into *out, which the call initialises: free it with
 * psl_participant_free (also after PSL_ENOTFOUND).  PSL_ENOTFOUND if the participant is
 * unknown (no effective referral), PSL_ENOMEM. */
int psl_proj_participant(psl_proj_t *p, const uint8_t id[PSL_UUID_BYTES],
                         psl_participant_t *out);
/* Counters of query q into *out (no allocation kept).  0 or PSL_ENOMEM. */
int psl_proj_counters(psl_proj_t *p, const psl_counters_query_t *q, psl_counters_t *out);
/* Caseload: the known participants whose current territory is terr (0: all), in
 * (territory, id) order (filter on st->status as needed).  0, PSL_ENOMEM, or fn's nonzero
 * result. */
int psl_proj_caseload(psl_proj_t *p, int terr, psl_caseload_fn fn, void *arg);
/* The yearly report for year and terr (0: all) into *out (rows: psl_report_free).
 * 0, PSL_EINVALID (year), PSL_ENOMEM. */
int psl_proj_report(psl_proj_t *p, int year, int terr, psl_report_t *out);

/* Fold every event of log from seq 1 up to its head into a new memory store (*out, the
 * caller's: psl_proj_free), reading through psl_log_read in chunks; recomputations read their
 * stream with psl_log_read.  Returns 0, PSL_ECORRUPT (an undecodable record), PSL_ENOMEM or
 * the log's error.  In its own file (domain/rebuild-log.c): the one function here that
 * needs the server library, so a client links without it. */
int psl_proj_rebuild_from_log(psl_log_t *log, psl_proj_t **out);

/* -- In LMDB, inside the log's environment (server; client-lib's replica).  Databases, their
 *    layouts in domain/store-lmdb.c and domain/codec.c:
 *    proj_part     participant id (16) → state
 *    proj_sess     session id (16) → its effective session.held records
 *    proj_counters year (2 BE) ‖ month (1) ‖ terr (1) ‖ programme (1) ‖ site → additive counts
 *    proj_year     year (2 BE) ‖ terr (1, 0 = all) ‖ lower-bound participant id (16) → a
 *                  block of per-person facts (the ids ascending, then one entry each)
 *    proj_terr     terr (1) ‖ participant id (16) → status (1): caseloads
 *    proj_stream   kind (1) ‖ stream id (16) ‖ seq (8 BE) → (): the streams' events
 *    proj_meta     "proj_seq" → seq (8 BE) the projections reflect; "format" → version
 *    It reads the log's `events` database (seq (8 BE) → hash (32) ‖ canonical event) for
 *    recomputations and rebuilds; nothing else of the log's layout. */
typedef struct psl_projdb_s psl_projdb_t;

/* Open the databases in env through txn, creating them when txn is a write transaction (a
 * read-only txn needs them to exist).  *out is the caller's: psl_projdb_free it once env is
 * closed.  The handle holds no transaction.  0, PSL_ENOMEM, or an LMDB error mapped
 * (too many named databases: the env needs 7 free). */
int psl_projdb_open(psl_projdb_t **out, MDB_env *env, MDB_txn *txn);
void psl_projdb_free(psl_projdb_t *db); /* accepts NULL */

/* Fold ev inside the write transaction txn, which the caller commits (or aborts: then
 * nothing of ev stays).  ev->seq must be proj_seq + 1, else PSL_ECORRUPT (the projections
 * would skip or repeat events).  iter supplies a stream's earlier events for
 * recomputations; NULL reads them through proj_stream and the log's `events` in txn (so it
 * sees the events of the batch being written).  Writer thread only.  Returns 0, PSL_ENOMEM,
 * PSL_ECORRUPT, PSL_EUNAVAILABLE (map full: the log grows the map and retries the batch). */
int psl_projdb_apply(psl_projdb_t *db, MDB_txn *txn, const psl_event_t *ev,
                     psl_stream_iter_fn iter, void *arg);
/* proj_seq as txn sees it (0 for new projections). */
int psl_projdb_seq(psl_projdb_t *db, MDB_txn *txn, uint64_t *seq);

/* Queries, in any transaction of the env (read or write), from any thread; results are the
 * caller's, as for the memory store's functions of the same names. */
int psl_projdb_participant(psl_projdb_t *db, MDB_txn *txn, const uint8_t id[PSL_UUID_BYTES],
                           psl_participant_t *out);
int psl_projdb_counters(psl_projdb_t *db, MDB_txn *txn, const psl_counters_query_t *q,
                        psl_counters_t *out);
int psl_projdb_caseload(psl_projdb_t *db, MDB_txn *txn, int terr, psl_caseload_fn fn,
                        void *arg);
int psl_projdb_report(psl_projdb_t *db, MDB_txn *txn, int year, int terr, psl_report_t *out);

/* Replace every stored projection by mem's (a rebuild), in the write txn, and set proj_seq
 * to psl_proj_seq(mem); proj_stream is rebuilt from the log's `events` up to that seq (or
 * emptied when the env holds no log).  An empty mem resets the projections.  Writer thread. */
int psl_projdb_store(psl_projdb_t *db, MDB_txn *txn, const psl_proj_t *mem);
/* Compare the stored projections with mem: proj_seq, every participant state, session,
 * counter vector, per-year facts and caseload entry, and their counts.  0 if equal, else
 * PSL_ECORRUPT with diag (may be NULL) naming the first difference and its id — never
 * personal data. */
int psl_projdb_compare(psl_projdb_t *db, MDB_txn *txn, const psl_proj_t *mem,
                       psl_diag_t *diag);

/* Fold the log's events with seq in (from, upto], read through txn from `events`, into mem
 * (recomputations see every earlier event: the scan remembers each stream's seqs from seq
 * 1, in memory, 8 bytes an event).  PSL_EINVALID when the env holds no log. */
int psl_projdb_fold_log(psl_projdb_t *db, MDB_txn *txn, uint64_t from, uint64_t upto,
                        psl_proj_t *mem);
/* The auditor's verify, all in txn (one snapshot; a read transaction is best, e.g. through
 * psl_log_with_read_txn): read proj_seq, rebuild (0, proj_seq] into a new memory store,
 * compare.  0 when the stored projections equal the rebuild, PSL_ECORRUPT with diag
 * otherwise. */
int psl_projdb_verify(psl_projdb_t *db, MDB_txn *txn, psl_diag_t *diag);

/* Hooks for psl_log_opts_t.hooks, with arg = slot, a psl_projdb_t * the caller owns and
 * frees after psl_log_close.  open (in the log's opening transaction) opens the databases
 * into *slot and brings them to the log's head: folds the events past proj_seq (fewer than
 * 10,000), or rebuilds from seq 1 (more, a proj_seq past the head, or another format).
 * apply folds each stored event in the writer's transaction (psl_projdb_apply, iter NULL).
 * The projections thus commit, and survive a crash, with the events they reflect. */
psl_log_hooks_t psl_projection_hooks(psl_projdb_t **slot);

#endif /* PSL_DOMAIN_H */
