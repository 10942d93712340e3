"""The emulator as an ASGI app (Starlette): the DashScope text-to-video API, signed result
files, the SDK's upload flow and a few admin endpoints.

>>> app = create_app(api_keys=("sk-test",), speed=0.0, render=False)
>>> app.state.engine.speed
0.0

Run it in-process with ``httpx.AsyncClient(transport=httpx.ASGITransport(app=app))`` or on a
port with :mod:`wan_nb.emulator.server`. Routes (``{base}`` is this server):

- ``POST /api/v1/services/aigc/video-generation/video-synthesis``: create (async only)
- ``GET /api/v1/tasks/{id}``, ``GET /api/v1/tasks``, ``POST /api/v1/tasks/{id}/cancel``
  (trailing slashes and query strings tolerated, as the SDK's asyncio client sends them)
- ``GET /api/v1/uploads?action=getPolicy&model=…`` and ``POST /_oss``: temporary uploads
- ``GET /_files/<task_id>.mp4?Expires=…&Signature=…``: results, with HTTP range requests
- ``GET /_emulator/stats``, ``POST /_emulator/clock`` ``{"advance": s}`` (FakeClock only),
  ``GET|POST /_emulator/faults``: admin, with the same API key
- ``GET /``: what this server is, including its ``instance_id``

Every answer (any route, any status) carries ``X-Wan-Emulator-Id: <instance id>``: the
emulator says who it is, so that a client names it by identity (``emulator:<id>``) rather than
by the host and port that happen to reach it. The DashScope routes are otherwise untouched.

Keys are checked and then replaced by their account id (:func:`~.persist.account_id`): the
engine, the task database and the stats only ever see the account id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import uuid
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from . import facts
from .engine import ApiFailure, Engine, FakeClock, Speed, fmt_time
from .faults import ConnectionDropped, Fault, FaultConfig, FaultInjector
from .objects import ObjectError, ObjectStore, oss_error_xml
from .persist import (TaskStore, account_id, private_dir, read_or_create_instance_id,
                      read_or_create_secret)
from .rewrite import ContentPolicy
from .worker import RenderWorker

log = logging.getLogger("wan_nb.emulator")

MAX_BODY_BYTES = 1 << 20
#: deepest JSON nesting accepted in a body (a DashScope body is 3 levels deep)
MAX_JSON_DEPTH = 32
IDENTITY_HEADER = "X-Wan-Emulator-Id"
_DROP = "wan_nb.drop"
Handler = Callable[[Request, str, str], Awaitable[Any]]


class Emulator:
    """Everything one app serves: engine, files, renders, faults, keys."""

    def __init__(self, *, api_keys: Iterable[str] | None, data_dir: Path | None,
                 engine_kw: dict[str, Any], faults: FaultConfig | None,
                 public_base_url: str | None, render_limiter: Any = None):
        self._tmp: str | None = None
        if data_dir is None:
            # removed by aclose(), or when the emulator is garbage collected
            self._tmp = tempfile.mkdtemp(prefix="wan_nb_emulator_")
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)
            root = Path(self._tmp)
        else:
            root = private_dir(Path(data_dir).expanduser().resolve())
        self.data_dir = root
        self.instance_id = read_or_create_instance_id(None if self._tmp else root)
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.objects = ObjectStore(root, read_or_create_secret(None if self._tmp else root))
        self.store = TaskStore(root / "tasks.sqlite3") if self._tmp is None else None
        self.engine = Engine(store=self.store, oss_resolver=self.objects.resolve_oss, **engine_kw)
        self.worker = RenderWorker(self.engine, self.objects, limiter=render_limiter)
        self.faults = FaultInjector(faults)
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.closed = False

    def base_url(self, request: Request) -> str:
        if self.public_base_url:
            return self.public_base_url
        return str(request.base_url).rstrip("/")

    def check_key(self, request: Request) -> str:
        """The caller's account id (a hash of the key), or :class:`ApiFailure`."""
        header = request.headers.get("authorization", "").strip()
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else header
        if not token:
            raise ApiFailure("InvalidApiKey", "No API-key provided.")
        ok = (token.startswith("sk-") and len(token) > 3) if self.api_keys is None \
            else token in self.api_keys
        if not ok:
            raise ApiFailure("InvalidApiKey", "Invalid API-key provided.")
        return account_id(token)

    def stats(self) -> dict[str, Any]:
        s = self.engine.stats
        # keyed by account id (a hash of the key): no caller's key is shown to another
        by_key: dict[str, dict[str, Any]] = {}
        by_model: dict[str, Counter[str]] = {}
        for (key, model), n in s.creates_accepted.items():
            k = by_key.setdefault(key, {"accepted": Counter(), "refused": Counter()})
            k["accepted"][model] += n
            by_model.setdefault(model, Counter())["accepted"] += n
        refused_codes: Counter[str] = Counter()
        for (key, model, code), n in s.creates_refused.items():
            k = by_key.setdefault(key, {"accepted": Counter(), "refused": Counter()})
            k["refused"][model] += n
            by_model.setdefault(model, Counter())["refused"] += n
            refused_codes[code] += n
        states = Counter(t.status for t in self.engine.tasks.values())
        return {
            "creates": {"accepted": sum(s.creates_accepted.values()),
                        "refused": sum(s.creates_refused.values()),
                        "refused_by_code": dict(refused_codes),
                        "by_model": {m: dict(c) for m, c in by_model.items()},
                        "by_key": {k: {"accepted": dict(v["accepted"]),
                                       "refused": dict(v["refused"])}
                                   for k, v in by_key.items()}},
            "queries": sum(s.queries.values()), "lists": sum(s.lists.values()),
            "cancels": sum(s.cancels.values()), "throttled": sum(s.throttled.values()),
            "faults": dict(s.faults), "faults_total": sum(s.faults.values()),
            "renders": {"started": s.renders["started"], "done": s.renders["done"],
                        "failed": s.renders["failed"], "in_progress": self.worker.busy},
            "tasks": dict(states), "now": self.engine.clock.now(),
            "instance_id": self.instance_id,
        }

    async def aclose(self) -> None:
        """Stop renders, close the database, remove a temporary data_dir."""
        if self.closed:
            return
        self.closed = True
        await self.worker.aclose()
        if self.store is not None:
            self.store.close()
        if self._tmp is not None:
            self._cleanup()


