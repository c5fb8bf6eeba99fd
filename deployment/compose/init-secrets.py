"""Generate the compose stack's secrets once, into the `secrets` volume.

Run by the `secrets` service of deployment/docker-compose.yml before anything else.
Each file is written only if it does not exist yet, so restarts and `docker compose up`
again keep the same passwords (the database volume was initialised with them). For
production, replace this service with your secret manager's files (every ledgerq
setting accepts <VARIABLE>_FILE; deployment/README.md).

Usage: python init-secrets.py DIRECTORY
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote


def generate(directory: Path) -> list[str]:
    """Create the missing secret files in `directory`; return the names created."""
    directory.mkdir(parents=True, exist_ok=True)
    created = []

    def put(name: str, value: str) -> str:
        path = directory / name
        if not path.exists():
            # Created and written in one step, readable by the services' own users
            # (postgres, redis, grafana, ledgerq) that mount this volume read-only.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            with os.fdopen(descriptor, "w") as file:
                file.write(value + "\n")
            created.append(name)
        return path.read_text().strip()

    put("jwt_secret", secrets.token_urlsafe(48))
    db_password = put("postgres_password", secrets.token_urlsafe(24))
    redis_password = put("redis_password", secrets.token_urlsafe(24))
    # Read by redis-server as a config file, so the password is not on its command line.
    put("redis.conf", f"requirepass {redis_password}")
    put("grafana_admin_password", secrets.token_urlsafe(16))
    put("replication_password", secrets.token_urlsafe(24))  # postgres-replica's streaming role
    put("database_url", f"postgresql://ledgerq:{quote(db_password, safe='')}@db:5432/ledgerq")
    # The replica is a copy of the primary, roles included: the same user and password.
    put(
        "database_read_url",
        f"postgresql://ledgerq:{quote(db_password, safe='')}@postgres-replica:5432/ledgerq",
    )
    put("redis_url", f"redis://:{quote(redis_password, safe='')}@redis:6379/0")
    return created


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    made = generate(Path(sys.argv[1]))
    print(f"secrets: created {', '.join(made)}" if made else "secrets: all present, kept")
