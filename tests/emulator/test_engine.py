"""The state machine: queueing, limits, expiry, persistence, speed, all driven by a FakeClock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wan_nb.emulator.engine import ApiFailure, Engine, FakeClock, timing
from wan_nb.emulator.persist import TaskStore

from .conftest import AUTH, TASKS, body

T0 = 1_760_000_000.0


def new_engine(**kw: Any) -> tuple[Engine, FakeClock]:
    clock = FakeClock(T0)
    kw.setdefault("render", False)
    kw.setdefault("speed", 1.0)
    return Engine(clock=clock, **kw), clock


def test_concurrency_five_then_pending() -> None:
    eng, clock = new_engine()
    tasks = []
    for i in range(6):
        tasks.append(eng.create("sk-a", body(seed=i), request_id=f"r{i}"))
        clock.advance(0.21)  # 5 submissions per second allowed
    clock.advance(0.5)
    states = [eng.status(t) for t in tasks]
    assert states == ["RUNNING"] * 5 + ["PENDING"]
    first_end = min(t.scheduled + t.run for t in tasks[:5])
    clock.set(first_end + 0.001)
    assert eng.status(tasks[5]) == "RUNNING"
    # it was scheduled the moment a slot freed
    assert tasks[5].scheduled == pytest.approx(first_end)


def test_queues_are_per_key_and_per_model() -> None:
    eng, clock = new_engine()
    for i in range(2):
        eng.create("sk-a", body(model="wan2.2-t2v-plus", seed=i), request_id="r")
    clock.advance(1.0)
    third = eng.create("sk-a", body(model="wan2.2-t2v-plus", seed=3), request_id="r")
    other_key = eng.create("sk-b", body(model="wan2.2-t2v-plus", seed=3), request_id="r")
    other_model = eng.create("sk-a", body(seed=3), request_id="r")
    clock.advance(0.5)
    assert eng.status(third) == "PENDING"  # wan2.2 runs 2 at once
    assert eng.status(other_key) == "RUNNING"
    assert eng.status(other_model) == "RUNNING"


def test_submission_rate_limit_sliding_window() -> None:
    eng, clock = new_engine()
    for i in range(2):
        eng.create("sk-a", body(model="wan2.2-t2v-plus", seed=i), request_id="r")
    with pytest.raises(ApiFailure) as e:
        eng.create("sk-a", body(model="wan2.2-t2v-plus"), request_id="r")
    assert (e.value.status, e.value.code) == (429, "Throttling.RateQuota")
    eng.create("sk-b", body(model="wan2.2-t2v-plus"), request_id="r")  # another account
    eng.create("sk-a", body(), request_id="r")  # another model
    clock.advance(1.0)
    eng.create("sk-a", body(model="wan2.2-t2v-plus"), request_id="r")
    assert eng.stats.creates_refused[("sk-a", "wan2.2-t2v-plus", "Throttling.RateQuota")] == 1


def test_poll_limit() -> None:
    eng, clock = new_engine()
    for _ in range(20):
        eng.check_poll_rate("sk-a")
    with pytest.raises(ApiFailure) as e:
        eng.check_poll_rate("sk-a")
    assert (e.value.status, e.value.code) == (429, "Throttling")
    eng.check_poll_rate("sk-b")
    clock.advance(1.0)
    eng.check_poll_rate("sk-a")
    unlimited, _ = new_engine(query_rate=None)
    for _ in range(100):
        unlimited.check_poll_rate("sk-a")


@pytest.mark.anyio
async def test_poll_limit_over_http(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        codes = [(await emu.client.get(f"{TASKS}/x", headers=AUTH)).status_code
                 for _ in range(21)]
        assert codes == [200] * 20 + [429]
        r = await emu.client.get(TASKS, headers=AUTH)
        assert r.status_code == 429 and r.json()["code"] == "Throttling"
        emu.clock.advance(1.0)
        assert (await emu.client.get(TASKS, headers=AUTH)).status_code == 200


def test_expiry_after_24_hours() -> None:
    eng, clock = new_engine()
    t = eng.create("sk-a", body(), request_id="r")
    clock.advance(23.9 * 3600)
    assert eng.status(t) == "SUCCEEDED"
    assert eng.list("sk-a", {"start_time": "", "end_time": ""})["total"] == 1
    clock.advance(0.2 * 3600)
    assert eng.status(t) == "UNKNOWN"
    assert eng.lookup("sk-a", t.task_id) is None
    assert eng.list("sk-a", {})["total"] == 0


def test_speed_settings() -> None:
    d480, r480 = timing("fast", 832, 480, 5, "x")
    d1080, r1080 = timing("fast", 1920, 1080, 15, "x")
    assert 1.5 <= d480 + r480 <= 3.0
    assert 5.0 <= d1080 + r1080 <= 8.0
    for w, h, dur in ((832, 480, 5), (1920, 1080, 15)):
        d, r = timing("realistic", w, h, dur, "y")
        assert 60 <= d + r <= 300
    assert timing(0.0, 832, 480, 5, "z") == (0.0, 0.0)
    d2, r2 = timing(2.0, 832, 480, 5, "x")
    assert (d2, r2) == pytest.approx((2 * d480, 2 * r480))
    with pytest.raises(ValueError):
        Engine(speed="warp")


def test_running_until_rendered() -> None:
    eng, clock = new_engine(render=True, speed=0.0)
    t = eng.create("sk-a", body(), request_id="r")
    assert eng.status(t) == "RUNNING"
    assert [j.task_id for j in eng.take_render_jobs()] == [t.task_id]
    clock.advance(3600)
    assert eng.status(t) == "RUNNING"  # no file yet
    eng.render_done(t.task_id)
    assert eng.status(t) == "SUCCEEDED" and t.ended == clock.now()
    bad = eng.create("sk-a", body(seed=9), request_id="r")
    eng.render_done(bad.task_id, ("InvalidParameter", "The audio_url is not a wav or mp3 file."))
    assert eng.status(bad) == "FAILED" and bad.error[0] == "InvalidParameter"


def test_persistence_across_restart(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "tasks.sqlite3")
    eng, clock = new_engine(store=store)
    done = eng.create("sk-a", body(), request_id="r1")
    clock.advance(60)
    assert eng.status(done) == "SUCCEEDED"
    queued = [eng.create("sk-a", body(model="wan2.2-t2v-plus", seed=i), request_id="r")
              for i in range(2)]
    clock.advance(1.0)
    queued.append(eng.create("sk-a", body(model="wan2.2-t2v-plus", seed=5), request_id="r"))
    clock.advance(0.5)
    assert [eng.status(t) for t in queued] == ["RUNNING", "RUNNING", "PENDING"]
    store.close()

    store2 = TaskStore(tmp_path / "tasks.sqlite3")
    eng2 = Engine(clock=clock, render=False, speed=1.0, store=store2)
    again = eng2.lookup("sk-a", done.task_id)
    assert again is not None and again.status == "SUCCEEDED"
    assert eng2.view(again, done.task_id)["output"]["end_time"]
    assert eng2.lookup("sk-a", queued[2].task_id).status == "PENDING"
    clock.advance(60)
    assert all(eng2.lookup("sk-a", t.task_id).status == "SUCCEEDED" for t in queued)
    store2.close()


def test_reload_requeues_interrupted_renders(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "t.sqlite3")
    eng, clock = new_engine(store=store, render=True, speed=0.0)
    t = eng.create("sk-a", body(), request_id="r")
    assert eng.status(t) == "RUNNING"
    store.close()
    store2 = TaskStore(tmp_path / "t.sqlite3")
    eng2 = Engine(clock=clock, render=True, speed=0.0, store=store2)
    assert [j.task_id for j in eng2.take_render_jobs()] == [t.task_id]
    store2.close()
