"""The DashScope text-to-video client: :class:`AsyncClient` over httpx, and :class:`Client`,
its sync facade on the toolkit's loop thread.

Configuration is resolved once, when the client is built: argument > environment variable
(``DASHSCOPE_API_KEY``, ``DASHSCOPE_HTTP_BASE_URL``, like the official SDK) > default region.

Retries: idempotent calls (query, list, cancel, download, upload policy) are retried with
exponential backoff and full jitter on 408/429/5xx and connection errors, honouring
``Retry-After``. A create is retried only when the service cannot have made a task: the
connection was never established, or the answer was a throttling refusal (429: ``Throttling*``,
``ServiceOverloaded``, ``ResourceExhausted``). Any other failure after the request left (read
timeout, dropped connection, 5xx, ``InternalError.DataInspection`` included) raises
:class:`AmbiguousCreateError`; it is
resolved by :meth:`AsyncClient.find_created_task`, which looks for the task in the list endpoint
instead of creating a second, paid one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping

import httpx

from . import catalog
from .errors import (AmbiguousCreateError, APIError, DownloadError, TaskExpired,
                     ThrottledError, TransportError, ValidationError, redact)
from .config import USER_AGENT
from .config import Config as Config
from .config import Secret as Secret
from .reconcile import match_created_task
from .request import GenerationRequest, check_audio_file, file_sha256, local_path
from .wire import (RetryPolicy, TaskPage, TaskState, TaskSummary, api_error, format_list_time,
                   parse_task, parse_task_page, retryable_status, url_expiry)

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    bytes: int
    sha256: str


class AsyncClient:
    """Async DashScope text-to-video client.

    >>> async def main():                                       # doctest: +SKIP
    ...     async with AsyncClient() as c:
    ...         task = await c.create_task(GenerationRequest("a red kite", size="832*480"))
    ...         state = await c.get_task(task.task_id)

    ``transport`` is any httpx async transport (``httpx.ASGITransport(app)`` for the emulator
    in-process, ``httpx.MockTransport(handler)`` in tests). ``sleep`` and ``rng`` are injectable
    so retry schedules are testable without waiting.
    """

    def __init__(self, api_key: str | Secret | None = None, *, region: str | None = None,
                 base_url: str | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 tz: dt.tzinfo = catalog.SERVICE_TZ, backend: str | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 rng: random.Random | None = None, config: Config | None = None,
                 workspace: str | None = None):
        api_key = None if api_key is None else Secret(api_key)  # first: see Secret
        self.config = config or Config.resolve(api_key, region, base_url, backend=backend,
                                               workspace=workspace)
        self.retry = retry or RetryPolicy()
        self.tz = tz
        self.timeout = timeout
        self._transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http: httpx.AsyncClient | None = None
        self._bearer = _BearerAuth(self.config.api_key)
        self.closed = False

    def __repr__(self) -> str:
        config = getattr(self, "config", None)  # a traceback may show a half-built client
        if not isinstance(config, Config):
            return "AsyncClient(<not configured>)"
        return (f"AsyncClient(base_url={config.base_url!r}, "
                f"backend={config.backend!r}, api_key={config.api_key!r})")

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def backend(self) -> str:
        return self.config.backend

    # -- plumbing ----------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self.closed:
            raise TransportError("this client is closed")
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(base_url=self.config.base_url,
                                           transport=self._transport,
                                           timeout=httpx.Timeout(self.timeout, connect=10.0),
                                           headers={"User-Agent": USER_AGENT},
                                           follow_redirects=False)
        return self._http

    def require_key(self) -> None:
        """Raise :class:`ValidationError` when no API key is configured."""
        if not self.config.api_key:
            raise ValidationError([("api_key", "no API key: pass api_key=..., set "
                                               "DASHSCOPE_API_KEY, or use wan_nb.connect() "
                                               "without a key for the offline emulator")])

    async def aclose(self) -> None:
        self.closed = True
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, *, create: bool = False,
                    retry_throttled: bool = True, **kwargs: Any) -> Any:
        """Send with retries; return the decoded JSON of a 2xx answer or raise."""
        self.require_key()
        headers = kwargs.pop("headers", {})
        kwargs["auth"] = self._bearer
        attempt = 0
        while True:
            attempt += 1
            sent_at = dt.datetime.now(dt.timezone.utc)
            try:
                resp = await self._client().request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as e:
                detail = redact(f"{type(e).__name__}: {e}")
                if create and not isinstance(e, _NEVER_SENT):
                    raise AmbiguousCreateError(
                        f"the create request left but no answer came back ({detail}); the "
                        "task may exist, so it is not sent again blindly", sent_at=sent_at
                    ) from e
                delay = self.retry.delay(attempt, None, self._rng)
                if delay is None:
                    raise TransportError(f"{method} {path} failed after {attempt} attempts: "
                                         f"{detail}") from e
                await self._sleep(delay)
                continue
            if resp.is_success:
                try:
                    return resp.json()
                except ValueError as e:
                    raise APIError(resp.status_code, "InvalidResponse",
                                   f"expected JSON, got {resp.text[:200]!r}") from e
            err = api_error(resp.status_code, _json_or_text(resp), resp.headers)
            safe = not create or (retry_throttled and isinstance(err, ThrottledError))
            # a throttling code is a refusal whatever the status (the 2026 ServiceOverloaded
            # and ResourceExhausted are documented as 429, a refusal: nothing was created)
            refused = (400 <= resp.status_code < 500 and resp.status_code != 408
                       or isinstance(err, ThrottledError))
            if create and not safe and not refused and retryable_status(resp.status_code):
                raise AmbiguousCreateError(
                    f"the create request got {err}; the task may exist, so it is not sent "
                    "again blindly", sent_at=sent_at) from err
            delay = (self.retry.delay(attempt, getattr(err, "retry_after", None), self._rng)
                     if safe and err.retryable else None)
            if delay is None:
                raise err
            await self._sleep(delay)

    # -- the four endpoints ------------------------------------------------------------------
    async def create_task(self, request: GenerationRequest | None = None, *,
                          retry_throttled: bool = True, **params: Any) -> TaskState:
        """Create a task (``X-DashScope-Async: enable``) from a request or from keyword
        parameters (validated before anything is sent). A local ``audio_url`` is uploaded
        first, like the official SDK does. ``retry_throttled=False`` raises a 429 refusal at
        once (the job poller paces creates itself and requeues instead)."""
        request = as_request(request, params)
        # a model this region does not offer is refused here, before anything is sent
        catalog.check_region(request.model, self.config.region)
        headers = {"X-DashScope-Async": "enable", "Content-Type": "application/json"}
        audio_url = None
        if request.audio_is_local:
            # read once, here: the bytes checked against what the run recorded are the
            # bytes sent (a file changed since is refused before anything is sent)
            content = await asyncio.to_thread(request.read_audio_file)
            audio_url = await self._upload(content, local_path(str(request.audio_url)),
                                           request.model)
        if (audio_url or request.audio_url or "").startswith("oss://"):
            headers["X-DashScope-OssResourceResolve"] = "enable"
        body = request.wire_body(region=self.config.region, audio_url=audio_url)
        data = await self._call("POST", catalog.CREATE_PATH, json=body, headers=headers,
                                create=True, retry_throttled=retry_throttled)
        state = parse_task(data, self.tz)
        if not state.task_id:
            raise APIError(200, "InvalidResponse", f"create answer has no task_id: {data!r}")
        return state

    async def get_task(self, task_id: str) -> TaskState:
        """The task's current state (``UNKNOWN`` when expired or never existed)."""
        _check_task_id(task_id)
        return parse_task(await self._call("GET", f"{catalog.TASKS_PATH}/{task_id}"), self.tz)

    async def list_tasks(self, *, task_id: str | None = None,
                         start_time: dt.datetime | None = None,
                         end_time: dt.datetime | None = None, model_name: str | None = None,
                         status: str | None = None, page_no: int = 1,
                         page_size: int = 10) -> TaskPage:
        """One page of the account's tasks (window at most 24 h; default the last 24 h)."""
        for name, when in (("start_time", start_time), ("end_time", end_time)):
            if when is not None and (not isinstance(when, dt.datetime) or when.tzinfo is None):
                raise ValidationError([(name, f"{name} must be a timezone-aware datetime")])
        if start_time and end_time and end_time - start_time > catalog.TASK_TTL:
            raise ValidationError([("start_time", "the list window is at most 24 hours")])
        params: dict[str, Any] = {"page_no": page_no, "page_size": page_size}
        if task_id:
            params["task_id"] = task_id
        if start_time:
            params["start_time"] = format_list_time(start_time, self.tz)
        if end_time:
            params["end_time"] = format_list_time(end_time, self.tz)
        if model_name:
            params["model_name"] = catalog.wire_model_name(model_name, self.config.region)
        if status:
            params["status"] = status
        return parse_task_page(await self._call("GET", catalog.TASKS_PATH, params=params))

    async def iter_tasks(self, *, page_size: int = 100, **filters: Any
                         ) -> AsyncIterator[TaskSummary]:
        """Every task matching ``filters`` (see :meth:`list_tasks`), page after page."""
        page_no = 1
        while True:
            page = await self.list_tasks(page_no=page_no, page_size=page_size, **filters)
            for t in page.tasks:
                yield t
            if page_no >= page.total_page or not page.tasks:
                return
            page_no += 1

    async def cancel_task(self, task_id: str) -> None:
        """Cancel a PENDING task; :class:`UnsupportedOperationError` otherwise."""
        _check_task_id(task_id)
        await self._call("POST", f"{catalog.TASKS_PATH}/{task_id}/cancel")

    # -- reconciliation of an ambiguous create ------------------------------------------------
    async def find_created_task(self, request: GenerationRequest, sent_at: dt.datetime, *,
                                exclude: Iterable[str] = (), window: float = 120.0,
                                others_pending: int = 0, siblings_pending: int = 0,
                                throttle: Callable[[], Awaitable[Any]] | None = None
                                ) -> TaskSummary | None:
        """The task an ambiguous create made, if the list endpoint shows one.

        Candidates are tasks of the same model created from just before ``sent_at`` to
        ``window`` seconds after, minus ``exclude`` (task ids the caller already knows); each
        is queried for its ``orig_prompt`` (reported once a task has ended), and
        :func:`wan_nb.reconcile.match_created_task` decides (``others_pending``,
        ``siblings_pending``: see there). ``throttle`` is awaited before each request (the
        caller's query-rate limiter).

        Returns None when there is no candidate at all (no task was made: resubmitting is
        safe once the list was checked after the create's answer was due). Raises
        :class:`AmbiguousCreateError` while candidates exist but none can be told apart yet
        (ask again later; never resubmit then).
        """
        known = set(exclude)
        start = sent_at - dt.timedelta(seconds=60)  # room for a local clock ahead of the service
        candidates = []
        page_no = 1
        while True:
            if throttle is not None:
                await throttle()
            page = await self.list_tasks(start_time=start,
                                         end_time=start + dt.timedelta(seconds=window),
                                         model_name=request.model, page_no=page_no,
                                         page_size=100)
            candidates += [t for t in page.tasks if t.task_id not in known]
            if page_no >= page.total_page or not page.tasks:
                break
            page_no += 1
        if not candidates:
            return None
        candidates.sort(key=lambda t: abs(((t.created or sent_at) - sent_at).total_seconds()))
        seen: list[tuple[TaskSummary, str | None]] = []
        for cand in candidates:
            if throttle is not None:
                await throttle()
            seen.append((cand, (await self.get_task(cand.task_id)).orig_prompt))
        match = match_created_task(request.prompt, seen, others_pending=others_pending,
                                   siblings_pending=siblings_pending)
        if match.kind == "undecided":
            raise AmbiguousCreateError(f"{request.model}: {match.why}", sent_at=sent_at)
        return match.task

    # -- files -------------------------------------------------------------------------------
    async def upload_file(self, path: str, model: str, *,
                          expect_sha256: str | None = None) -> str:
        """Upload a local audio file the way the official SDK does; returns its ``oss://``
        URL. The file is checked again first (it may have changed or gone since the request
        was validated): :class:`ValidationError` before anything is sent if it is not
        acceptable WAV/MP3 audio, or (``expect_sha256``) not the content the request was
        recorded with."""
        await asyncio.to_thread(check_audio_file, path, model)
        if expect_sha256 is not None:
            now = await asyncio.to_thread(file_sha256, local_path(path))
            if now != expect_sha256:
                raise ValidationError([("audio_url", f"audio file {path!r} changed since the "
                                                     "request was recorded (its sha256 "
                                                     "differs); submit it again as a new "
                                                     "request")])
        path = local_path(path)
        with open(path, "rb") as f:
            content = f.read()
        return await self._upload(content, path, model)

    async def _upload(self, content: bytes, path: str, model: str) -> str:
        """Upload ``content`` (the file at ``path``) as the official SDK does: the upload
        policy, then a form POST to its host; returns the ``oss://`` URL."""
        policy = (await self._call("GET", catalog.UPLOAD_POLICY_PATH,
                                   params={"action": "getPolicy", "model": model}))["data"]
        key = f"{policy['upload_dir']}/{os.path.basename(path)}"
        form = {"OSSAccessKeyId": policy["oss_access_key_id"], "Signature": policy["signature"],
                "policy": policy["policy"], "key": key,
                "x-oss-object-acl": policy["x_oss_object_acl"],
                "x-oss-forbid-overwrite": policy["x_oss_forbid_overwrite"],
                "success_action_status": "200"}
        try:
            resp = await self._client().post(policy["upload_host"], data=form,
                                             files={"file": (os.path.basename(path), content)})
        except httpx.HTTPError as e:
            raise TransportError(redact(f"upload of {path!r} failed: {e}")) from e
        if not resp.is_success:
            raise api_error(resp.status_code, _json_or_text(resp), resp.headers)
        return "oss://" + key

    async def download(self, url: str, path: str | os.PathLike, *,
                       max_attempts: int = 4) -> DownloadResult:
        """Stream ``url`` into ``path`` (atomically), resuming with ``Range`` after a broken
        connection. Only an MP4 is kept: an error body (JSON or XML) is never saved as a video.
        An expired signed URL raises :class:`TaskExpired`.
        """
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        expires = url_expiry(url)
        if expires is not None and expires <= dt.datetime.now(dt.timezone.utc):
            raise TaskExpired(f"the video URL expired at {expires.isoformat()}; the service "
                              "keeps results for 24 hours")
        part.unlink(missing_ok=True)
        last: Exception | None = None
        for attempt in range(1, max_attempts + 1):
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                async with self._client().stream("GET", url, headers=headers) as resp:
                    if resp.status_code == 403 or resp.status_code == 404:
                        body = (await resp.aread())[:300].decode("utf-8", "replace")
                        if expires is not None and "xpired" in body:
                            raise TaskExpired(f"the video URL has expired: {body!r}")
                        raise DownloadError(f"HTTP {resp.status_code} for the video: {body!r}",
                                            status=resp.status_code)
                    if resp.status_code not in (200, 206):
                        if retryable_status(resp.status_code):
                            raise _Retry(f"HTTP {resp.status_code}", resp.status_code)
                        body = (await resp.aread())[:300].decode("utf-8", "replace")
                        raise DownloadError(f"HTTP {resp.status_code} for the video: {body!r}",
                                            status=resp.status_code)
                    mode = "ab" if resp.status_code == 206 and have else "wb"
                    with open(part, mode) as f:
                        async for chunk in resp.aiter_bytes(1 << 16):
                            if f.tell() == 0 and not chunk[4:8] == b"ftyp":
                                raise DownloadError("the answer is not an MP4 (starts with "
                                                    f"{chunk[:40]!r}); nothing was saved")
                            f.write(chunk)
                    expected = _content_total(resp)
                    got = part.stat().st_size
                    if expected is not None and got != expected:
                        raise _Retry(f"got {got} of {expected} bytes")
                    break
            except (httpx.HTTPError, _Retry) as e:
                last = e
                if attempt < max_attempts:
                    await self._sleep(self.retry.delay(attempt, None, self._rng) or 0)
                continue
            except DownloadError:
                part.unlink(missing_ok=True)
                raise
        else:
            raise DownloadError(redact(f"download failed after {max_attempts} attempts: "
                                       f"{last}"), retryable=True,
                                status=last.status if isinstance(last, _Retry) else None
                                ) from last
        digest = file_sha256(part)
        size = part.stat().st_size
        os.replace(part, dest)
        return DownloadResult(dest, size, digest)


