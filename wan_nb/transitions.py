"""The job state machine, pure: what an answer (or a failure) means for a run.

Each ``on_*`` function takes the run's ledger record (a mapping, as the store returns it), what
happened (a service answer, or a failure :func:`classify` has sorted), the poller's per-run
:class:`Counters`, ``now`` (aware UTC) and the poll policy, and returns a :class:`Decision`:
the ledger fields to write and what to do next. Nothing here reads a clock, draws a random
number, sleeps or touches the network or the disk; the poller (:mod:`wan_nb.poller`) carries
the decisions out.

How the poller applies a decision, in this order:

1. ``write`` (if any) to the ledger, through ``_finish`` when ``final`` (release the run, wake
   its waiters), else ``_update``; a ``final`` decision with an empty ``write`` only wakes the
   waiters (the ledger already says the run is finished).
2. ``counters`` and ``skew`` into the run's bookkeeping.
3. the next steps: ``poll_in`` (a fixed delay) or ``poll_on_schedule`` (the policy's interval,
   computed on the record *as written*: it depends on ``scheduled_time`` and ``skew``),
   ``download`` (after ``download_in``, first fetching a fresh URL when ``refresh_url``),
   ``learn`` (the run time, read from the record as written), ``requeue_in`` (SUBMITTING back to
   QUEUED), ``queue_in`` (a QUEUED run into the create queue), ``pace_model`` (no create of the
   model before ``requeue_in``), ``reconcile_in`` (find an ambiguous create's task),
   ``watch`` (follow a run another kernel owns).

>>> import datetime as dt
>>> from wan_nb.jobs import PollPolicy
>>> from wan_nb.wire import parse_task
>>> row = {"status": "RUNNING", "task_id": "t1", "model": "wan2.5-t2v-preview",
...        "size": "832*480", "created_at": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)}
>>> state = parse_task({"output": {"task_id": "t1", "task_status": "CANCELED"}})
>>> d = on_task_state(row, state, Counters(), row["created_at"], PollPolicy())
>>> d.write["status"], d.final
('CANCELED', True)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from . import catalog
from .errors import (AmbiguousCreateError, APIError, DownloadError, TaskExpired,
                     ThrottledError, TransportError, ValidationError, WanError)
from .statuses import ACTIVE_SERVICE, FINAL_STATUSES, SERVICE_STATUSES
from .wire import TaskState, TaskSummary

Row = Mapping[str, Any]

#: a query answer saying UNKNOWN is believed at this many (one right after a create can be
#: replica lag), or once the task is older than the service's 24 h
UNKNOWN_BELIEVED_AT = 3
#: background steps of one run that may fail unexpectedly before a run that sent nothing is
#: given up (REJECTED) or a paid video is left for ``job.retry_download()``
MAX_FAILURES = 5


class Policy(Protocol):
    """The knobs of the poll policy (``PollPolicy``) these decisions read."""

    @property
    def floor(self) -> float: ...
    @property
    def max_unrecognized(self) -> int: ...
    @property
    def download_rounds(self) -> int: ...
    @property
    def reconcile_after(self) -> float: ...
    @property
    def reconcile_give_up(self) -> float: ...


@dataclass(frozen=True)
class Counters:
    """The poller's per-run bookkeeping these decisions read and advance."""

    unknown: int = 0  # UNKNOWN answers so far (believed at the third)
    unrecognized: int = 0  # answers in a row with a status this version does not know
    download_tries: int = 0  # download rounds that failed
    reconcile_tries: int = 0  # list checks that found no task for an ambiguous create
    failures: int = 0  # background steps of this run that failed unexpectedly


@dataclass(frozen=True)
class Decision:
    """What to write for a run and what to do next (see the module docstring for the order)."""

    counters: Counters
    reason: str  # for logs; the exact text to log for a requeue
    write: Mapping[str, Any] = field(default_factory=dict)
    final: bool = False
    poll_in: float | None = None
    poll_on_schedule: bool = False
    download: bool = False
    download_in: float = 0.0
    refresh_url: bool = False
    learn: bool = False
    requeue_in: float | None = None
    queue_in: float | None = None
    pace_model: bool = False
    reconcile_in: float | None = None
    watch: bool = False
    skew: float | None = None  # the service's clock minus ours (s), newly measured


FailureKind = Literal["expired", "ambiguous", "transport", "throttled", "server", "api",
                      "download", "value", "os", "wan", "unexpected"]


