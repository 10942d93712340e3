"""Small analyses of the run table (a frame from :meth:`wan_nb.store.Store.to_dataframe`).

Example::

    df = store.to_dataframe(experiment="cats")
    summary(df, by=["model", "resolution", "ratio"])   # compares models of both protocols
    prompt_diff(df).query("similarity < 0.5")
    ratings(df)
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from wan_nb.statuses import FAILED_STATUSES, FINAL_STATUSES
from wan_nb.store_table import STRING


# A token is one CJK character (those scripts put no spaces between words), a run of word
# characters, or one other non-space character. Whitespace is not a token: the diff is of
# words, and the compact output re-spaces them.
_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
_IS_CJK = re.compile(rf"[{_CJK}]")
_NO_SPACE_BEFORE = set(",.;:!?)]}%'\"")
_NO_SPACE_AFTER = set("([{")


def summary(df: pd.DataFrame, by: str | Sequence[str] = "variant") -> pd.DataFrame:
    """Per group of ``by`` (a column or a list of columns): ``count``, ``finished`` (in a
    final status), ``succeeded``, ``failed`` (FAILED or REJECTED), ``success_rate``
    (succeeded / finished), median ``queue_s`` and ``run_s``, total and mean ``cost_usd``.

    Runs with a missing key form their own group; ``success_rate`` is missing for a group
    with nothing finished yet.
    """
    keys = [by] if isinstance(by, str) else list(by)
    status = df["status"].astype(STRING)
    work = pd.DataFrame({
        **{f"__key{i}": df[k] for i, k in enumerate(keys)},
        "finished": status.isin(FINAL_STATUSES).astype("int64"),
        "succeeded": status.eq("SUCCEEDED").fillna(False).astype("int64"),
        "failed": status.isin(FAILED_STATUSES).astype("int64"),
        "queue_s": df["queue_s"].astype("Float64"), "run_s": df["run_s"].astype("Float64"),
        "cost_usd": df["cost_usd"].astype("Float64")}, index=df.index)
    groups = work.groupby([f"__key{i}" for i in range(len(keys))], dropna=False,
                          observed=True, sort=True)
    out = pd.DataFrame({
        "count": groups.size(),
        "finished": groups["finished"].sum(),
        "succeeded": groups["succeeded"].sum(),
        "failed": groups["failed"].sum(),
        "median_queue_s": groups["queue_s"].median(),
        "median_run_s": groups["run_s"].median(),
        "total_cost_usd": groups["cost_usd"].sum(),
        "mean_cost_usd": groups["cost_usd"].mean(),
    })
    finished = out["finished"].astype("Float64")
    out.insert(4, "success_rate",
               (out["succeeded"].astype("Float64") / finished).where(finished > 0))
    out.index.names = keys
    return out


def _gap(left: str, right: str) -> str:
    """The space printed between two adjacent tokens."""
    if (right in _NO_SPACE_BEFORE or left in _NO_SPACE_AFTER or _IS_CJK.match(left)
            or _IS_CJK.match(right)):
        return ""
    return " "


def _join(tokens: list[str]) -> str:
    out = tokens[0] if tokens else ""
    for left, right in zip(tokens, tokens[1:], strict=False):
        out += _gap(left, right) + right
    return out


def word_diff(old: str, new: str) -> tuple[str, float]:
    """``old`` rewritten into ``new`` as one compact string with ``[-removed-]`` and
    ``{+added+}`` marks (whitespace normalised), and the similarity (0–1) of their words::

        >>> word_diff("a cat on a mat", "a fluffy cat on a mat")
        ('a {+fluffy+} cat on a mat', 0.9090909090909091)
    """
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    out, last = "", None
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        removed, added = a[i1:i2], b[j1:j2]
        first = (removed or added)[0]
        if last is not None:
            out += _gap(last, first)
        if op == "equal":
            out += _join(removed)
        else:
            out += ("[-" + _join(removed) + "-]" if removed else "") + (
                "{+" + _join(added) + "+}" if added else "")
        last = (added or removed)[-1]
    return out, matcher.ratio()


def diff_segments(old: str, new: str) -> tuple[list[tuple[str, str]], float]:
    """The same word diff as :func:`word_diff`, as ``(kind, text)`` pieces in the texts' own
    spelling and spacing, for marking up: ``kind`` is ``"same"`` or ``"added"`` (pieces of
    ``new``: together they are ``new`` exactly) or ``"removed"`` (a piece of ``old``)::

        >>> diff_segments("a big cat", "a fat cat")[0]
        [('same', 'a '), ('removed', 'big'), ('added', 'fat'), ('same', ' cat')]
    """
    a, b = list(_TOKEN.finditer(old)), list(_TOKEN.finditer(new))
    matcher = difflib.SequenceMatcher(None, [m.group() for m in a], [m.group() for m in b],
                                      autojunk=False)
    out: list[tuple[str, str]] = []
    pos = 0  # how much of new is out
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        start = b[j1].start() if j1 < len(b) else len(new)
        end = b[j2 - 1].end() if j2 > j1 else start
        if start > pos:
            out.append(("same", new[pos:start]))
        if op == "equal":
            out.append(("same", new[start:end]))
        else:
            if i2 > i1:  # a removal alone keeps the space that followed it in old
                stop = a[i2].start() if op == "delete" and i2 < len(a) else a[i2 - 1].end()
                out.append(("removed", old[a[i1].start():stop]))
            if j2 > j1:
                out.append(("added", new[start:end]))
        pos = max(pos, end)
    if pos < len(new):
        out.append(("same", new[pos:]))
    merged: list[tuple[str, str]] = []
    for kind, text in out:
        if merged and merged[-1][0] == kind == "same":
            merged[-1] = ("same", merged[-1][1] + text)
        elif text:
            merged.append((kind, text))
    return merged, matcher.ratio()


def prompt_diff(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: ``prompt``, ``actual_prompt`` (the service's rewrite), ``diff`` (word-level,
    see :func:`word_diff`) and ``similarity`` (0–1). Runs without an ``actual_prompt`` (the
    rewrite not disclosed: wan2.6, wan2.7, HappyHorse; or prompt_extend off) get a missing diff
    and similarity, never a "no change": their ``prompt_rewritten`` is missing too.
    """
    diffs: list[str | None] = []
    ratios: list[float | None] = []
    for prompt, actual in zip(df["prompt"], df["actual_prompt"], strict=True):
        if pd.isna(prompt) or pd.isna(actual):
            diffs.append(None)
            ratios.append(None)
        else:
            diff, ratio = word_diff(prompt, actual)
            diffs.append(diff)
            ratios.append(ratio)
    return pd.DataFrame({
        "prompt": df["prompt"].astype(STRING),
        "actual_prompt": df["actual_prompt"].astype(STRING),
        "diff": pd.array(diffs, dtype=STRING),
        "similarity": pd.array(ratios, dtype="Float64"),
    }, index=df.index)


