"""The runs a job manager knows, and how their state changes (runtime thread).

:class:`RunBook` holds each run's :class:`~wan_nb.jobs.RunState` (what its Job shows) and
:class:`Track` (the manager's bookkeeping), records new runs, and carries out the decisions
of :mod:`wan_nb.transitions`: every write to the ledger about a run goes through
:meth:`RunBook.update` / :meth:`RunBook.finish` here. :class:`~wan_nb.poller.JobManager`
adds the loop and the public API on top.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from . import transitions
from ._version import __version__
from .errors import ValidationError, WanError
from .jobs import Job, RunState, _utcnow
from .request import GenerationRequest, check_tags
from .schedule import Durations, PollPolicy, Schedule
from .store_table import StoreError

if TYPE_CHECKING:
    from .creating import Creator
    from .downloading import Downloader
    from .ledger import Ledger
    from .ownership import Ownership
    from .poller import JobManager

log = logging.getLogger("wan_nb.jobs")


@dataclass
class Track:
    """The manager's bookkeeping for one run (runtime thread only)."""

    counters: transitions.Counters = field(default_factory=transitions.Counters)
    next_poll: float = 0.0  # monotonic time of the next query
    not_before: float = 0.0  # no create (or reconcile pass) before this monotonic time
    starting: bool = False  # a create was started, before the record says SUBMITTING
    cancelling: bool = False  # a cancel request is on its way
    cancel_refused: bool = False  # the service refused a cancel: the task had started


class RunBook:
    """The runs of one ledger and backend as this kernel knows them."""

    creator: Creator
    downloader: Downloader
    ownership: Ownership

    def __init__(self, store: Ledger, backend: str, owner: str, policy: PollPolicy,
                 schedule: Schedule, durations: Durations) -> None:
        self.store = store
        self.backend = backend
        self.owner = owner
        self.policy = policy
        self.schedule = schedule
        self.durations = durations
        self.jobs: dict[str, Job] = {}
        self.states: dict[str, RunState] = {}  # what each job shows (a Job is a view of it)
        self.tracks: dict[str, Track] = {}
        self.stats: collections.Counter[str] = collections.Counter()
        self._failure_logged: dict[str, float] = {}

    # -- recording ---------------------------------------------------------------------------
    def _row_for(self, r: GenerationRequest, experiment: str | None, variant: str | None,
                 tags: Iterable[str] | str) -> dict[str, Any]:
        now = _utcnow()
        return {
            "experiment": experiment, "variant": variant, "tags": check_tags(tags),
            "model": r.model, "prompt": r.prompt, "negative_prompt": r.negative_prompt,
            "size": r.size, "width": r.width, "height": r.height, "tier": r.tier,
            "resolution": r.resolution, "ratio": r.ratio,
            "duration": r.duration, "seed": r.seed, "prompt_extend": r.prompt_extend,
            "watermark": r.watermark, "audio_mode": r.audio, "audio_url": r.audio_url,
            "shot_type": r.shot_type, "fingerprint": r.fingerprint,
            "request_json": r.stored_json(),
            "status": "QUEUED", "cost_usd": r.estimated_cost, "backend": self.backend,
            "wan_nb_version": __version__, "owner": self.owner, "owner_heartbeat": now,
        }

    def _job_from_row(self, row: dict[str, Any]) -> Job | None:
        """A job for a stored row; a row whose request is no longer valid (a model this
        version dropped) ends REJECTED if nothing was sent, instead of stopping a resume."""
        try:
            return self.new_job(row)
        except (ValidationError, ValueError, TypeError) as e:
            if row.get("task_id") or row["status"] not in ("QUEUED",):
                log.warning("run %s cannot be resumed: %s", row["run_id"], e)
                return None
            self.store.update_run(row["run_id"], status="REJECTED",
                                  error_code="ValidationError",
                                  error_message=f"the recorded request is no longer valid: {e}")
            return None

    def log_failure(self, what: str, exc: BaseException) -> None:
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

    # -- carrying out decisions (runtime thread) ---------------------------------------------
    def carry_out(self, job: Job, d: transitions.Decision, *,
                  reconciling: bool = False) -> None:
        """Do what a :class:`transitions.Decision` says, in its order: write, bookkeeping,
        next steps (``reconciling``: called from the reconcile loop, which goes on itself)."""
        if d.final:
            self.finish(job, **d.write)
        elif d.write:
            self.update(job, **d.write)
        track = self.track(job)
        track.counters = d.counters
        if d.skew is not None:
            self.state(job).skew = d.skew
        now = time.monotonic()
        if d.poll_in is not None:
            track.next_poll = now + d.poll_in
        elif d.poll_on_schedule:
            track.next_poll = now + self._interval(job)
        if d.learn:
            r = job.request
            self.durations.learn(self.backend, r.model, r.size or "", int(r.duration or 0),
                                 self.state(job).record.get("run_s"))
        if d.download:
            self.downloader.start(job, delay=d.download_in, refresh=d.refresh_url)
        if d.requeue_in is not None:
            self.creator.requeue(job, d.reason, d.requeue_in)
        if d.queue_in is not None:
            self.creator.enqueue(job, d.queue_in or None)
        if d.reconcile_in is not None:
            if reconciling:
                track.not_before = now + d.reconcile_in
            else:
                self.creator.reconcile_later(job, d.reconcile_in)
        if d.watch:
            self.ownership.watch(job.run_id)

    def _interval(self, job: Job) -> float:
        r = job.request
        started = job.local_time("scheduled_time")
        return self.schedule.interval(
            r.model, r.size or "", int(r.duration or 0),
            age=(_utcnow() - self.sent(job)).total_seconds(),
            started_ago=None if started is None else time.time() - started)

    def new_job(self, row: dict[str, Any]) -> Job:
        """The job of a run: a view of the run's state, which this manager owns."""
        state = self.states.get(row["run_id"])
        if state is None:
            state = RunState(row)
        else:
            state.record = dict(row)
        job = Job(cast("JobManager", self), state)  # a RunBook is always a JobManager's
        self.states[job.run_id] = state
        return job

    def state(self, job: Job) -> RunState:
        state = self.states.get(job.run_id)
        if state is None:  # a job made elsewhere (Job(manager, row)): adopt its state
            state = self.states[job.run_id] = job._state
        return state

    def track(self, job: Job) -> Track:
        track = self.tracks.get(job.run_id)
        if track is None:
            track = self.tracks[job.run_id] = Track()
        return track

    def sent(self, job: Job) -> dt.datetime:
        """When the run's create left (when it was recorded, before that)."""
        rec = self.state(job).record
        return rec.get("sent_at") or rec["created_at"]

    @staticmethod
    def task_of(job: Job) -> str:
        task_id = job.task_id
        if not task_id:
            raise WanError(f"job {job.run_id} has no task yet")
        return task_id

    def reload(self, job: Job) -> None:
        self.state(job).record = self.store.get_run(job.run_id)

    def set(self, job: Job, **fields: Any) -> None:
        """Change what this kernel shows of a run, without writing (the store already did)."""
        state = self.state(job)
        state.record = {**state.record, **fields}

    def update(self, job: Job, **fields: Any) -> None:
        self.store.update_run(job.run_id, **fields)
        self.reload(job)
        self.notify(job)

    def finish(self, job: Job, **fields: Any) -> None:
        self.update(job, **fields)
        if job.done:
            self.store.release(job.run_id, self.owner)  # nothing left to look after
            self.state(job).event().set()

    def notify(self, job: Job) -> None:
        for cb in list(self.state(job).callbacks):
            try:
                cb(job)
            except Exception:
                log.exception("job callback failed")
