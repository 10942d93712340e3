"""The pure job state machine: every run status against every answer, and each decision the
poller takes on a failure, as tables."""

from __future__ import annotations

import ast
import datetime as dt
import doctest
import pathlib
from dataclasses import replace
from typing import Any

import pytest

from wan_nb import transitions as tr
from wan_nb.errors import (AmbiguousCreateError, DownloadError, JobTimeout, TaskExpired,
                           TransportError, ValidationError, WanError)
from wan_nb.jobs import PollPolicy
from wan_nb.statuses import FINAL_STATUSES, STATUSES
from wan_nb.store_table import StoreError
from wan_nb.transitions import Counters, Decision
from wan_nb.wire import TaskSummary, api_error, format_time, parse_task

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 10, 23, 4, 0, 0, tzinfo=UTC)
SENT = NOW - dt.timedelta(seconds=60)
P = PollPolicy()
C0 = Counters()
URL = f"https://oss.example/v.mp4?Expires={int((NOW + dt.timedelta(hours=20)).timestamp())}"


def record(status: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": "r1", "status": status, "model": "wan2.5-t2v-preview", "size": "832*480",
        "duration": 5, "created_at": SENT - dt.timedelta(seconds=1), "sent_at": SENT,
        "task_id": None if status in ("QUEUED", "SUBMITTING", "REJECTED") else "t1",
        "video_url": None, "video_url_expires_at": None, "video_path": None,
        "download_error": None, "owner": "me"}
    if status == "SUCCEEDED":  # finished: its video is on disk
        row.update(video_url=URL, video_path="videos/r1.mp4")
    row.update(extra)
    return row


def answer(status: str | None, **output: Any) -> Any:
    out: dict[str, Any] = {"task_id": "t1", **output}
    if status is not None:
        out["task_status"] = status
    body: dict[str, Any] = {"request_id": "q1", "output": out}
    if status == "SUCCEEDED":
        body["usage"] = {"video_count": 1, "video_duration": 5, "video_ratio": "832*480"}
    return parse_task(body)


SUBMIT = format_time(SENT + dt.timedelta(seconds=2))
SCHED = format_time(SENT + dt.timedelta(seconds=10))
END = format_time(SENT + dt.timedelta(seconds=50))
ANSWERS = {
    "PENDING": answer("PENDING", submit_time=SUBMIT),
    "RUNNING": answer("RUNNING", submit_time=SUBMIT, scheduled_time=SCHED),
    "SUCCEEDED": answer("SUCCEEDED", submit_time=SUBMIT, scheduled_time=SCHED, end_time=END,
                        video_url=URL, actual_prompt="a fox, rewritten"),
    "FAILED": answer("FAILED", submit_time=SUBMIT, code="DataInspectionFailed",
                     message="inappropriate"),
    "CANCELED": answer("CANCELED", submit_time=SUBMIT),
    "UNKNOWN": answer("UNKNOWN"),
    "PAUSED": answer("PAUSED", submit_time=SUBMIT),  # a status this version does not know
    "malformed": answer(None),  # no task_status at all
}

# what a fresh (not finished) run makes of each answer, with fresh counters:
# (status written, final, poll_in, poll_on_schedule, download, counters after)
EXPECT: dict[str, tuple[str | None, bool, float | None, bool, bool, Counters]] = {
    "PENDING": ("PENDING", False, None, True, False, C0),
    "RUNNING": ("RUNNING", False, None, True, False, C0),
    "SUCCEEDED": ("SUCCEEDED", False, None, False, True, C0),
    "FAILED": ("FAILED", True, None, False, False, C0),
    "CANCELED": ("CANCELED", True, None, False, False, C0),
    "UNKNOWN": (None, False, 2.0, False, False, Counters(unknown=1)),  # not believed yet
    "PAUSED": (None, False, None, True, False, Counters(unrecognized=1)),
    "malformed": (None, False, None, True, False, Counters(unrecognized=1)),
}

