// Prototype: how several worker threads serve one listening socket per tenant, each tenant
// in its own network namespace. Variants:
//   a  one SO_REUSEPORT listener per worker per tenant, each in its worker's epoll
//   b  one shared listener per tenant, in both workers' epoll (level-triggered, no EXCLUSIVE)
//   c  one shared listener per tenant in a per-worker *inner* epoll with
//      EPOLLIN|EPOLLEXCLUSIVE; the inner epoll fd sits in the worker's main epoll
//      (what a libev loop can do: the inner fd is an ordinary ev_io)
//   d  the main thread accepts (its own epoll) and hands fds to workers: SPSC ring + eventfd
//   e  reference: the shared listener directly in each worker's main epoll with
//      EPOLLEXCLUSIVE (what libev's epoll backend cannot do)
// The namespaces are anonymous (unshare(CLONE_NEWNET)), kept alive only by this process's
// fds and sockets: they vanish when it exits, however it exits.
//
// Modes:
//   pw mem  N REPS VARIANTS        kernel memory + fds per tenant for N tenants
//   pw load N REPS SECS VARIANTS   connection-close load (forked client), counters
//   pw perf N SECS VARIANT         one load run, pauses 1.5 s after workers start (prints pid)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define W 2
#define PORT 8080
#define ACCEPTS_PER_WAKEUP 64
#define RING 4096

static const char RESP[] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";

enum { T_LISTENER = 1, T_INNER, T_EVENTFD };
struct item {
  int type;
  int fd;
};

struct counters {  // written by one thread, read (relaxed) by the main thread
  _Atomic uint64_t ep_calls, ep_events, inner_calls, inner_empty, acc_ok, acc_eagain,
      wasted, writes, closes, efd_reads, efd_writes, other;
};

struct worker {
  int id, epfd, inner, efd;
  _Atomic int tid;
  pthread_t th;
  struct counters c;
  // SPSC ring (variant d): main thread produces, the worker consumes
  _Atomic uint32_t head, tail;
  int ring[RING];
  char pad[64];
};

static struct worker workers[W];
static struct counters mainc;
static _Atomic int stop_flag;
static char variant;
static int ntenants;
static int *nsfd;                 // per tenant
static int *lfd;                  // per tenant * W (a) or per tenant (others)
static struct item *litems;       // items for listener fds
static int nl;                    // number of listener fds
static int home_ns;
static int main_ep = -1;          // variant d
static struct item inner_items[W], efd_items[W];

#define INC(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)
#define GET(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void die(const char *what) {
  perror(what);
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void serve(struct counters *c, int cfd) {
  ssize_t n = write(cfd, RESP, sizeof RESP - 1);
  (void)n;
  INC(c->writes);
  close(cfd);
  INC(c->closes);
}

// Accepts up to ACCEPTS_PER_WAKEUP; serve==0: hand over (variant d).
static void on_listener(struct counters *c, int fd, int direct) {
  static _Atomic unsigned rr;
  for (int i = 0; i < ACCEPTS_PER_WAKEUP; ++i) {
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EAGAIN) {
        INC(c->acc_eagain);
        if (i == 0) INC(c->wasted);
        return;
      }
      INC(c->other);
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    INC(c->acc_ok);
    if (direct) {
      serve(c, cfd);
    } else {
      struct worker *w = &workers[atomic_fetch_add(&rr, 1) % W];
      uint32_t t = atomic_load_explicit(&w->tail, memory_order_relaxed);
      uint32_t h = atomic_load_explicit(&w->head, memory_order_acquire);
      if (t - h >= RING) {  // full: drop (never happens at these rates)
        close(cfd);
        INC(c->other);
        continue;
      }
      w->ring[t % RING] = cfd;
      atomic_store_explicit(&w->tail, t + 1, memory_order_release);
      // Store tail, then load head: a store-load pair (as the consumer's store head, load
      // tail) needs a full fence, or both sides see stale values and the wakeup is lost.
      // (An earlier run without these fences stalled a worker; ev_async does this right.)
      atomic_thread_fence(memory_order_seq_cst);
      h = atomic_load_explicit(&w->head, memory_order_acquire);
      if (t == h) {  // was empty: wake it (the worker drains to empty before sleeping)
        uint64_t one = 1;
        if (write(w->efd, &one, 8) != 8) INC(c->other);
        INC(c->efd_writes);
      }
    }
  }
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  w->tid = gettid();
  struct counters *c = &w->c;
  struct epoll_event ev[64], iev[64];
  while (!atomic_load(&stop_flag)) {
    int n = epoll_wait(w->epfd, ev, 64, 100);
    INC(c->ep_calls);
    if (n <= 0) continue;
    atomic_fetch_add_explicit(&c->ep_events, n, memory_order_relaxed);
    for (int i = 0; i < n; ++i) {
      struct item *it = ev[i].data.ptr;
      if (it->type == T_LISTENER) {
        on_listener(c, it->fd, 1);
      } else if (it->type == T_INNER) {
        int m = epoll_wait(w->inner, iev, 64, 0);
        INC(c->inner_calls);
        if (m <= 0) {
          INC(c->inner_empty);
          continue;
        }
        for (int j = 0; j < m; ++j) on_listener(c, ((struct item *)iev[j].data.ptr)->fd, 1);
      } else if (it->type == T_EVENTFD) {
        uint64_t v;
        if (read(w->efd, &v, 8) != 8) INC(c->other);
        INC(c->efd_reads);
        for (;;) {
          uint32_t h = atomic_load_explicit(&w->head, memory_order_relaxed);
          uint32_t t = atomic_load_explicit(&w->tail, memory_order_acquire);
          if (h == t) break;
          while (h != t) {
            serve(c, w->ring[h % RING]);
            ++h;
          }
          atomic_store_explicit(&w->head, h, memory_order_release);
          atomic_thread_fence(memory_order_seq_cst);  // see the producer
        }
      }
    }
  }
  return NULL;
}

