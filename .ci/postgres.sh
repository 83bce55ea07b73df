#!/usr/bin/env bash
# Start a throw-away PostgreSQL (Debian's packages) for the service tests and print its SQLAlchemy URL.
# Installs postgresql with apt-get when it is missing. Prints nothing (and exits 0) when it cannot start one;
# the PostgreSQL variants of the tests then skip and say so.
set -uo pipefail
PORT="${LABLENS_PG_PORT:-54329}"
DIR="${LABLENS_PG_DIR:-/tmp/lablens-pg-$PORT}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -z "$BIN" ]; then
  (apt-get install -y -q postgresql >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1)) || exit 0
  BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -n "$BIN" ] || exit 0
fi
RUN=()
if [ "$(id -u)" = "0" ]; then RUN=(runuser -u postgres --); fi
if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  rm -rf "$DIR" && mkdir -p "$DIR" && chown -R postgres "$DIR" 2>/dev/null
  "${RUN[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres -A trust >/dev/null 2>&1 || exit 0
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null 2>&1 || exit 0
fi
"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='lablens_test'" \
  | grep -q 1 || "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres lablens_test || exit 0
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/lablens_test"
