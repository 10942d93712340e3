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
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from wan_nb.errors import ValidationError
from wan_nb.ledger import Ledger
from wan_nb.statuses import FINAL_STATUSES, STATUSES

# `as` marks names importable from here as before the store was split into its layers
from wan_nb.store_codec import INSERTABLE as INSERTABLE
from wan_nb.store_codec import UPDATABLE as UPDATABLE
from wan_nb.store_db import DB_NAME as DB_NAME
from wan_nb.store_db import DEFAULT_ROOT as DEFAULT_ROOT
from wan_nb.store_db import MIGRATIONS as MIGRATIONS
from wan_nb.store_db import SCHEMA_VERSION
from wan_nb.store_db import VIDEOS_DIR as VIDEOS_DIR
from wan_nb.store_open import ENV_VAR as ENV_VAR
from wan_nb.store_account import AccountSlots
from wan_nb.store_queries import RunQueries
from wan_nb.store_table import (
    AUDIO_MODES,
    COLUMNS,
    TIERS,
    LedgerDamaged,
    RunNotFound,
    SchemaVersionError,
    StoreError,
    StoreFull,
    StoreReadOnly,
    read_export,
    utc_text,
    write_bundle,
    write_table,
)
from wan_nb.store_video import VideoCheck, check_video_file
from wan_nb.store_writes import RunWrites
from wan_nb.video_objects import cache_path, check_object, is_object_url, with_local_videos

__all__ = ["AUDIO_MODES", "COLUMNS", "FINAL_STATUSES", "SCHEMA_VERSION", "STATUSES", "TIERS",
           "LedgerDamaged", "RunNotFound", "SchemaVersionError", "Store", "StoreError",
           "StoreFull", "StoreReadOnly", "VideoCheck", "read_export"]


class Store(RunWrites, RunQueries, AccountSlots):
    """The run ledger. Safe to share between threads, processes and killed kernels.

    ``Store(root=None, *, synchronous="NORMAL", busy_timeout=30.0, clock=None)``: ``root``
    defaults to ``$WAN_NB_STORE`` or ``./wan_runs``; ``clock`` returns the aware "now" (tests).
    """

    # Layers, each in its module: LedgerConnection (store_db: file, schema, transactions) <
    # RunCodec (store_codec: field values) < RunWrites (store_writes), RunQueries
    # (store_queries) and AccountSlots (store_account: the account's shared paces); the
    # videos and exports are here.

    def __enter__(self) -> Store:
        return self

    def video_file(self, run: str | dict[str, Any]) -> Path | None:
        """Absolute path of a run's video (``run`` is a run_id or a run dict), or None."""
        row = self.get_run(run) if isinstance(run, str) else run
        rel = row.get("video_path")
        if is_object_url(rel):  # on object storage: its local copy (video_objects)
            return cache_path(self.root, row)
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
        if is_object_url(row.get("video_path")):  # the object itself: size, sha256 if full
            return check_object(self.root, row, full=full)
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
        frame = with_local_videos(self.to_dataframe(experiment=experiment), self.root)
        return write_bundle(frame, out, self.root, self.schema_version, self._now())


if TYPE_CHECKING:
    def _store_is_a_ledger(store: Store) -> Ledger:
        return store  # mypy fails here when Store stops implementing the Ledger protocol