# every status a run can have, plus a SUCCEEDED run whose download is still on its way
ROWS = {s: record(s) for s in STATUSES}
ROWS["SUCCEEDED downloading"] = record("SUCCEEDED", video_path=None)


def done_after(row: dict[str, Any], d: Decision) -> bool:
    return tr.is_done({**row, **d.write})


@pytest.mark.parametrize("row_name", list(ROWS))
@pytest.mark.parametrize("answer_name", list(ANSWERS))
def test_every_status_against_every_answer(row_name: str, answer_name: str) -> None:
    row = ROWS[row_name]
    d = tr.on_task_state(row, ANSWERS[answer_name], C0, NOW, P)
    if tr.is_done(row):  # a stale answer never undoes a final state
        assert d == Decision(C0, d.reason)
        return
    status, final, poll_in, scheduled, download, counters = EXPECT[answer_name]
    assert d.write.get("status") == status
    assert (d.final, d.poll_in, d.poll_on_schedule, d.download, d.learn, d.counters) == \
        (final, poll_in, scheduled, download, download, counters)
    assert d.final == done_after(row, d)  # final exactly when the written run is finished
    assert d.requeue_in is d.queue_in is d.reconcile_in is None and not d.refresh_url


@pytest.mark.parametrize("status", FINAL_STATUSES)
@pytest.mark.parametrize("counters", [C0, Counters(unknown=2, unrecognized=4)])
def test_a_stale_answer_never_undoes_a_final_state(status: str, counters: Counters) -> None:
    row = record(status, error_code="X")
    for state in ANSWERS.values():
        d = tr.on_task_state(row, state, counters, NOW, P)
        assert (d.write, d.final, d.poll_in, d.poll_on_schedule, d.download, d.counters) == \
            ({}, False, None, False, False, counters)
    for s in ("PENDING", "RUNNING"):
        summary = TaskSummary("t1", s, None, None, SENT, None, None, None)
        assert tr.on_list_summary(row, summary, counters) == Decision(
            counters, "stale: older than a cancel or a final state")


UNKNOWN_MSG = ("the service no longer knows task t1: task ids and results expire 24 hours "
               "after creation")


@pytest.mark.parametrize("unknown_before, age, believed", [
    (0, dt.timedelta(minutes=1), False),  # one UNKNOWN right after a create: replica lag
    (1, dt.timedelta(minutes=1), False),
    (2, dt.timedelta(minutes=1), True),  # the third answer is believed
    (0, dt.timedelta(hours=23, minutes=59), False),
    (0, dt.timedelta(hours=24), True),  # past the 24 h TTL: believed at once
    (5, dt.timedelta(minutes=1), True),
])
def test_unknown_needs_three_answers_or_the_ttl(unknown_before: int, age: dt.timedelta,
                                                believed: bool) -> None:
    row = record("RUNNING", sent_at=NOW - age)
    d = tr.on_task_state(row, ANSWERS["UNKNOWN"], Counters(unknown=unknown_before), NOW, P)
    assert d.counters.unknown == unknown_before + 1
    if believed:
        assert d.final and d.write == {"status": "UNKNOWN", "error_code": "UNKNOWN",
                                       "error_message": UNKNOWN_MSG}
    else:
        assert (d.write, d.final, d.poll_in) == ({}, False, 2.0)


def test_unknown_retry_waits_at_least_the_floor_and_the_age_falls_back_to_created_at() -> None:
    row = record("PENDING", sent_at=None, created_at=NOW - dt.timedelta(hours=25))
    assert tr.on_task_state(row, ANSWERS["UNKNOWN"], C0, NOW, P).final
    d = tr.on_task_state(record("PENDING"), ANSWERS["UNKNOWN"], C0, NOW, replace(P, floor=5.0))
    assert d.poll_in == 5.0


def test_unknown_answers_are_counted_across_other_answers() -> None:
    """Current behaviour (BUG? in transitions.py): a RUNNING answer between UNKNOWNs does
    not reset the count, so three UNKNOWNs spread over a run are believed."""
    d = tr.on_task_state(record("PENDING"), ANSWERS["RUNNING"], Counters(unknown=2), NOW, P)
    assert d.counters.unknown == 2


