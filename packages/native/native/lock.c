/*
 * Whole-file advisory locks for @blk/native (its lock module), in plain C
 * over Node-API (no node-addon-api, no other dependency).
 *
 * Linux: open file description locks (F_OFD_SETLK). They conflict with the
 * classic POSIX record locks UML takes (fcntl F_SETLK) and with QEMU's OFD
 * byte locks, are tied to the descriptor (so closing another descriptor of
 * the same file in this process does not drop them) and conflict between two
 * descriptors of one process too. Where OFD locks are missing (EINVAL, or
 * a platform without F_OFD_SETLK) the classic F_SETLK is used, and the
 * caller is told so (it is weaker: process-wide, dropped by any close).
 *
 * Exclusive (writers) = F_WRLCK on the whole file. Shared (readers) = F_RDLCK
 * on bytes 100 and 201 only: QEMU's own reader protocol ("I use consistent
 * read" and "I do not share write"), so QEMU readers may share the image
 * with a blk reader while every writer (blk, UML, QEMU) is refused. A shared
 * lock on the whole file would also cover QEMU's other "unshare" bytes and
 * make QEMU refuse to read.
 *
 *   lock(fd, mode)  mode: 0 = unlock, 1 = shared, 2 = exclusive
 *                   -> [errno (0 = ok), kind (1 = OFD, 2 = POSIX)]
 *   query(fd, mode) -> [type of a conflicting lock (0 none, 1 read, 2 write), pid (-1 for OFD holders)]
 *   queryRange(fd, start, len) -> [type, pid, lock start, lock length (0 = to the end of the file)] of
 *                   a lock another holder has on bytes [start, start+len): how a reader sees a QEMU
 *                   writer, which holds only read locks (on byte 101, its "write" permission, maybe
 *                   merged with its neighbours) and none that a whole-file query would report.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "addon.h"

static short lock_type(int mode) {
  return mode == 2 ? F_WRLCK : mode == 1 ? F_RDLCK : F_UNLCK;
}

static void whole_file(struct flock *fl, short type) {
  memset(fl, 0, sizeof *fl);
  fl->l_type = type;
  fl->l_whence = SEEK_SET;
  fl->l_start = 0;
  fl->l_len = 0; /* to the end of the file, however large it grows */
}

/* QEMU's lock bytes (block/file-posix.c): 100 + permission, 200 + permission not shared. */
#define QEMU_PERM_CONSISTENT_READ 100
#define QEMU_UNSHARE_WRITE 201

static int set_range(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl;
  whole_file(&fl, type);
  fl.l_start = start;
  fl.l_len = len;
  return fcntl(fd, cmd, &fl) == 0 ? 0 : errno;
}

/*
 * Applies a lock of `mode` with `cmd` (F_OFD_SETLK or F_SETLK); returns errno or 0. A mode change
 * on a descriptor that holds a lock converts it without letting go at any moment (the kernel checks
 * a request for conflicts before it changes anything): exclusive is one whole-file write lock over
 * whatever was held; shared takes its two bytes (as read locks, over a write lock if held) and only
 * then drops the rest. A refused request leaves the lock held before as it was.
 */
static int apply(int fd, int cmd, int mode) {
  if (mode != 1) return set_range(fd, cmd, lock_type(mode), 0, 0);
  int err = set_range(fd, cmd, F_RDLCK, QEMU_PERM_CONSISTENT_READ, 1);
  if (err) return err;
  /* Refused only when nothing was held (a held lock, shared or exclusive, covers byte 201). */
  err = set_range(fd, cmd, F_RDLCK, QEMU_UNSHARE_WRITE, 1);
  if (err) {
    set_range(fd, cmd, F_UNLCK, QEMU_PERM_CONSISTENT_READ, 1);
    return err;
  }
  /* Everything else this descriptor held (a writer's whole file) goes; the two bytes stay. */
  set_range(fd, cmd, F_UNLCK, 0, QEMU_PERM_CONSISTENT_READ);
  set_range(fd, cmd, F_UNLCK, QEMU_PERM_CONSISTENT_READ + 1, QEMU_UNSHARE_WRITE - QEMU_PERM_CONSISTENT_READ - 1);
  set_range(fd, cmd, F_UNLCK, QEMU_UNSHARE_WRITE + 1, 0);
  return 0;
}