@dataclass(frozen=True)
class Failure:
    """An exception, sorted by its type and attributes (never by its message text).

    ``kind``: ``expired`` (TaskExpired), ``ambiguous`` (AmbiguousCreateError), ``transport``
    (other TransportError), ``throttled`` (ThrottledError), ``server`` (a retryable APIError:
    408, 5xx), ``api`` (other APIError), ``download`` (DownloadError), ``value`` (ValueError,
    ValidationError included), ``os`` (OSError, JobTimeout included), ``wan`` (any other
    WanError), ``unexpected`` (anything else: a bug). ``wan_error``: a WanError (refused by
    wan_nb or the service), not a bug. ``text`` is ``str(exc)``, ``name`` its type's name.
    """

    kind: FailureKind
    name: str
    text: str
    wan_error: bool = False
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    status: int | None = None
    retryable: bool = False
    retry_after: float | None = None
    sent_at: dt.datetime | None = None

    @property
    def why(self) -> str:
        return f"{self.name}: {self.text}"


def classify(exc: BaseException) -> Failure:
    """Sort ``exc`` into a :class:`Failure` by type, error code and attributes."""
    name, text, wan = type(exc).__name__, str(exc), isinstance(exc, WanError)
    if isinstance(exc, TaskExpired):
        return Failure("expired", name, text, wan)
    if isinstance(exc, AmbiguousCreateError):
        return Failure("ambiguous", name, text, wan, retryable=True, sent_at=exc.sent_at)
    if isinstance(exc, TransportError):
        return Failure("transport", name, text, wan, retryable=True)
    if isinstance(exc, APIError):
        kind: FailureKind = ("throttled" if isinstance(exc, ThrottledError)
                             else "server" if exc.retryable else "api")
        return Failure(kind, name, text, wan, code=exc.code, message=exc.message,
                       request_id=exc.request_id, status=exc.status, retryable=exc.retryable,
                       retry_after=getattr(exc, "retry_after", None))
    if isinstance(exc, DownloadError):
        return Failure("download", name, text, wan, status=exc.status,
                       retryable=exc.retryable)
    if isinstance(exc, ValueError):
        return Failure("value", name, text, wan)
    if isinstance(exc, OSError):
        return Failure("os", name, text, wan)
    return Failure("wan" if wan else "unexpected", name, text, wan)


def _failure(f: Failure | BaseException) -> Failure:
    return f if isinstance(f, Failure) else classify(f)


def is_done(row: Row) -> bool:
    """Nothing more will happen to this run: a final status, and for SUCCEEDED its video
    downloaded or its download given up (``download_error``)."""
    status = row["status"]
    if status == "SUCCEEDED":
        return row.get("video_path") is not None or row.get("download_error") is not None
    return status in FINAL_STATUSES


def _sent(row: Row) -> dt.datetime:
    return row.get("sent_at") or row["created_at"]


