"""The Player: one run's video, its prompt and what the service made of it (the rewrite with
its changes marked, or why there is none to show), its parameters, usage and cost, with buttons
to load it into the form, run it again with the same seed, or run the service's rewrite again
with the rewrite off (a frozen rewrite: separates the rewriter's variance from the
generator's).

::

    Player(job)                                  # re-run buttons submit through the job's session
    Player(job, on_load=form.load, on_rerun=lambda job, freeze: ...)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from .. import catalog
from ..display import video_problem
from ..errors import ValidationError, WanError
from ..media import cached_poster
from ..store_table import rewritten
from . import _style as S
from ._lifecycle import file_under_current_cell

NOT_DISCLOSED = "this model does not disclose its rewrite"


def rerun_job(job: Any, freeze: bool = False) -> Any:
    """The Player's default re-run: the job's own request again, through its session (same
    seed, same experiment; ``freeze``: its rewrite as the prompt, the rewrite off)."""
    return job.rerun(freeze_rewrite=freeze)


def rewrite_html(job: Any) -> str:
    """The service's rewrite of the job's prompt, marked up; or why there is none to show."""
    actual, prompt = job.actual_prompt, job.prompt
    off = rewritten(prompt, None, job.prompt_extend, job.model) is False
    if actual is not None and actual != prompt:
        return S.diff_html(prompt or "", actual)
    if off:
        return S.dim("the rewrite was off: the prompt was sent as written")
    if actual is not None:
        return S.dim("the service kept the prompt as written")
    try:
        discloses = catalog.get_model(job.model).returns_actual_prompt
    except ValidationError:  # a model this version does not know
        discloses = True
    if not discloses:
        return S.dim(NOT_DISCLOSED)
    if not job.done:
        return S.dim("the rewrite shows when the run has finished")
    return S.dim("the service returned no rewrite for this run")


def parameters(job: Any) -> dict[str, Any]:
    audio = job.audio_mode
    if audio == "custom" and job.audio_url:
        audio = f"custom: {job.audio_url}"
    extend = job.prompt_extend
    return {"Model": job.model, "Resolution": job.resolution, "Ratio": job.ratio,
            "Pixels": f"{job.width}×{job.height}" if job.width and job.height else job.size,
            "Duration": f"{job.duration} s" if job.duration else None, "Seed": job.seed,
            "Prompt rewrite": None if extend is None else ("on" if extend else "off"),
            "Watermark": None if job.watermark is None else ("yes" if job.watermark else "no"),
            "Audio": audio, "Multi-shot": job.shot_type,
            "Experiment": job.experiment, "Variant": job.variant, "Run": job.run_id,
            "Task": job.task_id}


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> str | None:
    if start is None or end is None:
        return None
    return f"{(end - start).total_seconds():.1f} s"


def usage(job: Any) -> dict[str, Any]:
    billed = job.usage_json is not None
    cost = job.cost_usd
    pixels = (f"{job.usage_width}×{job.usage_height}"
              if job.usage_width and job.usage_height else None)
    seconds = job.usage_duration if job.usage_duration is not None else job.usage_video_duration
    return {"Cost": None if cost is None else
            f"USD {cost:.3f} ({'from the usage' if billed else 'estimate'})",
            "Billed seconds": seconds, "Billed picture": pixels or job.usage_size,
            "Videos": job.usage_video_count,
            "Queued": _seconds(job.submit_time, job.scheduled_time),
            "Ran": _seconds(job.scheduled_time, job.end_time),
            "File": (f"{job.video_frames} frames at {job.video_fps:g} fps, "
                     f"{(job.video_bytes or 0) / 1e6:.1f} MB"
                     + (", with sound" if job.has_audio else ", silent")
                     if job.video_frames and job.video_fps else None)}


class Player(W.VBox):
    """One run: ``Player(job, *, on_load=None, on_rerun=None)``.

    ``on_load(job)`` is called by "Load into form" (the button shows only when given);
    ``on_rerun(job, freeze)`` by the re-run buttons (default: :func:`rerun_job`, which submits
    through the job's session); what it returns is kept in :attr:`last_rerun`. An unfinished
    job updates itself until it is done; :meth:`close` releases its callback.
    """

    def __init__(self, job: Any, *, on_load: Callable[[Any], Any] | None = None,
                 on_rerun: Callable[[Any, bool], Any] | None = None, **kwargs: Any):
        self.job = job
        self._on_load = on_load
        self._on_rerun = on_rerun or rerun_job
        self.last_rerun: Any = None
        self.header = W.HTML()
        self.video = W.HTML()
        self.prompts = W.HTML()
        self.details = W.HTML()
        self.message = W.HTML()
        self.load_button = W.Button(description="Load into form", tooltip=(
            "Fill the generation form with this run's settings"),
            layout=W.Layout(width="auto"))
        self.rerun_button = W.Button(description="Re-run (same seed)", tooltip=(
            "Submit this run's request again: same prompt, parameters and seed"),
            layout=W.Layout(width="auto"))
        self.frozen_button = W.Button(description="Re-run with rewrite frozen", tooltip=(
            "Send the service's rewrite as the prompt with the rewrite off, same seed"),
            layout=W.Layout(width="auto"))
        self.load_button.on_click(lambda _b: self._load())
        self.rerun_button.on_click(lambda _b: self._rerun(False))
        self.frozen_button.on_click(lambda _b: self._rerun(True))
        if on_load is None:
            self.load_button.layout.display = "none"
        self.buttons = W.HBox([self.load_button, self.rerun_button, self.frozen_button],
                              layout=W.Layout(flex_flow="row wrap"))
        super().__init__([self.header, self.video, self.prompts, self.details, self.buttons,
                          self.message], **kwargs)
        self.add_class("wan-player")
        self._listening = not job.done
        if self._listening:
            job.on_change(self._changed)
        self.refresh()
        file_under_current_cell(self)

    def _changed(self, _job: Any) -> None:
        self.refresh()
        if self.job.done:
            self._release()

    def _release(self) -> None:
        if self._listening:
            self._listening = False
            self.job.off_change(self._changed)

    def close(self) -> None:
        """Release the job's callback and close the widget's views."""
        self._release()
        S.close_all(self.header, self.video, self.prompts, self.details, self.message,
                    self.load_button, self.rerun_button, self.frozen_button, self.buttons,
                    self.layout)
        super().close()

    def refresh(self) -> None:
        """Show the job as it is now."""
        job = self.job
        self.header.value = (f"<div>{S.badge(job.status)} <b>{S.esc(job.model)}</b> "
                             f"{S.dim(S.esc(job.run_id))}</div>")
        self.video.value = self._video_html()
        negative = (f"<div><b>Negative prompt</b>: {S.esc(job.negative_prompt)}</div>"
                    if job.negative_prompt else "")
        self.prompts.value = (f"<div style='color:{S.FG}'><div><b>Prompt</b></div>"
                              f"<div style='white-space:pre-wrap'>{S.esc(job.prompt)}</div>"
                              f"{negative}<div style='margin-top:4px'><b>Actual prompt</b>"
                              f"</div>{rewrite_html(job)}</div>")
        self.details.value = (f"<div style='display:flex;flex-wrap:wrap;gap:16px'>"
                              f"<div><b>Parameters</b>{S.table(parameters(job))}</div>"
                              f"<div><b>Usage and cost</b>{S.table(usage(job))}</div></div>")
        # freezing needs a disclosed rewrite, of a run whose rewrite was on
        frozen = job.actual_prompt and job.prompt_extend is not False
        self.frozen_button.layout.display = None if frozen else "none"

    def _video_html(self) -> str:
        job = self.job
        if job.error:
            problem = S.error(job.error)
        else:
            check = video_problem(job)
            problem = S.error(check.problem or check.state) if check is not None else ""
        if job.video:
            poster = cached_poster(job.video)
            return problem + S.video(job.video, poster=poster, preload="metadata",
                                     duration=job.video_duration, max_width="720px")
        if not job.done:
            return S.dim(f"the video shows here when the run has finished ({job.status})")
        return problem or S.dim("no video")

    def _load(self) -> None:
        if self._on_load is None:
            return
        try:
            self._on_load(self.job)
        except WanError as e:
            self.message.value = S.error(e)

    def _rerun(self, freeze: bool) -> None:
        try:
            new = self._on_rerun(self.job, freeze)
        except WanError as e:
            self.message.value = S.error(e)
            return
        self.last_rerun = new
        what = "with the rewrite frozen" if freeze else "with the same seed"
        run = f" as run {S.esc(new.run_id)}" if getattr(new, "run_id", None) else ""
        self.message.value = S.dim(f"submitted again {what}{run}")