static _Atomic int acc_tid;
static void *acceptor_main(void *arg) {  // variant d, the "main thread"
  (void)arg;
  acc_tid = gettid();
  struct epoll_event ev[64];
  while (!atomic_load(&stop_flag)) {
    int n = epoll_wait(main_ep, ev, 64, 100);
    INC(mainc.ep_calls);
    if (n <= 0) continue;
    atomic_fetch_add_explicit(&mainc.ep_events, n, memory_order_relaxed);
    for (int i = 0; i < n; ++i) on_listener(&mainc, ((struct item *)ev[i].data.ptr)->fd, 0);
  }
  return NULL;
}

// ---- namespaces and listeners ----

static void lo_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("SIOCGIFFLAGS");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("SIOCSIFFLAGS");
  close(s);
}

static void make_namespaces(int n) {
  home_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  nsfd = calloc(n, sizeof *nsfd);
  for (int i = 0; i < n; ++i) {
    if (unshare(CLONE_NEWNET) < 0) die("unshare");
    lo_up();
    nsfd[i] = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (nsfd[i] < 0) die("open ns");
  }
  if (setns(home_ns, CLONE_NEWNET) < 0) die("setns home");
}

static int listen_in(int ns, int reuseport) {
  if (setns(ns, CLONE_NEWNET) < 0) die("setns");
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(fd, 1024) < 0) die("listen");
  return fd;
}

static void ep_add(int ep, int fd, uint32_t events, void *ptr) {
  struct epoll_event e = {.events = events, .data.ptr = ptr};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl");
}