# -- polling -----------------------------------------------------------------------------------
def on_task_state(row: Row, state: TaskState, counters: Counters, now: dt.datetime,
                  policy: Policy) -> Decision:
    """A query answer for a polled run (``JobManager._apply``)."""
    if is_done(row):
        # BUG?: a SUCCEEDED run whose download is still on its way is not done, so a stale
        # PENDING/RUNNING answer would be written over it (the poller never queries it, so
        # this needs a query already in flight); likewise a stale PENDING after RUNNING.
        return Decision(counters, "stale: the run is finished")
    status = state.status
    output = state.raw.get("output")
    if status == "UNKNOWN" and not (isinstance(output, dict) and output.get("task_status")):
        # a malformed answer (no status; `"output": null` included) is not the service
        # forgetting the task: counted as unrecognized, never raised (it once stalled the
        # whole poll pass, every cycle, while the run stayed due)
        status = "no status"
    if status == "UNKNOWN":
        # BUG?: never reset by a later PENDING/RUNNING answer: three UNKNOWNs spread over a
        # run (not in a row) are believed
        counters = replace(counters, unknown=counters.unknown + 1)
        if (counters.unknown < UNKNOWN_BELIEVED_AT
                and now - _sent(row) < catalog.TASK_TTL):
            # one UNKNOWN right after a create can be replica lag: ask again
            return Decision(counters, "UNKNOWN not believed yet",
                            poll_in=max(policy.floor, 2.0))
    if status not in SERVICE_STATUSES:
        counters = replace(counters, unrecognized=counters.unrecognized + 1)
        if counters.unrecognized >= policy.max_unrecognized:
            return Decision(counters, "unrecognized status", final=True, write={
                "status": "UNKNOWN", "error_code": "UnrecognizedStatus",
                "error_message": f"the service kept answering status {status!r}, which this "
                                 "wan_nb version does not know"})
        return Decision(counters, "unrecognized status", poll_on_schedule=True)
    counters = replace(counters, unrecognized=0)
    fields: dict[str, Any] = {"status": status}
    for name in ("submit_time", "scheduled_time", "end_time", "actual_prompt"):
        value = getattr(state, name)
        if value is not None:
            fields[name] = value
    skew = None
    if state.submit_time is not None and row.get("sent_at") is not None:
        skew = (state.submit_time - row["sent_at"]).total_seconds()
    if state.code or state.message:
        fields.update(error_code=state.code, error_message=state.message)
    if state.usage is not None:
        fields.update(state.usage.columns(row.get("model")), usage_json=dict(state.usage.raw))
        seconds = state.usage.seconds
        price = _price_per_second(row)
        if seconds is not None and price is not None:
            fields["cost_usd"] = round(price * seconds, 6)
    if state.video_url:
        fields.update(video_url=state.video_url, video_url_expires_at=state.video_expires_at)
    if status == "UNKNOWN":
        fields.update(error_code="UNKNOWN", error_message=(
            f"the service no longer knows task {row.get('task_id')}: task ids and results "
            "expire 24 hours after creation"))
    if status in ("FAILED", "CANCELED", "UNKNOWN"):
        if status == "FAILED":
            fields["cost_usd"] = 0.0  # failed tasks are not billed
        return Decision(counters, status, write=fields, final=True, skew=skew)
    if status == "SUCCEEDED":
        return Decision(counters, status, write=fields, download=True, learn=True, skew=skew)
    return Decision(counters, status, write=fields, poll_on_schedule=True, skew=skew)


def _price_per_second(row: Row) -> float | None:
    """The run's price, by its resolution (either protocol; a row from before the ledger had
    one, by its size), or None when none is known: the estimate recorded at submit stays."""
    asked = row.get("resolution") or row.get("size")
    if not asked:
        return None
    try:
        return catalog.price_per_second(row["model"], asked)
    except ValidationError:  # a model (or a size) this version no longer knows
        return None


def on_list_summary(row: Row, summary: TaskSummary, counters: Counters) -> Decision:
    """A list row whose status is not final (``JobManager._apply_summary``; a final one gets a
    detail query and :func:`on_task_state`)."""
    if is_done(row) or row["status"] not in ACTIVE_SERVICE:
        return Decision(counters, "stale: older than a cancel or a final state")
    fields: dict[str, Any] = {}
    if summary.status != row["status"] and summary.status in ACTIVE_SERVICE:
        fields["status"] = summary.status
        if summary.status == "RUNNING" and summary.started is not None:
            fields["scheduled_time"] = summary.started
    # BUG?: a status this version does not know, in the list, is polled on forever (it never
    # counts towards max_unrecognized: only a detail query does)
    return Decision(counters, summary.status, write=fields, poll_on_schedule=True)


def on_query_failure(counters: Counters, policy: Policy) -> Decision:
    """A query that got no answer (APIError or TransportError): ask again a little later."""
    return Decision(counters, "query failed", poll_in=policy.floor * 4)


# -- creating ----------------------------------------------------------------------------------
def on_created(state: TaskState, counters: Counters) -> Decision:
    """The create's answer: record the task and poll it on schedule."""
    # BUG?: a create answered SUCCEEDED/FAILED (the service always says PENDING) would be
    # written with _update: never polled, downloaded or finished
    return Decision(counters, "created", write={
        "task_id": state.task_id, "request_id": state.request_id,
        "status": state.status if state.status in SERVICE_STATUSES else "PENDING"},
        poll_on_schedule=True)


