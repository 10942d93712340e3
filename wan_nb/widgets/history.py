"""The History: the store's recent runs, newest first, searchable by text (prompt, the
service's rewrite, negative prompt, model, experiment, variant, notes, run id, status), each with
a button that loads the run into the generation form.

::

    History(session, on_load=form.load)          # the 50 newest runs; type in Search to filter

It reads the store when it is made and on :meth:`refresh` (the Refresh button); it holds no
callbacks on jobs or the session, so there is nothing to release but its views.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import ipywidgets as W
from ipywidgets.widgets.widget_string import HTMLStyle

from ..errors import ValidationError, WanError
from . import _style as S
from .form_controls import guard_html

#: The fields a search looks in.
SEARCHED = ("prompt", "actual_prompt", "negative_prompt", "model", "experiment", "variant",
            "notes", "run_id", "status")


def matches(row: dict[str, Any], query: str) -> bool:
    """Whether every word of ``query`` appears (any case) in one of the run's SEARCHED
    fields."""
    text = "\n".join(str(row.get(name) or "") for name in SEARCHED).casefold()
    return all(word in text for word in query.casefold().split())


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    return ""


def row_html(row: dict[str, Any]) -> str:
    """One run as a line of facts and a line of prompt (escaped)."""
    facts = [row.get("model"), row.get("resolution"), row.get("ratio"),
             f"{row['duration']} s" if row.get("duration") else None,
             f"seed {row['seed']}" if row.get("seed") is not None else None]
    keep = row.get("keep")
    verdict = "" if keep is None else ("keep" if keep else "reject")
    rating = f"★{row['rating']}" if row.get("rating") else ""
    judged = " ".join(x for x in (rating, verdict) if x)
    where = " / ".join(str(x) for x in (row.get("experiment"), row.get("variant")) if x)
    notes = (f"<div style='color:{S.FG_DIM};font-size:0.85em;{S.ONE_LINE}'>"
             f"notes: {S.esc(row['notes'])}</div>" if row.get("notes") else "")
    prompt = row.get("prompt") or ""
    return (f"<div style='color:{S.FG};min-width:0'>"
            f"<div style='{S.ONE_LINE};font-size:0.85em'>{S.badge(row.get('status') or '?')} "
            f"{S.dim(S.esc(_when(row.get('created_at'))))} "
            f"{S.esc(' · '.join(str(f) for f in facts if f))}"
            f"{' · ' + S.esc(judged) if judged else ''}"
            f"{' · ' + S.dim(S.esc(where)) if where else ''}</div>"
            f"<div style='{S.ONE_LINE}' title='{S.esc(prompt)}'>{S.esc(prompt)}</div>"
            f"{notes}</div>")


class _Row:
    def __init__(self, history: History, shared: list[W.Widget]):
        html_layout, html_style, load_layout, load_style = shared
        self.run_id: str | None = None
        self.html = W.HTML(layout=html_layout, style=html_style)
        self.load = W.Button(description="Load into form", layout=load_layout, style=load_style,
                             tooltip="Fill the generation form with this run")
        self.load.on_click(lambda _b: history._load(self.run_id))
        if history._on_load is None:
            self.load.layout.display = "none"
        self.box = W.HBox([self.html, self.load], layout=W.Layout(
            align_items="center", width="100%", border_bottom=f"1px solid {S.BORDER}",
            display="none"))

    def show(self, row: dict[str, Any] | None) -> None:
        self.run_id = None if row is None else row["run_id"]
        self.html.value = "" if row is None else row_html(row)
        self.box.layout.display = "none" if row is None else None


class History(W.VBox):
    """``History(session, *, on_load=None, limit=50)``: the ``limit`` newest runs of
    ``session.store`` that match the Search box. ``on_load(job)`` gets the run as a job
    (``session.attach``), for the form to fill itself from."""

    def __init__(self, session: Any, *, on_load: Callable[[Any], Any] | None = None,
                 limit: int = 50, **kwargs: Any):
        self._rows: list[_Row] = []  # first: close() (also from __del__) reads them
        self._shared: list[W.Widget] = []
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError([("limit", f"limit must be a whole number >= 1 (how many "
                                             f"runs to show), not {limit!r}")])
        self.session = session
        self._on_load = on_load
        self.limit = limit
        self._runs: list[dict[str, Any]] = []
        self.shown: list[str] = []  # run ids on screen, newest first
        self._css = css = f"wan-history-{uuid.uuid4().hex[:12]}"
        self.search = W.Text(description="Search", placeholder="prompt, model, variant, notes…",
                             continuous_update=True, layout=W.Layout(flex="1 1 auto"))
        self.refresh_button = W.Button(description="Refresh", tooltip="Read the store again",
                                       layout=W.Layout(width="auto"))
        self.summary = W.HTML()
        self.guard = W.HTML(guard_html(css), layout=W.Layout(height="0px"))
        # one layout and style for all rows' text and buttons: fewer widget models
        self._shared = [W.Layout(flex="1 1 auto", min_width="0"), HTMLStyle(),
                        W.Layout(width="auto", flex="0 0 auto"), W.ButtonStyle()]
        self._rows = [_Row(self, self._shared) for _ in range(limit)]
        self.search.observe(lambda _c: self._show(), "value")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.bar = W.HBox([self.search, self.refresh_button])
        super().__init__([self.guard, self.bar, self.summary,
                          *(r.box for r in self._rows)], **kwargs)
        self.add_class("wan-history")
        self.add_class(css)
        self.refresh()

    def refresh(self) -> None:
        """Read the store again and show what matches the search."""
        try:
            self._runs = list(reversed(self.session.store.runs()))
        except WanError as e:
            self.summary.value = S.error(f"cannot read the run log: {e}")
            return
        self._show()

    def _show(self) -> None:
        query = self.search.value.strip()
        found = [r for r in self._runs if matches(r, query)] if query else self._runs
        page = found[: self.limit]
        for i, row in enumerate(self._rows):
            row.show(page[i] if i < len(page) else None)
        self.shown = [r["run_id"] for r in page]
        what = f"match “{query}”" if query else "in the run log"
        more = f"; the newest {len(page)} shown" if len(found) > len(page) else ""
        self.summary.value = (f"<div style='color:{S.FG_DIM}'>{len(found)} of "
                              f"{len(self._runs)} runs {S.esc(what)}{more}</div>"
                              if self._runs else S.dim("no runs recorded yet"))

    def _load(self, run_id: str | None) -> None:
        if run_id is None or self._on_load is None:
            return
        try:
            self._on_load(self.session.attach(run_id))
        except WanError as e:
            self.summary.value = S.error(e)

    def close(self) -> None:
        """Close the views, with their layouts and styles."""
        parts = [getattr(self, name, None) for name in ("search", "refresh_button", "bar",
                                                          "summary", "guard")]
        S.close_all(*(w for row in self._rows for w in (row.html, row.load, row.box)),
                    *(p for p in parts if p is not None), *self._shared, self.layout)
        super().close()
