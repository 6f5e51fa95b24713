/*
 * passerelle-admin — manage the tokens of a data folder, while the server runs or not
 * (PROTOCOL-v1, "Command line the tests rely on").
 *
 *   passerelle-admin --data DIR token create --role ROLE [--terr 93 ...] --name NAME
 *                                            --device DEVICE
 *       prints the new token alone on one line of stdout: the only copy there will ever be.
 *   passerelle-admin --data DIR token list
 *       one line per token, fields separated by a tab (names may hold spaces, never a tab):
 *       id, role, territories (comma-separated, * for every one), name, device,
 *       created (ISO 8601, UTC), and "active" or "revoked".  Never the token.
 *   passerelle-admin --data DIR token revoke ID|TOKEN
 *       prints "revoked ID".  Open connections of that token close within a second.
 *
 * --data may also follow the subcommand; without it, $PASSERELLE_DATA.  Options take their
 * value as the next argument or after '='.  --terr may repeat and takes comma lists.
 * Exit status: 0 done, 1 failed (message on stderr), 2 bad usage (usage text on stderr).
 * Nothing here ever prints a name or device in an error: they are staff's personal data.
 */
#include "psl_access.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG "passerelle-admin"
#define EXIT_USAGE 2
/* Territory arguments kept before validation: the store takes PSL_MAX_TOKEN_TERR. */
#define CLI_MAX_TERR PSL_MAX_TOKEN_TERR
/* Longest argument echoed in a message (an option's name, a territory): ours are shorter. */
#define CLI_ECHO_MAX 32

static const char usage_text[] =
    "usage:\n"
    "  " PROG " --data DIR token create --role ROLE [--terr T ...] --name NAME --device DEVICE\n"
    "  " PROG " --data DIR token list\n"
    "  " PROG " --data DIR token revoke ID|TOKEN\n"
    "\n"
    "  ROLE  caseworker, coordinator, auditor or admin\n"
    "  T     75, 77, 93 or 94; repeat --terr or list them (--terr 93,94); caseworkers only,\n"
    "        and they need at least one\n"
    "  DIR   the server's data folder; $PASSERELLE_DATA when --data is absent\n";

typedef struct {
  const char *data;
  const char *role, *name, *device;
  char terr_buf[CLI_MAX_TERR][PSL_MAX_TERR + 1];
  const char *terr[CLI_MAX_TERR];
  size_t nterr;
  const char *target; /* revoke's ID or TOKEN */
} cli_args_t;

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, PROG ": ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n%s", usage_text);
  return EXIT_USAGE;
}

static int fail(const char *what, int err) {
  fprintf(stderr, PROG ": %s: %s\n", what, psl_strerror(err));
  return 1;
}

/* The option of an argument, without a value after '=' (which may be a name): for messages. */
static const char *opt_only(const char *a, char buf[CLI_ECHO_MAX + 1]) {
  snprintf(buf, CLI_ECHO_MAX + 1, "%.*s", (int)strcspn(a, "="), a);
  return buf;
}

/* Match argv[*i] against --name, taking its value from "=value" or the next argument.
 * 1 matched (value set, *i advanced past it), 0 not this option, -1 value missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **value) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0)
    return 0;
  if (a[n] == '=') {
    *value = a + n + 1;
    return 1;
  }
  if (a[n] != '\0')
    return 0;
  if (*i + 1 >= argc)
    return -1;
  *value = argv[++*i];
  return 1;
}

/* "93" or "93,94": split into args->terr, checking each code. */
static int add_terr(cli_args_t *args, const char *list) {
  const char *p = list;
  for (;;) {
    size_t n = strcspn(p, ",");
    if (n == 0 || n > PSL_MAX_TERR)
      return usage("--terr: bad territory list '%.16s'", list);
    if (args->nterr == CLI_MAX_TERR)
      return usage("--terr: too many territories");
    memcpy(args->terr_buf[args->nterr], p, n);
    args->terr_buf[args->nterr][n] = '\0';
    if (!psl_access_terr_is_known(psl_str(args->terr_buf[args->nterr])))
      return usage("--terr: unknown territory '%s' (known: 75, 77, 93, 94)",
                   args->terr_buf[args->nterr]);
    args->terr[args->nterr] = args->terr_buf[args->nterr];
    args->nterr++;
    if (p[n] == '\0')
      return 0;
    p += n + 1;
  }
}

/* Parse the options after `token SUB`; positional arguments go to args->target (one at most,
 * and only when allow_target). */
static int parse_sub(int argc, char **argv, int i, cli_args_t *args, int allow_target) {
  for (; i < argc; i++) {
    const char *v = NULL, *a = argv[i];
    const char **slot = NULL;
    char opt[CLI_ECHO_MAX + 1];
    int m;
    if ((m = opt_value(argc, argv, &i, "--data", &v)) != 0)
      slot = &args->data;
    else if ((m = opt_value(argc, argv, &i, "--role", &v)) != 0)
      slot = &args->role;
    else if ((m = opt_value(argc, argv, &i, "--name", &v)) != 0)
      slot = &args->name;
    else if ((m = opt_value(argc, argv, &i, "--device", &v)) != 0)
      slot = &args->device;
    else if ((m = opt_value(argc, argv, &i, "--terr", &v)) != 0) {
      if (m < 0)
        return usage("--terr needs a value");
      int rc = add_terr(args, v);
      if (rc)
        return rc;
      continue;
    } else if (a[0] == '-' && a[1] == '-') {
      return usage("unknown option '%s'", opt_only(a, opt));
    } else if (allow_target && !args->target) {
      args->target = a;
      continue;
    } else {
      return usage("unexpected argument");
    }
    if (m < 0)
      return usage("%s needs a value", opt_only(a, opt));
    if (*slot && slot != &args->data)
      return usage("%s given twice", opt_only(a, opt));
    *slot = v;
  }
  return 0;
}

