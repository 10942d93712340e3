"""Creating tasks: the queue of QUEUED runs, paced by each model's submission rate, the
create itself, and the reconciliation of a create whose answer never came (DESIGN.md §1).

A create leaves only through :meth:`Store.begin_create` (at most one unresolved create per
model and prompt across every kernel on the ledger) and a per-model :class:`CreateGate` (no
create while an ambiguous one of the model is being looked for in the list). What each answer
or failure means is decided in :mod:`wan_nb.transitions`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING

from . import catalog, transitions
from .account import AccountPace
from .errors import AmbiguousCreateError, APIError, TransportError, ValidationError, WanError
from .jobs import Job, _utcnow
from .reconcile import CreateGate, create_key
from .schedule import CreatePacer

if TYPE_CHECKING:
    from .poller import JobManager

log = logging.getLogger("wan_nb.jobs")

#: s after another kernel last competed for a model during which this kernel still holds the
#: model's tasks at once by itself (see Creator._competed)
COMPETED_MEMORY = 300.0
#: a create in flight or a task on the service: what the tasks-at-once limit counts
IN_FLIGHT = ("SUBMITTING", "PENDING", "RUNNING")


class Creator:
    """The create side of a job manager (runtime thread)."""

    def __init__(self, manager: JobManager) -> None:
        self.m = manager
        self.queue: collections.deque[Job] = collections.deque()
        self.pacer = CreatePacer(manager.policy.create_spacing)
        self.account = (AccountPace(manager.store, manager.backend)
                        if manager.policy.share_account else None)
        #: model -> monotonic time before which no create of it is tried again: the
        #: account's tasks at once were all in flight (begin_create said "full")
        self._held: dict[str, float] = {}
        #: model -> monotonic time another kernel last competed for its places: for
        #: COMPETED_MEMORY s after, this kernel holds the limit itself even when the ledger
        #: finds it alone (the others finished first), so a sweep's tail stays within it
        self._competed: dict[str, float] = {}
        self._full: set[str] = set()  # models _full_here found full at the last pass
        self._gates: dict[str, CreateGate] = collections.defaultdict(CreateGate)
        self._reconciling: set[str] = set()  # run ids with a reconcile step running

    def reconciling(self, job: Job) -> bool:
        return job.run_id in self._reconciling

    def next_allowed(self) -> float | None:
        """Monotonic time the next queued create may leave (None: nothing queued)."""
        queue = [j for j in self.queue if j.request.model not in self._full]
        if not queue:
            return None  # nothing, or waiting for a task of this kernel to end (freed)
        m = self.m
        return max(min(max(self.pacer.next_allowed(j.request.model),
                           self._held.get(j.request.model, 0.0)) for j in queue),
                   min(m.track(j).not_before for j in queue))

    def start_submissions(self, now: float) -> None:
        m = self.m
        waiting: collections.deque[Job] = collections.deque()
        # at most one unresolved create per (model, prompt): see Store.begin_create
        jobs = list(m.jobs.values())
        busy = {create_key(j.request) for j in jobs
                if j.status == "SUBMITTING" or m.track(j).starting}
        full = self._full = self._full_here(jobs, now)
        while self.queue:
            job = self.queue.popleft()
            model = job.request.model
            if job.status != "QUEUED" or job.run_id in m.cancel_requested:
                continue  # cancelled while queued
            if (now < m.track(job).not_before or not self.pacer.ready(model, now)
                    or now < self._held.get(model, 0.0) or model in full
                    or create_key(job.request) in busy):
                waiting.append(job)
                continue
            self.pacer.started(model, now)
            busy.add(create_key(job.request))
            m.track(job).starting = True
            m.spawn(self._create(job), job)
        self.queue = waiting

    def _full_here(self, jobs: list[Job], now: float) -> set[str]:
        """Models another kernel competed for lately whose places this kernel fills alone."""
        recent = {model for model, at in self._competed.items()
                  if now - at < COMPETED_MEMORY}
        if not recent:
            return set()
        counts: collections.Counter[str] = collections.Counter(
            j.request.model for j in jobs if j.request.model in recent
            and (j.status in IN_FLIGHT or self.m.track(j).starting))
        return {model for model in recent
                if counts[model] >= catalog.get_model(model).concurrency}

    def freed(self, model: str) -> None:
        """A task of ``model`` this kernel polls has ended: one of the account's places is
        free, so a create held for it is tried now rather than at its next retry."""
        self._held.pop(model, None)
        self.m.wake_up()

    def enqueue(self, job: Job, delay: float | None = None) -> None:
        """Into the create queue (not before ``delay`` s from now, when given)."""
        if delay is not None:
            self.m.track(job).not_before = time.monotonic() + delay
        self.queue.append(job)

    async def _create(self, job: Job) -> None:
        m = self.m
        gate = self._gates[job.request.model]
        try:
            await gate.create()
        except BaseException:
            m.track(job).starting = False
            raise
        try:
            await self._create_inside_gate(job)
        finally:
            m.track(job).starting = False
            await gate.created()

    async def _create_inside_gate(self, job: Job) -> None:
        m = self.m
        sent_at = _utcnow()
        # off the loop thread: a ledger locked by another kernel must not stall the others
        model = job.request.model
        limit = catalog.get_model(model).concurrency if self.account else None
        outcome, blocker = await asyncio.to_thread(
            m.store.begin_create, job.run_id, sent_at=sent_at, limit=limit,
            stale_after=m.policy.stale_after)
        if outcome == "full":
            # the account's tasks at once are in flight across the kernels sharing it: no
            # create of this model until one ends (this job keeps its place in the queue)
            m.stats["creates_held"] += 1
            self._competed[model] = time.monotonic()
            self._held[model] = time.monotonic() + m.schedule.jittered(m.policy.hold_retry)
            self.queue.appendleft(job)
            return
        if outcome == "gone":  # cancelled or taken over through the ledger meanwhile
            m.ownership.settle(job)
            return
        if outcome == "busy":
            # another kernel sharing this ledger has an unresolved create of this prompt:
            # wait for it (and take it over if that kernel is gone)
            m.stats["creates_deferred"] += 1
            self.enqueue(job, 0.5)
            if blocker is not None and blocker not in m.jobs:
                try:
                    m.attach(blocker)
                except WanError as e:
                    log.info("could not look after %s: %s", blocker, e)
            return
        m.set(job, status="SUBMITTING", sent_at=sent_at)
        if self.account is not None:
            # the account's next create turn of this model, shared by every kernel
            await self.account.create_turn(model)
            if job.run_id in m.cancel_requested:
                self.requeue(job, "cancelled before it was sent", 0.0)
                return
        m.stats["creates"] += 1
        track = m.track(job)
        try:
            state = await m.aio.create_task(job.request, retry_throttled=False)
        except Exception as e:
            d = transitions.on_create_failure(e, track.counters, m.policy)
            if d is None:
                raise
            if isinstance(e, AmbiguousCreateError):
                m.stats["ambiguous_creates"] += 1
            elif d.pace_model:
                m.stats["creates_throttled"] += 1
                self.pacer.refused(job.request.model, d.requeue_in or 0.0)
            m.carry_out(job, d)
            return
        m.carry_out(job, transitions.on_created(state, track.counters))
        self.created(job)

    def created(self, job: Job) -> None:
        """The run's task is known: poll it, or cancel it at once if that was asked."""
        m = self.m
        if job.run_id in m.cancel_requested:
            m.spawn(m.polling.cancel_created(job), job)
        m.wake_up()

    def requeue(self, job: Job, why: str, delay: float) -> None:
        """SUBMITTING back to QUEUED (nothing was created), unless it was cancelled."""
        m = self.m
        if job.run_id in m.cancel_requested:
            if m.store.transition(job.run_id, expect="SUBMITTING", status="CANCELED",
                                  cost_usd=0.0, error_message="cancelled before the "
                                  "service made a task"):
                m.finish(job)
            return
        log.info("requeueing %s: %s", job.run_id, why)
        if m.store.transition(job.run_id, expect="SUBMITTING", status="QUEUED"):
            m.set(job, status="QUEUED")
            track = m.track(job)
            track.counters = dataclasses.replace(track.counters, reconcile_tries=0)
            self.enqueue(job, m.schedule.jittered(delay))
            m.wake_up()

    # -- ambiguous creates -------------------------------------------------------------------
    def reconcile_later(self, job: Job, delay: float) -> None:
        """Find the task an ambiguous create may have made, from ``delay`` s on."""
        self.m.track(job).not_before = time.monotonic() + delay
        self.m.spawn(self._reconcile(job), job)

    async def _reconcile(self, job: Job) -> None:
        """An ambiguous create: find its task in the list endpoint rather than pay twice.
        Keeps trying until it is decided (a failing pass, a locked ledger say, is retried)."""
        m = self.m
        if job.run_id in self._reconciling:
            return
        self._reconciling.add(job.run_id)
        try:
            while not m.closed:
                wait = m.track(job).not_before - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                gate = self._gates[job.request.model]
                await gate.reconcile()
                try:
                    done = await self._reconcile_once(job)
                except Exception as e:
                    m.log_failure("reconciling an ambiguous create", e)
                    done = False
                finally:
                    await gate.reconciled()
                if done:
                    return
                m.track(job).not_before = time.monotonic() + m.policy.reconcile_after
        finally:
            self._reconciling.discard(job.run_id)

    async def _reconcile_once(self, job: Job) -> bool:
        m = self.m
        record = m.state(job).record
        sent_at = record.get("sent_at") or _utcnow()
        # targeted reads: task ids this ledger already holds, and other unresolved creates
        # of this model in any kernel sharing the ledger (any of them could own a task that
        # does not show its prompt yet)
        store = m.store
        known, others, siblings = await asyncio.to_thread(lambda: (
            store.known_task_ids(m.backend, since=sent_at - catalog.TASK_TTL),
            store.unresolved_creates(m.backend, job.request.model, exclude=job.run_id),
            store.ambiguous_siblings(job.run_id, window=dt.timedelta(minutes=3))))
        track = m.track(job)
        try:
            found = await m.aio.find_created_task(job.request, sent_at, exclude=known,
                                                  others_pending=others,
                                                  siblings_pending=siblings,
                                                  throttle=m.limiter.acquire)
        except (AmbiguousCreateError, APIError, TransportError) as e:
            log.info("reconcile of %s undecided: %s", job.run_id, e)
            d = transitions.on_reconcile(record, e, track.counters, _utcnow(), m.policy)
        else:
            m.stats["reconciles"] += 1
            d = transitions.on_reconcile(record, found, track.counters, _utcnow(), m.policy)
        if found_task := d.write.get("task_id"):
            try:
                m.carry_out(job, d)
            except ValidationError:  # recorded meanwhile by another kernel sharing the store
                return False
            log.debug("reconciled %s to %s", job.run_id, found_task)
            m.stats["reconciled_found"] += 1
            self.created(job)
            return True
        if d.requeue_in is not None:
            m.stats["reconciled_absent"] += 1
        m.carry_out(job, d, reconciling=True)
        return d.reconcile_in is None
