"""Opening the ledger file, and saying what went wrong with it (used by :mod:`wan_nb.store`).

Split from the store so that it keeps the ledger's logic (runs, transactions, queries) and
this module the file system's: read-only files and folders, damaged files, full disks.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from wan_nb._version import __version__
from wan_nb.store_table import (LedgerDamaged, SchemaVersionError, StoreError, StoreFull,
                                StoreReadOnly)

ENV_VAR = "WAN_NB_STORE"


def why_read_only(db_path: Path) -> str | None:
    """Why this process cannot write the ledger at ``db_path`` (None when it can)."""
    if not os.access(db_path, os.W_OK):
        return f"no permission to write the file {db_path}"
    # WAL mode creates and deletes the -wal/-shm files beside the ledger
    if not os.access(db_path.parent, os.W_OK):
        return f"no permission to write in the folder {db_path.parent}"
    return None


def read_only_text(db_path: Path, why: str) -> str:
    return (f"the ledger {db_path} is read-only here ({why}): runs can be read, but nothing "
            "can be recorded. Fix the permissions, or copy the store folder somewhere "
            f"writable and open that (connect(store=...) or {ENV_VAR})")


def check_version(con: sqlite3.Connection, db_path: Path, known: int) -> int:
    """The file's schema version; a newer one than ``known`` is refused (file untouched)."""
    version = int(con.execute("PRAGMA user_version").fetchone()[0])
    if version > known:
        raise SchemaVersionError(
            f"the ledger {db_path} has schema version {version}, but this wan_nb "
            f"({__version__}) knows versions up to {known}; upgrade wan_nb "
            "(the file was not modified)")
    return version


def explain(exc: sqlite3.Error, db_path: Path, doing: str,
            read_only: str | None = None) -> StoreError:
    """A StoreError that says what happened to the ledger and what to do about it."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (11, 26) or "malformed" in text or "not a database" in text:
        # SQLITE_CORRUPT, SQLITE_NOTADB: never reset or "repair" it here, say what to do
        name = db_path.name
        return LedgerDamaged(
            f"the ledger {db_path} is damaged ({text}); wan_nb {doing} it and did not change "
            f"it. Your videos in {db_path.parent / 'videos'} are untouched. To go on, close "
            f"wan_nb and move the file aside with its {name}-wal and -shm files (e.g. rename "
            f"it to {name}.damaged), then restore a backup, or salvage the readable rows "
            f"with: sqlite3 {name}.damaged .recover | sqlite3 {name}")
    if primary == 13 or "disk is full" in text:  # SQLITE_FULL
        return StoreFull(
            f"the disk holding the ledger {db_path} is full ({text}): wan_nb {doing} it. "
            "Runs recorded so far are safe; free some space and it goes on by itself")
    if primary == 8 or "readonly" in text:  # SQLITE_READONLY
        return StoreReadOnly(read_only_text(db_path, read_only or why_read_only(db_path)
                                            or text))
    if primary in (5, 6) or "locked" in text:  # SQLITE_BUSY, SQLITE_LOCKED
        return StoreError(f"the ledger {db_path} stayed locked: {text}")
    return StoreError(f"wan_nb {doing} the ledger {db_path}: {text}")


def open_read_only(db_path: Path, busy_ms: int, known: int,
                   why: str) -> tuple[sqlite3.Connection, set[str], int]:
    """Open a ledger this process cannot write: (connection, its run columns, its version).

    ``mode=ro`` reads the WAL too, but SQLite (>= 3.22) needs the ``-shm`` file to exist or
    be creatable. When it cannot be (read-only folder; a clean shutdown removed it) and there
    is no WAL content, ``immutable=1`` reads the main file without locks or shared memory:
    correct, since nothing is in a WAL. With WAL content that cannot be read we refuse rather
    than show stale rows.
    """
    uri = db_path.as_uri()
    wal = db_path.with_name(db_path.name + "-wal")
    attempts = [f"{uri}?mode=ro"]
    if not wal.exists() or wal.stat().st_size == 0:
        attempts.append(f"{uri}?mode=ro&immutable=1")
    last: sqlite3.Error | None = None
    for target in attempts:
        con = None
        try:
            con = sqlite3.connect(target, uri=True, isolation_level=None,
                                  check_same_thread=False)
            con.execute(f"PRAGMA busy_timeout = {busy_ms}")
            version = check_version(con, db_path, known)
            names = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
            con.execute("SELECT count(*) FROM runs WHERE 0").fetchall()
        except SchemaVersionError:
            if con is not None:
                con.close()
            raise
        except sqlite3.DatabaseError as exc:
            if con is not None:
                con.close()
            if not isinstance(exc, sqlite3.OperationalError):  # damaged: no retry helps
                raise explain(exc, db_path, "cannot read", why) from exc
            last = exc
            continue
        return con, names, version
    raise StoreError(
        f"cannot read the ledger {db_path}: {last}. It is read-only here ({why}) and its "
        f"write-ahead log {wal.name} holds changes that SQLite can only read with write "
        "access to the folder; open it once where it is writable (or copy the folder) so the "
        "log is merged into the file") from last