@pytest.mark.parametrize("name, before, final", [
    ("PAUSED", 0, False), ("PAUSED", 3, False), ("PAUSED", 4, True),
    ("malformed", 4, True),  # an answer without task_status is unrecognized, not UNKNOWN
])
def test_an_unrecognized_status_ends_the_run_at_max_unrecognized(name: str, before: int,
                                                                 final: bool) -> None:
    d = tr.on_task_state(record("RUNNING"), ANSWERS[name], Counters(unrecognized=before),
                         NOW, P)
    assert d.counters.unrecognized == before + 1
    shown = "PAUSED" if name == "PAUSED" else "no status"
    if final:
        assert d.final and d.write == {
            "status": "UNKNOWN", "error_code": "UnrecognizedStatus",
            "error_message": f"the service kept answering status {shown!r}, which this "
                             "wan_nb version does not know"}
    else:
        assert (d.write, d.poll_on_schedule) == ({}, True)


@pytest.mark.parametrize("raw", [{"output": None}, {"output": "busy"}, {"output": []}, {}])
def test_an_answer_without_an_output_object_is_unrecognized_never_raised(raw: dict) -> None:
    """`"output": null` once raised AttributeError, failing the whole poll pass every cycle
    while the run stayed due (every other job of the kernel stopped being polled)."""
    from wan_nb.wire import parse_task

    d = tr.on_task_state(record("RUNNING"), parse_task({"request_id": "r", **raw}),
                         Counters(), NOW, P)
    assert d.counters.unrecognized == 1 and not d.final
    assert (d.write, d.poll_on_schedule) == ({}, True)


@pytest.mark.parametrize("name", ["PENDING", "RUNNING", "SUCCEEDED", "FAILED"])
def test_a_recognized_answer_resets_the_unrecognized_count(name: str) -> None:
    d = tr.on_task_state(record("RUNNING"), ANSWERS[name], Counters(unrecognized=4), NOW, P)
    assert d.counters.unrecognized == 0


def test_succeeded_records_times_prompt_usage_cost_url_and_skew() -> None:
    d = tr.on_task_state(record("RUNNING"), ANSWERS["SUCCEEDED"], C0, NOW, P)
    w = d.write
    assert w["actual_prompt"] == "a fox, rewritten" and w["video_url"] == URL
    assert w["video_url_expires_at"] == NOW + dt.timedelta(hours=20)
    assert w["end_time"] == SENT + dt.timedelta(seconds=50)
    assert w["usage_video_duration"] == 5 and w["usage_json"]["video_ratio"] == "832*480"
    assert w["cost_usd"] == pytest.approx(0.05 * 5)  # wan2.5 480P, per second
    assert d.skew == pytest.approx(2.0)  # submit_time minus sent_at
    assert (d.download, d.download_in, d.refresh_url, d.learn) == (True, 0.0, False, True)


@pytest.mark.parametrize("usage, cost", [
    ({"output_video_duration": 10, "duration": 10, "SR": 480}, 0.5),  # wan2.6 shape
    ({"video_count": 1}, None),  # no seconds: the estimate stays
])
def test_cost_comes_from_the_billed_seconds(usage: dict, cost: float | None) -> None:
    state = parse_task({"output": {"task_id": "t1", "task_status": "SUCCEEDED",
                                   "video_url": URL}, "usage": usage})
    d = tr.on_task_state(record("RUNNING"), state, C0, NOW, P)
    assert d.write.get("cost_usd") == (None if cost is None else pytest.approx(cost))


def test_failed_is_not_billed_and_keeps_the_services_reason() -> None:
    d = tr.on_task_state(record("RUNNING"), ANSWERS["FAILED"], C0, NOW, P)
    assert d.write["cost_usd"] == 0.0
    assert (d.write["error_code"], d.write["error_message"]) == ("DataInspectionFailed",
                                                                 "inappropriate")


