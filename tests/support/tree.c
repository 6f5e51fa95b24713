/*
 * tree.c — byte searches over a folder (see tree.h).
 */
#define _XOPEN_SOURCE 700
#include "support/tree.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/srv.h"

/* nftw passes no user argument: one search at a time per process (tests are single-threaded
 * where they call this). */
static struct {
  const void *needle;
  size_t n;
  char *where;
  size_t wherelen;
  int found, failed;
  size_t bytes, files;
} tree;

static int tree_visit(const char *path, const struct stat *st, int flag, struct FTW *f) {
  (void)f;
  if (flag != FTW_F || !S_ISREG(st->st_mode))
    return 0;
  size_t len = 0;
  char *data = srv_read_file(path, &len);
  if (!data) {
    tree.failed = 1;
    return 0;
  }
  tree.files++;
  tree.bytes += len;
  if (tree.needle && memmem(data, len, tree.needle, tree.n)) {
    tree.found = 1;
    if (tree.where)
      snprintf(tree.where, tree.wherelen, "%s", path);
    free(data);
    return 1; /* stop the walk */
  }
  free(data);
  return 0;
}

int tree_find(const char *dir, const void *needle, size_t n, char *where, size_t wherelen) {
  memset(&tree, 0, sizeof tree);
  tree.needle = needle;
  tree.n = n;
  tree.where = where;
  tree.wherelen = wherelen;
  if (where && wherelen)
    where[0] = '\0';
  if (nftw(dir, tree_visit, 16, FTW_PHYS) < 0)
    return -1;
  if (tree.found)
    return 1;
  return tree.failed ? -1 : 0;
}

size_t tree_bytes(const char *dir, size_t *files) {
  memset(&tree, 0, sizeof tree);
  nftw(dir, tree_visit, 16, FTW_PHYS);
  if (files)
    *files = tree.files;
  return tree.bytes;
}
