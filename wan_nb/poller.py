"""The job manager: one per (store, backend) in a process; it records runs and looks after
them on the toolkit's loop thread (:mod:`wan_nb.runtime`), so they go on while cells run.

This module is the wiring. The parts, each with one job:

- :mod:`wan_nb.creating`: the create queue, pacing, creates and reconciliation;
- :mod:`wan_nb.polling`: queries, lists and cancels of created tasks;
- :mod:`wan_nb.downloading`: videos into the store, verified, with retry rounds;
- :mod:`wan_nb.ownership`: heartbeats, claims, other kernels' runs followed and taken over;
- :mod:`wan_nb.transitions`: what every answer or failure means (pure), carried out here by
  :meth:`JobManager.carry_out`; :mod:`wan_nb.schedule`: when to ask and how fast.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from . import runtime, transitions
from .account import SharedQueryLimiter
from .creating import Creator
from .downloading import Downloader
from .errors import JobTimeout, ValidationError, WanError
from .jobs import Job, JobList
from .ownership import Ownership, new_owner, owner_dead
from .polling import Polling
from .request import GenerationRequest
from .runbook import RunBook, Track
from .schedule import Durations, PollPolicy, QueryLimiter, Schedule
from .store_table import StoreError

if TYPE_CHECKING:
    from .backend import Backend
    from .ledger import Ledger
    from .video_objects import ObjectVideos

log = logging.getLogger("wan_nb.jobs")

__all__ = ["JobManager", "RunBook", "Track", "owner_dead"]


class JobManager(RunBook):
    """Records runs and looks after them: creates, polls, downloads, resumes. Its public
    methods may be called from any thread; every state change happens on the toolkit's."""

    def __init__(self, aio: Backend, store: Ledger, *, policy: PollPolicy | None = None,
                 owner: str | None = None, rng: random.Random | None = None):
        policy = policy or PollPolicy()
        durations = Durations()
        durations.learn_from_store(store.runs(status="SUCCEEDED"))
        super().__init__(store, aio.backend, owner or new_owner(), policy,
                         Schedule(policy, durations, aio.backend, rng or random.Random()),
                         durations)
        self.aio = aio
        self.limiter: QueryLimiter | SharedQueryLimiter = (
            SharedQueryLimiter(store, aio.backend, policy.query_rate) if policy.share_account
            else QueryLimiter(policy.query_rate))
        #: where videos go after their download (object storage), None: the store's folder
        self.videos: ObjectVideos | None = None
        self.cancel_requested: set[str] = set()  # nothing more is created for these
        self.closed = False
        self.closed_event: asyncio.Event | None = None
        self.creator = Creator(self)
        self.polling = Polling(self)
        self.downloader = Downloader(self)
        self.ownership = Ownership(self)
        self._added: list[Callable[[Job], Any]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._cycle_failures = 0
        self._last_failure_log = 0.0

    # -- public (any thread) -----------------------------------------------------------------
    def submit(self, request: GenerationRequest, *, experiment: str | None = None,
               variant: str | None = None, tags: Iterable[str] = (), dedupe: bool = False,
               reuse_unless: Iterable[str] = (), always_reuse_codes: Iterable[str] = ()
               ) -> Job:
        """Record the run (QUEUED) and look after it; returns at once. With ``dedupe`` a run
        of the same experiment and fingerprint already recorded (not in ``reuse_unless``,
        or with an error code in ``always_reuse_codes``) is attached instead: look-up and
        insert are one step in the store, so kernels racing on one cell create it once."""
        self.check_open()
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
        job = self.new_job(self.store.get_run(run_id))
        self._register(job)
        return job

    def resume(self) -> JobList:
        """Re-attach to every unfinished run of this backend in the store (within 24 h),
        and fetch again the paid videos whose download failed (or whose file is missing or
        damaged) while their URL is valid."""
        self.check_open()
        out = JobList()
        for row in self.downloader.to_fetch_again():
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
            if not self.ownership.claim(row):
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
        again (unless another live kernel owns them: then followed through the ledger)."""
        if run_id in self.jobs:
            return self.jobs[run_id]
        self.check_open()
        row = self.store.get_run(run_id)
        job = self.new_job(row)
        if not job.done and row.get("backend") == self.backend:
            if self.ownership.claim(row):
                self.state(job).record = self.store.get_run(run_id)
                self._register(job)
            else:
                self.ownership.watched.add(run_id)  # before the poller can see the job
                self.add(job)
                runtime.get_loop().call_soon_threadsafe(self._start_watching)
        else:
            if not job.done:
                self.state(job).unattended = (
                    f"it belongs to backend {row.get('backend')!r}, not {self.backend!r}; "
                    "connect to that backend to follow it")
            self.add(job)
        return job

    async def cancel_jobs(self, jobs: Iterable[Job], *, settle: float = 10.0) -> list[Job]:
        return await self.polling.cancel_jobs(jobs, settle=settle)

    async def cancel(self, job: Job) -> None:
        await self.polling.cancel(job)

    async def download_again(self, job: Job) -> bool:
        return await self.downloader.again(job)

    def on_job_added(self, callback: Callable[[Job], Any]) -> None:
        """Call ``callback(job)`` on the toolkit's thread for every job added from now on."""
        self._added.append(callback)

    def off_job_added(self, callback: Callable[[Job], Any]) -> None:
        if callback in self._added:
            self._added.remove(callback)

    def check_open(self) -> None:
        if self.closed or self.aio.closed:
            raise WanError("this client is closed: nothing more can be submitted or looked "
                           "after through it; call wan_nb.connect() again (runs recorded "
                           "so far resume there)")

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
        if self.closed_event is not None:
            self.closed_event.set()
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
        self.creator.queue.clear()
        self.wake_up()

    # -- recording ---------------------------------------------------------------------------
    def _register(self, job: Job) -> None:
        self.add(job)
        runtime.get_loop().call_soon_threadsafe(self.adopt, job)

    def add(self, job: Job) -> None:
        """Any thread: ``job`` is one of this manager's now; say so on the toolkit's thread."""
        new = job.run_id not in self.jobs
        self.jobs[job.run_id] = job
        if new and self._added:
            runtime.get_loop().call_soon_threadsafe(self._announce, job)

    def _announce(self, job: Job) -> None:
        for cb in list(self._added):
            try:
                cb(job)
            except Exception:
                log.exception("job-added callback failed")

    def adopt(self, job: Job) -> None:
        """Runtime thread: start looking after ``job``."""
        self.ensure_running()
        self.carry_out(job, transitions.on_adopt(self.state(job).record,
                                                 self.track(job).counters))
        self.wake_up()

    def _start_watching(self) -> None:
        self.ensure_running()
        self.ownership.next_watch = 0.0
        self.wake_up()

    # -- the loop ----------------------------------------------------------------------------
    def ensure_running(self) -> None:
        if self.closed:
            return
        if self.closed_event is None:
            self.closed_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self._heartbeat_task is None or self._heartbeat_task.done():
            self._heartbeat_task = loop.create_task(self.ownership.heartbeats())
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._main())

    def wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def spawn(self, coro: Coroutine[Any, Any, Any], job: Job | None = None) -> None:
        if self.closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(lambda t: self._spawned_done(t, job))

    def _spawned_done(self, task: asyncio.Task[Any], job: Job | None) -> None:
        self._inflight.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self.log_failure("background step", exc)
            if job is not None and not job.done and not self.closed:
                self._recover(job, exc)
        self.wake_up()

    def _recover(self, job: Job, exc: BaseException) -> None:
        """A step of ``job`` failed unexpectedly (a locked or full ledger, a bug): never
        leave it hanging, never give up a task that may be paid (transitions.on_recover)."""
        try:
            self.reload(job)
        except Exception as e:
            self.log_failure("reading a run", e)
        try:
            self.carry_out(job, transitions.on_recover(
                self.state(job).record, exc, self.track(job).counters,
                reconciling=self.creator.reconciling(job)))
        except Exception as e:
            self.log_failure("recording a failure", e)
        self.wake_up()

    async def _main(self) -> None:
        while not self.closed:
            try:
                now = time.monotonic()
                self.creator.start_submissions(now)
                await self.polling.poll(now)
                own = self.ownership
                if now >= own.next_watch and own.watched:
                    own.next_watch = now + self.policy.watch_interval
                    await own.follow()
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

    def _next_wakeup(self) -> float:
        times = [self.track(j).next_poll for j in self.polling.polled()]
        if self.ownership.watched:
            times.append(self.ownership.next_watch)
        create = self.creator.next_allowed()
        if create is not None:
            times.append(create)
        busy = bool(self._inflight) or any(not j.done for j in list(self.jobs.values()))
        return min(times) if times else time.monotonic() + (1.0 if busy else 30.0)

    def _log_cycle_failure(self) -> None:
        """A failing cycle is said once with its traceback, then once a minute with a
        count, not every second."""
        self._cycle_failures += 1
        now = time.monotonic()
        exc = sys.exc_info()[1]
        trace = not isinstance(exc, StoreError)  # a store error says what to do
        if self._cycle_failures == 1:
            log.error("wan_nb poller cycle failed (retrying every second; said again once a "
                      "minute while it lasts): %s", exc, exc_info=trace)
            self._last_failure_log = now
        elif now - self._last_failure_log >= 60.0:
            log.error("wan_nb poller cycle still failing (%d cycles so far): %s",
                      self._cycle_failures, exc, exc_info=trace)
            self._last_failure_log = now
