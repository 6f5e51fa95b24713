/*
 * test-domain.c — psl_domain_validate against DOMAIN.md: for every event type, a valid
 * event passes; each required key missing, each key of the wrong type, each bad code is
 * refused with a message naming the key (never the value); x- types; first-event rules;
 * identifying keys in `data` refused; `pii` checked while a map, opaque once a bin.
 *
 * Events are built with msgpack-c (the reference implementation), not with the domain's
 * own reader, so that the two are checked against each other.
 */
#include <msgpack.h>

#include "harness.h"
#include "psl_domain.h"

/* ---- A field of an event's data, as the table below describes it. */

typedef enum {
  F_CODE,   /* str: a valid code; bad: "zzz-not-a-code" */
  F_SITE,   /* str: a site code; bad: "Not A Site" */
  F_INT,    /* int; bad: out of range */
  F_BOOL,
  F_TEXT,   /* free str */
  F_TEXTS,  /* array of str */
  F_CODES,  /* array of codes; bad: a bad code at index 1 */
  F_UUID,   /* bin 16 */
  F_UUIDS   /* array of bin 16 */
} fkind_t;

typedef struct {
  const char *key;
  fkind_t kind;
  const char *good; /* F_CODE, F_SITE, F_CODES (first element) */
  int64_t ival, ibad; /* F_INT: a good value, an out-of-range one */
  int required;
} field_t;

typedef struct {
  const char *type;
  int session; /* 1: a session stream */
  field_t fields[9];
} spec_t;

static const spec_t specs[] = {
    {"participant.referred", 0,
     {{"programme", F_CODE, "rsa93", 0, 0, 1},
      {"site", F_SITE, "ma-villepinte", 0, 0, 1},
      {"source", F_CODE, "spip", 0, 0, 1},
      {"justice", F_CODE, "detained", 0, 0, 1},
      {"gender", F_CODE, "f", 0, 0, 1},
      {"birth_year", F_INT, NULL, 1990, 1800, 1},
      {"education", F_CODE, "infra3", 0, 0, 1},
      {"rsa", F_BOOL, NULL, 0, 0, 1},
      {NULL, 0, NULL, 0, 0, 0}}},
    {"engagement.signed", 0,
     {{"kind", F_CODE, "cer", 0, 0, 1}, {"objectives", F_TEXTS, NULL, 0, 0, 1}, {NULL, 0, NULL, 0, 0, 0}}},
    {"diagnostic.recorded", 0,
     {{"barriers", F_CODES, "housing-none", 0, 0, 1},
      {"strengths", F_TEXTS, NULL, 0, 0, 1},
      {"care_obligation", F_BOOL, NULL, 0, 0, 1},
      {NULL, 0, NULL, 0, 0, 0}}},
    {"barrier.lifted", 0,
     {{"barrier", F_CODE, "debts", 0, 0, 1}, {"how", F_TEXT, NULL, 0, 0, 0}, {NULL, 0, NULL, 0, 0, 0}}},
    {"interview.held", 0,
     {{"minutes", F_INT, NULL, 45, 0, 1},
      {"place", F_CODE, "detention", 0, 0, 1},
      {"site", F_SITE, "qsl-sante", 0, 0, 0},
      {"topics", F_TEXTS, NULL, 0, 0, 1},
      {NULL, 0, NULL, 0, 0, 0}}},
    {"appointment.missed", 0, {{NULL, 0, NULL, 0, 0, 0}}},
    {"partner.referred", 0,
     {{"ref", F_UUID, NULL, 0, 0, 1},
      {"partner_kind", F_CODE, "siae", 0, 0, 1},
      {"kind", F_CODE, "pmsmp", 0, 0, 1},
      {"partner", F_TEXT, NULL, 0, 0, 1},
      {NULL, 0, NULL, 0, 0, 0}}},
    {"partner.updated", 0,
     {{"ref", F_UUID, NULL, 0, 0, 1}, {"status", F_CODE, "accepted", 0, 0, 1}, {NULL, 0, NULL, 0, 0, 0}}},
    {"outcome.recorded", 0, {{"kind", F_CODE, "cddi", 0, 0, 1}, {NULL, 0, NULL, 0, 0, 0}}},
    {"participant.transferred", 0,
     {{"terr", F_CODE, "93", 0, 0, 0},
      {"site", F_SITE, "csl-gagny", 0, 0, 0},
      {"programme", F_CODE, "o2r", 0, 0, 0},
      {NULL, 0, NULL, 0, 0, 0}}},
    {"justice.changed", 0, {{"justice", F_CODE, "semi-liberty", 0, 0, 1}, {NULL, 0, NULL, 0, 0, 0}}},
    {"participant.exited", 0, {{"reason", F_CODE, "job", 0, 0, 1}, {NULL, 0, NULL, 0, 0, 0}}},
    {"participant.merged", 0, {{"into", F_UUID, NULL, 0, 0, 1}, {NULL, 0, NULL, 0, 0, 0}}},
    {"participant.erased", 0, {{NULL, 0, NULL, 0, 0, 0}}},
    {"event.voided", 0,
     {{"of", F_UUID, NULL, 0, 0, 1}, {"reason", F_TEXT, NULL, 0, 0, 1}, {NULL, 0, NULL, 0, 0, 0}}},
    {"session.held", 1,
     {{"sequence", F_CODE, "info", 0, 0, 1},
      {"site", F_SITE, "sas-noisy", 0, 0, 1},
      {"minutes", F_INT, NULL, 120, 2000, 1},
      {"attendees", F_UUIDS, NULL, 0, 0, 1},
      {"programme", F_CODE, "rsa93", 0, 0, 0},
      {NULL, 0, NULL, 0, 0, 0}}},
};

