"""Fault injection: reproducible with a seed, before/after the create, real dropped connections."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from wan_nb.emulator import ConnectionDropped, EmbeddedEmulator, FaultConfig, FaultInjector

from .conftest import AUTH, CREATE, HEADERS, TASKS, body

pytestmark = pytest.mark.anyio


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        FaultConfig(error_rates={"create": {418: 0.1}})
    with pytest.raises(ValueError):
        FaultConfig(error_rates={"nope": {500: 0.1}})
    with pytest.raises(ValueError):
        FaultConfig(error_rates={"query": {500: 0.7, 503: 0.7}})
    with pytest.raises(ValueError):
        FaultConfig(drop_rate=1.5)
    with pytest.raises(ValueError):
        FaultConfig(create_fault_phase="during")  # type: ignore[arg-type]
    cfg = FaultConfig(seed=1, error_rates={"create": {429: 0.2, "Arrearage": 0.1}},
                      latency=(0.0, 0.1), drop_rate={"query": 0.1},
                      fail_tasks={"code": "InternalError.Algo", "rate": 0.5})
    assert FaultConfig.from_dict(cfg.to_dict()) == cfg


def test_same_seed_same_faults() -> None:
    cfg = FaultConfig(seed=1234, error_rates={"query": {500: 0.2, 503: 0.1, 429: 0.1}},
                      drop_rate=0.1)

    def run() -> list[Any]:
        inj = FaultInjector(cfg)
        return [(f.kind, f.status) if (f := inj.decide("query")) else None for _ in range(200)]

    a, b = run(), run()
    assert a == b
    hits = [x for x in a if x]
    assert 40 <= len(hits) <= 120  # ~50%
    assert {x[0] for x in hits} == {"error", "drop"}
    # streams are per endpoint: create calls in between do not shift the query sequence
    inj = FaultInjector(cfg)
    mixed = []
    for _ in range(200):
        inj.decide("create")
        f = inj.decide("query")
        mixed.append((f.kind, f.status) if f else None)
    assert mixed == a
    other = FaultInjector(FaultConfig(seed=99, error_rates=cfg.error_rates, drop_rate=0.1))
    assert [(f.kind, f.status) if (f := other.decide("query")) else None
            for _ in range(200)] != a


async def test_same_seed_same_answers_over_http(emu_factory: Any) -> None:
    cfg = FaultConfig(seed=7, error_rates={"query": {500: 0.3, 503: 0.2}})
    runs = []
    for _ in range(2):
        async with emu_factory(faults=cfg, query_rate=None) as emu:
            runs.append([(await emu.client.get(f"{TASKS}/x", headers=AUTH)).status_code
                         for _ in range(40)])
            stats = await emu.stats()
            assert stats["faults_total"] == sum(c != 200 for c in runs[-1])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500, 503}


async def test_injected_error_envelopes(emu_factory: Any) -> None:
    cfg = FaultConfig(error_rates={"create": {429: 1.0}, "list": {503: 1.0},
                                   "cancel": {"InternalError.Algo": 1.0}})
    async with emu_factory(faults=cfg) as emu:
        r = await emu.create()
        assert r.status_code == 429 and r.json()["code"] == "Throttling.RateQuota"
        assert r.headers["x-emulator-fault"] == "injected"
        r = await emu.list()
        assert r.status_code == 503 and r.json()["code"] == "ModelUnavailable"
        r = await emu.client.post(f"{TASKS}/x/cancel", headers=AUTH)
        assert r.status_code == 500 and r.json()["code"] == "InternalError.Algo"
        assert set(r.json()) == {"request_id", "code", "message"}


async def test_create_fault_before_creates_nothing(emu_factory: Any) -> None:
    cfg = FaultConfig(error_rates={"create": {500: 1.0}}, create_fault_phase="before")
    async with emu_factory(faults=cfg) as emu:
        r = await emu.create()
        assert r.status_code == 500 and r.json()["code"] == "InternalError"
        assert emu.engine.tasks == {}
        assert (await emu.stats())["creates"]["accepted"] == 0


async def test_create_fault_after_creates_the_task(emu_factory: Any) -> None:
    cfg = FaultConfig(error_rates={"create": {500: 1.0}}, create_fault_phase="after")
    async with emu_factory(faults=cfg) as emu:
        r = await emu.create()
        assert r.status_code == 500
        listed = (await emu.list()).json()
        assert listed["total"] == 1  # the ambiguous case: the client must reconcile
        stats = await emu.stats()
        assert stats["creates"]["accepted"] == 1
        assert stats["faults"] == {"create:error:500:after": 1}
        # a refused create (bad body) stays refused; the fault does not hide it
        r = await emu.create(body(size="1*1"))
        assert r.status_code == 400


async def test_dropped_connection_in_process(emu_factory: Any) -> None:
    cfg = FaultConfig(drop_rate={"create": 1.0, "query": 1.0}, create_fault_phase="after")
    async with emu_factory(faults=cfg) as emu:
        with pytest.raises(httpx.RemoteProtocolError) as e:
            await emu.create()
        assert isinstance(e.value, ConnectionDropped)
        assert len(emu.engine.tasks) == 1
        with pytest.raises(httpx.RemoteProtocolError):
            await emu.client.get(f"{TASKS}/x", headers=AUTH)
        assert (await emu.list()).status_code == 200


def test_dropped_connection_over_a_socket(tmp_path: Path) -> None:
    cfg = FaultConfig(drop_rate={"create": 1.0}, create_fault_phase="after")
    with EmbeddedEmulator(data_dir=tmp_path, render=False, faults=cfg) as emu:
        h = {**HEADERS, "Authorization": f"Bearer {emu.api_key}"}
        with httpx.Client(base_url=emu.base_url) as c:
            with pytest.raises(httpx.RemoteProtocolError,
                               match="without sending a response"):
                c.post(CREATE, json=body(), headers=h)
            # the same client goes on working on a new connection
            r = c.get(TASKS, headers={"Authorization": f"Bearer {emu.api_key}"})
            assert r.status_code == 200 and r.json()["total"] == 1


async def test_fail_tasks(emu_factory: Any) -> None:
    cfg = FaultConfig(seed=3, fail_tasks={"code": "InternalError.Algo", "rate": 1.0})
    async with emu_factory(faults=cfg) as emu:
        tid = await emu.create_id()
        emu.clock.advance(60)
        out = (await emu.query(tid))["output"]
        assert out["task_status"] == "FAILED" and out["code"] == "InternalError.Algo"
        assert out["message"] and "end_time" in out


async def test_latency(emu_factory: Any) -> None:
    async with emu_factory(faults=FaultConfig(latency=(0.05, 0.05))) as emu:
        t = time.monotonic()
        await emu.client.get(f"{TASKS}/x", headers=AUTH)
        assert time.monotonic() - t >= 0.05


async def test_admin_faults_and_clock(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await emu.client.post("/_emulator/faults", headers=AUTH,
                                  json={"seed": 1, "error_rates": {"query": {"503": 1.0}}})
        assert r.status_code == 200
        assert r.json()["faults"]["error_rates"] == {"query": {"503": 1.0}}
        assert (await emu.client.get(f"{TASKS}/x", headers=AUTH)).status_code == 503
        r = await emu.client.post("/_emulator/faults", headers=AUTH,
                                  json={"error_rates": {"query": {"418": 1.0}}})
        assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
        await emu.client.post("/_emulator/faults", headers=AUTH, json={})
        assert (await emu.client.get(f"{TASKS}/x", headers=AUTH)).status_code == 200
        tid = await emu.create_id()
        r = await emu.client.post("/_emulator/clock", headers=AUTH, json={"advance": 3600})
        assert r.status_code == 200 and r.json()["now"] == emu.clock.now()
        assert await emu.status(tid) == "SUCCEEDED"
        r = await emu.client.post("/_emulator/clock", headers=AUTH, json={"advance": -5})
        assert r.status_code == 400
        assert (await emu.client.post("/_emulator/clock", json={"advance": 1})).status_code \
            == 401


async def test_admin_clock_refused_on_the_real_clock(tmp_path: Path) -> None:
    from wan_nb.emulator import create_app
    app = create_app(api_keys=("sk-x",), render=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://e") as c:
            r = await c.post("/_emulator/clock", json={"advance": 5},
                             headers={"Authorization": "Bearer sk-x"})
            assert r.status_code == 400 and "FakeClock" in r.json()["message"]
    finally:
        await app.state.emulator.aclose()