def _rid() -> str:
    return str(uuid.uuid4())


def _error(e: ApiFailure, rid: str, fault: bool = False) -> JSONResponse:
    headers = {"X-Emulator-Fault": "injected"} if fault else None
    return JSONResponse({"request_id": rid, "code": e.code, "message": e.message},
                        status_code=e.status, headers=headers)


def _emu(request: Request) -> Emulator:
    return request.app.state.emulator


def api(endpoint: str | None, *, poll: bool = False) -> Callable[[Handler], Any]:
    """Wrap a handler: auth, poll rate, latency and faults, error envelopes, never a 500 page.

    ``endpoint`` names the fault stream (create, query, list, cancel; None: no faults).
    """
    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint_fn(request: Request) -> Response:
            emu, rid = _emu(request), _rid()
            fault: Fault | None = None
            key = ""
            try:
                key = emu.check_key(request)
                if endpoint == "create" and request.headers.get(
                        "x-dashscope-async", "").strip().lower() != "enable":
                    raise ApiFailure("AccessDenied", "current user api does not support "
                                                     "synchronous calls")
                if poll:
                    emu.engine.check_poll_rate(key)
                if endpoint is not None and emu.faults.active:
                    delay = emu.faults.latency(endpoint)
                    if delay:
                        await asyncio.sleep(delay)
                    fault = emu.faults.decide(endpoint)
                if fault is not None and fault.phase == "before":
                    return await _inject(request, emu, endpoint or "", fault, rid)
                result = await fn(request, key, rid)
                if fault is not None:
                    return await _inject(request, emu, endpoint or "", fault, rid)
            except ApiFailure as e:
                if endpoint == "create" and e.code != "InvalidApiKey" \
                        and not e.counted:
                    emu.engine.refused(key, None, e.code)
                return _error(e, rid)
            except Exception:
                log.exception("emulator handler failed")
                return _error(ApiFailure("InternalError"), rid)
            if isinstance(result, Response):
                return result
            return JSONResponse({"request_id": rid, **result})
        return endpoint_fn
    return wrap


