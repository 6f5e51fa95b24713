/*
 * metrics.h — the server's counters, rendered as Prometheus text by GET /metrics.
 *
 * Every field is updated on the loop thread only (the log's completions are drained there),
 * so plain integers suffice.  Nothing here names a person: counts, sizes, times, error codes.
 */
#ifndef PSL_METRICS_H
#define PSL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "psl_proto.h"

/* Upper bounds (seconds) of the push latency histogram, from submit to `pushed` queued.  A
 * durable commit here costs ~0.2 ms (~4,600 commits/s), a loaded batch of 8,192 events
 * ~15 ms, and anything past a second is an incident; the buckets span that range. */
#define PSL_METRICS_LATENCY_BUCKETS 12
extern const double psl_metrics_latency_le[PSL_METRICS_LATENCY_BUCKETS];

/* Protocol error codes counted separately in passerelle_errors_total{code=...}. */
#define PSL_METRICS_ERROR_CODES 10

typedef struct {
  /* gauges */
  uint64_t connections;
  uint64_t subscribers;
  uint64_t head_seq;     /* answered (durable) */
  uint64_t readable_seq; /* committed to LMDB: what subscriptions and the API read */
  int log_writable;
  /* counters */
  uint64_t connections_total;
  uint64_t connections_refused_total;
  uint64_t messages_received_total;
  uint64_t bytes_received_total;
  uint64_t bytes_sent_total;
  uint64_t pushes_total;
  uint64_t events_appended_total;
  uint64_t events_duplicate_total;
  uint64_t events_refused_total;
  uint64_t events_sent_total;
  uint64_t chunks_sent_total;
  uint64_t commits_seen_total;
  uint64_t revoked_closed_total;
  uint64_t errors_total[PSL_METRICS_ERROR_CODES];
  /* push latency histogram (cumulative at render time) */
  uint64_t latency_bucket[PSL_METRICS_LATENCY_BUCKETS]; /* not cumulative here */
  uint64_t latency_count;
  double latency_sum;
} psl_metrics_t;

/* Count a push answered after `seconds`. */
void psl_metrics_push_latency(psl_metrics_t *m, double seconds);

/* Count an `error` answered with the protocol code of err (psl_err_code). */
void psl_metrics_error(psl_metrics_t *m, int err);

/* Append the Prometheus text exposition of m to out.  0 or PSL_ENOMEM. */
int psl_metrics_render(const psl_metrics_t *m, psl_buf_t *out);

#endif /* PSL_METRICS_H */
