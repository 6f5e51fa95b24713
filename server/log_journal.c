/*
 * log_journal.c — the journal: what makes an append durable before LMDB holds it.
 *
 * WHY.  An LMDB commit costs two fsyncs (data pages, then the meta page) and rewrites every
 * B-tree page it touched: ~60 pages for one event with its indexes and projections.  The
 * journal makes an acknowledgement cost one fsync of the few hundred bytes appended: the
 * writer (log_write.c) applies a batch in its open write transaction, appends the batch's
 * records here as one frame, fdatasyncs, and only then answers.  The open transaction is
 * committed (durably, LMDB's two fsyncs) every PSL_LOG_VISIBLE_MS or so, after which
 * everything the journal holds is also in LMDB and the journal starts again at offset 0.
 * At open, the frames past LMDB's head are applied again (log_replay.c): nothing answered
 * is lost by a crash, a kill -9 or a power cut between the two.
 *
 * FILE: DIR/log/journal, 0600, preallocated (JOURNAL_PREALLOC) so that an fdatasync never
 * has to write the file's size; a frame never spans past the allocation without growing it.
 *
 *   frame  = header (32 bytes) ‖ payload ‖ checksum (16 bytes)
 *   header = magic "PSLJ" (4) ‖ generation (4, BE) ‖ first seq (8, BE) ‖ count (4, BE)
 *            ‖ payload length (4, BE) ‖ reserved, zero (8)
 *   payload = count × (record length (4, BE) ‖ record)   record = hash ‖ canonical, exactly
 *            the `events` value of log.c; the seqs are first seq, first seq + 1, ...
 *   checksum = BLAKE2b-128 of header ‖ payload
 *
 * Frames follow each other from offset 0.  The generation goes up by one each time the
 * journal starts again at 0, so the frames left further on by an earlier round (all of them
 * already in LMDB) end the scan: it stops at the first frame that has another magic, another
 * generation than the frame at 0, a seq that does not follow, a length past the file, or a
 * checksum that does not match — a frame torn by a crash was never answered.
 */
#include "log_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* Bytes allocated up front, and the step the file grows by when a round needs more: ~10 ms
 * of the fastest ingest measured (500,000 events/s of ~340 bytes) is under 2 MiB. */
#define JOURNAL_PREALLOC ((off_t)16 << 20)
#define JOURNAL_HEADER 32u
#define JOURNAL_SUM 16u
#define JOURNAL_NAME "/journal"
/* Largest frame the scan accepts: a batch is bounded by PSL__LOG_BATCH_BYTES of events, and
 * a record is at most PSL_MAX_EVENT + its hash. */
#define JOURNAL_FRAME_MAX ((uint64_t)PSL__LOG_BATCH_BYTES * 2u + ((uint64_t)1 << 20))

static const uint8_t MAGIC[4] = {'P', 'S', 'L', 'J'};

struct psl__journal_s {
  int fd;
  off_t pos;   /* where the next frame goes */
  off_t last;  /* where the last frame written went */
  off_t alloc; /* bytes allocated */
  uint32_t gen;
  psl_buf_t frame; /* the frame being gathered: header room ‖ payload */
  uint64_t first_seq;
  uint32_t count;
  int gather; /* 0: count the records only (a batch LMDB commits directly) */
};

