"""The Studio: the generation form, the live tracker, the player, the gallery with ratings, the
history and the newest rows of the run log, in one widget.

``Studio(client=None)``: with no client it calls :func:`wan_nb.connect` (the offline emulator
when no ``DASHSCOPE_API_KEY`` is set). Generate returns at once; the job appears at the top of
the tracker (which follows the session, so jobs submitted from code show there too) and in the
Player. Load (tracker, player, gallery, history) fills the form from a past run. The Gallery,
History and Run log tabs read the store when they are opened (and on Refresh), on the kernel's
thread: nothing is built on the toolkit's loop thread except trait values (DESIGN.md §3).

``close()`` — or running the Studio's cell again — releases every callback it holds.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W

from ..errors import WanError
from . import _style as S
from ._lifecycle import close_tree, file_under_current_cell
from .form import GenerationForm
from .gallery import Gallery
from .history import History
from .player import Player
from .tracker import Tracker

TABS = ("Player", "Gallery", "History", "Run log")
LOG_ROWS = 10
LOG_COLUMNS = ("status", "model", "resolution", "ratio", "duration", "seed", "prompt",
               "actual_prompt", "run_s", "cost_usd", "rating", "keep")


def banner_html(session: Any) -> str:
    """Which service the Studio's runs go to (and whether they cost money)."""
    backend = str(session.backend)
    if backend.startswith("live"):
        what = (f"the live service (<b>{S.esc(backend)}</b>, {S.esc(session.base_url)}): "
                "runs are billed")
    elif session.emulator is not None or backend.startswith("emulator"):
        what = "the offline emulator: synthetic videos, nothing billed"
    else:
        what = f"<b>{S.esc(backend)}</b> at {S.esc(session.base_url)}"
    return (f"<div style='color:{S.FG_DIM};font-size:0.9em'>wan_nb Studio · runs go to "
            f"{what} · recorded in {S.esc(session.store.root)}</div>")


def run_log_html(df: Any, n: int = LOG_ROWS) -> str:
    """The newest ``n`` rows of the run log (escaped)."""
    if len(df) == 0:
        return S.dim("no runs recorded yet")
    cols = [c for c in LOG_COLUMNS if c in df.columns]
    view = df.sort_values("created_at", kind="stable").tail(n).iloc[::-1][cols]
    head = "".join(f"<th>{S.esc(c)}</th>" for c in ("run_id", *cols))
    rows = []
    for run_id, row in view.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            text = "" if v is None or (not isinstance(v, str) and _missing(v)) else (
                f"{v:.2f}" if isinstance(v, float) else str(v))
            cells.append(f"<td title='{S.esc(text)}' style='{S.ONE_LINE};max-width:18em'>"
                         f"{S.esc(text)}</td>")
        rows.append(f"<tr><td><code>{S.esc(run_id)}</code></td>{''.join(cells)}</tr>")
    return (f"<div style='overflow:auto'><table class='wan-run-log' style='font-size:0.85em;"
            f"border-collapse:collapse'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
            f"<div>{S.dim(f'{len(df)} runs in all; client.to_dataframe() has every column')}"
            "</div>")


def _missing(value: Any) -> bool:
    try:
        return bool(value != value)  # NaN, pd.NA raise or compare unequal to themselves
    except (TypeError, ValueError):
        return True


class Studio(W.VBox):
    """``Studio(client=None, *, confirm_above_usd=1.0)``: form, tracker, player, gallery,
    history and run log of one session (see the module's docstring). ``form``,
    ``tracker``, ``player``, ``gallery``, ``history`` and ``session`` are its parts."""

    def __init__(self, client: Any = None, *, confirm_above_usd: float = 1.0, **kwargs: Any):
        if client is None:
            import wan_nb

            client = wan_nb.connect()
        self.session = client
        self._closed = False
        self.banner = W.HTML(banner_html(client))
        self.form = GenerationForm(client, on_submit=self._submitted,
                                   confirm_above_usd=confirm_above_usd,
                                   layout=W.Layout(flex="1 1 420px", min_width="320px"))
        self.tracker = Tracker(session=client, on_load=self.load, video_width=200,
                               layout=W.Layout(flex="1 1 420px", min_width="320px",
                                               max_height="36em", overflow="auto"))
        for job in client.jobs:  # what this kernel already looks after (resumed, earlier)
            self.tracker.add(job)
        self.player: Player | None = None
        self.gallery: Gallery | None = None
        self.history = History(client, on_load=self.load)
        self._player_box = W.VBox([W.HTML(S.dim("Generate something, or pick a run in the "
                                                "tracker, gallery or history."))])
        self._gallery_box = W.VBox()
        self._log = W.HTML()
        refresh = W.Button(description="Refresh", icon="refresh",
                           tooltip="Read the store again", layout=W.Layout(width="auto"))
        refresh.on_click(lambda _b: self.refresh())
        self._log_box = W.VBox([refresh, self._log])
        self.tabs = W.Tab(children=[self._player_box, self._gallery_box, self.history,
                                    self._log_box])
        for i, title in enumerate(TABS):
            self.tabs.set_title(i, title)
        self.tabs.observe(lambda change: self._opened(change["new"]), "selected_index")
        top = W.HBox([self.form, self.tracker],
                     layout=W.Layout(flex_flow="row wrap", align_items="flex-start",
                                     grid_gap="12px", width="100%"))
        super().__init__([self.banner, top, self.tabs], **kwargs)
        self.add_class("wan-studio")
        self.tabs.selected_index = 0
        file_under_current_cell(self)

    # -- what the parts ask of each other ----------------------------------------------------
    def load(self, job: Any) -> None:
        """Fill the form from ``job`` (a Job or a run record) and show it in the Player."""
        self.form.load(job)
        if hasattr(job, "run_id") and hasattr(job, "on_change"):
            self.show(job)

    def show(self, job: Any) -> None:
        """Show ``job`` in the Player tab."""
        if self._closed:
            return
        old = self.player
        self.player = Player(job, on_load=self.form.load)
        self._player_box.children = [self.player]
        if old is not None:
            old.close()

    def _submitted(self, job: Any) -> None:
        self.tracker.add(job)  # at once (the session's announcement may come a moment later)
        self.show(job)

    def _opened(self, index: int | None) -> None:
        if index == 1:
            self._build_gallery()
        elif index == 2:
            self.history.refresh()
        elif index == 3:
            self._refresh_log()

    def _build_gallery(self) -> None:
        jobs = [j for j in self.session.jobs if not j.done or j.video]
        old = self.gallery
        if not jobs:
            self._gallery_box.children = [W.HTML(S.dim("no videos yet"))]
        else:
            self.gallery = Gallery(jobs, on_load=self.load)
            self._gallery_box.children = [self.gallery]
        if old is not None:
            old.close()

    def _refresh_log(self) -> None:
        try:
            self._log.value = run_log_html(self.session.to_dataframe())
        except WanError as e:
            self._log.value = S.error(f"cannot read the run log: {e}")

    def refresh(self) -> None:
        """Read the store again for the open tab."""
        self._opened(self.tabs.selected_index)

    def close(self) -> None:
        """Release every callback on jobs and the session; close every part."""
        if self._closed:
            return
        self._closed = True
        for part in (self.tracker, self.player, self.gallery, self.history, self.form):
            if part is not None:
                part.close()
        for child in self.children:  # what is left: the boxes, tabs, banner, their layouts
            close_tree(child)
        self.layout.close()
        super().close()
