"""The batch inbox: files dropped into LEDGERQ_BATCH_INBOX_DIR become batches of the
configured finance user (LEDGERQ_BATCH_INBOX_USER).

Unlike the other scheduler jobs this one does the work itself, because the work is
filesystem work on the scheduler's host (workers may run elsewhere): it claims the
file, checks it as a whole and stores its bytes in PostgreSQL exactly as an HTTP
upload would; validating the lines and applying them happens in the `batches` actors.

A file is never dropped silently and never ingested twice:
- it is claimed by an atomic rename into `processing/` (a second scheduler, or this one
  on its next tick, cannot claim it again), under a PostgreSQL advisory lock so only one
  scheduler scans at a time;
- once its batch is committed it moves to `processed/` (with `<name>.batch.txt` naming
  the batch); a file that cannot be a batch (bad header, over a limit, a duplicate of a
  live batch's content) moves to `rejected/` with `<name>.error.txt` saying why;
- a crash between claim and move leaves it in `processing/`: the next scan looks it up
  by content and filename, and finishes the move or records it, never both;
- the batch's SHA-256 uniqueness refuses the same content a second time anyway.

Files whose name starts with `.` or ends in `.part`, `.tmp` or `~` are being written and
left alone, as is any file modified in the last LEDGERQ_BATCH_INBOX_SETTLE_SECONDS.
A name ending in `.atomic.csv` makes the batch atomic.

A symbolic link is never followed (the link itself moves to `rejected/`, and files are
opened with O_NOFOLLOW, so a link swapped in after the check is refused too): whoever
may drop files must not make the scheduler read /etc/passwd. Error files say what is
wrong without quoting the file: the person reading rejected/ may not be its author.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import exc as sa_exc

from db.auth import repository as users_repo
from db.batches import repository as batches_repo
from db.batches import service as batches_service
from db.batches.format import FileRejected
from db.core.config import Settings
from db.core.errors import DomainError
from db.core.logs import get_logger
from db.core.principal import Principal
from db.ops import advisory_locks
from db.session import get_engine, unit_of_work

log = get_logger(__name__)

SUBDIRS = ("processing", "processed", "rejected")
IN_FLIGHT_SUFFIXES = (".part", ".tmp", "~")
INBOX_LOCK_KEY = 1  # second key of the advisory lock, under batches_repo.BATCH_LOCK_CLASS
READ_BYTES = 1024 * 1024
NOT_FOLLOWED = "a symbolic link, not a file: links are never followed"


def scan_inbox(settings: Settings) -> int:
    """One pass over the inbox; returns how many files were handled."""
    if not settings.batch_inbox_dir:
        return 0
    inbox = Path(settings.batch_inbox_dir)
    for sub in SUBDIRS:
        (inbox / sub).mkdir(parents=True, exist_ok=True)
    with get_engine(settings).connect() as lock_connection:
        got = advisory_locks.try_lock(lock_connection, batches_repo.BATCH_LOCK_CLASS, INBOX_LOCK_KEY)
        lock_connection.commit()
        if not got:
            return 0  # another scheduler is scanning
        try:
            principal = _inbox_principal(settings)
            if principal is None:
                return 0
            handled = 0
            # Left in processing/ by a crash: this process holds the lock, so nobody else is on them.
            for path in sorted((inbox / "processing").iterdir()):
                if path.is_symlink() or path.is_file():
                    _handle(path, inbox, principal, settings, recovered=True)
                    handled += 1
            for path in sorted(inbox.iterdir()):
                if path.is_symlink() and not _in_flight(path.name):
                    _reject(path, inbox, NOT_FOLLOWED)
                    handled += 1
                    continue
                if not _ready(path, settings):
                    continue
                claimed = inbox / "processing" / path.name
                try:
                    os.rename(path, claimed)  # atomic on one filesystem: the claim
                    os.utime(claimed)  # its mtime is now the claim's time (see _handle)
                except FileNotFoundError:
                    continue
                _handle(claimed, inbox, principal, settings, recovered=False)
                handled += 1
            return handled
        finally:
            advisory_locks.unlock(lock_connection, batches_repo.BATCH_LOCK_CLASS, INBOX_LOCK_KEY)
            lock_connection.commit()


def _in_flight(name: str) -> bool:
    return name.startswith(".") or name.endswith(IN_FLIGHT_SUFFIXES)


def _ready(path: Path, settings: Settings) -> bool:
    try:
        status = path.lstat()  # lstat: a link is not the file it points to
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(status.st_mode) or _in_flight(path.name):
        return False
    return time.time() - status.st_mtime >= settings.batch_inbox_settle_s


def _inbox_principal(settings: Settings) -> Principal | None:
    with unit_of_work(settings) as uow:
        user = users_repo.by_login(uow.session, settings.batch_inbox_user or "")
        if user is None or not user.is_active or user.role not in ("finance", "admin"):
            # Files stay where they are (nothing is dropped) until the setting is fixed.
            log.error(
                "inbox.no_user",
                username=settings.batch_inbox_user,
                hint="LEDGERQ_BATCH_INBOX_USER must name an active finance or admin user",
            )
            return None
        return Principal(id=user.id, role=user.role, username=user.username)


def _chunks(path: Path) -> Iterator[bytes]:
    # O_NOFOLLOW: a link put in the file's place after it was checked fails here (ELOOP);
    # O_NONBLOCK: a FIFO swapped in cannot hang the scan; only regular files are read.
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise FileRejected(NOT_FOLLOWED if path.is_symlink() else f"cannot open: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise FileRejected("not a regular file")
        while chunk := handle.read(READ_BYTES):
            yield chunk


def _handle(path: Path, inbox: Path, principal: Principal, settings: Settings, *, recovered: bool) -> None:
    from workers.batches import send_next_step

    name = path.name
    try:
        upload = batches_service.scan_csv(lambda: _chunks(path), settings)
    except FileRejected as error:
        _reject(path, inbox, error.summary)
        return
    mode = "atomic" if name.lower().endswith(".atomic.csv") else "independent"
    try:
        with unit_of_work(settings) as uow:
            if recovered:
                # A crash between recording the batch and moving the file: this file's
                # batch is live, from the inbox, of this name, and created after the
                # claim. Anything older (a failed or cancelled batch of the same content,
                # or a live one from before the claim) is not this file's.
                claimed_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                earlier = batches_repo.live_by_content(uow.session, upload.sha256)
                if (
                    earlier is not None
                    and earlier.source == "inbox"
                    and earlier.filename == name
                    and earlier.created_at >= claimed_at
                ):
                    _move(path, inbox / "processed", name, note=f"batch {earlier.id}\n")
                    return
            submitted = batches_service.submit(
                uow.session,
                principal,
                batches_service.BatchRequest(mode=mode, filename=name, source="inbox"),
                upload,
                idempotency_key=None,
                settings=settings,
            )
            batch = submitted.record
            send_next_step(uow, batch)
    except DomainError as error:  # a duplicate of a live batch, a limit, a bad header
        detail = f" {error.details}" if error.details else ""
        _reject(path, inbox, f"{error.code}: {error.message}{detail}")
        return
    except sa_exc.DataError:  # a value PostgreSQL refuses: retrying cannot help
        _reject(path, inbox, "a value in the file cannot be stored (out of range or not text)")
        return
    except Exception as error:  # noqa: BLE001 - database down: keep the file in processing/, retry next tick
        log.error("inbox.failed", file=name, error=str(error)[:300])
        return
    _move(path, inbox / "processed", name, note=f"batch {batch.id}\nstatus {batch.status}\n")
    log.info("inbox.ingested", file=name, batch_id=str(batch.id), status=batch.status)


def _free_name(directory: Path, name: str) -> Path:
    target = directory / name
    counter = 1
    while target.exists():
        target = directory / f"{name}.{counter}"
        counter += 1
    return target


def _move(path: Path, directory: Path, name: str, *, note: str) -> Path:
    target = _free_name(directory, name)
    os.rename(path, target)
    (directory / f"{target.name}.batch.txt").write_text(note)
    return target


def _reject(path: Path, inbox: Path, reason: str) -> None:
    target = _free_name(inbox / "rejected", path.name)
    os.rename(path, target)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    (inbox / "rejected" / f"{target.name}.error.txt").write_text(f"{stamp} rejected: {reason}\n")
    log.warning("inbox.rejected", file=path.name, reason=reason[:300])
