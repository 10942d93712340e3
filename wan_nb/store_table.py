"""The run table's columns, their pandas dtypes, and its file formats (parquet, csv, bundle).

Split from :mod:`wan_nb.store` (which re-exports everything public here): the ledger there is
about SQLite and concurrency, this module about the one tidy table and its round trips.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import math
import os
import zipfile
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wan_nb import catalog
from wan_nb._version import __version__
from wan_nb.errors import ValidationError, WanError
from wan_nb.statuses import STATUSES

AUDIO_MODES = ("auto", "custom", "silent")
TIERS = ("480P", "720P", "1080P")


class StoreError(WanError):
    """The ledger file cannot be used (locked too long, corrupt, or from a newer wan_nb)."""


class LedgerDamaged(StoreError):
    """The ledger file is damaged (not a database, or a malformed page); it is left as it is."""


class StoreReadOnly(StoreError):
    """The ledger can be read here but not written (file or folder not writable)."""


class StoreFull(StoreError):
    """The disk (or quota) holding the ledger is full; recorded runs are safe."""


class SchemaVersionError(StoreError):
    """The ledger was written by a newer wan_nb than this one; it is left untouched."""


class RunNotFound(StoreError, KeyError):
    """No run with this run_id in the store."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


# (column, kind) in DataFrame order: identity, prompt, params, status, times, usage/cost,
# video, annotations, bookkeeping. Kinds decide validation, SQLite encoding and pandas dtype.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "text"), ("experiment", "text"), ("variant", "text"), ("tags", "tags"),
    ("prompt", "text"), ("negative_prompt", "text"), ("actual_prompt", "text"),
    ("prompt_rewritten", "derived"),
    ("model", "cat"), ("size", "text"), ("width", "int"), ("height", "int"), ("tier", "cat"),
    ("resolution", "cat"), ("ratio", "cat"),
    ("duration", "int"), ("seed", "int"), ("prompt_extend", "bool"), ("watermark", "bool"),
    ("audio_mode", "cat"), ("audio_url", "text"), ("shot_type", "text"),
    ("status", "cat"), ("error_code", "text"), ("error_message", "text"), ("task_id", "text"),
    ("request_id", "text"),
    ("created_at", "time"), ("sent_at", "time"), ("submit_time", "time"),
    ("scheduled_time", "time"), ("end_time", "time"), ("queue_s", "derived"),
    ("run_s", "derived"),
    ("usage_video_count", "int"), ("usage_video_duration", "float"),
    ("usage_video_ratio", "text"), ("usage_duration", "float"), ("usage_size", "text"),
    ("usage_sr", "int"), ("usage_ratio", "text"), ("usage_width", "int"),
    ("usage_height", "int"), ("usage_input_video_duration", "float"),
    ("usage_output_video_duration", "float"), ("usage_json", "json"), ("cost_usd", "float"),
    ("video_url", "text"), ("video_url_expires_at", "time"), ("video_path", "path"),
    ("video_sha256", "text"), ("video_bytes", "int"), ("video_mtime_ns", "int"),
    ("video_fps", "float"),
    ("video_frames", "int"), ("video_duration", "float"), ("has_audio", "bool"),
    ("download_error", "text"),
    ("rating", "int"), ("keep", "bool"), ("notes", "text"),
    ("fingerprint", "text"), ("request_json", "json"), ("backend", "cat"),
    ("wan_nb_version", "text"), ("owner", "text"), ("owner_heartbeat", "time"),
    ("updated_at", "time"),
)
KIND = dict(COLUMNS)
STORED = tuple(c for c, k in COLUMNS if k != "derived")
DERIVED = {"prompt_rewritten": "computed from prompt, actual_prompt, prompt_extend and model",
           "queue_s": "scheduled_time - submit_time", "run_s": "end_time - scheduled_time"}
# Text uses the python-backed StringDtype on purpose: its comparisons give the same masked
# ``boolean`` as Int64/boolean columns, so ``(df.seed == 1) & (df.variant == "a")`` works;
# the pyarrow-backed one gives ``bool[pyarrow]``, which raises when combined with those.
STRING = pd.StringDtype("python")
DTYPES = {"text": STRING, "path": STRING, "json": STRING, "int": "Int64",
          "float": "Float64", "bool": "boolean", "time": "datetime64[us, UTC]"}
_FIXED_CATEGORIES = {"status": STATUSES, "audio_mode": AUDIO_MODES}


