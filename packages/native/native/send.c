/*
 * Zero-copy socket replies for @blk/nbd: bytes from memory and ranges of
 * files written to a socket by sendfile(2), on a libuv worker thread.
 *
 * Why: serving a page-cached image over NBD, Node copies every byte twice
 * (file -> JS buffer -> socket) and makes every socket write on its one main
 * thread; a bare Node server tops out near half of nbdkit's throughput
 * (bench/experiments/nbd-sendfile/README.md). sendfile moves page-cache pages
 * into the socket without the user-space copy, and the worker thread takes
 * the write off the main thread.
 *
 *   sendv(sockFd, data, plan, done)
 *     plan: a Float64Array of triples (fd, position, length), sent in order.
 *     fd -1: `length` bytes of `data` (a Uint8Array) from byte `position`;
 *     fd -2: `length` zero bytes (a short zero run inside a data chunk);
 *     else `length` bytes of file `fd` from `position` (sendfile; past the
 *     file's end zeros, as raw images read their last partial sector).
 *     done(err, sent): err 0 when everything was sent, else the errno that
 *     stopped it (ECANCELED: cancel was called; EAGAIN: the peer read nothing
 *     for 200 ms, the caller sends the rest later); sent the bytes written.
 *     Returns a job handle for cancel().
 *   cancel(job): makes the job stop at its next wait for the socket
 *     (the socket's peer stopped reading and the connection is closing).
 *
 * The socket is dup()ed for the job, so that Node closing its descriptor
 * while the job runs cannot make the worker write into whatever file reuses
 * that number. The caller must not write to the socket while a job runs (the
 * bytes would interleave); @blk/nbd hands the socket over only while Node's
 * own write queue for it is empty. The socket is non-blocking (libuv made
 * it so): on EAGAIN the worker waits in poll(2), in slices of 50 ms so that
 * cancel is seen, at most 200 ms (then done(EAGAIN, sent)). SIGPIPE: Node
 * ignores it; sends use MSG_NOSIGNAL anyway.
 * The caller keeps the file descriptors open until done is called.
 */
#define _GNU_SOURCE
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#ifdef __linux__
#include <sys/sendfile.h>
#endif
#include "addon.h"

typedef struct {
  int fd;          /* -1: from data */
  uint64_t position;
  uint64_t length;
} segment;

typedef struct {
  napi_async_work work;
  napi_ref data_ref;
  napi_ref done_ref;
  uint8_t *data;
  size_t data_bytes;
  segment *segments;
  size_t count;
  int sock;         /* our dup of the socket */
  volatile int cancelled;
  int finished;     /* complete() ran */
  int dropped;      /* the JS handle was collected */
  int err;
  uint64_t sent;
} send_job;

static const double MAX_POSITION = 9007199254740991.0; /* 2^53 - 1 */
/* Poll slices of 50 ms a job waits for a peer that reads nothing before it returns EAGAIN. */
#define WAIT_SLICES 4

/* Waits until the socket takes more bytes; 0, or an errno (ECANCELED, or what poll says). */
static int wait_writable(send_job *job) {
  for (int slices = 0;; slices++) {
    if (job->cancelled) return ECANCELED;
    /* A peer that reads nothing for WAIT_SLICES x 50 ms: give the thread back (EAGAIN; the caller
       resumes from `sent` later), so that slow or hostile clients cannot hold libuv's few pool
       threads, which every connection's file I/O shares. */
    if (slices == WAIT_SLICES) return EAGAIN;
    struct pollfd p = { .fd = job->sock, .events = POLLOUT };
    int n = poll(&p, 1, 50);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) continue;
    if (p.revents & POLLOUT) return 0;
    /* POLLERR / POLLHUP without POLLOUT: the next send reports the error. */
    return 0;
  }
}

/* After a failed send or sendfile: 0 to try again (interrupted, or the socket has room again), else
   the error to report (EAGAIN when the peer read nothing for the job's wait). */
static int retry_after(send_job *job, int err) {
  if (err == EINTR) return 0;
  if (err == EAGAIN || err == EWOULDBLOCK) return wait_writable(job);
  return err;
}

static int send_memory(send_job *job, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(job->sock, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      int e = retry_after(job, errno);
      if (e) return e;
      continue;
    }
    p += w;
    n -= (size_t) w;
    job->sent += (uint64_t) w;
  }
  return 0;
}

static const uint8_t zeros[65536];

static int send_zeros(send_job *job, uint64_t n) {
  while (n > 0) {
    size_t k = n > sizeof zeros ? sizeof zeros : (size_t) n;
    int e = send_memory(job, zeros, k);
    if (e) return e;
    n -= k;
  }
  return 0;
}

static int send_file(send_job *job, int fd, uint64_t position, uint64_t n) {
#ifdef __linux__
  off_t at = (off_t) position;
  while (n > 0) {
    size_t want = n > (1u << 30) ? (1u << 30) : (size_t) n;
    ssize_t w = sendfile(job->sock, fd, &at, want);
    if (w < 0) {
      int e = retry_after(job, errno);
      if (e) return e;
      continue;
    }
    if (w == 0) return send_zeros(job, n); /* the file ended before the range did */
    n -= (uint64_t) w;
    job->sent += (uint64_t) w;
  }
  return 0;
#else
  (void) job; (void) fd; (void) position; (void) n;
  return ENOSYS;
#endif
}

