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
from .errors import APIError, ThrottledError, ValidationError, error_class
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


#: What the official SDK (2.0.2) adds to a usage object it renders: the classic
#: ``VideoSynthesisUsage`` fills ``video_count=1``, ``video_duration=0`` and ``video_ratio=""``
#: in for keys the service did not send; the v2 client's ``Usage`` model adds token counters
#: at 0. The service never sends an empty ``video_ratio``, so that is the classic mark.
_SDK_CLASSIC_FILLERS = (("video_ratio", ""), ("video_duration", 0))
_SDK_V2_TOKENS = ("input_tokens", "output_tokens", "total_tokens")


def service_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """The usage as the service sent it, from itself or from the official SDK's rendering
    (``response.usage`` of ``VideoSynthesis.call``, or ``job.usage.model_dump()`` of the v2
    client): the SDK's fillers are taken out, so they are never recorded as facts.

    >>> service_usage({"video_count": 1, "video_duration": 0, "video_ratio": "",
    ...                "duration": 5, "SR": 720, "ratio": "16:9"})
    {'video_count': 1, 'duration': 5, 'SR': 720, 'ratio': '16:9'}
    """
    out = dict(usage)
    if out.get("video_ratio") == "":
        for key, filler in _SDK_CLASSIC_FILLERS:
            if key in out and out[key] == filler:
                del out[key]
    if all(key in out and out[key] == 0 for key in _SDK_V2_TOKENS):
        for key in _SDK_V2_TOKENS:
            del out[key]
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _whole(value: Any) -> int | None:
    if isinstance(value, str):
        return int(value) if value.isdigit() else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _pair(size: str | None) -> tuple[int, int] | None:
    w, sep, h = (size or "").partition("*")
    return (int(w), int(h)) if sep and w.isdigit() and h.isdigit() else None


def _catalog_pixels(model: str, resolution: str, ratio: str) -> tuple[int, int] | None:
    """``catalog.pixels``, or None when the model (or its table) has no such size."""
    try:
        return catalog.pixels(model, resolution, ratio)
    except ValidationError:
        return None


@dataclass(frozen=True)
class Usage:
    """Billing facts of a SUCCEEDED task, in any of its shapes.

    - wan2.5 and older: ``video_count``, ``video_duration``, ``video_ratio`` (a ``W*H`` size,
      despite its name).
    - wan2.6: ``duration``, ``size``, ``input_video_duration``, ``output_video_duration``,
      ``video_count``, ``SR``.
    - the 2026 models (wan2.7, HappyHorse, Wan 3.0): as wan2.6 but ``ratio`` (``"16:9"``)
      instead of ``size``; the pixel size follows from ``SR`` and ``ratio`` (:meth:`pixels`).

    :meth:`parse` also takes the official SDK's rendering of any of them (see
    :func:`service_usage`); ``raw`` is then the usage as the service sent it. ``seconds``,
    ``size`` and :meth:`pixels` unify the shapes.

    >>> u = Usage.parse({"duration": 10, "input_video_duration": 0,
    ...                  "output_video_duration": 10, "video_count": 1, "ratio": "4:3", "SR": 720})
    >>> u.seconds, u.resolution, u.pixels("wan2.7-t2v")
    (10, '720P', (1104, 832))
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
    ratio: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> "Usage | None":
        """A usage object (the service's JSON, or the SDK's rendering of it) → Usage, or None
        when there is none. A value of the wrong type is left out, not trusted."""
        if raw is not None and not isinstance(raw, Mapping) and hasattr(raw, "model_dump"):
            raw = raw.model_dump()  # the SDK v2 client's pydantic Usage
        if not raw or not isinstance(raw, Mapping):
            return None
        wire = service_usage(raw)
        return cls(raw=wire, video_count=_whole(wire.get("video_count")),
                   video_duration=_number(wire.get("video_duration")),
                   video_ratio=_text(wire.get("video_ratio")),
                   duration=_number(wire.get("duration")), size_=_text(wire.get("size")),
                   input_video_duration=_number(wire.get("input_video_duration")),
                   output_video_duration=_number(wire.get("output_video_duration")),
                   sr=_whole(wire.get("SR")), ratio=_text(wire.get("ratio")))

    @property
    def seconds(self) -> float | None:
        """Seconds of video billed."""
        for v in (self.output_video_duration, self.video_duration, self.duration):
            if v is not None:
                return v
        return None

    @property
    def size(self) -> str | None:
        """The ``W*H`` size the usage names (old shapes only; see :meth:`pixels`)."""
        return self.video_ratio or self.size_

    @property
    def resolution(self) -> str | None:
        """``SR`` as a resolution name (720 → ``"720P"``)."""
        return None if self.sr is None else f"{self.sr}P"

    def pixels(self, model: str | None) -> tuple[int, int] | None:
        """(width, height) of the video the usage reports: its ``W*H`` size, or for the 2026
        shape ``catalog.pixels(model, SR, ratio)``; None when it cannot be told."""
        named = _pair(self.size)
        if named is not None:
            return named
        if model and self.resolution and self.ratio:
            return _catalog_pixels(model, self.resolution, self.ratio)
        return None

    def columns(self, model: str | None = None) -> dict[str, Any]:
        """The store's ``usage_*`` columns (``usage_width``/``usage_height`` from
        :meth:`pixels`, which needs the run's model for the 2026 shape)."""
        width, height = self.pixels(model) or (None, None)
        return {"usage_video_count": self.video_count,
                "usage_video_duration": self.video_duration,
                "usage_video_ratio": self.video_ratio, "usage_duration": self.duration,
                "usage_size": self.size_, "usage_sr": self.sr, "usage_ratio": self.ratio,
                "usage_width": width, "usage_height": height,
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
    """A query (or create) answer → :class:`TaskState` (an answer whose ``output`` is not an
    object reads as one without a status: never an exception in the poll pass)."""
    out = body.get("output")
    if not isinstance(out, Mapping):
        out = {}
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
