/*
 * flood.h — per-token flood limits (flood.c): how many connections one token may hold, and
 * how many messages and events per second its connections may send together.
 *
 * A token stands for one person's device.  These limits bound what one token — a buggy
 * client, or a stolen token before it is revoked — can take from everyone else, whatever the
 * number of connections it opens.  The server-wide limits (PSL_MAX_CONNECTIONS, the log's
 * batch) stay in force too.
 *
 * Loop thread only.
 */
#ifndef PSL_FLOOD_H
#define PSL_FLOOD_H

#include <stddef.h>
#include <stdint.h>

#include "psl_access.h"

/* Connections of one token: a device syncs over one; a reconnect storm after a network
 * change leaves a few half-dead ones until their ping times out (PSL_IDLE_HANGUP_S); 32 is
 * ten times that and still keeps one token to 0.2 % of PSL_MAX_CONNECTIONS. */
#define PSL_TOKEN_MAX_CONNS 32u
/* Messages per second of one token, all its connections together: 20,000/s is 3x the best
 * single-client round-trip rate of the peers we measure against (~6,800/s), so no honest
 * device meets it, while a flood is answered rate_limited.  Events per second: ten times
 * that, a quarter of the log's batched ingest ceiling (~880,000/s), so one token cannot take
 * the writer alone.  Bursts: one second's worth. */
#define PSL_TOKEN_MSGS_PER_S 20000.0
#define PSL_TOKEN_EVENTS_PER_MSG 10.0
/* Buckets of the token table: a power of two; 20,000 connections' tokens give chains of ~5. */
#define PSL_FLOOD_BUCKETS 4096u

typedef struct psl__flood_s psl__flood_t;
typedef struct psl__tokuse_s psl__tokuse_t;

/* max_conns 0: no connection limit; msgs_per_s 0: no rate limit (benchmarks, where one token
 * stands for many devices). */
int psl__flood_new(psl__flood_t **out, size_t max_conns, double msgs_per_s);
void psl__flood_free(psl__flood_t *f); /* accepts NULL */

/* A connection of token `id` authenticated: count it.  0 and *out (its share of the token),
 * PSL_ERATE_LIMITED when the token holds max_conns already, PSL_ENOMEM. */
int psl__flood_attach(psl__flood_t *f, const char id[PSL_TOKEN_ID_LEN + 1], uint64_t now_ms,
                      psl__tokuse_t **out);
/* That connection closed (u may be NULL). */
void psl__flood_detach(psl__flood_t *f, psl__tokuse_t *u);
/* One message carrying n events: 0, or PSL_ERATE_LIMITED when the token's buckets are dry
 * (nothing is taken then).  u NULL (not yet authenticated): 0. */
int psl__flood_take(psl__flood_t *f, psl__tokuse_t *u, size_t events, uint64_t now_ms);

#endif /* PSL_FLOOD_H */
