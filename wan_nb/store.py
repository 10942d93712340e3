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
from wan_nb.store_table import (
    AUDIO_MODES,
    COLUMNS,
    DERIVED,
    FINAL_STATUSES,
    KIND,
    STATUSES,
    STORED,
    TIERS,
    RunNotFound,
    SchemaVersionError,
    StoreError,
    read_export,
    typed_frame,
    utc_text,
    write_bundle,
    write_table,
)

__all__ = ["AUDIO_MODES", "COLUMNS", "FINAL_STATUSES", "SCHEMA_VERSION", "STATUSES", "TIERS",
           "RunNotFound", "SchemaVersionError", "Store", "StoreError", "read_export"]

ENV_VAR = "WAN_NB_STORE"
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
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._connect()

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
            return self._con
        # A connection inherited through fork() must not be used or closed in the child.
        self._con = None
        try:
            con = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the ledger {self.db_path}: {exc}") from exc
        try:
            con.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:  # checked before WAL is set: the file stays as it is
                raise SchemaVersionError(
                    f"the ledger {self.db_path} has schema version {version}, but this wan_nb "
                    f"({__version__}) knows versions up to {SCHEMA_VERSION}; upgrade wan_nb "
                    "(the file was not modified)")
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
            raise StoreError(f"cannot use the ledger {self.db_path}: {exc}") from exc
        except BaseException:
            con.close()
            raise
        self._con, self._pid = con, os.getpid()
        return con

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
        """One write transaction, taken with the write lock up front (no upgrade deadlocks)."""
        with self._lock:
            con = self._connect()
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"the ledger {self.db_path} stayed locked: {exc}") from exc
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise StoreError(f"commit to {self.db_path} failed: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._connect().execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise StoreError(f"reading {self.db_path} failed: {exc}") from exc

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
        return out

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

    # -- reads -----------------------------------------------------------------------------

    def _select(self, where: str = "", params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(STORED)} FROM runs"
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
