/*
 * flood.c — per-token flood limits (flood.h): a table of the tokens that have connections
 * open, each with its connection count and two token buckets (messages, events) that all
 * its connections drain together.
 *
 * Table: PSL_FLOOD_BUCKETS chains keyed by the token id (12 hex characters: already a hash
 * of the token, so its first bytes spread the keys); an entry lives while the token has a
 * connection, so the table holds at most PSL_MAX_CONNECTIONS entries.
 */
#include "flood.h"

#include <stdlib.h>
#include <string.h>

struct psl__tokuse_s {
  psl__tokuse_t *next;
  char id[PSL_TOKEN_ID_LEN + 1];
  size_t conns;
  double msgs, events; /* tokens left in each bucket */
  uint64_t at_ms;      /* when they were last refilled */
};

struct psl__flood_s {
  size_t max_conns;
  double msgs_per_s, events_per_s;
  psl__tokuse_t *buckets[PSL_FLOOD_BUCKETS];
};

int psl__flood_new(psl__flood_t **out, size_t max_conns, double msgs_per_s) {
  psl__flood_t *f = calloc(1, sizeof *f);
  *out = NULL;
  if (!f)
    return PSL_ENOMEM;
  f->max_conns = max_conns;
  f->msgs_per_s = msgs_per_s;
  f->events_per_s = msgs_per_s * PSL_TOKEN_EVENTS_PER_MSG;
  if (msgs_per_s > 0 && f->events_per_s < PSL_MAX_PUSH_EVENTS)
    f->events_per_s = PSL_MAX_PUSH_EVENTS; /* a full push can always pass, once a second */
  *out = f;
  return 0;
}

void psl__flood_free(psl__flood_t *f) {
  if (!f)
    return;
  for (size_t i = 0; i < PSL_FLOOD_BUCKETS; i++)
    for (psl__tokuse_t *u = f->buckets[i], *next; u; u = next) {
      next = u->next;
      free(u);
    }
  free(f);
}

static psl__tokuse_t **flood_slot(psl__flood_t *f, const char *id) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < PSL_TOKEN_ID_LEN && id[i]; i++)
    h = (h ^ (uint8_t)id[i]) * 16777619u;
  return &f->buckets[h & (PSL_FLOOD_BUCKETS - 1)];
}

int psl__flood_attach(psl__flood_t *f, const char id[PSL_TOKEN_ID_LEN + 1], uint64_t now_ms,
                      psl__tokuse_t **out) {
  psl__tokuse_t **slot = flood_slot(f, id), *u;
  *out = NULL;
  for (u = *slot; u; u = u->next)
    if (strcmp(u->id, id) == 0)
      break;
  if (u && f->max_conns && u->conns >= f->max_conns)
    return PSL_ERATE_LIMITED;
  if (!u) {
    if (!(u = calloc(1, sizeof *u)))
      return PSL_ENOMEM;
    memcpy(u->id, id, PSL_TOKEN_ID_LEN);
    u->msgs = f->msgs_per_s;
    u->events = f->events_per_s;
    u->at_ms = now_ms;
    u->next = *slot;
    *slot = u;
  }
  u->conns++;
  *out = u;
  return 0;
}

void psl__flood_detach(psl__flood_t *f, psl__tokuse_t *u) {
  if (!u || --u->conns > 0)
    return;
  /* The token's last connection: its buckets go with it.  A token that reconnects at once
   * starts full again, which costs a flood one handshake per burst (and the conn limit). */
  for (psl__tokuse_t **pp = flood_slot(f, u->id); *pp; pp = &(*pp)->next)
    if (*pp == u) {
      *pp = u->next;
      break;
    }
  free(u);
}

int psl__flood_take(psl__flood_t *f, psl__tokuse_t *u, size_t events, uint64_t now_ms) {
  if (!u || f->msgs_per_s <= 0)
    return 0;
  double dt = now_ms > u->at_ms ? (double)(now_ms - u->at_ms) / 1000.0 : 0.0;
  u->at_ms = now_ms;
  u->msgs += dt * f->msgs_per_s;
  if (u->msgs > f->msgs_per_s)
    u->msgs = f->msgs_per_s;
  u->events += dt * f->events_per_s;
  if (u->events > f->events_per_s)
    u->events = f->events_per_s;
  if (u->msgs < 1.0 || u->events < (double)events)
    return PSL_ERATE_LIMITED;
  u->msgs -= 1.0;
  u->events -= (double)events;
  return 0;
}
