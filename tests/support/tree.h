/*
 * tree.h — search every file under a folder for a byte string (the privacy tests: no file a
 * server keeps may hold a participant's name, phone or key).
 */
#ifndef PSL_TESTS_TREE_H
#define PSL_TESTS_TREE_H

#include <stddef.h>

/* 1 if some regular file under dir (recursively; dir may also be a file) contains the n bytes
 * of needle, with its path written to where (wherelen bytes); 0 if none does; -1 if the tree
 * could not be read.  Files are read whole (test folders are small). */
int tree_find(const char *dir, const void *needle, size_t n, char *where, size_t wherelen);

/* Files and bytes tree_find would read (for failure messages and sanity checks). */
size_t tree_bytes(const char *dir, size_t *files);

#endif /* PSL_TESTS_TREE_H */
