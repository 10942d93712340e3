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

TICK = 0.5  # seconds between elapsed/ETA refreshes while jobs run


class _Row:
    def __init__(self, job: Any, tracker: Tracker):
        self.job = job
        r = job.request
        self.title = W.HTML(f"<span title='{html.escape(r.prompt)}'>"
                            f"{html.escape(r.prompt[:48] + ('…' if len(r.prompt) > 48 else ''))}"
                            f"</span> <small>{html.escape(r.model)} {html.escape(str(r.size))} "
                            f"{r.duration}s seed {r.seed}</small>",
                            layout=W.Layout(width="46%"))
        self.status = W.HTML(layout=W.Layout(width="110px"))
        self.bar = W.FloatProgress(min=0.0, max=1.0, value=0.0, layout=W.Layout(width="22%"))
        self.time = W.Label(layout=W.Layout(width="120px"))
        self.cancel = W.Button(description="Cancel", layout=W.Layout(width="70px"),
                               tooltip="Cancel (only QUEUED or PENDING jobs can be cancelled)")
        self.cancel.on_click(self._on_cancel)
        self.message = W.HTML()
        self.player = W.Output()
        self.shown_video = False
        self.box = W.VBox([W.HBox([self.title, self.status, self.bar, self.time, self.cancel]),
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
        self.cancel.disabled = job.status not in ("QUEUED", "PENDING")
        if job.error:
            self.message.value = (f"<small style='color:#cf222e'>{html.escape(job.error)}"
                                  "</small>")
        if job.video and not self.shown_video:
            self.shown_video = True
            from IPython.display import HTML

            self.player.append_display_data(HTML(video_tag(job.video, 360)))


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
        parts = " ".join(f"{badge(k)} {v}" for k, v in sorted(counts.items()))
        self.header.value = f"<b>{done}/{len(self._rows)} done</b> {parts}"

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
