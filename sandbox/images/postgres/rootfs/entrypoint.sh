#!/bin/sh
# PostgreSQL entrypoint: runs as root only long enough to own the data volume, then drops to
# the postgres user (resolved from the host's /etc/passwd, mounted read-only).
set -eu

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (env_file .env.production)}"
DB="${POSTGRES_DB:-aidocqa}"
BIN=/usr/lib/postgresql/15/bin
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA"
chown postgres:postgres "$(dirname "$PGDATA")" "$PGDATA"
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "entrypoint: initialising a new cluster in $PGDATA"
    pwfile=/tmp/.pgpass.init
    (umask 077; printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile")
    chown postgres "$pwfile"
    # Password (scram) auth over TCP; trust only on the container-private unix socket.
    as_postgres "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" \
        --auth-host=scram-sha-256 --auth-local=trust --encoding=UTF8 --locale=C --no-sync >/dev/null
    rm -f "$pwfile"
    echo "CREATE DATABASE \"$DB\";" | as_postgres "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
    echo "entrypoint: created database $DB"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" \
    -c listen_addresses=127.0.0.1 -c port=5433 -c unix_socket_directories=/tmp
