"""The single poller: creates, polls, downloads and resumes every job of a client.

It runs on the toolkit's loop thread (:mod:`wan_nb.runtime`). See :mod:`wan_nb.jobs` for the
flow of a job and :class:`~wan_nb.jobs.PollPolicy` for the schedule.

Polling policy, in short: each job's next poll is a share of its learned remaining run time
(median of finished runs of the same backend, model, size and duration), clamped to a floor
and a ceiling, with jitter. When ``list_threshold`` or more jobs are in flight, one list
request reports all their states and only jobs that ended get a detail query. Creates respect
each model's submission rate; queries, lists and cancels stay under 15 per second (the
account's limit is 20).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import os
import random
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import catalog, runtime
from ._version import __version__
from .errors import (AmbiguousCreateError, APIError, DownloadError, JobTimeout, TaskExpired,
                     ThrottledError, TransportError, UnsupportedOperationError,
                     ValidationError, WanError)
from .jobs import Job, JobList, RunState, _utcnow
from .schedule import CreatePacer, Durations, PollPolicy, QueryLimiter, Schedule
from .reconcile import CreateGate, create_key
from .request import GenerationRequest
from .store_table import StoreError
from .statuses import ACTIVE_SERVICE, FINAL_SERVICE_STATUSES, SERVICE_STATUSES
from .wire import TaskState, TaskSummary

if TYPE_CHECKING:
    from .client import AsyncClient
    from .store import Store

log = logging.getLogger("wan_nb.jobs")


@dataclass
class Track:
    """The poller's bookkeeping for one run (runtime thread only)."""

    next_poll: float = 0.0  # monotonic time of the next query
    not_before: float = 0.0  # no create (or reconcile pass) before this monotonic time
    unrecognized: int = 0  # answers in a row with a status this version does not know
    unknown: int = 0  # UNKNOWN answers so far (believed at the third)
    reconcile_tries: int = 0  # list checks that found no task for an ambiguous create
    download_tries: int = 0  # download rounds so far
    failures: int = 0  # background steps of this run that failed unexpectedly
    starting: bool = False  # a create was started, before the record says SUBMITTING
    cancelling: bool = False  # a cancel request is on its way


