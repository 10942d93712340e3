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
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import catalog, runtime
from .errors import JobTimeout, TaskExpired, TaskFailed, WanError
from .request import GenerationRequest
from .statuses import ENDED_WITHOUT_VIDEO, FINAL_STATUSES, OUTCOME_UNKNOWN

if TYPE_CHECKING:
    import pandas as pd

    from .poller import JobManager

log = logging.getLogger("wan_nb.jobs")



@dataclass(frozen=True)
class PollPolicy:
    """When to ask the service again.

    A job's next poll is ``clamp(share * remaining, floor, ceiling)`` seconds away, where
    ``remaining`` is the learned run time left (median of finished runs of the same backend,
    model, size and duration); past the expected end it is ``clamp(overrun_share * overrun,
    floor, ceiling)``. Every interval gets ±``jitter`` so many jobs do not poll in lockstep.
    With ``list_threshold`` or more jobs in flight, one list request replaces their queries.
    """

    floor: float = 0.5
    ceiling: float = 15.0
    share: float = 0.6
    overrun_share: float = 0.25
    jitter: float = 0.1
    list_threshold: int = 3
    max_list_pages: int = 5
    query_rate: float = 15.0  # under the documented 20 requests/s for query+list+cancel
    max_unrecognized: int = 5  # polls answering a status we do not know before giving up
    downloads: int = 3
    download_rounds: int = 6  # download attempts (each itself retried) before giving up
    reconcile_after: float = 2.0
    heartbeat: float = 10.0
    create_spacing: float = 1.1  # × 1/rate between creates of one model
    watch_interval: float = 1.0  # how often runs owned by another kernel are re-read
    reconcile_give_up: float = 900.0  # s an ambiguous create may stay undecided

    def interval(self, remaining: float, rng: random.Random) -> float:
        base = self.share * remaining if remaining > 0 else self.overrun_share * -remaining
        return min(self.ceiling, max(self.floor, base)) * rng.uniform(1 - self.jitter,
                                                                       1 + self.jitter)


