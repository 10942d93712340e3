"""The Gallery: runs side by side in a grid faceted by any two parameters (prompt × seed, model ×
ratio, ...), labelled; one control that plays, pauses and seeks every video together; a rating
(1-5) and a keep/reject verdict per video, written to the store at once (``to_dataframe()``
shows them); order by rating; a blind mode for a fair comparison (labels hidden, order shuffled
with a seed, the labels shown again once every video has a rating).

A grid of a hundred videos stays quick: nothing is fetched before a video is played
(``preload="none"``) and each shows a poster frame, a small JPEG made once with ffmpeg and
cached beside the video (:func:`wan_nb.media.make_posters`; made in the background the first
time, the cells gain them as they come).

The shared control acts on the ``<video>`` elements in the browser, which Python cannot reach:
its buttons carry inline event handlers, which run in a widget's HTML (ipywidgets 8 sets it with
``innerHTML``, unsanitized; a ``<script>`` would not run) and touch only the videos inside this
gallery's own container (found by a class unique to it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as W
from ipywidgets.widgets.widget_selection import ToggleButtonsStyle
from ipywidgets.widgets.widget_string import HTMLStyle

from .. import runtime
from ..errors import ValidationError, WanError
from ..media import POSTER_BATCH, cached_poster, make_posters
from . import _style as S
from ._lifecycle import file_under_current_cell
from .form_controls import guard_html

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


class _Shared:
    """Layouts and styles every card uses: one model each instead of one per card (a grid of
    a hundred videos is ~500 widget models, not ~1900)."""

    def __init__(self) -> None:
        self.html_layout = W.Layout(width="100%")
        self.html_style = HTMLStyle()
        self.buttons_layout = W.Layout()
        self.rating_style = ToggleButtonsStyle(button_width="38px", description_width="50px")
        self.keep_style = ToggleButtonsStyle(button_width="76px", description_width="50px")
        self.load_layout = W.Layout(width="auto")
        self.load_style = W.ButtonStyle()
        self.box_layout = W.Layout(border=f"1px solid {S.BORDER}", padding="4px",
                                   margin="0 0 4px 0", min_width="0")
        self.cell_layout = W.Layout(min_width="0")
        self.header_layout = W.Layout()
        self.header_style = HTMLStyle()

    def widgets(self) -> list[W.Widget]:
        return list(vars(self).values())


class _Card:
    """One video: its markup, rating and verdict controls, and load button."""

    def __init__(self, gallery: Gallery, job: Any):
        shared = gallery._shared
        self.gallery = gallery
        self.job = job
        self.poster = cached_poster(job.video) if job.video else None
        self.html = W.HTML(layout=shared.html_layout, style=shared.html_style)
        self.rating = W.ToggleButtons(
            options=[(str(i), i) for i in range(1, 6)], description="Rating",
            value=job.rating if job.rating in range(1, 6) else None,
            tooltips=[f"rate {i} of 5" for i in range(1, 6)], style=shared.rating_style,
            layout=shared.buttons_layout)
        self.keep = W.ToggleButtons(
            options=[("Keep", True), ("Reject", False)], description="Verdict",
            value=job.keep if isinstance(job.keep, bool) else None,
            tooltips=["keep this video", "reject this video"], style=shared.keep_style,
            layout=shared.buttons_layout)
        self.rating.observe(lambda change: gallery._rated(self, change["new"]), "value")
        self.keep.observe(lambda change: gallery._kept(self, change["new"]), "value")
        children: list[W.Widget] = [self.html, self.rating, self.keep]
        self.load: W.Button | None = None
        if gallery._on_load is not None:
            self.load = W.Button(description="Load into form", layout=shared.load_layout,
                                 style=shared.load_style,
                                 tooltip="Fill the generation form with this run's settings")
            self.load.on_click(lambda _b: gallery._load(self))
            children.append(self.load)
        self.box = W.VBox(children, layout=shared.box_layout)

    def widgets(self) -> list[W.Widget]:
        return [w for w in (self.html, self.rating, self.keep, self.load, self.box) if w]

    def render(self) -> None:
        self.html.value = self.gallery._card_html(self)


class Gallery(W.VBox):
    """``Gallery(jobs_or_experiment, *, rows=None, cols=None, on_load=None)``.

    ``rows`` and ``cols`` name the parameters of the grid's rows and columns (see
    :data:`FACETS`; by default the first two that vary; ``None``: no rows, or no columns); the
    Rows and Columns dropdowns change them. ``on_load(job)`` adds a "Load into form" button
    to each video. ``columns`` is how many videos a row holds when no column parameter is
    chosen, ``seed`` the blind mode's shuffle. :meth:`close` releases every callback it
    holds on unfinished jobs.
    """

    def __init__(self, jobs: Any, *, rows: str | None = AUTO, cols: str | None = AUTO,
                 on_load: Callable[[Any], Any] | None = None, columns: int | None = None,
                 seed: int | None = None, **kwargs: Any):
        self._listening: list[_Card] = []  # first: close() (also from __del__) reads them
        self._cards: list[_Card] = []
        self._layout_widgets: list[W.Widget] = []
        self._shared = _Shared()
        self.jobs = _as_jobs(jobs)
        self._on_load = on_load
        if columns is not None and (isinstance(columns, bool) or not isinstance(columns, int)
                                    or columns < 1):
            raise ValidationError([("columns", f"columns must be a whole number >= 1 (videos "
                                               f"per row), not {columns!r}")])
        self.columns = columns
        self.blind_seed = random.SystemRandom().randrange(2**32) if seed is None else int(seed)
        self._css = f"wan-gallery-{uuid.uuid4().hex[:12]}"
        self._quiet = False
        self._blind_rated: set[str] = set()
        self.revealed = False
        self._closed = False
        self.row_labels: list[str] = []
        self.col_labels: list[str] = []
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
        self.grid = W.GridBox(layout=W.Layout(grid_gap="6px", width="100%", overflow="auto",
                                              align_items="flex-start"))
        self._cards = [_Card(self, j) for j in self.jobs]
        for widget in (self.rows, self.cols, self.order):
            widget.observe(lambda _c: self._relayout(), "value")
        self.blind.observe(lambda change: self._set_blind(change["new"]), "value")
        self.controls = W.HBox([self.rows, self.cols, self.order, self.blind],
                               layout=W.Layout(flex_flow="row wrap"))
        super().__init__([self.guard, self.controls, self.sync, self.status, self.grid],
                         **kwargs)
        self.add_class("wan-gallery")
        self.add_class(self._css)
        self._listening = [c for c in self._cards if not c.job.done]
        for card in self._listening:
            card.job.on_change(self._changed)
        for card in self._cards:
            card.render()
        self._relayout()
        self._queue_posters([c for c in self._cards if c.job.video and c.poster is None])
        file_under_current_cell(self)

    # -- what is shown -----------------------------------------------------------------------
    @property
    def cards(self) -> list[_Card]:
        return list(self._cards)

    def shown(self) -> list[str]:
        """The run ids in the order the grid shows them (row by row)."""
        ids = {id(c.box): c.job.run_id for c in self._cards}
        out = []
        for child in self.grid.children:
            boxes = [child] if id(child) in ids else getattr(child, "children", ())
            out += [ids[id(b)] for b in boxes if id(b) in ids]
        return out

    def markup(self) -> str:
        """All the HTML the gallery shows now (for tests and exports)."""
        parts = [self.sync.value, self.status.value]
        parts += [w.value for w in self._layout_widgets if isinstance(w, W.HTML)]
        return "\n".join(parts + [c.html.value for c in self._cards])

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
            if not body:
                body = S.error(job.error or "the video file is missing")
        else:
            status = "" if hidden else S.badge(job.status)
            body = (f"<div style='padding:12px 4px'>{status} "
                    f"{S.esc(job.error) if job.error and not hidden else ''}</div>")
        return caption + body

    # -- layout ------------------------------------------------------------------------------
    def _relayout(self) -> None:
        old = self._layout_widgets
        self._layout_widgets = []
        if self.blind.value:
            self._layout_blind()
        else:
            self._layout_faceted()
        for card in self._cards:
            card.render()
        for widget in old:
            widget.close()  # headers and cells: their layouts and styles are shared
        self._update_status()

    def _header(self, text: str, title: str | None = None) -> W.HTML:
        label = W.HTML(f"<div style='font-weight:bold;color:{S.FG};overflow-wrap:anywhere' "
                       f"title='{S.esc(title or text)}'>{S.short(text, 120)}</div>",
                       layout=self._shared.header_layout, style=self._shared.header_style)
        self._layout_widgets.append(label)
        return label

    def _rating(self, cards: Iterable[_Card]) -> float | None:
        values = [c.job.rating for c in cards if c.job.rating is not None]
        return sum(values) / len(values) if values else None

    def _ordered(self, cards: list[_Card]) -> list[_Card]:
        order = self.order.value
        if order == "run":
            return cards
        return sorted(cards, key=lambda c: _sort_key(c.job.rating, order))

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
                return _sort_key(self._rating(members), self.order.value)
            values.sort(key=key)
        return values

    def _layout_faceted(self) -> None:
        rows, cols = self.rows.value, self.cols.value
        cards = self._ordered(self._cards)
        if rows is None and cols is None:
            self.row_labels, self.col_labels = [], []
            width = self.columns or min(4, max(1, len(cards)))
            self.grid.layout.grid_template_columns = f"repeat({width}, minmax(160px, 1fr))"
            self.grid.children = [c.box for c in cards]
            return
        row_values, col_values = self._values(rows, cards), self._values(cols, cards)
        self.row_labels = [f"{FACETS[rows]}: {facet_text(rows, v)}" for v in row_values
                           ] if rows else []
        self.col_labels = [f"{FACETS[cols]}: {facet_text(cols, v)}" for v in col_values
                           ] if cols else []
        lead = "minmax(80px, 180px) " if rows else ""
        self.grid.layout.grid_template_columns = (
            f"{lead}repeat({len(col_values)}, minmax(160px, 1fr))")
        children: list[W.Widget] = []
        if cols:
            if rows:
                children.append(self._header(f"{FACETS[rows]} \\ {FACETS[cols]}"))
            children += [self._header(label) for label in self.col_labels]
        for i, row_value in enumerate(row_values):
            if rows:
                children.append(self._header(self.row_labels[i]))
            for col_value in col_values:
                members = [c.box for c in cards
                           if (rows is None or _same(facet_value(c.job, rows), row_value))
                           and (cols is None or _same(facet_value(c.job, cols), col_value))]
                cell = W.VBox(members, layout=self._shared.cell_layout)
                self._layout_widgets.append(cell)
                children.append(cell)
        self.grid.children = children

    def _layout_blind(self) -> None:
        self.row_labels, self.col_labels = [], []
        cards = self._blind_cards()
        random.Random(self.blind_seed).shuffle(cards)
        width = self.columns or max(2, min(6, math.ceil(math.sqrt(len(cards)))))
        self.grid.layout.grid_template_columns = f"repeat({width}, minmax(160px, 1fr))"
        self.grid.children = [c.box for c in cards]

    def _blind_cards(self) -> list[_Card]:
        return [c for c in self._cards if c.job.video]

    def _update_status(self) -> None:
        cards = self._blind_cards() if self.blind.value else self._cards
        rated = sum(c.rating.value is not None for c in cards)
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
        self._blind_rated = set()
        self.revealed = False
        for widget in (self.rows, self.cols, self.order):
            widget.disabled = on
        self._quiet = True
        try:
            for card in self._cards:
                card.rating.value = None if on else card.job.rating
                card.keep.value = None if on else card.job.keep
        finally:
            self._quiet = False
        self._relayout()

    def _check_reveal(self) -> None:
        if not self.revealed and all(c.job.run_id in self._blind_rated
                                     for c in self._blind_cards()):
            self.revealed = True
            for card in self._cards:
                card.render()
        self._update_status()

    # -- ratings -----------------------------------------------------------------------------
    def _write(self, card: _Card, **fields: Any) -> bool:
        try:
            card.job.rate(**fields)
        except (WanError, OSError) as e:
            self.status.value = S.error(f"could not record the rating: {e}")
            return False
        return True

    def _rated(self, card: _Card, value: int | None) -> None:
        if self._quiet or value is None:
            return
        if not self._write(card, rating=value):
            return
        if self.blind.value:
            self._blind_rated.add(card.job.run_id)
            self._check_reveal()
        else:
            self._update_status()

    def _kept(self, card: _Card, value: bool | None) -> None:
        if self._quiet or value is None:
            return
        self._write(card, keep=value)

    def _load(self, card: _Card) -> None:
        if self._on_load is None:
            return
        try:
            self._on_load(card.job)
        except WanError as e:
            self.status.value = S.error(e)

    # -- unfinished jobs and posters -----------------------------------------------------------
    def _changed(self, job: Any) -> None:
        card = next((c for c in self._listening if c.job is job), None)
        if card is None:
            return
        card.render()
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
                    card.render()

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
                                                          "guard")]
        S.close_all(*self._layout_widgets, *(w for c in self._cards for w in c.widgets()),
                    *(p for p in parts if p is not None),
                    *(self._shared.widgets() if hasattr(self, "_shared") else []))
        self._layout_widgets = []
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
