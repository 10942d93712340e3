"""Reading runs: one run, filtered lists, what a poller must resume, the targeted reads
of reconciliation, and the typed DataFrame. Every query filters in SQL on indexed columns
(created_at, status, run_id, task_id, sent_at), so none reads the whole ledger into Python
unless asked to (``runs()`` or ``to_dataframe()`` without filters)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from wan_nb.errors import ValidationError
from wan_nb.statuses import FINAL_STATUSES, STATUSES
from wan_nb.store_codec import RunCodec, allowed_text
from wan_nb.store_db import DERIVED_V5
from wan_nb.store_table import STORED, RunNotFound, bulk_read, typed_frame, utc_text


class RunQueries(RunCodec):
    """Reads of runs (a layer of the Store)."""

    def _select(self, where: str = "", params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # an older ledger opened read-only lacks the newest columns: they read as empty, or
        # as the migration would have filled them in (DERIVED_V5: from the run's size)
        names = (c if c in self._columns else f"{DERIVED_V5.get(c, 'NULL')} AS {c}"
                 for c in STORED)
        sql = f"SELECT {', '.join(names)} FROM runs"
        # rowid breaks ties in insertion order (a batch shares one created_at)
        return self._read(f"{sql}{where} ORDER BY created_at, rowid", params)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run as a dict (datetimes aware UTC, tags a list, derived fields filled in)."""
        rows = self._select(" WHERE run_id = ?", (run_id,))
        if not rows:
            raise RunNotFound(f"no run {run_id!r} in {self._where}")
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
                                                  f"{allowed_text(STATUSES)}")])
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

    def known_task_ids(self, backend: str, *, since: datetime) -> set[str]:
        """Task ids recorded for ``backend`` by runs created since ``since`` (a targeted
        read for reconciling an ambiguous create, instead of the whole ledger)."""
        return {r[0] for r in self._read(
            "SELECT task_id FROM runs WHERE task_id IS NOT NULL AND backend IS ? AND "
            "created_at >= ?", (backend, utc_text(since)))}

    def to_dataframe(self, *, experiment: str | None = None,
                     run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """All runs (or a filtered subset) as a typed DataFrame indexed by ``run_id``.

        Times are ``datetime64[us, UTC]``; model/status/tier/audio_mode/backend are
        categorical; integers ``Int64``; flags ``boolean``; seconds and cost ``Float64``;
        text ``string``; tags Python lists. An empty store gives an empty frame, same dtypes.
        """
        where, params = self._filters(experiment=experiment, run_ids=run_ids)
        with bulk_read():
            rows = self._select(where, params)
            columns = list(zip(*rows, strict=True)) if rows else [()] * len(STORED)
            del rows  # the row tuples go before the frame is made
            return typed_frame(dict(zip(STORED, columns, strict=True)))