static void setup(char v) {
  variant = v;
  for (int w = 0; w < W; ++w) {
    struct worker *wk = &workers[w];
    memset(&wk->c, 0, sizeof wk->c);
    wk->id = w;
    wk->inner = wk->efd = -1;
    atomic_store(&wk->head, 0);
    atomic_store(&wk->tail, 0);
    wk->epfd = epoll_create1(EPOLL_CLOEXEC);
  }
  memset(&mainc, 0, sizeof mainc);
  int per = v == 'a' ? W : 1;
  nl = ntenants * per;
  lfd = calloc(nl, sizeof *lfd);
  litems = calloc(nl, sizeof *litems);
  for (int t = 0; t < ntenants; ++t)
    for (int k = 0; k < per; ++k) {
      int i = t * per + k;
      lfd[i] = listen_in(nsfd[t], v == 'a');
      litems[i] = (struct item){T_LISTENER, lfd[i]};
    }
  if (setns(home_ns, CLONE_NEWNET) < 0) die("setns home");
  switch (v) {
    case 'a':
      for (int t = 0; t < ntenants; ++t)
        for (int w = 0; w < W; ++w)
          ep_add(workers[w].epfd, lfd[t * W + w], EPOLLIN, &litems[t * W + w]);
      break;
    case 'b':
    case 'e':
      for (int i = 0; i < nl; ++i)
        for (int w = 0; w < W; ++w)
          ep_add(workers[w].epfd, lfd[i], EPOLLIN | (v == 'e' ? EPOLLEXCLUSIVE : 0),
                 &litems[i]);
      break;
    case 'c':
      for (int w = 0; w < W; ++w) {
        workers[w].inner = epoll_create1(EPOLL_CLOEXEC);
        inner_items[w] = (struct item){T_INNER, workers[w].inner};
        ep_add(workers[w].epfd, workers[w].inner, EPOLLIN, &inner_items[w]);
        for (int i = 0; i < nl; ++i)
          ep_add(workers[w].inner, lfd[i], EPOLLIN | EPOLLEXCLUSIVE, &litems[i]);
      }
      break;
    case 'd':
      main_ep = epoll_create1(EPOLL_CLOEXEC);
      for (int i = 0; i < nl; ++i) ep_add(main_ep, lfd[i], EPOLLIN, &litems[i]);
      for (int w = 0; w < W; ++w) {
        workers[w].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        efd_items[w] = (struct item){T_EVENTFD, workers[w].efd};
        ep_add(workers[w].epfd, workers[w].efd, EPOLLIN, &efd_items[w]);
      }
      break;
  }
}

static void teardown(void) {
  for (int i = 0; i < nl; ++i) close(lfd[i]);
  for (int w = 0; w < W; ++w) {
    close(workers[w].epfd);
    if (workers[w].inner >= 0) close(workers[w].inner);
    if (workers[w].efd >= 0) close(workers[w].efd);
  }
  if (main_ep >= 0) close(main_ep);
  main_ep = -1;
  free(lfd);
  free(litems);
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1;  // the DIR's own fd
}

// ---- kernel memory ----

struct mem {
  long slab_kb, sunreclaim_kb, memfree_kb, percpu_kb;
  double slabinfo_kb;  // sum of active_objs*objsize
  double cache_kb[8];
};
static const char *caches[8] = {"TCP",        "sock_inode_cache", "filp",         "dentry",
                                "eventpoll_epi", "eventpoll_pwq", "kmalloc-2k", "kmalloc-1k"};

static void read_mem(struct mem *m) {
  memset(m, 0, sizeof *m);
  FILE *f = fopen("/proc/meminfo", "re");
  char line[512];
  while (fgets(line, sizeof line, f)) {
    sscanf(line, "Slab: %ld", &m->slab_kb);
    sscanf(line, "SUnreclaim: %ld", &m->sunreclaim_kb);
    sscanf(line, "MemFree: %ld", &m->memfree_kb);
    sscanf(line, "Percpu: %ld", &m->percpu_kb);
  }
  fclose(f);
  f = fopen("/proc/slabinfo", "re");
  while (fgets(line, sizeof line, f)) {
    char name[128];
    long active, num, size;
    if (sscanf(line, "%127s %ld %ld %ld", name, &active, &num, &size) != 4) continue;
    m->slabinfo_kb += active * (double)size / 1024;
    for (int i = 0; i < 8; ++i)
      if (!strcmp(name, caches[i])) m->cache_kb[i] = active * (double)size / 1024;
  }
  fclose(f);
}

static void settle(void) {
  // Closed sockets are freed after an RCU grace period; give the kernel a moment.
  usleep(1500 * 1000);
}

static void mem_mode(int reps, const char *variants) {
  int base_fds = count_fds();
  printf("# mem: %d tenants, %d workers; base fds %d\n", ntenants, W, base_fds);
  for (int r = 0; r < reps; ++r)
    for (const char *v = variants; *v; ++v) {
      settle();
      struct mem m0, m1;
      read_mem(&m0);
      setup(*v);
      read_mem(&m1);
      int fds = count_fds() - base_fds;
      printf("mem v=%c rep=%d fds=%d slab_kb=%ld sunreclaim_kb=%ld memfree_kb=%ld percpu_kb=%ld "
             "slabinfo_kb=%.1f",
             *v, r, fds, m1.slab_kb - m0.slab_kb, m1.sunreclaim_kb - m0.sunreclaim_kb,
             m0.memfree_kb - m1.memfree_kb, m1.percpu_kb - m0.percpu_kb,
             m1.slabinfo_kb - m0.slabinfo_kb);
      for (int i = 0; i < 8; ++i) printf(" %s=%.1f", caches[i], m1.cache_kb[i] - m0.cache_kb[i]);
      printf("\n");
      fflush(stdout);
      teardown();
    }
}

