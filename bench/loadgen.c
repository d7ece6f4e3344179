// Load generator for the poetry benchmark: many TCP clients in one epoll loop.
//
//   loadgen MODE PORT CONNS SECONDS EXPECTED_FILE
//
// MODE fetch: keep CONNS connections busy for SECONDS: connect, read to EOF,
//             check every byte against EXPECTED_FILE, close, repeat.
// MODE once:  each of CONNS connections fetches once (SECONDS is a time limit).
// MODE slow:  like fetch, but ramp up to CONNS connections first, then count
//             bytes received during SECONDS (for paced servers).
// MODE stall: open CONNS connections, never read, hold them SECONDS, close.
//
// Talks only to 127.0.0.1. Prints one JSON object on stdout.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum mode { FETCH, ONCE, SLOW, STALL };

struct client {
  int fd;
  uint64_t received;
  uint64_t started_ns;
  int served; // has had a first byte since the run began
};

static const unsigned char *expected;
static uint64_t expected_len;
static struct sockaddr_in server;
static int epfd;

static uint64_t completed, errors, short_reads, wrong_bytes, connect_errors;
static uint64_t bytes_total, bytes_in_window;
static uint64_t *latencies;
static size_t latency_count, latency_cap;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int open_client(struct client *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  c->fd = fd;
  c->received = 0;
  c->started_ns = now_ns();
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
  return 0;
}

static void record_latency(uint64_t ns) {
  if (latency_count == latency_cap) {
    latency_cap = latency_cap ? latency_cap * 2 : 65536;
    latencies = realloc(latencies, latency_cap * sizeof *latencies);
  }
  latencies[latency_count++] = ns;
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: loadgen fetch|once|slow|stall PORT CONNS SECONDS EXPECTED_FILE\n");
    return 2;
  }
  enum mode mode = !strcmp(argv[1], "once") ? ONCE
                   : !strcmp(argv[1], "slow") ? SLOW
                   : !strcmp(argv[1], "stall") ? STALL
                                               : FETCH;
  int port = atoi(argv[2]);
  int conns = atoi(argv[3]);
  double seconds = atof(argv[4]);

  int efd = open(argv[5], O_RDONLY);
  struct stat st;
  if (efd < 0 || fstat(efd, &st) < 0) {
    perror(argv[5]);
    return 2;
  }
  expected_len = st.st_size;
  expected = expected_len ? mmap(NULL, expected_len, PROT_READ, MAP_PRIVATE, efd, 0) : (void *)"";

  struct rlimit rl = {.rlim_cur = conns + 64, .rlim_max = conns + 64};
  setrlimit(RLIMIT_NOFILE, &rl);

  server.sin_family = AF_INET;
  server.sin_port = htons(port);
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  epfd = epoll_create1(0);

  struct client *clients = calloc(conns, sizeof *clients);
  static unsigned char buf[256 * 1024];
  struct epoll_event events[1024];

  uint64_t start = now_ns();
  uint64_t window_start = 0, window_end = 0, all_served_ns = 0;
  int opened = 0, open_now = 0, served = 0;
  // Paced and stalled runs open clients at a steady 5,000 a second: a burst
  // of 10,000 SYNs would overflow a listen backlog (Deno's is 511) and the
  // dropped clients would wait out 1 s, 3 s, 7 s retransmits.
  const double ramp_per_s = (mode == SLOW || mode == STALL) ? 5000.0 : 1e12;

  for (;;) {
    double since = (now_ns() - start) / 1e9;
    int target = since * ramp_per_s + 1 > conns ? conns : (int)(since * ramp_per_s) + 1;
    for (; opened < target; opened++) {
      if (open_client(&clients[opened]) < 0) {
        connect_errors++;
        errors++;
      } else {
        open_now++;
      }
    }
    uint64_t t = now_ns();
    // A paced run measures from 1 s after every client has had a first byte
    // (or 15 s in, if some never do); a stalled run once all are open.
    int ready = mode == SLOW ? (served == conns || t - start > 15000000000ull)
                             : opened == conns;
    if (ready && window_start == 0) {
      if (served == conns) all_served_ns = t - start;
      window_start = mode == SLOW ? t + 1000000000ull : mode == STALL ? t : start;
      window_end = window_start + (uint64_t)(seconds * 1e9);
    }
    if (window_start && t >= window_end) break;
    if (mode == ONCE && completed + errors >= (uint64_t)conns) break;

    int n = epoll_wait(epfd, events, 1024, mode == STALL ? 100 : 10);
    if (mode == STALL) continue;
    for (int i = 0; i < n; i++) {
      struct client *c = events[i].data.ptr;
      int done = 0, failed = 0;
      for (;;) {
        ssize_t got = read(c->fd, buf, sizeof buf);
        if (got > 0) {
          if (c->received + got > expected_len ||
              memcmp(buf, expected + c->received, got) != 0) {
            wrong_bytes++;
            failed = 1;
            break;
          }
          if (!c->served) {
            c->served = 1;
            served++;
          }
          c->received += got;
          bytes_total += got;
          if (window_start) {
            uint64_t at = now_ns();
            if (at >= window_start && at < window_end) bytes_in_window += got;
          }
          if (mode != SLOW && got < (ssize_t)sizeof buf) break;
          continue;
        }
        if (got == 0) {
          if (c->received == expected_len) done = 1;
          else {
            short_reads++;
            failed = 1;
          }
        } else if (errno != EAGAIN) {
          if (c->received == expected_len) done = 1;
          else {
            short_reads++;
            failed = 1;
          }
        }
        break;
      }
      if (!done && !failed) continue;
      if (done) {
        completed++;
        record_latency(now_ns() - c->started_ns);
      } else {
        errors++;
      }
      epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
      close(c->fd);
      open_now--;
      if (mode == FETCH || mode == SLOW) {
        if (open_client(c) < 0) {
          connect_errors++;
          errors++;
        } else {
          open_now++;
        }
      }
    }
  }
  uint64_t end = now_ns();
  double elapsed = (end - (window_start && window_start < end ? window_start : start)) / 1e9;
  for (int i = 0; i < conns; i++) if (clients[i].fd > 0) close(clients[i].fd);

  qsort(latencies, latency_count, sizeof *latencies, compare_u64);
  double p50 = latency_count ? latencies[latency_count / 2] / 1e3 : 0;
  double p99 = latency_count ? latencies[(latency_count * 99) / 100] / 1e3 : 0;
  printf("{\"completed\":%llu,\"errors\":%llu,\"short_reads\":%llu,\"wrong_bytes\":%llu,"
         "\"connect_errors\":%llu,\"bytes\":%llu,\"bytes_in_window\":%llu,\"seconds\":%.3f,"
         "\"p50_us\":%.1f,\"p99_us\":%.1f,\"open\":%d,\"all_served_s\":%.3f}\n",
         (unsigned long long)completed, (unsigned long long)errors,
         (unsigned long long)short_reads, (unsigned long long)wrong_bytes,
         (unsigned long long)connect_errors, (unsigned long long)bytes_total,
         (unsigned long long)bytes_in_window, elapsed, p50, p99, open_now, all_served_ns / 1e9);
  return 0;
}
