/*
 * Positional reads and writes for @blk/native's io module.
 *
 * Why: a random 4 KiB read from the page cache costs about 1.48 µs through
 * fs.readSync here and 1.23 µs through this (bench/experiments/pread-cost.mjs):
 * the difference is Node's argument validation, request wrapper and error
 * context. Nothing else is done here: no buffering, no caching.
 *
 *   pread(fd, into, position)   -> bytes read (0 at end of file), or -errno
 *   pwrite(fd, data, position)  -> bytes written, or -errno
 *   seek(fd, position, what)    -> lseek(2) with SEEK_DATA (what 0) or SEEK_HOLE
 *                                  (what 1): the next data / hole at or after
 *                                  position, or -errno (-ENXIO: none before
 *                                  the end of the file; -EINVAL where the
 *                                  platform has no SEEK_DATA), or SEEK_END
 *                                  (what 2, position 0): the size of a block
 *                                  device, which fstat reports as 0
 *   fallocate(fd, offset, length) -> posix_fallocate(3): 0, or -errno
 *                                  (-EOPNOTSUPP where the file system
 *                                  cannot; the caller writes zeros instead)
 *   zeroRange(fd, position, length, punch)
 *                               -> fallocate(2): 0 once [position, position +
 *                                  length) reads as zeros without data written:
 *                                  punch 1 makes it a hole (PUNCH_HOLE), punch
 *                                  0 zeroes it in place (ZERO_RANGE), both
 *                                  keeping the file's size; or -errno
 *                                  (-EOPNOTSUPP where the file system or the
 *                                  platform cannot: the caller writes zeros)
 *
 * `into`/`data` is any TypedArray (its whole byte range is used); `position`
 * a Number, a non-negative integer below 2^53 (else -EINVAL: the caller
 * validates, this only refuses to pass garbage to the kernel). EINTR is
 * retried; short counts are returned as they are, for the caller to loop.
 */
#define _GNU_SOURCE
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/falloc.h>
#endif
#include "addon.h"

static const double MAX_POSITION = 9007199254740991.0; /* 2^53 - 1 */

static size_t element_size(napi_typedarray_type type) {
  switch (type) {
    case napi_int16_array: case napi_uint16_array: return 2;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: return 4;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: return 8;
    default: return 1;
  }
}

/*
 * Unpacks (fd, typed array, position); throws a TypeError and returns 0 when
 * they are not that. A Number that is no valid descriptor leaves *fd at -1
 * (the caller answers -EBADF without a system call).
 */
static int io_args(napi_env env, napi_callback_info info, const char *usage,
                   int32_t *fd, void **data, size_t *bytes, double *position) {
  size_t argc = 3;
  napi_value argv[3];
  bool is_typed = false;
  napi_typedarray_type type;
  size_t length;
  int fd_ok = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3
      || (fd_ok = small_int(env, argv[0], fd)) < 0
      || napi_is_typedarray(env, argv[1], &is_typed) != napi_ok || !is_typed
      || napi_get_typedarray_info(env, argv[1], &type, &length, data, NULL, NULL) != napi_ok
      || napi_get_value_double(env, argv[2], position) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  if (fd_ok == 0) *fd = -1;
  *bytes = length * element_size(type);
  return 1;
}

static int valid_position(double position) {
  return position >= 0 && position <= MAX_POSITION && floor(position) == position;
}

static napi_value result(napi_env env, int64_t n) {
  napi_value out;
  CHECK(napi_create_double(env, n < 0 ? -(double) errno : (double) n, &out));
  return out;
}

/* pread (write = 0) or pwrite (write = 1) of the whole typed array at the position. */
static napi_value transfer(napi_env env, napi_callback_info info, int write) {
  int32_t fd = -1;
  void *data;
  size_t bytes;
  double position;
  if (!io_args(env, info, write ? "pwrite(fd, data, position) needs an integer, a TypedArray and a number"
                                 : "pread(fd, into, position) needs an integer, a TypedArray and a number",
               &fd, &data, &bytes, &position)) return NULL;
  if (fd < 0) {
    errno = EBADF;
    return result(env, -1);
  }
  /* A write must also end below 2^53, where blk's offsets stop being exact. */
  if (!valid_position(position) || (write && position + (double) bytes > MAX_POSITION)) {
    errno = EINVAL;
    return result(env, -1);
  }
  ssize_t n;
  do n = write ? pwrite(fd, data, bytes, (off_t) position) : pread(fd, data, bytes, (off_t) position);
  while (n < 0 && errno == EINTR);
  return result(env, n);
}

static napi_value js_pread(napi_env env, napi_callback_info info) { return transfer(env, info, 0); }
static napi_value js_pwrite(napi_env env, napi_callback_info info) { return transfer(env, info, 1); }