async def _inject(request: Request, emu: Emulator, endpoint: str, fault: Fault,
                  rid: str) -> Response:
    emu.engine.stats.faults[f"{endpoint}:{fault.kind}:{fault.status or 'conn'}:"
                            f"{fault.phase}"] += 1
    if fault.kind == "drop":
        try:
            await request.body()  # read it all, so that closing the socket is a clean FIN
        except RuntimeError:  # already consumed by the handler
            pass
        request.scope[_DROP] = True
        return Response(status_code=500)
    return _error(ApiFailure(fault.code, fault.message, fault.status), rid, fault=True)


# -- API handlers --------------------------------------------------------------------------------
@api("create")
async def create_task(request: Request, key: str, rid: str) -> dict[str, Any]:
    emu = _emu(request)
    body = _parse_json(await _read_body(request, MAX_BODY_BYTES))
    resolve = request.headers.get("x-dashscope-ossresourceresolve", "").lower() == "enable"
    t = emu.engine.create(key, body, request_id=rid, oss_resolve=resolve,
                          fail=emu.faults.task_failure())
    emu.worker.kick()
    return {"output": {"task_status": "PENDING", "task_id": t.task_id}}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _parse_json(raw: bytes) -> Any:
    """A request body as JSON, or 400 InvalidParameter: malformed, NaN/Infinity, or nested
    deeper than :data:`MAX_JSON_DEPTH` (the parser's own recursion limit is a 500 otherwise)."""
    try:
        _check_depth(raw)
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ApiFailure("InvalidParameter", f"The request body is not valid JSON: "
                                             f"{str(e)[:120]}") from None


