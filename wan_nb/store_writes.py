"""Writing runs: inserts (with the cross-process de-duplication), updates, and the
compare-and-set steps that keep two kernels from doing the same work (status transitions,
ownership claims, the one unresolved create per key). Each is one write transaction."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from wan_nb._version import __version__
from wan_nb.errors import ValidationError
from wan_nb.ledger import CreateOutcome
from wan_nb.statuses import STATUSES
from wan_nb.store_account import account_full
from wan_nb.store_codec import INSERTABLE, UPDATABLE, RunCodec, allowed_text, new_run_id
from wan_nb.store_table import RunNotFound, StoreError, utc_text


#: the runs a claim may take: unowned, already the claimant's, its owner's heartbeat older than
#: the cutoff, or still held by the owner the claimant found dead (parameters: claimant,
#: cutoff, dead owner or None)
CLAIMABLE = ("(owner IS NULL OR owner = ? OR owner_heartbeat IS NULL OR owner_heartbeat < ? "
             "OR owner = ?)")


class RunWrites(RunCodec):
    """Inserts, updates, transitions and claims (a layer of the Store)."""

    def _prepare_insert(self, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
        row = self._encode(fields, INSERTABLE)
        created = fields.get("created_at") or now
        row.setdefault("created_at", utc_text(now))
        row["updated_at"] = utc_text(now)
        row.setdefault("status", "QUEUED")
        row.setdefault("tags", "[]")
        row.setdefault("wan_nb_version", __version__)
        if "run_id" not in row:
            row["run_id"] = new_run_id(created)
            row["_generated"] = True
        return row

    def _insert_rows(self, con: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[str]:
        ids = []
        for row in rows:
            generated = row.pop("_generated", False)
            names = list(row)
            sql = (f"INSERT INTO runs ({', '.join(names)}) "
                   f"VALUES ({', '.join('?' * len(names))})")
            for _attempt in range(20):
                try:
                    con.execute(sql, [row[n] for n in names])
                    break
                except self._integrity_errors as exc:
                    # same second, same 32 bits
                    if generated and self._unique_column(exc) == "run_id":
                        row["run_id"] = row["run_id"][:15] + secrets.token_hex(4)
                        continue
                    raise self._integrity(exc, row) from exc
            else:
                raise StoreError("could not find a free run_id")  # pragma: no cover
            ids.append(row["run_id"])
        return ids

    def _integrity(self, exc: Exception, row: dict[str, Any]) -> ValidationError:
        name = self._unique_column(exc)
        if name is not None:
            return ValidationError([(name, f"{name} {row.get(name)!r} is already recorded "
                                           "in this store")])
        return ValidationError([("row", f"rejected by the ledger: {exc}")])

    def insert_run(self, **fields: Any) -> str:
        """Add one run (status QUEUED unless given) and return its ``run_id``.

        ``created_at``/``updated_at`` default to now; ``run_id`` is ``YYYYMMDDhhmmss-<8 hex>``
        (UTC) unless given. Unknown fields, bad values or naive datetimes raise
        :class:`ValidationError` and nothing is written.
        """
        row = self._prepare_insert(fields, self._now())
        with self._write() as con:
            return self._insert_rows(con, [row])[0]

    def insert_run_once(self, *, reuse_unless: Sequence[str] = (),
                        always_reuse_codes: Sequence[str] = (),
                        **fields: Any) -> tuple[str, bool]:
        """Add a run unless one with the same ``experiment``, ``fingerprint`` and ``backend``
        is already recorded, in one step across processes. Returns ``(run_id, created)``:
        the new run's id and True, or the newest matching run's id and False.

        Runs whose status is in ``reuse_unless`` (e.g. FAILED: no video, nothing paid) do not
        count, so such a variant is created again, except runs whose ``error_code`` is in
        ``always_reuse_codes`` (an AmbiguousCreate: its task may exist and be paid). Two
        kernels running the same Experiment
        cell at the same moment therefore create each variant once::

            rid, created = store.insert_run_once(reuse_unless=("FAILED",), experiment="cats",
                                                 fingerprint=fp, backend="emulator", ...)
        """
        skip = tuple(reuse_unless)
        if any(s not in STATUSES for s in skip):
            raise ValidationError([("reuse_unless", f"reuse_unless must name statuses from "
                                                    f"{allowed_text(STATUSES)}; got {skip!r}")])
        if not fields.get("fingerprint"):
            raise ValidationError([("fingerprint", "insert_run_once needs the request's "
                                                   "fingerprint to find an earlier run")])
        row = self._prepare_insert(fields, self._now())
        marks = ", ".join("?" * len(skip))
        codes = tuple(always_reuse_codes)
        keep = f" OR error_code IN ({', '.join('?' * len(codes))})" if codes else ""
        sql = ("SELECT run_id FROM runs WHERE fingerprint = ? AND experiment IS ? AND "
               f"backend IS ?{f' AND (status NOT IN ({marks}){keep})' if skip else ''} "
               "ORDER BY created_at DESC, rowid DESC LIMIT 1")
        # BEGIN IMMEDIATE takes SQLite's one write lock before the look-up, and every other
        # process's write transaction waits for it: look-up and insert are one atomic step.
        # (PostgreSQL: _serialize takes a transaction-scoped advisory lock on the key; a
        # unique index cannot express it, since force=True re-rolls keep several live runs
        # per key.)
        with self._write() as con:
            self._serialize(con, "once", row["fingerprint"], row.get("experiment"),
                            row.get("backend"))
            found = con.execute(sql, (row["fingerprint"], row.get("experiment"),
                                      row.get("backend"), *skip,
                                      *(codes if skip else ()))).fetchone()
            if found is not None:
                return found[0], False
            return self._insert_rows(con, [row])[0], True

    def insert_runs(self, rows: Iterable[dict[str, Any]]) -> list[str]:
        """Add many runs in one transaction (all or none); returns their run_ids in order."""
        now = self._now()
        prepared, errors = [], []
        for i, fields in enumerate(rows):
            try:
                prepared.append(self._prepare_insert(dict(fields), now))
            except ValidationError as exc:
                errors += [(f"[{i}].{f}", f"run {i}: {m}") for f, m in exc.errors]
        if errors:
            raise ValidationError(errors)
        with self._write() as con:
            return self._insert_rows(con, prepared)

    def _update(self, con: sqlite3.Connection, run_id: str, row: dict[str, Any],
                where: str = "", params: Sequence[Any] = ()) -> bool:
        row = {**row, "updated_at": utc_text(self._now())}
        sets = ", ".join(f"{n} = ?" for n in row)
        try:
            cur = con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?{where}",
                              [*row.values(), run_id, *params])
        except self._integrity_errors as exc:
            raise self._integrity(exc, row) from exc
        if cur.rowcount == 0 and not con.execute("SELECT 1 FROM runs WHERE run_id = ?",
                                                 (run_id,)).fetchone():
            raise RunNotFound(f"no run {run_id!r} in {self._where}")
        return cur.rowcount == 1

    def update_run(self, run_id: str, /, **fields: Any) -> None:
        """Set fields of one run atomically (and ``updated_at``); :class:`RunNotFound` if absent."""
        row = self._encode(fields, UPDATABLE)
        with self._write() as con:
            self._update(con, run_id, row)

    def transition(self, run_id: str, /, *, expect: str | Sequence[str],
                   **fields: Any) -> bool:
        """Compare-and-set: apply ``fields`` only if the current status is in ``expect``.

        Returns whether the update happened; of two processes racing, exactly one wins::

            if store.transition(rid, expect="QUEUED", status="SUBMITTING", sent_at=now): ...
        """
        expected = (expect,) if isinstance(expect, str) else tuple(expect)
        bad = [s for s in expected if s not in STATUSES]
        if bad or not expected:
            raise ValidationError([("expect", f"expect must name statuses from "
                                              f"{allowed_text(STATUSES)}; got {expect!r}")])
        row = self._encode(fields, UPDATABLE)
        with self._write() as con:
            marks = ", ".join("?" * len(expected))
            return self._update(con, run_id, row, f" AND status IN ({marks})", expected)

    def claim(self, run_id: str, owner: str, *, stale_after: float = 30.0,
              dead_owner: str | None = None) -> bool:
        """Take ownership of a run if it is unowned, already ``owner``'s, its owner's
        heartbeat is older than ``stale_after`` seconds, or its owner is still
        ``dead_owner`` (the one the caller found dead). Returns whether ``owner`` now owns it."""
        now = self._now()
        cutoff = utc_text(now - timedelta(seconds=stale_after))
        row = self._encode({"owner": owner, "owner_heartbeat": now}, UPDATABLE)
        with self._write() as con:
            return self._update(con, run_id, row, f" AND {CLAIMABLE}",
                                (owner, cutoff, dead_owner))

    def release(self, run_id: str, owner: str) -> bool:
        """Give up ownership (only if ``owner`` holds it); returns whether it was released."""
        with self._write() as con:
            return self._update(con, run_id, {"owner": None, "owner_heartbeat": None},
                                " AND owner = ?", (owner,))

    def heartbeat(self, owner: str) -> int:
        """Refresh ``owner_heartbeat`` of every run owned by ``owner``; returns how many."""
        with self._write() as con:
            cur = con.execute("UPDATE runs SET owner_heartbeat = ? WHERE owner = ?",
                              (utc_text(self._now()), owner))
            return cur.rowcount

    def begin_create(self, run_id: str, /, *, sent_at: datetime,
                     max_age: timedelta = timedelta(hours=24), limit: int | None = None,
                     stale_after: float = 30.0) -> tuple[CreateOutcome, str | None]:
        """Move a QUEUED run to SUBMITTING unless another run of the same backend, model and
        prompt is SUBMITTING (its create unresolved), in one write transaction, so the rule
        holds across kernels sharing this ledger.

        The service reports only a task's model and prompt (``orig_prompt``), never its seed
        or other parameters; with at most one unresolved create per (backend, model, prompt),
        a listed task with that prompt can belong to no other run of this ledger, so an
        ambiguous create is never matched to a sibling's task. (PostgreSQL: the same check
        under ``SELECT … FOR UPDATE`` of the run, or an advisory lock on the key.)

        Returns ``(outcome, blocker)``: ``"started"``; ``"busy"`` with the run_id of the
        unresolved create of this key (try later); or ``"gone"`` (the run is no longer
        QUEUED: cancelled, or taken elsewhere).

        With ``limit`` the account's tasks at once are held across kernels: ``"full"`` when
        another live kernel competes for the model and ``limit`` runs are in flight
        (:func:`wan_nb.store_account.account_full`; the protocol says the whole rule).
        """
        now = self._now()
        cutoff = utc_text(now - max_age)
        row = self._encode({"status": "SUBMITTING", "sent_at": sent_at}, UPDATABLE)
        with self._write() as con:
            me = con.execute("SELECT status, backend, model, prompt, owner FROM runs "
                             "WHERE run_id = ?", (run_id,)).fetchone()
            if me is None:
                raise RunNotFound(f"no run {run_id!r} in {self._where}")
            if me[0] != "QUEUED":
                return "gone", None
            # (PostgreSQL: one lock per backend and model covers the key and the account)
            self._serialize(con, "create", me[1], me[2])
            busy = con.execute(
                "SELECT run_id FROM runs WHERE status = 'SUBMITTING' AND run_id != ? AND "
                "backend IS ? AND model = ? AND prompt = ? AND created_at >= ? LIMIT 1",
                (run_id, me[1], me[2], me[3], cutoff)).fetchone()
            if busy is not None:
                return "busy", busy[0]
            if limit is not None and account_full(
                    con, owner=me[4], backend=me[1], model=me[2], limit=limit,
                    created_after=cutoff,
                    beat_after=utc_text(now - timedelta(seconds=stale_after))):
                return "full", None
            if not self._update(con, run_id, row, " AND status = 'QUEUED'", ()):
                return "gone", None  # moved on since it was read (PostgreSQL)
            return "started", None

    def rename_backend(self, old: str, new: str) -> int:
        """File every run recorded under backend ``old`` under ``new`` (the same service,
        named as this version names it); returns how many."""
        with self._write() as con:
            return con.execute("UPDATE runs SET backend = ? WHERE backend = ?",
                               (new, old)).rowcount