def test_no_skew_without_sent_at() -> None:
    d = tr.on_task_state(record("PENDING", sent_at=None), ANSWERS["RUNNING"], C0, NOW, P)
    assert d.skew is None


# -- the list endpoint ---------------------------------------------------------------------------
@pytest.mark.parametrize("row_status, listed, started, write", [
    ("PENDING", "RUNNING", SENT, {"status": "RUNNING", "scheduled_time": SENT}),
    ("PENDING", "RUNNING", None, {"status": "RUNNING"}),
    ("PENDING", "PENDING", None, {}),
    ("RUNNING", "RUNNING", SENT, {}),
    ("RUNNING", "PENDING", None, {"status": "PENDING"}),  # current behaviour: stale lists too
    ("PENDING", "PAUSED", None, {}),  # unknown to this version: polled on (BUG? noted)
])
def test_a_listed_state_is_recorded_and_the_run_polled_on_schedule(
        row_status: str, listed: str, started: dt.datetime | None, write: dict) -> None:
    summary = TaskSummary("t1", listed, None, None, started, None, None, None)
    d = tr.on_list_summary(record(row_status), summary, C0)
    assert (d.write, d.poll_on_schedule, d.final) == (write, True, False)


@pytest.mark.parametrize("row_name", [n for n in ROWS if n not in ("PENDING", "RUNNING")])
def test_a_listed_state_is_ignored_unless_the_run_is_polled(row_name: str) -> None:
    summary = TaskSummary("t1", "RUNNING", None, None, SENT, None, None, None)
    d = tr.on_list_summary(ROWS[row_name], summary, C0)
    assert (d.write, d.poll_on_schedule, d.poll_in) == ({}, False, None)


def test_a_failed_query_is_asked_again_after_four_floors() -> None:
    assert tr.on_query_failure(C0, P).poll_in == P.floor * 4


# -- creating ------------------------------------------------------------------------------------
def throttled(retry_after: str | None) -> Any:
    return api_error(429, {"code": "Throttling.RateQuota", "message": "slow down",
                           "request_id": "q9"},
                     {"retry-after": retry_after} if retry_after else {})


FOUR_OH_THREE = api_error(403, {"code": "AccessDenied", "message": "no", "request_id": "q3"})
INSPECTION = api_error(400, {"code": "DataInspectionFailed", "message": "bad",
                             "request_id": "q4"})


@pytest.mark.parametrize("exc, expected", [
    (throttled("7"), dict(requeue_in=7.0, pace_model=True,
                          reason="HTTP 429 Throttling.RateQuota: slow down (request_id q9)")),
    (throttled(None), dict(requeue_in=1.0, pace_model=True)),
    (AmbiguousCreateError("no answer", sent_at=SENT), dict(write={"sent_at": SENT},
                                                           reconcile_in=P.reconcile_after)),
    (AmbiguousCreateError("no answer"), dict(write={}, reconcile_in=P.reconcile_after)),
    (TransportError("reset"), dict(requeue_in=2.0, reason="TransportError: reset")),
    (api_error(500, {"code": "InternalError", "message": "x"}), dict(requeue_in=2.0)),
    (api_error(503, {"code": "ModelUnavailable", "message": "x"}), dict(requeue_in=2.0)),
    (INSPECTION, dict(final=True, write={"status": "REJECTED", "request_id": "q4",
                                         "error_code": "DataInspectionFailed",
                                         "error_message": "bad"})),
    (FOUR_OH_THREE, dict(final=True, write={"status": "REJECTED", "request_id": "q3",
                                            "error_code": "AccessDenied",
                                            "error_message": "no"})),
    (ValidationError([("audio_url", "gone")]),
     dict(final=True, write={"status": "REJECTED", "error_code": "ValidationError",
                             "error_message": "gone"})),
    (FileNotFoundError("a.wav"), dict(final=True, write={
        "status": "REJECTED", "error_code": "FileNotFoundError", "error_message": "a.wav"})),
    (WanError("no key"), dict(final=True, write={"status": "REJECTED", "error_code": "WanError",
                                                 "error_message": "no key"})),
])
def test_create_failures(exc: BaseException, expected: dict) -> None:
    d = tr.on_create_failure(exc, C0, P)
    assert d is not None
    for name, value in expected.items():
        assert getattr(d, name) == value, name
    if d.final:
        assert done_after(record("SUBMITTING"), d)


