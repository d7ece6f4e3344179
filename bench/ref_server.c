// Reference poetry server for the benchmark: the practical limit.
//
//   ref_server POEM_FILE [NUM_BYTES DELAY_SECONDS]
//
// One epoll loop on 127.0.0.1, port chosen by the system. Fast mode writes
// the poem from memory (mmap) and closes. Slow mode writes NUM_BYTES to every
// client on each tick of one timerfd. Prints "Serving FILE on 127.0.0.1:PORT."
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define MAX_FDS 65536

static const char *poem;
static size_t poem_len;
static size_t offsets[MAX_FDS];
static int paced[MAX_FDS], paced_count;
static int paced_slot[MAX_FDS];
static int epfd;
static size_t num_bytes;

static void finish(int fd) {
  if (num_bytes) {
    int slot = paced_slot[fd], last = paced[--paced_count];
    paced[slot] = last;
    paced_slot[last] = slot;
  }
  close(fd);
}

// Writes what the socket takes; returns 1 when the poem is done or the client is gone.
static int write_some(int fd, size_t limit) {
  while (offsets[fd] < poem_len && limit > 0) {
    size_t want = poem_len - offsets[fd];
    if (want > limit) want = limit;
    ssize_t n = write(fd, poem + offsets[fd], want);
    if (n < 0) return errno == EAGAIN ? 0 : 1;
    offsets[fd] += n;
    limit -= n;
  }
  return offsets[fd] >= poem_len;
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 4) {
    fprintf(stderr, "usage: ref_server POEM_FILE [NUM_BYTES DELAY_SECONDS]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl = {.rlim_cur = MAX_FDS, .rlim_max = MAX_FDS};
  setrlimit(RLIMIT_NOFILE, &rl);
  int pfd = open(argv[1], O_RDONLY);
  struct stat st;
  if (pfd < 0 || fstat(pfd, &st) < 0) {
    perror(argv[1]);
    return 2;
  }
  poem_len = st.st_size;
  poem = poem_len ? mmap(NULL, poem_len, PROT_READ, MAP_PRIVATE, pfd, 0) : "";
  double delay = argc == 4 ? atof(argv[3]) : 0;
  num_bytes = delay > 0 ? (size_t)atol(argv[2]) : 0;

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
    perror("listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  getsockname(lfd, (struct sockaddr *)&addr, &len);
  printf("Serving %s on 127.0.0.1:%d.\n", argv[1], ntohs(addr.sin_port));
  fflush(stdout);

  epfd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
  int tfd = -1;
  if (num_bytes) {
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    long ns = (long)(delay * 1e9);
    struct itimerspec its = {.it_interval = {ns / 1000000000, ns % 1000000000},
                             .it_value = {ns / 1000000000, ns % 1000000000}};
    timerfd_settime(tfd, 0, &its, NULL);
    ev.data.fd = tfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
  }

  struct epoll_event events[1024];
  for (;;) {
    int n = epoll_wait(epfd, events, 1024, -1);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          offsets[c] = 0;
          if (num_bytes) {
            paced_slot[c] = paced_count;
            paced[paced_count++] = c;
            if (write_some(c, num_bytes)) finish(c);
          } else if (write_some(c, poem_len)) {
            close(c);
          } else {
            struct epoll_event out = {.events = EPOLLOUT, .data.fd = c};
            epoll_ctl(epfd, EPOLL_CTL_ADD, c, &out);
          }
        }
      } else if (fd == tfd) {
        uint64_t ticks;
        if (read(tfd, &ticks, sizeof ticks) < 0) continue;
        for (int k = paced_count - 1; k >= 0; k--) {
          if (write_some(paced[k], num_bytes)) finish(paced[k]);
        }
      } else if (write_some(fd, poem_len)) {
        close(fd);
      }
    }
  }
}
