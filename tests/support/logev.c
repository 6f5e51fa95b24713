/* logev.c — see logev.h. */
#include "support/logev.h"

#include <stdio.h>
#include <string.h>

void tev_fill(tev_t *t, uint64_t idn, int stream_no, const char *terr, int64_t expect) {
  memset(t, 0, sizeof *t);
  for (int i = 0; i < 8; i++)
    t->ev.id[8 + i] = (uint8_t)(idn >> (8 * (7 - i)));
  t->ev.id[0] = 0x01; /* never all zero */
  snprintf(t->stream, sizeof t->stream, "participant/00000000-0000-7000-8000-%012d", stream_no);
  t->ev.stream = psl_str(t->stream);
  t->ev.type = psl_str("interview.held");
  t->ev.at = 1700000000000 + (int64_t)idn;
  t->ev.terr = psl_str(terr);
  size_t note = idn % 40, n = 0;
  uint8_t *d = t->data;
  d[n++] = 0x82;
  d[n++] = 0xa7;
  memcpy(d + n, "minutes", 7);
  n += 7;
  d[n++] = 45;
  d[n++] = 0xa4;
  memcpy(d + n, "note", 4);
  n += 4;
  d[n++] = (uint8_t)(0xa0 | (note & 0x1f));
  for (size_t i = 0; i < (note & 0x1f); i++)
    d[n++] = (uint8_t)('a' + i % 26);
  t->ev.data.ptr = d;
  t->ev.data.len = n;
  t->ev.expect = expect;
  t->ev.by = psl_str("caseworker-1");
  t->ev.dev = psl_str("tablet-1");
}
