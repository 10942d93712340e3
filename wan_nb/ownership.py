"""Who looks after a run when kernels share a ledger: this kernel's heartbeat, claims, and the
runs another live kernel owns, followed through the ledger and taken over when it dies.

A run's ``owner`` is ``host:pid:tag``. An owner on this host whose process is gone (a killed
kernel) is dead at once; elsewhere its heartbeat decides, judged against the default interval
(:attr:`PollPolicy.stale_after`), not this kernel's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from . import transitions
from .jobs import Job, _utcnow

if TYPE_CHECKING:
    from .poller import JobManager

log = logging.getLogger("wan_nb.jobs")


def new_owner() -> str:
    """This kernel's name in the ledger: ``host:pid:tag``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_dead(owner: str | None) -> bool:
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


class Ownership:
    """The runs of a manager's ledger that another kernel looks after (runtime thread)."""

    def __init__(self, manager: JobManager) -> None:
        self.m = manager
        self.watched: set[str] = set()  # run ids another live kernel owns
        self.next_watch = 0.0  # monotonic time of the next read of the watched runs

    # -- this kernel -------------------------------------------------------------------------
    async def heartbeats(self) -> None:
        """Tell the ledger this kernel is alive, on a timer of its own: a long poll pass
        (hundreds of queries at 15/s) must not make other kernels think it died."""
        m = self.m
        while not m.closed:
            if not m.store.read_only:
                try:
                    await asyncio.to_thread(m.store.heartbeat, m.owner)
                except Exception as e:  # a full disk, a locked ledger: said, not fatal
                    m.log_failure("heartbeat", e)
            await asyncio.sleep(m.policy.heartbeat)

    def owner_gone(self, row: dict[str, Any]) -> bool:
        """From a row already read (no write): is its owner dead, or silent too long?"""
        beat = row.get("owner_heartbeat")
        return (owner_dead(row.get("owner")) or beat is None
                or (_utcnow() - beat).total_seconds() > self.m.policy.stale_after)

    def claim(self, row: dict[str, Any]) -> bool:
        """Take over a run unless another live process looks after it. A dead owner's run is
        taken only while that owner still holds it: two kernels that both saw it die take
        it once (with stale_after=0 the second took it from the first, and both ran it)."""
        owner = row.get("owner")
        dead = owner if owner and owner_dead(owner) else None
        return self.m.store.claim(row["run_id"], self.m.owner,
                                  stale_after=self.m.policy.stale_after, dead_owner=dead)

    # -- other kernels' runs -----------------------------------------------------------------
    def watch(self, run_id: str) -> None:
        """Follow ``run_id`` through the ledger from the next cycle on."""
        self.watched.add(run_id)
        self.next_watch = 0.0

    async def follow(self) -> None:
        """Runtime thread: follow runs another kernel looks after through the ledger, and
        take one over when its owner is gone (the ledger is read off the loop thread)."""
        m = self.m
        wanted = list(self.watched)
        rows = {r["run_id"]: r for r in await asyncio.to_thread(m.store.runs, run_ids=wanted)}
        for run_id in wanted:
            if run_id not in self.watched:
                continue  # taken back meanwhile (retry_download)
            job, row = m.jobs.get(run_id), rows.get(run_id)
            if row is None:  # no longer in the ledger
                self.watched.discard(run_id)
                continue
            if job is None:
                # attach() (another thread) marks a run watched before its job is added, so
                # that the poller never takes it for its own: the job comes right after.
                # Dropping it here lost it for good (its job stayed QUEUED, never followed,
                # never taken over: seen under load in CI)
                continue
            state = m.state(job)
            if row != state.record:
                state.record = row
                m.notify(job)
            if job.done:
                self.watched.discard(run_id)
                state.event().set()
            elif self.owner_gone(row) and self.claim(row):
                self.watched.discard(run_id)
                m.stats["taken_over"] += 1
                log.info("took over %s from %s", run_id, row.get("owner"))
                m.reload(job)
                m.adopt(job)

    def settle(self, job: Job) -> None:
        """The ledger changed a run behind this kernel's back (another kernel cancelled or
        took it over): show the change, wake waiters, and follow it if it is not ours."""
        m = self.m
        m.reload(job)
        m.notify(job)
        d = transitions.on_settle(m.state(job).record, m.track(job).counters, m.owner,
                                  m.policy, reconciling=m.creator.reconciling(job))
        if d.final:
            m.state(job).event().set()
        else:
            m.carry_out(job, d)
        m.wake_up()