// ---- client (forked child) ----

struct shared {
  _Atomic uint64_t done, errors, connects;
  _Atomic int go;
};
static struct shared *sh;

static void client_main(int conc) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  enum { POOL = 32 };
  int *pool = calloc((size_t)ntenants * POOL, sizeof(int));
  int *pooln = calloc(ntenants, sizeof(int));
  unsigned next = 0;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  while (!atomic_load(&sh->go)) usleep(1000);
  int inflight = 0;
  struct epoll_event ev[128];
  char buf[256];
  for (;;) {
    while (inflight < conc) {
      int t = next++ % ntenants;
      if (pooln[t] == 0) {  // sockets are of the namespace they are created in
        if (setns(nsfd[t], CLONE_NEWNET) < 0) die("client setns");
        for (int k = 0; k < POOL; ++k)
          pool[t * POOL + k] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        pooln[t] = POOL;
      }
      int fd = pool[t * POOL + --pooln[t]];
      INC(sh->connects);
      if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        INC(sh->errors);
        close(fd);
        continue;
      }
      struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
      ++inflight;
    }
    int n = epoll_wait(ep, ev, 128, 1000);
    for (int i = 0; i < n; ++i) {
      int fd = ev[i].data.fd;
      for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) continue;
        if (r < 0 && errno == EAGAIN) break;
        if (r == 0)
          INC(sh->done);
        else
          INC(sh->errors);
        close(fd);  // also leaves the epoll
        --inflight;
        break;
      }
    }
  }
}

// ---- load ----

static void snap(struct counters *dst, struct counters *src) {
  _Atomic uint64_t *s = (void *)src, *d = (void *)dst;
  for (size_t i = 0; i < sizeof *src / sizeof(uint64_t); ++i) atomic_store(&d[i], GET(s[i]));
}
static uint64_t dlt(struct counters *a, struct counters *b, size_t off) {
  return *(uint64_t *)((char *)b + off) - *(uint64_t *)((char *)a + off);
}

static long vcsw(int tid) {  // voluntary context switches: how often the thread slept
  char path[64], line[256];
  long v = 0;
  snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) sscanf(line, "voluntary_ctxt_switches: %ld", &v);
  fclose(f);
  return v;
}

