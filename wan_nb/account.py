"""One scheduler per account: the kernel side of the account's budget shared through the
ledger (the ledger side is :meth:`~wan_nb.ledger.Ledger.take_slots` and
:meth:`~wan_nb.ledger.Ledger.begin_create`'s ``limit``).

The service counts every kernel of an account together: each model's submissions per second
and tasks at once, and 20 queries (query + list + cancel) per second. Kernels sharing a
ledger and a backend (the account: see :func:`account_of`) therefore

- take each create's turn from the ledger's pace ``"create:<model>"``, spaced
  ``ACCOUNT_SPACING / submissions_per_s`` across all of them (:meth:`AccountPace.create_turn`);
- hold tasks at once: a create starts only while fewer than the model's concurrency are in
  flight across the kernels competing for it (``begin_create(limit=…)``, in
  :mod:`wan_nb.creating`);
- take query turns from the pace ``"query"`` at ``query_rate`` per second for all of them
  together (:class:`SharedQueryLimiter`), in small blocks so a busy kernel writes the
  ledger a few times a second, not once a query.

Each kernel still polls and downloads only the runs it owns. ``PollPolicy(share_account=
False)`` turns all of this off (each kernel paces itself alone, as before issue 13).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import catalog
from .schedule import Clock, QueryLimiter
from .store_table import StoreError

if TYPE_CHECKING:
    from .ledger import Ledger

log = logging.getLogger("wan_nb.jobs")

#: a reserved query turn may be used this long after its time, then it is dropped: a turn
#: used late would crowd the next second of another kernel's turns at the service
LATE = 0.05
#: most query turns taken in one reservation
MAX_BLOCK = 8
#: × 1/submissions_per_s between the account's creates of one model. The service counts
#: creates in a sliding second, when they arrive: with turns ``s`` apart a create may arrive
#: up to ``5 s - 1`` seconds after its turn (at 5/s) before the sixth in a second is
#: refused. Measured here: at 1.1 (0.1 s of slack) a kernel's first create, on a new
#: connection, arrived late enough to be refused once in 8 jobs; 1.25 leaves 0.25 s. One
#: value for every kernel (not the policy's ``create_spacing``, which spaces this kernel's own
#: creates): a kernel tuned to wait long between its creates must not hold the others.
ACCOUNT_SPACING = 1.25


def account_of(backend: str) -> str:
    """The account a backend's runs count against, as the ledger names it: kernels sharing
    a ledger and a backend share the account (the service cannot tell us which keys belong
    to one main account, so different keys on one backend are taken for one account)."""
    return backend


class AccountPace:
    """Create turns of the account, from the ledger (runtime thread; the ledger is written
    off the loop thread)."""

    def __init__(self, store: Ledger, backend: str, spacing: float = ACCOUNT_SPACING
                 ) -> None:
        self.store = store
        self.account = account_of(backend)
        self.spacing = spacing

    def interval(self, model: str) -> float:
        return self.spacing / catalog.get_model(model).submissions_per_s

    async def create_turn(self, model: str) -> float:
        """Take the next create turn of ``model`` and wait for it; returns the seconds
        waited. A ledger that cannot be written (read-only, locked too long) is said once
        and skipped: the kernel's own pacer still spaces its creates."""
        try:
            wait = await asyncio.to_thread(self.store.take_slots, self.account,
                                           f"create:{model}", interval=self.interval(model))
        except StoreError as e:
            log.info("account pace not shared (the ledger refused a turn: %s)", e)
            return 0.0
        if wait > 0:
            await asyncio.sleep(wait)
        return wait


class SharedQueryLimiter:
    """At most ``rate`` queries, lists and cancels per second across every kernel on the
    ledger (the account's 20/s; the policy uses 15): turns ``1/rate`` apart reserved in the
    ledger, a block at a time. A turn not used within :data:`LATE` s of its time is dropped
    (never saved up), so the turns that leave are as spaced at the service as reserved. The
    block doubles while the kernel asks again as soon as its turns are used (busy) and halves
    when turns are dropped (idle). Falls back to
    the kernel's own sliding-second limiter when the ledger cannot be written."""

    def __init__(self, store: Ledger, backend: str, rate: float, *,
                 clock: Clock = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.store = store
        self.account = account_of(backend)
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.block = 1
        self.local = QueryLimiter(rate, clock=clock, sleep=sleep)
        self.shared = True
        self._turns: collections.deque[float] = collections.deque()
        self._last: float | None = None  # the last turn handed out
        self._lock: asyncio.Lock | None = None
        self.reserved = 0
        self.dropped = 0

    async def acquire(self) -> None:
        if not self.shared:
            await self.local.acquire()
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one reservation at a time per kernel; turns handed in order
            turn = await self._next_turn()
        if turn is None:
            await self.local.acquire()
            return
        wait = turn - self.clock()
        if wait > 0:
            await self.sleep(wait)

    async def _next_turn(self) -> float | None:
        now = self.clock()
        dropped = 0
        while self._turns and self._turns[0] < now - LATE:
            self._turns.popleft()
            dropped += 1
        if dropped:
            self.dropped += dropped
            self.block = max(1, self.block // 2)
        if self._turns:
            self._last = self._turns.popleft()
            return self._last
        interval = 1.0 / self.rate
        if not dropped and self._last is not None and now - self._last <= 2 * interval:
            self.block = min(MAX_BLOCK, self.block * 2)  # asking again at once: busy
        asked = self.clock()
        try:
            wait = await asyncio.to_thread(self.store.take_slots, self.account, "query",
                                           interval=interval, count=self.block)
        except StoreError as e:
            log.info("queries paced by this kernel alone (the ledger refused a turn: %s)", e)
            self.shared = False
            return None
        start = asked + wait  # the ledger's now is (about) when we asked
        self.reserved += self.block
        self._turns.extend(start + i * interval for i in range(self.block))
        self._last = self._turns.popleft()
        return self._last
