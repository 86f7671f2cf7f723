/* blk_native: the host system calls Node lacks (OFD locks) or makes slow (positional I/O). */
#include "addon.h"

NAPI_MODULE_INIT() {
  if (register_lock(env, exports) != napi_ok) return NULL;
  if (register_io(env, exports) != napi_ok) return NULL;
  if (register_send(env, exports) != napi_ok) return NULL;
  return exports;
}
