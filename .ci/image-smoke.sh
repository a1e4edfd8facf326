#!/usr/bin/env bash
# Smoke test of what the Docker image does, without a Docker engine: the same install (the
# hash-pinned requirements.lock, then the project without dependencies or downloads, from a copy
# laid out as the image's /app), the same environment (CDS_ENV=production, ...), the migration
# step of a deploy, the same gunicorn command, then /health, /ready and a refused unsigned call.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
mkdir -p "$work/app/instance" "$work/metrics"
cp -r "$root/pyproject.toml" "$root/README.md" "$root/requirements.lock" "$root/cds_service" "$root/knowledge" \
  "$root/safety" "$root/gunicorn.conf.py" "$work/app/"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --no-deps --require-hashes -r "$work/app/requirements.lock"
"$work/venv/bin/pip" install -q --no-deps --no-build-isolation --no-index "$work/app"
echo '{"keys": []}' > "$work/jwks.json"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$work/app"
CDS_DATABASE_URL="sqlite:///$work/app/instance/cds.db" "$work/venv/bin/cds-service" migrate >/dev/null  # the Job
CDS_ENV=production CDS_PUBLIC_BASE_URL="http://127.0.0.1:$port" CDS_KNOWLEDGE_DIR="$work/app/knowledge" CDS_DATABASE_URL="sqlite:///$work/app/instance/cds.db" \
PROMETHEUS_MULTIPROC_DIR="$work/metrics" CDS_JOURNAL_DIR="$work/journal" CDS_TRUSTED_ISSUERS="{\"https://ehr.example.org\": \"$work/jwks.json\"}" \
  "$work/venv/bin/gunicorn" --config gunicorn.conf.py --bind "127.0.0.1:$port" "cds_service:create_app()" \
  > "$work/server.log" 2>&1 &
pid=$!
status() { # method url -> the HTTP status, or 000 when nothing answers
  python3 - "$1" "$2" <<'PY'
import sys, urllib.error, urllib.request
method, url = sys.argv[1:]
request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method,
                                 headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(request, timeout=5).status)
except urllib.error.HTTPError as error:
    print(error.code)
except OSError:
    print("000")
PY
}
for _ in $(seq 100); do [ "$(status GET "http://127.0.0.1:$port/health")" = 200 ] && break; sleep 0.2; done
check() { # expected-status method path
  got=$(status "$2" "http://127.0.0.1:$port$3")
  [ "$got" = "$1" ] || { echo "image smoke: $2 $3 answered $got, expected $1"; cat "$work/server.log"; exit 1; }
}
check 200 GET /health
check 200 GET /ready
check 200 GET /openapi.json
check 200 GET /guidance/
check 200 GET /guidance/hazard-log
check 200 GET /fhir/metadata
check 401 GET /cds-services
check 401 POST /cds-services/acr-all-staging-order-select
echo "image smoke: ok (health, ready, OpenAPI, guidance pages, /fhir/, unsigned calls refused)"
