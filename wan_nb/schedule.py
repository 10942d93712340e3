"""When to ask the service, and how fast: the poll policy, learned run times and the rate
limiters. Nothing here does I/O; the clock is injected (``clock=time.monotonic`` by default),
so every decision can be tested with a fake one.

- :class:`PollPolicy`: the knobs (floor, ceiling, share of the remaining time, jitter, rates).
- :class:`Durations`: learned run times by (backend, model, size, duration), from the ledger.
- :class:`Schedule`: a job's next poll interval from those two.
- :class:`QueryLimiter`: queries, lists and cancels within the account's rate (sliding 1 s).
- :class:`CreatePacer`: creates of one model spaced by its submission rate.
"""

from __future__ import annotations

import asyncio
import collections
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import catalog

Clock = Callable[[], float]


@dataclass(frozen=True)
class PollPolicy:
    """When to ask the service again.

    A job's next poll is ``clamp(share * remaining, floor, ceiling)`` seconds away, where
    ``remaining`` is the learned run time left (median of finished runs of the same backend,
    model, size and duration); past the expected end it is ``clamp(overrun_share * overrun,
    floor, ceiling)``. Every interval gets ±``jitter`` so many jobs do not poll in lockstep.
    With ``list_threshold`` or more jobs in flight, one list request replaces their queries.
    With ``share_account`` the kernels sharing a ledger share the account's limits
    (:mod:`wan_nb.account`).
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
    # kernels sharing the ledger share the account's limits (wan_nb.account): creates paced
    # and tasks at once held across them, queries within query_rate together
    share_account: bool = True
    hold_retry: float = 0.15  # s before a create held at the tasks-at-once limit tries again

    def interval(self, remaining: float, rng: random.Random) -> float:
        base = self.share * remaining if remaining > 0 else self.overrun_share * -remaining
        return min(self.ceiling, max(self.floor, base)) * rng.uniform(1 - self.jitter,
                                                                       1 + self.jitter)

    @property
    def stale_after(self) -> float:
        """Seconds without a heartbeat after which another kernel's run may be taken over.
        Judged against the owner's interval, not ours: at least three default intervals, so
        a kernel that beats every 10 s is never taken for dead by one that beats every 1 s."""
        return 3 * max(self.heartbeat, PollPolicy.heartbeat)


class Durations:
    """Learned queue and run times, by (backend, model, size, duration)."""

    DEFAULT_RUN = {"emulator": 3.0}
    LIVE_DEFAULT_RUN = 150.0

    def __init__(self) -> None:
        self._run: dict[tuple[str, str, str, int], list[float]] = \
            collections.defaultdict(list)

    def learn(self, backend: str, model: str, size: str, duration: int,
              run_s: float | None) -> None:
        if run_s is not None and run_s >= 0:
            samples = self._run[(backend, model, size, int(duration))]
            samples.append(float(run_s))
            del samples[:-50]

    def learn_from_store(self, rows: Iterable[Mapping[str, Any]]) -> None:
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

    def band(self, backend: str, model: str, size: str, duration: int) -> RunBand:
        """The run time's p50-p90 band from the learned samples: of this size and duration
        when there are some, else every size of the model scaled by pixels × seconds, else
        the default with a ±50 % band and ``samples == 0``."""
        samples = list(self._run.get((backend, model, size, int(duration))) or ())
        if not samples:
            w, h = catalog.parse_size(size)
            samples = [x * (w * h * duration) / (ww * hh * dd)
                       for (b, m, s, dd), v in list(self._run.items())
                       if b == backend and m == model and v
                       for ww, hh in [catalog.parse_size(s)] for x in v]
        if not samples:
            guess = self.DEFAULT_RUN.get(backend.split(":")[0], self.LIVE_DEFAULT_RUN)
            return RunBand(guess, guess * 1.5, 0)
        return RunBand(_quantile(samples, 0.5), _quantile(samples, 0.9), len(samples))


@dataclass(frozen=True)
class RunBand:
    """Seconds a run is expected to take: half end within ``p50``, nine in ten within
    ``p90``; ``samples`` finished runs taught it (0: a default, nothing learned yet)."""

    p50: float
    p90: float
    samples: int

    def left(self, elapsed: float) -> tuple[float, float]:
        """The p50-p90 time left after ``elapsed`` s of running (never below 0)."""
        return max(0.0, self.p50 - elapsed), max(0.0, self.p90 - elapsed)


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default) of a non-empty list."""
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


class Schedule:
    """A job's next poll interval, from the policy and what has been learned."""

    def __init__(self, policy: PollPolicy, durations: Durations, backend: str,
                 rng: random.Random | None = None) -> None:
        self.policy = policy
        self.durations = durations
        self.backend = backend
        self.rng = rng or random.Random()

    def interval(self, model: str, size: str, duration: int, *, age: float,
                 started_ago: float | None) -> float:
        """Seconds until the next poll of a task sent ``age`` s ago (``started_ago``: since
        the service started running it, when known)."""
        if not self.durations.knows(self.backend, model):
            # nothing learned yet for this model here: poll soon, then back off as the task
            # ages (0.5 s, ~1 s, ~2 s, ... up to the ceiling), like a backoff
            return self.policy.interval(age, self.rng)
        run = self.durations.expected_run(self.backend, model, size, duration)
        remaining = run if started_ago is None else run - started_ago
        return self.policy.interval(remaining, self.rng)

    def expected_run(self, model: str, size: str, duration: int) -> float:
        return self.durations.expected_run(self.backend, model, size, duration)

    def run_band(self, model: str, size: str, duration: int) -> RunBand:
        return self.durations.band(self.backend, model, size, duration)

    def jittered(self, delay: float) -> float:
        """``delay`` ±20 %, so requeued jobs do not come back in lockstep."""
        return delay * self.rng.uniform(0.8, 1.2)


class QueryLimiter:
    """At most ``rate`` queries (query, list, cancel) in any sliding second, across every
    job of a poller: the account allows 20 per second, the default policy uses 15."""

    def __init__(self, rate: float, clock: Clock = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._times: collections.deque[float] = collections.deque()

    def wait_time(self) -> float:
        """0 when a query may leave now (and counts it); else seconds to wait first."""
        now = self.clock()
        q = self._times
        while q and now - q[0] > 1.0:
            q.popleft()
        if len(q) < self.rate:
            q.append(now)
            return 0.0
        return 1.0 - (now - q[0]) + 0.001

    async def acquire(self) -> None:
        while (wait := self.wait_time()) > 0:
            await self.sleep(wait)


class CreatePacer:
    """Creates of one model at most at its documented submission rate (times
    ``create_spacing``, a margin for the service's sliding window), and after a 429 not before
    its ``Retry-After``."""

    def __init__(self, spacing: float, clock: Clock = time.monotonic) -> None:
        self.spacing = spacing
        self.clock = clock
        self._next: dict[str, float] = {}

    def next_allowed(self, model: str) -> float:
        return self._next.get(model, 0.0)

    def ready(self, model: str, now: float) -> bool:
        return now >= self._next.get(model, 0.0)

    def started(self, model: str, now: float) -> None:
        """A create of ``model`` leaves now: space the next one."""
        self._next[model] = now + self.spacing / catalog.get_model(model).submissions_per_s

    def refused(self, model: str, wait: float) -> None:
        """The service refused a create (429): no create of ``model`` for ``wait`` s."""
        self._next[model] = max(self._next.get(model, 0.0), self.clock() + wait)