#define PART_STREAM "participant/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
#define SESS_STREAM "session/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
#define AT_2024 INT64_C(1718000000000) /* June 2024 */

/* How a field is written: good, missing, wrong type, bad code or value. */
enum { W_GOOD, W_MISSING, W_WRONG_TYPE, W_BAD };

static void pack_str(msgpack_packer *pk, const char *s) {
  msgpack_pack_str(pk, strlen(s));
  msgpack_pack_str_body(pk, s, strlen(s));
}

static void pack_uuid(msgpack_packer *pk, uint8_t seed) {
  uint8_t id[16];
  for (int i = 0; i < 16; i++)
    id[i] = (uint8_t)(seed + i * 7);
  msgpack_pack_bin(pk, 16);
  msgpack_pack_bin_body(pk, id, 16);
}

static void pack_field(msgpack_packer *pk, const field_t *f, int how) {
  if (how == W_WRONG_TYPE) {
    /* an int where a str/array/bool/bin is expected, a str where an int is */
    if (f->kind == F_INT)
      pack_str(pk, "45");
    else
      msgpack_pack_int(pk, 7);
    return;
  }
  switch (f->kind) {
  case F_CODE:
  case F_SITE:
    pack_str(pk, how == W_BAD ? (f->kind == F_CODE ? "SECRET-not-a-code" : "SECRET Not A Site") : f->good);
    break;
  case F_INT:
    msgpack_pack_int64(pk, how == W_BAD ? f->ibad : f->ival);
    break;
  case F_BOOL:
    msgpack_pack_true(pk);
    break;
  case F_TEXT:
    pack_str(pk, "some text");
    break;
  case F_TEXTS:
    msgpack_pack_array(pk, 2);
    pack_str(pk, "a");
    pack_str(pk, "b");
    break;
  case F_CODES:
    msgpack_pack_array(pk, 3);
    pack_str(pk, f->good);
    pack_str(pk, how == W_BAD ? "SECRET-not-a-code" : "health");
    pack_str(pk, "digital");
    break;
  case F_UUID:
    pack_uuid(pk, 1);
    break;
  case F_UUIDS:
    msgpack_pack_array(pk, 3);
    pack_uuid(pk, 1);
    pack_uuid(pk, 2);
    if (how == W_BAD) {
      msgpack_pack_bin(pk, 3); /* not 16 bytes */
      msgpack_pack_bin_body(pk, "abc", 3);
    } else {
      pack_uuid(pk, 3);
    }
    break;
  }
}

/* data of spec s with field `which` written as `how` (which = -1: all good), plus `extra`
 * (a key to add with a str value, or NULL). */