class Durations:
    """Learned queue and run times, by (backend, model, size, duration)."""

    DEFAULT_RUN = {"emulator": 3.0}
    LIVE_DEFAULT_RUN = 150.0

    def __init__(self) -> None:
        self._run: dict[tuple, list[float]] = collections.defaultdict(list)

    def learn(self, backend: str, model: str, size: str, duration: int,
              run_s: float | None) -> None:
        if run_s is not None and run_s >= 0:
            samples = self._run[(backend, model, size, int(duration))]
            samples.append(float(run_s))
            del samples[:-50]

    def learn_from_store(self, rows: Iterable[dict]) -> None:
        for r in rows:
            if r.get("status") == "SUCCEEDED" and r.get("run_s") is not None:
                self.learn(str(r.get("backend")), r["model"], r["size"], r["duration"],
                           r["run_s"])

    def knows(self, backend: str, model: str) -> bool:
        """Whether any run time of ``model`` on ``backend`` has been learned."""
        return any(v for (b, m, _, _), v in list(self._run.items())
                   if b == backend and m == model)

    def expected_run(self, backend: str, model: str, size: str, duration: int) -> float:
        exact = self._run.get((backend, model, size, int(duration)))
        if exact:
            return statistics.median(exact)
        # same backend and model, scaled by pixels × seconds
        w, h = catalog.parse_size(size)
        scaled = [statistics.median(v) * (w * h * duration) / (ww * hh * dd)
                  for (b, m, s, dd), v in list(self._run.items())
                  if b == backend and m == model and v
                  for ww, hh in [catalog.parse_size(s)]]
        if scaled:
            return statistics.median(scaled)
        return self.DEFAULT_RUN.get(backend.split(":")[0], self.LIVE_DEFAULT_RUN)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Job:
    """One run: a request, its task on the service, and its video on disk.

    Read its state from the attributes (``status``, ``task_id``, ``actual_prompt``,
    ``video_path``, ...); wait with :meth:`result` (or ``await job``); :meth:`cancel` a PENDING
    one; :meth:`on_change` to be told about every change (callbacks run on the toolkit's
    thread: set widget values there, do not print or block).
    """

    def __init__(self, manager: JobManager, row: dict[str, Any]):
        self._manager = manager
        self.run_id: str = row["run_id"]
        # a stored request is read back as recorded: no file is touched (pure)
        self.request = GenerationRequest.from_params(row["request_json"], stored=True)
        self.experiment: str | None = row.get("experiment")
        self.variant: str | None = row.get("variant")
        self._callbacks: list[Callable[[Job], Any]] = []
        self._done: asyncio.Event | None = None
        self._row: dict[str, Any] = dict(row)
        # poller bookkeeping (runtime thread only)
        self._next_poll = 0.0
        self._unrecognized = 0
        self._skew: float | None = None  # service clock minus local clock, seconds
        self._reconcile_tries = 0
        self._not_before = 0.0
        self._unknown = 0
        self._download_tries = 0
        self._starting = False  # a create was started, before the row says SUBMITTING
        self._failures = 0  # background steps of this job that failed unexpectedly
        self._cancelling = False
        self._unattended: str | None = None  # why nothing in this kernel looks after it

    # -- state (read anywhere) ---------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        row = self.__dict__.get("_row")
        if row is not None and name in row:
            return row[name]
        raise AttributeError(name)

    @property
    def status(self) -> str:
        return self._row["status"]

    @property
    def done(self) -> bool:
        """True once nothing more will happen to this job."""
        return _is_finished(self._row)

    @property
    def ok(self) -> bool:
        """SUCCEEDED with its video on disk, as downloaded (size and mtime checked; the
        sha256 only when they changed)."""
        return (self.status == "SUCCEEDED" and self._row.get("video_path") is not None
                and self._manager.store.check_video(self._row).ok)

    @property
    def video(self) -> str | None:
        """Absolute path of the downloaded video, or None."""
        p = self._manager.store.video_file(self._row)
        return str(p) if p is not None else None

    @property
    def error(self) -> str | None:
        code, msg = self._row.get("error_code"), self._row.get("error_message")
        if code or msg:
            return f"{code}: {msg}" if code and msg else str(code or msg)
        return self._row.get("download_error")

    @property
    def elapsed(self) -> float:
        """Seconds since the job was created (until it finished)."""
        start = self._row["created_at"]
        end = self._row.get("updated_at") if self.done else _utcnow()
        return max(0.0, ((end or _utcnow()) - start).total_seconds())

    def eta(self) -> float | None:
        """Expected seconds until the task ends, from learned run times (None when done)."""
        if self.done:
            return None
        m = self._manager
        r = self.request
        run = m.durations.expected_run(m.backend, r.model, r.size or "", int(r.duration or 0))
        started = self._local_time("scheduled_time")
        if self.status == "RUNNING" and started is not None:
            return max(0.0, started + run - time.time())
        return run

    def progress(self) -> dict[str, Any]:
        """State, elapsed and ETA, for progress displays."""
        eta = self.eta()
        elapsed = self.elapsed
        frac = 1.0 if self.done else (elapsed / (elapsed + eta) if eta else 0.0)
        return {"run_id": self.run_id, "status": self.status, "elapsed": round(elapsed, 1),
                "eta": None if eta is None else round(eta, 1),
                "fraction": round(min(1.0, frac), 3), "done": self.done, "error": self.error}

    def _local_time(self, name: str) -> float | None:
        when = self._row.get(name)
        if when is None:
            return None
        return when.timestamp() - (self._skew or 0.0)

    def __repr__(self) -> str:
        task = f" task={self.task_id}" if self._row.get("task_id") else ""
        return (f"<Job {self.run_id} {self.status}{task} {self.request.model} "
                f"{self.request.size} {self.request.duration}s seed={self.request.seed}>")

    def _repr_html_(self) -> str:
        from .display import job_html

        return job_html(self)

    # -- waiting -----------------------------------------------------------------------------
    def _event(self) -> asyncio.Event:
        if self._done is None:
            self._done = asyncio.Event()
            if self.done:
                self._done.set()
        return self._done

    async def _wait(self) -> Job:
        """Until the job is done, or nothing looks after it any more (client closed)."""
        closed = self._manager._closed_event
        if closed is None or self._manager.closed or self._unattended:
            if not self._manager.closed and not self._unattended:
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
        if not self.done and self._unattended:
            raise WanError(f"job {self.run_id} is {self.status} and nothing in this kernel "
                           f"looks after it: {self._unattended}")
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
                             code=self._row.get("error_code"), status=status,
                             task_id=self._row.get("task_id"), job=self)

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
        """Call ``callback(job)`` after every change of this job (on the toolkit's thread)."""
        self._callbacks.append(callback)
        return callback

    def cancel(self) -> None:
        """Cancel a job that is QUEUED (never sent) or PENDING on the service.

        A RUNNING or finished job cannot be cancelled (the service only cancels PENDING
        tasks): :class:`UnsupportedOperationError` says so.
        """
        runtime.run(self._manager._cancel(self))

    def track(self) -> Any:
        """A live tracker widget for this job."""
        from .widgets.tracker import Tracker

        return Tracker([self])

    def refresh(self) -> Job:
        """Re-read this job's row from the store."""
        self._row = self._manager.store.get_run(self.run_id)
        return self


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

    def gallery(self, columns: int = 3) -> Any:
        from .display import gallery

        return gallery(self, columns=columns)

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

