"""A live task tracker: one row per job, updated from the toolkit's loop thread by setting trait
values only (DESIGN.md §3), so it keeps moving while other cells run.

A row shows the prompt, the model, resolution · ratio (pixels) · duration · seed, the status,
the time since it was created and the time left as a p50–p90 band learned from finished runs
(no progress bar: a bar has to guess a fraction and ends up stuck near the end). Its buttons:
Cancel while the service can still cancel, Retry for a run that ended without a video, Load
(into the Studio's form) when the tracker was given ``on_load``. A video not downloaded yet
shows when the service's link expires; a create whose answer was lost says that the service is
being asked whether it made the task; a failed job shows the service's code and message.

``Tracker(session=s)`` follows a session: every job submitted (or resumed, or followed from
another kernel) is added at the top. ``close()`` — or running its cell again — releases every
callback it holds on jobs and the session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import threading
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as W
from ipywidgets.widgets.widget_string import HTMLStyle

from .. import runtime
from ..display import badge, video_tag
from ..errors import WanError
from ..statuses import CANCELLABLE, RETRYABLE
from ._lifecycle import file_under_current_cell

TICK = 0.5  # seconds between refreshes of the times while jobs run
MUTED = "var(--jp-ui-font-color2, #57606a)"
ERROR = "var(--jp-error-color1, #cf222e)"
WARN = "var(--jp-warn-color1, #9a6700)"
ONE_LINE = "white-space:nowrap;overflow:hidden;text-overflow:ellipsis;line-height:1.35"


def _seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def describe(job: Any) -> str:
    """``model · 720P · 16:9 (1280×720) · 5 s · seed 42``, escaped."""
    r = job.request
    pixels = f" ({r.size.replace('*', '×')})" if r.size else ""
    return html.escape(f"{r.model} · {r.resolution} · {r.ratio}{pixels} · {r.duration} s · "
                       f"seed {r.seed}")


def time_text(job: Any, now: dt.datetime | None = None) -> str:
    """Elapsed and the time left (p50–p90) of a job, or how long it took."""
    elapsed = _seconds(job.elapsed)
    if job.done:
        return f"took {elapsed}"
    band = job.time_left()
    if band is None:
        return elapsed
    lo, hi = band
    if hi <= 0:
        return f"{elapsed} · longer than 9 in 10 runs like it"
    if job.status in ("QUEUED", "SUBMITTING"):
        return f"{elapsed} · then ≈ {_seconds(lo)}–{_seconds(hi)}"
    return f"{elapsed} · ≈ {_seconds(lo)}–{_seconds(hi)} left"


def notice(job: Any, now: dt.datetime | None = None) -> str:
    """What a person should know besides the status (HTML, escaped), or ''."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if job.error:
        return f"<span style='color:{ERROR}'>{html.escape(job.error)}</span>"
    if job.reconciling:
        return (f"<span style='color:{WARN}'>the create's answer was lost: asking the service "
                "whether it made the task (it is never paid twice)</span>")
    expires = job.record.get("video_url_expires_at")
    if job.status == "SUCCEEDED" and not job.video and expires is not None:
        left = (expires - now).total_seconds()
        when = expires.astimezone(dt.timezone.utc).strftime("%H:%M UTC")
        if left <= 0:
            return f"<span style='color:{ERROR}'>the service's link expired at {when}</span>"
        return (f"<span style='color:{MUTED}'>downloading; the service keeps the video until "
                f"{when} (in {_seconds(left)})</span>")
    return ""


class _Shared:
    """Layouts and styles every row uses unchanged: one model each for the whole tracker
    instead of one per widget (a row is 9 models, not 28), closed with the tracker."""

    def __init__(self) -> None:
        self.info = W.Layout(flex="1 1 auto", min_width="160px", overflow="hidden")
        self.line = W.Layout(align_items="center", width="100%", flex="0 0 auto")
        self.row = W.Layout(border_bottom="1px solid var(--jp-border-color2, #ddd)",
                            padding="2px 0", flex="0 0 auto", min_height="fit-content")
        self.html_style = HTMLStyle()
        self.button_style = W.ButtonStyle()

    def close(self) -> None:
        for model in (self.info, self.line, self.row, self.html_style, self.button_style):
            model.close()


