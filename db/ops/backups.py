"""`ledgerq backup` / `ledgerq restore`: pg_dump and pg_restore, and verify after every
restore (deployment/README.md, "Backup and restore").

- The dump is PostgreSQL's custom format (`pg_dump -Fc`): compressed, restorable table
  by table, and consistent (one snapshot), taken while the stack runs.
- It is written to `<file>.partial` and renamed when complete, so a file with the final
  name is always a whole dump.
- The password travels in PGPASSWORD, never on a command line (`ps` shows those).
- The client tools are chosen to match the server: the first pg_dump/pg_restore (on
  PATH, then the embedded server's, `ledgerq up`) whose major version is at least the
  server's, since an older pg_dump refuses a newer server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool


class BackupError(Exception):
    """A dump or restore that did not happen; the message says why."""


@dataclass(frozen=True)
class Connection:
    env: dict[str, str]  # PG* variables for the client tools
    url: str  # SQLAlchemy URL (for our own checks)


def connection(database_url: str) -> Connection:
    url = make_url(database_url)
    env = {
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGDATABASE": url.database or "postgres",
    }
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if key in url.query:
            env[f"PG{key.upper()}"] = str(url.query[key])
    host = url.query.get("host")  # a Unix socket directory (the embedded server)
    if host:
        env["PGHOST"] = str(host)
    return Connection(env=env, url=database_url)


def _major(binary: str) -> int | None:
    try:
        output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    found = re.search(r"(\d+)(?:\.\d+)?", output)
    return int(found.group(1)) if found else None


def _candidates(tool: str) -> list[str]:
    found = [path for path in [shutil.which(tool)] if path]
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / tool
        if bundled.exists():
            found.append(str(bundled))
    except ImportError:
        pass
    return found


def server_major(database_url: str) -> int:
    engine = create_engine(database_url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
    except OperationalError as error:
        raise BackupError(f"cannot connect to the database: {error.orig}") from None
    finally:
        engine.dispose()


def find_tool(tool: str, at_least: int) -> str:
    seen = []
    for candidate in _candidates(tool):
        major = _major(candidate)
        seen.append(f"{candidate} ({major})")
        if major is not None and major >= at_least:
            return candidate
    raise BackupError(
        f"no {tool} of PostgreSQL {at_least} or newer found (tried: {', '.join(seen) or 'none'}); "
        f"install the PostgreSQL {at_least} client tools"
    )


def _run(argv: list[str], conn: Connection) -> None:
    result = subprocess.run(argv, env={**os.environ, **conn.env}, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed (exit {result.returncode}):\n{result.stderr.strip()}")


def dump(database_url: str, target: Path) -> Path:
    """A consistent custom-format dump of the database into `target`."""
    conn = connection(database_url)
    pg_dump = find_tool("pg_dump", server_major(database_url))
    partial = target.with_name(target.name + ".partial")
    try:
        _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}"], conn)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def user_tables(database_url: str) -> list[str]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            )
    finally:
        engine.dispose()


def restore(source: Path, database_url: str, *, clean: bool) -> None:
    """Restore `source` into the database. Refuses a database that has tables unless
    `clean` (then every object in the dump is dropped and recreated first)."""
    if not source.is_file():
        raise BackupError(f"{source}: no such file")
    major = server_major(database_url)  # also: can we connect at all
    existing = user_tables(database_url)
    if existing and not clean:
        raise BackupError(
            f"the target database is not empty ({len(existing)} tables); restore into a new database, "
            "or pass --clean to replace what is there"
        )
    conn = connection(database_url)
    pg_restore = find_tool("pg_restore", major)
    argv = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    if clean:
        argv += ["--clean", "--if-exists"]
    _run([*argv, f"--dbname={conn.env['PGDATABASE']}", str(source)], conn)


def schema_revisions(database_url: str) -> set[str]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()
