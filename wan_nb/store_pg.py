"""A run ledger in PostgreSQL, for a team: ``connect(store="postgresql://user:pw@host/db")``.

:class:`PgLedger` is the SQLite :class:`~wan_nb.store.Store` with its lowest layer swapped:
the same columns, codec, writes, queries, videos and exports (one copy of that logic), over
a pool of psycopg 3 connections (SQLAlchemy Core) instead of one SQLite file. What differs:

- **Transactions**: each write is one transaction (READ COMMITTED). Where SQLite relies on its
  one write lock (BEGIN IMMEDIATE), a look-up followed by a write takes a transaction-scoped
  advisory lock on its key (:meth:`PgLedger._serialize`): ``insert_run_once`` on (experiment,
  fingerprint, backend), so two machines running the same cell create each variant once;
  ``begin_create`` on (backend, model). Compare-and-set updates (``transition``, ``release``)
  are single ``UPDATE … WHERE`` statements, atomic in PostgreSQL as in SQLite.
- **Claims** lock the run with ``SELECT … FOR UPDATE SKIP LOCKED``: of kernels racing to take
  over a dead owner's run, one wins and the others are told no at once instead of queueing.
- **Schema**: its own frozen migration list (:data:`PG_MIGRATIONS`, keyed by the same schema
  versions as the SQLite one) and a version table ``wan_nb_schema``; migrating is one
  transaction under an advisory lock, so kernels starting together migrate once.
- **Values** are stored as the SQLite ledger stores them (times as fixed-width UTC ISO text
  in the "C" collation, flags as 0/1, tags and JSON as text), so the codec and
  :func:`~wan_nb.store_table.typed_frame` are shared and a frame is the same from either.
- **Videos** stay on each machine's disk under ``root`` (default ``./wan_runs``, as for the
  SQLite store, so the Jupyter server still serves them by relative path); ``video_path`` is
  relative to it, so a machine whose ``root`` lacks a file reports it missing and a resumed
  kernel fetches its own copy while the URL is valid.

The URL's password never appears in a repr, an error or a log (:func:`mask_url`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .store import Store
from .store_codec import UPDATABLE
from .store_db import SCHEMA_VERSION
from .store_table import (STORED, RunNotFound, SchemaVersionError, StoreError, StoreReadOnly,
                          utc_text)
from .store_url import check_url, mask_url
from .store_writes import CLAIMABLE

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
except ImportError:  # pragma: no cover - the team extra is not installed
    sa = None  # type: ignore[assignment]

__all__ = ["PG_MIGRATIONS", "PgLedger"]

_T = 'TEXT COLLATE "C"'  # times: fixed-width ISO text, compared byte by byte like SQLite


def _column(name: str, kind: str) -> str:
    sql = {"int": "BIGINT", "bool": "INTEGER", "float": "DOUBLE PRECISION", "time": _T}.get(
        kind, "TEXT")
    if name == "run_id":
        return f"run_id {_T} PRIMARY KEY"
    if name == "task_id":
        return "task_id TEXT UNIQUE"
    if name in ("created_at", "updated_at"):
        return f"{name} {_T} NOT NULL"
    if name == "tags":
        return "tags TEXT NOT NULL DEFAULT '[]'"
    if name == "status":
        return "status TEXT NOT NULL DEFAULT 'QUEUED'"
    return f"{name} {sql}"


# Frozen like store_db.MIGRATIONS: a step never changes once released; add the next version.
# Keys are the schema versions the SQLite ledger uses, so one number names one set of columns.
# No PostgreSQL ledger predates v6, so its history starts there.
PG_MIGRATIONS: dict[int, tuple[str, ...]] = {
    6: (
        """CREATE TABLE runs (
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            run_id TEXT COLLATE "C" PRIMARY KEY, experiment TEXT, variant TEXT,
            tags TEXT NOT NULL DEFAULT '[]', prompt TEXT, negative_prompt TEXT,
            actual_prompt TEXT, model TEXT, size TEXT, width BIGINT, height BIGINT, tier TEXT,
            resolution TEXT, ratio TEXT, duration BIGINT, seed BIGINT, prompt_extend INTEGER,
            watermark INTEGER, audio_mode TEXT, audio_url TEXT, shot_type TEXT,
            status TEXT NOT NULL DEFAULT 'QUEUED', error_code TEXT, error_message TEXT,
            task_id TEXT UNIQUE, request_id TEXT,
            created_at TEXT COLLATE "C" NOT NULL, sent_at TEXT COLLATE "C",
            submit_time TEXT COLLATE "C", scheduled_time TEXT COLLATE "C",
            end_time TEXT COLLATE "C",
            usage_video_count BIGINT, usage_video_duration DOUBLE PRECISION,
            usage_video_ratio TEXT, usage_duration DOUBLE PRECISION, usage_size TEXT,
            usage_sr BIGINT, usage_ratio TEXT, usage_width BIGINT, usage_height BIGINT,
            usage_input_video_duration DOUBLE PRECISION,
            usage_output_video_duration DOUBLE PRECISION, usage_json TEXT,
            cost_usd DOUBLE PRECISION, video_url TEXT, video_url_expires_at TEXT COLLATE "C",
            video_path TEXT, video_sha256 TEXT, video_bytes BIGINT, video_mtime_ns BIGINT,
            video_fps DOUBLE PRECISION, video_frames BIGINT, video_duration DOUBLE PRECISION,
            has_audio INTEGER, download_error TEXT, rating BIGINT, keep INTEGER, notes TEXT,
            fingerprint TEXT, request_json TEXT, backend TEXT, wan_nb_version TEXT,
            owner TEXT, owner_heartbeat TEXT COLLATE "C",
            updated_at TEXT COLLATE "C" NOT NULL)""",
        "CREATE INDEX runs_experiment ON runs(experiment, created_at)",
        "CREATE INDEX runs_status ON runs(status, created_at)",
        "CREATE INDEX runs_fingerprint ON runs(fingerprint)",
        "CREATE INDEX runs_created ON runs(created_at, seq)",
        "CREATE INDEX runs_owner ON runs(owner) WHERE owner IS NOT NULL",
        "CREATE INDEX runs_sent ON runs(sent_at)",
    ),
    7: (  # the account's shared paces (store_db v7, store_account.py)
        """CREATE TABLE account_slots (
            account TEXT NOT NULL, name TEXT NOT NULL, next_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (account, name))""",
    ),
}
_FIRST = min(PG_MIGRATIONS)
# one advisory lock id for migrating (any constant; the key locks hash their text)
_MIGRATE_LOCK = 0x77616E6E62


@lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """The shared layers' SQLite-flavoured SQL in PostgreSQL's: ``?`` placeholders become
    ``%s``; ``IS ?`` and ``IS NOT ?`` (null-safe comparisons) ``IS [NOT] DISTINCT FROM``;
    ``rowid`` the insertion order column ``seq``; the JSON list of ids
    ``jsonb_array_elements_text``; SQLite's index hint ``+column`` goes."""
    sql = sql.replace("%", "%%")
    sql = re.sub(r"\bIS NOT \?", "IS DISTINCT FROM ?", sql)
    sql = re.sub(r"\bIS \?", "IS NOT DISTINCT FROM ?", sql)
    sql = re.sub(r"\browid\b", "seq", sql)
    sql = re.sub(r"\+(?=[a-z_]+ IS)", "", sql)
    sql = sql.replace("SELECT value FROM json_each(?)",
                      "SELECT jsonb_array_elements_text(CAST(? AS jsonb))")
    return sql.replace("?", "%s")