static double thread_cpu(pthread_t th) {
  clockid_t cid;
  struct timespec ts;
  if (pthread_getcpuclockid(th, &cid) != 0 || clock_gettime(cid, &ts) != 0) return 0;
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void load_run(char v, int rep, double secs, int perf_pause) {
  setup(v);
  sh->go = 0;
  sh->done = sh->errors = sh->connects = 0;
  pid_t child = fork();
  if (child == 0) {
    for (int i = 0; i < nl; ++i) close(lfd[i]);
    client_main(getenv("CONC") ? atoi(getenv("CONC")) : 64);
    _exit(0);
  }
  atomic_store(&stop_flag, 0);
  pthread_t acc;
  for (int w = 0; w < W; ++w) pthread_create(&workers[w].th, NULL, worker_main, &workers[w]);
  if (v == 'd') pthread_create(&acc, NULL, acceptor_main, NULL);
  if (perf_pause) {
    printf("READY %d\n", getpid());
    fflush(stdout);
    usleep(1500 * 1000);
  }
  atomic_store(&sh->go, 1);
  usleep(500 * 1000);  // warm-up
  long cs0 = 0, cs1 = 0;
  for (int w = 0; w < W; ++w) cs0 += vcsw(workers[w].tid);
  if (v == 'd') cs0 += vcsw(acc_tid);
  struct counters w0[W], w1[W], m0, m1;
  double cpu0[W + 1], cpu1[W + 1];
  for (int w = 0; w < W; ++w) snap(&w0[w], &workers[w].c), cpu0[w] = thread_cpu(workers[w].th);
  snap(&m0, &mainc);
  cpu0[W] = v == 'd' ? thread_cpu(acc) : 0;
  uint64_t done0 = sh->done, err0 = sh->errors;
  double t0 = now();
  usleep((useconds_t)(secs * 1e6));
  double t1 = now();
  for (int w = 0; w < W; ++w) cs1 += vcsw(workers[w].tid);
  if (v == 'd') cs1 += vcsw(acc_tid);
  for (int w = 0; w < W; ++w) snap(&w1[w], &workers[w].c), cpu1[w] = thread_cpu(workers[w].th);
  snap(&m1, &mainc);
  cpu1[W] = v == 'd' ? thread_cpu(acc) : 0;
  uint64_t done1 = sh->done, err1 = sh->errors;
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  atomic_store(&stop_flag, 1);
  for (int w = 0; w < W; ++w) pthread_join(workers[w].th, NULL);
  if (v == 'd') pthread_join(acc, NULL);
  if (perf_pause) {
    uint64_t tot = GET(mainc.acc_ok), totsys = 0;
    for (int w = 0; w < W; ++w) tot += GET(workers[w].c.acc_ok);
    _Atomic uint64_t *cs[3] = {(void *)&workers[0].c, (void *)&workers[1].c, (void *)&mainc};
    for (int k = 0; k < 3; ++k)
      for (size_t i = 0; i < sizeof mainc / sizeof(uint64_t); ++i)
        if (i != 1) totsys += GET(cs[k][i]);  // all but ep_events
    printf("TOTAL accepted=%lu counted_syscalls=%lu tids=%d,%d,%d\n", (unsigned long)tot,
           (unsigned long)totsys, workers[0].tid, workers[1].tid, v == 'd' ? acc_tid : 0);
    fflush(stdout);
  }
#define D(field) (dlt(&w0[0], &w1[0], offsetof(struct counters, field)) + \
                  dlt(&w0[1], &w1[1], offsetof(struct counters, field)) + \
                  dlt(&m0, &m1, offsetof(struct counters, field)))
  uint64_t acc0 = dlt(&w0[0], &w1[0], offsetof(struct counters, acc_ok));
  uint64_t acc1 = dlt(&w0[1], &w1[1], offsetof(struct counters, acc_ok));
  uint64_t served0 = dlt(&w0[0], &w1[0], offsetof(struct counters, closes));
  uint64_t served1 = dlt(&w0[1], &w1[1], offsetof(struct counters, closes));
  uint64_t accepted = D(acc_ok);
  uint64_t sys = D(ep_calls) + D(inner_calls) + D(acc_ok) + D(acc_eagain) + D(writes) +
                 D(closes) + D(efd_reads) + D(efd_writes) + D(other);
  double cpu = 0;
  for (int w = 0; w <= W; ++w) cpu += cpu1[w] - cpu0[w];
  double dt = t1 - t0;
  printf("load conc=%s v=%c n=%d rep=%d secs=%.2f accepts_s=%.0f client_done_s=%.0f client_err=%lu "
         "sys_per_conn=%.3f ep_wait_per_conn=%.3f eagain_per_conn=%.3f wasted=%lu "
         "wasted_per_conn=%.4f inner_empty=%lu efd_w_per_conn=%.3f efd_r_per_conn=%.3f "
         "served_w0=%lu served_w1=%lu acc_w0=%lu acc_w1=%lu max_share=%.3f cpu_us_per_conn=%.2f "
         "evs_per_wait=%.2f sleeps_per_conn=%.3f acceptor_cpu_us_per_conn=%.2f\n",
         getenv("CONC") ? getenv("CONC") : "64", v, ntenants, rep, dt, accepted / dt, (done1 - done0) / dt, (unsigned long)(err1 - err0),
         (double)sys / accepted, (double)(D(ep_calls) + D(inner_calls)) / accepted,
         (double)D(acc_eagain) / accepted, (unsigned long)D(wasted),
         (double)D(wasted) / accepted, (unsigned long)D(inner_empty),
         (double)D(efd_writes) / accepted, (double)D(efd_reads) / accepted,
         (unsigned long)served0, (unsigned long)served1, (unsigned long)acc0,
         (unsigned long)acc1,
         (double)(served0 > served1 ? served0 : served1) / (served0 + served1 ? served0 + served1 : 1),
         cpu * 1e6 / accepted, (double)D(ep_events) / (D(ep_calls) ? D(ep_calls) : 1),
         (double)(cs1 - cs0) / accepted, (cpu1[W] - cpu0[W]) * 1e6 / accepted);
  fflush(stdout);
  teardown();
  usleep(300 * 1000);
}

