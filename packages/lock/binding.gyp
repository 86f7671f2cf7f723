{
  "targets": [
    {
      "target_name": "blk_lock",
      "sources": ["native/blk_lock.c"],
      "cflags": ["-O2", "-Wall"],
      "conditions": [["OS=='win'", { "type": "none" }]]
    }
  ]
}