def _check_depth(raw: bytes) -> None:
    """Refuse nesting deeper than :data:`MAX_JSON_DEPTH` before parsing (brackets inside
    strings are skipped; a malformed text is left for the parser to refuse)."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


async def _read_body(request: Request, limit: int) -> bytes:
    size = int(request.headers.get("content-length") or 0)
    if size > limit:
        raise ApiFailure("BadRequest.TooLarge")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiFailure("BadRequest.TooLarge")
        chunks.append(chunk)
    return b"".join(chunks)


@api("query", poll=True)
async def get_task(request: Request, key: str, rid: str) -> dict[str, Any]:
    emu = _emu(request)
    task_id = request.path_params["task_id"]
    emu.engine.stats.queries[key] += 1
    t = emu.engine.lookup(key, task_id)
    emu.worker.kick()
    base = emu.base_url(request)

    def url(task: Any, expires: int) -> str:
        return f"{base}/_files/{task.file_name}?{emu.objects.signed_query(task.file_name, expires)}"
    return emu.engine.view(t, task_id, url)


@api("list", poll=True)
async def list_tasks(request: Request, key: str, rid: str) -> dict[str, Any]:
    emu = _emu(request)
    emu.engine.stats.lists[key] += 1
    result = emu.engine.list(key, dict(request.query_params))
    emu.worker.kick()
    return result


@api("cancel", poll=True)
async def cancel_task(request: Request, key: str, rid: str) -> dict[str, Any]:
    emu = _emu(request)
    emu.engine.stats.cancels[key] += 1
    emu.engine.cancel(key, request.path_params["task_id"])  # the body is ignored, whatever it is
    emu.worker.kick()
    return {}


@api(None)
async def upload_policy(request: Request, key: str, rid: str) -> dict[str, Any]:
    emu = _emu(request)
    q = request.query_params
    if q.get("action") != "getPolicy":
        raise ApiFailure("InvalidParameter", "action must be getPolicy")
    if not q.get("model"):
        raise ApiFailure("InvalidParameter", "model is required")
    host = emu.base_url(request) + "/_oss"
    return {"data": emu.objects.upload_policy(host, emu.engine.clock.now())}


@api(None)
async def url_error(request: Request, key: str, rid: str) -> dict[str, Any]:
    raise ApiFailure("InvalidParameter", "url error, please check url!")


# -- objects -------------------------------------------------------------------------------------
def _xml(e: ObjectError, rid: str) -> Response:
    return Response(oss_error_xml(e.code, e.message, rid), status_code=e.status,
                    media_type="application/xml", headers={"x-oss-request-id": rid})


async def oss_upload(request: Request) -> Response:
    emu, rid = _emu(request), _rid()
    try:
        try:
            raw = await _read_body(request, 110 << 20)
        except ApiFailure:
            raise ObjectError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum "
                                                     "allowed size.") from None
        _, status = emu.objects.accept_upload(request.headers.get("content-type", ""), raw,
                                              emu.engine.clock.now())
    except ObjectError as e:
        return _xml(e, rid)
    except Exception:
        log.exception("upload failed")
        return _xml(ObjectError(500, "InternalError", "We encountered an internal error."), rid)
    return Response(status_code=status, headers={"x-oss-request-id": rid})


async def serve_file(request: Request) -> Response:
    emu, rid = _emu(request), _rid()
    q = request.query_params
    try:
        path = emu.objects.open_result(request.path_params["name"], q.get("Expires"),
                                       q.get("Signature"), emu.engine.clock.now())
    except ObjectError as e:
        return _xml(e, rid)
    return FileResponse(path, media_type="video/mp4", headers={"x-oss-request-id": rid})


# -- admin ---------------------------------------------------------------------------------------
@api(None)
async def admin_stats(request: Request, key: str, rid: str) -> dict[str, Any]:
    emu = _emu(request)
    emu.engine.settle()
    emu.worker.kick()
    return {**emu.stats(), "you": key}


async def _json_object(request: Request) -> dict[str, Any]:
    data = _parse_json((await _read_body(request, MAX_BODY_BYTES)) or b"{}")
    if not isinstance(data, dict):
        raise ApiFailure("InvalidParameter", "The request body must be a JSON object.")
    return data


@api(None)
async def admin_clock(request: Request, key: str, rid: str) -> dict[str, Any]:
    emu = _emu(request)
    clock = emu.engine.clock
    if not isinstance(clock, FakeClock):
        raise ApiFailure("InvalidParameter", "the emulator runs on the real clock; start it "
                                             "with a FakeClock (--fake-clock) to move time")
    data = await _json_object(request)
    try:
        if "set" in data:
            clock.set(float(data["set"]))
        if "advance" in data:
            clock.advance(float(data["advance"]))
    except (TypeError, ValueError) as e:
        raise ApiFailure("InvalidParameter", f"bad clock change: {e}") from None
    emu.engine.settle()
    emu.worker.kick()
    return {"now": clock.now(), "now_text": fmt_time(clock.now())}


@api(None)
async def admin_faults(request: Request, key: str, rid: str) -> dict[str, Any]:
    emu = _emu(request)
    if request.method == "POST":
        try:
            emu.faults = FaultInjector(FaultConfig.from_dict(await _json_object(request)))
        except (TypeError, ValueError) as e:
            raise ApiFailure("InvalidParameter", f"bad fault config: {e}") from None
    return {"faults": emu.faults.config.to_dict()}


async def index(request: Request) -> Response:
    emu = _emu(request)
    base = emu.base_url(request)
    return JSONResponse({"service": "wan_nb DashScope text-to-video emulator",
                         "api_base": base + "/api/v1", "models": list(facts.MODELS),
                         "speed": emu.engine.speed, "instance_id": emu.instance_id})


# -- the app -------------------------------------------------------------------------------------
class EmulatorApp(Starlette):
    """Starlette plus real dropped connections: a handler that sets ``scope["wan_nb.drop"]``
    gets its answer swallowed and the connection closed (under uvicorn) or
    :class:`ConnectionDropped` raised (elsewhere, e.g. ``httpx.ASGITransport``). Every answer
    carries the identity header."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        identity = (IDENTITY_HEADER.lower().encode(),
                    self.state.emulator.instance_id.encode())

        async def guarded(message: Any) -> None:
            if scope.get(_DROP):
                return
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), identity]}
            await send(message)

        await super().__call__(scope, receive, guarded)
        if scope.get(_DROP):
            cycle = getattr(send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if cycle is None or transport is None or not hasattr(transport, "abort"):
                raise ConnectionDropped()
            # uvicorn: mark the cycle gone first, so that it writes nothing more
            cycle.disconnected = True
            transport.abort()


def create_app(*, api_keys: Iterable[str] | None = ("sk-emulator",),
               data_dir: str | Path | None = None, clock: Any = None, speed: Speed = "fast",
               faults: FaultConfig | Mapping[str, Any] | None = None,
               blocked_terms: Mapping[str, str] | Iterable[str] | None = None,
               output_blocked_terms: Mapping[str, str] | Iterable[str] | None = None,
               render: bool = True, query_rate: int | None = facts.QUERY_RATE_PER_S,
               submission_limits: bool = True, region: str = "ap-southeast-1",
               public_base_url: str | None = None, render_limiter: Any = None) -> Starlette:
    """The emulator as a Starlette app; ``app.state.engine`` is its :class:`Engine` and
    ``app.state.emulator`` the whole :class:`Emulator` (``await …aclose()`` when done).

    ``api_keys``: accepted keys (``None``: any ``sk-…``). ``data_dir``: where tasks
    (SQLite), results and uploads live (``None``: a temporary directory, nothing persists).
    ``clock``: a :class:`~wan_nb.emulator.engine.Clock` (a ``FakeClock`` enables
    ``POST /_emulator/clock``). ``speed``: ``"fast"``, ``"realistic"`` or a multiplier.
    ``blocked_terms``: refused at create; ``output_blocked_terms``: the task ends FAILED
    (see :mod:`wan_nb.emulator.rewrite` for the defaults). ``query_rate``: query/list/cancel
    per second per key (None: no limit). ``render``: False skips video files.
    """
    if isinstance(faults, Mapping):
        faults = FaultConfig.from_dict(faults)
    engine_kw = dict(clock=clock, speed=speed, render=render, query_rate=query_rate,
                     submission_limits=submission_limits, region=region,
                     policy=ContentPolicy.build(blocked_terms, output_blocked_terms))
    emu = Emulator(api_keys=api_keys, data_dir=Path(data_dir) if data_dir else None,
                   engine_kw=engine_kw, faults=faults, public_base_url=public_base_url,
                   render_limiter=render_limiter)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        emu.engine.settle()
        emu.worker.kick()  # resume renders interrupted by a restart
        yield
        await emu.aclose()

    create_path = facts.CREATE_PATH
    tasks = facts.TASKS_PATH
    uploads = facts.UPLOAD_POLICY_PATH
    routes = [
        Route(create_path, create_task, methods=["POST"]),
        Route(create_path + "/", create_task, methods=["POST"]),
        Route(tasks, list_tasks, methods=["GET"]),
        Route(tasks + "/", list_tasks, methods=["GET"]),
        Route(tasks + "/{task_id}", get_task, methods=["GET"]),
        Route(tasks + "/{task_id}/", get_task, methods=["GET"]),
        Route(tasks + "/{task_id}/cancel", cancel_task, methods=["POST"]),
        Route(tasks + "/{task_id}/cancel/", cancel_task, methods=["POST"]),
        Route(uploads, upload_policy, methods=["GET"]),
        Route(uploads + "/", upload_policy, methods=["GET"]),
        Route("/api/v1/{rest:path}", url_error,
              methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/_oss", oss_upload, methods=["POST"]),
        Route("/_oss/", oss_upload, methods=["POST"]),
        Route("/_files/{name:path}", serve_file, methods=["GET", "HEAD"]),
        Route("/_emulator/stats", admin_stats, methods=["GET"]),
        Route("/_emulator/clock", admin_clock, methods=["POST"]),
        Route("/_emulator/faults", admin_faults, methods=["GET", "POST"]),
        Route("/", index, methods=["GET"]),
    ]
    app = EmulatorApp(routes=routes, lifespan=lifespan)
    app.state.emulator = emu
    app.state.engine = emu.engine
    return app