def utc_text(value: datetime) -> str:
    """Fixed-width UTC ISO-8601, so that text order is time order (used in SQL comparisons)."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


@contextlib.contextmanager
def bulk_read() -> Iterator[None]:
    """Python's cyclic garbage collector paused while millions of rows and values are made
    (rows and values hold no cycles; anything else is collected at its next pass): its
    passes over the growing heap were about a fifth of ``to_dataframe()``'s time on 100,000
    runs. Left as it was found (a caller that paused it keeps it paused)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def typed_frame(raw: dict[str, Any]) -> pd.DataFrame:
    """The canonical frame from raw column values (SQLite columns, or those of an export).

    Shared by ``Store.to_dataframe`` and :func:`read_export`, so an export reads back exactly.
    Vectorised: no Python work per row except one list copy per run's tags (each distinct
    tag text is parsed once). Columns are made once, in their final order (no frame copy).
    """
    n = len(raw["run_id"])
    data: dict[str, Any] = {}
    for name, kind in COLUMNS[1:]:
        values = raw.get(name)
        if values is None:  # a column an export lacks: all missing
            values = [None] * n
        if kind == "derived":
            continue
        if kind == "time":
            data[name] = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601",
                                        utc=True).dt.as_unit("us").array
        elif kind == "cat":
            data[name] = _categorical(name, values)
        elif kind == "tags":
            data[name] = pd.Series(_tag_lists(values), dtype=object).array
        else:
            data[name] = pd.array(values, dtype=DTYPES[kind])
    data["prompt_rewritten"] = _rewritten(data["prompt"], data["actual_prompt"],
                                          data["prompt_extend"], data["model"])
    data["queue_s"] = _seconds(data["scheduled_time"], data["submit_time"])
    data["run_s"] = _seconds(data["end_time"], data["scheduled_time"])
    index = pd.Index(pd.array(raw["run_id"], dtype=STRING), name="run_id")
    return pd.DataFrame({name: data[name] for name, _ in COLUMNS[1:]}, index=index)


def _seconds(end: Any, start: Any) -> Any:
    """``end - start`` in seconds as Float64 (missing where either time is)."""
    return pd.Series(end - start).dt.total_seconds().astype("Float64").array


def offers_rewrite_switch(model: str | None) -> bool:
    """Whether ``prompt_extend`` turns the service's rewrite off on ``model`` (a model this
    version does not know: True, as on every model older than the 2026 ones)."""
    try:
        return catalog.get_model(model).prompt_extend if model else True
    except ValidationError:
        return True


def rewritten(prompt: str | None, actual: str | None, extend: bool | None,
              model: str | None) -> bool | None:
    """Whether the service's rewrite changed the prompt: known where it disclosed its rewrite
    (``actual_prompt``), False where the rewrite was turned off (``prompt_extend`` False on a
    model that has the switch), and None otherwise: not finished yet, or a model that does not
    disclose it (wan2.6, wan2.7, HappyHorse, which has no switch at all), which must not read as
    "the rewrite changed nothing"."""
    if actual is not None:
        return actual != prompt
    return False if extend is False and offers_rewrite_switch(model) else None