static int args(napi_env env, napi_callback_info info, int32_t *fd, int32_t *mode) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return 0;
  return small_int(env, argv[0], fd) == 1 && small_int(env, argv[1], mode) == 1;
}

static napi_value pair(napi_env env, int32_t a, int32_t b) {
  napi_value out, va, vb;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_int32(env, a, &va));
  CHECK(napi_create_int32(env, b, &vb));
  CHECK(napi_set_element(env, out, 0, va));
  CHECK(napi_set_element(env, out, 1, vb));
  return out;
}

static napi_value js_lock(napi_env env, napi_callback_info info) {
  int32_t fd, mode;
  if (!args(env, info, &fd, &mode)) {
    napi_throw_type_error(env, NULL, "lock(fd, mode) needs two integers");
    return NULL;
  }
#ifdef F_OFD_SETLK
  int err = apply(fd, F_OFD_SETLK, mode);
  if (err != EINVAL) return pair(env, err, 1);
#endif
  return pair(env, apply(fd, F_SETLK, mode), 2);
}

static napi_value js_query(napi_env env, napi_callback_info info) {
  int32_t fd, mode;
  if (!args(env, info, &fd, &mode)) {
    napi_throw_type_error(env, NULL, "query(fd, mode) needs two integers");
    return NULL;
  }
  struct flock fl;
  whole_file(&fl, lock_type(mode == 0 ? 2 : mode));
  int rc = -1;
#ifdef F_OFD_GETLK
  rc = fcntl(fd, F_OFD_GETLK, &fl);
  if (rc != 0 && errno == EINVAL) whole_file(&fl, lock_type(mode == 0 ? 2 : mode));
#endif
  if (rc != 0) rc = fcntl(fd, F_GETLK, &fl);
  if (rc != 0) return pair(env, -errno, 0);
  int type = fl.l_type == F_UNLCK ? 0 : fl.l_type == F_RDLCK ? 1 : 2;
  return pair(env, type, type == 0 ? 0 : (int32_t) fl.l_pid);
}

static napi_value js_query_range(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd, start, len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3
      || small_int(env, argv[0], &fd) != 1 || small_int(env, argv[1], &start) != 1
      || small_int(env, argv[2], &len) != 1 || start < 0 || len < 0) {
    napi_throw_type_error(env, NULL, "queryRange(fd, start, len) needs three non-negative integers");
    return NULL;
  }
  struct flock fl;
  whole_file(&fl, F_WRLCK); /* a write lock conflicts with every lock: reports any holder */
  fl.l_start = start;
  fl.l_len = len;
  int rc = -1;
#ifdef F_OFD_GETLK
  rc = fcntl(fd, F_OFD_GETLK, &fl);
  if (rc != 0 && errno == EINVAL) {
    whole_file(&fl, F_WRLCK);
    fl.l_start = start;
    fl.l_len = len;
  }
#endif
  if (rc != 0) rc = fcntl(fd, F_GETLK, &fl);
  if (rc != 0) return pair(env, -errno, 0);
  int type = fl.l_type == F_UNLCK ? 0 : fl.l_type == F_RDLCK ? 1 : 2;
  napi_value out, v;
  double values[4] = { type, type == 0 ? 0 : fl.l_pid, type == 0 ? 0 : (double) fl.l_start, type == 0 ? 0 : (double) fl.l_len };
  CHECK(napi_create_array_with_length(env, 4, &out));
  for (uint32_t i = 0; i < 4; i++) {
    CHECK(napi_create_double(env, values[i], &v));
    CHECK(napi_set_element(env, out, i, v));
  }
  return out;
}

napi_status register_lock(napi_env env, napi_value exports) {
  napi_status st = define(env, exports, "lock", js_lock);
  if (st == napi_ok) st = define(env, exports, "query", js_query);
  return st != napi_ok ? st : define(env, exports, "queryRange", js_query_range);
}
