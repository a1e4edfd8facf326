#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it; Playwright's own browser
# download cannot work here). The tests skip themselves when /usr/bin/chromium is missing.
set -euo pipefail
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "ci: chromium could not be installed; browser tests are skipped"
fi
[ -x /usr/bin/chromium ] && echo "ci: $(/usr/bin/chromium --version 2>/dev/null || echo chromium present)"
exit 0