def on_create_failure(failure: Failure | BaseException, counters: Counters,
                      policy: Policy) -> Decision | None:
    """A create that raised. None: not a create failure (a bug); let it propagate (the
    poller then recovers the step: :func:`on_recover`)."""
    f = _failure(failure)
    if f.kind == "ambiguous":
        return Decision(counters, "ambiguous create",
                        write={"sent_at": f.sent_at} if f.sent_at is not None else {},
                        reconcile_in=policy.reconcile_after)
    if f.kind == "throttled":
        wait = f.retry_after if f.retry_after is not None else 1.0
        return Decision(counters, f.text, requeue_in=wait, pace_model=True)
    if f.kind == "transport":
        return Decision(counters, f.why, requeue_in=2.0)
    if f.kind == "server":
        return Decision(counters, f.text, requeue_in=2.0)
    if f.kind == "api":
        return Decision(counters, "refused by the service", final=True, write={
            "status": "REJECTED", "error_code": f.code, "error_message": f.message,
            "request_id": f.request_id})
    if f.wan_error or f.kind == "os":  # refused here (no key, unreadable audio file...)
        return Decision(counters, "refused by wan_nb", final=True, write={
            "status": "REJECTED", "error_code": f.name, "error_message": f.text})
    return None


def on_reconcile(row: Row, found: TaskSummary | Failure | BaseException | None,
                 counters: Counters, now: dt.datetime, policy: Policy) -> Decision:
    """One reconcile pass of an ambiguous create: ``found`` is the task the list showed, None
    when it showed none, or what ``find_created_task`` raised. ``reconcile_in`` None: decided
    (stop); otherwise look again after it."""
    sent_at = row.get("sent_at") or now
    age = (now - sent_at).total_seconds()
    again = policy.reconcile_after
    if isinstance(found, TaskSummary):
        # PENDING until the next poll reads the task's real state
        return Decision(counters, "found", write={"task_id": found.task_id,
                                                  "status": "PENDING"}, poll_in=0.0)
    if found is not None:
        f = _failure(found)
        if f.kind == "ambiguous" and age > policy.reconcile_give_up:
            return Decision(counters, "undecided: given up", final=True, write={
                "status": "FAILED", "error_code": "AmbiguousCreate",
                "error_message": f"after {age / 60:.0f} minutes wan_nb still could not tell "
                                 f"which listed task this run's create made ({f.text}); "
                                 "nothing was sent again, so nothing was paid twice"})
        return Decision(counters, "undecided" if f.kind == "ambiguous" else f.why,
                        reconcile_in=again)
    counters = replace(counters, reconcile_tries=counters.reconcile_tries + 1)
    if counters.reconcile_tries >= 2 and age > 2 * policy.reconcile_after:
        # two list checks, the last well after the create's answer was due, found no task:
        # none was made, so sending it again cannot pay twice
        return Decision(counters, "ambiguous create made no task", requeue_in=0.0)
    return Decision(counters, "no task listed yet", reconcile_in=again)


# -- downloading -------------------------------------------------------------------------------
def on_url_refresh(state: TaskState | None, counters: Counters) -> Decision:
    """Before a retried download, the task asked again (None: that query failed)."""
    if state is not None and state.status == "SUCCEEDED" and state.video_url:
        return Decision(counters, "fresh URL", write={
            "video_url": state.video_url, "video_url_expires_at": state.video_expires_at})
    return Decision(counters, "no fresh URL")


def on_download_start(row: Row, counters: Counters) -> Decision | None:
    """None: download ``row["video_url"]``; otherwise there is nothing to download."""
    if row.get("video_url"):
        return None
    return Decision(counters, "no video_url", final=True, write={
        "download_error": "the service reported success without a video_url"})


def on_download_failure(row: Row, failure: Failure | BaseException, counters: Counters,
                        now: dt.datetime, policy: Policy) -> Decision | None:
    """A download (or the probe of its file) that raised. None: not a download failure (let
    it propagate: :func:`on_recover`)."""
    f = _failure(failure)
    if f.kind == "expired":
        return Decision(counters, "URL expired", final=True, write={
            "status": "EXPIRED", "download_error": f.text, "error_code": "ResultExpired",
            "error_message": "the video was not downloaded within the service's 24 hours "
                             "and is gone"})
    if f.kind not in ("download", "transport", "ambiguous", "value", "os"):
        return None
    counters = replace(counters, download_tries=counters.download_tries + 1)
    expires = row.get("video_url_expires_at")
    valid = expires is None or expires > now + dt.timedelta(minutes=1)
    transient = f.kind in ("transport", "ambiguous") or f.kind == "download" and f.retryable
    if transient and valid and counters.download_tries < policy.download_rounds:
        # the paid video is still there: try again later, with backoff
        delay = min(300.0, 5.0 * 2 ** (counters.download_tries - 1))
        return Decision(counters, f"download failed ({f.text}); again in {delay:.0f} s",
                        download=True, download_in=delay, refresh_url=True)
    return Decision(counters, "download given up", final=True,
                    write={"download_error": f.why})


