#!/bin/sh
# Best effort: tcmalloc makes CPU training steps about 2x faster than glibc malloc
# (platform-notes.md). `iron` preloads it automatically when present. Never fails the build.
if ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing libtcmalloc-minimal4 (faster CPU training)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4) \
        >/dev/null 2>&1 || echo "note: could not install tcmalloc; training runs slower"
else
    echo "note: install libtcmalloc-minimal4 (apt) for about 2x faster CPU training"
fi
exit 0
