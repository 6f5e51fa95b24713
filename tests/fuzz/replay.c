/*
 * replay.c — main() for a fuzz target built without libFuzzer: run LLVMFuzzerTestOneInput
 * once on every file named, or on every file of every folder named (not recursive), in name
 * order, and say how many ran.  This is how `make test` replays tests/fuzz/corpus/<target>/
 * with the ordinary compiler (and `make asan` under the sanitizers, `make valgrind` under
 * valgrind): a corpus entry that once found a bug keeps guarding against it.
 *
 *   fuzz-replay-frame tests/fuzz/corpus/frame [more files or folders]
 *
 * Exit status: 0 when every input ran (a failure aborts the process, as under libFuzzer), 2
 * on a usage error or an unreadable file or folder.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Largest input replayed: libFuzzer's -max_len in `make fuzz` is far below it; a larger file
 * is not a corpus entry but a mistake. */
#define REPLAY_MAX_INPUT (8u * 1024u * 1024u)

static int run_file(const char *path, size_t *count) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return 2;
  }
  uint8_t *buf = malloc(REPLAY_MAX_INPUT);
  if (!buf) {
    fclose(f);
    fprintf(stderr, "replay: out of memory\n");
    return 2;
  }
  size_t n = fread(buf, 1, REPLAY_MAX_INPUT, f);
  int bad = ferror(f) || !feof(f);
  fclose(f);
  if (bad) {
    free(buf);
    fprintf(stderr, "replay: %s: unreadable or larger than %u bytes\n", path, REPLAY_MAX_INPUT);
    return 2;
  }
  /* An exact-size copy, so that a read past the input is caught by the sanitizers. */
  uint8_t *in = malloc(n ? n : 1);
  if (!in) {
    free(buf);
    return 2;
  }
  memcpy(in, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(in, n);
  free(in);
  (*count)++;
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *path, size_t *count) {
  DIR *d = opendir(path);
  if (!d) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return 2;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 256;
      char **nn = realloc(names, cap * sizeof *names);
      if (!nn) {
        rc = 2;
        break;
      }
      names = nn;
    }
    if (!(names[n] = strdup(e->d_name))) {
      rc = 2;
      break;
    }
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof *names, by_name);
  for (size_t i = 0; i < n && rc == 0; i++) {
    char full[4096];
    struct stat st;
    snprintf(full, sizeof full, "%s/%s", path, names[i]);
    if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
      rc = run_file(full, count);
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  size_t count = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE|FOLDER...\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
      return 2;
    }
    int rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count);
    if (rc)
      return rc;
  }
  printf("replayed %zu inputs\n", count);
  return 0;
}
