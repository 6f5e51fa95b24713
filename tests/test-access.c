/*
 * test-access.c — the token store (server/access.c), the authority rules
 * (server/access-rules.c) and passerelle-admin, against a real LMDB in a temporary folder
 * and the real binary.
 */
#include "harness.h"
#include "psl_access.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- Helpers. */

static psl_access_t *open_store(void) {
  psl_access_t *a = NULL;
  CHECK_OK(psl_access_open(&a, psl_test_tmpdir()));
  CHECK(a != NULL);
  return a;
}

static void make_token(psl_access_t *a, psl_role_t role, const char *terr, char *token,
                       psl_principal_t *p) {
  const char *t[1] = {terr};
  CHECK_OK(psl_access_token_create(a, role, terr ? t : NULL, terr ? 1 : 0, "Amélie Durand",
                                   "tablet-3", token, p));
}

/* The token is "psl_" + base64url of >= 16 bytes (128 bits); returns the raw bytes' count. */
static size_t token_raw(const char *token, unsigned char *raw, size_t cap) {
  size_t n = 0;
  CHECK_EQ(strlen(token), PSL_TOKEN_LEN);
  CHECK(strncmp(token, "psl_", 4) == 0);
  CHECK_OK(sodium_base642bin(raw, cap, token + 4, strlen(token + 4), NULL, &n, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING));
  return n;
}

static int file_contains(const char *path, const void *needle, size_t n) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  CHECK(size >= 0);
  char *buf = malloc((size_t)size + 1);
  CHECK(buf != NULL);
  CHECK_EQ(fread(buf, 1, (size_t)size, f), size);
  fclose(f);
  int found = memmem(buf, (size_t)size, needle, n) != NULL;
  free(buf);
  return found;
}

/* Number of regular files under DIR/access that contain needle; *nfiles counts them all. */
static int store_files_containing(const void *needle, size_t n, int *nfiles) {
  char dir[PATH_MAX], path[PATH_MAX + 256];
  int hits = 0;
  snprintf(dir, sizeof dir, "%s/access", psl_test_tmpdir());
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  *nfiles = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    (*nfiles)++;
    hits += file_contains(path, needle, n);
  }
  closedir(d);
  return hits;
}

typedef struct {
  int status; /* exit status, or -1 if it did not exit */
  char out[16384];
  char err[16384];
} cli_run_t;

static void slurp(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL);
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
}

/* Run build/bin/passerelle-admin with args (NULL-terminated), PASSERELLE_DATA set to env_data
 * (unset when NULL), and no standard input. */
static void cli(cli_run_t *r, const char *env_data, const char *const *args) {
  char bin[PATH_MAX], outp[PATH_MAX], errp[PATH_MAX];
  const char *argv[32];
  size_t n = 0;
  snprintf(bin, sizeof bin, "%s/passerelle-admin", psl_test_bindir());
  snprintf(outp, sizeof outp, "%s/cli.out", psl_test_tmpdir());
  snprintf(errp, sizeof errp, "%s/cli.err", psl_test_tmpdir());
  argv[n++] = bin;
  for (; args[n - 1] && n < 31; n++)
    argv[n] = args[n - 1];
  argv[n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    int out = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0)
      _exit(127);
    dup2(in, 0), dup2(out, 1), dup2(err, 2);
    if (env_data)
      setenv("PASSERELLE_DATA", env_data, 1);
    else
      unsetenv("PASSERELLE_DATA");
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    CHECK(errno == EINTR);
  r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  slurp(outp, r->out, sizeof r->out);
  slurp(errp, r->err, sizeof r->err);
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* The line of `token list` output that starts with id, copied into line; 0 if none. */
static int list_line(const char *out, const char *id, char *line, size_t cap) {
  for (const char *p = out; *p;) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    if (strncmp(p, id, strlen(id)) == 0 && p[strlen(id)] == '\t') {
      snprintf(line, cap, "%.*s", (int)len, p);
      return 1;
    }
    p += len + (nl ? 1 : 0);
  }
  return 0;
}

/* ---- The store. */

