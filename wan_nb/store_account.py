"""The account's shared budget in the SQLite ledger: one scheduler per account across kernels.

A DashScope account's limits (each model's submissions per second and tasks at once, 20
queries per second) count every kernel together, so kernels sharing a ledger share them
through it (:mod:`wan_nb.account` is the kernel side):

- :meth:`AccountSlots.take_slots`: turns of a named pace (``"create:<model>"``, ``"query"``)
  reserved in the ``account_slots`` table (schema v7), one write transaction each;
- :func:`account_full`: the tasks-at-once check that :meth:`Store.begin_create` makes inside
  its own transaction, read from the runs themselves (no second record to drift).
"""

from __future__ import annotations

import sqlite3

from wan_nb.errors import ValidationError
from wan_nb.store_codec import RunCodec

#: longest account or pace name a ledger keeps
NAME_MAX = 200
#: the most turns one reservation may take
COUNT_MAX = 100

_UNFINISHED = "('QUEUED', 'SUBMITTING', 'PENDING', 'RUNNING')"
_IN_FLIGHT = "('SUBMITTING', 'PENDING', 'RUNNING')"


def check_slot_args(account: object, name: object, interval: object, count: object) -> None:
    """ValidationError for arguments :meth:`Ledger.take_slots` refuses (shared by ledgers)."""
    problems = []
    for field, value in (("account", account), ("name", name)):
        if not isinstance(value, str) or not value or len(value) > NAME_MAX:
            problems.append((field, f"{field} must be a non-empty string of at most "
                                    f"{NAME_MAX} characters, not {str(value)[:40]!r}"))
    if (not isinstance(interval, (int, float)) or isinstance(interval, bool)
            or not 0 < interval < float("inf")):
        problems.append(("interval", f"interval must be a number of seconds > 0, not "
                                     f"{interval!r}"))
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= COUNT_MAX:
        problems.append(("count", f"count must be an integer from 1 to {COUNT_MAX}, not "
                                  f"{count!r}"))
    if problems:
        raise ValidationError(problems)


def account_full(con: sqlite3.Connection, *, owner: str | None, backend: str | None,
                 model: str | None, limit: int, created_after: str, beat_after: str) -> bool:
    """Inside a write transaction: is the account's tasks-at-once ``limit`` for ``model``
    reached while another live owner competes for it? (See :meth:`Ledger.begin_create`.)
    Two indexed reads (runs by status and creation time); none when the model is alone."""
    other = con.execute(
        f"SELECT 1 FROM runs WHERE status IN {_UNFINISHED} AND created_at >= ? AND "
        "backend IS ? AND model IS ? AND owner IS NOT NULL AND owner IS NOT ? AND "
        "owner_heartbeat >= ? LIMIT 1",
        (created_after, backend, model, owner, beat_after)).fetchone()
    if other is None:
        return False
    (in_flight,) = con.execute(
        f"SELECT COUNT(*) FROM runs WHERE status IN {_IN_FLIGHT} AND created_at >= ? AND "
        "backend IS ? AND model IS ? AND owner IS NOT NULL AND owner_heartbeat >= ?",
        (created_after, backend, model, beat_after)).fetchone()
    return int(in_flight) >= limit


class AccountSlots(RunCodec):
    """The ``account_slots`` table: the next free turn of every pace (a layer of the Store)."""

    def take_slots(self, account: str, name: str, *, interval: float,
                   count: int = 1) -> float:
        """Reserve ``count`` turns of ``account``'s pace ``name``, ``interval`` s apart, after
        every turn reserved before; returns the seconds until the first (see
        :meth:`wan_nb.ledger.Ledger.take_slots`). One write transaction: processes racing
        for a turn are serialised by SQLite's write lock, so no two get the same turn."""
        check_slot_args(account, name, interval, count)
        now = self._now().timestamp()
        with self._write() as con:
            self._serialize(con, "slots", account, name)  # PostgreSQL: an advisory lock
            row = con.execute("SELECT next_at FROM account_slots WHERE account = ? AND "
                              "name = ?", (account, name)).fetchone()
            first = now if row is None else max(now, float(row[0]))
            con.execute("INSERT INTO account_slots (account, name, next_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (account, name) DO UPDATE SET next_at = excluded.next_at",
                        (account, name, first + count * float(interval)))
        return max(0.0, first - now)
