"""Durable emulator state in ``data_dir``: tasks in a small SQLite file, plus the signing secret.

The embedded emulator is restarted with the Jupyter kernel; the toolkit then resumes its jobs
by task id, so the emulator must still know them. One row per task, the task as JSON.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    submit REAL NOT NULL,
    body TEXT NOT NULL
)
"""


class TaskStore:
    """SQLite-backed task rows. Safe to use from several threads (one lock, one connection)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)

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
