"""Durable emulator state in ``data_dir``: tasks in a small SQLite file, the signing secret and
the instance id.

The embedded emulator is restarted with the Jupyter kernel; the toolkit then resumes its jobs
by task id, so the emulator must still know them. One row per task, the task as JSON.

Callers' keys are never stored: a task belongs to an *account*, ``sha256:<16 hex>`` of the key
(:func:`account_id`). The data directory is owner-only (0700) and the task database 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

#: 1: the ``key`` of a task row is an account id (version 0 stored the caller's key in clear)
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    submit REAL NOT NULL,
    body TEXT NOT NULL
)
"""


def account_id(key: str) -> str:
    """The account a key stands for, as stored and shown: a sha256 prefix, never the key."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def is_account_id(value: Any) -> bool:
    return (isinstance(value, str) and len(value) == 23 and value.startswith("sha256:")
            and all(c in "0123456789abcdef" for c in value[7:]))


def private_dir(path: Path) -> Path:
    """``path`` created (with parents) owner-only: it holds tasks, results, uploads and the
    signing secret. An existing folder is tightened only when it is the emulator's own (it
    holds its task database): a folder the user named (``--data-dir .``) keeps its mode,
    while every file the emulator writes is owner-only anyway."""
    existed = path.is_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    ours = not existed or (path / "tasks.sqlite3").exists()
    if ours and stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def _private_file(path: Path) -> None:
    """Create ``path`` owner-only if it is missing, tighten it (and SQLite's -wal/-shm, which
    copy the database's mode when SQLite creates them) if it exists."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            if stat.S_IMODE(p.stat().st_mode) & 0o077:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            pass


class TaskStore:
    """SQLite-backed task rows. Safe to use from several threads (one lock, one connection).

    A database of schema version 0 (keys in clear) is migrated when opened: every key becomes
    its :func:`account_id`, and the file is vacuumed so that no page keeps the old text.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _private_file(self.path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed, not kept
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            if self._db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                self._migrate()
        _private_file(self.path)

    def _migrate(self) -> None:
        """Version 0 → 1: replace the caller's key of every row by its account id."""
        rows = self._db.execute("SELECT task_id, body FROM tasks").fetchall()
        changed = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for task_id, blob in rows:
                try:
                    row = json.loads(blob)
                except ValueError:  # a torn row is dropped, never fatal (as in load_all)
                    self._db.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,))
                    changed += 1
                    continue
                key = row.get("key") if isinstance(row, dict) else None
                if isinstance(key, str) and not is_account_id(key):
                    row["key"] = account_id(key)
                    self._db.execute("UPDATE tasks SET body = ? WHERE task_id = ?",
                                     (json.dumps(row, ensure_ascii=False,
                                                 separators=(",", ":")), task_id))
                    changed += 1
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if changed:
            # the old text may survive in the WAL and in free pages: rewrite the whole file
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def save(self, row: dict[str, Any]) -> None:
        blob = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO tasks(task_id, submit, body) VALUES (?,?,?)",
                             (row["task_id"], row["submit"], blob))

    def delete(self, task_ids: list[str]) -> None:
        if not task_ids:
            return
        with self._lock:
            self._db.executemany("DELETE FROM tasks WHERE task_id = ?", [(t,) for t in task_ids])

    def load_all(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM tasks ORDER BY submit, rowid").fetchall()
        out = []
        for (blob,) in rows:
            try:
                out.append(json.loads(blob))
            except ValueError:  # a torn row is dropped, never fatal
                continue
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_or_create_secret(data_dir: Path | None) -> bytes:
    """The HMAC secret that signs video URLs and upload policies; persisted so that URLs handed
    out before a restart stay valid after it."""
    if data_dir is None:
        return secrets.token_bytes(32)
    path = data_dir / "secret"
    try:
        value = bytes.fromhex(path.read_text().strip())
        if len(value) >= 16:
            return value
    except (OSError, ValueError):
        pass
    value = secrets.token_bytes(32)
    _write_private(path, value.hex())
    return value


def read_or_create_instance_id(data_dir: Path | None) -> str:
    """Who this emulator is: 16 hex digits stored in ``data_dir``, so that the same tasks keep
    the same name whatever port or host name reaches them (a temporary emulator gets a new
    one each time). Clients label their runs ``emulator:<id>``."""
    if data_dir is None:
        return secrets.token_hex(8)
    path = data_dir / "instance_id"
    try:
        value = path.read_text().strip()
        if len(value) == 16 and all(c in "0123456789abcdef" for c in value):
            return value
    except OSError:
        pass
    value = secrets.token_hex(8)
    _write_private(path, value)
    return value


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def read_or_create_key(data_dir: Path, given: str | None = None) -> str:
    """The embedded emulator's API key: ``given``, else the one stored in ``data_dir``, else a
    new ``sk-emu-<hex>`` (stored, so that a restarted kernel reuses it)."""
    path = data_dir / "api_key"
    if given:
        return given
    try:
        key = path.read_text().strip()
        if key.startswith("sk-"):
            return key
    except OSError:
        pass
    key = "sk-emu-" + secrets.token_hex(16)
    _write_private(path, key)
    return key
