{
  "targets": [
    {
      "target_name": "blk_native",
      "sources": ["native/addon.c", "native/lock.c", "native/io.c", "native/send.c"],
      "cflags": ["-O2", "-Wall"],
      "conditions": [["OS=='win'", { "type": "none" }]]
    }
  ]
}