@pytest.mark.parametrize("exc", [ValueError("bug"), RuntimeError("bug"), KeyError("x")])
def test_a_create_bug_is_not_a_create_failure(exc: BaseException) -> None:
    assert tr.on_create_failure(exc, C0, P) is None  # it propagates: on_recover


@pytest.mark.parametrize("listed, status", [("PENDING", "PENDING"), ("PAUSED", "PENDING"),
                                            ("RUNNING", "RUNNING")])
def test_a_created_task_is_recorded_and_polled_on_schedule(listed: str, status: str) -> None:
    d = tr.on_created(answer(listed), C0)
    assert d.write == {"task_id": "t1", "request_id": "q1", "status": status}
    assert d.poll_on_schedule and not d.final


# -- reconciling an ambiguous create ---------------------------------------------------------------
FOUND = TaskSummary("t7", "RUNNING", "wan2.5-t2v-preview", SENT, None, None, None, None)
UNDECIDED = AmbiguousCreateError("2 unclaimed tasks", sent_at=SENT)
GIVE_UP_MSG = ("after 16 minutes wan_nb still could not tell which listed task this run's "
               "create made (2 unclaimed tasks); nothing was sent again, so nothing was paid "
               "twice")


@pytest.mark.parametrize("found, tries, age, expected", [
    (FOUND, 0, 60, dict(write={"task_id": "t7", "status": "PENDING"}, poll_in=0.0,
                        reconcile_in=None)),
    (None, 0, 60, dict(reconcile_in=2.0, counters=Counters(reconcile_tries=1))),
    # none found twice, the last well after the answer was due: send again
    (None, 1, 60, dict(requeue_in=0.0, reconcile_in=None,
                       counters=Counters(reconcile_tries=2))),
    (None, 1, 3, dict(reconcile_in=2.0, requeue_in=None)),  # too soon after the create
    (None, 5, 4, dict(reconcile_in=2.0, requeue_in=None)),  # not *well* after: > 2 × 2 s
    (UNDECIDED, 0, 600, dict(reconcile_in=2.0, final=False, counters=C0)),
    (UNDECIDED, 0, 900, dict(reconcile_in=2.0, final=False)),
    (UNDECIDED, 0, 960, dict(reconcile_in=None, final=True, write={
        "status": "FAILED", "error_code": "AmbiguousCreate", "error_message": GIVE_UP_MSG})),
    (TransportError("reset"), 1, 960, dict(reconcile_in=2.0, counters=Counters(
        reconcile_tries=1))),
    (FOUR_OH_THREE, 0, 60, dict(reconcile_in=2.0)),
    (StoreError("locked"), 0, 60, dict(reconcile_in=2.0)),  # a failing pass is retried
    (RuntimeError("bug"), 0, 60, dict(reconcile_in=2.0)),
])
def test_reconcile_decisions(found: Any, tries: int, age: float, expected: dict) -> None:
    row = record("SUBMITTING", sent_at=NOW - dt.timedelta(seconds=age))
    d = tr.on_reconcile(row, found, Counters(reconcile_tries=tries), NOW, P)
    for name, value in expected.items():
        assert getattr(d, name) == value, name


def test_reconcile_without_sent_at_counts_its_age_from_now() -> None:
    d = tr.on_reconcile(record("SUBMITTING", sent_at=None), None, Counters(reconcile_tries=1),
                        NOW, P)
    assert d.requeue_in is None and d.reconcile_in == 2.0


# -- downloading ---------------------------------------------------------------------------------
def transient(text: str = "download failed after 4 attempts: HTTP 503") -> DownloadError:
    return DownloadError(text, status=503, retryable=True)