class JobManager:
    """Creates, polls, downloads and resumes jobs for one client and one store.

    All state changes happen on the toolkit's loop thread; :meth:`submit` may be called from
    any thread.
    """

    def __init__(self, aio: AsyncClient, store: Store, *, policy: PollPolicy | None = None,
                 owner: str | None = None, rng: random.Random | None = None):
        self.aio = aio
        self.store = store
        self.policy = policy or PollPolicy()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.backend = aio.backend
        self.durations = Durations()
        self.durations.learn_from_store(store.runs(status="SUCCEEDED"))
        self.jobs: dict[str, Job] = {}
        self._states: dict[str, RunState] = {}  # what each job shows (a Job is a view of it)
        self._tracks: dict[str, Track] = {}  # the poller's bookkeeping per run
        self._rng = rng or random.Random()
        self._queue: collections.deque[Job] = collections.deque()
        self.schedule = Schedule(self.policy, self.durations, self.backend, self._rng)
        self._pacer = CreatePacer(self.policy.create_spacing)
        self._limiter = QueryLimiter(self.policy.query_rate)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()
        self._dl_sem: asyncio.Semaphore | None = None
        self._last_heartbeat = 0.0
        self._ambiguous: set[str] = set()  # run ids whose create is being reconciled
        self._gates: dict[str, CreateGate] = collections.defaultdict(CreateGate)
        # runs of this ledger that another live kernel owns: followed through the store,
        # taken over when that owner dies
        self._watched: set[str] = set()
        self._next_watch = 0.0
        self._cancel_requested: set[str] = set()  # nothing more is created for these
        self._downloads: collections.Counter[str] = collections.Counter()  # chains per run
        self._reconciling: set[str] = set()  # run ids with a reconcile step running
        self._heartbeat_task: asyncio.Task | None = None
        self._failure_logged: dict[str, float] = {}
        self._closed_event: asyncio.Event | None = None
        self._cycle_failures = 0
        self._last_failure_log = 0.0
        self.closed = False
        self.stats: collections.Counter[str] = collections.Counter()
        self._added_callbacks: list[Callable[[Job], Any]] = []

    # -- public (any thread) -----------------------------------------------------------------
    def submit(self, request: GenerationRequest, *, experiment: str | None = None,
               variant: str | None = None, tags: Iterable[str] = (), dedupe: bool = False,
               reuse_unless: Iterable[str] = (), always_reuse_codes: Iterable[str] = ()
               ) -> Job:
        """Record the run (status QUEUED) and hand it to the poller. Returns at once.

        With ``dedupe=True``, a run already recorded with the same experiment, fingerprint and
        backend (in a status not in ``reuse_unless``, or with an error code in
        ``always_reuse_codes``) is attached instead of created: the
        look-up and the insert are one step in the store, so kernels racing on the same cell
        create it once."""
        self._check_open()
        if not isinstance(request, GenerationRequest):
            raise ValidationError([("request", "expected a GenerationRequest")])
        row = self._row_for(request, experiment, variant, tags)
        if dedupe:
            run_id, created = self.store.insert_run_once(
                reuse_unless=tuple(reuse_unless), always_reuse_codes=tuple(always_reuse_codes),
                **row)
            if not created:
                return self.attach(run_id)
        else:
            run_id = self.store.insert_run(**row)
        job = self._new_job(self.store.get_run(run_id))
        self._register(job)
        return job

    def resume(self) -> JobList:
        """Re-attach to every unfinished run of this backend in the store (within 24 h),
        and fetch again the paid videos whose download failed (or whose file is missing or
        damaged) while their URL is valid."""
        self._check_open()
        out = JobList()
        for row in self._videos_to_fetch_again():
            job = self.jobs.get(row["run_id"]) or self._job_from_row(row)
            if job is None:
                continue
            try:
                if runtime.run(self.download_again(job)):
                    out.append(job)
            except WanError as e:
                log.info("%s", e)
        for row in self.store.unfinished():
            if row.get("backend") != self.backend or row["run_id"] in self.jobs:
                continue
            if not self._claim(row):
                continue  # another live kernel looks after it
            job = self._job_from_row(self.store.get_run(row["run_id"]))
            if job is None:
                continue
            self._register(job)
            out.append(job)
        if out:
            log.info("resumed %d unfinished runs", len(out))
        return out

    def attach(self, run_id: str) -> Job:
        """The job of a recorded run; unfinished runs of this backend are looked after
        again (unless another live kernel owns them)."""
        if run_id in self.jobs:
            return self.jobs[run_id]
        self._check_open()
        row = self.store.get_run(run_id)
        job = self._new_job(row)
        if not job.done and row.get("backend") == self.backend:
            if self._claim(row):
                self._state(job).record = self.store.get_run(run_id)
                self._register(job)
            else:  # another live kernel looks after it: follow the ledger
                self._watched.add(run_id)  # before the poller can see the job
                self._add(job)
                runtime.get_loop().call_soon_threadsafe(self._start_watching)
        else:
            if not job.done:
                self._state(job).unattended = (f"it belongs to backend {row.get('backend')!r}, not "
                                   f"{self.backend!r}; connect to that backend to follow it")
            self._add(job)
        return job

    def _start_watching(self) -> None:
        self._ensure_running()
        self._next_watch = 0.0
        self._wake_up()

    def _check_open(self) -> None:
        if self.closed or self.aio.closed:
            raise WanError("this client is closed: nothing more can be submitted or looked "
                           "after through it; call wan_nb.connect() again (runs recorded "
                           "so far resume there)")

    def _videos_to_fetch_again(self) -> list[dict[str, Any]]:
        """SUCCEEDED runs of this backend with a valid video URL whose download failed, or
        whose file is missing or damaged."""
        soon = _utcnow() + dt.timedelta(minutes=1)
        out = []
        for row in self.store.runs(status="SUCCEEDED"):
            expires = row.get("video_url_expires_at")
            if (row.get("backend") != self.backend or not row.get("video_url")
                    or expires is None or expires <= soon or row["run_id"] in self.jobs
                    and not self.jobs[row["run_id"]].done):
                continue
            if row.get("download_error") or not row.get("video_path"):
                out.append(row)
                continue
            check = getattr(self.store, "check_video", None)
            if check is not None and not check(row).ok:
                out.append(row)
        return out

    def _job_from_row(self, row: dict[str, Any]) -> Job | None:
        """A job for a stored row; a row whose request is no longer valid (a deleted local
        audio file, a model this version dropped) ends REJECTED if nothing was sent, instead
        of stopping the whole resume."""
        try:
            return self._new_job(row)
        except (ValidationError, ValueError, TypeError) as e:
            if row.get("task_id") or row["status"] not in ("QUEUED",):
                log.warning("run %s cannot be resumed: %s", row["run_id"], e)
                return None
            self.store.update_run(row["run_id"], status="REJECTED",
                                  error_code="ValidationError",
                                  error_message=f"the recorded request is no longer valid: {e}")
            return None

    def _owner_gone(self, row: dict[str, Any]) -> bool:
        """From a row already read (no write): is its owner dead, or silent too long?"""
        beat = row.get("owner_heartbeat")
        return (_owner_dead(row.get("owner")) or beat is None
                or (_utcnow() - beat).total_seconds() > self._stale_after)

    def _claim(self, row: dict[str, Any]) -> bool:
        """Take over a run unless another live process looks after it. An owner on this host
        whose process is gone (a killed kernel) is dead at once; elsewhere its heartbeat
        decides."""
        stale = 0.0 if _owner_dead(row.get("owner")) else self._stale_after
        return self.store.claim(row["run_id"], self.owner, stale_after=stale)

    @property
    def _stale_after(self) -> float:
        return self.policy.stale_after

    def close(self, timeout: float = 10.0) -> None:
        """Stop all background work; returns within about ``timeout`` seconds whatever a
        background step is doing (a step that ignores its cancellation is abandoned)."""
        self.closed = True
        if runtime.in_runtime_thread():  # from a job callback: cannot wait on ourselves
            asyncio.get_running_loop().create_task(self.aclose())
            return
        try:
            runtime.run(self.aclose(), timeout=timeout)
        except JobTimeout:
            log.warning("wan_nb: background work did not stop within %.0f s; abandoned",
                        timeout)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop polling, creating and downloading (runs stay recorded; a later connect()
        resumes them). Bounded: steps still running after ``timeout`` s are abandoned."""
        self.closed = True
        if self._closed_event is not None:
            self._closed_event.set()
        tasks = [t for t in (self._task, self._heartbeat_task, *self._inflight)
                 if t is not None and not t.done() and t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=timeout)
            if stuck:
                log.warning("wan_nb: %d background steps did not stop within %.0f s; "
                            "abandoned", len(stuck), timeout)
        self._task = None
        self._queue.clear()
        self._wake_up()

    # -- internals ---------------------------------------------------------------------------
    def _row_for(self, r: GenerationRequest, experiment: str | None, variant: str | None,
                 tags: Iterable[str] | str) -> dict[str, Any]:
        from .request import check_tags  # a string is one tag; checked before any write

        now = _utcnow()
        return {
            "experiment": experiment, "variant": variant, "tags": check_tags(tags),
            "model": r.model, "prompt": r.prompt, "negative_prompt": r.negative_prompt,
            "size": r.size, "width": r.width, "height": r.height, "tier": r.tier,
            "duration": r.duration, "seed": r.seed, "prompt_extend": r.prompt_extend,
            "watermark": r.watermark, "audio_mode": r.audio, "audio_url": r.audio_url,
            "shot_type": r.shot_type, "fingerprint": r.fingerprint,
            "request_json": r.stored_json(),
            "status": "QUEUED", "cost_usd": r.estimated_cost, "backend": self.backend,
            "wan_nb_version": __version__, "owner": self.owner, "owner_heartbeat": now,
        }

    def _register(self, job: Job) -> None:
        self._add(job)
        loop = runtime.get_loop()
        loop.call_soon_threadsafe(self._adopt, job)

    def _adopt(self, job: Job) -> None:
        """Runtime thread: start looking after ``job``."""
        self._ensure_running()
        status = job.status
        if status == "QUEUED":
            self._queue.append(job)
        elif status == "SUBMITTING":
            self._t(job).not_before = time.monotonic()  # resumed mid-create: reconcile first
            self._ambiguous.add(job.run_id)
            self._spawn(self._reconcile(job), job)
        elif status == "SUCCEEDED" and not job.done:
            self._start_download(job, refresh=True)
        elif status in ACTIVE_SERVICE:
            self._t(job).next_poll = 0.0
        self._wake_up()

    def _ensure_running(self) -> None:
        if self.closed:
            return
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
        if self._heartbeat_task is None or self._heartbeat_task.done():
            self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeats())
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._dl_sem = asyncio.Semaphore(self.policy.downloads)
            self._task = asyncio.get_running_loop().create_task(self._main())

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _spawn(self, coro: Any, job: Job | None = None) -> None:
        if self.closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(lambda t: self._spawned_done(t, job))

    def _spawned_done(self, task: asyncio.Task, job: Job | None) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self._log_failure("background step", exc)
            if job is not None and not job.done and not self.closed:
                self._recover(job, exc)
        self._wake_up()

    def _recover(self, job: Job, exc: BaseException) -> None:
        """A step of ``job`` failed unexpectedly (a locked or full ledger, a bug): never
        leave it hanging, and never give up a task that may be paid. A create that may have
        left is reconciled; a created task keeps being polled; a succeeded one is downloaded
        again later; only a run that sent nothing ends (REJECTED), after repeated failures."""
        self._t(job).failures += 1
        delay = min(60.0, 2.0 * 2 ** min(self._t(job).failures, 5))
        try:
            self._reload(job)
        except Exception as e:
            self._log_failure("reading a run", e)
        status, why = job.status, f"{type(exc).__name__}: {exc}"
        try:
            if status == "SUBMITTING":
                if job.run_id not in self._reconciling:
                    self._ambiguous.add(job.run_id)
                    self._t(job).not_before = time.monotonic() + delay
                    self._spawn(self._reconcile(job), job)
            elif status == "QUEUED" and self._t(job).failures < 5:
                self._t(job).not_before = time.monotonic() + delay
                self._queue.append(job)
            elif status == "QUEUED":
                self._finish(job, status="REJECTED", error_code="InternalError",
                             error_message=f"wan_nb could not submit it ({why}); nothing "
                                           "was sent")
            elif status in ACTIVE_SERVICE and job.task_id:
                self._t(job).next_poll = time.monotonic() + delay
            elif status == "SUCCEEDED" and self._t(job).failures < 5:
                self._start_download(job, delay=delay)
            elif status == "SUCCEEDED":
                self._finish(job, download_error=f"wan_nb could not record the video "
                                                 f"({why}); job.retry_download() tries again")
        except Exception as e:
            self._log_failure("recording a failure", e)
        self._wake_up()

    async def _main(self) -> None:
        while not self.closed:
            try:
                now = time.monotonic()
                self._start_submissions(now)
                await self._poll(now)
                if now >= self._next_watch and self._watched:
                    self._next_watch = now + self.policy.watch_interval
                    self._follow_watched()
                delay = self._next_wakeup() - time.monotonic()
                if self._cycle_failures:
                    log.warning("wan_nb poller works again after %d failed cycles",
                                self._cycle_failures)
                    self._cycle_failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # the poller must never die; the next cycle retries
                self._log_cycle_failure()
                delay = 1.0
            await self._sleep_until_woken(delay)

    async def _heartbeats(self) -> None:
        """Tell the ledger this kernel is alive, on a timer of its own: a long poll pass
        (hundreds of queries at 15/s) must not make other kernels think it died."""
        while not self.closed:
            if not self.store.read_only:
                try:
                    await asyncio.to_thread(self.store.heartbeat, self.owner)
                except Exception as e:  # a full disk, a locked ledger: said, not fatal
                    self._log_failure("heartbeat", e)
            await asyncio.sleep(self.policy.heartbeat)

    def _log_failure(self, what: str, exc: BaseException) -> None:
        """A failing background step, said once with its traceback (a store error without:
        it says what to do), then at most once a minute for the same kind."""
        now = time.monotonic()
        key = f"{what}:{type(exc).__name__}"
        last = self._failure_logged.get(key)
        if last is not None and now - last < 60.0:
            return
        self._failure_logged[key] = now
        log.error("wan_nb %s failed%s: %s", what, "" if last is None else " again", exc,
                  exc_info=None if isinstance(exc, StoreError) else exc)

    async def _sleep_until_woken(self, delay: float) -> None:
        """Sleep up to ``delay`` s or until woken. ``asyncio.wait`` never swallows the
        caller's cancellation (``wait_for`` + ``except TimeoutError`` can, on Python <= 3.11,
        which once made close() hang: DESIGN.md §3)."""
        assert self._wake is not None
        self._wake.clear()
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=max(0.005, delay))
        finally:
            waiter.cancel()

    def _log_cycle_failure(self) -> None:
        """A failing cycle (a full disk, a locked ledger) is said once with its traceback,
        then once a minute with a count, not every second."""
        self._cycle_failures += 1
        now = time.monotonic()
        exc = sys.exc_info()[1]
        # a store error already says what happened and what to do: no traceback for it
        trace = not isinstance(exc, StoreError)
        if self._cycle_failures == 1:
            log.error("wan_nb poller cycle failed (retrying every second; said again once a "
                      "minute while it lasts): %s", exc, exc_info=trace)
            self._last_failure_log = now
        elif now - self._last_failure_log >= 60.0:
            log.error("wan_nb poller cycle still failing (%d cycles so far): %s",
                      self._cycle_failures, exc, exc_info=trace)
            self._last_failure_log = now

    def _next_wakeup(self) -> float:
        times = [self._t(j).next_poll for j in self._polled()]
        if self._watched:
            times.append(self._next_watch)
        if self._queue:
            times.append(max(min(self._pacer.next_allowed(j.request.model)
                                 for j in self._queue),
                             min(self._t(j).not_before for j in self._queue)))
        busy = bool(self._inflight) or any(not j.done for j in list(self.jobs.values()))
        return min(times) if times else time.monotonic() + (1.0 if busy else 30.0)

    # -- submission --------------------------------------------------------------------------
    def _polled(self) -> list[Job]:
        """Jobs whose task this kernel polls (created, not finished, not watched)."""
        return [j for j in list(self.jobs.values()) if j.status in ACTIVE_SERVICE and j.task_id
                and j.run_id not in self._watched]

    def _start_submissions(self, now: float) -> None:
        waiting: collections.deque[Job] = collections.deque()
        # at most one unresolved create per (model, prompt): see Store.begin_create
        busy = {create_key(j.request) for j in list(self.jobs.values()) if j.status == "SUBMITTING"}
        busy |= self._starting_keys()
        while self._queue:
            job = self._queue.popleft()
            model = job.request.model
            if job.status != "QUEUED" or job.run_id in self._cancel_requested:
                continue  # cancelled while queued
            if (now < self._t(job).not_before or not self._pacer.ready(model, now)
                    or create_key(job.request) in busy):
                waiting.append(job)
                continue
            self._pacer.started(model, now)
            busy.add(create_key(job.request))
            self._t(job).starting = True
            self._spawn(self._create(job), job)
        self._queue = waiting

    def _starting_keys(self) -> set[tuple[str, str]]:
        return {create_key(j.request) for j in list(self.jobs.values()) if self._t(j).starting}

    async def _create(self, job: Job) -> None:
        gate = self._gates[job.request.model]
        try:
            await gate.create()
        except BaseException:
            self._t(job).starting = False
            raise
        try:
            await self._create_inside_gate(job)
        finally:
            self._t(job).starting = False
            await gate.created()

    async def _create_inside_gate(self, job: Job) -> None:
        sent_at = _utcnow()
        outcome, blocker = self.store.begin_create(job.run_id, sent_at=sent_at)
        if outcome == "gone":  # cancelled or taken over through the ledger meanwhile
            self._settle(job)
            return
        if outcome == "busy":
            # another kernel sharing this ledger has an unresolved create of this prompt:
            # wait for it (and take it over if that kernel is gone)
            self.stats["creates_deferred"] += 1
            self._t(job).not_before = time.monotonic() + 0.5
            self._queue.append(job)
            if blocker is not None and blocker not in self.jobs:
                try:
                    self.attach(blocker)
                except WanError as e:
                    log.info("could not look after %s: %s", blocker, e)
            return
        self._set(job, status="SUBMITTING", sent_at=sent_at)
        self.stats["creates"] += 1
        try:
            state = await self.aio.create_task(job.request, retry_throttled=False)
        except AmbiguousCreateError as e:
            self.stats["ambiguous_creates"] += 1
            self._ambiguous.add(job.run_id)
            if e.sent_at is not None:
                self._update(job, sent_at=e.sent_at)
            self._t(job).not_before = time.monotonic() + self.policy.reconcile_after
            self._spawn(self._reconcile(job), job)
            return
        except ThrottledError as e:
            self.stats["creates_throttled"] += 1
            wait = e.retry_after if e.retry_after is not None else 1.0
            self._pacer.refused(job.request.model, wait)
            self._requeue(job, str(e), delay=wait)
            return
        except TransportError as e:
            self._requeue(job, f"{type(e).__name__}: {e}", delay=2.0)
            return
        except APIError as e:
            if e.retryable:
                self._requeue(job, str(e), delay=2.0)
                return
            self._finish(job, status="REJECTED", error_code=e.code, error_message=e.message,
                         request_id=e.request_id)
            return
        except (WanError, OSError) as e:  # refused here (no key, unreadable audio file...)
            self._finish(job, status="REJECTED", error_code=type(e).__name__,
                         error_message=str(e))
            return
        self._update(job, task_id=state.task_id, request_id=state.request_id,
                     status=state.status if state.status in SERVICE_STATUSES else "PENDING")
        self._t(job).next_poll = time.monotonic() + self._interval(job)
        self._created(job)

    def _settle(self, job: Job) -> None:
        """The ledger changed a run behind this kernel's back (another kernel cancelled or
        took it over): show the change, wake waiters, and follow it if it is not ours."""
        self._reload(job)
        self._notify(job)
        if job.done:
            self._state(job).event().set()
        elif self._state(job).record.get("owner") not in (None, self.owner):
            self._watched.add(job.run_id)
            self._next_watch = 0.0
        elif job.status == "SUBMITTING" and job.run_id not in self._reconciling:
            # ours now, mid-create elsewhere: find its task rather than wait for an answer
            # that will never come here
            self._ambiguous.add(job.run_id)
            self._t(job).not_before = time.monotonic() + self.policy.reconcile_after
            self._spawn(self._reconcile(job), job)
        elif job.status in ACTIVE_SERVICE and job.task_id:
            self._t(job).next_poll = 0.0
        self._wake_up()

    def _created(self, job: Job) -> None:
        """The run's task is known: poll it, or cancel it at once if that was asked."""
        if job.run_id in self._cancel_requested:
            self._spawn(self._cancel_created(job), job)
        self._wake_up()

    def _requeue(self, job: Job, why: str, delay: float) -> None:
        if job.run_id in self._cancel_requested:
            if self.store.transition(job.run_id, expect="SUBMITTING", status="CANCELED",
                                     cost_usd=0.0, error_message="cancelled before the "
                                     "service made a task"):
                self._finish(job)
            return
        log.info("requeueing %s: %s", job.run_id, why)
        if self.store.transition(job.run_id, expect="SUBMITTING", status="QUEUED"):
            self._set(job, status="QUEUED")
            self._t(job).reconcile_tries = 0
            self._t(job).not_before = time.monotonic() + self.schedule.jittered(delay)
            self._queue.append(job)
            self._wake_up()

    async def _reconcile(self, job: Job) -> None:
        """An ambiguous create: find its task in the list endpoint rather than pay twice.
        Keeps trying until it is decided (a failing pass, a locked ledger say, is retried)."""
        if job.run_id in self._reconciling:
            return
        self._reconciling.add(job.run_id)
        try:
            while not self.closed:
                wait = self._t(job).not_before - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                gate = self._gates[job.request.model]
                await gate.reconcile()
                try:
                    done = await self._reconcile_once(job)
                except Exception as e:
                    self._log_failure("reconciling an ambiguous create", e)
                    done = False
                finally:
                    await gate.reconciled()
                if done:
                    return
                self._t(job).not_before = time.monotonic() + self.policy.reconcile_after
        finally:
            self._reconciling.discard(job.run_id)

    async def _reconcile_once(self, job: Job) -> bool:
        sent_at = self._state(job).record.get("sent_at") or _utcnow()
        # targeted reads: task ids this ledger already holds, and other unresolved creates
        # of this model in any kernel sharing the ledger (any of them could own a task that
        # does not show its prompt yet)
        known = self.store.known_task_ids(self.backend, since=sent_at - catalog.TASK_TTL)
        others = self.store.unresolved_creates(self.backend, job.request.model,
                                               exclude=job.run_id)
        siblings = self.store.ambiguous_siblings(job.run_id, window=dt.timedelta(minutes=3))
        try:
            found = await self.aio.find_created_task(job.request, sent_at, exclude=known,
                                                     others_pending=others,
                                                     siblings_pending=siblings,
                                                     throttle=self._throttle_queries)
        except AmbiguousCreateError as e:  # candidates exist but cannot be told apart yet
            log.info("reconcile of %s undecided: %s", job.run_id, e)
            age = (_utcnow() - sent_at).total_seconds()
            if age > self.policy.reconcile_give_up:
                self._ambiguous.discard(job.run_id)
                self._finish(job, status="FAILED", error_code="AmbiguousCreate",
                             error_message=f"after {age / 60:.0f} minutes wan_nb still "
                             f"could not tell which listed task this run's create made ({e}); "
                             "nothing was sent again, so nothing was paid twice")
                return True
            return False
        except (APIError, TransportError) as e:
            log.info("reconcile of %s failed, will retry: %s", job.run_id, e)
            return False
        self.stats["reconciles"] += 1
        if found is not None:
            try:
                # PENDING until the next poll reads the task's real state (and, if it has
                # already ended, its result and video URL)
                self._update(job, task_id=found.task_id, status="PENDING")
            except ValidationError:  # recorded meanwhile by another kernel sharing the store
                return False
            self.stats["reconciled_found"] += 1
            self._ambiguous.discard(job.run_id)
            self._t(job).next_poll = 0.0
            self._created(job)
            return True
        self._t(job).reconcile_tries += 1
        age = (_utcnow() - sent_at).total_seconds()
        if self._t(job).reconcile_tries >= 2 and age > 2 * self.policy.reconcile_after:
            # two list checks, the last well after the create's answer was due, found no
            # task: none was made, so sending it again cannot pay twice
            self.stats["reconciled_absent"] += 1
            self._ambiguous.discard(job.run_id)
            self._requeue(job, "ambiguous create made no task", delay=0.0)
            return True
        return False

    # -- polling -----------------------------------------------------------------------------
    async def _poll(self, now: float) -> None:
        active = self._polled()
        due = [j for j in active if self._t(j).next_poll <= now]
        if not due:
            return
        if len(active) >= self.policy.list_threshold:
            summaries = await self._list_states(active)
        else:
            summaries = {}
        for job in (active if summaries else due):
            summary = summaries.get(job.task_id or "")
            if summary is not None and summary.status not in FINAL_SERVICE_STATUSES:
                # learned from the list: no detail request needed until the task ends
                self._apply_summary(job, summary)
                continue
            if summary is None and self._t(job).next_poll > now:
                continue
            await self._throttle_queries()
            try:
                state = await self.aio.get_task(self._task_of(job))
            except (APIError, TransportError) as e:
                log.info("query of %s failed: %s", job.task_id, e)
                self._t(job).next_poll = time.monotonic() + self.policy.floor * 4
                continue
            self.stats["queries"] += 1
            self._apply(job, state)

    async def _list_states(self, active: list[Job]) -> dict[str, TaskSummary]:
        oldest = min(self._sent(j) for j in active)
        start = oldest - dt.timedelta(seconds=60)
        end = min(start + catalog.TASK_TTL, _utcnow() + dt.timedelta(seconds=60))
        out: dict[str, TaskSummary] = {}
        wanted = {j.task_id for j in active}
        try:
            for page_no in range(1, self.policy.max_list_pages + 1):
                await self._throttle_queries()
                page = await self.aio.list_tasks(start_time=start, end_time=end,
                                                 page_no=page_no, page_size=100)
                self.stats["lists"] += 1
                out.update((t.task_id, t) for t in page.tasks if t.task_id in wanted)
                if page_no >= page.total_page or wanted <= set(out):
                    break
        except (APIError, TransportError) as e:
            log.info("list failed, falling back to queries: %s", e)
        return out

    async def _throttle_queries(self) -> None:
        """Stay under the account's query rate (a sliding one-second window)."""
        await self._limiter.acquire()

    def _apply_summary(self, job: Job, s: TaskSummary) -> None:
        """A state from the list endpoint (not final): record a change, schedule a poll."""
        if job.done or job.status not in ACTIVE_SERVICE:
            return  # an answer older than a cancel or a final state
        if s.status != job.status and s.status in ACTIVE_SERVICE:
            fields: dict[str, Any] = {"status": s.status}
            if s.status == "RUNNING" and s.started is not None:
                fields["scheduled_time"] = s.started
            self._update(job, **fields)
        self._t(job).next_poll = time.monotonic() + self._interval(job)

    def _apply(self, job: Job, state: TaskState) -> None:
        if job.done:
            return  # an answer older than a final state
        status = state.status
        if status == "UNKNOWN" and not state.raw.get("output", {}).get("task_status"):
            status = "no status"  # a malformed answer is not the service forgetting the task
        if status == "UNKNOWN":
            self._t(job).unknown += 1
            age = _utcnow() - self._sent(job)
            if self._t(job).unknown < 3 and age < catalog.TASK_TTL:
                # one UNKNOWN right after a create can be replica lag: ask again
                self._t(job).next_poll = time.monotonic() + max(self.policy.floor, 2.0)
                return
        if status not in SERVICE_STATUSES:
            self._t(job).unrecognized += 1
            if self._t(job).unrecognized >= self.policy.max_unrecognized:
                self._finish(job, status="UNKNOWN", error_code="UnrecognizedStatus",
                             error_message=f"the service kept answering status {status!r}, "
                                           "which this wan_nb version does not know")
            else:
                self._t(job).next_poll = time.monotonic() + self._interval(job)
            return
        self._t(job).unrecognized = 0
        fields: dict[str, Any] = {"status": status}
        for name in ("submit_time", "scheduled_time", "end_time", "actual_prompt"):
            value = getattr(state, name)
            if value is not None:
                fields[name] = value
        sent_at = self._state(job).record.get("sent_at")
        if state.submit_time is not None and sent_at is not None:
            self._state(job).skew = (state.submit_time - sent_at).total_seconds()
        if state.code or state.message:
            fields.update(error_code=state.code, error_message=state.message)
        if state.usage is not None:
            fields.update(state.usage.columns(), usage_json=dict(state.usage.raw))
            seconds, size = state.usage.seconds, job.request.size or ""
            price = catalog.price_per_second(job.request.model, size)
            if seconds is not None and price is not None:
                fields["cost_usd"] = round(price * seconds, 6)
        if state.video_url:
            fields.update(video_url=state.video_url,
                          video_url_expires_at=state.video_expires_at)
        if status == "UNKNOWN":
            fields.update(error_code="UNKNOWN", error_message=(
                f"the service no longer knows task {job.task_id}: task ids and results expire "
                "24 hours after creation"))
        if status in ("FAILED", "CANCELED", "UNKNOWN"):
            if status == "FAILED":
                fields["cost_usd"] = 0.0  # failed tasks are not billed
            self._finish(job, **fields)
            return
        if status == "SUCCEEDED":
            self._update(job, **fields)
            self.durations.learn(self.backend, job.request.model, job.request.size or "",
                                 int(job.request.duration or 0),
                                 self._state(job).record.get("run_s"))
            self._start_download(job)
            return
        self._update(job, **fields)
        self._t(job).next_poll = time.monotonic() + self._interval(job)

    def _interval(self, job: Job) -> float:
        r = job.request
        started = job.local_time("scheduled_time")
        return self.schedule.interval(
            r.model, r.size or "", int(r.duration or 0),
            age=(_utcnow() - self._sent(job)).total_seconds(),
            started_ago=None if started is None else time.time() - started)

    # -- download ----------------------------------------------------------------------------
    def _start_download(self, job: Job, *, delay: float = 0.0, refresh: bool = False) -> None:
        """Runtime thread: download ``job``'s video (after ``delay`` s; first asking the
        service for a fresh URL when ``refresh``). Counted per run, so a retry never starts a
        second download into the same file."""
        self._downloads[job.run_id] += 1
        self._spawn(self._download_chain(job, delay, refresh), job)

    async def _download_chain(self, job: Job, delay: float, refresh: bool) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if refresh:
                await self._throttle_queries()
                try:
                    state = await self.aio.get_task(self._task_of(job))
                except (APIError, TransportError):
                    state = None
                if state is not None and state.status == "SUCCEEDED" and state.video_url:
                    self._update(job, video_url=state.video_url,
                                 video_url_expires_at=state.video_expires_at)
            await self._download(job)
        finally:
            self._downloads[job.run_id] -= 1
            if self._downloads[job.run_id] <= 0:
                del self._downloads[job.run_id]

    async def _download(self, job: Job) -> None:
        assert self._dl_sem is not None
        async with self._dl_sem:
            url = self._state(job).record.get("video_url")
            path = self.store.new_video_path(job.run_id)
            if not url:
                self._finish(job, download_error="the service reported success without a "
                                                 "video_url")
                return
            try:
                result = await self.aio.download(url, path)
                info = await asyncio.to_thread(_probe, str(path))
            except TaskExpired as e:
                self._finish(job, status="EXPIRED", download_error=str(e),
                             error_code="ResultExpired",
                             error_message="the video was not downloaded within the service's "
                                           "24 hours and is gone")
                return
            except (DownloadError, TransportError, ValueError, OSError) as e:
                path.unlink(missing_ok=True)
                self._t(job).download_tries += 1
                expires = self._state(job).record.get("video_url_expires_at")
                valid = expires is None or expires > _utcnow() + dt.timedelta(minutes=1)
                if (isinstance(e, TransportError) or isinstance(e, DownloadError) and e.retryable) \
                        and valid \
                        and self._t(job).download_tries < self.policy.download_rounds:
                    # the paid video is still there: try again later, with backoff
                    delay = min(300.0, 5.0 * 2 ** (self._t(job).download_tries - 1))
                    log.info("download of %s failed (%s); again in %.0f s", job.run_id, e,
                             delay)
                    self._start_download(job, delay=delay, refresh=True)
                    return
                self._finish(job, download_error=f"{type(e).__name__}: {e}")
                return
            self.stats["downloads"] += 1
            problems = _check_video(job.request, info)
            self._finish(job, video_path=str(result.path), video_sha256=result.sha256,
                         video_bytes=result.bytes, video_fps=info.fps,
                         video_frames=info.frames, video_duration=info.duration,
                         has_audio=info.has_audio,
                         download_error=("; ".join(problems) if problems else None))

    # -- cancel ------------------------------------------------------------------------------
    async def cancel_jobs(self, jobs: Iterable[Job], *, settle: float = 10.0) -> list[Job]:
        """Cancel ``jobs``: nothing more is created for them, and every created task that
        can still be cancelled (PENDING) is, with cancels paced under the account's query
        rate. A job whose create is on its way is cancelled as soon as its task is known
        (waiting up to ``settle`` s here for that). Returns the jobs now CANCELED."""
        jobs = [j for j in jobs if not j.done]
        for job in jobs:
            self._cancel_requested.add(job.run_id)
            if job.status == "QUEUED":
                if self.store.transition(job.run_id, expect="QUEUED", status="CANCELED",
                                         cost_usd=0.0,
                                         error_message="cancelled before it was submitted"):
                    self._reload(job)
                    self._finish(job)
                else:
                    self._reload(job)
        deadline = time.monotonic() + settle
        while (any(j.status == "SUBMITTING" or self._t(j).starting for j in jobs)
               and time.monotonic() < deadline and not self.closed):
            await asyncio.sleep(0.05)
        for job in jobs:
            if job.status == "PENDING" and job.task_id and not job.done:
                await self._cancel_created(job)
        return [j for j in jobs if j.status == "CANCELED"]

    async def _cancel_created(self, job: Job) -> None:
        """Cancel the task of a PENDING job (one request, within the query rate)."""
        if job.done or job.status != "PENDING" or not job.task_id or self._t(job).cancelling:
            return
        self._t(job).cancelling = True
        try:
            await self._cancel_task(job)
        finally:
            self._t(job).cancelling = False

    async def _cancel_task(self, job: Job) -> None:
        await self._throttle_queries()
        try:
            await self.aio.cancel_task(self._task_of(job))
        except UnsupportedOperationError:
            self._t(job).next_poll = 0.0  # it started meanwhile: the next poll records it
            self._wake_up()
            return
        except (APIError, TransportError) as e:
            log.info("cancel of %s failed: %s", job.task_id, e)
            self._t(job).next_poll = 0.0
            self._wake_up()
            return
        self.stats["cancels"] += 1
        if not job.done:
            # the service only cancels PENDING tasks, and cancelled tasks are not billed
            self._finish(job, status="CANCELED", cost_usd=0.0)

    async def _cancel(self, job: Job) -> None:
        self._check_open()
        if job.status in ("RUNNING", "SUCCEEDED") or job.done:
            raise UnsupportedOperationError(
                400, "UnsupportedOperation", f"job {job.run_id} is {job.status}; only QUEUED "
                "or PENDING jobs can be cancelled (the service does not stop running tasks)")
        await self.cancel_jobs([job])
        if job.status == "SUBMITTING":
            raise UnsupportedOperationError(
                400, "UnsupportedOperation", f"job {job.run_id} is still being submitted; "
                "its task will be cancelled as soon as the service says which it is")
        if job.status != "CANCELED":
            raise UnsupportedOperationError(
                400, "UnsupportedOperation", f"job {job.run_id} is {job.status}; only QUEUED "
                "or PENDING jobs can be cancelled (the service does not stop running tasks)")

    # -- watched runs (owned by another live kernel) ------------------------------------------
    def _follow_watched(self) -> None:
        """Runtime thread: follow runs another kernel looks after through the ledger, and
        take one over when its owner is gone."""
        rows = {r["run_id"]: r for r in self.store.runs(run_ids=list(self._watched))}
        for run_id in list(self._watched):
            job, row = self.jobs.get(run_id), rows.get(run_id)
            if job is None or row is None:
                self._watched.discard(run_id)
                continue
            if row != self._state(job).record:
                self._state(job).record = row
                self._notify(job)
            if job.done:
                self._watched.discard(run_id)
                self._state(job).event().set()
            elif self._owner_gone(row) and self._claim(row):
                self._watched.discard(run_id)
                self.stats["taken_over"] += 1
                log.info("took over %s from %s", run_id, row.get("owner"))
                self._reload(job)
                self._adopt(job)

    # -- downloading again ---------------------------------------------------------------------
    async def download_again(self, job: Job) -> bool:
        """Fetch a SUCCEEDED job's video again (after a failed download, or a file deleted or
        damaged since) while its URL is valid. Returns False when there is nothing to do."""
        self._check_open()
        self._reload(job)
        if job.status != "SUCCEEDED":
            raise WanError(f"job {job.run_id} is {job.status}: only a SUCCEEDED run has a "
                           "video to download")
        if not self._state(job).record.get("video_url"):
            raise WanError(f"job {job.run_id}: the service reported no video URL")
        rec = self._state(job).record
        if rec.get("video_path") and not rec.get("download_error") and self._video_intact(job):
            return False
        expires = self._state(job).record.get("video_url_expires_at")
        if expires is not None and expires <= _utcnow():
            raise TaskExpired(f"job {job.run_id}: its video URL expired at "
                              f"{expires.isoformat()} (the service keeps results for 24 hours); "
                              "the video cannot be fetched again")
        if self._downloads.get(job.run_id):
            return True  # already on its way
        if not self._claim(self._state(job).record):
            raise WanError(f"job {job.run_id} is looked after by another live kernel "
                           f"({self._state(job).record.get('owner')}); download it there")
        self._watched.discard(job.run_id)
        self._add(job)
        self._update(job, download_error=None, video_path=None, video_sha256=None,
                     video_bytes=None)
        state = self._state(job)
        if state.done_event is not None and state.done_event.is_set():
            state.done_event = None  # not done any more: new waiters wait for this download
        self._t(job).download_tries = 0
        self._t(job).failures = 0
        self._ensure_running()
        self._start_download(job, refresh=True)
        return True

    def _video_intact(self, job: Job) -> bool:
        check = getattr(self.store, "check_video", None)
        if check is not None:
            return bool(check(self._state(job).record).ok)
        rec = self._state(job).record
        path = self.store.video_file(rec)
        return path is not None and path.exists() and \
            path.stat().st_size == (rec.get("video_bytes") or path.stat().st_size)

    # -- who is told -------------------------------------------------------------------------
    def on_job_added(self, callback: Callable[[Job], Any]) -> None:
        """Call ``callback(job)`` on the toolkit's thread for every job added from now on."""
        self._added_callbacks.append(callback)

    def off_job_added(self, callback: Callable[[Job], Any]) -> None:
        if callback in self._added_callbacks:
            self._added_callbacks.remove(callback)

    def _add(self, job: Job) -> None:
        """Any thread: ``job`` is one of this manager's now; say so on the toolkit's thread."""
        new = job.run_id not in self.jobs
        self.jobs[job.run_id] = job
        if new and self._added_callbacks:
            runtime.get_loop().call_soon_threadsafe(self._announce, job)

    def _announce(self, job: Job) -> None:
        for cb in list(self._added_callbacks):
            try:
                cb(job)
            except Exception:
                log.exception("job-added callback failed")

    # -- state changes (runtime thread) ------------------------------------------------------
    def _new_job(self, row: dict[str, Any]) -> Job:
        """The job of a run: a view of the run's state, which this manager owns."""
        state = self._states.get(row["run_id"])
        if state is None:
            state = RunState(row)
        else:
            state.record = dict(row)
        job = Job(self, state)
        self._states[job.run_id] = state
        return job

    def _state(self, job: Job) -> RunState:
        state = self._states.get(job.run_id)
        if state is None:  # a job made elsewhere (Job(manager, row)): adopt its state
            state = self._states[job.run_id] = job._state
        return state

    def _sent(self, job: Job) -> dt.datetime:
        """When the run's create left (when it was recorded, before that)."""
        rec = self._state(job).record
        return rec.get("sent_at") or rec["created_at"]

    @staticmethod
    def _task_of(job: Job) -> str:
        task_id = job.task_id
        if not task_id:
            raise WanError(f"job {job.run_id} has no task yet")
        return task_id

    def _t(self, job: Job) -> Track:
        track = self._tracks.get(job.run_id)
        if track is None:
            track = self._tracks[job.run_id] = Track()
        return track

    def _reload(self, job: Job) -> None:
        self._state(job).record = self.store.get_run(job.run_id)

    def _set(self, job: Job, **fields: Any) -> None:
        self._state(job).record = {**self._state(job).record, **fields}

    def _update(self, job: Job, **fields: Any) -> None:
        self.store.update_run(job.run_id, **fields)
        self._reload(job)
        self._notify(job)

    def _finish(self, job: Job, **fields: Any) -> None:
        self._update(job, **fields)
        if job.done:
            self.store.release(job.run_id, self.owner)  # nothing left to look after
            self._state(job).event().set()

    def _notify(self, job: Job) -> None:
        for cb in list(self._state(job).callbacks):
            try:
                cb(job)
            except Exception:
                log.exception("job callback failed")


def _owner_dead(owner: str | None) -> bool:
    """True when ``owner`` (``host:pid:tag``) is a process of this host that no longer runs."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _probe(path: str) -> Any:
    from .media import probe

    return probe(path)


def _check_video(request: GenerationRequest, info: Any) -> list[str]:
    """What in the downloaded video differs from what was asked (empty when all is well)."""
    problems = []
    if (info.width, info.height) != (request.width, request.height):
        problems.append(f"video is {info.width}*{info.height}, asked {request.size}")
    if request.duration and abs(info.duration - request.duration) > 0.5:
        problems.append(f"video lasts {info.duration:.2f} s, asked {request.duration} s")
    return problems

