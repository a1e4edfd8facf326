#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1:5433 with database and user "cds".
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=${CDS_PG_DATA:-/tmp/cds-ci-pg}
if ! su postgres -s /bin/sh -c "$bin/pg_ctl -D $data status" >/dev/null 2>&1; then
  rm -rf "$data" && mkdir -p "$data" && chown postgres "$data"
  su postgres -s /bin/sh -c "$bin/initdb -D $data -A trust -U postgres" >/dev/null
  su postgres -s /bin/sh -c "$bin/pg_ctl -D $data -o '-p 5433 -k /tmp -c listen_addresses=127.0.0.1' -l $data/log -w start" >/dev/null
fi
psql -h 127.0.0.1 -p 5433 -U postgres -tc "SELECT 1 FROM pg_roles WHERE rolname='cds'" | grep -q 1 \
  || psql -h 127.0.0.1 -p 5433 -U postgres -c "CREATE ROLE cds LOGIN PASSWORD 'cds'" >/dev/null
psql -h 127.0.0.1 -p 5433 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='cds'" | grep -q 1 \
  || psql -h 127.0.0.1 -p 5433 -U postgres -c "CREATE DATABASE cds OWNER cds" >/dev/null
echo "ci: PostgreSQL ready on 127.0.0.1:5433"
