#!/bin/sh
# The compose primary's first start (mounted into /docker-entrypoint-initdb.d, so the
# postgres image runs it once, on an empty data directory): a replication role and a
# physical slot for `postgres-replica`, and the pg_hba.conf line that lets it stream.
# The password is the generated `replication_password` secret (compose/init-secrets.py).
# A primary initialised before the replica existed: run this once by hand, then reload
# (deployment/README.md, "Replica reads").
set -e
secrets="${LEDGERQ_SECRETS:-/run/ledgerq-secrets}"
password="$(cat "$secrets/replication_password")"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" --set password="$password" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
-- The slot keeps the WAL the replica has not received yet (capped on the primary by
-- max_slot_wal_keep_size, so a replica gone for good cannot fill its disk).
SELECT pg_create_physical_replication_slot('ledgerq_replica');
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
