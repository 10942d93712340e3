"""Every status a run can have, and every set of them, defined once.

A run's life in the ledger::

    QUEUED -> SUBMITTING -> PENDING -> RUNNING -> SUCCEEDED
                 |            |          |    \\-> FAILED / UNKNOWN
                 |            \\-> CANCELED      (the service's own final states)
                 \\-> REJECTED (refused: nothing was created, nothing paid)
    any unfinished run whose task the service no longer knows -> EXPIRED

The service's statuses (``task_status``) are a subset: it never reports QUEUED, SUBMITTING,
REJECTED or EXPIRED, which are wan_nb's own.
"""

from __future__ import annotations

from typing import Literal

#: What ``task_status`` may say.
TaskStatus = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"]
SERVICE_STATUSES: tuple[str, ...] = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED",
                                     "UNKNOWN")
#: The service's final answers: a task in one of these never changes again.
FINAL_SERVICE_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})

#: Every status of a run in the ledger, in the order of a run's life.
STATUSES: tuple[str, ...] = ("QUEUED", "SUBMITTING", "PENDING", "RUNNING", "SUCCEEDED",
                             "FAILED", "CANCELED", "UNKNOWN", "REJECTED", "EXPIRED")
#: A run in one of these is finished: nothing more happens to it unless the user retries it.
FINAL_STATUSES: tuple[str, ...] = ("SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN", "REJECTED",
                                   "EXPIRED")
#: The service has the task and is working on it: it is polled.
ACTIVE_SERVICE: tuple[str, ...] = ("PENDING", "RUNNING")
#: Waiting in this kernel, or being created: no task id is known yet.
LOCAL_UNFINISHED: tuple[str, ...] = ("QUEUED", "SUBMITTING")
#: Statuses in which the service can still cancel a task (it does not stop running ones).
CANCELLABLE: tuple[str, ...] = ("QUEUED", "PENDING")
#: Finished without a video because the generation failed (counted as failures in summaries;
#: CANCELED, UNKNOWN and EXPIRED are finished but neither a success nor a failure).
FAILED_STATUSES: tuple[str, ...] = ("FAILED", "REJECTED")
#: Finished without a video: an experiment may run these again.
RETRYABLE: tuple[str, ...] = ("FAILED", "REJECTED", "CANCELED", "UNKNOWN", "EXPIRED")
#: Finished without a video, and it is known why (``Job.result`` raises ``TaskFailed``).
ENDED_WITHOUT_VIDEO: tuple[str, ...] = ("FAILED", "CANCELED", "REJECTED")
#: Finished, but what became of the task is not known (``Job.result`` raises ``TaskExpired``).
OUTCOME_UNKNOWN: tuple[str, ...] = ("EXPIRED", "UNKNOWN")


def is_final(status: str | None) -> bool:
    """Is a run with this status finished?"""
    return status in FINAL_STATUSES


assert set(SERVICE_STATUSES) <= set(STATUSES)
assert FINAL_SERVICE_STATUSES <= set(FINAL_STATUSES)
assert set(STATUSES) == set(LOCAL_UNFINISHED) | set(ACTIVE_SERVICE) | set(FINAL_STATUSES)
