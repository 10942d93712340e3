"""The durable run ledger: one SQLite row per generation run, plus the downloaded videos.

Layout under the store root (argument > env ``WAN_NB_STORE`` > ``./wan_runs``, beside the
notebook so the Jupyter server can serve the videos by relative path)::

    ROOT/ledger.sqlite3     the runs table (WAL mode)
    ROOT/videos/            downloaded MP4s; ``video_path`` is relative to ROOT

Crash and concurrency model: every write is one ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction,
so a kernel killed with ``kill -9`` leaves each row either before or after a write, never half
way; several processes (two kernels on one store) serialise on SQLite's write lock and wait up
to ``busy_timeout``. :meth:`Store.transition` and :meth:`Store.claim` are compare-and-set, so
two processes racing for the same run get exactly one winner. WAL needs a local file system
(not NFS/SMB).

A ledger this process cannot write (a read-only file, folder or mount) is opened read-only:
``runs()``, ``get_run()`` and ``to_dataframe()`` work, every write raises
:class:`StoreReadOnly` saying why. A damaged file raises :class:`LedgerDamaged` with what to
do; the store never resets or rewrites it.

Example::

    store = Store("wan_runs")
    rid = store.insert_run(experiment="cats", model="wan2.5-t2v-preview", prompt="a cat")
    if store.transition(rid, expect="QUEUED", status="SUBMITTING",
                        sent_at=datetime.now(timezone.utc)):
        ...  # send the create request
    df = store.to_dataframe(experiment="cats")
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from wan_nb._version import __version__
from wan_nb.errors import ValidationError
from wan_nb.store_open import (ENV_VAR, check_version, explain, open_read_only,
                               read_only_text, why_read_only)
from wan_nb.store_table import (
    AUDIO_MODES,
    COLUMNS,
    DERIVED,
    KIND,
    STORED,
    TIERS,
    LedgerDamaged,
    RunNotFound,
    SchemaVersionError,
    StoreError,
    StoreFull,
    StoreReadOnly,
    read_export,
    typed_frame,
    utc_text,
    write_bundle,
    write_table,
)
from wan_nb.statuses import FINAL_STATUSES, STATUSES
from wan_nb.store_video import VideoCheck, check_video_file

__all__ = ["AUDIO_MODES", "COLUMNS", "FINAL_STATUSES", "SCHEMA_VERSION", "STATUSES", "TIERS",
           "LedgerDamaged", "RunNotFound", "SchemaVersionError", "Store", "StoreError",
           "StoreFull", "StoreReadOnly", "VideoCheck", "read_export"]

DEFAULT_ROOT = "wan_runs"
DB_NAME = "ledger.sqlite3"
VIDEOS_DIR = "videos"

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
)
SCHEMA_VERSION = len(MIGRATIONS)
INSERTABLE = tuple(c for c in STORED if c != "updated_at")
UPDATABLE = tuple(c for c in STORED if c not in ("run_id", "created_at", "updated_at"))
_INT64 = (-(2**63), 2**63 - 1)


def _new_run_id(created: datetime) -> str:
    return created.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S-") + secrets.token_hex(4)


def _allowed(names: Sequence[str]) -> str:
    return ", ".join(names)


class Store:
    """The run ledger. Safe to share between threads, processes and killed kernels.

    ``Store(root=None, *, synchronous="NORMAL", busy_timeout=30.0, clock=None)``: ``root``
    defaults to ``$WAN_NB_STORE`` or ``./wan_runs``; ``clock`` returns the aware "now" (tests).
    """

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

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __enter__(self) -> Store:
        return self

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

    # -- validation ------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValidationError([("clock", "the store clock must return aware datetimes")])
        return now

    def _encode(self, fields: dict[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
        """Check and convert user values to SQLite values; all problems in one error."""
        errors: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in allowed:
                why = (f"{name!r} is derived ({DERIVED[name]}) and cannot be written"
                       if name in DERIVED else f"unknown field {name!r}")
                errors.append((name, f"{why}; allowed fields: {_allowed(allowed)}"))
                continue
            try:
                out[name] = self._encode_one(name, KIND[name], value)
            except (TypeError, ValueError) as exc:
                errors.append((name, f"{name}: {exc}"))
        if errors:
            raise ValidationError(errors)
        if "video_path" in out and "video_mtime_ns" not in out:
            # stamped whenever the path is recorded (after the download's atomic rename), so
            # check_video() can tell an untouched file by size and mtime, without hashing
            out["video_mtime_ns"] = self._mtime_ns(out["video_path"])
        return out

    def _mtime_ns(self, rel: str | None) -> int | None:
        if rel is None:
            return None
        try:
            return (self.root / rel).stat().st_mtime_ns
        except OSError:
            return None

    def _encode_one(self, name: str, kind: str, value: Any) -> Any:
        if value is None or value is pd.NA or value is pd.NaT:
            if name in ("status", "tags"):
                raise ValueError("cannot be empty")
            return None
        if kind in ("text", "cat", "path"):
            if kind == "path" and isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {type(value).__name__}")
            if name == "status" and value not in STATUSES:
                raise ValueError(f"unknown status {value!r}; allowed: {_allowed(STATUSES)}")
            if name == "audio_mode" and value not in AUDIO_MODES:
                raise ValueError(f"{value!r} is not one of {_allowed(AUDIO_MODES)}")
            if kind == "path":
                return self._relative_video_path(value)
            return value or None  # empty text is stored as missing (CSV cannot tell them apart)
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"expected an integer, got {type(value).__name__}")
            if not _INT64[0] <= int(value) <= _INT64[1]:
                raise ValueError(f"{value} does not fit in 64 bits")
            return int(value)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"expected a number, got {type(value).__name__}")
            return None if math.isnan(float(value)) else float(value)
        if kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"expected True or False, got {type(value).__name__}")
            return int(bool(value))
        if kind == "time":
            if not isinstance(value, datetime):
                raise TypeError(f"expected a timezone-aware datetime, got {type(value).__name__}")
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError("naive datetime; pass a timezone-aware one "
                                 "(e.g. datetime.now(timezone.utc))")
            return utc_text(value)
        if kind == "tags":
            if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
                raise TypeError(f"expected a list of strings, got {type(value).__name__}")
            items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
            if not all(isinstance(t, str) for t in items):
                raise TypeError("every tag must be a string")
            return json.dumps(items, ensure_ascii=False)
        if kind == "json":
            if isinstance(value, str):
                json.loads(value)  # ValueError if it is not JSON
                return value
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        raise AssertionError(kind)  # pragma: no cover

    def _relative_video_path(self, value: str) -> str:
        path = Path(value)
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(self.root.resolve())
            except ValueError:
                raise ValueError(f"{value} is outside the store root {self.root}") from None
        posix = PurePosixPath(path.as_posix())
        if ".." in posix.parts:
            raise ValueError(f"{value} points outside the store root")
        return str(posix)

    # -- writes ----------------------------------------------------------------------------

    def _prepare_insert(self, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
        row = self._encode(fields, INSERTABLE)
        created = fields.get("created_at") or now
        row.setdefault("created_at", utc_text(now))
        row["updated_at"] = utc_text(now)
        row.setdefault("status", "QUEUED")
        row.setdefault("tags", "[]")
        row.setdefault("wan_nb_version", __version__)
        if "run_id" not in row:
            row["run_id"] = _new_run_id(created)
            row["_generated"] = True
        return row

    def _insert_rows(self, con: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[str]:
        ids = []
        for row in rows:
            generated = row.pop("_generated", False)
            names = list(row)
            sql = (f"INSERT INTO runs ({', '.join(names)}) "
                   f"VALUES ({', '.join('?' * len(names))})")
            for _attempt in range(20):
                try:
                    con.execute(sql, [row[n] for n in names])
                    break
                except sqlite3.IntegrityError as exc:
                    if generated and "runs.run_id" in str(exc):  # same second, same 32 bits
                        row["run_id"] = row["run_id"][:15] + secrets.token_hex(4)
                        continue
                    raise self._integrity(exc, row) from exc
            else:
                raise StoreError("could not find a free run_id")  # pragma: no cover
            ids.append(row["run_id"])
        return ids

    def _integrity(self, exc: sqlite3.IntegrityError, row: dict[str, Any]) -> ValidationError:
        for name in ("run_id", "task_id"):
            if f"runs.{name}" in str(exc):
                return ValidationError([(name, f"{name} {row.get(name)!r} is already recorded "
                                               "in this store")])
        return ValidationError([("row", f"rejected by the ledger: {exc}")])

    def insert_run(self, **fields: Any) -> str:
        """Add one run (status QUEUED unless given) and return its ``run_id``.

        ``created_at``/``updated_at`` default to now; ``run_id`` is ``YYYYMMDDhhmmss-<8 hex>``
        (UTC) unless given. Unknown fields, bad values or naive datetimes raise
        :class:`ValidationError` and nothing is written.
        """
        row = self._prepare_insert(fields, self._now())
        with self._write() as con:
            return self._insert_rows(con, [row])[0]

    def insert_run_once(self, *, reuse_unless: Sequence[str] = (),
                        always_reuse_codes: Sequence[str] = (),
                        **fields: Any) -> tuple[str, bool]:
        """Add a run unless one with the same ``experiment``, ``fingerprint`` and ``backend``
        is already recorded, in one step across processes. Returns ``(run_id, created)``:
        the new run's id and True, or the newest matching run's id and False.

        Runs whose status is in ``reuse_unless`` (e.g. FAILED: no video, nothing paid) do not
        count, so such a variant is created again, except runs whose ``error_code`` is in
        ``always_reuse_codes`` (an AmbiguousCreate: its task may exist and be paid). Two
        kernels running the same Experiment
        cell at the same moment therefore create each variant once::

            rid, created = store.insert_run_once(reuse_unless=("FAILED",), experiment="cats",
                                                 fingerprint=fp, backend="emulator", ...)
        """
        skip = tuple(reuse_unless)
        if any(s not in STATUSES for s in skip):
            raise ValidationError([("reuse_unless", f"reuse_unless must name statuses from "
                                                    f"{_allowed(STATUSES)}; got {skip!r}")])
        if not fields.get("fingerprint"):
            raise ValidationError([("fingerprint", "insert_run_once needs the request's "
                                                   "fingerprint to find an earlier run")])
        row = self._prepare_insert(fields, self._now())
        marks = ", ".join("?" * len(skip))
        codes = tuple(always_reuse_codes)
        keep = f" OR error_code IN ({', '.join('?' * len(codes))})" if codes else ""
        sql = ("SELECT run_id FROM runs WHERE fingerprint = ? AND experiment IS ? AND "
               f"backend IS ?{f' AND (status NOT IN ({marks}){keep})' if skip else ''} "
               "ORDER BY created_at DESC, rowid DESC LIMIT 1")
        # BEGIN IMMEDIATE takes SQLite's one write lock before the look-up, and every other
        # process's write transaction waits for it: look-up and insert are one atomic step.
        # (A PostgreSQL ledger would do the same with `SELECT pg_advisory_xact_lock(
        # hashtextextended(experiment || fingerprint || backend, 0))` at the start of the
        # transaction; a unique index cannot express it, since force=True re-rolls keep
        # several live runs per key.)
        with self._write() as con:
            found = con.execute(sql, (row["fingerprint"], row.get("experiment"),
                                      row.get("backend"), *skip,
                                      *(codes if skip else ()))).fetchone()
            if found is not None:
                return found[0], False
            return self._insert_rows(con, [row])[0], True

    def insert_runs(self, rows: Iterable[dict[str, Any]]) -> list[str]:
        """Add many runs in one transaction (all or none); returns their run_ids in order."""
        now = self._now()
        prepared, errors = [], []
        for i, fields in enumerate(rows):
            try:
                prepared.append(self._prepare_insert(dict(fields), now))
            except ValidationError as exc:
                errors += [(f"[{i}].{f}", f"run {i}: {m}") for f, m in exc.errors]
        if errors:
            raise ValidationError(errors)
        with self._write() as con:
            return self._insert_rows(con, prepared)

    def _update(self, con: sqlite3.Connection, run_id: str, row: dict[str, Any],
                where: str = "", params: Sequence[Any] = ()) -> bool:
        row = {**row, "updated_at": utc_text(self._now())}
        sets = ", ".join(f"{n} = ?" for n in row)
        try:
            cur = con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?{where}",
                              [*row.values(), run_id, *params])
        except sqlite3.IntegrityError as exc:
            raise self._integrity(exc, row) from exc
        if cur.rowcount == 0 and not con.execute("SELECT 1 FROM runs WHERE run_id = ?",
                                                 (run_id,)).fetchone():
            raise RunNotFound(f"no run {run_id!r} in {self.db_path}")
        return cur.rowcount == 1

    def update_run(self, run_id: str, /, **fields: Any) -> None:
        """Set fields of one run atomically (and ``updated_at``); :class:`RunNotFound` if absent."""
        row = self._encode(fields, UPDATABLE)
        with self._write() as con:
            self._update(con, run_id, row)

    def transition(self, run_id: str, /, *, expect: str | Sequence[str],
                   **fields: Any) -> bool:
        """Compare-and-set: apply ``fields`` only if the current status is in ``expect``.

        Returns whether the update happened; of two processes racing, exactly one wins::

            if store.transition(rid, expect="QUEUED", status="SUBMITTING", sent_at=now): ...
        """
        expected = (expect,) if isinstance(expect, str) else tuple(expect)
        bad = [s for s in expected if s not in STATUSES]
        if bad or not expected:
            raise ValidationError([("expect", f"expect must name statuses from "
                                              f"{_allowed(STATUSES)}; got {expect!r}")])
        row = self._encode(fields, UPDATABLE)
        with self._write() as con:
            marks = ", ".join("?" * len(expected))
            return self._update(con, run_id, row, f" AND status IN ({marks})", expected)

    def claim(self, run_id: str, owner: str, *, stale_after: float = 30.0) -> bool:
        """Take ownership of a run if it is unowned, already ``owner``'s, or its owner's
        heartbeat is older than ``stale_after`` seconds. Returns whether ``owner`` now owns it."""
        now = self._now()
        cutoff = utc_text(now - timedelta(seconds=stale_after))
        row = self._encode({"owner": owner, "owner_heartbeat": now}, UPDATABLE)
        with self._write() as con:
            return self._update(con, run_id, row, " AND (owner IS NULL OR owner = ? OR "
                                "owner_heartbeat IS NULL OR owner_heartbeat < ?)", (owner, cutoff))

    def release(self, run_id: str, owner: str) -> bool:
        """Give up ownership (only if ``owner`` holds it); returns whether it was released."""
        with self._write() as con:
            return self._update(con, run_id, {"owner": None, "owner_heartbeat": None},
                                " AND owner = ?", (owner,))

    def heartbeat(self, owner: str) -> int:
        """Refresh ``owner_heartbeat`` of every run owned by ``owner``; returns how many."""
        with self._write() as con:
            cur = con.execute("UPDATE runs SET owner_heartbeat = ? WHERE owner = ?",
                              (utc_text(self._now()), owner))
            return cur.rowcount

    def begin_create(self, run_id: str, /, *, sent_at: datetime,
                     max_age: timedelta = timedelta(hours=24)) -> tuple[str, str | None]:
        """Move a QUEUED run to SUBMITTING unless another run of the same backend, model and
        prompt is SUBMITTING (its create unresolved), in one write transaction, so the rule
        holds across kernels sharing this ledger.

        The service reports only a task's model and prompt (``orig_prompt``), never its seed
        or other parameters; with at most one unresolved create per (backend, model, prompt),
        a listed task with that prompt can belong to no other run of this ledger, so an
        ambiguous create is never matched to a sibling's task. (PostgreSQL: the same check
        under ``SELECT … FOR UPDATE`` of the run, or an advisory lock on the key.)

        Returns ``(outcome, blocker)``: ``"started"``; ``"busy"`` with the run_id of the
        unresolved create of this key (try later); or ``"gone"`` (the run is no longer
        QUEUED: cancelled, or taken elsewhere).
        """
        cutoff = utc_text(self._now() - max_age)
        row = self._encode({"status": "SUBMITTING", "sent_at": sent_at}, UPDATABLE)
        with self._write() as con:
            me = con.execute("SELECT status, backend, model, prompt FROM runs WHERE run_id = ?",
                             (run_id,)).fetchone()
            if me is None:
                raise RunNotFound(f"no run {run_id!r} in {self.db_path}")
            if me[0] != "QUEUED":
                return "gone", None
            busy = con.execute(
                "SELECT run_id FROM runs WHERE status = 'SUBMITTING' AND run_id != ? AND "
                "backend IS ? AND model = ? AND prompt = ? AND created_at >= ? LIMIT 1",
                (run_id, me[1], me[2], me[3], cutoff)).fetchone()
            if busy is not None:
                return "busy", busy[0]
            self._update(con, run_id, row, " AND status = 'QUEUED'", ())
            return "started", None

    def unresolved_creates(self, backend: str, model: str, *, exclude: str | None = None,
                           max_age: timedelta = timedelta(hours=24)) -> int:
        """How many runs of ``backend`` and ``model`` are SUBMITTING (creates in flight or
        not yet reconciled), in any kernel sharing this ledger, ``exclude`` aside."""
        cutoff = utc_text(self._now() - max_age)
        return int(self._read(
            "SELECT count(*) FROM runs WHERE status = 'SUBMITTING' AND backend IS ? AND "
            "model = ? AND run_id != ? AND created_at >= ?",
            (backend, model, exclude or "", cutoff))[0][0])

    def ambiguous_siblings(self, run_id: str, /, *, window: timedelta) -> int:
        """Other runs of the same backend, model and prompt with no task whose create is
        unresolved (SUBMITTING) or was given up as ambiguous, sent within ``window`` of this
        run's create: their tasks and this run's cannot be told apart. (Never the case for
        runs created by this version, which keeps one unresolved create per key; a ledger
        left by an older version, or a forced state, can hold such pairs.)"""
        me = self.get_run(run_id)
        if me.get("sent_at") is None:
            return 0
        lo, hi = me["sent_at"] - window, me["sent_at"] + window
        # `+task_id`: SQLite would otherwise guess that `task_id IS NULL` on the unique
        # task_id index finds one row and walk every task-less run; runs_sent reads the window
        return int(self._read(
            "SELECT count(*) FROM runs WHERE run_id != ? AND backend IS ? AND model = ? AND "
            "prompt = ? AND +task_id IS NULL AND (status = 'SUBMITTING' OR error_code = "
            "'AmbiguousCreate') AND sent_at >= ? AND sent_at <= ?",
            (run_id, me.get("backend"), me["model"], me["prompt"], utc_text(lo),
             utc_text(hi)))[0][0])

    def rename_backend(self, old: str, new: str) -> int:
        """File every run recorded under backend ``old`` under ``new`` (the same service,
        named as this version names it); returns how many."""
        with self._write() as con:
            return con.execute("UPDATE runs SET backend = ? WHERE backend = ?",
                               (new, old)).rowcount

    def known_task_ids(self, backend: str, *, since: datetime) -> set[str]:
        """Task ids recorded for ``backend`` by runs created since ``since`` (a targeted
        read for reconciling an ambiguous create, instead of the whole ledger)."""
        return {r[0] for r in self._read(
            "SELECT task_id FROM runs WHERE task_id IS NOT NULL AND backend IS ? AND "
            "created_at >= ?", (backend, utc_text(since)))}

    # -- reads -----------------------------------------------------------------------------

    def _select(self, where: str = "", params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # an older ledger opened read-only lacks the newest columns: they read as empty
        names = (c if c in self._columns else f"NULL AS {c}" for c in STORED)
        sql = f"SELECT {', '.join(names)} FROM runs"
        # rowid breaks ties in insertion order (a batch shares one created_at)
        return self._read(f"{sql}{where} ORDER BY created_at, rowid", params)

    @staticmethod
    def _decode(values: tuple[Any, ...]) -> dict[str, Any]:
        run = dict(zip(STORED, values, strict=True))
        for name in STORED:
            kind, value = KIND[name], run[name]
            if value is None:
                continue
            if kind == "time":
                run[name] = datetime.fromisoformat(value)
            elif kind == "bool":
                run[name] = bool(value)
            elif kind == "tags":
                run[name] = json.loads(value)
        actual = run["actual_prompt"]
        run["prompt_rewritten"] = actual is not None and actual != run["prompt"]
        for derived, start, end in (("queue_s", "submit_time", "scheduled_time"),
                                    ("run_s", "scheduled_time", "end_time")):
            both = run[start] is not None and run[end] is not None
            run[derived] = (run[end] - run[start]).total_seconds() if both else None
        return {name: run[name] for name, _ in COLUMNS}

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run as a dict (datetimes aware UTC, tags a list, derived fields filled in)."""
        rows = self._select(" WHERE run_id = ?", (run_id,))
        if not rows:
            raise RunNotFound(f"no run {run_id!r} in {self.db_path}")
        return self._decode(rows[0])

    @staticmethod
    def _filters(experiment: str | None = None, status: str | Sequence[str] | None = None,
                 fingerprint: str | None = None, task_id: str | None = None,
                 run_ids: Iterable[str] | None = None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for name, value in (("experiment", experiment), ("fingerprint", fingerprint),
                            ("task_id", task_id)):
            if value is not None:
                clauses.append(f"{name} = ?")
                params.append(value)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            if any(s not in STATUSES for s in statuses):
                raise ValidationError([("status", f"unknown status in {status!r}; allowed: "
                                                  f"{_allowed(STATUSES)}")])
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if run_ids is not None:  # one JSON parameter: no limit on the number of ids
            clauses.append("run_id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(run_ids)))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def runs(self, *, experiment: str | None = None, status: str | Sequence[str] | None = None,
             fingerprint: str | None = None, task_id: str | None = None,
             run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Runs matching every filter given, oldest first (``status`` may be a tuple)."""
        where, params = self._filters(experiment, status, fingerprint, task_id, run_ids)
        return [self._decode(r) for r in self._select(where, params)]

    def unfinished(self, *, max_age: timedelta = timedelta(hours=24)) -> list[dict[str, Any]]:
        """Runs a (restarted) poller must still look after, oldest first: not in a final
        status, or SUCCEEDED with neither a video file nor a download error; newer than
        ``max_age`` (the service forgets tasks after 24 h)."""
        cutoff = utc_text(self._now() - max_age)
        finals = ", ".join(f"'{s}'" for s in FINAL_STATUSES)
        return [self._decode(r) for r in self._select(
            f" WHERE created_at >= ? AND (status NOT IN ({finals}) OR (status = 'SUCCEEDED' "
            "AND video_path IS NULL AND download_error IS NULL))", (cutoff,))]

    def __len__(self) -> int:
        return int(self._read("SELECT count(*) FROM runs")[0][0])

    def video_file(self, run: str | dict[str, Any]) -> Path | None:
        """Absolute path of a run's video (``run`` is a run_id or a run dict), or None."""
        rel = (self.get_run(run) if isinstance(run, str) else run).get("video_path")
        return self.root / rel if rel else None

    def check_video(self, run: str | dict[str, Any], *, full: bool = False) -> VideoCheck:
        """Is a run's downloaded video still the one that was downloaded?

        Cheap by default: the file's size and mtime are compared with those recorded at
        download; the sha256 is computed only when they differ (or ``full=True``). Returns a
        :class:`VideoCheck`: ``ok``, ``state`` (ok, missing, truncated, changed, no_video),
        ``problem`` (a sentence, None when ok) and ``redownload`` (the file is damaged or
        gone: fetch it again while the URL is valid)::

            check = store.check_video(run_id)
            if check.redownload: ...
        """
        row = self.get_run(run) if isinstance(run, str) else run
        check, new_mtime = check_video_file(self.root, row, full=full)
        if new_mtime is not None and not self.read_only:
            # same content, new mtime (touched, copied): remember it, so it is not hashed again
            with contextlib.suppress(StoreError):
                with self._write() as con:
                    con.execute("UPDATE runs SET video_mtime_ns = ? WHERE run_id = ? AND "
                                "video_sha256 IS ?", (new_mtime, row["run_id"],
                                                      row.get("video_sha256")))
        return check

    def damaged_videos(self, *, backend: str | None = None,
                       max_age: timedelta = timedelta(hours=24)) -> list[tuple[dict[str, Any],
                                                                               VideoCheck]]:
        """SUCCEEDED runs (newer than ``max_age``, of ``backend`` if given) whose downloaded
        video is missing, truncated or changed: ``[(run, check), ...]``. For resume: these
        can be downloaded again while ``video_url_expires_at`` is in the future."""
        cutoff = utc_text(self._now() - max_age)
        where = " WHERE status = 'SUCCEEDED' AND video_path IS NOT NULL AND created_at >= ?"
        params: list[Any] = [cutoff]
        if backend is not None:
            where += " AND backend = ?"
            params.append(backend)
        out = []
        for values in self._select(where, params):
            run = self._decode(values)
            check = self.check_video(run)
            if check.redownload:
                out.append((run, check))
        return out

    def verify(self, experiment: str | None = None, *, full: bool = False) -> pd.DataFrame:
        """Check every downloaded video of the store (or of one experiment).

        One row per run that has (or should have) a video, indexed by ``run_id``: ``status``,
        ``video_path``, ``state`` (ok, missing, truncated, changed, no_video), ``ok`` and
        ``problem``. ``full=True`` hashes every file instead of trusting size and mtime::

            bad = store.verify()[lambda df: ~df.ok]
        """
        where, params = self._filters(experiment=experiment)
        where += (" AND " if where else " WHERE ") + (
            "(video_path IS NOT NULL OR status = 'SUCCEEDED')")
        records = []
        for values in self._select(where, params):
            run = self._decode(values)
            check = self.check_video(run, full=full)
            records.append({"run_id": run["run_id"], "status": run["status"],
                            "video_path": run["video_path"], "state": check.state,
                            "ok": check.ok, "problem": check.problem})
        frame = pd.DataFrame.from_records(
            records, columns=["run_id", "status", "video_path", "state", "ok", "problem"])
        frame = frame.astype({"run_id": "string", "status": "string", "video_path": "string",
                              "state": "string", "ok": "boolean", "problem": "string"})
        return frame.set_index("run_id")

    def new_video_path(self, run_id: str, suffix: str = ".mp4") -> Path:
        """Where a run's video should be downloaded to (inside ``videos_dir``)."""
        return self.videos_dir / f"{run_id}{suffix}"

    def to_dataframe(self, *, experiment: str | None = None,
                     run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """All runs (or a filtered subset) as a typed DataFrame indexed by ``run_id``.

        Times are ``datetime64[us, UTC]``; model/status/tier/audio_mode/backend are
        categorical; integers ``Int64``; flags ``boolean``; seconds and cost ``Float64``;
        text ``string``; tags Python lists. An empty store gives an empty frame, same dtypes.
        """
        where, params = self._filters(experiment=experiment, run_ids=run_ids)
        rows = self._select(where, params)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(STORED)
        return typed_frame(dict(zip(STORED, columns, strict=True)))

    # -- export ----------------------------------------------------------------------------

    def export(self, path: str | os.PathLike[str], *, experiment: str | None = None) -> Path:
        """Write the runs to ``.parquet`` (needs pyarrow) or ``.csv``; read back with
        :func:`read_export`."""
        out = Path(path)
        if out.suffix.lower() not in (".parquet", ".csv"):
            raise ValidationError([("path", f"cannot export to {out.name!r}: use a .parquet "
                                            "or .csv file name (or export_bundle for .zip)")])
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as fh:
            write_table(self.to_dataframe(experiment=experiment), fh, out.suffix.lower())
        return out

    def export_bundle(self, path: str | os.PathLike[str], *,
                      experiment: str | None = None) -> Path:
        """A shareable ``.zip``: the runs table (parquet, or csv without pyarrow), their videos
        under ``videos/`` and a ``manifest.json`` (wan_nb and schema versions, creation time,
        experiments, and every run's request so the experiment can be recreated)."""
        out = Path(path)
        if out.suffix.lower() != ".zip":
            raise ValidationError([("path", f"a bundle is a .zip file, not {out.name!r}")])
        return write_bundle(self.to_dataframe(experiment=experiment), out, self.root,
                            self.schema_version, self._now())
