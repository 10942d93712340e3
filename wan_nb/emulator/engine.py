"""The emulator's service: a pure state machine over tasks, driven by an injectable clock.

No sockets and no timers: every call first *settles* the state up to ``clock.now()``
(dispatches queued tasks into free slots, ends tasks whose run time has elapsed), so a test can
jump a day ahead with :class:`FakeClock` and see exactly what the service would show. The one
thing outside the clock is rendering: a RUNNING task whose run time has elapsed stays RUNNING
until the app reports its file ready with :meth:`Engine.render_done`.

>>> clock = FakeClock(1_760_000_000.0)
>>> eng = Engine(clock=clock, speed=1.0, render=False)
>>> t = eng.create("sk-a", {"model": "wan2.5-t2v-preview", "input": {"prompt": "a fox"},
...                         "parameters": {"size": "832*480", "seed": 1}}, request_id="r1")
>>> eng.status(t)
'PENDING'
>>> _ = clock.advance(60)
>>> eng.status(t)
'SUCCEEDED'
"""

from __future__ import annotations

import datetime as _dt
import math
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from . import facts
from .params import CreateRequest, InvalidParameter, parse_create
from .persist import TaskStore
from .rewrite import ContentPolicy, rewrite_prompt
from .speed import Speed, parse_speed, timing

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED")
STATUSES = ("PENDING", "RUNNING", *TERMINAL)
TTL_S = facts.TASK_TTL_S


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to: ``advance(seconds)`` or ``set(epoch)``."""

    def __init__(self, start: float | None = None):
        self._t = float(time.time() if start is None else start)

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward; advance({seconds!r})")
        self._t += float(seconds)
        return self._t

    def set(self, epoch: float) -> float:
        self._t = float(epoch)
        return self._t


class ApiFailure(Exception):
    """A synchronous error answer: HTTP status, code, message (the service's envelope)."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None):
        known = facts.ERROR_CODES.get(code)
        self.code = code
        self.message = message or (known[1] if known else code)
        self.status = status or (known[0] if known else 500)
        self.counted = False  # already in the stats
        super().__init__(f"{self.status} {code}: {self.message}")


def fmt_time(epoch: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.mmm`` in the service's zone (UTC+8)."""
    dt = _dt.datetime.fromtimestamp(epoch, facts.SERVICE_TZ)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def parse_list_time(text: str) -> float:
    """``YYYYMMDDhhmmss`` (service zone) → epoch seconds; ValueError otherwise."""
    if not (isinstance(text, str) and len(text) == 14 and text.isdigit()):
        raise ValueError(text)
    dt = _dt.datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=facts.SERVICE_TZ)
    return dt.timestamp()


# -- tasks ---------------------------------------------------------------------------------------
@dataclass
class Task:
    task_id: str
    request_id: str
    key: str
    model: str  # canonical name
    model_name: str  # as sent
    params: dict[str, Any]  # CreateRequest.params
    orig_prompt: str
    actual_prompt: str | None
    submit: float
    dispatch: float
    run: float
    status: str = "PENDING"
    scheduled: float | None = None
    ended: float | None = None
    planned_failure: list[str] | None = None  # [code, message]: fails after its run, no file
    error: list[str] | None = None
    audio_source: str | None = None  # http(s) URL or the local path of an oss:// upload
    ready_at: float | None = None  # when the file (or its failure) was known
    render_error: list[str] | None = None
    has_file: bool = False

    @property
    def file_name(self) -> str:
        return f"{self.task_id}.mp4"

    @property
    def spec(self) -> facts.ServiceModel:
        return facts.MODELS[self.model]

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Task":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


class SlidingWindow:
    """Per-key event counts over the last ``window`` seconds."""

    def __init__(self, window: float = 1.0):
        self.window = window
        self._events: dict[Any, deque[float]] = defaultdict(deque)

    def allow(self, key: Any, now: float, limit: int | None) -> bool:
        if limit is None:
            return True
        q = self._events[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) >= limit:
            return False
        q.append(now)
        return True


@dataclass
class Stats:
    """What the emulator saw; served by ``GET /_emulator/stats``."""

    creates_accepted: Counter[tuple[str, str]] = field(default_factory=Counter)
    creates_refused: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    queries: Counter[str] = field(default_factory=Counter)
    lists: Counter[str] = field(default_factory=Counter)
    cancels: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    renders: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


class Engine:
    """Tasks, queues and limits of one emulated service (every API key is its own account).

    ``key`` arguments name the account: the app passes :func:`~.persist.account_id` of the
    caller's key, never the key itself, so neither tasks nor stats hold a key.

    ``speed``: see :func:`timing`. ``render``: when False tasks succeed without a file (the
    pure state machine, for tests and benchmarks). ``query_rate``: query+list+cancel requests
    per second per key (None = unlimited). ``store``: persistence (``None`` = memory only).
    """

    def __init__(self, *, clock: Clock | None = None, speed: Speed = "fast",
                 policy: ContentPolicy | None = None, store: TaskStore | None = None,
                 render: bool = True, query_rate: int | None = facts.QUERY_RATE_PER_S,
                 submission_limits: bool = True, region: str = "ap-southeast-1",
                 oss_resolver: Callable[[str], str | None] | None = None):
        self.clock: Clock = clock or SystemClock()
        self.speed = parse_speed(speed)
        self.policy = policy or ContentPolicy()
        self.store = store
        self.render = render
        self.query_rate = query_rate
        self.submission_limits = submission_limits
        self.region = region
        self.oss_resolver = oss_resolver
        self.stats = Stats()
        self.tasks: dict[str, Task] = {}
        self._order: deque[str] = deque()  # task ids by submit time, for expiry
        self._queues: dict[tuple[str, str], list[Task]] = defaultdict(list)
        self._free: dict[tuple[str, str], list[float]] = {}
        self._render_jobs: list[Task] = []
        self._submits = SlidingWindow()
        self._polls = SlidingWindow()
        if store is not None:
            self._reload(store.load_all())

    # -- persistence ---------------------------------------------------------------------------
    def _reload(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            try:
                t = Task.from_row(row)
                t.spec  # noqa: B018 (a row of a model the service no longer has is dropped)
            except (TypeError, KeyError):
                continue
            self.tasks[t.task_id] = t
            self._order.append(t.task_id)
            q = (t.key, t.model)
            if t.status in ("PENDING", "RUNNING"):
                self._queues[q].append(t)
            if t.status == "RUNNING" and self.render and t.ready_at is None \
                    and t.planned_failure is None:
                self._render_jobs.append(t)  # the interrupted render is done again
        for q, tasks in self._queues.items():
            running = sum(t.status == "RUNNING" for t in tasks)
            ends = [t.ended for t in self.tasks.values()
                    if (t.key, t.model) == q and t.ended is not None]
            since = max(ends) if ends else float("-inf")
            self._free[q] = [since] * max(0, self._concurrency(q) - running)

    def _save(self, t: Task) -> None:
        if self.store is not None:
            self.store.save(t.to_row())

    # -- the clock -----------------------------------------------------------------------------
    def _concurrency(self, q: tuple[str, str]) -> int:
        return facts.MODELS[q[1]].concurrency

    def _finish_time(self, t: Task) -> float | None:
        assert t.scheduled is not None
        nominal = t.scheduled + t.run
        if t.planned_failure is not None or not self.render:
            return nominal
        if t.ready_at is None:
            return None  # still rendering
        if t.render_error is not None:
            return max(t.scheduled, t.ready_at)  # a bad input fails as soon as it is known
        return max(nominal, t.ready_at)

    def settle(self, now: float | None = None) -> None:
        """Bring every task up to ``now`` (default: the clock)."""
        now = self.clock.now() if now is None else now
        self._expire(now)
        for q, tasks in self._queues.items():
            if tasks:
                self._settle_queue(q, tasks, now)
        for q in [q for q, tasks in self._queues.items() if not tasks]:
            del self._queues[q]

    def _settle_queue(self, q: tuple[str, str], tasks: list[Task], now: float) -> None:
        free = self._free.setdefault(q, [float("-inf")] * self._concurrency(q))
        while True:
            end: tuple[float, Task] | None = None
            for t in tasks:
                if t.status == "RUNNING":
                    f = self._finish_time(t)
                    if f is not None and f <= now and (end is None or f < end[0]):
                        end = (f, t)
            start: tuple[float, Task] | None = None
            head = next((t for t in tasks if t.status == "PENDING"), None)
            if head is not None and free:
                s = max(min(free), head.submit + head.dispatch)
                if s <= now:
                    start = (s, head)
            if end is not None and (start is None or end[0] <= start[0]):
                self._end(end[1], end[0])
                tasks.remove(end[1])
                free.append(end[0])
            elif start is not None:
                free.remove(min(free))
                t = start[1]
                t.status, t.scheduled = "RUNNING", start[0]
                if self.render and t.planned_failure is None:
                    self._render_jobs.append(t)
                self._save(t)
            else:
                return

    def _end(self, t: Task, at: float) -> None:
        t.ended = at
        failure = t.planned_failure or t.render_error
        if failure:
            t.status, t.error = "FAILED", list(failure)
        else:
            t.status = "SUCCEEDED"
            t.has_file = self.render
        self._save(t)

    def _expire(self, now: float) -> None:
        gone = []
        while self._order and self.tasks[self._order[0]].submit + TTL_S <= now:
            t = self.tasks.pop(self._order.popleft())
            gone.append(t.task_id)
            q = self._queues.get((t.key, t.model))
            if q and t in q:
                q.remove(t)
                if t.status == "RUNNING":
                    self._free.setdefault((t.key, t.model), []).append(now)
        if gone and self.store is not None:
            self.store.delete(gone)

    def next_event(self) -> float | None:
        """The earliest future time at which the state changes by the clock alone."""
        times = []
        for q, tasks in self._queues.items():
            free = self._free.get(q) or []
            head = next((t for t in tasks if t.status == "PENDING"), None)
            if head is not None and free:
                times.append(max(min(free), head.submit + head.dispatch))
            for t in tasks:
                if t.status == "RUNNING":
                    f = self._finish_time(t)
                    if f is not None:
                        times.append(f)
        return min(times) if times else None

    def take_render_jobs(self) -> list[Task]:
        jobs, self._render_jobs = self._render_jobs, []
        return [t for t in jobs if self.tasks.get(t.task_id) is t]

    def render_done(self, task_id: str, error: tuple[str, str] | None = None) -> None:
        """The app finished (or failed) rendering ``task_id``'s file."""
        t = self.tasks.get(task_id)
        if t is None or t.ready_at is not None:
            return
        t.ready_at = self.clock.now()
        t.render_error = list(error) if error else None
        self.stats.renders["failed" if error else "done"] += 1
        self._save(t)
        self.settle()

    # -- create --------------------------------------------------------------------------------
    def create(self, key: str, body: Any, *, request_id: str, oss_resolve: bool = False,
               fail: tuple[str, str] | None = None) -> Task:
        """Validate and queue one task; :class:`ApiFailure` for a refused request.

        ``fail`` (from fault injection) makes the task end FAILED after its run.
        """
        now = self.clock.now()
        self.settle(now)
        model_hint = body.get("model") if isinstance(body, Mapping) else None
        try:
            req = self._parse(body)
            audio_source = self._audio_source(req.audio_url, oss_resolve)
            hit = self.policy.check_input(req.prompt, req.negative_prompt)
            if hit:
                raise ApiFailure(*hit)
            spec = req.model
            if self.submission_limits and not self._submits.allow(
                    (key, spec.name), now, spec.submissions_per_s):
                raise ApiFailure("Throttling.RateQuota")
        except ApiFailure as e:
            self.refused(key, body, e.code)
            e.counted = True
            raise
        task_id = str(uuid.uuid4())
        dispatch, run = timing(self.speed, req.width, req.height, req.duration, task_id)
        prompt_in = body["input"]["prompt"]
        actual = None
        if spec.returns_actual_prompt:
            actual = rewrite_prompt(req.prompt, req.seed) if req.prompt_extend else req.prompt
        planned = self.policy.check_output(req.prompt, actual or "")
        if planned is None and fail is not None:
            planned = fail
        t = Task(task_id=task_id, request_id=request_id, key=key, model=spec.name,
                 model_name=str(model_hint), params=req.params, orig_prompt=prompt_in,
                 actual_prompt=actual, submit=now, dispatch=dispatch, run=run,
                 planned_failure=list(planned) if planned else None, audio_source=audio_source)
        self.tasks[task_id] = t
        self._order.append(task_id)
        self._queues[(key, spec.name)].append(t)
        self.stats.creates_accepted[(key, spec.name)] += 1
        self._save(t)
        self.settle(now)
        return t

    def refused(self, key: str, body: Any, code: str) -> None:
        """Count a refused create call (by key, model as sent, and error code)."""
        model = body.get("model") if isinstance(body, Mapping) else None
        label = model if isinstance(model, str) and len(model) < 64 else "?"
        self.stats.creates_refused[(key, label, code)] += 1

    @staticmethod
    def _parse(body: Any) -> CreateRequest:
        try:
            return parse_create(body)
        except InvalidParameter as e:
            raise ApiFailure("InvalidParameter", str(e)) from None

    def _audio_source(self, url: str | None, oss_resolve: bool) -> str | None:
        """Where the renderer reads the audio: the URL, or the file of an ``oss://`` upload."""
        if url is not None and url.startswith("oss://"):
            return self._resolve_oss(url, oss_resolve)
        return url

    def _resolve_oss(self, url: str, oss_resolve: bool) -> str:
        if not oss_resolve:
            raise ApiFailure("InvalidParameter", "oss:// URLs need the header "
                                                 "X-DashScope-OssResourceResolve: enable")
        path = self.oss_resolver(url) if self.oss_resolver else None
        if path is None:
            raise ApiFailure("InvalidParameter", f"The uploaded file {url} does not exist or "
                                                 "has expired.")
        return path

    # -- query, list, cancel -------------------------------------------------------------------
    def check_poll_rate(self, key: str) -> None:
        if not self._polls.allow(key, self.clock.now(), self.query_rate):
            self.stats.throttled[key] += 1
            raise ApiFailure("Throttling")

    def lookup(self, key: str, task_id: str) -> Task | None:
        self.settle()
        t = self.tasks.get(task_id)
        return t if t is not None and t.key == key else None

    def status(self, t: Task) -> str:
        self.settle()
        return t.status if self.tasks.get(t.task_id) is t else "UNKNOWN"

    def view(self, t: Task | None, task_id: str,
             video_url: Callable[[Task, int], str] | None = None) -> dict[str, Any]:
        """The query answer (without ``request_id``) for ``t`` (None: UNKNOWN)."""
        if t is None:
            return {"output": {"task_id": task_id, "task_status": "UNKNOWN"}}
        out: dict[str, Any] = {"task_id": t.task_id, "task_status": t.status,
                               "submit_time": fmt_time(t.submit)}
        if t.scheduled is not None:
            out["scheduled_time"] = fmt_time(t.scheduled)
        if t.ended is not None:
            out["end_time"] = fmt_time(t.ended)
        body: dict[str, Any] = {"output": out}
        if t.status == "FAILED" and t.error:
            out["code"], out["message"] = t.error
        if t.status == "SUCCEEDED":
            if t.has_file and video_url is not None:
                assert t.ended is not None
                out["video_url"] = video_url(t, int(t.ended + TTL_S))
            out["orig_prompt"] = t.orig_prompt
            if t.actual_prompt is not None:
                out["actual_prompt"] = t.actual_prompt
            body["usage"] = self._usage(t)
        return body

    @staticmethod
    def _usage(t: Task) -> dict[str, Any]:
        size, duration = t.params["size"], t.params["duration"]
        if t.spec.usage_shape == "v3":  # §7.3: no size; the pixels follow from SR and ratio
            ratio = t.params["ratio"]
            return {"duration": duration, "input_video_duration": 0,
                    "output_video_duration": duration, "video_count": 1,
                    "ratio": facts.ADAPTIVE_RATIO if ratio == "adaptive" else ratio,
                    "SR": int(t.params["resolution"][:-1])}
        if t.spec.usage_shape == "v2":
            return {"duration": duration, "size": size, "input_video_duration": 0,
                    "output_video_duration": duration, "video_count": 1,
                    "SR": int(facts.tier_of(size)[:-1])}
        return {"video_count": 1, "video_duration": duration, "video_ratio": size}

    def cancel(self, key: str, task_id: str) -> None:
        t = self.lookup(key, task_id)
        if t is None or t.status != "PENDING":
            raise ApiFailure("UnsupportedOperation")
        t.status, t.ended = "CANCELED", self.clock.now()
        self._queues[(key, t.model)].remove(t)
        self._save(t)
        self.settle()

    def list(self, key: str, query: Mapping[str, str]) -> dict[str, Any]:
        """The list answer (without ``request_id``); :class:`ApiFailure` for bad filters."""
        now = self.clock.now()
        self.settle(now)
        start, end = self._window(query, now)
        page_no = _int_param(query, "page_no", 1, 1, 10**6)
        page_size = _int_param(query, "page_size", 10, 1, 100)
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise ApiFailure("InvalidParameter", f"status must be one of {', '.join(STATUSES)}")
        model = query.get("model_name") or None
        want_model = None
        if model is not None:
            found = facts.find_model(model)
            # an unknown model simply matches nothing
            want_model = found.name if found is not None else "\x00none"
        task_id = query.get("task_id") or None
        rows = [t for t in self.tasks.values()
                if t.key == key and start <= t.submit <= end
                and (status is None or t.status == status)
                and (want_model is None or t.model == want_model)
                and (task_id is None or t.task_id == task_id)]
        rows.sort(key=lambda t: t.submit, reverse=True)
        total = len(rows)
        page = rows[(page_no - 1) * page_size: page_no * page_size]
        return {"total": total, "total_page": math.ceil(total / page_size),
                "page_no": page_no, "page_size": page_size,
                "data": [self._list_item(t) for t in page]}

    def _list_item(self, t: Task) -> dict[str, Any]:
        item: dict[str, Any] = {"task_id": t.task_id, "status": t.status,
                                "model_name": t.model_name, "gmt_create": _ms(t.submit)}
        if t.scheduled is not None:
            item["start_time"] = _ms(t.scheduled)
        if t.ended is not None:
            item["end_time"] = _ms(t.ended)
        item["request_id"] = t.request_id
        item["region"] = self.region
        return item

    @staticmethod
    def _window(query: Mapping[str, str], now: float) -> tuple[float, float]:
        day = 24 * 3600.0
        try:
            start = parse_list_time(query["start_time"]) if query.get("start_time") else None
            end = parse_list_time(query["end_time"]) if query.get("end_time") else None
        except ValueError:
            raise ApiFailure("InvalidParameter", "start_time and end_time must be "
                                                 "YYYYMMDDhhmmss") from None
        if start is None and end is None:
            return now - day, now
        if start is None:
            assert end is not None
            start = end - day
        if end is None:
            end = start + day
        if end < start:
            raise ApiFailure("InvalidParameter", "end_time must not be before start_time")
        if end - start > day:
            raise ApiFailure("InvalidParameter", "The time range between start_time and "
                                                 "end_time must not exceed 24 hours")
        # times have second precision: the end second is included whole
        return start, end + 0.999


def _ms(epoch: float) -> int:
    return int(epoch * 1000)


def _int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise ApiFailure("InvalidParameter", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiFailure("InvalidParameter", f"{name} must be from {lo} to {hi}")
    return value
