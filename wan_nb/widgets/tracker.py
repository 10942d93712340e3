"""A live task tracker: one row per job (status, elapsed, ETA bar, cancel), updated from the
toolkit's loop thread by setting trait values only (DESIGN.md §3), so it keeps moving while
other cells run. A finished video appears under its row."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Iterable
from typing import Any

import ipywidgets as W

from .. import runtime
from ..display import badge, video_tag
from ..errors import WanError
from ..statuses import CANCELLABLE

TICK = 0.5  # seconds between elapsed/ETA refreshes while jobs run


class _Row:
    def __init__(self, job: Any, tracker: Tracker):
        self.job = job
        r = job.request
        prompt = html.escape(r.prompt)
        one_line = "white-space:nowrap;overflow:hidden;text-overflow:ellipsis;line-height:1.3"
        self.title = W.HTML(
            f"<div style='{one_line}' title='{prompt}'>{prompt}</div>"
            f"<div style='{one_line};font-size:0.85em;color:#57606a'>"
            f"{html.escape(r.model)} · {html.escape(str(r.size))} · {r.duration}s · "
            f"seed {r.seed}</div>",
            layout=W.Layout(flex="1 1 auto", min_width="160px", overflow="hidden"))
        self.status = W.HTML(layout=W.Layout(width="100px", flex="0 0 auto"))
        self.bar = W.FloatProgress(min=0.0, max=1.0, value=0.0,
                                   layout=W.Layout(width="160px", flex="0 0 auto"))
        self.time = W.Label(layout=W.Layout(width="110px", flex="0 0 auto",
                                            padding="0 0 0 8px"))
        self.cancel = W.Button(description="Cancel",
                               layout=W.Layout(width="auto", min_width="72px", flex="0 0 auto"),
                               tooltip="Cancel (only QUEUED or PENDING jobs can be cancelled)")
        self.cancel.on_click(self._on_cancel)
        self.message = W.HTML()
        self.player = W.Output()
        self.shown_video = False
        self.box = W.VBox([W.HBox([self.title, self.status, self.bar, self.time, self.cancel],
                                  layout=W.Layout(align_items="center", width="100%")),
                           self.message, self.player])
        self.tracker = tracker

    def _on_cancel(self, _button: Any) -> None:
        try:
            self.job.cancel()
        except WanError as e:
            self.message.value = f"<small style='color:#cf222e'>{html.escape(str(e))}</small>"
        self.refresh()

    def refresh(self) -> None:
        job = self.job
        p = job.progress()
        self.status.value = badge(job.status)
        self.bar.value = p["fraction"]
        self.bar.bar_style = ("success" if job.ok else "danger" if job.done else "info")
        eta = "" if p["eta"] is None else f" · ETA {p['eta']:.0f}s"
        self.time.value = f"{p['elapsed']:.0f}s{eta}"
        self.cancel.disabled = job.status not in CANCELLABLE
        if job.done:
            self.cancel.layout.display = "none"
        if job.error:
            self.message.value = (f"<small style='color:#cf222e'>{html.escape(job.error)}"
                                  "</small>")
        if job.video and not self.shown_video:
            self.shown_video = True
            from IPython.display import HTML

            self.player.append_display_data(HTML(video_tag(job.video, 240)))


class Tracker(W.VBox):
    """``Tracker(jobs)``: live rows for ``jobs`` (a Job, a list of jobs or an Experiment's)."""

    def __init__(self, jobs: Iterable[Any] | Any, **kwargs: Any):
        jobs = [jobs] if hasattr(jobs, "run_id") else list(jobs)
        self.header = W.HTML()
        self._rows = [_Row(j, self) for j in jobs]
        super().__init__([self.header, *(r.box for r in self._rows)], **kwargs)
        for row in self._rows:
            row.job.on_change(lambda _job, row=row: self._refresh(row))
        self._refresh_all()
        runtime.get_loop().call_soon_threadsafe(self._start_ticking)

    @property
    def jobs(self) -> list[Any]:
        return [r.job for r in self._rows]

    def _refresh(self, row: _Row) -> None:
        row.refresh()
        self._refresh_header()

    def _refresh_header(self) -> None:
        counts: dict[str, int] = {}
        for r in self._rows:
            counts[r.job.status] = counts.get(r.job.status, 0) + 1
        done = sum(r.job.done for r in self._rows)
        parts = " ".join(f"{v} {badge(k)}" for k, v in sorted(counts.items()))
        self.header.value = f"<b>{done} of {len(self._rows)} done</b> · {parts}"

    def _refresh_all(self) -> None:
        for r in self._rows:
            r.refresh()
        self._refresh_header()

    def _start_ticking(self) -> None:
        asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            self._refresh_all()
            if all(r.job.done for r in self._rows):
                return
            await asyncio.sleep(TICK)
