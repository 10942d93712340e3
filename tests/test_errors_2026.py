"""The error codes of 2026 (issue 10 item 4, reference §7.4): what each one is, and what a
create answered with it does.

Driven through the real emulator in-process (``httpx.ASGITransport``). The emulator's fault
injection cannot answer these codes yet, so a small ASGI app in front of it answers the first
creates from a script: "before" (the emulator never sees the create: nothing is made) or
"after" (the emulator makes the task, then its answer is replaced by the error: the ambiguous
case). No mocks of wan_nb.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from wan_nb.client import AsyncClient
from wan_nb.emulator.app import create_app
from wan_nb.errors import (ERROR_CODES, AmbiguousCreateError, ContentRejectedError,
                           ServerError, TaskFailed, ThrottledError)
from wan_nb.request import GenerationRequest
from wan_nb.schedule import PollPolicy
from wan_nb.session import Client
from wan_nb.wire import api_error

KEY = "sk-errors-2026-0123456789"
CREATE = "/api/v1/services/aigc/video-generation/video-synthesis"
SMALL = dict(model="wan2.5-t2v-preview", size="832*480", duration=5)

# reference §7.4, written out here (not read from either table)
REFUSED_429 = ("Throttling.BurstRate", "ServiceOverloaded", "ResourceExhausted")
NEW_CODES = {"Throttling.BurstRate": (429, ThrottledError),
             "ServiceOverloaded": (429, ThrottledError),
             "ResourceExhausted": (429, ThrottledError),
             "InvalidParameter.DataInspection": (400, ContentRejectedError),
             "InternalError.DataInspection": (500, ServerError)}


class ScriptedCreates:
    """The emulator app, except that creates are answered from ``script`` while it lasts:
    ``(code, "before" | "after")``, or ``(code, phase, status)`` to answer under another HTTP
    status than the reference's. ``creates`` counts the create requests that arrived."""

    def __init__(self, app: Any, *script: tuple[Any, ...], retry_after: str | None = None):
        self.app = app
        self.script = list(script)
        self.retry_after = retry_after
        self.creates = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        is_create = (scope["type"] == "http" and scope["method"] == "POST"
                     and scope["path"].rstrip("/") == CREATE)
        if not is_create:
            return await self.app(scope, receive, send)
        self.creates += 1
        if not self.script:
            return await self.app(scope, receive, send)
        code, phase, *other = self.script.pop(0)
        if phase == "after":  # the task is made; its answer never reaches the client
            async def lost(message: dict) -> None:
                pass
            await self.app(scope, receive, lost)
        status = other[0] if other else NEW_CODES[code][0]
        body = json.dumps({"request_id": f"scripted-{self.creates}", "code": code,
                           "message": ERROR_CODES[code][2]}).encode()
        headers = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"retry-after", self.retry_after.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def accepted(app: Any) -> int:
    return app.state.emulator.stats()["creates"]["accepted"]


# -- what each code is -------------------------------------------------------------------------

@pytest.mark.parametrize("code", list(NEW_CODES))
def test_each_new_code_is_known_with_its_status_and_class(code):
    status, cls = NEW_CODES[code]
    assert ERROR_CODES[code][:2] == (status, cls)
    err = api_error(status, {"code": code, "message": "m", "request_id": "r"})
    assert type(err) is cls and err.code == code and err.status == status
    assert err.retryable == (cls is not ContentRejectedError)


@pytest.mark.parametrize("code", REFUSED_429)
def test_a_throttling_code_is_a_refusal_whatever_its_status(code):
    """Classified by code first: under another status it is still a throttle."""
    assert isinstance(api_error(503, {"code": code}), ThrottledError)


# -- the create path of the client -------------------------------------------------------------

def run_create(tmp_path, *script, retry_throttled=True, retry_after=None):
    app = create_app(api_keys=(KEY,), data_dir=tmp_path / "emu", render=False)
    front = ScriptedCreates(app, *script, retry_after=retry_after)
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    async def main() -> Any:
        async with AsyncClient(KEY, base_url="http://emulator.test/api/v1",
                               transport=httpx.ASGITransport(app=front), sleep=sleep) as c:
            return await c.create_task(GenerationRequest("a kite", seed=1, **SMALL),
                                       retry_throttled=retry_throttled)

    try:
        return asyncio.run(main()), front, app, waited
    except Exception as e:  # the test looks at it with the rest
        return e, front, app, waited


@pytest.mark.parametrize("code", REFUSED_429)
def test_a_new_429_on_create_is_sent_again_after_backing_off(tmp_path, code):
    task, front, app, waited = run_create(tmp_path, (code, "before"), retry_after="3")
    assert task.task_id and task.status == "PENDING"
    assert front.creates == 2 and accepted(app) == 1 and waited == [3.0]


@pytest.mark.parametrize("code", REFUSED_429)
def test_a_new_429_is_raised_as_a_refusal_when_the_caller_paces_itself(tmp_path, code):
    err, front, app, waited = run_create(tmp_path, (code, "before"), retry_throttled=False)
    assert isinstance(err, ThrottledError) and not isinstance(err, AmbiguousCreateError)
    assert err.code == code and front.creates == 1 and accepted(app) == 0 and waited == []


def test_a_throttling_code_under_a_5xx_status_is_still_a_refusal_not_an_ambiguous_create(
        tmp_path):
    err, front, app, waited = run_create(tmp_path, ("ServiceOverloaded", "before", 503),
                                         retry_throttled=False)
    assert isinstance(err, ThrottledError) and err.status == 503
    assert front.creates == 1 and accepted(app) == 0
    task, front, app, waited = run_create(tmp_path / "again", ("ServiceOverloaded", "before", 503))
    assert task.task_id and front.creates == 2 and accepted(app) == 1


