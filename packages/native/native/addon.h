/* The parts of the blk_native addon, and the helper they share. */
#ifndef BLK_NATIVE_ADDON_H
#define BLK_NATIVE_ADDON_H

#define NAPI_VERSION 8
#include <node_api.h>

#define CHECK(call) do { if ((call) != napi_ok) return NULL; } while (0)

/* Sets exports[name] to a new function running `cb`. */
static inline napi_status define(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_status st = napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  return st != napi_ok ? st : napi_set_named_property(env, exports, name, fn);
}

napi_status register_lock(napi_env env, napi_value exports); /* lock.c: lock, query */
napi_status register_io(napi_env env, napi_value exports);   /* io.c: pread, pwrite */

#endif
