"""The ledger's SQLite file: opening it, its schema migrations, and its transactions.

The base of :class:`wan_nb.store.Store` (see there for the crash and concurrency model): one
shared connection per process, reopened in a forked child and, read-only, whenever another
process wrote; every write is one ``BEGIN IMMEDIATE`` transaction; SQLite's errors become
:class:`~wan_nb.store_table.StoreError` s that say what to do (:mod:`wan_nb.store_open`).
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wan_nb.errors import ValidationError
from wan_nb.store_open import (ENV_VAR, check_version, explain, open_read_only,
                               read_only_text, why_read_only)
from wan_nb.store_table import STORED, SchemaVersionError, StoreError, StoreReadOnly

DEFAULT_ROOT = "wan_runs"
DB_NAME = "ledger.sqlite3"
VIDEOS_DIR = "videos"

# What v5 derives for the rows of older ledgers, all made on the size protocol: resolution
# and ratio from the size (reference §2's table as it stood), the usage's pixel size from the
# W*H it named (video_ratio in the old shape, size in wan2.6's). Frozen with the migration;
# also what a read-only older ledger shows for those columns (it cannot be migrated).
_SIZES_V5 = (("832*480", "480P", "16:9"), ("480*832", "480P", "9:16"), ("624*624", "480P", "1:1"),
             ("1280*720", "720P", "16:9"), ("720*1280", "720P", "9:16"),
             ("960*960", "720P", "1:1"), ("1088*832", "720P", "4:3"),
             ("832*1088", "720P", "3:4"), ("1920*1080", "1080P", "16:9"),
             ("1080*1920", "1080P", "9:16"), ("1440*1440", "1080P", "1:1"),
             ("1632*1248", "1080P", "4:3"), ("1248*1632", "1080P", "3:4"))
_USAGE_SIZE_V5 = "COALESCE(usage_video_ratio, usage_size)"
_NAMED_V5 = f"{_USAGE_SIZE_V5} GLOB '[0-9]*[*][0-9]*'"
DERIVED_V5: dict[str, str] = {
    "resolution": "CASE size " + " ".join(f"WHEN '{s}' THEN '{r}'" for s, r, _ in _SIZES_V5)
                  + " END",
    "ratio": "CASE size " + " ".join(f"WHEN '{s}' THEN '{a}'" for s, _, a in _SIZES_V5)
             + " END",
    "usage_width": f"CASE WHEN {_NAMED_V5} THEN CAST(substr({_USAGE_SIZE_V5}, 1, "
                   f"instr({_USAGE_SIZE_V5}, '*') - 1) AS INTEGER) END",
    "usage_height": f"CASE WHEN {_NAMED_V5} THEN CAST(substr({_USAGE_SIZE_V5}, "
                    f"instr({_USAGE_SIZE_V5}, '*') + 1) AS INTEGER) END",
}

# Migrations are frozen text: once released, a step never changes; add a new one instead.
# The list index + 1 is the schema version (PRAGMA user_version) the step leads to.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # v1: the core run table
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, experiment TEXT, variant TEXT,
            tags TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            model TEXT, prompt TEXT, negative_prompt TEXT, actual_prompt TEXT,
            size TEXT, width INTEGER, height INTEGER, tier TEXT, duration INTEGER, seed INTEGER,
            prompt_extend INTEGER, watermark INTEGER, audio_mode TEXT, audio_url TEXT,
            shot_type TEXT, fingerprint TEXT, request_json TEXT,
            task_id TEXT UNIQUE, request_id TEXT, status TEXT NOT NULL DEFAULT 'QUEUED',
            error_code TEXT, error_message TEXT,
            sent_at TEXT, submit_time TEXT, scheduled_time TEXT, end_time TEXT,
            usage_video_count INTEGER, usage_video_duration REAL, usage_video_ratio TEXT,
            usage_duration REAL, usage_size TEXT, usage_sr INTEGER,
            usage_input_video_duration REAL, usage_output_video_duration REAL, usage_json TEXT,
            cost_usd REAL, video_url TEXT, video_url_expires_at TEXT, video_path TEXT,
            video_sha256 TEXT, video_bytes INTEGER, video_fps REAL, video_frames INTEGER,
            video_duration REAL, has_audio INTEGER, download_error TEXT,
            backend TEXT, wan_nb_version TEXT)""",
        "CREATE INDEX runs_experiment ON runs(experiment, created_at)",
        "CREATE INDEX runs_status ON runs(status, created_at)",
        "CREATE INDEX runs_fingerprint ON runs(fingerprint)",
        "CREATE INDEX runs_created ON runs(created_at)",
    ),
    (  # v2: human ratings and notes; ownership so two kernels do not poll the same task
        "ALTER TABLE runs ADD COLUMN rating INTEGER",
        "ALTER TABLE runs ADD COLUMN notes TEXT",
        "ALTER TABLE runs ADD COLUMN owner TEXT",
        "ALTER TABLE runs ADD COLUMN owner_heartbeat TEXT",
        "CREATE INDEX runs_owner ON runs(owner) WHERE owner IS NOT NULL",
    ),
    (  # v3: the video file's mtime at download, so a changed file is noticed without hashing
        "ALTER TABLE runs ADD COLUMN video_mtime_ns INTEGER",
    ),
    (  # v4: reconciliation's sibling check reads the creates sent in a few minutes, not
        # every run without a task (cancelled, refused and failed creates pile up for ever)
        "CREATE INDEX runs_sent ON runs(sent_at)",
    ),
    (  # v5: the 2026 models' resolution + ratio protocol and their usage shape (issue 10);
        # older rows get theirs from their size (DERIVED_V5)
        "ALTER TABLE runs ADD COLUMN resolution TEXT",
        "ALTER TABLE runs ADD COLUMN ratio TEXT",
        "ALTER TABLE runs ADD COLUMN usage_ratio TEXT",
        "ALTER TABLE runs ADD COLUMN usage_width INTEGER",
        "ALTER TABLE runs ADD COLUMN usage_height INTEGER",
        "UPDATE runs SET " + ", ".join(f"{c} = {e}" for c, e in DERIVED_V5.items()),
    ),
    (  # v6: keep (1) or reject (0) beside the 1-5 rating, set from the gallery (issue 11)
        "ALTER TABLE runs ADD COLUMN keep INTEGER",
    ),
    (  # v7: the account's shared paces (creates per model, queries): the next free turn of
        # each, in the ledger's clock (epoch seconds), so kernels sharing the ledger share
        # the account's limits (issue 13; store_account.py)
        """CREATE TABLE account_slots (
            account TEXT NOT NULL, name TEXT NOT NULL, next_at REAL NOT NULL,
            PRIMARY KEY (account, name))""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class LedgerConnection:
    """The connection, the schema and the transactions of one ledger folder (a base of
    :class:`wan_nb.store.Store`, which documents its arguments)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 synchronous: str = "NORMAL", busy_timeout: float = 30.0,
                 clock: Callable[[], datetime] | None = None):
        chosen = root if root is not None else (os.environ.get(ENV_VAR) or DEFAULT_ROOT)
        self.root = Path(chosen).expanduser().absolute()
        self.db_path = self.root / DB_NAME
        self.videos_dir = self.root / VIDEOS_DIR
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValidationError([("synchronous", "synchronous must be 'NORMAL' or 'FULL', "
                                                   f"not {synchronous!r}")])
        self._synchronous = synchronous.upper()
        self._busy_ms = int(busy_timeout * 1000)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._pid = 0
        self._columns: frozenset[str] = frozenset(STORED)
        #: why this store cannot be written (None when it can); reading works either way
        self.read_only_reason: str | None = None
        self._ro_seen: tuple[Any, ...] = ()
        self._prepare_root()
        with self._lock:
            self._connect()

    @property
    def read_only(self) -> bool:
        """True when this process can read the ledger but not write it."""
        return self.read_only_reason is not None

    def _prepare_root(self) -> None:
        """Create the folders, or find out why they cannot be: a folder that cannot be
        created with no ledger in it is an error; an existing ledger that cannot be written
        is opened read-only."""
        exists = self.db_path.is_file()
        try:
            self.videos_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not exists:
                raise StoreError(
                    f"cannot create the run ledger in {self.root}: {exc.strerror or exc}. "
                    "Choose a folder you can write, e.g. connect(store='~/wan_runs') or "
                    f"the environment variable {ENV_VAR}") from None
        if exists:
            self.read_only_reason = self._why_read_only()

    def _why_read_only(self) -> str | None:
        return why_read_only(self.db_path)

    # -- what another ledger (store_pg.PgLedger) does its own way ---------------------------

    #: the driver's error for a broken unique key (caught by the writes)
    _integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    @staticmethod
    def _unique_column(exc: Exception) -> str | None:
        """Which unique column (run_id, task_id) a driver's integrity error is about."""
        return next((name for name in ("run_id", "task_id") if f"runs.{name}" in str(exc)),
                    None)

    def _serialize(self, con: Any, *key: Any) -> None:
        """Make the rest of this write transaction exclusive for ``key`` across processes.
        Nothing to do here: BEGIN IMMEDIATE already took SQLite's one write lock."""

    @property
    def _where(self) -> str:
        """The ledger as error messages name it."""
        return str(self.db_path)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection and schema -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The shared connection (opened lazily; reopened in a forked child)."""
        if self._con is not None and self._pid == os.getpid():
            if not self.read_only or self._ro_seen == self._files_signature():
                return self._con
            # a read-only connection may be `immutable` (it never sees a writer's commits):
            # reopened whenever the files changed, so readers never see stale rows
            self._con.close()
        # A connection inherited through fork() must not be used or closed in the child.
        self._con = None
        if self.read_only:
            self._ro_seen = self._files_signature()
            con = self._connect_read_only()
            self._con, self._pid = con, os.getpid()
            return con
        try:
            con = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot open") from exc
        try:
            con.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self._check_version(con)  # before WAL is set: a newer file stays as it is
            self._enable_wal(con)
            # In WAL mode NORMAL syncs at checkpoints, not at each commit: a killed process
            # (the kill -9 case) never loses or corrupts a committed transaction; only an OS
            # crash or power cut can roll back the last few commits, never corrupt the file.
            # Tasks lost that way are found again by the job layer through the list endpoint.
            # Pass synchronous="FULL" to fsync every commit.
            con.execute(f"PRAGMA synchronous = {self._synchronous}")
            self._migrate(con)
        except sqlite3.DatabaseError as exc:
            con.close()
            raise self._error(exc, "cannot use") from exc
        except BaseException:
            con.close()
            raise
        self._con, self._pid = con, os.getpid()
        return con

    def _check_version(self, con: sqlite3.Connection) -> int:
        return check_version(con, self.db_path, SCHEMA_VERSION)

    def _files_signature(self) -> tuple[Any, ...]:
        """Size and mtime of the ledger and its WAL (what changes when someone writes)."""
        out: list[Any] = []
        for path in (self.db_path, self.db_path.with_name(self.db_path.name + "-wal")):
            try:
                st = path.stat()
                out += [st.st_size, st.st_mtime_ns]
            except OSError:
                out += [None, None]
        return tuple(out)

    def _connect_read_only(self) -> sqlite3.Connection:
        assert self.read_only_reason is not None
        con, names, version = open_read_only(self.db_path, self._busy_ms, SCHEMA_VERSION,
                                             self.read_only_reason)
        if version < SCHEMA_VERSION:
            # an older ledger cannot be migrated read-only: missing columns read as empty
            self._columns = frozenset(STORED) & names
        return con

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        return explain(exc, self.db_path, doing, self.read_only_reason)

    def _read_only_text(self, why: str) -> str:
        return read_only_text(self.db_path, why)

    def _enable_wal(self, con: sqlite3.Connection) -> None:
        """Switch to WAL once per file. The switch needs an exclusive lock, and SQLite can
        answer SQLITE_BUSY at once (without the busy handler) while another process opens the
        same new file, so retry within the busy timeout."""
        deadline = time.monotonic() + self._busy_ms / 1000
        while True:
            try:
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.04)

    def _migrate(self, con: sqlite3.Connection) -> None:
        """Bring the file to SCHEMA_VERSION in one transaction (another process may race)."""
        if con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(f"the ledger {self.db_path} has schema version "
                                         f"{version}; this wan_nb knows up to {SCHEMA_VERSION}")
            for step in MIGRATIONS[version:]:
                for statement in step:
                    con.execute(statement)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with the write lock up front (no upgrade deadlocks).

        SQLite errors inside it become a :class:`StoreError` that says what to do (damaged
        file, full disk, read-only); the transaction is rolled back, nothing half-written.
        """
        if self.read_only_reason is not None:
            raise StoreReadOnly(self._read_only_text(self.read_only_reason))
        with self._lock:
            con = self._connect()
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise self._error(exc, "could not write to") from exc
            try:
                yield con
            except BaseException as exc:
                self._rollback(con)
                if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                        exc, sqlite3.IntegrityError):
                    raise self._error(exc, "could not write to") from exc
                raise
            try:
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(con)
                raise self._error(exc, "could not commit to") from exc

    @staticmethod
    def _rollback(con: sqlite3.Connection) -> None:
        # SQLite may already have rolled back by itself (a full disk, an I/O error)
        if con.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._connect().execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._error(exc, "could not read") from exc

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def close(self) -> None:
        """Close the connection (the store reopens by itself if used again)."""
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValidationError([("clock", "the store clock must return aware datetimes")])
        return now
