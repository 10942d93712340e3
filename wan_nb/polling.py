"""The service side of created tasks: polling them (one query each, or one list request for
many) and cancelling them, within the account's query rate. What each answer means is decided
in :mod:`wan_nb.transitions`; when to ask again in :mod:`wan_nb.schedule`."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import catalog, transitions
from .errors import APIError, TransportError, UnsupportedOperationError
from .jobs import Job, _utcnow
from .statuses import ACTIVE_SERVICE, FINAL_SERVICE_STATUSES
from .wire import TaskSummary

if TYPE_CHECKING:
    from .poller import JobManager

log = logging.getLogger("wan_nb.jobs")


class Polling:
    """Queries, lists and cancels of a job manager's created tasks (runtime thread)."""

    def __init__(self, manager: JobManager) -> None:
        self.m = manager

    def polled(self) -> list[Job]:
        """Jobs whose task this kernel polls (created, not finished, not watched)."""
        m = self.m
        watched = m.ownership.watched
        return [j for j in list(m.jobs.values()) if j.status in ACTIVE_SERVICE and j.task_id
                and j.run_id not in watched]

    async def poll(self, now: float) -> None:
        m = self.m
        active = self.polled()
        due = [j for j in active if m.track(j).next_poll <= now]
        if not due:
            return
        summaries = await self._list_states(active) \
            if len(active) >= m.policy.list_threshold else {}
        for job in (active if summaries else due):
            track = m.track(job)
            summary = summaries.get(job.task_id or "")
            if summary is not None and summary.status not in FINAL_SERVICE_STATUSES:
                # learned from the list: no detail request needed until the task ends
                m.carry_out(job, transitions.on_list_summary(m.state(job).record, summary,
                                                             track.counters))
                continue
            if summary is None and track.next_poll > now:
                continue
            await m.limiter.acquire()
            try:
                state = await m.aio.get_task(m.task_of(job))
            except (APIError, TransportError) as e:
                log.info("query of %s failed: %s", job.task_id, e)
                m.carry_out(job, transitions.on_query_failure(track.counters, m.policy))
                continue
            m.stats["queries"] += 1
            m.carry_out(job, transitions.on_task_state(m.state(job).record, state,
                                                       track.counters, _utcnow(), m.policy))
            if job.status not in ACTIVE_SERVICE:
                m.creator.freed(job.request.model)  # a place of the account is free

    async def _list_states(self, active: list[Job]) -> dict[str, TaskSummary]:
        m = self.m
        oldest = min(m.sent(j) for j in active)
        start = oldest - dt.timedelta(seconds=60)
        end = min(start + catalog.TASK_TTL, _utcnow() + dt.timedelta(seconds=60))
        out: dict[str, TaskSummary] = {}
        wanted = {j.task_id for j in active}
        try:
            for page_no in range(1, m.policy.max_list_pages + 1):
                await m.limiter.acquire()
                page = await m.aio.list_tasks(start_time=start, end_time=end,
                                              page_no=page_no, page_size=100)
                m.stats["lists"] += 1
                out.update((t.task_id, t) for t in page.tasks if t.task_id in wanted)
                if page_no >= page.total_page or wanted <= set(out):
                    break
        except (APIError, TransportError) as e:
            log.info("list failed, falling back to queries: %s", e)
        return out

    # -- cancelling --------------------------------------------------------------------------
    async def cancel_jobs(self, jobs: Iterable[Job], *, settle: float = 10.0) -> list[Job]:
        """Cancel ``jobs``: nothing more is created for them, and every created task that
        can still be cancelled (PENDING) is, with cancels paced under the account's query
        rate. A job whose create is on its way is cancelled as soon as its task is known
        (waiting up to ``settle`` s here for that). Returns the jobs now CANCELED."""
        m = self.m
        jobs = [j for j in jobs if not j.done]
        for job in jobs:
            m.cancel_requested.add(job.run_id)
            if job.status == "QUEUED":
                if m.store.transition(job.run_id, expect="QUEUED", status="CANCELED",
                                      cost_usd=0.0,
                                      error_message="cancelled before it was submitted"):
                    m.reload(job)
                    m.finish(job)
                else:
                    m.reload(job)
        deadline = time.monotonic() + settle
        # creates on their way, and cancels already sent (a create that ended meanwhile sends
        # its own: see Creator.created), are waited for, so the answer below is the real one
        while (any(j.status == "SUBMITTING" or m.track(j).starting or m.track(j).cancelling
                   for j in jobs)
               and time.monotonic() < deadline and not m.closed):
            await asyncio.sleep(0.05)
        for job in jobs:
            if job.status == "PENDING" and job.task_id and not job.done:
                await self.cancel_created(job)
        return [j for j in jobs if j.status == "CANCELED"]

    async def cancel_created(self, job: Job) -> None:
        """Cancel the task of a PENDING job (one request, within the query rate)."""
        m = self.m
        track = m.track(job)
        if job.done or job.status != "PENDING" or not job.task_id or track.cancelling:
            return
        track.cancelling = True
        try:
            await m.limiter.acquire()
            try:
                await m.aio.cancel_task(m.task_of(job))
            except (APIError, TransportError) as e:
                if isinstance(e, UnsupportedOperationError):
                    track.cancel_refused = True  # the service says it is not PENDING any more
                else:
                    log.info("cancel of %s failed: %s", job.task_id, e)
                # it started meanwhile, or no answer: the next poll records its state
                d = transitions.on_cancel_answer(m.state(job).record, e, track.counters)
            else:
                m.stats["cancels"] += 1
                d = transitions.on_cancel_answer(m.state(job).record, None, track.counters)
            if d is not None:
                m.carry_out(job, d)
                m.wake_up()
        finally:
            track.cancelling = False

    async def cancel(self, job: Job) -> None:
        """Cancel one job, or say why it cannot be."""
        m = self.m
        m.check_open()
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
            status = job.status
            if m.track(job).cancel_refused and status == "PENDING":  # not polled since
                status = "RUNNING (it started before the cancel reached the service)"
            raise UnsupportedOperationError(
                400, "UnsupportedOperation", f"job {job.run_id} is {status}; only QUEUED or "
                "PENDING jobs can be cancelled (the service does not stop running tasks)")