PERMANENT = DownloadError("HTTP 403 for the video: 'AccessDenied'", status=403)


@pytest.mark.parametrize("exc, tries, delay", [
    (transient(), 0, 5.0), (transient(), 1, 10.0), (transient(), 2, 20.0),
    (transient(), 3, 40.0), (transient(), 4, 80.0),
    (transient(), 5, None),  # the sixth round failed: given up
    (TransportError("reset"), 0, 5.0),
    # classified by status/retryable, never by the message's text
    (DownloadError("HTTP 503 for the video", status=503), 0, None),
    (DownloadError("HTTP 404 gone", status=None, retryable=True), 0, 5.0),
    (PERMANENT, 0, None),
    (DownloadError("the answer is not an MP4"), 0, None),
    (ValueError("probe: no video stream"), 0, None),
    (OSError(28, "No space left on device"), 0, None),
    (JobTimeout("probe took too long"), 0, None),
])
def test_download_retry_rounds(exc: BaseException, tries: int, delay: float | None) -> None:
    row = record("SUCCEEDED", video_path=None, video_url_expires_at=NOW + dt.timedelta(hours=1))
    d = tr.on_download_failure(row, exc, Counters(download_tries=tries), NOW, P)
    assert d is not None and d.counters.download_tries == tries + 1
    if delay is None:
        assert d.final and d.write == {"download_error": f"{type(exc).__name__}: {exc}"}
        assert not d.download and done_after(row, d)
    else:
        assert (d.download, d.download_in, d.refresh_url, d.final, d.write) == \
            (True, delay, True, False, {})


def test_download_backoff_is_capped_at_five_minutes() -> None:
    row = record("SUCCEEDED", video_path=None)
    d = tr.on_download_failure(row, transient(), Counters(download_tries=7), NOW,
                               replace(P, download_rounds=20))
    assert d is not None and d.download_in == 300.0


@pytest.mark.parametrize("expires_in, retried", [
    (None, True),  # no expiry known: try again
    (dt.timedelta(minutes=2), True),
    (dt.timedelta(seconds=61), True),
    (dt.timedelta(seconds=60), False),  # the URL would expire before the next round
    (dt.timedelta(seconds=30), False),
    (-dt.timedelta(hours=1), False),
])
def test_download_rounds_stop_at_the_urls_expiry(expires_in: dt.timedelta | None,
                                                 retried: bool) -> None:
    row = record("SUCCEEDED", video_path=None,
                 video_url_expires_at=None if expires_in is None else NOW + expires_in)
    d = tr.on_download_failure(row, transient(), C0, NOW, P)
    assert d is not None and d.download == retried and d.final != retried


def test_an_expired_url_ends_the_run_expired() -> None:
    d = tr.on_download_failure(record("SUCCEEDED", video_path=None),
                               TaskExpired("the video URL has expired"), C0, NOW, P)
    assert d is not None and d.final and d.counters == C0
    assert d.write == {"status": "EXPIRED", "download_error": "the video URL has expired",
                       "error_code": "ResultExpired",
                       "error_message": "the video was not downloaded within the service's "
                                        "24 hours and is gone"}


@pytest.mark.parametrize("exc", [StoreError("locked"), FOUR_OH_THREE, RuntimeError("bug")])
def test_a_download_bug_is_not_a_download_failure(exc: BaseException) -> None:
    assert tr.on_download_failure(record("SUCCEEDED"), exc, C0, NOW, P) is None


def test_a_success_without_url_has_nothing_to_download() -> None:
    assert tr.on_download_start(record("SUCCEEDED", video_path=None), C0) is None
    d = tr.on_download_start(record("SUCCEEDED", video_path=None, video_url=None), C0)
    assert d is not None and d.final and d.write == {
        "download_error": "the service reported success without a video_url"}