def ratings(df: pd.DataFrame) -> pd.DataFrame:
    """The rated runs as a tidy frame (``run_id``, ``variant``, ``model``, ``seed``,
    ``rating``, ``notes``), best rating first, ties in run order."""
    rated = df[df["rating"].notna()]
    out = rated.reset_index()[["run_id", "variant", "model", "seed", "rating", "notes"]]
    return out.sort_values("rating", ascending=False, kind="stable").reset_index(drop=True)


def with_thumbnails(df: pd.DataFrame, root: str | os.PathLike[str], *, frames: int = 4,
                    height: int = 48) -> pd.DataFrame:
    """``df`` with a ``thumbnails`` column of ``<img>`` strips (data URIs) for runs that have a
    video; show it with ``IPython.display.HTML(frame.to_html(escape=False))``. ``root`` is the
    store's folder (video paths in the frame are relative to it)."""
    import base64
    import html as _html

    from .media import thumbnail_strip

    from .video_objects import with_local_videos

    out = df.copy()
    cells = []
    # videos on object storage: their local copies (fetched when missing)
    local = with_local_videos(df, Path(root)) if "video_sha256" in df else df
    for path in local["video_path"]:
        if path is None or path is pd.NA or not isinstance(path, str):
            cells.append("")
            continue
        try:
            png = thumbnail_strip(os.path.join(root, path), frames=frames, height=height)
        except (ValueError, OSError) as e:
            cells.append(f"<i>{_html.escape(str(e)[:80])}</i>")
            continue
        cells.append(f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    out.insert(0, "thumbnails", cells)
    return out
