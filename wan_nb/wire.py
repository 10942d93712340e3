"""Pure parsing of the service's JSON into typed objects, and retry decisions.

No sockets and no clocks here: everything takes the data (and ``now``/``rng`` where needed) as
arguments, so it is tested with the exact JSON of the documentation.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

from . import catalog
from .errors import APIError, ThrottledError, error_class
from .statuses import FINAL_SERVICE_STATUSES



def parse_time(value: Any, tz: dt.tzinfo = catalog.SERVICE_TZ) -> dt.datetime | None:
    """``"2025-10-23 11:47:23.879"`` (service zone) or epoch milliseconds → aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value / 1000.0, tz=dt.timezone.utc)
    if isinstance(value, str):
        for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
            try:
                return dt.datetime.strptime(value, fmt).replace(tzinfo=tz)
            except ValueError:
                pass
    return None


def format_time(when: dt.datetime, tz: dt.tzinfo = catalog.SERVICE_TZ) -> str:
    """Inverse of :func:`parse_time` for the service's string format (milliseconds)."""
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_list_time(when: dt.datetime, tz: dt.tzinfo = catalog.SERVICE_TZ) -> str:
    """The list endpoint's ``YYYYMMDDhhmmss`` filter format."""
    return when.astimezone(tz).strftime("%Y%m%d%H%M%S")


def url_expiry(url: str | None) -> dt.datetime | None:
    """The ``Expires`` (Unix time) of a signed object-storage URL."""
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("Expires")
    try:
        return dt.datetime.fromtimestamp(int(values[0]), tz=dt.timezone.utc) if values else None
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class Usage:
    """Billing facts of a SUCCEEDED task, in either shape.

    Old shape (wan2.5 and older): ``video_count``, ``video_duration``, ``video_ratio``.
    wan2.6 shape: ``duration``, ``size``, ``input_video_duration``, ``output_video_duration``,
    ``video_count``, ``SR``. ``seconds`` and ``size`` unify the two.
    """

    raw: Mapping[str, Any]
    video_count: int | None = None
    video_duration: float | None = None
    video_ratio: str | None = None
    duration: float | None = None
    size_: str | None = None
    input_video_duration: float | None = None
    output_video_duration: float | None = None
    sr: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> "Usage | None":
        if not raw:
            return None
        return cls(raw=dict(raw), video_count=raw.get("video_count"),
                   video_duration=raw.get("video_duration"), video_ratio=raw.get("video_ratio"),
                   duration=raw.get("duration"), size_=raw.get("size"),
                   input_video_duration=raw.get("input_video_duration"),
                   output_video_duration=raw.get("output_video_duration"), sr=raw.get("SR"))

    @property
    def seconds(self) -> float | None:
        """Seconds of video billed."""
        for v in (self.output_video_duration, self.video_duration, self.duration):
            if v is not None:
                return v
        return None

    @property
    def size(self) -> str | None:
        return self.video_ratio or self.size_

    def columns(self) -> dict[str, Any]:
        """The store's ``usage_*`` columns."""
        return {"usage_video_count": self.video_count,
                "usage_video_duration": self.video_duration,
                "usage_video_ratio": self.video_ratio, "usage_duration": self.duration,
                "usage_size": self.size_, "usage_sr": self.sr,
                "usage_input_video_duration": self.input_video_duration,
                "usage_output_video_duration": self.output_video_duration}


@dataclass(frozen=True)
class TaskState:
    """A task as the query endpoint reports it."""

    task_id: str
    status: str
    request_id: str | None = None
    submit_time: dt.datetime | None = None
    scheduled_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    video_url: str | None = None
    orig_prompt: str | None = None
    actual_prompt: str | None = None
    code: str | None = None
    message: str | None = None
    usage: Usage | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_SERVICE_STATUSES

    @property
    def video_expires_at(self) -> dt.datetime | None:
        return url_expiry(self.video_url)

    @property
    def queue_seconds(self) -> float | None:
        if self.submit_time and self.scheduled_time:
            return (self.scheduled_time - self.submit_time).total_seconds()
        return None

    @property
    def run_seconds(self) -> float | None:
        if self.scheduled_time and self.end_time:
            return (self.end_time - self.scheduled_time).total_seconds()
        return None


def parse_task(body: Mapping[str, Any], tz: dt.tzinfo = catalog.SERVICE_TZ) -> TaskState:
    """A query (or create) answer → :class:`TaskState`."""
    out = body.get("output") or {}
    return TaskState(
        task_id=str(out.get("task_id") or ""),
        status=str(out.get("task_status") or "UNKNOWN"),
        request_id=body.get("request_id"),
        submit_time=parse_time(out.get("submit_time"), tz),
        scheduled_time=parse_time(out.get("scheduled_time"), tz),
        end_time=parse_time(out.get("end_time"), tz),
        video_url=out.get("video_url") or None,
        orig_prompt=out.get("orig_prompt"),
        actual_prompt=out.get("actual_prompt"),
        code=out.get("code") or None,
        message=out.get("message") or None,
        usage=Usage.parse(body.get("usage")),
        raw=dict(body),
    )


@dataclass(frozen=True)
class TaskSummary:
    """One row of the list endpoint (times in epoch ms on the wire)."""

    task_id: str
    status: str
    model_name: str | None
    created: dt.datetime | None
    started: dt.datetime | None
    ended: dt.datetime | None
    request_id: str | None
    region: str | None


@dataclass(frozen=True)
class TaskPage:
    """One page of the list endpoint."""

    tasks: tuple[TaskSummary, ...]
    total: int
    total_page: int
    page_no: int
    page_size: int
    request_id: str | None = None


def parse_task_page(body: Mapping[str, Any]) -> TaskPage:
    rows = tuple(
        TaskSummary(task_id=str(d.get("task_id")), status=str(d.get("status") or "UNKNOWN"),
                    model_name=d.get("model_name"), created=parse_time(d.get("gmt_create")),
                    started=parse_time(d.get("start_time")), ended=parse_time(d.get("end_time")),
                    request_id=d.get("request_id"), region=d.get("region"))
        for d in (body.get("data") or [])
    )
    return TaskPage(tasks=rows, total=int(body.get("total") or 0),
                    total_page=int(body.get("total_page") or 0),
                    page_no=int(body.get("page_no") or 1),
                    page_size=int(body.get("page_size") or len(rows)),
                    request_id=body.get("request_id"))


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


def api_error(status: int, body: Any, headers: Mapping[str, str] | None = None) -> APIError:
    """An error envelope (or whatever came back) → the matching :class:`APIError` subclass."""
    code = message = request_id = None
    if isinstance(body, Mapping):
        code, message, request_id = body.get("code"), body.get("message"), body.get("request_id")
    elif isinstance(body, (bytes, str)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        message = text[:300]
    err = error_class(status, code)(status, code, message, request_id)
    if isinstance(err, ThrottledError) and headers is not None:
        err.retry_after = parse_retry_after(headers.get("retry-after"))
    return err


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, honouring ``Retry-After``.

    ``max_retries`` counts retries after the first attempt.
    """

    max_retries: int = 4
    base: float = 0.5
    cap: float = 20.0
    retry_after_cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1-based), or None to give up."""
        if attempt > self.max_retries:
            return None
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        return rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


def retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500
