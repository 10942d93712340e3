"""Reconciling an ambiguous create: when a create request left but no answer came back, the
task it may have made is looked for in the task list instead of paying for a second one.

Pure parts only (no I/O, no clock): :func:`create_key`, the rule that keeps the matching
unambiguous, :func:`match_created_task`, the decision, and :class:`CreateGate`, which orders
creates and reconciliations of one model inside a kernel.

The service reports of a task its model, its creation time and, once it has ended, its prompt
(``orig_prompt``), never its seed or other parameters. So the job layer keeps at most one
unresolved create per :func:`create_key` at a time (``Store.begin_create`` enforces it across
kernels sharing a ledger): a listed task with that prompt that no recorded run holds can then
belong to no other run of the ledger.

Limit: a task made at the same moment, with the same model and prompt, by something outside
this ledger (another ledger on the same account, a direct ``create_task`` call) looks the same.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .request import GenerationRequest
    from .wire import TaskSummary


def create_key(request: GenerationRequest) -> tuple[str, str]:
    """What the service tells of a task: its model and (once ended) its prompt. Two requests
    with the same key cannot be told apart in the task list, so their creates never overlap."""
    return request.model, request.prompt


@dataclass(frozen=True)
class Match:
    """The decision for one ambiguous create.

    ``found``: this task is the create's (``task``); ``absent``: no candidate could be it (no
    task was made, so sending again pays once); ``undecided``: candidates exist that cannot
    be told apart yet (``why``); ask again later, never resend.
    """

    kind: Literal["found", "absent", "undecided"]
    task: TaskSummary | None = None
    why: str = ""


def match_created_task(prompt: str, candidates: Sequence[tuple[TaskSummary, str | None]], *,
                       others_pending: int = 0, siblings_pending: int = 0) -> Match:
    """Decide which listed task an ambiguous create made.

    ``candidates``: the unclaimed tasks of the request's model listed around the create's
    time (task ids recorded by any run excluded), each with its ``orig_prompt`` (None while
    the task has not ended). ``others_pending``: other unresolved creates of this model, whose
    tasks do not show their prompt yet either. ``siblings_pending``: other unresolved creates
    of this very model and prompt (a ledger left by an older version): none can be told apart.

    >>> from wan_nb.wire import TaskSummary
    >>> t = TaskSummary("t1", "SUCCEEDED", None, None, None, None, None, None)
    >>> match_created_task("a fox", [(t, "a fox")]).kind
    'found'
    """
    if not candidates:
        return Match("absent")
    if siblings_pending:
        return Match("undecided", why=(
            f"{len(candidates)} unclaimed tasks, and {siblings_pending} other unresolved "
            "creates of this same prompt: the service does not report seeds, so none is "
            "adopted"))
    confirmed = [t for t, orig in candidates if orig is not None and orig == prompt]
    unconfirmed = [t for t, orig in candidates if orig is None]
    if len(confirmed) == 1:
        return Match("found", confirmed[0])
    if len(confirmed) > 1:
        return Match("undecided", why=(
            f"{len(confirmed)} unclaimed tasks have this prompt "
            f"({', '.join(t.task_id for t in confirmed)}); none is adopted, so no run gets "
            "another's video"))
    if not unconfirmed:
        return Match("absent")  # every candidate is known to be another request's
    if len(unconfirmed) == 1 and others_pending == 0:
        return Match("found", unconfirmed[0])
    return Match("undecided", why=(
        f"{len(unconfirmed)} unclaimed tasks that have not ended could be this create's, "
        f"with {others_pending} other creates of this model unresolved; waiting until they "
        "can be told apart"))


class CreateGate:
    """Per model: creates may overlap each other, never a reconciliation.

    Reconciling an ambiguous create reads the list endpoint and adopts a task nobody has
    claimed. A create whose answer is still on its way has a task that is on the list but not
    yet recorded, so it would look unclaimed: reconciliation waits until no create of that
    model is in flight, and holds new ones back while it runs. Waiters are served in arrival
    order (tickets), so neither a stream of creates nor a stream of reconciliations starves
    the other.
    """

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._creating = 0
        self._reconciling = False
        self._tickets = itertools.count()
        self._waiting: list[int] = []  # tickets of waiting reconciliations, in order

    async def create(self) -> None:
        async with self._cond:
            ticket = next(self._tickets)
            await self._cond.wait_for(
                lambda: not self._reconciling and (not self._waiting
                                                   or self._waiting[0] > ticket))
            self._creating += 1

    async def created(self) -> None:
        async with self._cond:
            self._creating -= 1
            self._cond.notify_all()

    async def reconcile(self) -> None:
        async with self._cond:
            ticket = next(self._tickets)
            self._waiting.append(ticket)
            try:
                await self._cond.wait_for(lambda: not self._reconciling and self._creating == 0
                                          and self._waiting[0] == ticket)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            self._reconciling = True

    async def reconciled(self) -> None:
        async with self._cond:
            self._reconciling = False
            self._cond.notify_all()