/* Where data or holes are: what QEMU's file-posix find_allocation() asks. Moves the
   descriptor's file position, which blk never uses (all its I/O is positional). */
static napi_value js_seek(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd = -1, what = -1;
  double position;
  int fd_ok = -1, what_ok = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3
      || (fd_ok = small_int(env, argv[0], &fd)) < 0
      || napi_get_value_double(env, argv[1], &position) != napi_ok
      || (what_ok = small_int(env, argv[2], &what)) < 0) {
    napi_throw_type_error(env, NULL, "seek(fd, position, what) needs an integer, a number and 0, 1 or 2");
    return NULL;
  }
  if (fd_ok == 0) {
    errno = EBADF;
    return result(env, -1);
  }
  if (what_ok != 0 && what == 2) {
    /* A block device's size, as QEMU's raw_getlength and UML find it. */
    if (position != 0) {
      errno = EINVAL;
      return result(env, -1);
    }
    off_t end = lseek(fd, 0, SEEK_END);
    return result(env, end < 0 ? -1 : (int64_t) end);
  }
#if defined(SEEK_DATA) && defined(SEEK_HOLE)
  if (!valid_position(position) || what_ok == 0 || (what != 0 && what != 1)) {
    errno = EINVAL;
    return result(env, -1);
  }
  off_t at = lseek(fd, (off_t) position, what == 0 ? SEEK_DATA : SEEK_HOLE);
  return result(env, at < 0 ? -1 : (int64_t) at);
#else
  errno = EINVAL;
  return result(env, -1);
#endif
}

/* Reserves blocks for qemu's preallocation=falloc: Node has no fallocate. posix_fallocate
   returns the error number instead of setting errno. */
static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd = -1;
  double offset, length;
  int fd_ok = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3
      || (fd_ok = small_int(env, argv[0], &fd)) < 0
      || napi_get_value_double(env, argv[1], &offset) != napi_ok
      || napi_get_value_double(env, argv[2], &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "fallocate(fd, offset, length) needs an integer and two numbers");
    return NULL;
  }
  if (fd_ok == 0) {
    errno = EBADF;
    return result(env, -1);
  }
  if (!valid_position(offset) || !valid_position(length) || length == 0 || offset + length > MAX_POSITION) {
    errno = EINVAL;
    return result(env, -1);
  }
  int err;
#if defined(__APPLE__)
  /* macOS has no posix_fallocate: the caller writes zeros instead. */
  (void) offset;
  err = EOPNOTSUPP;
#else
  do err = posix_fallocate(fd, (off_t) offset, (off_t) length);
  while (err == EINTR);
#endif
  errno = err;
  return result(env, err == 0 ? 0 : -1);
}

/* What QEMU's file-posix does for write_zeroes (punch with BDRV_REQ_MAY_UNMAP, else zero range). */
static napi_value js_zero_range(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd = -1, punch = -1;
  double position, length;
  int fd_ok = -1, punch_ok = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4
      || (fd_ok = small_int(env, argv[0], &fd)) < 0
      || napi_get_value_double(env, argv[1], &position) != napi_ok
      || napi_get_value_double(env, argv[2], &length) != napi_ok
      || (punch_ok = small_int(env, argv[3], &punch)) < 0) {
    napi_throw_type_error(env, NULL, "zeroRange(fd, position, length, punch) needs an integer, two numbers and 0 or 1");
    return NULL;
  }
  if (fd_ok == 0) {
    errno = EBADF;
    return result(env, -1);
  }
  if (!valid_position(position) || !valid_position(length) || length == 0 || position + length > MAX_POSITION
      || punch_ok == 0 || (punch != 0 && punch != 1)) {
    errno = EINVAL;
    return result(env, -1);
  }
#if defined(__linux__) && defined(FALLOC_FL_PUNCH_HOLE) && defined(FALLOC_FL_ZERO_RANGE)
  int mode = FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
  int rc;
  do rc = fallocate(fd, mode, (off_t) position, (off_t) length);
  while (rc < 0 && errno == EINTR);
  return result(env, rc);
#else
  errno = EOPNOTSUPP;
  return result(env, -1);
#endif
}

napi_status register_io(napi_env env, napi_value exports) {
  napi_status st = define(env, exports, "pread", js_pread);
  if (st == napi_ok) st = define(env, exports, "pwrite", js_pwrite);
  if (st == napi_ok) st = define(env, exports, "fallocate", js_fallocate);
  if (st == napi_ok) st = define(env, exports, "zeroRange", js_zero_range);
  return st != napi_ok ? st : define(env, exports, "seek", js_seek);
}
