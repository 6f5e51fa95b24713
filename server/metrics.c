/*
 * metrics.c — the server's counters as Prometheus text (exposition format 0.0.4):
 *
 *   # HELP passerelle_connections Open WebSocket connections.
 *   # TYPE passerelle_connections gauge
 *   passerelle_connections 12
 *   ...
 *   passerelle_push_latency_seconds_bucket{le="0.001"} 840
 *   passerelle_push_latency_seconds_bucket{le="+Inf"} 1000
 *   passerelle_push_latency_seconds_sum 0.61
 *   passerelle_push_latency_seconds_count 1000
 *
 * No label carries anything but a fixed code: never a token, a name or a stream.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

const double psl_metrics_latency_le[PSL_METRICS_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0};

/* The protocol codes of PROTOCOL-v1 (and not_found, for HTTP), in errors_total's order. */
static const char *const metrics_codes[PSL_METRICS_ERROR_CODES] = {
    "invalid",      "unauthorized", "forbidden",   "conflict", "too_big",
    "rate_limited", "reset",        "unavailable", "internal", "not_found"};

void psl_metrics_push_latency(psl_metrics_t *m, double seconds) {
  if (seconds < 0)
    seconds = 0;
  m->latency_count++;
  m->latency_sum += seconds;
  for (int i = 0; i < PSL_METRICS_LATENCY_BUCKETS; i++) {
    if (seconds <= psl_metrics_latency_le[i]) {
      m->latency_bucket[i]++;
      return;
    }
  }
  /* above the last bound: counted only in +Inf (latency_count) */
}

void psl_metrics_error(psl_metrics_t *m, int err) {
  const char *code = psl_err_code(err);
  for (int i = 0; i < PSL_METRICS_ERROR_CODES; i++) {
    if (strcmp(code, metrics_codes[i]) == 0) {
      m->errors_total[i]++;
      return;
    }
  }
  m->errors_total[8]++; /* "internal" */
}

/* Append printf-style text; a line here is a metric name and a number, well under 256. */
static int metrics_printf(psl_buf_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int metrics_printf(psl_buf_t *out, const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line)
    return PSL_EINTERNAL;
  return psl_buf_append(out, line, (size_t)n);
}

static int metrics_one(psl_buf_t *out, const char *name, const char *type, const char *help,
                       uint64_t value) {
  return metrics_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type,
                        name, (unsigned long long)value);
}

static int metrics_histogram(const psl_metrics_t *m, psl_buf_t *out) {
  const char *name = "passerelle_push_latency_seconds";
  int rc = metrics_printf(out,
                          "# HELP %s Time from a push's arrival to its durable answer.\n"
                          "# TYPE %s histogram\n",
                          name, name);
  uint64_t cumulative = 0;
  for (int i = 0; rc == 0 && i < PSL_METRICS_LATENCY_BUCKETS; i++) {
    cumulative += m->latency_bucket[i];
    rc = metrics_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, psl_metrics_latency_le[i],
                        (unsigned long long)cumulative);
  }
  if (rc == 0)
    rc = metrics_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                        (unsigned long long)m->latency_count, name, m->latency_sum, name,
                        (unsigned long long)m->latency_count);
  return rc;
}

static int metrics_errors(const psl_metrics_t *m, psl_buf_t *out) {
  const char *name = "passerelle_errors_total";
  int rc = metrics_printf(out,
                          "# HELP %s Protocol errors answered, by code.\n"
                          "# TYPE %s counter\n",
                          name, name);
  for (int i = 0; rc == 0 && i < PSL_METRICS_ERROR_CODES; i++)
    rc = metrics_printf(out, "%s{code=\"%s\"} %llu\n", name, metrics_codes[i],
                        (unsigned long long)m->errors_total[i]);
  return rc;
}

int psl_metrics_render(const psl_metrics_t *m, psl_buf_t *out) {
  struct {
    const char *name, *type, *help;
    uint64_t value;
  } rows[] = {
      {"passerelle_connections", "gauge", "Open WebSocket connections.", m->connections},
      {"passerelle_subscribers", "gauge", "Active subscriptions.", m->subscribers},
      {"passerelle_head_seq", "gauge", "Last seq answered (durable) of the log.", m->head_seq},
      {"passerelle_readable_seq", "gauge",
       "Last seq readable (committed to LMDB; at most 10 ms behind the head).", m->readable_seq},
      {"passerelle_log_writable", "gauge", "1 while the log takes writes.",
       (uint64_t)(m->log_writable != 0)},
      {"passerelle_connections_total", "counter", "WebSocket connections opened.",
       m->connections_total},
      {"passerelle_connections_refused_total", "counter",
       "Connections refused (over the limit or shutting down).", m->connections_refused_total},
      {"passerelle_messages_received_total", "counter", "Protocol messages received.",
       m->messages_received_total},
      {"passerelle_bytes_received_total", "counter", "Payload bytes received.",
       m->bytes_received_total},
      {"passerelle_bytes_sent_total", "counter", "Payload bytes sent.", m->bytes_sent_total},
      {"passerelle_pushes_total", "counter", "Push requests answered.", m->pushes_total},
      {"passerelle_events_appended_total", "counter", "Events stored (not duplicates).",
       m->events_appended_total},
      {"passerelle_events_duplicate_total", "counter", "Events answered dup.",
       m->events_duplicate_total},
      {"passerelle_events_refused_total", "counter",
       "Events refused (conflict, forbidden, invalid, unavailable).", m->events_refused_total},
      {"passerelle_events_sent_total", "counter", "Events sent in chunks.", m->events_sent_total},
      {"passerelle_chunks_sent_total", "counter", "Event chunks sent.", m->chunks_sent_total},
      {"passerelle_commits_seen_total", "counter", "Log commits that woke the server.",
       m->commits_seen_total},
      {"passerelle_revoked_closed_total", "counter", "Connections closed on token revocation.",
       m->revoked_closed_total},
  };
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof rows / sizeof rows[0]; i++)
    rc = metrics_one(out, rows[i].name, rows[i].type, rows[i].help, rows[i].value);
  if (rc == 0)
    rc = metrics_histogram(m, out);
  if (rc == 0)
    rc = metrics_errors(m, out);
  return rc;
}