class _Row:
    """One job: one HTML for everything that changes (prompt, parameters, status, time,
    notices), its buttons, and the video's HTML once there is one (set once: a video element
    rebuilt every second would stop playing)."""

    def __init__(self, job: Any, tracker: Tracker):
        self.job = job
        self.tracker = tracker
        shared = tracker._shared
        prompt = html.escape(job.request.prompt)
        self._head = (f"<div style='{ONE_LINE}' title='{prompt}'>{prompt}</div>"
                      f"<div style='{ONE_LINE};font-size:0.85em;color:{MUTED}'>"
                      f"{describe(job)}</div>")
        self._said = ""
        self.info = W.HTML(layout=shared.info, style=shared.html_style)

        def small() -> W.Layout:  # one each: a shared Layout would hide every button at once
            return W.Layout(width="auto", min_width="64px", flex="0 0 auto")

        self.cancel = W.Button(description="Cancel", layout=small(), style=shared.button_style,
                               tooltip="Cancel (the service cancels only tasks not yet running)")
        self.retry = W.Button(description="Retry", layout=small(), icon="redo",
                              style=shared.button_style,
                              tooltip="Send the same request again as a new run (same seed)")
        self.load = W.Button(description="Load", layout=small(), icon="pencil",
                             style=shared.button_style,
                             tooltip="Fill the form with this run's settings")
        self.cancel.on_click(self._on_cancel)
        self.retry.on_click(self._on_retry)
        self.load.on_click(self._on_load)
        if tracker.on_load is None:
            self.load.layout.display = "none"
        self.player: W.HTML | None = None
        self.line = W.HBox([self.info, self.cancel, self.retry, self.load], layout=shared.line)
        self.box = W.VBox([self.line], layout=shared.row)
        self.box.add_class("wan-tracker-row")
        self._listener = job.on_change(lambda _job: tracker._changed(self))

    # what tests and callers read: the row's one HTML holds them all
    title = status = time = message = property(lambda self: self.info)

    def release(self) -> None:
        self.job.off_change(self._listener)

    def close(self) -> None:
        self.release()
        for w in (self.info, self.cancel, self.retry, self.load, self.line, self.box,
                  self.player):
            if w is not None:
                if isinstance(w, W.Button):
                    w.layout.close()
                w.close()

    def _say(self, text: str) -> None:
        self._said = f"<small style='color:{ERROR}'>{html.escape(text)}</small>"
        self.refresh()

    def _on_cancel(self, _button: Any) -> None:
        try:
            self.job.cancel()
        except WanError as e:
            self._say(str(e))
            return
        self.refresh()

    def _on_retry(self, _button: Any) -> None:
        try:
            job = self.job.rerun()
        except WanError as e:
            self._say(str(e))
            return
        self.tracker.add(job)

    def _on_load(self, _button: Any) -> None:
        if self.tracker.on_load is not None:
            self.tracker.on_load(self.job)

    def refresh(self) -> None:
        job = self.job
        status = job.status
        when = html.escape(time_text(job))
        value = (f"<div style='display:flex;gap:8px;align-items:center'>"
                 f"<div style='flex:1 1 auto;min-width:0'>{self._head}</div>"
                 f"<div style='flex:0 0 auto'>{badge(status)}</div>"
                 f"<div style='flex:0 0 11em;color:{MUTED};font-size:0.9em'>{when}</div></div>"
                 f"{notice(job)}{self._said}")
        if self.info.value != value:
            self.info.value = value
        cancel = None if status in CANCELLABLE else "none"
        if self.cancel.layout.display != cancel:
            self.cancel.layout.display = cancel
        retry = None if status in RETRYABLE else "none"
        if self.retry.layout.display != retry:
            self.retry.layout.display = retry
        if self.tracker.show_videos and job.video and self.player is None:
            self.player = W.HTML(video_tag(job.video, self.tracker.video_width, widget=True),
                                 style=self.tracker._shared.html_style)
            self.box.children = (self.line, self.player)