static void be32_put(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t be32_get(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Allocate the file up to `size`: fallocate, or zeros where it is not supported. */
static int allocate(psl__journal_t *j, off_t size) {
  if (size <= j->alloc)
    return 0;
  int e = posix_fallocate(j->fd, 0, size);
  if (e)
    return e == ENOSPC ? PSL_EUNAVAILABLE : psl_err_from_errno(e);
  if (fsync(j->fd) != 0) /* the new size, once: later fdatasyncs then write data only */
    return psl_err_from_errno(errno);
  j->alloc = size;
  return 0;
}

int psl__journal_open(psl__journal_t **out, const char *logdir, int read_only) {
  char path[4096];
  *out = NULL;
  if ((size_t)snprintf(path, sizeof path, "%s%s", logdir, JOURNAL_NAME) >= sizeof path)
    return PSL_EINVALID;
  psl__journal_t *j = calloc(1, sizeof *j);
  if (!j)
    return PSL_ENOMEM;
  psl_buf_init(&j->frame, 0);
  j->fd = read_only ? open(path, O_RDONLY | O_CLOEXEC)
                    : open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (j->fd < 0) {
    int err = read_only && errno == ENOENT ? PSL_ENOTFOUND : psl_err_from_errno(errno);
    free(j);
    return err;
  }
  struct stat st;
  if (fstat(j->fd, &st) != 0) {
    int err = psl_err_from_errno(errno);
    psl__journal_close(j);
    return err;
  }
  j->alloc = st.st_size;
  if (!read_only) {
    /* The file's name must survive a power cut as its frames do: fsync the folder once. */
    int dfd = open(logdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int bad = dfd < 0 || fsync(dfd) != 0;
    int err = bad ? psl_err_from_errno(errno) : 0;
    if (dfd >= 0)
      close(dfd);
    if (bad) {
      psl__journal_close(j);
      return err;
    }
  }
  *out = j;
  return 0;
}

void psl__journal_close(psl__journal_t *j) {
  if (!j)
    return;
  if (j->fd >= 0)
    close(j->fd);
  psl_buf_free(&j->frame);
  free(j);
}

/* One frame at `off` of the file: 0 with *len its whole size, its header in hdr and its
 * payload in buf (the caller's, reused); 1 when there is no valid frame there; -1 out of
 * memory. */
static int read_frame(psl__journal_t *j, off_t off, psl_buf_t *buf, uint8_t hdr[JOURNAL_HEADER],
                      size_t *len) {
  if (off + JOURNAL_HEADER + JOURNAL_SUM > j->alloc)
    return 1;
  if (pread(j->fd, hdr, JOURNAL_HEADER, off) != (ssize_t)JOURNAL_HEADER)
    return 1;
  if (memcmp(hdr, MAGIC, 4) != 0)
    return 1;
  uint64_t plen = be32_get(hdr + 20);
  if (plen > JOURNAL_FRAME_MAX || off + JOURNAL_HEADER + plen + JOURNAL_SUM > (uint64_t)j->alloc)
    return 1;
  psl_buf_reset(buf);
  if (psl_buf_reserve(buf, plen + JOURNAL_SUM) != 0)
    return -1;
  uint8_t *p = psl_buf_data(buf);
  if (pread(j->fd, p, plen + JOURNAL_SUM, off + JOURNAL_HEADER) != (ssize_t)(plen + JOURNAL_SUM))
    return 1;
  uint8_t sum[JOURNAL_SUM];
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, JOURNAL_SUM);
  crypto_generichash_update(&st, hdr, JOURNAL_HEADER);
  crypto_generichash_update(&st, p, plen);
  crypto_generichash_final(&st, sum, JOURNAL_SUM);
  if (sodium_memcmp(sum, p + plen, JOURNAL_SUM) != 0)
    return 1;
  buf->len = plen;
  *len = JOURNAL_HEADER + plen + JOURNAL_SUM;
  return 0;
}

int psl__journal_scan(psl__journal_t *j, int written, psl__journal_fn fn, void *arg) {
  psl_buf_t buf;
  uint8_t hdr[JOURNAL_HEADER];
  off_t off = 0, limit = written ? j->pos : j->alloc;
  uint64_t next = 0;
  uint32_t gen = 0;
  int rc = 0;
  psl_buf_init(&buf, 0);
  while (off < limit) {
    size_t len;
    int r = read_frame(j, off, &buf, hdr, &len);
    if (r < 0) {
      rc = PSL_ENOMEM;
      break;
    }
    if (r > 0 || off + (off_t)len > limit)
      break;
    uint32_t fgen = be32_get(hdr + 4), count = be32_get(hdr + 16);
    uint64_t first = psl__be64_get(hdr + 8);
    if (off == 0)
      gen = fgen;
    else if (fgen != gen || first != next)
      break;
    /* Records of a frame that passed its checksum: their lengths were written by us. */
    const uint8_t *p = psl_buf_data(&buf), *end = p + buf.len;
    for (uint32_t i = 0; i < count && rc == 0; i++) {
      if (end - p < 4 || (size_t)(end - p - 4) < be32_get(p)) {
        rc = PSL_ECORRUPT;
        break;
      }
      uint32_t rl = be32_get(p);
      rc = fn(arg, first + i, p + 4, rl);
      p += 4 + rl;
    }
    if (rc)
      break;
    next = first + count;
    off += (off_t)len;
  }
  if (rc == 0 && !written) {
    j->gen = gen + 1; /* the next round's frames are told from this one's */
    j->pos = 0;
  }
  psl_buf_free(&buf);
  return rc;
}

void psl__journal_begin(psl__journal_t *j, int gather) {
  psl_buf_reset(&j->frame);
  j->count = 0;
  j->first_seq = 0;
  j->gather = gather;
}

int psl__journal_add(psl__journal_t *j, uint64_t seq, const uint8_t *rec, size_t len) {
  if (!j->gather) {
    j->count++;
    return 0;
  }
  if (j->count == 0) {
    int err = psl_buf_reserve(&j->frame, JOURNAL_HEADER);
    if (err)
      return err;
    j->frame.len = JOURNAL_HEADER;
    j->first_seq = seq;
  }
  uint8_t l[4];
  be32_put(l, (uint32_t)len);
  int err = psl_buf_append(&j->frame, l, 4);
  if (!err)
    err = psl_buf_append(&j->frame, rec, len);
  if (!err)
    j->count++;
  return err;
}

uint32_t psl__journal_count(const psl__journal_t *j) { return j->count; }

const uint8_t *psl__journal_record(const psl__journal_t *j, size_t *off, size_t *len) {
  const uint8_t *p = psl_buf_data(&j->frame);
  if (*off == 0)
    *off = JOURNAL_HEADER;
  if (*off + 4 > j->frame.len)
    return NULL;
  *len = be32_get(p + *off);
  const uint8_t *rec = p + *off + 4;
  *off += 4 + *len;
  return rec;
}

/* Invalidate the frame at off (not answered): its magic zeroed, best effort.  If it stayed,
 * its events would come back at the next open although answered as failed: a retry of them
 * is then answered dup. */
static void invalidate(psl__journal_t *j, off_t off) {
  static const uint8_t zero[4];
  if (pwrite(j->fd, zero, sizeof zero, off) == (ssize_t)sizeof zero)
    (void)fdatasync(j->fd);
}

int psl__journal_sync(psl__journal_t *j) {
  if (j->count == 0 || !j->gather)
    return 0;
  uint8_t *p = psl_buf_data(&j->frame);
  size_t plen = j->frame.len - JOURNAL_HEADER;
  memcpy(p, MAGIC, 4);
  be32_put(p + 4, j->gen);
  psl__be64_put(p + 8, j->first_seq);
  be32_put(p + 16, j->count);
  be32_put(p + 20, (uint32_t)plen);
  memset(p + 24, 0, 8);
  uint8_t sum[JOURNAL_SUM];
  crypto_generichash(sum, JOURNAL_SUM, p, j->frame.len, NULL, 0);
  int err = psl_buf_append(&j->frame, sum, JOURNAL_SUM);
  if (err)
    return err;
  p = psl_buf_data(&j->frame);
  off_t need = j->pos + (off_t)j->frame.len;
  if (need > j->alloc &&
      (err = allocate(j, need > JOURNAL_PREALLOC ? need + JOURNAL_PREALLOC : JOURNAL_PREALLOC)))
    return err;
  size_t done = 0;
  while (done < j->frame.len) {
    ssize_t w = pwrite(j->fd, p + done, j->frame.len - done, j->pos + (off_t)done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      err = w < 0 && (errno == ENOSPC || errno == EDQUOT) ? PSL_EUNAVAILABLE
                                                            : psl_err_from_errno(w < 0 ? errno : EIO);
      break;
    }
    done += (size_t)w;
  }
  if (!err && fdatasync(j->fd) != 0)
    err = errno == ENOSPC || errno == EDQUOT ? PSL_EUNAVAILABLE : PSL_EIO;
  if (err) {
    invalidate(j, j->pos);
    return err;
  }
  j->last = j->pos;
  j->pos += (off_t)j->frame.len;
  return 0;
}

void psl__journal_unsync(psl__journal_t *j) {
  j->pos = j->last;
  invalidate(j, j->pos);
}

void psl__journal_reset(psl__journal_t *j) {
  j->pos = 0;
  j->gen++;
}
