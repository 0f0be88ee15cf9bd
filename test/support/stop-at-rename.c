/*
 * Preloaded into a training child by test/support/kill-child.ts (LD_PRELOAD): the process stops itself (SIGSTOP)
 * just before its n-th rename onto a file of a given name, PACE_TEST_STOP_AT_RENAME=<name>:<n>. A checkpoint
 * write is then caught between its fsync and the rename that completes it every time, where a watcher racing the
 * write from outside caught it only as often as the disk's fsync was slow.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

int rename(const char* from, const char* to) {
  static int (*real)(const char*, const char*);
  static int seen;
  if (!real) real = (int (*)(const char*, const char*))dlsym(RTLD_NEXT, "rename");
  const char* wanted = getenv("PACE_TEST_STOP_AT_RENAME");
  const char* colon = wanted ? strrchr(wanted, ':') : NULL;
  if (colon) {
    const char* slash = strrchr(to, '/');
    const char* name = slash ? slash + 1 : to;
    const size_t length = (size_t)(colon - wanted);
    if (strlen(name) == length && strncmp(name, wanted, length) == 0 && ++seen == atoi(colon + 1)) raise(SIGSTOP);
  }
  return real(from, to);
}