class Tracker(W.VBox):
    """``Tracker(jobs)``: live rows for ``jobs`` (a Job, a list of jobs or an Experiment's);
    ``Tracker(session=s)`` also adds, at the top, every job that session's kernel takes on.

    ``on_load(job)`` shows a Load button per row; ``show_videos`` puts each finished video
    under its row."""

    def __init__(self, jobs: Iterable[Any] | Any = (), *, session: Any = None,
                 on_load: Callable[[Any], Any] | None = None, show_videos: bool = True,
                 video_width: int = 240, **kwargs: Any):
        jobs = [jobs] if hasattr(jobs, "run_id") else list(jobs)
        self.on_load = on_load
        self.show_videos = show_videos
        self.video_width = video_width
        self._shared = _Shared()
        self.header = W.HTML(style=self._shared.html_style)
        self.header.add_class("wan-tracker-header")
        self._rows: list[_Row] = []
        self._lock = threading.Lock()
        self._closed = False
        self._ticking = False
        self._newest_first = session is not None
        super().__init__([self.header], **kwargs)
        self.add_class("wan-tracker")
        for job in jobs:
            self.add(job)
        self._refresh_header()
        self._unsubscribe: Callable[[], None] | None = None
        if session is not None:
            self._unsubscribe = session.on_job_added(self.add)
        file_under_current_cell(self)

    @property
    def jobs(self) -> list[Any]:
        return [r.job for r in self._rows]

    def add(self, job: Any) -> None:
        """Show ``job`` (once; a job already shown is left where it is)."""
        with self._lock:  # the form (kernel thread) and the session (loop thread) both add
            if self._closed or any(r.job.run_id == job.run_id for r in self._rows):
                return
            row = _Row(job, self)
            self._rows.append(row)
            boxes = [r.box for r in self._rows]
            self.children = (self.header, *(reversed(boxes) if self._newest_first else boxes))
        row.refresh()
        self._refresh_header()
        if not job.done:
            runtime.get_loop().call_soon_threadsafe(self._start_ticking)

    def _changed(self, row: _Row) -> None:
        if not self._closed:
            row.refresh()
            self._refresh_header()

    def _refresh_header(self) -> None:
        counts: dict[str, int] = {}
        for r in self._rows:
            counts[r.job.status] = counts.get(r.job.status, 0) + 1
        done = sum(r.job.done for r in self._rows)
        parts = " ".join(f"{v} {badge(k)}" for k, v in sorted(counts.items()))
        text = (f"<b>{done} of {len(self._rows)} done</b> · {parts}" if self._rows else
                f"<span style='color:{MUTED}'>no jobs yet</span>")
        if self.header.value != text:
            self.header.value = text

    def refresh(self) -> None:
        for r in list(self._rows):
            r.refresh()
        self._refresh_header()

    def _start_ticking(self) -> None:
        if not self._ticking and not self._closed:
            self._ticking = True
            asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        try:
            while not self._closed:
                self.refresh()
                if all(r.job.done for r in self._rows):
                    return
                await asyncio.sleep(TICK)
        finally:
            self._ticking = False

    def close(self) -> None:
        """Release every callback on jobs and the session, then close the widgets."""
        if not getattr(self, "_closed", True):  # (True: __init__ did not get that far)
            self._closed = True
            if self._unsubscribe is not None:
                self._unsubscribe()
            for r in self._rows:
                r.close()
            self.header.close()
            self._shared.close()
            self.layout.close()
        super().close()
