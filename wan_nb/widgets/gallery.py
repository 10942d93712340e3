"""The Gallery: runs side by side in a grid faceted by any two parameters (prompt × seed, model ×
ratio, ...), labelled; one control that plays, pauses and seeks every video together; a rating
(1-5) and a keep/reject verdict per video, written to the store at once (``to_dataframe()``
shows them); order by rating; a blind mode for a fair comparison (labels hidden, order shuffled
with a seed, the labels shown again once every video has a rating).

A grid of a hundred videos stays quick: nothing is fetched before a video is played
(``preload="none"``) and each shows a poster frame, a small JPEG made once with ffmpeg and
cached beside the video (:func:`wan_nb.media.make_posters`; made in the background the first
time, the cells gain them as they come).

The grid is a handful of widget models, not five per video: each row of the grid (one video per
column) is one ``W.HTML`` of labels, videos and plain ``<button>`` s (rating, verdict, "Load into
form"). A click runs the row's inline handler, which writes ``{run_id, action, value}`` into a
hidden text widget (the channel, as the generation form sends its prompt); the kernel calls
:meth:`Gallery.rate`, :meth:`Gallery.set_keep` or :meth:`Gallery.load` (what tests call) and
re-renders that row only: its ``<video>`` elements are replaced (one playing there stops).

The shared control acts on the ``<video>`` elements in the browser, which Python cannot reach:
its buttons carry inline event handlers, which run in a widget's HTML (ipywidgets 8 sets it with
``innerHTML``, unsanitized; a ``<script>`` would not run) and touch only the videos inside this
gallery's own container (found by a class unique to it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as W
from ipywidgets.widgets.widget_string import HTMLStyle

from .. import runtime
from ..display import RESOLVE_HOOK
from ..errors import ValidationError, WanError
from ..media import POSTER_BATCH, cached_poster, make_posters
from . import _style as S
from ._lifecycle import file_under_current_cell
from .form_controls import channel_message, guard_html

#: What a gallery can be faceted by (a job attribute each) and how its labels name them.
FACETS: dict[str, str] = {
    "prompt": "Prompt", "seed": "Seed", "model": "Model", "ratio": "Ratio",
    "resolution": "Resolution", "duration": "Duration", "variant": "Variant",
    "size": "Pixels", "negative_prompt": "Negative prompt", "prompt_extend": "Prompt rewrite",
    "watermark": "Watermark", "audio_mode": "Audio", "shot_type": "Multi-shot",
    "experiment": "Experiment"}
# the facets picked when none is given: the first two that vary
_AUTO = ("prompt", "model", "seed", "resolution", "ratio", "duration", "negative_prompt",
         "prompt_extend", "audio_mode", "shot_type", "watermark", "experiment")
AUTO = "auto"  # rows=/cols= default: the first parameters that vary
AUTO_MAX = 8  # ... with at most this many values
CHANNEL_CLASS = "wan-gallery-channel"  # the hidden text the buttons write clicks into
ACTIONS = ("rate", "keep", "load")
ORDERS = (("as run", "run"), ("rating, best first", "best"), ("rating, worst first", "worst"))


def facet_value(job: Any, name: str) -> Any:
    return getattr(job, name)


def facet_text(name: str, value: Any) -> str:
    """A facet value as a label (plain text)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if name == "duration":
        return f"{value} s"
    return str(value)


def _as_jobs(source: Any) -> list[Any]:
    if hasattr(source, "run_id"):  # one job
        return [source]
    if hasattr(source, "variants") and hasattr(source, "resume"):  # an Experiment
        jobs = source.jobs
        return list(jobs if jobs else source.resume())
    return list(source)


def _check_facet(field: str, name: str | None) -> str | None:
    if name is not None and name not in FACETS:
        raise ValidationError([(field, f"{field}={name!r} is not a parameter the gallery can "
                                       f"facet by; choose one of {', '.join(FACETS)}")])
    return name


def _sort_key(rating: float | None, order: str) -> float:
    if rating is None:
        return math.inf  # unrated last either way
    return -rating if order == "best" else rating