@pytest.mark.parametrize("state, write", [
    (ANSWERS["SUCCEEDED"], {"video_url": URL,
                            "video_url_expires_at": NOW + dt.timedelta(hours=20)}),
    (answer("SUCCEEDED"), {}),  # no URL in the answer
    (ANSWERS["UNKNOWN"], {}),
    (None, {}),  # the query failed: download with the URL recorded
])
def test_a_retried_download_takes_a_fresh_url(state: Any, write: dict) -> None:
    assert tr.on_url_refresh(state, C0).write == write


# -- adopting, settling, recovering --------------------------------------------------------------
@pytest.mark.parametrize("row_name, expected", [
    ("QUEUED", dict(queue_in=0.0)),
    ("SUBMITTING", dict(reconcile_in=0.0)),
    ("PENDING", dict(poll_in=0.0)),
    ("RUNNING", dict(poll_in=0.0)),
    ("SUCCEEDED downloading", dict(download=True, refresh_url=True, download_in=0.0)),
    *((s, {}) for s in FINAL_STATUSES),
])
def test_adopt_by_status(row_name: str, expected: dict) -> None:
    d = tr.on_adopt(ROWS[row_name], C0)
    blank = Decision(C0, d.reason)
    assert d == replace(blank, **expected)


@pytest.mark.parametrize("row, reconciling, expected", [
    (record("CANCELED"), False, dict(final=True)),  # wake its waiters
    (record("SUCCEEDED"), False, dict(final=True)),
    (record("PENDING", owner="other"), False, dict(watch=True)),
    (record("QUEUED", owner="other"), False, dict(watch=True)),
    (record("SUBMITTING", owner=None), False, dict(reconcile_in=P.reconcile_after)),
    (record("SUBMITTING"), True, {}),
    (record("PENDING"), False, dict(poll_in=0.0)),
    (record("PENDING", task_id=None), False, {}),
    (record("QUEUED"), False, {}),
    (record("SUCCEEDED", video_path=None), False, {}),
])
def test_settle_after_the_ledger_changed(row: dict, reconciling: bool, expected: dict) -> None:
    d = tr.on_settle(row, C0, "me", P, reconciling=reconciling)
    assert d == replace(Decision(C0, d.reason), **expected)


WHY = "StoreError: database is locked"


@pytest.mark.parametrize("row, failures, reconciling, expected", [
    (record("SUBMITTING"), 0, False, dict(reconcile_in=4.0)),
    (record("SUBMITTING"), 0, True, {}),  # its reconcile loop goes on
    (record("QUEUED"), 0, False, dict(queue_in=4.0)),
    (record("QUEUED"), 3, False, dict(queue_in=32.0)),
    (record("QUEUED"), 4, False, dict(final=True, write={
        "status": "REJECTED", "error_code": "InternalError",
        "error_message": f"wan_nb could not submit it ({WHY}); nothing was sent"})),
    (record("PENDING"), 0, False, dict(poll_in=4.0)),
    (record("RUNNING"), 1, False, dict(poll_in=8.0)),
    (record("RUNNING"), 9, False, dict(poll_in=60.0)),  # capped
    (record("RUNNING", task_id=None), 0, False, {}),
    (record("SUCCEEDED", video_path=None), 0, False, dict(download=True, download_in=4.0)),
    (record("SUCCEEDED", video_path=None), 4, False, dict(final=True, write={
        "download_error": f"wan_nb could not record the video ({WHY}); "
                          "job.retry_download() tries again"})),
    (record("FAILED"), 0, False, {}),
    # the step failed after the run's final write: a finished run is left alone (it was
    # downloaded once more before)
    (record("SUCCEEDED"), 0, False, {}),
])
def test_recovery_of_a_failed_background_step(row: dict, failures: int, reconciling: bool,
                                              expected: dict) -> None:
    d = tr.on_recover(row, StoreError("database is locked"), Counters(failures=failures),
                      reconciling=reconciling)
    want = Counters(failures=failures + 1)
    assert d == replace(Decision(want, d.reason), **expected)
    if d.final:
        assert done_after(row, d)