def test_a_content_refusal_on_create_is_raised_and_nothing_is_sent_again(tmp_path):
    err, front, app, waited = run_create(tmp_path, ("InvalidParameter.DataInspection", "before"))
    assert isinstance(err, ContentRejectedError)
    assert err.code == "InvalidParameter.DataInspection" and err.status == 400
    assert front.creates == 1 and accepted(app) == 0 and waited == []


def test_an_internal_data_inspection_error_on_create_is_ambiguous_never_resent(tmp_path):
    err, front, app, waited = run_create(tmp_path, ("InternalError.DataInspection", "after"))
    assert isinstance(err, AmbiguousCreateError) and err.sent_at is not None
    assert "InternalError.DataInspection" in str(err)
    assert isinstance(err.__cause__, ServerError)
    assert front.creates == 1 and accepted(app) == 1 and waited == []  # made, not resent


# -- through a session: what the job does ------------------------------------------------------

def session(tmp_path, *script, retry_after=None):
    app = create_app(api_keys=(KEY,), data_dir=tmp_path / "emu")
    front = ScriptedCreates(app, *script, retry_after=retry_after)
    client = Client(KEY, base_url="http://emulator.test/api/v1",
                    transport=httpx.ASGITransport(app=front), store=tmp_path / "store",
                    policy=PollPolicy(reconcile_after=0.3, reconcile_give_up=30.0))
    return client, front, app


@pytest.mark.parametrize("code", REFUSED_429)
def test_a_job_refused_by_a_new_429_is_queued_again_and_made_once(tmp_path, code):
    client, front, app = session(tmp_path, (code, "before"), retry_after="0.2")
    try:
        job = client.submit("a paced kite", seed=1, **SMALL)
        job.result(timeout=120)
        assert job.ok and job.error_code is None
        assert front.creates == 2 and accepted(app) == 1
    finally:
        client.close()


def test_a_job_refused_by_content_inspection_is_rejected_with_the_code(tmp_path):
    client, front, app = session(tmp_path, ("InvalidParameter.DataInspection", "before"))
    try:
        job = client.submit("a refused kite", seed=1, **SMALL)
        with pytest.raises(TaskFailed) as info:
            job.result(timeout=60)
        assert info.value.code == "InvalidParameter.DataInspection"
        assert job.status == "REJECTED" and job.task_id is None
        assert job.error_code == "InvalidParameter.DataInspection"
        assert front.creates == 1 and accepted(app) == 0
    finally:
        client.close()


def test_a_job_whose_create_made_its_task_before_the_500_finds_it_and_pays_once(tmp_path):
    client, front, app = session(tmp_path, ("InternalError.DataInspection", "after"))
    try:
        job = client.submit("a reconciled kite", seed=1, **SMALL)
        job.result(timeout=120)
        assert job.ok and job.task_id
        assert front.creates == 1 and accepted(app) == 1  # found by the list, not resent
        assert app.state.engine.tasks[job.task_id].params["seed"] == 1
    finally:
        client.close()


def test_a_job_whose_create_made_nothing_is_sent_again_once_the_list_shows_none(tmp_path):
    client, front, app = session(tmp_path, ("InternalError.DataInspection", "before"))
    try:
        job = client.submit("a kite sent twice", seed=1, **SMALL)
        job.result(timeout=120)
        assert job.ok
        assert front.creates == 2 and accepted(app) == 1
    finally:
        client.close()


# -- the emulator's own fault injection and content inspection, now that it knows the codes ----

def emulator_session(tmp_path, **app_kw):
    app = create_app(api_keys=(KEY,), data_dir=tmp_path / "emu", **app_kw)
    client = Client(KEY, base_url="http://emulator.test/api/v1",
                    transport=httpx.ASGITransport(app=app), store=tmp_path / "store",
                    policy=PollPolicy(reconcile_after=0.3, reconcile_give_up=30.0))
    return client, app


@pytest.mark.parametrize("code, phase", [
    ("ServiceOverloaded", "before"),  # one 429 is enough here: the scripted tests do each
    ("InternalError.DataInspection", "after"),  # the task is made, the answer is a 500
    ("InternalError.DataInspection", "before"),
])
def test_a_sweep_under_injected_faults_makes_every_video_once(tmp_path, code, phase):
    from wan_nb.emulator.faults import FaultConfig

    faults = FaultConfig(seed=4, error_rates={"create": {code: 0.5}}, create_fault_phase=phase)
    client, app = emulator_session(tmp_path, faults=faults)
    try:
        jobs = [client.submit("a sweep under faults", seed=s, **SMALL) for s in range(4)]
        for job in jobs:
            job.result(timeout=180)
        assert all(job.ok for job in jobs)
        stats = app.state.emulator.stats()
        status = NEW_CODES[code][0]
        assert sum(n for k, n in stats["faults"].items()
                   if k.startswith(f"create:error:{status}:")) > 0  # they did happen
        assert stats["creates"]["accepted"] == 4  # never paid twice
        engine = app.state.engine
        assert sorted(engine.tasks[j.task_id].params["seed"] for j in jobs) == [0, 1, 2, 3]
    finally:
        client.close()


def test_the_emulators_content_inspection_code_rejects_the_job(tmp_path):
    client, app = emulator_session(
        tmp_path, blocked_terms={"forbidden lantern": "InvalidParameter.DataInspection"})
    try:
        job = client.submit("a forbidden lantern", seed=1, **SMALL)
        job.result(timeout=60, raise_on_error=False)
        assert job.status == "REJECTED" and job.task_id is None
        assert job.error_code == "InvalidParameter.DataInspection"
        assert job.error_message == ERROR_CODES["InvalidParameter.DataInspection"][2]
        assert app.state.emulator.stats()["creates"]["accepted"] == 0
    finally:
        client.close()