class _Card:
    """One video: its job, its poster and the markup last rendered for it."""

    def __init__(self, gallery: Gallery, job: Any):
        self.gallery = gallery
        self.job = job
        self.poster = cached_poster(job.video) if job.video else None
        self.html = ""

    @property
    def rating(self) -> int | None:
        """The rating the card shows (in blind mode only one given in this blind round)."""
        if self.gallery.blind.value:
            return self.gallery._blind_given.get(self.job.run_id, {}).get("rating")
        return self.job.rating if self.job.rating in range(1, 6) else None

    @property
    def keep(self) -> bool | None:
        """The verdict the card shows (True: keep, False: reject, None: none yet)."""
        if self.gallery.blind.value:
            return self.gallery._blind_given.get(self.job.run_id, {}).get("keep")
        return self.job.keep if isinstance(self.job.keep, bool) else None


class Gallery(W.VBox):
    """``Gallery(jobs_or_experiment, *, rows=None, cols=None, on_load=None)``.

    ``rows`` and ``cols`` name the parameters of the grid's rows and columns (see
    :data:`FACETS`; by default the first two that vary; ``None``: no rows, or no columns); the
    Rows and Columns dropdowns change them. ``on_load(job)`` adds a "Load into form" button
    to each video. ``columns`` is how many videos a row holds when no column parameter is
    chosen, ``seed`` the blind mode's shuffle. :meth:`rate`, :meth:`set_keep` and :meth:`load`
    do what the cards' buttons do. :meth:`close` releases every callback it holds on
    unfinished jobs and closes every model it made.
    """

    def __init__(self, jobs: Any, *, rows: str | None = AUTO, cols: str | None = AUTO,
                 on_load: Callable[[Any], Any] | None = None, columns: int | None = None,
                 seed: int | None = None, **kwargs: Any):
        self._listening: list[_Card] = []  # first: close() (also from __del__) reads them
        self._cards: list[_Card] = []
        self._row_widgets: list[W.HTML] = []
        self.jobs = _as_jobs(jobs)
        self._on_load = on_load
        if columns is not None and (isinstance(columns, bool) or not isinstance(columns, int)
                                    or columns < 1):
            raise ValidationError([("columns", f"columns must be a whole number >= 1 (videos "
                                               f"per row), not {columns!r}")])
        self.columns = columns
        self.blind_seed = random.SystemRandom().randrange(2**32) if seed is None else int(seed)
        self._css = f"wan-gallery-{uuid.uuid4().hex[:12]}"
        self._blind_given: dict[str, dict[str, Any]] = {}
        self.revealed = self._closed = False
        self.row_labels, self.col_labels = list[str](), list[str]()
        # the grid's cells (lists of cards) row by row; the HTML rows that show them (a label
        # or None, and at most one card per column); their column template; a card's HTML row
        self._cells: list[list[_Card]] = []
        self._rows: list[tuple[str | None, list[_Card | None]]] = []
        self._template, self._row_of = "", dict[str, int]()
        self._posters: concurrent.futures.Future[None] | None = None
        self._varying = [n for n in FACETS if len({_hashable(facet_value(j, n))
                                                   for j in self.jobs}) > 1]
        # picked by default: parameters with a few values (a hundred seeds make no columns)
        auto = [n for n in _AUTO if n in self._varying and n not in (rows, cols)
                and len({_hashable(facet_value(j, n)) for j in self.jobs}) <= AUTO_MAX]
        if rows == AUTO and cols == AUTO:
            rows, cols = (auto[0], auto[1]) if len(auto) > 1 else (None, next(iter(auto), None))
        elif rows == AUTO:
            rows = next(iter(auto), None) if cols is not None else None
        elif cols == AUTO:
            cols = next(iter(auto), None)
        options = [("—", None), *((label, name) for name, label in FACETS.items())]
        self.rows = W.Dropdown(options=options, value=_check_facet("rows", rows),
                               description="Rows")
        self.cols = W.Dropdown(options=options, value=_check_facet("cols", cols),
                               description="Columns")
        self.order = W.Dropdown(options=ORDERS, value="run", description="Order")
        self.blind = W.ToggleButton(description="Blind", tooltip=(
            "Hide the labels and shuffle the videos; the labels show again once every video "
            "has a rating"))
        self.status = W.HTML()
        self.sync = W.HTML(self._sync_html())
        # keys pressed on the gallery's controls never reach the notebook's shortcuts
        self.guard = W.HTML(guard_html(self._css), layout=W.Layout(height="0px"))
        # the cards' buttons write {run_id, action, value} here (see the module's notes)
        self.channel = W.Text(layout=W.Layout(display="none"))
        self.channel.add_class(CHANNEL_CLASS)
        self._row_layout = W.Layout(width="100%")
        self._row_style = HTMLStyle()
        self.header = W.HTML(layout=self._row_layout, style=self._row_style)
        self.grid = W.VBox(layout=W.Layout(width="100%", overflow="auto"))
        self._cards = [_Card(self, j) for j in self.jobs]
        self._by_id = {c.job.run_id: c for c in self._cards}
        for widget in (self.rows, self.cols, self.order):
            widget.observe(lambda _c: self._relayout(), "value")
        self.blind.observe(lambda change: self._set_blind(change["new"]), "value")
        self.channel.observe(self._on_channel, "value")
        self.controls = W.HBox([self.rows, self.cols, self.order, self.blind],
                               layout=W.Layout(flex_flow="row wrap"))
        super().__init__([self.guard, self.controls, self.sync, self.status, self.grid,
                          self.channel], **kwargs)
        self.add_class("wan-gallery").add_class(self._css)
        self._listening = [c for c in self._cards if not c.job.done]
        for card in self._listening:
            card.job.on_change(self._changed)
        self._relayout()
        self._queue_posters([c for c in self._cards if c.job.video and c.poster is None])
        file_under_current_cell(self)

    # -- what is shown -----------------------------------------------------------------------
    @property
    def cards(self) -> list[_Card]:
        return list(self._cards)

    def card(self, run_id: str) -> _Card:
        try:
            return self._by_id[run_id]
        except KeyError:
            raise ValidationError([("run_id", f"{run_id!r} is not a run of this gallery (it "
                                              f"shows {len(self._cards)} runs)")]) from None

    def cells(self) -> list[list[str]]:
        """Each grid cell's run ids, row by row (labels left out; the videos of a cell are
        shown one under another)."""
        return [[c.job.run_id for c in cell] for cell in self._cells]

    def shown(self) -> list[str]:
        """The run ids in the order the grid shows them (row by row)."""
        return [run_id for cell in self.cells() for run_id in cell]

    def markup(self) -> str:
        """All the HTML the gallery shows now (for tests and exports)."""
        return "\n".join([self.sync.value, self.status.value, self.header.value,
                          *(w.value for w in self._row_widgets)])

    def _caption_names(self) -> list[str]:
        # the variant names what varies, which the caption already says
        varying = [n for n in self._varying if n != "variant"]
        if self.blind.value and self.revealed:
            return varying
        faceted = {self.rows.value, self.cols.value}
        return [n for n in varying if n not in faceted]

    def _card_html(self, card: _Card) -> str:
        job = card.job
        hidden = self.blind.value and not self.revealed
        caption = ""
        if not hidden:
            parts = []
            for name in self._caption_names():
                text = facet_text(name, facet_value(job, name))
                parts.append(f"<span title='{S.esc(FACETS[name])}: {S.esc(text)}'>"
                             f"{S.dim(S.esc(FACETS[name]))} {S.short(text, 60)}</span>")
            caption = (f"<div style='font-size:0.85em;color:{S.FG};{S.ONE_LINE}'>"
                       f"{' · '.join(parts)}</div>")
        if job.video:
            body = S.video(job.video, poster=card.poster, preload="none", muted=True,
                           duration=job.video_duration or job.duration,
                           extra=f'ontimeupdate="{S.esc(self._follow_js())}"')
            # the resolve hook once per row (_row_html), not once per video
            body = body.replace(RESOLVE_HOOK, "") or S.error(job.error or "the video file is "
                                                             "missing")
        else:
            status = "" if hidden else S.badge(job.status)
            body = (f"<div style='padding:12px 4px'>{status} "
                    f"{S.esc(job.error) if job.error and not hidden else ''}</div>")
        card.html = (f"<div class='wan-gallery-card' data-wan-run='{S.esc(job.run_id)}' "
                     f"style='border:1px solid {S.BORDER};padding:4px;margin:0 0 4px 0;"
                     f"min-width:0'>{caption}{body}{self._buttons(card)}</div>")
        return card.html

    def _buttons(self, card: _Card) -> str:
        def button(action: str, value: Any, text: str, title: str, pressed: bool,
                   attr: str, width: str) -> str:
            return (f"<button type='button' class='jupyter-button wan-gallery-button"
                    f"{' mod-active' if pressed else ''}' {attr} data-wan-action='{action}' "
                    f"data-wan-value='{S.esc(json.dumps(value))}' aria-pressed="
                    f"'{'true' if pressed else 'false'}' title='{S.esc(title)}' "
                    f"style='width:{width};margin:0;padding:0 2px'>{S.esc(text)}</button>")
        label = f"style='display:inline-block;width:50px;color:{S.FG_DIM};font-size:0.85em'"
        rating, keep = card.rating, card.keep
        rates = "".join(button("rate", i, str(i), f"rate {i} of 5", rating == i,
                               f"data-wan-rate='{i}'", "34px") for i in range(1, 6))
        verdicts = "".join(button("keep", v, text, f"{text.lower()} this video", keep is v,
                                  f"data-wan-keep='{text.lower()}'", "70px")
                           for text, v in (("Keep", True), ("Reject", False)))
        out = (f"<div class='wan-choice wan-rating' style='display:flex;gap:2px;"
               f"align-items:center;margin-top:2px'><span {label}>Rating</span>{rates}</div>"
               f"<div class='wan-choice wan-verdict' style='display:flex;gap:2px;"
               f"align-items:center;margin-top:2px'><span {label}>Verdict</span>{verdicts}</div>")
        if self._on_load is not None:
            out += ("<button type='button' class='jupyter-button wan-gallery-button' "
                    "data-wan-action='load' data-wan-value='null' data-wan-load='1' "
                    "title='Fill the generation form with this run&#x27;s settings' "
                    "style='margin-top:2px'>Load into form</button>")
        return out

    def _click_js(self) -> str:
        """A row's click handler: a card button's click goes to the kernel through the
        channel."""
        return ("var b=event.target.closest&&event.target.closest('button[data-wan-action]');"
                "if(!b)return;var c=b.closest('[data-wan-run]');"
                f"var g=this.closest('.{self._css}');"
                f"var i=g&&g.querySelector('.{CHANNEL_CLASS} input');if(!c||!i)return;"
                "i.value=JSON.stringify({n:Date.now()+Math.random(),"
                "run_id:c.getAttribute('data-wan-run'),action:b.getAttribute('data-wan-action'),"
                "value:JSON.parse(b.getAttribute('data-wan-value'))});"
                "i.dispatchEvent(new Event('change',{bubbles:true}));")

    def _row_html(self, index: int) -> str:
        label, cards = self._rows[index]
        parts = [] if label is None else [self._header_html(label) if label else "<div></div>"]
        inner = "".join(parts + [self._card_html(c) if c else "<div></div>" for c in cards])
        return (f"<div class='wan-gallery-row' onclick=\"{S.esc(self._click_js())}\" "
                f"style='display:grid;grid-template-columns:{self._template};gap:6px;"
                f"align-items:start;margin-bottom:6px'>{inner}"
                f"{RESOLVE_HOOK if 'data-wan-p' in inner else ''}</div>")

    def _header_html(self, text: str) -> str:
        return (f"<div style='font-weight:bold;color:{S.FG};overflow-wrap:anywhere' "
                f"title='{S.esc(text)}'>{S.short(text, 120)}</div>")

    def _render_rows(self, indexes: Iterable[int]) -> None:
        for index in sorted(set(indexes)):
            if index < len(self._row_widgets):
                self._row_widgets[index].value = self._row_html(index)

    def _render_cards(self, cards: Iterable[_Card]) -> None:
        self._render_rows(self._row_of[c.job.run_id] for c in cards if c.job.run_id in self._row_of)

    # -- layout ------------------------------------------------------------------------------
    def _relayout(self) -> None:
        header: list[str] = []
        if self.blind.value:
            self._layout_blind()
        else:
            header = self._layout_faceted()
        self._row_of = {c.job.run_id: i for i, (_l, cards) in enumerate(self._rows)
                        for c in cards if c}
        self.header.value = (
            f"<div style='display:grid;grid-template-columns:{self._template};gap:6px;"
            f"margin-bottom:6px'>{''.join(self._header_html(h) for h in header)}</div>"
            if header else "")
        extra = self._row_widgets[len(self._rows):]
        while len(self._row_widgets) < len(self._rows):
            self._row_widgets.append(W.HTML(layout=self._row_layout, style=self._row_style))
        self._row_widgets = self._row_widgets[:len(self._rows)]
        self._render_rows(range(len(self._rows)))
        self.grid.children = [self.header, *self._row_widgets] if header else self._row_widgets
        for widget in extra:
            widget.close()  # its layout and style are shared
        self._update_status()

    def _ordered(self, cards: list[_Card]) -> list[_Card]:
        order = self.order.value
        return cards if order == "run" else sorted(
            cards, key=lambda c: _sort_key(c.job.rating, order))

    def _values(self, name: str | None, cards: list[_Card]) -> list[Any]:
        if name is None:
            return [None]
        values: list[Any] = []
        for card in cards:
            value = facet_value(card.job, name)
            if _hashable(value) not in [_hashable(v) for v in values]:
                values.append(value)
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          for v in values):
            values.sort()
        if self.order.value != "run":
            def key(value: Any) -> float:
                members = [c for c in cards
                           if _hashable(facet_value(c.job, name)) == _hashable(value)]
                rated = [c.job.rating for c in members if c.job.rating is not None]
                return _sort_key(sum(rated) / len(rated) if rated else None, self.order.value)
            values.sort(key=key)
        return values

    def _chunks(self, cards: list[_Card], width: int) -> None:
        self._template = f"repeat({width}, minmax(160px, 1fr))"
        self._cells = [[c] for c in cards]
        self._rows = [(None, list(cards[i:i + width])) for i in range(0, len(cards), width)]

    def _layout_faceted(self) -> list[str]:
        """Lay the grid out by the Rows and Columns parameters; the header row's labels."""
        rows, cols = self.rows.value, self.cols.value
        cards = self._ordered(self._cards)
        if rows is None and cols is None:
            self.row_labels, self.col_labels = [], []
            self._chunks(cards, self.columns or min(4, max(1, len(cards))))
            return []
        row_values, col_values = self._values(rows, cards), self._values(cols, cards)
        self.row_labels = [f"{FACETS[rows]}: {facet_text(rows, v)}" for v in row_values
                           ] if rows else []
        self.col_labels = [f"{FACETS[cols]}: {facet_text(cols, v)}" for v in col_values
                           ] if cols else []
        lead = "minmax(80px, 180px) " if rows else ""
        self._template = f"{lead}repeat({len(col_values)}, minmax(160px, 1fr))"
        self._cells, self._rows = [], []
        for i, row_value in enumerate(row_values):
            cells = [[c for c in cards
                      if (rows is None or _same(facet_value(c.job, rows), row_value))
                      and (cols is None or _same(facet_value(c.job, cols), col_value))]
                     for col_value in col_values]
            self._cells += cells
            # a cell's videos one under another: an HTML row holds one of each column's
            for k in range(max(1, *map(len, cells))):
                label = (self.row_labels[i] if k == 0 else "") if rows else None
                self._rows.append((label, [cell[k] if k < len(cell) else None
                                           for cell in cells]))
        if not cols:
            return []
        return ([f"{FACETS[rows]} \\ {FACETS[cols]}"] if rows else []) + self.col_labels

    def _layout_blind(self) -> None:
        self.row_labels, self.col_labels = [], []
        cards = self._blind_cards()
        random.Random(self.blind_seed).shuffle(cards)
        self._chunks(cards, self.columns or max(2, min(6, math.ceil(math.sqrt(len(cards))))))

    def _blind_cards(self) -> list[_Card]:
        return [c for c in self._cards if c.job.video]  # an unfinished run is not rated blind

    def _update_status(self) -> None:
        cards = self._blind_cards() if self.blind.value else self._cards
        rated = sum(c.rating is not None for c in cards)
        if self.blind.value and not self.revealed:
            text = (f"Blind: {rated} of {len(cards)} rated; the labels show when every video "
                    "has a rating.")
        elif self.blind.value:
            text = f"Revealed: all {len(cards)} videos rated (labels shown, order kept)."
        else:
            text = f"{len(cards)} videos, {rated} rated."
        self.status.value = f"<div style='color:{S.FG_DIM}'>{S.esc(text)}</div>"

    # -- blind mode --------------------------------------------------------------------------
    def _set_blind(self, on: bool) -> None:
        self._blind_given = {}
        self.revealed = False
        for widget in (self.rows, self.cols, self.order):
            widget.disabled = on
        self._relayout()

    def _check_reveal(self) -> bool:
        if not self.revealed and all(c.job.run_id in self._blind_given
                                     and "rating" in self._blind_given[c.job.run_id]
                                     for c in self._blind_cards()):
            self.revealed = True
            self._render_rows(range(len(self._rows)))
            return True
        return False

    # -- what the buttons do -------------------------------------------------------------------
    def rate(self, run_id: str, rating: int) -> bool:
        """Rate a video 1-5, as a click on its button does: written to the store at once, the
        card and the status updated. False (the reason in the status) when the store failed."""
        if isinstance(rating, bool) or rating not in range(1, 6):
            raise ValidationError([("rating", f"rating must be a whole number 1-5, not "
                                              f"{rating!r}")])
        return self._record(self.card(run_id), "rating", int(rating))

    def set_keep(self, run_id: str, keep: bool) -> bool:
        """Keep (True) or reject (False) a video, as a click on Keep or Reject does."""
        if not isinstance(keep, bool):
            raise ValidationError([("keep", f"keep must be True (keep) or False (reject), "
                                            f"not {keep!r}")])
        return self._record(self.card(run_id), "keep", keep)

    def load(self, run_id: str) -> None:
        """Hand a video's run to ``on_load`` (the "Load into form" button)."""
        card = self.card(run_id)
        if self._on_load is None:
            return
        try:
            self._on_load(card.job)
        except WanError as e:
            self.status.value = S.error(e)

    def _record(self, card: _Card, field: str, value: Any) -> bool:
        try:
            card.job.rate(**{field: value})
        except (WanError, OSError) as e:
            self.status.value = S.error(f"could not record the rating: {e}")
            return False
        if self.blind.value:
            self._blind_given.setdefault(card.job.run_id, {})[field] = value
            if self._check_reveal():
                self._update_status()
                return True
        self._render_cards([card])
        self._update_status()
        return True

    def _on_channel(self, change: dict[str, Any]) -> None:
        msg: dict[str, Any] = channel_message(change["new"] or "") or {}
        action, run_id, value = msg.get("action"), msg.get("run_id"), msg.get("value", 0)
        if action not in ACTIONS or not isinstance(run_id, str) or run_id not in self._by_id:
            return  # not a click of this gallery's buttons
        try:
            if action == "load":
                self.load(run_id)
            else:
                (self.rate if action == "rate" else self.set_keep)(run_id, value)
        except ValidationError as e:  # not a value our buttons send: shown, nothing written
            self.status.value = S.error(e)

    # -- unfinished jobs and posters -----------------------------------------------------------
    def _changed(self, job: Any) -> None:
        card = next((c for c in self._listening if c.job is job), None)
        if card is None:
            return
        self._render_cards([card])
        if job.done:
            job.off_change(self._changed)
            self._listening.remove(card)
            if job.video:
                self._queue_posters([card])

    def _queue_posters(self, cards: list[_Card]) -> None:
        if cards and not self._closed:
            self._posters = runtime.submit(self._make_posters(cards))

    async def _make_posters(self, cards: list[_Card]) -> None:
        for start in range(0, len(cards), POSTER_BATCH):
            if self._closed:
                return
            batch = cards[start:start + POSTER_BATCH]
            made = await asyncio.to_thread(make_posters, [c.job.video for c in batch])
            for card, poster in zip(batch, made, strict=True):
                card.poster = poster
            if not self._closed:
                self._render_cards(batch)

    def wait_posters(self, timeout: float | None = None) -> bool:
        """Wait until the poster frames being made in the background are there (True), or
        ``timeout`` seconds (False)."""
        future = self._posters
        if future is None:
            return True
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Release the callbacks on unfinished jobs, stop making posters, close the views."""
        self._closed = True
        for card in self._listening:
            card.job.off_change(self._changed)
        self._listening = []
        parts = [getattr(self, name, None) for name in ("rows", "cols", "order", "blind",
                                                          "status", "sync", "grid", "controls",
                                                          "guard", "channel", "header")]
        S.close_all(*self._row_widgets, *(p for p in parts if p is not None))
        self._row_widgets = []
        S.close_all(self.layout)
        super().close()

    # -- the shared play / pause / seek control ------------------------------------------------
    def _max_duration(self) -> float:
        return max([float(j.video_duration or j.duration or 0) for j in self.jobs if j.video]
                   or [0.0])

    def _follow_js(self) -> str:
        """On a video's timeupdate: the first video of the gallery moves the seek bar."""
        return (f"var g=this.closest('.{self._css}');if(!g||g.querySelector('video')!==this)"
                "return;var s=g.querySelector('input.wan-seek');"
                "if(s&&document.activeElement!==s){s.value=this.currentTime;}")

    def _sync_html(self) -> str:
        find = (f"var g=this.closest('.{self._css}');if(!g)return;"
                "var vs=g.querySelectorAll('video');")
        toggle = (find + "var play=this.getAttribute('data-state')!=='playing';"
                  "var t=vs.length?vs[0].currentTime:0;"
                  "vs.forEach(function(v){if(play){if(Math.abs(v.currentTime-t)>0.05){"
                  "v.currentTime=t;}var p=v.play();if(p&&p.catch){p.catch(function(){});}}"
                  "else{v.pause();}});this.setAttribute('data-state',play?'playing':'paused');"
                  "this.textContent=play?'⏸ Pause all':'▶ Play all';")
        seek = (find + "var t=parseFloat(this.value)||0;vs.forEach(function(v){"
                "var d=(isFinite(v.duration)&&v.duration>0)?v.duration:"
                "(parseFloat(v.getAttribute('data-duration'))||0);v.currentTime=Math.min(t,d);});")
        top = self._max_duration() or 10.0
        return (f"<div style='display:flex;align-items:center;gap:8px;color:{S.FG}'>"
                f"<button class='jupyter-button wan-playall' data-state='paused' "
                f"title='Play or pause every video of this gallery together' "
                f"onclick=\"{S.esc(toggle)}\">▶ Play all</button>"
                f"<label style='flex:1;display:flex;align-items:center;gap:6px'>"
                f"{S.dim('Seek all')}<input type='range' class='wan-seek' min='0' "
                f"max='{top:.2f}' step='0.05' value='0' style='flex:1' "
                f"aria-label='Seek every video of this gallery' "
                f"oninput=\"{S.esc(seek)}\"></label></div>")


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _same(a: Any, b: Any) -> bool:
    return _hashable(a) == _hashable(b)
