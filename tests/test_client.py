"""AsyncClient/Client against handlers fed with the documentation's exact JSON."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading

import httpx
import pytest

import wan_nb
from wan_nb import catalog
from wan_nb.client import AsyncClient, Client, Config
from wan_nb.errors import (AmbiguousCreateError, APIError, AuthenticationError, BillingError,
                           ContentRejectedError, InvalidRequestError, ServerError,
                           ThrottledError, TransportError, UnsupportedOperationError,
                           ValidationError)
from wan_nb.request import GenerationRequest
from wan_nb.wire import RetryPolicy, parse_retry_after

from .conftest import Recorder, json_response

KEY = "sk-0123456789abcdef0123456789abcdef"

# --- the seed document's own examples --------------------------------------------------------
SEED_CREATE = {"request_id": "5dbf9dc5-4f4c-9605-85ea-xxxxxxxx",
               "output": {"task_id": "7277e20e-aa01-4709-xxxxxxxx", "task_status": "PENDING"}}
SEED_SUCCEEDED = {
    "request_id": "167f3beb-3dd0-47fe-a83c-xxxxxx",
    "output": {
        "task_id": "5b65411f-d946-4e29-859e-xxxxxx", "task_status": "SUCCEEDED",
        "video_url": "https://dashscope-result-bj.oss-accelerate.aliyuncs.com/xxx.mp4"
                     "?Expires=1761300755",
        "submit_time": "2025-10-23 11:47:23.879", "scheduled_time": "2025-10-23 11:47:34.351",
        "end_time": "2025-10-23 11:52:35.323",
        "orig_prompt": "Shot from a low angle, in a medium close-up ...",
        "actual_prompt": "Low-angle shot, medium close-up, warm tones ...",
    },
    "usage": {"video_count": 1, "video_duration": 10, "video_ratio": "832*480"},
}
REF_SUCCEEDED_26 = {
    "request_id": "r26",
    "output": {"task_id": "t26", "task_status": "SUCCEEDED",
               "video_url": "https://x.invalid/v.mp4?Expires=1761300755",
               "submit_time": "2025-10-23 11:47:23.879",
               "scheduled_time": "2025-10-23 11:47:34.351",
               "end_time": "2025-10-23 11:52:35.323", "orig_prompt": "p"},
    "usage": {"duration": 10, "size": "1280*720", "input_video_duration": 0,
              "output_video_duration": 10, "video_count": 1, "SR": 720},
}
PENDING = {"request_id": "r1", "output": {"task_id": "t1", "task_status": "PENDING",
                                          "submit_time": "2025-10-23 11:47:23.879"}}
RUNNING = {"request_id": "r2", "output": {"task_id": "t1", "task_status": "RUNNING",
                                          "submit_time": "2025-10-23 11:47:23.879",
                                          "scheduled_time": "2025-10-23 11:47:34.351"}}
FAILED = {"request_id": "r3", "output": {"task_id": "t1", "task_status": "FAILED",
                                         "code": "DataInspectionFailed",
                                         "message": "Output data may contain inappropriate "
                                                    "content.",
                                         "submit_time": "2025-10-23 11:47:23.879"}}
CANCELED = {"request_id": "r4", "output": {"task_id": "t1", "task_status": "CANCELED"}}
UNKNOWN = {"request_id": "r5", "output": {"task_id": "t1", "task_status": "UNKNOWN"}}
LIST_PAGE = {"request_id": "rl", "total": 1, "total_page": 1, "page_no": 1, "page_size": 10,
             "data": [{"task_id": "tl", "status": "SUCCEEDED",
                       "model_name": "wan2.5-t2v-preview", "gmt_create": 1709260684485,
                       "start_time": 1709260684527, "end_time": 1709260685184,
                       "request_id": "rq", "region": "ap-southeast-1"}]}


def err(status: int, code: str, message: str = "m", headers: dict | None = None):
    return json_response(status, {"request_id": "re", "code": code, "message": message},
                         headers)


def fast_client(rec: Recorder, **kw) -> AsyncClient:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    c = AsyncClient(KEY, transport=rec.transport, sleep=sleep, **kw)
    c.slept = slept  # type: ignore[attr-defined]
    return c


def run(coro):
    return asyncio.run(coro)


def test_create_sends_the_documented_request():
    rec = Recorder(json_response(200, SEED_CREATE))
    c = fast_client(rec)
    state = run(c.create_task(GenerationRequest("a fox", size="832*480", duration=10,
                                                seed=12345)))
    assert (state.task_id, state.status) == ("7277e20e-aa01-4709-xxxxxxxx", "PENDING")
    assert state.request_id == "5dbf9dc5-4f4c-9605-85ea-xxxxxxxx"
    req = rec.requests[0]
    assert req.method == "POST"
    assert str(req.url) == ("https://dashscope-intl.aliyuncs.com/api/v1/services/aigc/"
                            "video-generation/video-synthesis")
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["X-DashScope-Async"] == "enable"
    assert json.loads(req.content)["parameters"]["seed"] == 12345


def test_succeeded_old_usage_shape():
    c = fast_client(Recorder(json_response(200, SEED_SUCCEEDED)))
    s = run(c.get_task("5b65411f-d946-4e29-859e-xxxxxx"))
    assert s.status == "SUCCEEDED" and s.is_final
    assert s.submit_time == dt.datetime(2025, 10, 23, 11, 47, 23, 879000,
                                        tzinfo=catalog.SERVICE_TZ)
    assert s.submit_time.tzinfo is not None
    assert s.queue_seconds == pytest.approx(10.472)
    assert s.run_seconds == pytest.approx(300.972)
    assert s.actual_prompt.startswith("Low-angle shot")
    assert s.orig_prompt.startswith("Shot from a low angle")
    assert s.video_expires_at == dt.datetime.fromtimestamp(1761300755, dt.timezone.utc)
    assert (s.usage.video_count, s.usage.seconds, s.usage.size) == (1, 10, "832*480")


def test_succeeded_wan26_usage_shape():
    s = run(fast_client(Recorder(json_response(200, REF_SUCCEEDED_26))).get_task("t26"))
    assert s.actual_prompt is None
    assert (s.usage.seconds, s.usage.size, s.usage.sr) == (10, "1280*720", 720)
    assert s.usage.columns()["usage_output_video_duration"] == 10


@pytest.mark.parametrize(("body", "status", "final"), [
    (PENDING, "PENDING", False), (RUNNING, "RUNNING", False), (FAILED, "FAILED", True),
    (CANCELED, "CANCELED", True), (UNKNOWN, "UNKNOWN", True)])
def test_every_task_state_parses(body, status, final):
    s = run(fast_client(Recorder(json_response(200, body))).get_task("t1"))
    assert (s.status, s.is_final) == (status, final)
    if status == "FAILED":
        assert s.code == "DataInspectionFailed" and "inappropriate" in s.message
    if status == "RUNNING":
        assert s.scheduled_time is not None and s.end_time is None


def test_list_page_and_filters():
    rec = Recorder(json_response(200, LIST_PAGE))
    c = fast_client(rec, region="beijing")
    start = dt.datetime(2024, 3, 1, 0, 0, tzinfo=dt.timezone.utc)
    page = run(c.list_tasks(start_time=start, end_time=start + dt.timedelta(hours=2),
                            model_name="wan2.1-t2v-turbo", status="SUCCEEDED", page_no=1,
                            page_size=10))
    q = rec.requests[0].url.params
    assert q["start_time"] == "20240301080000" and q["end_time"] == "20240301100000"
    assert q["model_name"] == "wanx2.1-t2v-turbo" and q["status"] == "SUCCEEDED"
    assert page.total == 1 and page.tasks[0].task_id == "tl"
    assert page.tasks[0].created == dt.datetime.fromtimestamp(1709260684.485, dt.timezone.utc)
    assert page.tasks[0].region == "ap-southeast-1"


def test_list_paginates():
    def page(n):
        return json_response(200, {"total": 3, "total_page": 2, "page_no": n, "page_size": 2,
                                   "data": [{"task_id": f"t{n}{i}", "status": "RUNNING"}
                                            for i in range(2 if n == 1 else 1)]})

    rec = Recorder(page(1), page(2))
    c = fast_client(rec)

    async def go():
        return [t.task_id async for t in c.iter_tasks(page_size=2)]

    assert run(go()) == ["t10", "t11", "t20"]
    assert [r.url.params["page_no"] for r in rec.requests] == ["1", "2"]


def test_list_window_over_24h_is_refused_before_sending():
    rec = Recorder()
    start = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(Exception, match="24 hours"):
        run(fast_client(rec).list_tasks(start_time=start,
                                        end_time=start + dt.timedelta(hours=25)))
    assert rec.requests == []


def test_cancel_success_and_unsupported():
    rec = Recorder(json_response(200, {"request_id": "rc"}),
                   err(400, "UnsupportedOperation", "Failed to cancel the task, please confirm "
                                                    "if the task is in PENDING status."))
    c = fast_client(rec)
    run(c.cancel_task("t1"))
    assert rec.requests[0].url.path == "/api/v1/tasks/t1/cancel"
    with pytest.raises(UnsupportedOperationError, match="PENDING") as info:
        run(c.cancel_task("t1"))
    assert info.value.status == 400 and info.value.request_id == "re"


@pytest.mark.parametrize(("status", "code", "cls"), [
    (400, "InvalidParameter", InvalidRequestError),
    (400, "DataInspectionFailed", ContentRejectedError),
    (400, "IPInfringementSuspect", ContentRejectedError),
    (400, "Arrearage", BillingError),
    (401, "InvalidApiKey", AuthenticationError),
    (403, "AccessDenied", AuthenticationError),
    (403, "Model.AccessDenied", AuthenticationError),
    (403, "AccessDenied.Unpurchased", AuthenticationError),
    (404, "ModelNotFound", InvalidRequestError),
    (413, "BadRequest.TooLarge", InvalidRequestError),
    (400, "SomethingNew", InvalidRequestError),
])
def test_error_families_on_create(status, code, cls):
    rec = Recorder(err(status, code, "details"))
    with pytest.raises(cls) as info:
        run(fast_client(rec).create_task(prompt="a"))
    e = info.value
    assert (e.status, e.code, e.message, e.request_id) == (status, code, "details", "re")
    assert len(rec.requests) == 1


@pytest.mark.parametrize(("status", "code", "cls"), [
    (408, "RequestTimeOut", ServerError), (429, "Throttling", ThrottledError),
    (429, "Throttling.RateQuota", ThrottledError),
    (429, "Throttling.AllocationQuota", ThrottledError),
    (500, "InternalError", ServerError), (500, "InternalError.Algo", ServerError),
    (500, "InternalError.Timeout", ServerError), (500, "SystemError", ServerError),
    (503, "ModelUnavailable", ServerError)])
def test_retryable_families_on_query_give_up_after_max_retries(status, code, cls):
    rec = Recorder(*[err(status, code)] * 3)
    c = fast_client(rec, retry=RetryPolicy(max_retries=2))
    with pytest.raises(cls):
        run(c.get_task("t1"))
    assert len(rec.requests) == 3


def test_429_then_success():
    rec = Recorder(err(429, "Throttling.RateQuota"), json_response(200, PENDING))
    c = fast_client(rec)
    assert run(c.get_task("t1")).status == "PENDING"
    assert len(rec.requests) == 2 and len(c.slept) == 1


def test_500_twice_then_success_with_backoff():
    rec = Recorder(err(500, "InternalError"), err(500, "InternalError"),
                   json_response(200, RUNNING))
    c = fast_client(rec, retry=RetryPolicy(base=1.0, cap=10.0))
    assert run(c.get_task("t1")).status == "RUNNING"
    assert len(c.slept) == 2
    assert 0 <= c.slept[0] <= 1.0 and 0 <= c.slept[1] <= 2.0


def test_retry_after_is_honoured():
    rec = Recorder(err(429, "Throttling", headers={"Retry-After": "7"}),
                   json_response(200, PENDING))
    c = fast_client(rec)
    run(c.get_task("t1"))
    assert c.slept == [7.0]
    when = dt.datetime(2030, 1, 1, 0, 0, 30, tzinfo=dt.timezone.utc)
    assert parse_retry_after("Tue, 01 Jan 2030 00:01:00 GMT", now=when) == 30.0


def test_create_is_retried_after_a_429_refusal():
    rec = Recorder(err(429, "Throttling.RateQuota"), json_response(200, SEED_CREATE))
    c = fast_client(rec)
    assert run(c.create_task(prompt="a")).status == "PENDING"
    assert len(rec.requests) == 2


def test_create_is_retried_when_the_connection_never_opened():
    rec = Recorder(httpx.ConnectError("refused"), json_response(200, SEED_CREATE))
    assert run(fast_client(rec).create_task(prompt="a")).task_id.startswith("7277")
    assert len(rec.requests) == 2


@pytest.mark.parametrize("failure", [
    httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("peer closed"),
    err(500, "InternalError"), err(503, "ModelUnavailable")])
def test_create_is_not_retried_after_it_may_have_reached_the_server(failure):
    rec = Recorder(failure, json_response(200, SEED_CREATE))
    with pytest.raises(AmbiguousCreateError) as info:
        run(fast_client(rec).create_task(prompt="a"))
    assert len(rec.requests) == 1
    assert info.value.sent_at is not None
    assert "not sent again" in str(info.value)


def test_connection_errors_on_query_are_retried_then_raise_transport_error():
    rec = Recorder(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(TransportError, match="after 3 attempts"):
        run(fast_client(rec, retry=RetryPolicy(max_retries=2)).get_task("t1"))


def test_find_created_task_reconciles_an_ambiguous_create():
    sent = dt.datetime(2025, 10, 23, 3, 47, 23, tzinfo=dt.timezone.utc)
    ms = int(sent.timestamp() * 1000)
    listing = {"total": 3, "total_page": 1, "page_no": 1, "page_size": 100, "data": [
        {"task_id": "known", "status": "RUNNING", "gmt_create": ms - 200},
        {"task_id": "other", "status": "SUCCEEDED", "gmt_create": ms + 100},
        {"task_id": "mine", "status": "SUCCEEDED", "gmt_create": ms + 900}]}
    other = {"output": {"task_id": "other", "task_status": "SUCCEEDED",
                        "orig_prompt": "someone else's"}}
    mine = {"output": {"task_id": "mine", "task_status": "SUCCEEDED", "orig_prompt": "a fox"}}
    rec = Recorder(json_response(200, listing), json_response(200, other),
                   json_response(200, mine))
    found = run(fast_client(rec).find_created_task(GenerationRequest("a fox"), sent,
                                                   exclude={"known"}))
    assert found.task_id == "mine"
    assert rec.requests[0].url.params["model_name"] == "wan2.5-t2v-preview"


def test_api_key_never_appears_in_reprs_or_errors():
    rec = Recorder(err(401, "InvalidApiKey", f"Invalid API-key provided: {KEY}"))
    c = fast_client(rec)
    assert KEY not in repr(c) and "sk-***" in repr(c)
    assert KEY not in repr(c.config)
    with pytest.raises(AuthenticationError) as info:
        run(c.get_task("t1"))
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)
    assert KEY not in repr(Client(KEY))


def test_configuration_precedence(monkeypatch):
    env = {"DASHSCOPE_API_KEY": "sk-env", "DASHSCOPE_HTTP_BASE_URL":
           "https://dashscope.aliyuncs.com/api/v1"}
    cfg = Config.resolve(env=env)
    assert (cfg.api_key.reveal(), cfg.base_url, cfg.region) == (
        "sk-env", "https://dashscope.aliyuncs.com", "beijing")
    assert Config.resolve("sk-arg", env=env).api_key.reveal() == "sk-arg"
    assert Config.resolve(region="virginia", env=env).base_url == catalog.REGIONS["virginia"]
    assert Config.resolve(base_url="http://127.0.0.1:9/api/v1/", env={}).backend == \
        "custom:127.0.0.1:9"
    assert Config.resolve(env={}).base_url == catalog.REGIONS["singapore"]
    with pytest.raises(Exception, match="unknown"):
        Config.resolve(region="mars", env={})
    # resolved at construction: a later change of the environment does not move a client
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-first")
    c = AsyncClient()
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-second")
    assert c.config.api_key.reveal() == "sk-first"


def test_missing_key_is_a_clear_error_before_sending():
    rec = Recorder()
    with pytest.raises(Exception, match="no API key"):
        run(AsyncClient("", transport=rec.transport).get_task("t1"))
    assert rec.requests == []


def test_sync_facade_inside_a_running_loop_and_from_threads():
    """A notebook cell runs inside the kernel's event loop: the facade must still work."""
    rec = Recorder(*[json_response(200, PENDING)] * 3)
    client = Client(async_client=fast_client(rec))

    async def cell():
        return client.get_task("t1").status  # blocking call from inside a running loop

    assert asyncio.run(cell()) == "PENDING"
    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(client.get_task("t1").status))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert out == ["PENDING", "PENDING"]