def _rewritten(prompt: Any, actual: Any, extend: Any, model: pd.Categorical) -> Any:
    """:func:`rewritten` over columns (one catalog look-up per model, not per row)."""
    differs = (actual != prompt).astype("boolean")  # missing where actual_prompt is
    # code -1 (no model) takes the last entry: True
    switch = [offers_rewrite_switch(m) for m in model.categories] + [True]
    has_switch = np.array(switch, dtype=bool)[np.asarray(model.codes)]
    turned_off = (extend == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712 (masked)
    off = np.asarray(actual.isna()) & turned_off & has_switch
    if off.any():
        differs[off] = False
    return differs


def _categorical(name: str, values: Any) -> pd.Categorical:
    """Fixed categories for status and audio_mode; tiers (and resolutions) in size order;
    others sorted. Codes from one hash pass over the values (values outside fixed
    categories are missing, as ``pd.Categorical`` makes them)."""
    strings = pd.array(values, dtype=STRING)
    codes, uniques = pd.factorize(strings)  # code -1: missing
    found = uniques.tolist()
    present = sorted(found)
    if name in _FIXED_CATEGORIES:
        categories = list(_FIXED_CATEGORIES[name])
    elif name in ("tier", "resolution"):  # known tiers in size order, any others after them
        categories = list(TIERS) + [t for t in present if t not in TIERS]
    else:
        categories = present
    position = {c: i for i, c in enumerate(categories)}
    # code -1 (missing) takes the last entry: -1
    lookup = np.array([position.get(u, -1) for u in found] + [-1], dtype=np.int64)
    dtype = pd.CategoricalDtype(pd.Index(categories, dtype="str"), ordered=False)
    return pd.Categorical.from_codes(lookup[codes], dtype=dtype)


def _tag_lists(values: Any) -> list[list[str]]:
    items = pd.Series(list(values), dtype=object)
    if pd.api.types.infer_dtype(items, skipna=False) == "string":  # JSON text: SQLite, CSV
        codes, uniques = pd.factorize(items.to_numpy())
        parsed = [json.loads(text) for text in uniques]
        return [list(parsed[c]) for c in codes.tolist()]  # each run its own list
    return [json.loads(v) if isinstance(v, str) else [] if v is None or v is pd.NA
            else [str(t) for t in v] for v in items]  # parquet arrays, or a hand-edited csv


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def write_table(df: pd.DataFrame, fh: Any, suffix: str) -> None:
    """Write a frame from ``typed_frame`` as parquet or csv (tags as JSON text in csv)."""
    if suffix == ".parquet":
        if not have_pyarrow():
            raise StoreError("exporting .parquet needs pyarrow: pip install 'wan_nb[parquet]'")
        df.to_parquet(fh)
    else:
        flat = df.assign(tags=[json.dumps(t, ensure_ascii=False) for t in df["tags"]])
        fh.write(flat.to_csv().encode("utf-8"))


def write_bundle(df: pd.DataFrame, out: Path, root: Path, schema_version: int,
                 now: datetime) -> Path:
    """The zip of :meth:`Store.export_bundle`: table, videos (same relative paths), manifest."""
    table = "runs.parquet" if have_pyarrow() else "runs.csv"
    buf = io.BytesIO()
    write_table(df, buf, Path(table).suffix)
    manifest: dict[str, Any] = {
        "format": "wan_nb bundle", "wan_nb_version": __version__,
        "schema_version": schema_version, "created_at": utc_text(now), "table": table,
        "experiments": sorted(df["experiment"].dropna().unique().tolist()),
        "runs": [], "missing_videos": []}
    keys = ["experiment", "variant", "model", "seed", "fingerprint", "status"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(table, buf.getvalue())
        for run_id, rec in df.iterrows():
            video = None if pd.isna(rec["video_path"]) else str(rec["video_path"])
            if video and (root / video).is_file():
                # MP4 is already compressed: store it rather than deflate it again
                zf.write(root / video, video, compress_type=zipfile.ZIP_STORED)
            elif video:
                manifest["missing_videos"].append(video)
                video = None
            request = rec["request_json"]
            manifest["runs"].append({
                "run_id": str(run_id), **{k: _jsonable(rec[k]) for k in keys}, "video": video,
                "request": None if pd.isna(request) else json.loads(request)})
        zf.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
    return out


def _jsonable(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def read_export(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``.parquet``/``.csv`` export or a bundle ``.zip`` back into the same typed
    frame :meth:`Store.to_dataframe` gives::

        pd.testing.assert_frame_equal(read_export(store.export("runs.csv")),
                                      store.to_dataframe())
    """
    src = Path(path)
    suffix = src.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(src) as zf:
            names = set(zf.namelist())
            table = next((t for t in ("runs.parquet", "runs.csv") if t in names), None)
            if table is None:
                raise ValidationError([("path", f"{src} is not a wan_nb bundle "
                                                "(no runs.parquet or runs.csv inside)")])
            return _read_table(io.BytesIO(zf.read(table)), Path(table).suffix)
    if suffix not in (".parquet", ".csv"):
        raise ValidationError([("path", f"cannot read {src.name!r}: expected a .parquet, "
                                        ".csv or bundle .zip file")])
    with open(src, "rb") as fh:
        return _read_table(fh, suffix)


def _read_table(fh: Any, suffix: str) -> pd.DataFrame:
    if suffix == ".parquet":
        df = pd.read_parquet(fh)
    else:
        # only an empty cell is missing: a prompt reading "NA" or "null" stays text
        dtypes = {name: DTYPES[kind] if kind in ("int", "float", "bool") else "string"
                  for name, kind in COLUMNS if kind != "derived"}
        df = pd.read_csv(fh, dtype=dtypes, keep_default_na=False, na_values=[""],
                         index_col="run_id")
    raw = {name: df[name] for name in df.columns if name in KIND}
    raw["run_id"] = df.index
    with bulk_read():
        return typed_frame(raw)
