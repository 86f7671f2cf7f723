/* The parts of the blk_native addon, and the helper they share. */
#ifndef BLK_NATIVE_ADDON_H
#define BLK_NATIVE_ADDON_H

#define NAPI_VERSION 8
#include <math.h>
#include <stdint.h>
#include <node_api.h>

#define CHECK(call) do { if ((call) != napi_ok) return NULL; } while (0)

/* Sets exports[name] to a new function running `cb`. */
static inline napi_status define(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_status st = napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  return st != napi_ok ? st : napi_set_named_property(env, exports, name, fn);
}

/*
 * Reads a Number that must be an integer in [0, INT32_MAX] (a descriptor, a
 * mode): 1 when it is, 0 when it is a Number outside that (NaN, fractions,
 * negatives, 2^32 + 3: napi_get_value_int32 would quietly turn those into
 * some other descriptor), -1 when it is not a Number at all.
 */
static inline int small_int(napi_env env, napi_value value, int32_t *out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return -1;
  if (!(d >= 0 && d <= 2147483647.0) || floor(d) != d) return 0;
  *out = (int32_t) d;
  return 1;
}

napi_status register_lock(napi_env env, napi_value exports); /* lock.c: lock, query */
napi_status register_io(napi_env env, napi_value exports);   /* io.c: pread, pwrite, seek, fallocate, zeroRange */
napi_status register_send(napi_env env, napi_value exports); /* send.c: sendv, cancel */

#endif