TEST(access, round_trip) {
  psl_access_t *a = open_store();
  char token[PSL_TOKEN_LEN + 1];
  psl_principal_t made, got;
  const char *terr[] = {"93", "94"};

  uint64_t g0 = psl_access_generation(a);
  CHECK_OK(psl_access_token_create(a, PSL_ROLE_CASEWORKER, terr, 2, "Amélie Durand",
                                   "tablet-3", token, &made));
  CHECK(psl_access_generation(a) != g0);
  CHECK_EQ(strlen(token), PSL_TOKEN_LEN);
  CHECK_EQ(strlen(made.id), PSL_TOKEN_ID_LEN);

  CHECK_OK(psl_access_token_check(a, token, strlen(token), &got));
  CHECK_STR(got.id, made.id);
  CHECK_EQ(got.role, PSL_ROLE_CASEWORKER);
  CHECK_EQ(got.nterr, 2);
  CHECK_STR(got.terr[0], "93");
  CHECK_STR(got.terr[1], "94");
  CHECK_STR(got.name, "Amélie Durand");
  CHECK_STR(got.device, "tablet-3");
  CHECK_EQ(got.created_ms, made.created_ms);
  CHECK(got.created_ms > 1700000000000ll);
  CHECK_EQ(got.revoked, 0);

  char id[PSL_TOKEN_ID_LEN + 1];
  psl_access_token_id(token, strlen(token), id);
  CHECK_STR(id, made.id);
  CHECK_OK(psl_access_token_check_id(a, made.id, &got));
  CHECK_STR(got.name, "Amélie Durand");

  /* It survives a reopen. */
  psl_access_close(a);
  a = open_store();
  CHECK_OK(psl_access_token_check(a, token, strlen(token), &got));

  uint64_t g1 = psl_access_generation(a);
  CHECK_OK(psl_access_token_revoke(a, made.id));
  CHECK(psl_access_generation(a) != g1);
  CHECK_EQ(psl_access_token_check(a, token, strlen(token), &got), PSL_EUNAUTHORIZED);
  CHECK_EQ(got.revoked, 1); /* filled, so that a log can name the id */
  CHECK_STR(got.id, made.id);
  CHECK_EQ(psl_access_token_check_id(a, made.id, &got), PSL_EUNAUTHORIZED);
  psl_access_close(a);
  psl_access_close(NULL);
}

struct list_acc {
  int n, revoked, stop_after;
  char last_id[PSL_TOKEN_ID_LEN + 1];
  int ordered;
};

static int list_cb(void *arg, const psl_principal_t *p) {
  struct list_acc *acc = arg;
  if (acc->n > 0 && strcmp(acc->last_id, p->id) >= 0)
    acc->ordered = 0;
  snprintf(acc->last_id, sizeof acc->last_id, "%s", p->id);
  acc->n++;
  acc->revoked += p->revoked;
  return acc->stop_after && acc->n == acc->stop_after;
}

TEST(access, list_in_id_order) {
  psl_access_t *a = open_store();
  char token[PSL_TOKEN_LEN + 1];
  psl_principal_t p;
  for (int i = 0; i < 20; i++)
    make_token(a, i % 2 ? PSL_ROLE_AUDITOR : PSL_ROLE_CASEWORKER, i % 2 ? NULL : "75", token,
               &p);
  CHECK_OK(psl_access_token_revoke(a, p.id));
  struct list_acc acc = {0, 0, 0, "", 1};
  CHECK_OK(psl_access_token_list(a, list_cb, &acc));
  CHECK_EQ(acc.n, 20);
  CHECK_EQ(acc.revoked, 1);
  CHECK(acc.ordered);
  struct list_acc stop = {0, 0, 5, "", 1};
  CHECK_OK(psl_access_token_list(a, list_cb, &stop));
  CHECK_EQ(stop.n, 5);
  psl_access_close(a);
}