def test_error_from_unparseable_body_keeps_status():
    rec = Recorder(httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(ServerError) as info:
        run(fast_client(rec, retry=RetryPolicy(max_retries=0)).get_task("t1"))
    assert info.value.status == 502 and "bad gateway" in info.value.message
    assert isinstance(info.value, APIError)


def test_find_created_task_waits_when_candidates_cannot_be_told_apart():
    sent = dt.datetime(2025, 10, 23, 3, 47, 23, tzinfo=dt.timezone.utc)
    ms = int(sent.timestamp() * 1000)
    two = {"total": 2, "total_page": 1, "page_no": 1, "page_size": 100, "data": [
        {"task_id": "a", "status": "RUNNING", "gmt_create": ms + 100},
        {"task_id": "b", "status": "RUNNING", "gmt_create": ms + 300}]}
    running = {"output": {"task_id": "x", "task_status": "RUNNING"}}
    rec = Recorder(json_response(200, two), json_response(200, running),
                   json_response(200, running))
    with pytest.raises(AmbiguousCreateError, match="told apart"):
        run(fast_client(rec).find_created_task(GenerationRequest("a fox"), sent))
    # one unconfirmed candidate, but another ambiguous create could own it: wait as well
    one = {**two, "total": 1, "data": two["data"][:1]}
    rec = Recorder(json_response(200, one), json_response(200, running))
    with pytest.raises(AmbiguousCreateError):
        run(fast_client(rec).find_created_task(GenerationRequest("a fox"), sent,
                                               others_pending=1))
    rec = Recorder(json_response(200, one), json_response(200, running))
    assert run(fast_client(rec).find_created_task(GenerationRequest("a fox"), sent)
               ).task_id == "a"
    empty = {"total": 0, "total_page": 0, "page_no": 1, "page_size": 100, "data": []}
    rec = Recorder(json_response(200, empty))
    assert run(fast_client(rec).find_created_task(GenerationRequest("a fox"), sent)) is None


def test_a_throttled_create_is_a_refusal_not_an_ambiguous_create():
    rec = Recorder(err(429, "Throttling.RateQuota", headers={"Retry-After": "3"}))
    with pytest.raises(ThrottledError) as info:
        run(fast_client(rec).create_task(prompt="a", retry_throttled=False))
    assert info.value.retry_after == 3.0 and len(rec.requests) == 1


def test_the_key_is_not_in_traceback_locals():
    import traceback

    rec = Recorder(err(400, "UnsupportedOperation", "not PENDING"))
    with pytest.raises(UnsupportedOperationError) as info:
        run(fast_client(rec).cancel_task("t1"))
    text = "".join(traceback.TracebackException.from_exception(
        info.value, capture_locals=True).format())
    assert "headers" in text and KEY not in text


@pytest.mark.parametrize("kwargs", [{"base_url": "http://127.0.0.1:8765"}, {"region": "beijing"},
                                    {"backend": "x"}])
def test_connect_without_a_key_refuses_arguments_that_name_another_service(kwargs, tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="no API key"):
        wan_nb.connect(**kwargs)
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