static void build_data(msgpack_sbuffer *sb, const spec_t *s, int which, int how, const char *extra) {
  msgpack_packer pk;
  msgpack_sbuffer_init(sb);
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  int n = 0;
  for (int i = 0; s->fields[i].key; i++)
    if (!(i == which && how == W_MISSING))
      n++;
  msgpack_pack_map(&pk, (size_t)n + (extra ? 1 : 0));
  for (int i = 0; s->fields[i].key; i++) {
    if (i == which && how == W_MISSING)
      continue;
    pack_str(&pk, s->fields[i].key);
    pack_field(&pk, &s->fields[i], i == which ? how : W_GOOD);
  }
  if (extra) {
    pack_str(&pk, extra);
    pack_str(&pk, "Jean SECRET Dupont");
  }
}

static void build_pii_name(msgpack_sbuffer *sb) {
  msgpack_packer pk;
  msgpack_sbuffer_init(sb);
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  pack_str(&pk, "name");
  pack_str(&pk, "Jean SECRET Dupont");
  pack_str(&pk, "phone");
  pack_str(&pk, "0600000000");
}

static void make_event(psl_event_t *ev, const spec_t *s, const msgpack_sbuffer *data,
                       const msgpack_sbuffer *pii) {
  memset(ev, 0, sizeof *ev);
  for (int i = 0; i < 16; i++)
    ev->id[i] = (uint8_t)(0xa0 + i);
  ev->stream = psl_str(s->session ? SESS_STREAM : PART_STREAM);
  ev->type = psl_str(s->type);
  ev->at = AT_2024;
  ev->terr = psl_str("93");
  ev->data.ptr = (const uint8_t *)data->data;
  ev->data.len = data->size;
  if (pii) {
    ev->pii.ptr = (const uint8_t *)pii->data;
    ev->pii.len = pii->size;
  }
  ev->expect = PSL_EXPECT_ANY;
}

/* The stream version at which spec s is valid: its first-event rule. */
static uint64_t ver_for(const spec_t *s) {
  return strcmp(s->type, "participant.referred") == 0 || strcmp(s->type, "session.held") == 0 ? 0 : 3;
}

static int validate_spec(const spec_t *s, int which, int how, const char *extra, psl_diag_t *d) {
  msgpack_sbuffer data, pii;
  psl_event_t ev;
  build_data(&data, s, which, how, extra);
  build_pii_name(&pii);
  int is_ref = strcmp(s->type, "participant.referred") == 0;
  make_event(&ev, s, &data, is_ref ? &pii : NULL);
  memset(d, 0, sizeof *d);
  int rc = psl_domain_validate(&ev, ver_for(s), d);
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&pii);
  return rc;
}

/* d names "data.<key>" (or "data.<key>[i]") and never the value written. */
static void check_names(const psl_diag_t *d, const char *key) {
  char want[64];
  snprintf(want, sizeof want, "data.%s", key);
  if (strncmp(d->msg, want, strlen(want)) != 0)
    psl_test_fail(__FILE__, __LINE__, "diag \"%s\" does not name %s", d->msg, want);
  CHECK(strstr(d->msg, "SECRET") == NULL);
}

TEST(domain, every_type_valid) {
  psl_diag_t d;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    int rc = validate_spec(&specs[i], -1, W_GOOD, NULL, &d);
    if (rc)
      psl_test_fail(__FILE__, __LINE__, "%s refused: %s", specs[i].type, d.msg);
  }
}

TEST(domain, every_required_key_missing) {
  psl_diag_t d;
  int checked = 0;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
    for (int f = 0; specs[i].fields[f].key; f++) {
      int rc = validate_spec(&specs[i], f, W_MISSING, NULL, &d);
      if (!specs[i].fields[f].required) {
        /* transferred: dropping one optional key of three still leaves two */
        if (rc)
          psl_test_fail(__FILE__, __LINE__, "%s without optional %s: %s", specs[i].type,
                        specs[i].fields[f].key, d.msg);
        continue;
      }
      CHECK_EQ(rc, PSL_EINVALID);
      check_names(&d, specs[i].fields[f].key);
      CHECK(strstr(d.msg, "missing") != NULL);
      checked++;
    }
  CHECK(checked >= 30);
}

TEST(domain, every_key_wrong_type) {
  psl_diag_t d;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
    for (int f = 0; specs[i].fields[f].key; f++) {
      CHECK_EQ(validate_spec(&specs[i], f, W_WRONG_TYPE, NULL, &d), PSL_EINVALID);
      check_names(&d, specs[i].fields[f].key);
      CHECK(strstr(d.msg, "expected") != NULL);
    }
}

