/*
 * main.c — the passerelled command line (PROTOCOL-v1, "Command line the tests rely on"):
 *
 *   passerelled --data DIR --listen HOST:PORT [--tls-cert F --tls-key F]
 *               [--token-max-conns N] [--token-rate MSGS_PER_S]
 *               [--log-level error|warn|info|debug]
 *
 * The master key of personal data comes from PASSERELLE_MASTER_KEY (64 hex characters) or
 * DIR/master.key (made 0600 at the first start; refused if group or others may read it).
 *
 * HOST is an IPv4 address, a bracketed IPv6 address ([::1]:8420), a name resolved once at
 * start (localhost), or * / 0.0.0.0 for every interface.  PORT 0 picks a free port (the start
 * line says which).  Exit status: 0 after a graceful stop, 1 on a second signal, 2 on a usage
 * error, 3 when the server could not start.
 */
#include <netdb.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "psl_say.h"
#include "psl_server.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: passerelled --data DIR --listen HOST:PORT [--tls-cert FILE --tls-key FILE]\n"
          "                   [--token-max-conns N] [--token-rate MSGS_PER_S]\n"
          "                   [--log-level error|warn|info|debug]\n");
}

/* Split HOST:PORT into host (numeric, resolved) and port.  0, or -1 with a message. */
static int parse_listen(const char *arg, char *host, size_t hostcap, int *port) {
  const char *colon = strrchr(arg, ':');
  if (!colon || colon[1] == '\0') {
    fprintf(stderr, "passerelled: --listen wants HOST:PORT, got \"%s\"\n", arg);
    return -1;
  }
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end != '\0' || p < 0 || p > 65535) {
    fprintf(stderr, "passerelled: --listen: bad port \"%s\"\n", colon + 1);
    return -1;
  }
  *port = (int)p;
  const char *h = arg;
  size_t hl = (size_t)(colon - arg);
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  char name[256];
  if (hl >= sizeof name) {
    fprintf(stderr, "passerelled: --listen: host too long\n");
    return -1;
  }
  memcpy(name, h, hl);
  name[hl] = '\0';
  if (hl == 0 || strcmp(name, "*") == 0 || strcmp(name, "0.0.0.0") == 0) {
    host[0] = '\0'; /* every interface */
    return 0;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int rc = getaddrinfo(name, NULL, &hints, &res);
  if (rc != 0 || !res) {
    fprintf(stderr, "passerelled: --listen: cannot resolve \"%s\": %s\n", name,
            gai_strerror(rc));
    return -1;
  }
  /* Prefer IPv4 when a name has both (localhost): the common loopback case. */
  struct addrinfo *pick = res;
  for (struct addrinfo *a = res; a; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  rc = getnameinfo(pick->ai_addr, pick->ai_addrlen, host, (socklen_t)hostcap, NULL, 0,
                   NI_NUMERICHOST);
  freeaddrinfo(res);
  if (rc != 0) {
    fprintf(stderr, "passerelled: --listen: %s\n", gai_strerror(rc));
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  psl_server_opts_t opts;
  memset(&opts, 0, sizeof opts);
  const char *listen = NULL;
  char host[NI_MAXHOST];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "passerelled: %s needs a value\n", a);
      usage(stderr);
      return 2;
    }
    const char *v = argv[++i];
    if (strcmp(a, "--data") == 0) {
      opts.data_dir = v;
    } else if (strcmp(a, "--listen") == 0) {
      listen = v;
    } else if (strcmp(a, "--tls-cert") == 0) {
      opts.tls_cert = v;
    } else if (strcmp(a, "--tls-key") == 0) {
      opts.tls_key = v;
    } else if (strcmp(a, "--map-max") == 0) {
      /* Hidden (not in usage): caps the log's map so that tests reach "map full" quickly. */
      char *end;
      unsigned long long max = strtoull(v, &end, 10);
      if (*end != '\0' || max == 0 || max > SIZE_MAX) {
        fprintf(stderr, "passerelled: --map-max: a size in bytes\n");
        return 2;
      }
      opts.map_size_max = (size_t)max;
    } else if (strcmp(a, "--token-max-conns") == 0 || strcmp(a, "--token-rate") == 0) {
      char *end;
      unsigned long long n = strtoull(v, &end, 10);
      if (*end != '\0' || *v == '\0' || n > 100000000ull) {
        fprintf(stderr, "passerelled: %s: a number (0: no limit)\n", a);
        return 2;
      }
      if (a[8] == 'm') /* --token-max-conns */
        opts.token_max_conns = n ? (size_t)n : SIZE_MAX;
      else
        opts.token_rate = n ? (double)n : -1.0;
    } else if (strcmp(a, "--log-level") == 0) {
      psl_say_level_t level;
      if (psl_say_level_parse(v, &level) != 0) {
        fprintf(stderr, "passerelled: --log-level: error, warn, info or debug\n");
        return 2;
      }
      psl_say_set_level(level);
    } else {
      fprintf(stderr, "passerelled: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!opts.data_dir || !listen) {
    usage(stderr);
    return 2;
  }
  if (!opts.tls_cert != !opts.tls_key) {
    fprintf(stderr, "passerelled: --tls-cert and --tls-key go together\n");
    return 2;
  }
  if (parse_listen(listen, host, sizeof host, &opts.port) != 0)
    return 2;
  opts.host = host;
  /* A peer that vanishes mid-write must cost an EPIPE, not the process. */
  signal(SIGPIPE, SIG_IGN);
  return psl_server_run(&opts) == 0 ? 0 : 3;
}