def as_request(request: GenerationRequest | str | None, params: Mapping[str, Any]
               ) -> GenerationRequest:
    """A :class:`GenerationRequest` from a request, or from a prompt and/or keyword
    parameters."""
    if isinstance(request, str):
        if "prompt" in params:
            raise ValidationError([("prompt", "the prompt was given twice (as the first "
                                              "argument and as prompt=); give it once")])
        return GenerationRequest(request, **params)
    if request is not None and params:
        raise ValidationError([("request", "pass either a GenerationRequest or keyword "
                                           f"parameters, not both (got {sorted(params)})")])
    if request is None:
        return GenerationRequest(**params)
    if not isinstance(request, GenerationRequest):
        raise ValidationError([("request", f"expected a GenerationRequest, got "
                                           f"{type(request).__name__}")])
    return request


class _BearerAuth(httpx.Auth):
    """Adds the key to requests for the API only (never to upload hosts or video URLs); the
    key stays inside a :class:`Secret`, so no plain string holds it in a caller's frame."""

    def __init__(self, key: Secret):
        self._key = key

    def __repr__(self) -> str:
        return "_BearerAuth(sk-***)"

    def auth_flow(self, request: httpx.Request):  # type: ignore[override]
        request.headers["Authorization"] = "Bearer " + self._key.reveal()
        yield request


class _Retry(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _content_total(resp: httpx.Response) -> int | None:
    cr = resp.headers.get("content-range")
    if cr and "/" in cr and not cr.endswith("*"):
        return int(cr.rsplit("/", 1)[1])
    cl = resp.headers.get("content-length")
    return int(cl) if cl and resp.status_code == 200 else None


def _json_or_text(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.content[:300]


def _check_task_id(task_id: str) -> None:
    if (not isinstance(task_id, str) or not task_id or ".." in task_id
            or any(c in task_id for c in "/?#% ")):
        raise ValidationError([("task_id", f"task_id {task_id!r} is not a task id")])


def __getattr__(name: str) -> Any:
    if name == "Client":  # the session moved to wan_nb.session; kept importable from here
        from .session import Client

        return Client
    raise AttributeError(f"module 'wan_nb.client' has no attribute {name!r}")
