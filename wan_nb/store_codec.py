"""Checking and converting run fields between Python and the ledger's SQLite values.

A layer of :class:`wan_nb.store.Store`: user values are validated (all problems in one
:class:`~wan_nb.errors.ValidationError`, nothing written) and encoded for SQLite; rows read
back are decoded into run dicts (aware UTC datetimes, tag lists, derived fields).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import secrets
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from wan_nb.errors import ValidationError
from wan_nb.statuses import STATUSES
from wan_nb.store_db import LedgerConnection
from wan_nb.video_objects import is_object_url
from wan_nb.store_table import (AUDIO_MODES, COLUMNS, DERIVED, KIND, STORED, rewritten,
                                utc_text)

INSERTABLE = tuple(c for c in STORED if c != "updated_at")
UPDATABLE = tuple(c for c in STORED if c not in ("run_id", "created_at", "updated_at"))
_INT64 = (-(2**63), 2**63 - 1)


def new_run_id(created: datetime) -> str:
    return created.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S-") + secrets.token_hex(4)


def allowed_text(names: Sequence[str]) -> str:
    return ", ".join(names)



class RunCodec(LedgerConnection):
    """Encoding of written fields and decoding of read rows (a layer of the Store)."""

    def _encode(self, fields: dict[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
        """Check and convert user values to SQLite values; all problems in one error."""
        errors: list[tuple[str, str]] = []
        out: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in allowed:
                why = (f"{name!r} is derived ({DERIVED[name]}) and cannot be written"
                       if name in DERIVED else f"unknown field {name!r}")
                errors.append((name, f"{why}; allowed fields: {allowed_text(allowed)}"))
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
        if rel is None or is_object_url(rel):
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
                raise ValueError(f"unknown status {value!r}; allowed: {allowed_text(STATUSES)}")
            if name == "audio_mode" and value not in AUDIO_MODES:
                raise ValueError(f"{value!r} is not one of {allowed_text(AUDIO_MODES)}")
            if kind == "path":
                if is_object_url(value):  # a video on object storage (video_objects)
                    return value
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
        run["prompt_rewritten"] = rewritten(run["prompt"], run["actual_prompt"],
                                            run["prompt_extend"], run["model"])
        for derived, start, end in (("queue_s", "submit_time", "scheduled_time"),
                                    ("run_s", "scheduled_time", "end_time")):
            both = run[start] is not None and run[end] is not None
            run[derived] = (run[end] - run[start]).total_seconds() if both else None
        return {name: run[name] for name, _ in COLUMNS}
