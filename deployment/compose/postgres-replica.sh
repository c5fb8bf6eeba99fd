#!/bin/sh
# Entrypoint of the compose stack's `postgres-replica` (run as the postgres user): on an
# empty data directory, copy the primary with pg_basebackup (its WAL streamed alongside,
# the standby configuration written with -R, on the slot the primary's init created),
# then run PostgreSQL as a hot standby that keeps streaming from it. Restarts reuse the
# copy. Extra arguments go to postgres.
set -eu
secrets="${LEDGERQ_SECRETS:-/run/ledgerq-secrets}"
primary="${PRIMARY_HOST:-db}"
port="${PRIMARY_PORT:-5432}"
PGPASSWORD="$(cat "$secrets/replication_password")"
export PGPASSWORD
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  rm -rf "$PGDATA"
  until pg_basebackup --host="$primary" --port="$port" --username=replicator --pgdata="$PGDATA" \
      --wal-method=stream --write-recovery-conf --slot=ledgerq_replica --checkpoint=fast; do
    echo "postgres-replica: pg_basebackup from $primary:$port failed; retrying in 5 s" >&2
    rm -rf "$PGDATA"
    sleep 5
  done
fi
unset PGPASSWORD  # -R wrote the connection, password included, into postgresql.auto.conf
exec postgres "$@"