# -- cancelling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("row, exc, expected", [
    (record("PENDING"), None, dict(final=True, write={"status": "CANCELED", "cost_usd": 0.0})),
    (record("CANCELED"), None, {}),  # recorded meanwhile
    (record("PENDING"), api_error(400, {"code": "UnsupportedOperation", "message": "x"}),
     dict(poll_in=0.0)),  # it started meanwhile: the next poll records it
    (record("PENDING"), TransportError("reset"), dict(poll_in=0.0)),
    (record("PENDING"), throttled(None), dict(poll_in=0.0)),
])
def test_cancel_answers(row: dict, exc: Any, expected: dict) -> None:
    d = tr.on_cancel_answer(row, exc, C0)
    assert d is not None and d == replace(Decision(C0, d.reason), **expected)


def test_a_cancel_bug_is_not_a_cancel_failure() -> None:
    assert tr.on_cancel_answer(record("PENDING"), RuntimeError("bug"), C0) is None


# -- classification ------------------------------------------------------------------------------
@pytest.mark.parametrize("exc, kind, wan_error, retryable", [
    (TaskExpired("gone"), "expired", True, False),
    (AmbiguousCreateError("?", sent_at=SENT), "ambiguous", True, True),
    (TransportError("reset"), "transport", True, True),
    (throttled("3"), "throttled", True, True),
    (api_error(500, {"code": "SystemError"}), "server", True, True),
    (api_error(408, {}), "server", True, True),
    (INSPECTION, "api", True, False),
    (api_error(418, {"code": "Teapot", "message": "HTTP 503 retry later"}), "api", True, False),
    (transient(), "download", True, True),
    (PERMANENT, "download", True, False),
    (ValidationError([("seed", "bad")]), "value", True, False),
    (ValueError("x"), "value", False, False),
    (JobTimeout("late"), "os", True, False),
    (OSError("disk"), "os", False, False),
    (StoreError("locked"), "wan", True, False),
    (RuntimeError("TransportError: HTTP 503"), "unexpected", False, False),
])
def test_classify_by_type_and_attributes(exc: BaseException, kind: str, wan_error: bool,
                                         retryable: bool) -> None:
    f = tr.classify(exc)
    assert (f.kind, f.wan_error, f.retryable, f.name, f.text) == \
        (kind, wan_error, retryable, type(exc).__name__, str(exc))


def test_classify_keeps_what_the_decisions_need() -> None:
    f = tr.classify(throttled("7"))
    assert (f.code, f.status, f.request_id, f.retry_after) == ("Throttling.RateQuota", 429,
                                                              "q9", 7.0)
    assert tr.classify(AmbiguousCreateError("?", sent_at=SENT)).sent_at == SENT
    assert tr.classify(PERMANENT).status == 403
    assert tr.on_create_failure(tr.classify(throttled("7")), C0, P) == \
        tr.on_create_failure(throttled("7"), C0, P)


# -- purity --------------------------------------------------------------------------------------
FORBIDDEN = {"asyncio", "time", "os", "httpx", "sqlite3", "pathlib", "random", "socket",
             "threading", "subprocess", "poller", "jobs", "client", "store", "store_table",
             "runtime", "schedule", "media"}
ALLOWED_OWN = {"catalog", "errors", "statuses", "wire"}


def test_transitions_imports_nothing_with_io() -> None:
    tree = ast.parse(pathlib.Path(tr.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import catalog / from .errors import ...
                own |= {node.module} if node.module else {a.name for a in node.names}
            else:
                names.add((node.module or "").split(".")[0])
                if node.module and node.module.startswith("wan_nb"):
                    own.add(node.module.split(".")[1] if "." in node.module else "")
    assert not names & FORBIDDEN, names & FORBIDDEN
    assert own <= ALLOWED_OWN, own - ALLOWED_OWN
    assert names <= {"__future__", "datetime", "collections", "dataclasses", "typing"}, names


def test_docstring_example() -> None:
    result = doctest.testmod(tr, raise_on_error=False)
    assert (result.failed, result.attempted > 0) == (0, True)