static int open_store(cli_args_t *args, psl_access_t **a) {
  if (!args->data || !*args->data)
    args->data = getenv("PASSERELLE_DATA");
  if (!args->data || !*args->data)
    return usage("no data folder: give --data DIR or set PASSERELLE_DATA");
  int rc = psl_access_open(a, args->data);
  if (rc)
    return fail("cannot open the token store", rc);
  return 0;
}

static int finish_stdout(void) {
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, PROG ": cannot write to stdout\n");
    return 1;
  }
  return 0;
}

static int cmd_create(cli_args_t *args) {
  psl_access_t *a = NULL;
  psl_role_t role;
  char token[PSL_TOKEN_LEN + 1];
  int rc;

  if (!args->role || !args->name || !args->device)
    return usage("token create needs --role, --name and --device");
  if (psl_role_parse(args->role, &role) != 0)
    return usage("--role: unknown role '%.32s'", args->role);
  if (role == PSL_ROLE_CASEWORKER && args->nterr == 0)
    return usage("--role caseworker needs at least one --terr");
  if (!psl_access_name_is_valid(args->name))
    return usage("--name must be 1 to 128 bytes of printable UTF-8");
  if (!psl_access_name_is_valid(args->device))
    return usage("--device must be 1 to 128 bytes of printable UTF-8");
  if (role != PSL_ROLE_CASEWORKER && args->nterr > 0)
    fprintf(stderr, PROG ": note: --terr ignored: role %s sees every territory\n",
            psl_role_name(role));
  if ((rc = open_store(args, &a)) != 0)
    return rc;
  rc = psl_access_token_create(a, role, args->terr, args->nterr, args->name, args->device,
                               token, NULL);
  psl_access_close(a);
  if (rc)
    return fail("cannot create the token", rc);
  printf("%s\n", token);
  memset(token, 0, sizeof token);
  return finish_stdout();
}

static int print_token(void *arg, const psl_principal_t *p) {
  char created[32] = "?";
  time_t t = (time_t)(p->created_ms / 1000);
  struct tm tm;
  (void)arg;
  if (gmtime_r(&t, &tm))
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
  printf("%s\t%s\t", p->id, psl_role_name(p->role));
  if (p->role != PSL_ROLE_CASEWORKER)
    fputs("*", stdout);
  for (size_t i = 0; i < p->nterr; i++)
    printf("%s%s", i ? "," : "", p->terr[i]);
  printf("\t%s\t%s\t%s\t%s\n", p->name, p->device, created, p->revoked ? "revoked" : "active");
  return 0;
}

static int cmd_list(cli_args_t *args) {
  psl_access_t *a = NULL;
  int rc = open_store(args, &a);
  if (rc)
    return rc;
  rc = psl_access_token_list(a, print_token, NULL);
  psl_access_close(a);
  if (rc)
    return fail("cannot list the tokens", rc);
  return finish_stdout();
}

static int cmd_revoke(cli_args_t *args) {
  psl_access_t *a = NULL;
  char id[PSL_TOKEN_ID_LEN + 1];
  size_t len;
  int rc;

  if (!args->target)
    return usage("token revoke needs an ID or a TOKEN");
  if ((rc = open_store(args, &a)) != 0)
    return rc;
  rc = psl_access_token_revoke(a, args->target);
  psl_access_close(a);
  /* Name the id in the answer, also when given the token (which is never echoed). */
  len = strlen(args->target);
  if (len == PSL_TOKEN_ID_LEN) {
    for (size_t k = 0; k <= len; k++)
      id[k] = (char)(args->target[k] >= 'A' && args->target[k] <= 'F' ? args->target[k] + 32
                                                                       : args->target[k]);
  } else {
    psl_access_token_id(args->target, len, id);
  }
  if (rc == PSL_ENOTFOUND) {
    fprintf(stderr, PROG ": token revoke: no token matches\n");
    return 1;
  }
  if (rc)
    return fail("cannot revoke the token", rc);
  printf("revoked %s\n", id);
  return finish_stdout();
}

int main(int argc, char **argv) {
  cli_args_t args;
  int i = 1;

  memset(&args, 0, sizeof args);
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    const char *v = NULL;
    int m = opt_value(argc, argv, &i, "--data", &v);
    if (m > 0) {
      args.data = v;
    } else if (m < 0) {
      return usage("--data needs a value");
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage_text, stdout);
      return finish_stdout();
    } else {
      char opt[CLI_ECHO_MAX + 1];
      return usage("unknown option '%s'", opt_only(argv[i], opt));
    }
  }
  if (i >= argc)
    return usage("no command");
  if (strcmp(argv[i], "token") != 0)
    return usage("unknown command '%.32s'", argv[i]);
  if (++i >= argc)
    return usage("token: create, list or revoke?");
  const char *sub = argv[i++];
  if (strcmp(sub, "create") == 0) {
    int rc = parse_sub(argc, argv, i, &args, 0);
    return rc ? rc : cmd_create(&args);
  }
  if (strcmp(sub, "list") == 0 || strcmp(sub, "revoke") == 0) {
    int rc = parse_sub(argc, argv, i, &args, sub[0] == 'r');
    if (rc)
      return rc;
    if (args.role || args.name || args.device || args.nterr)
      return usage("only token create takes --role, --terr, --name and --device");
    return sub[0] == 'r' ? cmd_revoke(&args) : cmd_list(&args);
  }
  return usage("token: unknown subcommand '%.32s'", sub);
}