TEST(domain, every_bad_code_or_value) {
  psl_diag_t d;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
    for (int f = 0; specs[i].fields[f].key; f++) {
      const field_t *fl = &specs[i].fields[f];
      if (fl->kind != F_CODE && fl->kind != F_SITE && fl->kind != F_INT && fl->kind != F_CODES &&
          fl->kind != F_UUIDS)
        continue;
      CHECK_EQ(validate_spec(&specs[i], f, W_BAD, NULL, &d), PSL_EINVALID);
      check_names(&d, fl->key);
      if (fl->kind == F_CODES) {
        char want[64];
        snprintf(want, sizeof want, "data.%s[1]: unknown code", fl->key);
        CHECK_STR(d.msg, want);
      } else if (fl->kind == F_CODE) {
        char want[64];
        snprintf(want, sizeof want, "data.%s: unknown code", fl->key);
        CHECK_STR(d.msg, want);
      }
    }
}

TEST(domain, messages_as_documented) {
  psl_diag_t d;
  CHECK_EQ(validate_spec(&specs[0], 0, W_BAD, NULL, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.programme: unknown code");
  CHECK_EQ(validate_spec(&specs[4], 0, W_WRONG_TYPE, NULL, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.minutes: expected int");
  CHECK_EQ(validate_spec(&specs[2], 0, W_BAD, NULL, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.barriers[1]: unknown code");
  CHECK_EQ(validate_spec(&specs[4], 0, W_BAD, NULL, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.minutes: out of range");
}

TEST(domain, pii_keys_in_data_refused) {
  static const char *const keys[] = {"name", "phone", "birth_date", "notes"};
  psl_diag_t d;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
    for (size_t k = 0; k < 4; k++) {
      CHECK_EQ(validate_spec(&specs[i], -1, W_GOOD, keys[k], &d), PSL_EINVALID);
      char want[80];
      snprintf(want, sizeof want, "data.%s: personal data belongs in pii", keys[k]);
      CHECK_STR(d.msg, want);
    }
  /* other unknown keys are allowed (forward compatibility) */
  CHECK_OK(validate_spec(&specs[4], -1, W_GOOD, "mood", &d));
}

TEST(domain, first_event_rules) {
  msgpack_sbuffer data, pii;
  psl_event_t ev;
  psl_diag_t d;
  build_pii_name(&pii);
  /* referral: first only */
  build_data(&data, &specs[0], -1, W_GOOD, NULL);
  make_event(&ev, &specs[0], &data, &pii);
  CHECK_OK(psl_domain_validate(&ev, 0, &d));
  CHECK_EQ(psl_domain_validate(&ev, 1, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "type: participant.referred on an existing stream");
  msgpack_sbuffer_destroy(&data);
  /* an interview cannot open a participant stream */
  build_data(&data, &specs[4], -1, W_GOOD, NULL);
  make_event(&ev, &specs[4], &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 0, &d), PSL_EINVALID);
  CHECK(strncmp(d.msg, "type: the first event", 21) == 0);
  CHECK_OK(psl_domain_validate(&ev, 1, &d));
  /* ...nor a session stream (wrong kind of stream) */
  ev.stream = psl_str(SESS_STREAM);
  CHECK_EQ(psl_domain_validate(&ev, 1, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "type: not allowed in a session stream");
  msgpack_sbuffer_destroy(&data);
  /* session.held opens a session stream, and not a participant one */
  build_data(&data, &specs[15], -1, W_GOOD, NULL);
  make_event(&ev, &specs[15], &data, NULL);
  CHECK_OK(psl_domain_validate(&ev, 0, &d));
  CHECK_OK(psl_domain_validate(&ev, 2, &d));
  ev.stream = psl_str(PART_STREAM);
  CHECK_EQ(psl_domain_validate(&ev, 1, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "type: not allowed in a participant stream");
  msgpack_sbuffer_destroy(&data);
  /* a void cannot open a session stream */
  build_data(&data, &specs[14], -1, W_GOOD, NULL);
  make_event(&ev, &specs[14], &data, NULL);
  ev.stream = psl_str(SESS_STREAM);
  CHECK_EQ(psl_domain_validate(&ev, 0, &d), PSL_EINVALID);
  CHECK_OK(psl_domain_validate(&ev, 1, &d));
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_destroy(&pii);
}

TEST(domain, stream_terr_type_at) {
  msgpack_sbuffer data;
  psl_event_t ev;
  psl_diag_t d;
  build_data(&data, &specs[6], -1, W_GOOD, NULL);
  make_event(&ev, &specs[6], &data, NULL);
  CHECK_OK(psl_domain_validate(&ev, 2, &d));
  static const char *const bad_streams[] = {
      "participant/0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B", /* uppercase */
      "participant/0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",     /* no hyphens */
      "participant/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",  /* short */
      "participants/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
      "caseworker/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
      "participant/",
      ""};
  for (size_t i = 0; i < sizeof bad_streams / sizeof bad_streams[0]; i++) {
    ev.stream = psl_str(bad_streams[i]);
    CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
    CHECK(strncmp(d.msg, "stream:", 7) == 0);
  }
  ev.stream = psl_str(PART_STREAM);
  static const char *const terrs[] = {"75", "77", "93", "94"};
  for (int i = 0; i < 4; i++) {
    ev.terr = psl_str(terrs[i]);
    CHECK_OK(psl_domain_validate(&ev, 2, &d));
  }
  static const char *const bad_terrs[] = {"92", "2A", "", "930"};
  for (int i = 0; i < 4; i++) {
    ev.terr = psl_str(bad_terrs[i]);
    CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
    CHECK_STR(d.msg, "terr: unknown code");
  }
  ev.terr = psl_str("93");
  ev.type = psl_str("partner.referrd");
  CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "type: unknown");
  ev.type = psl_str("partner.referred");
  ev.at = 0;
  CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "at: out of range");
  msgpack_sbuffer_destroy(&data);
}

TEST(domain, extension_types) {
  msgpack_sbuffer data;
  msgpack_packer pk;
  psl_event_t ev;
  psl_diag_t d;
  spec_t x = {"x-acme.checkin", 0, {{NULL, 0, NULL, 0, 0, 0}}};
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "anything");
  msgpack_pack_array(&pk, 1);
  msgpack_pack_int(&pk, 3);
  make_event(&ev, &x, &data, NULL);
  CHECK_OK(psl_domain_validate(&ev, 4, &d));
  ev.stream = psl_str(SESS_STREAM);
  CHECK_OK(psl_domain_validate(&ev, 4, &d)); /* both kinds of stream */
  ev.stream = psl_str(PART_STREAM);
  CHECK_EQ(psl_domain_validate(&ev, 0, &d), PSL_EINVALID); /* not as a first event */
  ev.type = psl_str("x-");
  CHECK_EQ(psl_domain_validate(&ev, 4, &d), PSL_EINVALID);
  msgpack_sbuffer_destroy(&data);
  /* data must be a map */
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 0);
  make_event(&ev, &x, &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 4, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data: expected map");
  msgpack_sbuffer_destroy(&data);
  /* and identifying keys stay out of it too */
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "phone");
  pack_str(&pk, "0600000000");
  make_event(&ev, &x, &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 4, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.phone: personal data belongs in pii");
  msgpack_sbuffer_destroy(&data);
}

TEST(domain, pii_checks) {
  msgpack_sbuffer data, pii;
  msgpack_packer pk;
  psl_event_t ev;
  psl_diag_t d;
  build_data(&data, &specs[0], -1, W_GOOD, NULL);
  /* no pii at all: the name is missing */
  make_event(&ev, &specs[0], &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 0, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "pii.name: missing");
  /* a map without name */
  msgpack_sbuffer_init(&pii);
  msgpack_packer_init(&pk, &pii, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "phone");
  pack_str(&pk, "0600000000");
  make_event(&ev, &specs[0], &data, &pii);
  CHECK_EQ(psl_domain_validate(&ev, 0, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "pii.name: missing");
  msgpack_sbuffer_destroy(&pii);
  /* a name that is not a str */
  msgpack_sbuffer_init(&pii);
  msgpack_packer_init(&pk, &pii, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "name");
  msgpack_pack_int(&pk, 12);
  make_event(&ev, &specs[0], &data, &pii);
  CHECK_EQ(psl_domain_validate(&ev, 0, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "pii.name: expected str");
  msgpack_sbuffer_destroy(&pii);
  /* encrypted (bin): opaque, accepted */
  msgpack_sbuffer_init(&pii);
  msgpack_packer_init(&pk, &pii, msgpack_sbuffer_write);
  msgpack_pack_bin(&pk, 40);
  msgpack_pack_bin_body(&pk, "0123456789012345678901234567890123456789", 40);
  make_event(&ev, &specs[0], &data, &pii);
  CHECK_OK(psl_domain_validate(&ev, 0, &d));
  msgpack_sbuffer_destroy(&pii);
  /* neither a map nor a bin */
  msgpack_sbuffer_init(&pii);
  msgpack_packer_init(&pk, &pii, msgpack_sbuffer_write);
  pack_str(&pk, "Jean SECRET Dupont");
  make_event(&ev, &specs[0], &data, &pii);
  CHECK_EQ(psl_domain_validate(&ev, 0, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "pii: expected map");
  msgpack_sbuffer_destroy(&pii);
  msgpack_sbuffer_destroy(&data);
  /* notes on an interview must be a str */
  build_data(&data, &specs[4], -1, W_GOOD, NULL);
  msgpack_sbuffer_init(&pii);
  msgpack_packer_init(&pk, &pii, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "notes");
  msgpack_pack_array(&pk, 0);
  make_event(&ev, &specs[4], &data, &pii);
  CHECK_EQ(psl_domain_validate(&ev, 3, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "pii.notes: expected str");
  msgpack_sbuffer_destroy(&pii);
  msgpack_sbuffer_destroy(&data);
}

TEST(domain, transfer_and_merge_rules) {
  msgpack_sbuffer data;
  msgpack_packer pk;
  psl_event_t ev;
  psl_diag_t d;
  const spec_t *tr = &specs[9];
  /* none of terr, site, programme */
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 0);
  make_event(&ev, tr, &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data: one of terr, site, programme required");
  msgpack_sbuffer_destroy(&data);
  /* data.terr must be the event's own terr (the new territory) */
  build_data(&data, tr, -1, W_GOOD, NULL);
  make_event(&ev, tr, &data, NULL);
  ev.terr = psl_str("75");
  CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.terr: differs from the event's terr");
  msgpack_sbuffer_destroy(&data);
  /* merged into itself */
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "into");
  static const uint8_t self[16] = {0x01, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0x7e, 0x5f,
                                   0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b};
  msgpack_pack_bin(&pk, 16);
  msgpack_pack_bin_body(&pk, self, 16);
  make_event(&ev, &specs[12], &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.into: the participant itself");
  msgpack_sbuffer_destroy(&data);
}

TEST(domain, duplicates_and_nil) {
  msgpack_sbuffer data;
  msgpack_packer pk;
  psl_event_t ev;
  psl_diag_t d;
  /* the same barrier twice */
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 3);
  pack_str(&pk, "barriers");
  msgpack_pack_array(&pk, 2);
  pack_str(&pk, "debts");
  pack_str(&pk, "debts");
  pack_str(&pk, "strengths");
  msgpack_pack_array(&pk, 0);
  pack_str(&pk, "care_obligation");
  msgpack_pack_false(&pk);
  make_event(&ev, &specs[2], &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.barriers[1]: duplicate");
  msgpack_sbuffer_destroy(&data);
  /* the same key twice */
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  pack_str(&pk, "kind");
  pack_str(&pk, "cdi");
  pack_str(&pk, "kind");
  pack_str(&pk, "cdi");
  make_event(&ev, &specs[8], &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.kind: duplicate key");
  msgpack_sbuffer_destroy(&data);
  /* nil for an optional key is "absent"; for a required one, a type error */
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  pack_str(&pk, "barrier");
  pack_str(&pk, "debts");
  pack_str(&pk, "how");
  msgpack_pack_nil(&pk);
  make_event(&ev, &specs[3], &data, NULL);
  CHECK_OK(psl_domain_validate(&ev, 2, &d));
  msgpack_sbuffer_destroy(&data);
  msgpack_sbuffer_init(&data);
  msgpack_packer_init(&pk, &data, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 1);
  pack_str(&pk, "barrier");
  msgpack_pack_nil(&pk);
  make_event(&ev, &specs[3], &data, NULL);
  CHECK_EQ(psl_domain_validate(&ev, 2, &d), PSL_EINVALID);
  CHECK_STR(d.msg, "data.barrier: expected str");
  msgpack_sbuffer_destroy(&data);
}

/* Hostile bytes: every truncation and every single-byte corruption of a valid event is
 * either accepted or refused, never read out of bounds (the asan build checks that). */
TEST(domain, hostile_bytes) {
  msgpack_sbuffer data, pii;
  psl_event_t ev;
  psl_diag_t d;
  for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
    build_data(&data, &specs[s], -1, W_GOOD, NULL);
    build_pii_name(&pii);
    uint8_t *copy = malloc(data.size);
    for (size_t cut = 0; cut < data.size; cut++) {
      memcpy(copy, data.data, cut);
      make_event(&ev, &specs[s], &data, &pii);
      ev.data.ptr = copy;
      ev.data.len = cut;
      CHECK_EQ(psl_domain_validate(&ev, ver_for(&specs[s]), &d), PSL_EINVALID);
    }
    for (size_t i = 0; i < data.size; i++)
      for (int v = 0; v < 256; v += 17) {
        memcpy(copy, data.data, data.size);
        copy[i] = (uint8_t)v;
        make_event(&ev, &specs[s], &data, &pii);
        ev.data.ptr = copy;
        (void)psl_domain_validate(&ev, ver_for(&specs[s]), &d);
      }
    free(copy);
    msgpack_sbuffer_destroy(&data);
    msgpack_sbuffer_destroy(&pii);
  }
}

TEST(domain, codes_and_dates) {
  CHECK_EQ(psl_code_count(PSL_CODE_BARRIER), 16);
  CHECK_EQ(psl_code_lookup(PSL_CODE_TERR, "94", 2), PSL_TERR_94);
  CHECK_STR(psl_code_name(PSL_CODE_OUTCOME, psl_code_lookup(PSL_CODE_OUTCOME, "other-siae", 10)),
            "other-siae");
  CHECK_EQ(psl_outcome_class(psl_code_lookup(PSL_CODE_OUTCOME, "cddi", 4)), PSL_CLASS_TRANSITIONAL);
  CHECK_EQ(psl_outcome_class(psl_code_lookup(PSL_CODE_OUTCOME, "cdd-6m", 6)), PSL_CLASS_DURABLE);
  CHECK_EQ(psl_education_isced(psl_code_lookup(PSL_CODE_EDUCATION, "infra3", 6)), 1);
  CHECK_EQ(psl_education_isced(psl_code_lookup(PSL_CODE_EDUCATION, "4", 1)), 2);
  CHECK_EQ(psl_education_isced(psl_code_lookup(PSL_CODE_EDUCATION, "5+", 2)), 3);
  CHECK(psl_site_valid("ma-villepinte", 13));
  CHECK(!psl_site_valid("Ma Villepinte", 13));
  int y, m;
  /* 2023-12-31T23:30Z is 00:30 on 1 January 2024 in Paris (winter, +1) */
  psl_local_ym(INT64_C(1704065400000), &y, &m);
  CHECK_EQ(y, 2024);
  CHECK_EQ(m, 1);
  /* 2024-07-31T22:30Z is 00:30 on 1 August in Paris (summer, +2) */
  psl_local_ym(INT64_C(1722465000000), &y, &m);
  CHECK_EQ(y, 2024);
  CHECK_EQ(m, 8);
  /* 2024-07-31T21:30Z is still 31 July */
  psl_local_ym(INT64_C(1722461400000), &y, &m);
  CHECK_EQ(m, 7);
  /* month starts: local midnight */
  CHECK_EQ(psl_local_month_start(2024, 1), INT64_C(1704063600000)); /* 2023-12-31T23:00Z */
  CHECK_EQ(psl_local_month_start(2024, 8), INT64_C(1722463200000)); /* 2024-07-31T22:00Z */
  CHECK_EQ(psl_local_month_start(2024, 13), psl_local_month_start(2025, 1));
  /* the summer-time change of 2024: 31 March 01:00Z */
  psl_local_ym(INT64_C(1711846800000) - 1, &y, &m);
  CHECK_EQ(m, 3);
  CHECK_EQ(psl_local_month_start(2024, 4), INT64_C(1711922400000)); /* 2024-03-31T22:00Z */
}