# -- looking after a run -----------------------------------------------------------------------
def on_adopt(row: Row, counters: Counters) -> Decision:
    """This kernel starts looking after a run (``JobManager._adopt``)."""
    status = row["status"]
    if status == "QUEUED":
        # the poller leaves the run's not_before as it is: 0 for a new run
        return Decision(counters, "queued", queue_in=0.0)
    if status == "SUBMITTING":
        return Decision(counters, "resumed mid-create: reconcile first", reconcile_in=0.0)
    if status == "SUCCEEDED" and not is_done(row):
        return Decision(counters, "download", download=True, refresh_url=True)
    if status in ACTIVE_SERVICE:
        return Decision(counters, "poll", poll_in=0.0)
    return Decision(counters, "nothing to do")


def on_settle(row: Row, counters: Counters, owner: str, policy: Policy, *,
              reconciling: bool = False) -> Decision:
    """The ledger changed a run behind this kernel's back (its create found it gone:
    ``JobManager._settle``); ``row`` as read again, ``owner`` this kernel's."""
    if is_done(row):
        return Decision(counters, "finished elsewhere", final=True)
    if row.get("owner") not in (None, owner):
        return Decision(counters, "another kernel's", watch=True)
    if row["status"] == "SUBMITTING" and not reconciling:
        # ours now, mid-create elsewhere: find its task rather than wait for an answer that
        # will never come here
        return Decision(counters, "taken over mid-create", reconcile_in=policy.reconcile_after)
    if row["status"] in ACTIVE_SERVICE and row.get("task_id"):
        return Decision(counters, "poll", poll_in=0.0)
    return Decision(counters, "nothing to do")


def on_recover(row: Row, failure: Failure | BaseException, counters: Counters, *,
               reconciling: bool = False) -> Decision:
    """A background step of an unfinished run raised unexpectedly (``JobManager._recover``):
    ``row`` as read again after it. Never leave it hanging, never give up a task that may be
    paid: a create that may have left is reconciled, a created task polled, a succeeded one
    downloaded again later; only a run that sent nothing ends (REJECTED), after repeated
    failures."""
    counters = replace(counters, failures=counters.failures + 1)
    delay = min(60.0, 2.0 * 2 ** min(counters.failures, 5))
    why, status = _failure(failure).why, row["status"]
    again = counters.failures < MAX_FAILURES
    if is_done(row):
        # the step failed after the run's final write (releasing it, say): nothing to redo
        return Decision(counters, "finished meanwhile")
    if status == "SUBMITTING":
        if reconciling:
            return Decision(counters, "being reconciled")
        return Decision(counters, "reconcile", reconcile_in=delay)
    if status == "QUEUED" and again:
        return Decision(counters, "queue again", queue_in=delay)
    if status == "QUEUED":
        return Decision(counters, "cannot submit", final=True, write={
            "status": "REJECTED", "error_code": "InternalError",
            "error_message": f"wan_nb could not submit it ({why}); nothing was sent"})
    if status in ACTIVE_SERVICE and row.get("task_id"):
        return Decision(counters, "poll later", poll_in=delay)
    if status == "SUCCEEDED" and again:
        return Decision(counters, "download later", download=True, download_in=delay)
    if status == "SUCCEEDED":
        return Decision(counters, "cannot record the video", final=True, write={
            "download_error": f"wan_nb could not record the video ({why}); "
                              "job.retry_download() tries again"})
    return Decision(counters, "nothing to do")


# -- cancelling --------------------------------------------------------------------------------
def on_cancel_answer(row: Row, failure: Failure | BaseException | None,
                     counters: Counters) -> Decision | None:
    """The answer to a cancel of a PENDING run's task (``JobManager._cancel_task``): None
    (no failure) means the service cancelled it. A refusal (it started meanwhile) or no
    answer: poll now, the next answer records its state. None: not a cancel failure."""
    if failure is None:
        if is_done(row):
            return Decision(counters, "already finished")
        # the service only cancels PENDING tasks, and cancelled tasks are not billed
        return Decision(counters, "cancelled", final=True,
                        write={"status": "CANCELED", "cost_usd": 0.0})
    f = _failure(failure)
    if f.kind in ("throttled", "server", "api", "transport", "ambiguous"):
        return Decision(counters, f"cancel failed: {f.text}", poll_in=0.0)
    return None
