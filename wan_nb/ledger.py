"""The run ledger's protocol: what the rest of wan_nb asks of the store that records its runs.

:class:`wan_nb.store.Store` (SQLite, one file beside the notebook) implements it; another
ledger (PostgreSQL, for a team sharing runs) would implement the same members with the same
contracts. The protocol says nothing about how a ledger keeps its rows, only what each call
must do, atomically, against every other process sharing the ledger::

    from wan_nb.ledger import Ledger

    def resume_all(ledger: Ledger) -> list[str]:
        return [run["run_id"] for run in ledger.unfinished()]

Rules every member keeps:

- A run is a ``dict`` of the columns of :data:`wan_nb.store_table.COLUMNS` (the derived
  ones included); datetimes are timezone-aware UTC, tags a list, missing values ``None``.
- A write is all or nothing: it happens in one transaction (committed before the call
  returns, durable across a killed process) or raises and leaves the ledger as it was.
- Errors: :class:`~wan_nb.errors.ValidationError` for bad fields or arguments (nothing is
  written); :class:`~wan_nb.store_table.RunNotFound` (also a ``KeyError``) for an unknown
  run_id; :class:`~wan_nb.store_table.StoreReadOnly` for any write to a ledger this process
  can only read; another :class:`~wan_nb.store_table.StoreError` (locked too long, full,
  damaged) when the ledger cannot be used. Every error is a :class:`~wan_nb.errors.WanError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import os

    import pandas as pd

    from wan_nb.store_video import VideoCheck

__all__ = ["LEDGER_MEMBERS", "CreateOutcome", "Ledger", "Run"]

#: one run as a ledger returns it (see the module docstring)
Run = dict[str, Any]
#: what :meth:`Ledger.begin_create` decided
CreateOutcome = Literal["started", "busy", "full", "gone"]


@runtime_checkable
class Ledger(Protocol):
    """The durable record of every generation run (see the module docstring for the rules
    all members keep: run dicts, all-or-nothing writes, errors)."""

    # -- where it is and what it allows ---------------------------------------------------

    @property
    def root(self) -> Path:
        """The folder the runs' ``video_path`` values are relative to (downloaded videos
        live under it; thumbnails and the embedded emulator's data are kept beside them)."""
        ...

    @property
    def read_only(self) -> bool:
        """True when this process may read the ledger but not write it: every write then
        raises :class:`~wan_nb.store_table.StoreReadOnly`, reads work."""
        ...

    # -- recording runs -------------------------------------------------------------------

    def insert_run(self, **fields: Any) -> str:
        """Record one new run (status QUEUED unless given) and return its new ``run_id``
        (unique in the ledger, time-sortable). ``created_at`` and ``updated_at`` default to
        the ledger's now. Unknown fields or bad values: ValidationError, nothing written;
        a ``task_id`` already recorded: ValidationError."""
        ...

    def insert_run_once(self, *, reuse_unless: Sequence[str] = (),
                        always_reuse_codes: Sequence[str] = (),
                        **fields: Any) -> tuple[str, bool]:
        """Record a run unless one with the same ``experiment``, ``fingerprint`` and
        ``backend`` exists, as one atomic step across processes (two kernels running the same
        cell create it once). Runs whose status is in ``reuse_unless`` do not count, unless
        their ``error_code`` is in ``always_reuse_codes``. Returns ``(run_id, created)``: the
        new run and True, or the newest matching run and False. No ``fingerprint``:
        ValidationError."""
        ...

    def update_run(self, run_id: str, /, **fields: Any) -> None:
        """Set fields of one run (and ``updated_at``) atomically, whatever its status.
        RunNotFound if absent; ValidationError for bad fields (nothing written)."""
        ...

    def transition(self, run_id: str, /, *, expect: str | Sequence[str],
                   **fields: Any) -> bool:
        """Compare-and-set: apply ``fields`` only if the run's status is now in ``expect``,
        atomically; of processes racing on one run exactly one gets True. False when the
        status was another; RunNotFound if absent; ValidationError for unknown statuses."""
        ...

    def begin_create(self, run_id: str, /, *, sent_at: datetime,
                     max_age: timedelta = ..., limit: int | None = None,
                     stale_after: float = 30.0) -> tuple[CreateOutcome, str | None]:
        """Move a QUEUED run to SUBMITTING (recording ``sent_at``) unless another run of the
        same backend, model and prompt, created within ``max_age`` (default 24 h), is
        SUBMITTING; check and move are one atomic step across processes, so at most one
        create per key is ever unresolved. Returns ``("started", None)``, ``("busy",
        run_id_of_the_blocking_run)`` or ``("gone", None)`` (the run is no longer QUEUED).
        RunNotFound if absent.

        Tasks at once, held across kernels (``limit``: the model's concurrency; None: no
        hold). A run is *live* when its ``owner_heartbeat`` is within ``stale_after`` s of
        now (a dead kernel's runs stop counting). When a live run of another owner (``owner``
        differs from this run's) of the same backend and model, created within ``max_age``,
        is unfinished (QUEUED, SUBMITTING, PENDING or RUNNING), and ``limit`` or more live
        runs of that backend and model are in flight (SUBMITTING, PENDING or RUNNING), the
        run does not move and the answer is ``("full", None)``: try again when a task ends.
        A kernel alone on a model is not held (the service queues past its limit, as before).
        The count and the move are the same atomic step as the rest."""
        ...

    # -- the account's shared pace (one scheduler per account across kernels) ----------------

    def take_slots(self, account: str, name: str, *, interval: float,
                   count: int = 1) -> float:
        """Reserve ``count`` turns of the pace ``name`` of ``account`` (e.g. ``"create:<model>"``
        spaced ``1/submissions_per_s``, ``"query"`` spaced ``1/rate``), ``interval`` s apart,
        after every turn any process reserved before; returns the seconds from now until the
        first turn (0.0: now; the others follow at ``interval``). A pace whose last turn is
        past starts now (unused past turns are not saved up). Atomic across processes: no two
        reservations share a turn. The ledger's own clock decides (callers only ever see
        a delay, so their clocks need not agree). ValidationError unless ``interval > 0``
        and ``1 <= count <= 100``; an account or name over 200 characters: ValidationError."""
        ...

    def rename_backend(self, old: str, new: str) -> int:
        """File every run recorded under backend ``old`` under ``new``, in one transaction;
        returns how many runs changed."""
        ...

    # -- ownership (which kernel looks after a run) -----------------------------------------

    def claim(self, run_id: str, owner: str, *, stale_after: float = 30.0,
              dead_owner: str | None = None) -> bool:
        """Take a run for ``owner`` if it is unowned, already ``owner``'s, its owner's
        heartbeat is older than ``stale_after`` seconds, or its owner is still ``dead_owner``
        (a kernel the caller found dead: taken whatever its last heartbeat, but never from
        another claimant that took it meanwhile); then the heartbeat is set to now. Atomic,
        so of racing claimants one wins. Returns whether ``owner`` now owns it. RunNotFound
        if absent."""
        ...

    def release(self, run_id: str, owner: str) -> bool:
        """Clear the run's owner if ``owner`` holds it; returns whether it did."""
        ...

    def heartbeat(self, owner: str) -> int:
        """Set the heartbeat of every run ``owner`` holds to now, in one transaction;
        returns how many."""
        ...

    # -- reading runs ---------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        """One run; RunNotFound if absent."""
        ...

    def runs(self, *, experiment: str | None = None, status: str | Sequence[str] | None = None,
             fingerprint: str | None = None, task_id: str | None = None,
             run_ids: Iterable[str] | None = None) -> list[Run]:
        """The runs matching every filter given (``status`` one or several; ``run_ids`` any
        number, unknown ids ignored), oldest first (creation order). A filtered call reads
        only the matching runs. ValidationError for an unknown status."""
        ...

    def unfinished(self, *, max_age: timedelta = ...) -> list[Run]:
        """Runs created within ``max_age`` (default 24 h, how long the service keeps tasks)
        that a restarted poller must still look after, oldest first: not in a final status,
        or SUCCEEDED with neither a video file nor a download error."""
        ...

    def to_dataframe(self, *, experiment: str | None = None,
                     run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The runs (all, or those filtered) as the typed frame indexed by ``run_id`` that
        :func:`wan_nb.store_table.typed_frame` defines; an empty ledger gives an empty frame
        with the same dtypes."""
        ...

    # -- targeted reads for reconciling an ambiguous create --------------------------------
    # Each reads only the runs of its key and time window (indexed), never the whole ledger.

    def known_task_ids(self, backend: str, *, since: datetime) -> set[str]:
        """Task ids recorded for runs of ``backend`` created at or after ``since``."""
        ...

    def unresolved_creates(self, backend: str, model: str, *, exclude: str | None = None,
                           max_age: timedelta = ...) -> int:
        """How many runs of ``backend`` and ``model``, created within ``max_age`` (default
        24 h), are SUBMITTING (a create in flight or not yet reconciled), in any process;
        the run ``exclude`` aside."""
        ...

    def ambiguous_siblings(self, run_id: str, /, *, window: timedelta) -> int:
        """How many other runs of this run's backend, model and prompt have no task and an
        unresolved (SUBMITTING) or given-up (``error_code`` AmbiguousCreate) create sent
        within ``window`` of this run's ``sent_at`` (0 when it has none): runs whose tasks
        cannot be told apart from this one's. RunNotFound if absent."""
        ...

    # -- downloaded videos ----------------------------------------------------------------

    def new_video_path(self, run_id: str, suffix: str = ".mp4") -> Path:
        """Where a run's video is to be downloaded (under :attr:`root`); nothing is made."""
        ...

    def video_file(self, run: str | Run) -> Path | None:
        """The absolute path of a run's downloaded video (``run`` a run_id or a run), or None
        when none was recorded; the file may since have gone (see :meth:`check_video`)."""
        ...

    def check_video(self, run: str | Run, *, full: bool = False) -> VideoCheck:
        """Is the run's video still the file that was downloaded? Cheap (size and mtime)
        unless ``full`` or the mtime moved (then hashed). Never raises for a missing or
        damaged file: the :class:`~wan_nb.store_video.VideoCheck` says so."""
        ...

    def verify(self, experiment: str | None = None, *, full: bool = False) -> pd.DataFrame:
        """:meth:`check_video` for every run (of ``experiment``) that has or should have a
        video: a frame indexed by ``run_id`` with ``status``, ``video_path``, ``state``,
        ``ok`` and ``problem``."""
        ...

    def export_bundle(self, path: str | os.PathLike[str], *,
                      experiment: str | None = None) -> Path:
        """Write a shareable ``.zip`` (runs table, videos, manifest with every request) and
        return its path; ValidationError unless ``path`` ends in ``.zip``."""
        ...


#: the names a ledger must provide (a test checks them against the store and the package)
LEDGER_MEMBERS = frozenset(n for n in vars(Ledger) if not n.startswith("_"))