class _Con:
    """A pooled connection inside one transaction, answering the calls the shared layers
    make of a ``sqlite3.Connection`` (``execute`` → a result with fetchone/fetchall/
    rowcount)."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        statement = pg_sql(sql)
        if statement.lstrip().startswith("INSERT"):
            # a failed insert (a run_id drawn twice) must not abort the whole transaction:
            # the writes retry it with another id
            with self.conn.begin_nested():
                return self.conn.exec_driver_sql(statement, tuple(params))
        return self.conn.exec_driver_sql(statement, tuple(params))


class PgLedger(Store):
    """The run ledger in a PostgreSQL database (see the module docstring).

    ``PgLedger(url, *, root=None, clock=None, lock_timeout=30.0, pool_size=5)``: ``url`` a
    ``postgresql://user:password@host:port/database`` URL; ``root`` the local folder the
    videos are downloaded under (default ``./wan_runs``); ``clock`` the aware "now" (tests).
    """

    def __init__(self, url: str, *, root: str | os.PathLike[str] | None = None,
                 clock: Callable[[], datetime] | None = None, lock_timeout: float = 30.0,
                 pool_size: int = 5):
        self._sa_url = check_url(url)  # a ValidationError before anything is made
        self.url = mask_url(url)
        self._password = _password(url)
        if sa is None:
            raise StoreError("a PostgreSQL ledger needs SQLAlchemy and psycopg 3: "
                             "pip install 'wan_nb[team]'")
        chosen = root if root is not None else "wan_runs"
        if isinstance(chosen, str) and chosen.startswith(("postgres:", "postgresql")):
            raise ValidationError([("root", "root is the local folder for the videos, not "
                                            "the database URL")])
        self.root = Path(chosen).expanduser().absolute()
        self.videos_dir = self.root / "videos"
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.RLock()
        self._columns = frozenset(STORED)
        self.read_only_reason = None
        self._ro_seen = ()
        self._lock_ms = int(lock_timeout * 1000)
        self._pool_size = pool_size
        self._engine: sa.Engine | None = None
        self._pid = 0
        try:
            with self._errors("cannot open"):
                self._migrate_pg()
        except BaseException:
            self.close()
            raise
        try:
            self.videos_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the video folder {self.videos_dir}: "
                             f"{exc.strerror or exc}; pass root= a folder you can write "
                             f"(the ledger itself is {self.url})") from None

    _integrity_errors = (sa_exc.IntegrityError,) if sa is not None else ()

    @staticmethod
    def _unique_column(exc: Exception) -> str | None:
        diag = getattr(getattr(exc, "orig", None), "diag", None)
        constraint = getattr(diag, "constraint_name", None)
        return {"runs_pkey": "run_id", "runs_task_id_key": "task_id"}.get(constraint or "")

    def __repr__(self) -> str:
        return f"PgLedger({self.url!r}, root={str(self.root)!r})"

    @property
    def _where(self) -> str:
        return self.url

    # -- connections, schema, transactions --------------------------------------------------

    def _engine_(self) -> sa.Engine:
        """The pool (made lazily; a forked child makes its own and leaves the parent's)."""
        with self._lock:
            if self._engine is not None and self._pid != os.getpid():
                self._engine.dispose(close=False)
                self._engine = None
            if self._engine is None:
                self._engine = sa.create_engine(
                    self._sa_url, pool_size=self._pool_size, max_overflow=10,
                    pool_pre_ping=True, hide_parameters=True,
                    connect_args={"connect_timeout": 10, "application_name": "wan_nb",
                                  "options": f"-c lock_timeout={self._lock_ms}"})
                self._pid = os.getpid()
            return self._engine

    def _hide(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Driver errors become a StoreError saying what happened (password hidden)."""
        try:
            yield
        except sa_exc.DBAPIError as exc:
            raise self._error_of(exc, doing) from None

    def _error_of(self, exc: sa_exc.DBAPIError, doing: str) -> StoreError:
        orig = exc.orig
        text = self._hide(str(orig).strip() or type(orig).__name__)
        state = getattr(orig, "sqlstate", None) or ""
        if state == "42501" or "read-only transaction" in text:  # insufficient privilege
            return StoreReadOnly(f"the ledger {self.url} cannot be written by this user "
                                 f"({text}): runs can be read, nothing recorded")
        if state.startswith("55P03") or "lock timeout" in text:
            return StoreError(f"the ledger {self.url} stayed locked: {text}")
        if exc.connection_invalidated or state.startswith("08") or state == "":
            return StoreError(f"wan_nb {doing} the PostgreSQL ledger {self.url}: {text}. "
                              "Is the server running and reachable, and are the user, "
                              "password and database right?")
        return StoreError(f"wan_nb {doing} the ledger {self.url}: {text}")

    def _migrate_pg(self) -> None:
        with self._engine_().begin() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS wan_nb_schema "
                                 "(version INTEGER NOT NULL)")
            found = conn.exec_driver_sql("SELECT max(version) FROM wan_nb_schema").scalar()
            version = int(found) if found is not None else _FIRST - 1
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the ledger {self.url} has schema version {version}, but this wan_nb "
                    f"knows versions up to {SCHEMA_VERSION}; upgrade wan_nb (the database "
                    "was not modified)")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in PG_MIGRATIONS[step]:
                    conn.exec_driver_sql(statement)
            if version < SCHEMA_VERSION:
                conn.exec_driver_sql("DELETE FROM wan_nb_schema")
                conn.exec_driver_sql("INSERT INTO wan_nb_schema VALUES (%s)",
                                     (SCHEMA_VERSION,))

    @contextlib.contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction (committed on exit, rolled back on any error)."""
        with self._errors("could not write to"), self._engine_().begin() as conn:
            yield _Con(conn)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors("could not read"), self._engine_().connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:  # the driver's own rows (plain tuples): 100,000 of them in a fraction of s
                cursor.execute(pg_sql(sql), tuple(params))
                rows = list(cursor.fetchall())
            finally:
                cursor.close()
            return rows

    def _serialize(self, con: Any, *key: Any) -> None:
        """The rest of this transaction holds the advisory lock of ``key`` (released at
        commit or rollback): other processes asking for the same key wait for it."""
        con.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
                    (json.dumps(key, ensure_ascii=False),))

    @property
    def schema_version(self) -> int:
        return int(self._read("SELECT max(version) FROM wan_nb_schema")[0][0])

    def close(self) -> None:
        """Close the pool's connections (reopened by itself if used again)."""
        with self._lock:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.dispose()
            self._engine = None

    def __del__(self) -> None:
        # a ledger nobody closed (a session's) closes its connections with it, rather than
        # leaving them to the driver's garbage collection (which warns)
        with contextlib.suppress(Exception):
            engine = getattr(self, "_engine", None)
            if engine is not None and getattr(self, "_pid", 0) == os.getpid():
                engine.dispose()

    # -- what PostgreSQL does its own way --------------------------------------------------

    def claim(self, run_id: str, owner: str, *, stale_after: float = 30.0,
              dead_owner: str | None = None) -> bool:
        """Take ownership as :meth:`Store.claim` does, the run locked with ``SELECT … FOR
        UPDATE SKIP LOCKED``: a run another transaction is writing now (another kernel
        taking it over, or its owner at work) is not waited for: the answer is no at once,
        unless ``owner`` already holds it. Kernels sweeping a dead owner's runs each take
        different ones instead of queueing on the same rows; one told no follows the run
        and claims it later if its owner is still gone."""
        now = self._now()
        cutoff = utc_text(now - timedelta(seconds=stale_after))
        row = self._encode({"owner": owner, "owner_heartbeat": now}, UPDATABLE)
        with self._write() as con:
            got = con.execute("SELECT owner FROM runs WHERE run_id = ? FOR UPDATE SKIP LOCKED",
                              (run_id,)).fetchone()
            if got is None:  # absent, or locked by another transaction now
                seen = con.execute("SELECT owner FROM runs WHERE run_id = ?",
                                   (run_id,)).fetchone()
                if seen is None:
                    raise RunNotFound(f"no run {run_id!r} in {self._where}")
                return bool(seen[0] == owner)
            return self._update(con, run_id, row, f" AND {CLAIMABLE}",
                                (owner, cutoff, dead_owner))


def _password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    given = re.search(r"(?:^|&)password=([^&]*)", parts.query)
    password = parts.password or (given[1] if given else None)
    return unquote(password) if password else None