static void execute(napi_env env, void *arg) {
  (void) env;
  send_job *job = arg;
  for (size_t i = 0; i < job->count && job->err == 0; i++) {
    segment *s = &job->segments[i];
    job->err = s->fd == -1 ? send_memory(job, job->data + s->position, (size_t) s->length)
               : s->fd == -2 ? send_zeros(job, s->length)
               : send_file(job, s->fd, s->position, s->length);
  }
}

static void complete(napi_env env, napi_status status, void *arg) {
  send_job *job = arg;
  close(job->sock);
  napi_value done, global, argv[2];
  if (napi_get_reference_value(env, job->done_ref, &done) == napi_ok
      && napi_get_global(env, &global) == napi_ok
      && napi_create_int32(env, status == napi_ok ? job->err : ECANCELED, &argv[0]) == napi_ok
      && napi_create_double(env, (double) job->sent, &argv[1]) == napi_ok) {
    napi_call_function(env, global, done, 2, argv, NULL);
  }
  if (job->data_ref) napi_delete_reference(env, job->data_ref);
  napi_delete_reference(env, job->done_ref);
  napi_delete_async_work(env, job->work);
  free(job->segments);
  /* The job lives until both this ran and its JS handle was collected (both on the main thread). */
  job->finished = 1;
  if (job->dropped) free(job);
}

static void finalize_handle(napi_env env, void *data, void *hint) {
  (void) env; (void) hint;
  send_job *job = data;
  job->dropped = 1;
  if (job->finished) free(job);
}

static napi_value js_sendv(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t sock = -1;
  bool is_typed = false, is_plan = false;
  napi_typedarray_type type, plan_type;
  size_t data_len = 0, plan_len = 0;
  void *data = NULL, *plan = NULL;
  napi_valuetype done_type;
  const char *usage = "sendv(sockFd, data, plan, done) needs a descriptor, a Uint8Array, a Float64Array of triples and a function";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4
      || small_int(env, argv[0], &sock) != 1
      || napi_is_typedarray(env, argv[1], &is_typed) != napi_ok || !is_typed
      || napi_get_typedarray_info(env, argv[1], &type, &data_len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array
      || napi_is_typedarray(env, argv[2], &is_plan) != napi_ok || !is_plan
      || napi_get_typedarray_info(env, argv[2], &plan_type, &plan_len, &plan, NULL, NULL) != napi_ok
      || plan_type != napi_float64_array || plan_len % 3 != 0
      || napi_typeof(env, argv[3], &done_type) != napi_ok || done_type != napi_function) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  const double *p = plan;
  size_t count = plan_len / 3;
  segment *segments = calloc(count ? count : 1, sizeof(segment));
  if (!segments) {
    napi_throw_error(env, NULL, "sendv: out of memory");
    return NULL;
  }
  for (size_t i = 0; i < count; i++) {
    double fd = p[3 * i], position = p[3 * i + 1], length = p[3 * i + 2];
    int ok = floor(fd) == fd && fd >= -2 && fd <= 2147483647.0
             && position >= 0 && position <= MAX_POSITION && floor(position) == position
             && length >= 0 && length <= MAX_POSITION && floor(length) == length
             && position + length <= MAX_POSITION
             && (fd != -1 || position + length <= (double) data_len);
    if (!ok) {
      free(segments);
      napi_throw_range_error(env, NULL, "sendv: a plan triple is not (fd >= -2, position, length) within its source");
      return NULL;
    }
    segments[i] = (segment) { (int) fd, (uint64_t) position, (uint64_t) length };
  }
  send_job *job = calloc(1, sizeof(send_job));
  if (!job) {
    free(segments);
    napi_throw_error(env, NULL, "sendv: out of memory");
    return NULL;
  }
  job->segments = segments;
  job->count = count;
  job->data = data;
  job->data_bytes = data_len;
  job->sock = fcntl(sock, F_DUPFD_CLOEXEC, 0);
  napi_value handle, name;
  if (job->sock < 0) {
    int e = errno;
    free(segments);
    free(job);
    napi_throw_error(env, NULL, e == EBADF ? "sendv: bad socket descriptor" : "sendv: cannot duplicate the socket");
    return NULL;
  }
  if (napi_create_reference(env, argv[1], 1, &job->data_ref) != napi_ok
      || napi_create_reference(env, argv[3], 1, &job->done_ref) != napi_ok
      || napi_create_string_utf8(env, "blk_sendv", NAPI_AUTO_LENGTH, &name) != napi_ok
      || napi_create_async_work(env, NULL, name, execute, complete, job, &job->work) != napi_ok
      || napi_create_external(env, job, finalize_handle, NULL, &handle) != napi_ok
      || napi_queue_async_work(env, job->work) != napi_ok) {
    /* Leaks the job on this (practically impossible) path rather than risk freeing it twice. */
    napi_throw_error(env, NULL, "sendv: cannot start the job");
    return NULL;
  }
  return handle;
}

static napi_value js_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1
      || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "cancel(job) needs a job sendv returned");
    return NULL;
  }
  ((send_job *) data)->cancelled = 1;
  return NULL;
}

napi_status register_send(napi_env env, napi_value exports) {
  napi_status st = define(env, exports, "sendv", js_sendv);
  return st != napi_ok ? st : define(env, exports, "cancel", js_cancel);
}
