// malloc_count.so: counts heap allocations of the process it is preloaded into.
//
//   cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c
//   MALLOC_COUNT_OUT=/tmp/counts LD_PRELOAD=./malloc_count.so nsproxyd ...
//   kill -USR1 <pid>     # appends one line to MALLOC_COUNT_OUT
//
// Each SIGUSR1 appends one line (async-signal-safe: counters are atomics, the line is
// formatted by hand and written with one write(2)):
//
//   seq=N allocs=A frees=F live_bytes=L
//
// SIGUSR2 toggles tracing: while on, every allocation also appends its backtrace
// (backtrace_symbols_fd) to MALLOC_COUNT_OUT, to find where allocations come from.
//
// allocs counts every call that can return new memory: malloc, calloc, realloc,
// posix_memalign, aligned_alloc, memalign, valloc, pvalloc (C++ operator new reaches
// malloc through libstdc++). live_bytes is the sum of malloc_usable_size over blocks
// allocated and not yet freed. The real allocator is glibc's (__libc_* entry points), so
// no dlsym bootstrapping is needed. Works for release builds, not under ASan (which
// replaces malloc itself).
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void __libc_free(void*);
extern void* __libc_memalign(size_t, size_t);

static atomic_ullong g_allocs, g_frees, g_seq;
static atomic_llong g_live;
static int g_out = -1;
static atomic_int g_trace;
static __thread int t_in_trace;

static void trace(size_t size) {
  if (t_in_trace || g_out < 0) return;
  t_in_trace = 1;
  char line[64] = "--- allocation of ";
  char* p = line + strlen(line);
  char digits[24];
  int n = 0;
  do {
    digits[n++] = (char)('0' + size % 10);
    size /= 10;
  } while (size != 0);
  while (n > 0) *p++ = digits[--n];
  *p++ = '\n';
  ssize_t unused = write(g_out, line, (size_t)(p - line));
  (void)unused;
  void* frames[24];
  int count = backtrace(frames, 24);
  backtrace_symbols_fd(frames, count, g_out);
  t_in_trace = 0;
}

static void note_alloc(void* p) {
  if (p == NULL) return;
  atomic_fetch_add_explicit(&g_allocs, 1, memory_order_relaxed);
  size_t size = malloc_usable_size(p);
  atomic_fetch_add_explicit(&g_live, (long long)size, memory_order_relaxed);
  if (atomic_load_explicit(&g_trace, memory_order_relaxed)) trace(size);
}

static void note_free(void* p) {
  if (p == NULL) return;
  atomic_fetch_add_explicit(&g_frees, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&g_live, (long long)malloc_usable_size(p), memory_order_relaxed);
}

void* malloc(size_t n) {
  void* p = __libc_malloc(n);
  note_alloc(p);
  return p;
}

void* calloc(size_t a, size_t b) {
  void* p = __libc_calloc(a, b);
  note_alloc(p);
  return p;
}

void* realloc(void* old, size_t n) {
  if (old == NULL) return malloc(n);
  if (n == 0) {
    free(old);
    return NULL;
  }
  size_t old_size = malloc_usable_size(old);
  void* p = __libc_realloc(old, n);
  if (p != NULL) {
    // Counted as a free of the old block and an allocation of the new one, even when
    // glibc grew it in place: the caller asked for memory either way.
    atomic_fetch_add_explicit(&g_frees, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&g_live, (long long)old_size, memory_order_relaxed);
    note_alloc(p);
  }
  return p;
}

void free(void* p) {
  note_free(p);
  __libc_free(p);
}

void* memalign(size_t align, size_t n) {
  void* p = __libc_memalign(align, n);
  note_alloc(p);
  return p;
}

void* aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void** out, size_t align, size_t n) {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = memalign(align, n);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(size_t n) { return memalign((size_t)sysconf(_SC_PAGESIZE), n); }

void* pvalloc(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return memalign(page, (n + page - 1) / page * page);
}

static char* put_u64(char* p, unsigned long long v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

static char* put_str(char* p, const char* s) {
  while (*s) *p++ = *s++;
  return p;
}

static void on_usr1(int sig) {
  (void)sig;
  int saved = errno;
  char line[160];
  char* p = line;
  long long live = atomic_load(&g_live);
  p = put_str(p, "seq=");
  p = put_u64(p, atomic_fetch_add(&g_seq, 1) + 1);
  p = put_str(p, " allocs=");
  p = put_u64(p, atomic_load(&g_allocs));
  p = put_str(p, " frees=");
  p = put_u64(p, atomic_load(&g_frees));
  p = put_str(p, " live_bytes=");
  if (live < 0) {
    *p++ = '-';
    live = -live;
  }
  p = put_u64(p, (unsigned long long)live);
  *p++ = '\n';
  if (g_out >= 0) {
    ssize_t unused = write(g_out, line, (size_t)(p - line));
    (void)unused;
  }
  errno = saved;
}

static void on_usr2(int sig) {
  (void)sig;
  atomic_fetch_xor(&g_trace, 1);
}

__attribute__((constructor)) static void malloc_count_init(void) {
  const char* path = getenv("MALLOC_COUNT_OUT");
  if (path == NULL || *path == '\0') return;
  g_out = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  sa.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa, NULL);
  // backtrace() loads libgcc on its first call, which allocates: do that now.
  void* frames[2];
  backtrace(frames, 2);
  // Children (none expected) must not inherit the preload.
  unsetenv("LD_PRELOAD");
}
