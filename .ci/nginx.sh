#!/usr/bin/env bash
# Debian's nginx for the multi-instance tests (they run their own nginx on a loopback port).
# The package's own service is not started: policy-rc.d refuses it during the install.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  echo "ci: nginx present"; exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "ci: nginx missing and cannot be installed here; the multi-instance tests will be skipped"; exit 0
fi
own_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
fi
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null) \
  || echo "ci: nginx could not be installed; the multi-instance tests will be skipped"
if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
echo "ci: nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///')"