// SO_REUSEPORT group: what happens to connections queued on a member that closes, with
// net.ipv4.tcp_migrate_req = migrate (set in the tenant's namespace).
static void rpclose(int migrate) {
  if (setns(nsfd[0], CLONE_NEWNET) < 0) die("setns");
  FILE *f = fopen("/proc/sys/net/ipv4/tcp_migrate_req", "we");
  if (f) fprintf(f, "%d\n", migrate), fclose(f);
  int l0 = listen_in(nsfd[0], 1), l1 = listen_in(nsfd[0], 1);
  enum { C = 200 };
  int cl[C];
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < C; ++i) {
    cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(cl[i], (struct sockaddr *)&a, sizeof a);
  }
  usleep(200 * 1000);  // handshakes done: all are in the two accept queues
  close(l0);           // a worker's member of the group goes (fewer workers, or removal)
  usleep(200 * 1000);
  int accepted = 0, fd;
  while ((fd = accept4(l1, NULL, NULL, SOCK_NONBLOCK)) >= 0) ++accepted, close(fd);
  usleep(100 * 1000);
  int reset = 0;
  char b;
  for (int i = 0; i < C; ++i) {
    if (read(cl[i], &b, 1) < 0 && errno == ECONNRESET) ++reset;
    close(cl[i]);
  }
  printf("rpclose tcp_migrate_req=%d connections=%d accepted_by_survivor=%d reset=%d\n", migrate,
         C, accepted, reset);
  close(l1);
  setns(home_ns, CLONE_NEWNET);
}

// A listener closed by one thread while its file has another reference (a dup, a copy in
// flight over SCM_RIGHTS, a forked child) stays in every epoll it was added to.
static void stale(void) {
  int l = listen_in(nsfd[0], 0);
  int ep = epoll_create1(0);
  static struct item it;
  it = (struct item){T_LISTENER, l};
  ep_add(ep, l, EPOLLIN, &it);
  int other = dup(l);  // the other reference
  close(l);            // "the main thread closes the listener"
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(c, (struct sockaddr *)&a, sizeof a);
  usleep(100 * 1000);
  struct epoll_event ev;
  int n = epoll_wait(ep, &ev, 1, 100);
  struct epoll_event dummy = {0};
  int del = epoll_ctl(ep, EPOLL_CTL_DEL, l, &dummy);
  printf("stale: next socket() got fd %d\n", c);
  printf("stale: after close(listener) with a dup alive, epoll_wait returned %d event(s) for the "
         "closed fd %d (data.ptr still the old item: %s); EPOLL_CTL_DEL on the closed fd: %s\n",
         n, l, n == 1 && ev.data.ptr == &it ? "yes" : "no", del < 0 ? strerror(errno) : "ok");
  close(other);
  n = epoll_wait(ep, &ev, 1, 100);
  printf("stale: after the last reference closed, epoll_wait returned %d\n", n);
  close(c);
  close(ep);
  setns(home_ns, CLONE_NEWNET);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: pw mem N REPS VARIANTS | load N REPS SECS VARIANTS | perf N SECS V\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  ntenants = atoi(argv[2]);
  double t = now();
  make_namespaces(ntenants);
  fprintf(stderr, "# %d namespaces in %.2f s\n", ntenants, now() - t);
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (!strcmp(argv[1], "mem")) {
    // (the namespaces themselves, for scale: made above; this is only the next batch)
    struct mem n0, n1;
    read_mem(&n0);
    int *keep = nsfd;
    make_namespaces(ntenants);
    read_mem(&n1);
    printf("netns %d more: slab_kb=%ld memfree_kb=%ld percpu_kb=%ld\n", ntenants,
           n1.slab_kb - n0.slab_kb, n0.memfree_kb - n1.memfree_kb, n1.percpu_kb - n0.percpu_kb);
    for (int i = 0; i < ntenants; ++i) close(nsfd[i]);
    free(nsfd);
    nsfd = keep;
    mem_mode(atoi(argv[3]), argv[4]);
  } else if (!strcmp(argv[1], "load")) {
    int reps = atoi(argv[3]);
    double secs = atof(argv[4]);
    for (int r = 0; r < reps; ++r)
      for (const char *v = argv[5]; *v; ++v) load_run(*v, r, secs, 0);
  } else if (!strcmp(argv[1], "misc")) {
    rpclose(0);
    rpclose(1);
    stale();
  } else if (!strcmp(argv[1], "perf")) {
    load_run(argv[4][0], 0, atof(argv[3]), 1);
  }
  return 0;
}
