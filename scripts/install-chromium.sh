#!/bin/sh
# Debian's Chromium for the tests that open report.html in a real browser (tests/test_viewer.py;
# software WebGL, no GPU needed). Installed when the set-up runs as root with apt; otherwise
# says what to do. Never fails the build: the tests then say clearly what is missing.
if command -v chromium >/dev/null 2>&1 || [ -n "$IRON_CHROMIUM" ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium (the viewer's browser tests)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null 2>&1 || echo "note: could not install chromium; tests/test_viewer.py will fail"
else
    echo "note: install chromium (apt-get install chromium) or set IRON_CHROMIUM for the browser tests"
fi
exit 0
