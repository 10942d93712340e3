"""Background jobs: a :class:`Job` per run (the poller that drives them all is in
:mod:`wan_nb.poller`).

Flow of a job (DESIGN.md §1): ``QUEUED`` (row written, waiting for the model's submission
rate) → ``SUBMITTING`` (the create request is leaving; ``sent_at`` recorded first) →
``PENDING`` → ``RUNNING`` → ``SUCCEEDED`` (then the video is downloaded, verified and probed) or
``FAILED`` / ``CANCELED``; ``REJECTED`` when the create was refused (nothing billed); ``UNKNOWN``
when the service no longer knows the task; ``EXPIRED`` when the result could not be downloaded
within the service's 24 hours.

The poller runs on the toolkit's loop thread (:mod:`wan_nb.runtime`), so it keeps going while
cells run, blocking ones included. Its schedule (see :class:`PollPolicy`) comes from what the
store has learned of this model/size/duration's run times, with jitter, a floor and a ceiling.
With several jobs in flight it learns their states from one list request and fetches details
only for the jobs whose state changed.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import sys
import time
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from . import runtime
from .errors import JobTimeout, TaskExpired, TaskFailed, ValidationError, WanError
from .request import GenerationRequest
from .video_objects import is_object_url, local_copy
from .schedule import Durations, PollPolicy  # noqa: F401  (their old home: kept importable)
from .statuses import ENDED_WITHOUT_VIDEO, FINAL_STATUSES, OUTCOME_UNKNOWN

if TYPE_CHECKING:
    import pandas as pd

    from .store_video import VideoCheck

    from .poller import JobManager

log = logging.getLogger("wan_nb.jobs")



def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


T = TypeVar("T")


class RunState:
    """A run as this kernel knows it: its ledger record and who waits for it.

    Owned and written by the job manager (on the toolkit's thread); a :class:`Job` is a
    read-only view of it. ``skew`` is the service's clock minus the local one (seconds),
    learned from the first answer; ``unattended`` says why nothing in this kernel looks after
    the run (it belongs to another backend), or is None."""

    __slots__ = ("record", "callbacks", "done_event", "skew", "unattended")

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record: dict[str, Any] = dict(record)
        self.callbacks: list[Callable[[Job], Any]] = []
        self.done_event: asyncio.Event | None = None
        self.skew: float | None = None
        self.unattended: str | None = None

    def event(self) -> asyncio.Event:
        """Set once the run is done (created lazily, on the toolkit's loop)."""
        if self.done_event is None:
            self.done_event = asyncio.Event()
            if _is_finished(self.record):
                self.done_event.set()
        return self.done_event


class Field(Generic[T]):
    """A column of the run's ledger record, read through the job (``job.task_id``)."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, job: None, owner: type | None = None) -> Field[T]: ...
    @overload
    def __get__(self, job: Job, owner: type | None = None) -> T: ...

    def __get__(self, job: Job | None, owner: type | None = None) -> Field[T] | T:
        if job is None:
            return self
        return job._state.record.get(self.name)  # type: ignore[return-value]


class Job:
    """One run: a request, its task on the service, and its video on disk.

    Read its state from the attributes (``status``, ``task_id``, ``actual_prompt``,
    ``video_path``, ... : every column of the ledger, see :attr:`record`); wait with
    :meth:`result` (or ``await job``); :meth:`cancel` a QUEUED or PENDING one;
    :meth:`on_change` to be told about every change (callbacks run on the toolkit's thread:
    set widget values there, do not print or block).
    """

    # -- the ledger record's columns (None until known) ---------------------------------------
    experiment: Field[str | None] = Field("the experiment this run belongs to")
    variant: Field[str | None] = Field("the experiment's variant (a grid cell's name)")
    tags: Field[list[str]] = Field("the run's tags")
    prompt: Field[str] = Field("the prompt as sent")
    negative_prompt: Field[str | None] = Field("the negative prompt as sent")
    actual_prompt: Field[str | None] = Field(
        "the prompt the service generated from (its rewrite), when it discloses it")
    model: Field[str] = Field("the model's exact name, as sent")
    size: Field[str | None] = Field("width*height as sent")
    width: Field[int] = Field("video width in pixels")
    height: Field[int] = Field("video height in pixels")
    tier: Field[str | None] = Field("480P, 720P or 1080P")
    resolution: Field[str | None] = Field(
        "480P, 720P or 1080P as asked for (either protocol; from size for older runs)")
    ratio: Field[str | None] = Field("the aspect ratio asked for: 16:9, 9:16, 1:1, 4:3, ...")
    duration: Field[int] = Field("seconds asked for")
    seed: Field[int | None] = Field("the seed sent")
    prompt_extend: Field[bool | None] = Field("whether the service may rewrite the prompt")
    watermark: Field[bool | None] = Field("whether the video carries the AI watermark")
    audio_mode: Field[str | None] = Field("auto, custom or silent")
    audio_url: Field[str | None] = Field("the custom audio's URL or local file")
    shot_type: Field[str | None] = Field("single or multi (wan2.6)")
    error_code: Field[str | None] = Field("the service's (or wan_nb's) error code")
    error_message: Field[str | None] = Field("the error's message")
    task_id: Field[str | None] = Field("the service's task id (None until created)")
    request_id: Field[str | None] = Field("the create request's id (for support)")
    created_at: Field[dt.datetime] = Field("when the run was recorded (UTC)")
    sent_at: Field[dt.datetime | None] = Field("when its create request left (UTC)")
    submit_time: Field[dt.datetime | None] = Field("when the service accepted the task")
    scheduled_time: Field[dt.datetime | None] = Field("when the service started running it")
    end_time: Field[dt.datetime | None] = Field("when the service finished it")
    usage_video_count: Field[int | None] = Field("usage: videos made")
    usage_video_duration: Field[float | None] = Field("usage: seconds of video billed")
    usage_video_ratio: Field[str | None] = Field("usage: the video's size as reported")
    usage_duration: Field[float | None] = Field("usage: duration (2026 models)")
    usage_size: Field[str | None] = Field("usage: size")
    usage_sr: Field[int | None] = Field("usage: SR, the output resolution (2026 models)")
    usage_ratio: Field[str | None] = Field("usage: ratio, the aspect ratio (2026 models)")
    usage_width: Field[int | None] = Field(
        "usage: the reported video's width (its size, or from SR and ratio)")
    usage_height: Field[int | None] = Field("usage: the reported video's height")
    usage_input_video_duration: Field[float | None] = Field("usage: input video seconds")
    usage_output_video_duration: Field[float | None] = Field("usage: output video seconds")
    usage_json: Field[dict[str, Any] | None] = Field("usage as the service sent it")
    cost_usd: Field[float | None] = Field(
        "USD: the estimate until the service reports usage, then the billed figure")
    video_url: Field[str | None] = Field("the service's signed video URL (valid 24 h)")
    video_url_expires_at: Field[dt.datetime | None] = Field("when that URL expires")
    video_path: Field[str | None] = Field("the video's path inside the store (see video)")
    video_sha256: Field[str | None] = Field("sha256 of the downloaded video")
    video_bytes: Field[int | None] = Field("its size in bytes")
    video_mtime_ns: Field[int | None] = Field("its file's mtime when verified")
    video_fps: Field[float | None] = Field("frames per second, probed")
    video_frames: Field[int | None] = Field("frames, probed")
    video_duration: Field[float | None] = Field("seconds, probed")
    has_audio: Field[bool | None] = Field("whether the video has a sound track, probed")
    download_error: Field[str | None] = Field("why the video is missing or differs")
    rating: Field[int | None] = Field("your rating (1-5)")
    keep: Field[bool | None] = Field("your verdict: True keep, False reject, None not yet")
    notes: Field[str | None] = Field("your notes")
    fingerprint: Field[str] = Field("sha256 of the canonical request")
    backend: Field[str] = Field("the service (live:<region>, emulator, ...) it ran on")
    wan_nb_version: Field[str | None] = Field("the wan_nb version that recorded it")
    owner: Field[str | None] = Field("the kernel looking after it (host:pid:tag)")
    owner_heartbeat: Field[dt.datetime | None] = Field("that kernel's last sign of life")
    updated_at: Field[dt.datetime | None] = Field("the record's last change (UTC)")

    def __init__(self, manager: JobManager, state: RunState | Mapping[str, Any]):
        self._manager = manager
        self._state = state if isinstance(state, RunState) else RunState(state)
        row = self._state.record
        self.run_id: str = row["run_id"]
        # a stored request is read back as recorded: no file is touched (pure)
        self.request = GenerationRequest.from_params(row["request_json"], stored=True,
                                                     fingerprint=row.get("fingerprint"))

    # -- state (read anywhere) ---------------------------------------------------------------
    @property
    def record(self) -> Mapping[str, Any]:
        """The run's ledger record as this kernel last saw it (read-only)."""
        return types.MappingProxyType(self._state.record)

    @property
    def status(self) -> str:
        return self._state.record["status"]

    @property
    def done(self) -> bool:
        """True once nothing more will happen to this job."""
        return _is_finished(self._state.record)

    @property
    def ok(self) -> bool:
        """SUCCEEDED with its video on disk, as downloaded (size and mtime checked; the
        sha256 only when they changed)."""
        return (self.status == "SUCCEEDED" and self._state.record.get("video_path") is not None
                and self.check_video().ok)

    def check_video(self, *, full: bool = False) -> VideoCheck:
        """Is the downloaded video still the one downloaded? (see ``Store.check_video``:
        size and mtime, the sha256 only when they changed or with ``full=True``)."""
        return self._manager.store.check_video(self._state.record, full=full)

    @property
    def video(self) -> str | None:
        """Absolute path of the downloaded video, or None. A video on object storage is
        its local copy, fetched (and checked) the first time it is asked for here (never on
        the toolkit's loop thread); None when that cannot be made (see ``video_path``)."""
        record = self._state.record
        if is_object_url(record.get("video_path")):
            if runtime.in_runtime_thread():  # a widget callback: never fetch on the loop
                p = self._manager.store.video_file(record)
                p = p if p is not None and p.is_file() else None
            else:
                p = local_copy(self._manager.store.root, record)
        else:
            p = self._manager.store.video_file(record)
        return str(p) if p is not None else None

    @property
    def error(self) -> str | None:
        code, msg = self._state.record.get("error_code"), self._state.record.get("error_message")
        if code or msg:
            return f"{code}: {msg}" if code and msg else str(code or msg)
        return self._state.record.get("download_error")

    @property
    def elapsed(self) -> float:
        """Seconds since the job was created (until it finished)."""
        start = self._state.record["created_at"]
        end = self._state.record.get("updated_at") if self.done else _utcnow()
        return max(0.0, ((end or _utcnow()) - start).total_seconds())

    def eta(self) -> float | None:
        """Expected seconds until the task ends, from learned run times (None when done)."""
        if self.done:
            return None
        r = self.request
        run = self._manager.schedule.expected_run(r.model, r.size or "", int(r.duration or 0))
        started = self.local_time("scheduled_time")
        if self.status == "RUNNING" and started is not None:
            return max(0.0, started + run - time.time())
        return run

    def time_left(self) -> tuple[float, float] | None:
        """Seconds until the task ends as a (p50, p90) band from learned run times: half the
        runs like it end within the first figure, nine in ten within the second. Counted
        from the service's start when it is RUNNING, else the whole run. None when done."""
        if self.done:
            return None
        r = self.request
        band = self._manager.schedule.run_band(r.model, r.size or "", int(r.duration or 0))
        started = self.local_time("scheduled_time")
        if self.status == "RUNNING" and started is not None:
            return band.left(time.time() - started)
        return band.p50, band.p90

    @property
    def reconciling(self) -> bool:
        """True while the service is being asked whether an unanswered create made a task
        (the create's answer was lost: it is looked for in the task list, never paid twice)."""
        return not self.done and self._manager.creator.reconciling(self)

    def progress(self) -> dict[str, Any]:
        """State, elapsed and ETA, for progress displays."""
        eta = self.eta()
        elapsed = self.elapsed
        frac = 1.0 if self.done else (elapsed / (elapsed + eta) if eta else 0.0)
        return {"run_id": self.run_id, "status": self.status, "elapsed": round(elapsed, 1),
                "eta": None if eta is None else round(eta, 1),
                "fraction": round(min(1.0, frac), 3), "done": self.done, "error": self.error}

    def local_time(self, name: str) -> float | None:
        """A time column of the record (``scheduled_time``, ...) as a local epoch timestamp,
        corrected for the service's clock skew; None when unknown."""
        when = self._state.record.get(name)
        if when is None:
            return None
        return when.timestamp() - (self._state.skew or 0.0)

    def __repr__(self) -> str:
        task = f" task={self.task_id}" if self._state.record.get("task_id") else ""
        return (f"<Job {self.run_id} {self.status}{task} {self.request.model} "
                f"{self.request.size} {self.request.duration}s seed={self.request.seed}>")

    def _repr_html_(self) -> str:
        from .display import job_html

        return job_html(self)

    # -- waiting -----------------------------------------------------------------------------
    def _event(self) -> asyncio.Event:
        return self._state.event()

    async def _wait(self) -> Job:
        """Until the job is done, or nothing looks after it any more (client closed)."""
        closed = self._manager.closed_event
        if closed is None or self._manager.closed or self._state.unattended:
            if not self._manager.closed and not self._state.unattended:
                await self._event().wait()
            return self
        done = asyncio.ensure_future(self._event().wait())
        stop = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({done, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            stop.cancel()
        return self

    def _raise_if_abandoned(self) -> None:
        if not self.done and self._state.unattended:
            raise WanError(f"job {self.run_id} is {self.status} and nothing in this kernel "
                           f"looks after it: {self._state.unattended}")
        if not self.done and self._manager.closed:
            raise WanError(f"job {self.run_id} is {self.status} and nothing looks after it: "
                           "its client was closed. The run stays recorded; wan_nb.connect() "
                           "(or client.resume()) on this store picks it up again")

    def result(self, timeout: float | None = None, *, raise_on_error: bool = True) -> Job:
        """Block until the job is done (video downloaded, or failed) and return it.

        Ctrl-C stops the wait, not the task. ``timeout`` raises :class:`JobTimeout`; the job
        goes on and still gets recorded. A job that did not succeed raises
        :class:`TaskFailed` (or :class:`TaskExpired`) unless ``raise_on_error=False``. A job
        whose client was closed before it finished raises :class:`WanError`.
        """
        self._raise_if_abandoned()
        if not self.done:
            try:
                runtime.run(self._wait(), timeout=timeout)
            except JobTimeout:
                self._raise_if_abandoned()
                raise JobTimeout(f"job {self.run_id} still {self.status} after {timeout} s; "
                                 "it goes on in the background") from None
            self._raise_if_abandoned()
        if raise_on_error:
            self.raise_for_status()
        return self

    def retry_download(self) -> Job:
        """Fetch this run's paid video again, in the background, while the service's URL
        is valid (24 hours): after a failed download (a full disk, say), or when the file was
        deleted or damaged since. Returns at once; :meth:`result` waits. Nothing is created or
        paid again. :class:`TaskExpired` when the URL has expired."""
        runtime.run(self._manager.download_again(self))
        return self

    def raise_for_status(self) -> None:
        status = self.status
        if status in OUTCOME_UNKNOWN:
            raise TaskExpired(f"job {self.run_id}: {self.error or status}")
        if status in ENDED_WITHOUT_VIDEO or (status == "SUCCEEDED"
                                                             and not self.ok):
            raise TaskFailed(f"job {self.run_id} {status}: {self.error or 'no video'}",
                             code=self._state.record.get("error_code"), status=status,
                             task_id=self._state.record.get("task_id"), job=self)

    def __await__(self):
        async def waiter() -> Job:
            self._raise_if_abandoned()
            if runtime.in_runtime_thread():
                await self._wait()
            else:
                await asyncio.wrap_future(runtime.submit(self._wait()))
            self._raise_if_abandoned()
            self.raise_for_status()
            return self

        return waiter().__await__()

    def on_change(self, callback: Callable[[Job], Any]) -> Callable[[Job], Any]:
        """Call ``callback(job)`` after every change of this job (on the toolkit's thread).
        Returns ``callback`` (so it works as a decorator); :meth:`off_change` removes it."""
        self._state.callbacks.append(callback)
        return callback

    def off_change(self, callback: Callable[[Job], Any]) -> bool:
        """Stop calling ``callback``; False if it was not registered."""
        try:
            self._state.callbacks.remove(callback)
        except ValueError:
            return False
        return True

    def rate(self, rating: int | None = None, *, keep: bool | None = None,
             notes: str | None = None) -> Job:
        """Record your rating (1-5), keep (True) or reject (False), and notes for this run,
        in the store at once (``to_dataframe()`` shows them). Only what is given changes."""
        fields = rating_fields(rating, keep, notes)
        self._manager.store.update_run(self.run_id, **fields)
        self._state.record = {**self._state.record, **fields}
        return self

    def rerun(self, *, freeze_rewrite: bool = False) -> Job:
        """Submit this run's request again as a new run (same seed, same experiment, tagged
        ``rerun-of:<run_id>``); returns at once. With ``freeze_rewrite`` the service's
        rewritten prompt is sent as the prompt with the rewrite off (variant ``…|frozen``),
        which separates the rewriter's variance from the generator's."""
        row = self._state.record
        request = rerun_request(row, freeze_rewrite=freeze_rewrite)
        variant = row.get("variant")
        if freeze_rewrite:
            variant = (variant or self.run_id) + "|frozen"
        tags = [t for t in row.get("tags") or () if not t.startswith("rerun-of:")]
        return self._manager.submit(request, experiment=row.get("experiment"), variant=variant,
                                    tags=[*tags, f"rerun-of:{self.run_id}"])

    def cancel(self) -> None:
        """Cancel a job that is QUEUED (never sent) or PENDING on the service.

        A RUNNING or finished job cannot be cancelled (the service only cancels PENDING
        tasks): :class:`UnsupportedOperationError` says so.
        """
        runtime.run(self._manager.cancel(self))

    def track(self) -> Any:
        """A live tracker widget for this job."""
        from .widgets.tracker import Tracker

        return Tracker([self])

    def refresh(self) -> Job:
        """Re-read this job's record from the store."""
        self._state.record = self._manager.store.get_run(self.run_id)
        return self


def rerun_request(row: Mapping[str, Any], *, freeze_rewrite: bool) -> GenerationRequest:
    """The request of a recorded run, to send again; frozen: its ``actual_prompt`` as the
    prompt with the rewrite off (cut to the model's limit; multi-shot off)."""
    request = GenerationRequest.from_params(row["request_json"], stored=True,
                                           fingerprint=row.get("fingerprint"))
    if not freeze_rewrite:
        return request
    actual = row.get("actual_prompt")
    if not actual:
        raise WanError(f"run {row['run_id']} has no actual_prompt to freeze (not finished, "
                       "prompt_extend was off, or a model that does not disclose its rewrite)")
    spec = request.spec
    return request.replace(prompt=actual[: spec.prompt_max], prompt_extend=False,
                           shot_type=None if not spec.multi_shot else "single")


def rating_fields(rating: Any = None, keep: Any = None, notes: Any = None) -> dict[str, Any]:
    """The ledger fields of a rating, checked: an integer 1-5, a bool, a string."""
    problems: list[tuple[str, str]] = []
    fields: dict[str, Any] = {}
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            problems.append(("rating", f"rating must be a whole number from 1 to 5, "
                                       f"not {rating!r}"))
        fields["rating"] = rating
    if keep is not None:
        if not isinstance(keep, bool):
            problems.append(("keep", f"keep must be True (keep) or False (reject), not {keep!r}"))
        fields["keep"] = keep
    if notes is not None:
        if not isinstance(notes, str):
            problems.append(("notes", f"notes must be text, not {type(notes).__name__}"))
        fields["notes"] = notes
    if problems:
        raise ValidationError(problems)
    if not fields:
        raise ValidationError([("rating", "give a rating (1-5), keep=True/False or notes")])
    return fields


def _is_finished(row: dict[str, Any]) -> bool:
    status = row["status"]
    if status == "SUCCEEDED":
        return row.get("video_path") is not None or row.get("download_error") is not None
    return status in FINAL_STATUSES


class JobList(list):
    """A list of jobs with batch helpers: :meth:`wait`, :meth:`progress`,
    :meth:`to_dataframe`, :meth:`cancel`, :meth:`gallery`."""

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> JobList:
        """Wait until every job is done. ``progress=True`` prints a text progress line (the
        default in plain scripts; notebooks use :meth:`track`). Never raises for failed jobs:
        inspect ``status``/``error``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        show = (not _in_notebook()) if progress is None else progress
        while True:
            pending = [j for j in self if not j.done]
            if show:
                _print_progress(self)
            if not pending:
                if show:
                    sys.stderr.write("\n")
                return self
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise JobTimeout(f"{len(pending)} of {len(self)} jobs not done after "
                                 f"{timeout} s; they go on in the background")
            try:
                pending[0].result(timeout=min(0.5 if show else 5.0, left or 5.0),
                                  raise_on_error=False)
            except JobTimeout:
                pass

    def progress(self) -> dict[str, Any]:
        """Counts by status, fraction done and the batch's ETA."""
        counts = collections.Counter(j.status for j in self)
        etas = [e for j in self if (e := j.eta()) is not None]
        done = sum(j.done for j in self)
        return {"total": len(self), "done": done,
                "fraction": round(done / len(self), 3) if self else 1.0,
                "by_status": dict(counts), "eta": round(max(etas), 1) if etas else None}

    def cancel(self) -> list[Job]:
        """Cancel every job that still can be: nothing more is created for them (jobs being
        created right now included), and every created task still PENDING is cancelled,
        paced within the account's query rate. Returns those cancelled."""
        out: list[Job] = []
        by_manager: dict[int, tuple[JobManager, list[Job]]] = {}
        for j in self:
            if not j.done:
                by_manager.setdefault(id(j._manager), (j._manager, []))[1].append(j)
        for manager, jobs in by_manager.values():
            if not manager.closed:
                out += runtime.run(manager.cancel_jobs(jobs))
        return out

    def retry_download(self) -> JobList:
        """:meth:`Job.retry_download` for every SUCCEEDED job whose video is missing,
        damaged or failed to download and whose URL is still valid; returns those jobs."""
        out = JobList()
        for j in self:
            if j.status == "SUCCEEDED" and not j._manager.closed:
                try:
                    if runtime.run(j._manager.download_again(j)):
                        out.append(j)
                except (TaskExpired, WanError) as e:
                    log.info("%s", e)
        return out

    def to_dataframe(self) -> pd.DataFrame:
        if not self:
            return _empty()
        store = self[0]._manager.store
        return store.to_dataframe(run_ids=[j.run_id for j in self])

    def track(self) -> Any:
        """A live tracker widget for these jobs."""
        from .widgets.tracker import Tracker

        return Tracker(self)

    def gallery(self, columns: int | None = None, **options: Any) -> Any:
        """The Studio's gallery of these jobs: facets, ratings, blind mode (``rows=``,
        ``cols=``, ``on_load=``: see :class:`wan_nb.widgets.Gallery`). Static HTML for an
        export: ``wan_nb.display.gallery(jobs)``."""
        from .widgets.gallery import Gallery

        return Gallery(self, columns=columns, **options)

    def _repr_html_(self) -> str:
        from .display import jobs_table_html

        return jobs_table_html(self)


def _empty() -> Any:
    import pandas as pd

    return pd.DataFrame()


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        ip = get_ipython()
        return ip is not None and "IPKernelApp" in ip.config
    except ImportError:
        return False


def _print_progress(jobs: JobList) -> None:
    p = jobs.progress()
    parts = ", ".join(f"{k} {v}" for k, v in sorted(p["by_status"].items()))
    eta = f", ETA {p['eta']:.0f} s" if p["eta"] else ""
    sys.stderr.write(f"\r{p['done']}/{p['total']} done ({parts}){eta}    ")
    sys.stderr.flush()