TEST(access, tokens_unique_and_long) {
  enum { N = 64 };
  static char tokens[N][PSL_TOKEN_LEN + 1];
  static char ids[N][PSL_TOKEN_ID_LEN + 1];
  psl_access_t *a = open_store();
  psl_principal_t p;
  for (int i = 0; i < N; i++) {
    unsigned char raw[64];
    make_token(a, PSL_ROLE_COORDINATOR, NULL, tokens[i], &p);
    snprintf(ids[i], sizeof ids[i], "%s", p.id);
    CHECK(token_raw(tokens[i], raw, sizeof raw) * 8 >= 128);
    CHECK_EQ(token_raw(tokens[i], raw, sizeof raw), 24);
    for (const char *c = tokens[i] + 4; *c; c++)
      CHECK((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
            (*c >= '0' && *c <= '9') || *c == '-' || *c == '_');
    for (int j = 0; j < i; j++) {
      CHECK(strcmp(tokens[i], tokens[j]) != 0);
      CHECK(strcmp(ids[i], ids[j]) != 0);
    }
  }
  psl_access_close(a);
}

TEST(access, store_never_holds_the_token) {
  enum { N = 8 };
  char tokens[N][PSL_TOKEN_LEN + 1];
  psl_access_t *a = open_store();
  psl_principal_t p;
  for (int i = 0; i < N; i++)
    make_token(a, PSL_ROLE_CASEWORKER, "93", tokens[i], &p);
  CHECK_OK(psl_access_token_revoke(a, tokens[0])); /* revoke by text: still never stored */
  for (int pass = 0; pass < 2; pass++) { /* while open, and after close */
    for (int i = 0; i < N; i++) {
      unsigned char raw[64];
      size_t n = token_raw(tokens[i], raw, sizeof raw);
      int nfiles = 0;
      CHECK_EQ(store_files_containing(tokens[i], PSL_TOKEN_LEN, &nfiles), 0);
      CHECK_EQ(store_files_containing(tokens[i] + 4, PSL_TOKEN_LEN - 4, &nfiles), 0);
      CHECK_EQ(store_files_containing(raw, n, &nfiles), 0);
      CHECK(nfiles >= 2); /* data.mdb and lock.mdb were scanned */
    }
    /* The scan does find what is stored: the device name. */
    int nfiles = 0;
    CHECK(store_files_containing("tablet-3", 8, &nfiles) >= 1);
    if (pass == 0)
      psl_access_close(a);
  }
}

TEST(access, revoke_by_id_and_by_token) {
  psl_access_t *a = open_store();
  char t1[PSL_TOKEN_LEN + 1], t2[PSL_TOKEN_LEN + 1], t3[PSL_TOKEN_LEN + 1];
  psl_principal_t p1, p2, p3;
  make_token(a, PSL_ROLE_CASEWORKER, "93", t1, &p1);
  make_token(a, PSL_ROLE_ADMIN, NULL, t2, &p2);
  make_token(a, PSL_ROLE_AUDITOR, NULL, t3, &p3);

  uint64_t g = psl_access_generation(a);
  CHECK_OK(psl_access_token_revoke(a, t1)); /* by the token text */
  CHECK(psl_access_generation(a) != g);
  CHECK_EQ(psl_access_token_check(a, t1, strlen(t1), NULL), PSL_EUNAUTHORIZED);
  CHECK_OK(psl_access_token_check(a, t2, strlen(t2), NULL));

  char upper[PSL_TOKEN_ID_LEN + 1];
  for (int i = 0; i <= PSL_TOKEN_ID_LEN; i++)
    upper[i] = (char)(p2.id[i] >= 'a' && p2.id[i] <= 'f' ? p2.id[i] - 32 : p2.id[i]);
  g = psl_access_generation(a);
  CHECK_OK(psl_access_token_revoke(a, upper)); /* by id, any case */
  CHECK(psl_access_generation(a) != g);
  CHECK_EQ(psl_access_token_check(a, t2, strlen(t2), NULL), PSL_EUNAUTHORIZED);

  /* Again: still 0, nothing changes. */
  g = psl_access_generation(a);
  CHECK_OK(psl_access_token_revoke(a, p2.id));
  CHECK_EQ(psl_access_generation(a), g);

  /* Unknown ids and tokens, and things that are neither. */
  CHECK_EQ(psl_access_token_revoke(a, "000000000000"), PSL_ENOTFOUND);
  CHECK_EQ(psl_access_token_revoke(a, "psl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), PSL_ENOTFOUND);
  CHECK_EQ(psl_access_token_revoke(a, "zzzzzzzzzzzz"), PSL_ENOTFOUND);
  CHECK_EQ(psl_access_token_revoke(a, ""), PSL_ENOTFOUND);
  CHECK_EQ(psl_access_token_revoke(a, NULL), PSL_ENOTFOUND);
  CHECK_EQ(psl_access_generation(a), g);
  CHECK_OK(psl_access_token_check(a, t3, strlen(t3), NULL));
  psl_access_close(a);
}

TEST(access, check_refuses_what_is_not_a_token) {
  psl_access_t *a = open_store();
  char t[PSL_TOKEN_LEN + 1], bad[PSL_TOKEN_LEN + 2];
  psl_principal_t p;
  make_token(a, PSL_ROLE_COORDINATOR, NULL, t, &p);

  CHECK_EQ(psl_access_token_check(a, t, strlen(t) - 1, &p), PSL_EUNAUTHORIZED);
  CHECK_EQ(p.role, PSL_ROLE_NONE);
  CHECK_EQ(psl_access_token_check(a, "", 0, &p), PSL_EUNAUTHORIZED);
  CHECK_EQ(psl_access_token_check(a, NULL, 0, &p), PSL_EUNAUTHORIZED);
  memcpy(bad, t, sizeof t);
  bad[10] = bad[10] == 'A' ? 'B' : 'A';
  CHECK_EQ(psl_access_token_check(a, bad, strlen(bad), &p), PSL_EUNAUTHORIZED);
  CHECK_EQ(p.name[0], '\0');
  memcpy(bad, t, sizeof t);
  bad[0] = 'x';
  CHECK_EQ(psl_access_token_check(a, bad, strlen(bad), &p), PSL_EUNAUTHORIZED);
  snprintf(bad, sizeof bad, "%sA", t);
  CHECK_EQ(psl_access_token_check(a, bad, strlen(bad), &p), PSL_EUNAUTHORIZED);
  CHECK_EQ(psl_access_token_check_id(a, "00000000000", &p), PSL_EUNAUTHORIZED);
  CHECK_EQ(psl_access_token_check_id(a, "000000000000", &p), PSL_EUNAUTHORIZED);
  CHECK_OK(psl_access_token_check(a, t, strlen(t), &p));
  psl_access_close(a);
}

TEST(access, create_validates) {
  psl_access_t *a = open_store();
  char t[PSL_TOKEN_LEN + 1], name[PSL_MAX_NAME + 2];
  psl_principal_t p;
  const char *t93[] = {"93"}, *t99[] = {"99"}, *tempty[] = {""}, *tnull[] = {NULL};
  const char *tmany[PSL_MAX_TOKEN_TERR + 1];
  for (size_t i = 0; i <= PSL_MAX_TOKEN_TERR; i++)
    tmany[i] = "93";

  CHECK_EQ(psl_access_token_create(a, PSL_ROLE_NONE, NULL, 0, "n", "d", t, &p), PSL_EINVALID);
  CHECK_EQ(psl_access_token_create(a, (psl_role_t)99, NULL, 0, "n", "d", t, &p), PSL_EINVALID);
  CHECK_EQ(psl_access_token_create(a, PSL_ROLE_CASEWORKER, NULL, 0, "n", "d", t, &p),
           PSL_EINVALID);
  CHECK_EQ(psl_access_token_create(a, PSL_ROLE_CASEWORKER, t99, 1, "n", "d", t, &p),
           PSL_EINVALID);
  CHECK_EQ(psl_access_token_create(a, PSL_ROLE_CASEWORKER, tempty, 1, "n", "d", t, &p),
           PSL_EINVALID);
  CHECK_EQ(psl_access_token_create(a, PSL_ROLE_CASEWORKER, tnull, 1, "n", "d", t, &p),
           PSL_EINVALID);
  CHECK_EQ(psl_access_token_create(a, PSL_ROLE_CASEWORKER, tmany, PSL_MAX_TOKEN_TERR + 1, "n",
                                   "d", t, &p),
           PSL_EINVALID);

  static const char *const bad_names[] = {
      "", " ", "   ", "tab\there", "new\nline", "del\x7f", "c1 \xc2\x85", "bad utf8 \xc3",
      "overlong \xc0\xaf", "surrogate \xed\xa0\x80", NULL,
  };
  for (const char *const *n = bad_names; *n; n++) {
    CHECK_EQ(psl_access_token_create(a, PSL_ROLE_CASEWORKER, t93, 1, *n, "d", t, &p),
             PSL_EINVALID);
    CHECK_EQ(psl_access_token_create(a, PSL_ROLE_CASEWORKER, t93, 1, "n", *n, t, &p),
             PSL_EINVALID);
  }
  CHECK_EQ(psl_access_token_create(a, PSL_ROLE_ADMIN, NULL, 0, NULL, "d", t, &p), PSL_EINVALID);
  memset(name, 'x', PSL_MAX_NAME + 1);
  name[PSL_MAX_NAME + 1] = '\0';
  CHECK_EQ(psl_access_token_create(a, PSL_ROLE_ADMIN, NULL, 0, name, "d", t, &p), PSL_EINVALID);

  /* Nothing was stored by the refusals. */
  struct list_acc acc = {0, 0, 0, "", 1};
  CHECK_OK(psl_access_token_list(a, list_cb, &acc));
  CHECK_EQ(acc.n, 0);

  /* The longest name, UTF-8, repeated territories folded, other roles' territories dropped. */
  name[PSL_MAX_NAME] = '\0';
  CHECK_OK(psl_access_token_create(a, PSL_ROLE_ADMIN, NULL, 0, name, "Téléphone de Zoë", t, &p));
  CHECK_OK(psl_access_token_check(a, t, strlen(t), &p));
  CHECK_STR(p.name, name);
  CHECK_STR(p.device, "Téléphone de Zoë");
  const char *dup[] = {"93", "77", "93"};
  CHECK_OK(psl_access_token_create(a, PSL_ROLE_CASEWORKER, dup, 3, "n", "d", t, &p));
  CHECK_EQ(p.nterr, 2);
  CHECK_STR(p.terr[1], "77");
  CHECK_OK(psl_access_token_create(a, PSL_ROLE_COORDINATOR, t93, 1, "n", "d", t, &p));
  CHECK_EQ(p.nterr, 0);
  psl_access_close(a);
}

TEST(access, roles_and_territories) {
  psl_role_t r = PSL_ROLE_NONE;
  static const char *const names[] = {"caseworker", "coordinator", "auditor", "admin"};
  for (int i = 0; i < 4; i++) {
    CHECK_OK(psl_role_parse(names[i], &r));
    CHECK_STR(psl_role_name(r), names[i]);
  }
  CHECK_EQ(psl_role_parse("Admin", &r), PSL_EINVALID);
  CHECK_EQ(psl_role_parse("none", &r), PSL_EINVALID);
  CHECK_EQ(psl_role_parse("", &r), PSL_EINVALID);
  CHECK_EQ(psl_role_parse(NULL, &r), PSL_EINVALID);
  CHECK_STR(psl_role_name((psl_role_t)42), "none");

  CHECK(psl_access_terr_is_known(psl_str("75")));
  CHECK(psl_access_terr_is_known(psl_str("94")));
  CHECK(!psl_access_terr_is_known(psl_str("9")));
  CHECK(!psl_access_terr_is_known(psl_str("930")));
  CHECK(!psl_access_terr_is_known(psl_str("")));

  psl_principal_t cw = {.role = PSL_ROLE_CASEWORKER, .nterr = 1, .terr = {"93"}};
  psl_principal_t au = {.role = PSL_ROLE_AUDITOR};
  const char *vis[8];
  CHECK_EQ(psl_access_visible_terr(&cw, vis, 8), 1);
  CHECK_STR(vis[0], "93");
  CHECK_EQ(psl_access_visible_terr(&au, vis, 8), 4);
  CHECK_EQ(psl_access_visible_terr(&au, vis, 2), 2);
  au.revoked = 1;
  CHECK_EQ(psl_access_visible_terr(&au, vis, 8), 0);
  CHECK_EQ(psl_access_visible_terr(NULL, vis, 8), 0);
}

/* ---- The authority matrix (PROTOCOL-v1 "Authority", DOMAIN.md participant.transferred).
 * The caseworker holds 93; "other" is 94.  For transfers, stream = the participant's
 * territory now, terr = the event's own (the new one). */

enum { CW, CW2, COORD, AUD, ADMIN, CW_REV, ADMIN_REV, NPRINC };

static void principals(psl_principal_t p[NPRINC]) {
  memset(p, 0, sizeof(psl_principal_t) * NPRINC);
  p[CW] = (psl_principal_t){.role = PSL_ROLE_CASEWORKER, .nterr = 1, .terr = {"93"}};
  p[CW2] = (psl_principal_t){.role = PSL_ROLE_CASEWORKER, .nterr = 2, .terr = {"93", "94"}};
  p[COORD] = (psl_principal_t){.role = PSL_ROLE_COORDINATOR};
  p[AUD] = (psl_principal_t){.role = PSL_ROLE_AUDITOR};
  p[ADMIN] = (psl_principal_t){.role = PSL_ROLE_ADMIN};
  p[CW_REV] = p[CW];
  p[CW_REV].revoked = 1;
  p[ADMIN_REV] = p[ADMIN];
  p[ADMIN_REV].revoked = 1;
  for (int i = 0; i < NPRINC; i++)
    snprintf(p[i].name, sizeof p[i].name, "Secret Person %d", i);
}

#define OK 0
#define NO PSL_EFORBIDDEN
#define NEW "" /* no stream yet */
#define T_NORMAL "interview.held"
#define T_ERASED "participant.erased"
#define T_TRANSF "participant.transferred"

static const struct push_case {
  int who;
  const char *type, *terr, *stream;
  int want;
} push_cases[] = {
    /* who        type      terr  stream  want       what */
    {CW,        T_NORMAL, "93", NEW,  OK}, /* own territory, new participant */
    {CW,        T_NORMAL, "93", "93", OK}, /* own territory, own participant */
    {CW,        T_NORMAL, "94", NEW,  NO}, /* other territory */
    {CW,        T_NORMAL, "94", "94", NO}, /* other territory's participant */
    {CW,        T_NORMAL, "93", "94", NO}, /* writing into another territory's participant */
    {CW,        T_NORMAL, "94", "93", NO}, /* event of another territory */
    {CW,        T_ERASED, "93", "93", NO}, /* erase: admin only */
    {CW,        T_ERASED, "94", "94", NO},
    {CW,        T_TRANSF, "94", "93", OK}, /* transfer from own to other */
    {CW,        T_TRANSF, "93", "93", OK}, /* transfer within own (new site) */
    {CW,        T_TRANSF, "93", "94", NO}, /* transfer from other to own: pulling is refused */
    {CW,        T_TRANSF, "75", "94", NO}, /* transfer between two others */
    {CW2,       T_TRANSF, "93", "94", OK}, /* from other to own when both are theirs */
    {CW2,       T_NORMAL, "94", "94", OK},
    {CW2,       T_ERASED, "93", "93", NO},
    {COORD,     T_NORMAL, "93", NEW,  OK},
    {COORD,     T_NORMAL, "94", "94", OK},
    {COORD,     T_NORMAL, "93", "94", OK},
    {COORD,     T_ERASED, "93", "93", NO},
    {COORD,     T_ERASED, "94", "94", NO},
    {COORD,     T_TRANSF, "94", "93", OK},
    {COORD,     T_TRANSF, "93", "94", OK},
    {AUD,       T_NORMAL, "93", NEW,  NO}, /* an auditor only reads */
    {AUD,       T_NORMAL, "94", "94", NO},
    {AUD,       T_ERASED, "93", "93", NO},
    {AUD,       T_TRANSF, "94", "93", NO},
    {AUD,       T_TRANSF, "93", "94", NO},
    {ADMIN,     T_NORMAL, "93", NEW,  OK},
    {ADMIN,     T_NORMAL, "94", "94", OK},
    {ADMIN,     T_ERASED, "93", "93", OK}, /* the one role that erases */
    {ADMIN,     T_ERASED, "94", "94", OK},
    {ADMIN,     T_TRANSF, "94", "93", OK},
    {ADMIN,     T_TRANSF, "93", "94", OK},
    {CW_REV,    T_NORMAL, "93", "93", NO}, /* revoked: nothing */
    {CW_REV,    T_TRANSF, "94", "93", NO},
    {ADMIN_REV, T_NORMAL, "93", "93", NO},
    {ADMIN_REV, T_ERASED, "93", "93", NO},
};

static const struct read_case {
  int who;
  const char *terr;
  int want;
} read_cases[] = {
    {CW, "93", OK},        {CW, "94", NO},        {CW, "", NO},          {CW, "9", NO},
    {CW, "930", NO},       {CW2, "94", OK},       {CW2, "75", NO},       {COORD, "93", OK},
    {COORD, "94", OK},     {AUD, "93", OK},       {AUD, "94", OK},       {ADMIN, "93", OK},
    {ADMIN, "77", OK},     {CW_REV, "93", NO},    {ADMIN_REV, "93", NO},
};

TEST(access, authority_matrix) {
  psl_principal_t p[NPRINC];
  principals(p);
  for (size_t i = 0; i < sizeof push_cases / sizeof push_cases[0]; i++) {
    const struct push_case *c = &push_cases[i];
    psl_event_t ev;
    const char *why = "unset";
    memset(&ev, 0, sizeof ev);
    ev.type = psl_str(c->type);
    ev.terr = psl_str(c->terr);
    int rc = psl_access_may_push(&p[c->who], &ev, psl_str(c->stream), &why);
    if (rc != c->want)
      psl_test_fail(__FILE__, __LINE__, "push case %zu (%s %s terr %s stream %s): %d != %d", i,
                    psl_role_name(p[c->who].role), c->type, c->terr, c->stream, rc, c->want);
    if (rc == OK) {
      CHECK(why == NULL);
    } else {
      CHECK(why != NULL && why[0] != '\0');
      CHECK(strstr(why, "Secret") == NULL);
    }
    CHECK_EQ(psl_access_may_push(&p[c->who], &ev, psl_str(c->stream), NULL), c->want);
  }
  for (size_t i = 0; i < sizeof read_cases / sizeof read_cases[0]; i++) {
    const struct read_case *c = &read_cases[i];
    int rc = psl_access_may_read(&p[c->who], psl_str(c->terr));
    if (rc != c->want)
      psl_test_fail(__FILE__, __LINE__, "read case %zu (%s terr %s): %d != %d", i,
                    psl_role_name(p[c->who].role), c->terr, rc, c->want);
  }
  psl_event_t ev;
  memset(&ev, 0, sizeof ev);
  ev.type = psl_str(T_NORMAL);
  ev.terr = psl_str("93");
  CHECK_EQ(psl_access_may_push(NULL, &ev, psl_str(""), NULL), NO);
  CHECK_EQ(psl_access_may_push(&p[ADMIN], NULL, psl_str(""), NULL), NO);
  CHECK_EQ(psl_access_may_read(NULL, psl_str("93")), NO);
}

/* ---- passerelle-admin, end to end. */

TEST(access, cli_end_to_end) {
  const char *dir = psl_test_tmpdir();
  cli_run_t r;
  char t1[64], t2[64], line[1024];
  psl_principal_t p1, p2;

  const char *create1[] = {"--data", dir, "token", "create", "--role", "caseworker",
                           "--terr", "93", "--terr", "94", "--name", "Amélie Durand",
                           "--device", "tablet 3", NULL};
  cli(&r, NULL, create1);
  CHECK_EQ(r.status, 0);
  CHECK_STR(r.err, "");
  CHECK_EQ(strlen(r.out), PSL_TOKEN_LEN + 1); /* one line: the token alone */
  CHECK_EQ(r.out[PSL_TOKEN_LEN], '\n');
  snprintf(t1, sizeof t1, "%.*s", PSL_TOKEN_LEN, r.out);

  /* --data=DIR after the subcommand, a comma list; PASSERELLE_DATA when --data is absent. */
  const char *create2[] = {"token", "create", "--role=coordinator", "--name", "Coordination",
                           "--device=laptop", NULL};
  cli(&r, dir, create2);
  CHECK_EQ(r.status, 0);
  CHECK_EQ(count_lines(r.out), 1);
  snprintf(t2, sizeof t2, "%.*s", PSL_TOKEN_LEN, r.out);
  const char *create3[] = {"token", "create", "--role", "caseworker", "--terr", "75,77",
                           "--name", "N", "--device", "D", "--data=", NULL};
  cli(&r, dir, create3); /* an empty --data falls back to the environment */
  CHECK_EQ(r.status, 0);

  psl_access_t *a = open_store();
  CHECK_OK(psl_access_token_check(a, t1, strlen(t1), &p1));
  CHECK_EQ(p1.role, PSL_ROLE_CASEWORKER);
  CHECK_EQ(p1.nterr, 2);
  CHECK_STR(p1.name, "Amélie Durand");
  CHECK_STR(p1.device, "tablet 3");
  CHECK_OK(psl_access_token_check(a, t2, strlen(t2), &p2));
  CHECK_EQ(p2.role, PSL_ROLE_COORDINATOR);
  psl_access_close(a);

  const char *list[] = {"--data", dir, "token", "list", NULL};
  cli(&r, NULL, list);
  CHECK_EQ(r.status, 0);
  CHECK_EQ(count_lines(r.out), 3);
  CHECK(strstr(r.out, t1) == NULL && strstr(r.out, t2) == NULL);
  CHECK(strstr(r.out, t1 + 4) == NULL && strstr(r.out, t2 + 4) == NULL);
  CHECK(list_line(r.out, p1.id, line, sizeof line));
  static const char want1[] = "\tcaseworker\t93,94\tAmélie Durand\ttablet 3\t20";
  CHECK(strncmp(strchr(line, '\t'), want1, strlen(want1)) == 0);
  CHECK(strstr(line, "\tactive") != NULL);
  CHECK(list_line(r.out, p2.id, line, sizeof line));
  CHECK(strstr(line, "\tcoordinator\t*\tCoordination\tlaptop\t") != NULL);
  CHECK(strstr(r.out, "\t75,77\t") != NULL);

  /* Revoke by id, then by the token text. */
  const char *revoke1[] = {"--data", dir, "token", "revoke", p1.id, NULL};
  cli(&r, NULL, revoke1);
  CHECK_EQ(r.status, 0);
  snprintf(line, sizeof line, "revoked %s\n", p1.id);
  CHECK_STR(r.out, line);
  const char *revoke2[] = {"--data", dir, "token", "revoke", t2, NULL};
  cli(&r, NULL, revoke2);
  CHECK_EQ(r.status, 0);
  snprintf(line, sizeof line, "revoked %s\n", p2.id);
  CHECK_STR(r.out, line);
  CHECK(strstr(r.out, t2) == NULL && strstr(r.err, t2) == NULL);

  cli(&r, NULL, list);
  CHECK(list_line(r.out, p1.id, line, sizeof line));
  CHECK(strstr(line, "\trevoked") != NULL);
  CHECK(list_line(r.out, p2.id, line, sizeof line));
  CHECK(strstr(line, "\trevoked") != NULL);

  a = open_store();
  CHECK_EQ(psl_access_token_check(a, t1, strlen(t1), NULL), PSL_EUNAUTHORIZED);
  CHECK_EQ(psl_access_token_check(a, t2, strlen(t2), NULL), PSL_EUNAUTHORIZED);
  psl_access_close(a);

  /* An unknown id fails (1), without echoing a token. */
  const char *revoke3[] = {"--data", dir, "token", "revoke", "abcdefabcdef", NULL};
  cli(&r, NULL, revoke3);
  CHECK_EQ(r.status, 1);
  CHECK(r.err[0] != '\0');
  CHECK_STR(r.out, "");
  const char *revoke4[] = {"--data", dir, "token", "revoke",
                           "psl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL};
  cli(&r, NULL, revoke4);
  CHECK_EQ(r.status, 1);
  CHECK(strstr(r.err, "AAAAAAAA") == NULL);
}

TEST(access, cli_bad_usage_exits_2) {
  const char *dir = psl_test_tmpdir();
  static const char *const cases[][16] = {
      {NULL},
      {"--data", NULL},
      {"--data", "D", NULL},
      {"--data", "D", "tokens", "list", NULL},
      {"--data", "D", "token", NULL},
      {"--data", "D", "token", "frob", NULL},
      {"--data", "D", "token", "list", "extra", NULL},
      {"--data", "D", "token", "list", "--verbose", NULL},
      {"--data", "D", "token", "list", "--role", "admin", NULL},
      {"--data", "D", "token", "revoke", "abcdefabcdef", "--name", "n", NULL},
      {"--data", "D", "token", "revoke", NULL},
      {"--data", "D", "token", "revoke", "a", "b", NULL},
      {"--data", "D", "token", "create", "--name", "n", "--device", "d", NULL},
      {"--data", "D", "token", "create", "--role", "boss", "--name", "n", "--device", "d", NULL},
      {"--data", "D", "token", "create", "--role", "caseworker", "--name", "n", "--device", "d",
       NULL},
      {"--data", "D", "token", "create", "--role", "caseworker", "--terr", "99", "--name", "n",
       "--device", "d", NULL},
      {"--data", "D", "token", "create", "--role", "caseworker", "--terr", "93,", "--name", "n",
       "--device", "d", NULL},
      {"--data", "D", "token", "create", "--role", "admin", "--name", "n", NULL},
      {"--data", "D", "token", "create", "--role", "admin", "--name", "n", "--device", NULL},
      {"--data", "D", "token", "create", "--role", "admin", "--name", "n", "--name", "m",
       "--device", "d", NULL},
      {"--data", "D", "token", "create", "--role", "admin", "--name", "Jo\nSecret-Name",
       "--device", "d", NULL},
      {"--data", "D", "token", "create", "--role", "admin", "--name", "", "--device", "d",
       NULL},
      {"token", "list", NULL}, /* no --data, no PASSERELLE_DATA */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *args[16];
    cli_run_t r;
    for (int j = 0; j < 16; j++)
      args[j] = cases[i][j] && strcmp(cases[i][j], "D") == 0 ? dir : cases[i][j];
    cli(&r, NULL, args);
    if (r.status != 2)
      psl_test_fail(__FILE__, __LINE__, "usage case %zu: exit %d, want 2", i, r.status);
    CHECK_STR(r.out, "");
    CHECK(strstr(r.err, "usage:") != NULL);
    CHECK(strstr(r.err, "Secret-Name") == NULL); /* a name is never echoed */
  }
  /* Nothing was created by any of them. */
  psl_access_t *a = open_store();
  struct list_acc acc = {0, 0, 0, "", 1};
  CHECK_OK(psl_access_token_list(a, list_cb, &acc));
  CHECK_EQ(acc.n, 0);
  psl_access_close(a);

  const char *help[] = {"--help", NULL};
  cli_run_t r;
  cli(&r, NULL, help);
  CHECK_EQ(r.status, 0);
  CHECK(strstr(r.out, "token create") != NULL);
}

/* Two processes: the test holds the store open (as the server does) while the CLI writes. */
TEST(access, cli_revokes_while_the_store_is_open) {
  const char *dir = psl_test_tmpdir();
  psl_access_t *a = open_store();
  char token[64];
  psl_principal_t p;
  cli_run_t r;

  uint64_t g0 = psl_access_generation(a);
  const char *create[] = {"--data", dir, "token", "create", "--role", "caseworker", "--terr",
                          "93", "--name", "Amélie Durand", "--device", "tablet-3", NULL};
  cli(&r, NULL, create);
  CHECK_EQ(r.status, 0);
  snprintf(token, sizeof token, "%.*s", PSL_TOKEN_LEN, r.out);
  uint64_t g1 = psl_access_generation(a);
  CHECK(g1 != g0);
  CHECK_OK(psl_access_token_check(a, token, strlen(token), &p));

  const char *revoke[] = {"--data", dir, "token", "revoke", p.id, NULL};
  cli(&r, NULL, revoke);
  CHECK_EQ(r.status, 0);
  CHECK(psl_access_generation(a) != g1);
  CHECK_EQ(psl_access_token_check(a, token, strlen(token), NULL), PSL_EUNAUTHORIZED);
  CHECK_EQ(psl_access_token_check_id(a, p.id, NULL), PSL_EUNAUTHORIZED);
  psl_access_close(a);
}

/* Another process grows the file past this process's map: reads and writes adopt the new
 * size (MDB_MAP_RESIZED) instead of failing. */
TEST(access, adopts_a_map_grown_by_another_process) {
  enum { FILL = 80 << 20 }; /* past ACCESS_MAP_INITIAL (64 MiB) */
  psl_access_t *a = open_store();
  char token[PSL_TOKEN_LEN + 1], path[PATH_MAX];
  psl_principal_t p;
  make_token(a, PSL_ROLE_AUDITOR, NULL, token, &p);
  uint64_t g = psl_access_generation(a);

  snprintf(path, sizeof path, "%s/access", psl_test_tmpdir());
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) { /* a plain LMDB user with a bigger map writes one large value */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {4, "fill"}, v = {FILL, NULL};
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 4) ||
        mdb_env_set_mapsize(env, (size_t)256 << 20) || mdb_env_open(env, path, MDB_NOTLS, 0600) ||
        mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, "fill", MDB_CREATE, &dbi) ||
        mdb_put(txn, dbi, &k, &v, MDB_RESERVE))
      _exit(1);
    memset(v.mv_data, 0x5a, FILL);
    _exit(mdb_txn_commit(txn) ? 1 : 0);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  CHECK_OK(psl_access_token_check(a, token, strlen(token), NULL));
  CHECK_EQ(psl_access_generation(a), g);
  make_token(a, PSL_ROLE_ADMIN, NULL, token, &p);
  CHECK_OK(psl_access_token_check(a, token, strlen(token), NULL));
  CHECK(psl_access_generation(a) != g);
  psl_access_close(a);
}

/* Threads share one handle (MDB_NOTLS): readers check while a writer creates and revokes. */
struct reader_arg {
  psl_access_t *a;
  const char *token;
  int failures;
};

static void *reader_main(void *arg) {
  struct reader_arg *r = arg;
  for (int i = 0; i < 2000; i++) {
    psl_principal_t p;
    if (psl_access_token_check(r->a, r->token, strlen(r->token), &p) != 0 ||
        p.role != PSL_ROLE_COORDINATOR)
      r->failures++;
    psl_access_generation(r->a);
  }
  return NULL;
}

TEST(access, threads_share_one_store) {
  enum { NTHREADS = 4 };
  psl_access_t *a = open_store();
  char keep[PSL_TOKEN_LEN + 1], t[PSL_TOKEN_LEN + 1];
  psl_principal_t p;
  pthread_t th[NTHREADS];
  struct reader_arg args[NTHREADS];
  make_token(a, PSL_ROLE_COORDINATOR, NULL, keep, &p);
  for (int i = 0; i < NTHREADS; i++) {
    args[i] = (struct reader_arg){a, keep, 0};
    CHECK_OK(pthread_create(&th[i], NULL, reader_main, &args[i]));
  }
  for (int i = 0; i < 20; i++) {
    make_token(a, PSL_ROLE_CASEWORKER, "77", t, &p);
    CHECK_OK(psl_access_token_revoke(a, p.id));
  }
  for (int i = 0; i < NTHREADS; i++) {
    CHECK_OK(pthread_join(th[i], NULL));
    CHECK_EQ(args[i].failures, 0);
  }
  psl_access_close(a);
}
