"""Background jobs against the real emulator on a loopback port (no mocks)."""

from __future__ import annotations

import asyncio
import time

import pytest

import wan_nb
from wan_nb.emulator.engine import FakeClock
from wan_nb.emulator.faults import FaultConfig
from wan_nb.errors import JobTimeout, TaskExpired, UnsupportedOperationError
from wan_nb.jobs import JobList, PollPolicy
from wan_nb.media import probe

SMALL = {"model": "wan2.5-t2v-preview", "size": "832*480", "duration": 5}


def test_submit_returns_at_once_and_the_job_completes_with_its_video(make_client):
    client = make_client()
    job = client.submit("a paper boat drifting at dawn", seed=11, **SMALL)
    assert job.status in ("QUEUED", "SUBMITTING", "PENDING")  # returned before the task ran
    assert not job.done
    job.result(timeout=60)
    assert job.ok and job.status == "SUCCEEDED"
    info = probe(job.video)
    assert (info.width, info.height, info.frames, info.fps) == (832, 480, 150, 30)
    assert info.has_audio  # wan2.5 with audio='auto'
    run = client.store.get_run(job.run_id)
    assert run["task_id"] == job.task_id and run["actual_prompt"]
    assert run["usage_video_duration"] == 5 and run["usage_video_ratio"] == "832*480"
    assert run["cost_usd"] == pytest.approx(0.25)
    assert run["video_sha256"] and run["video_bytes"] > 1000
    assert run["queue_s"] is not None and run["run_s"] is not None
    assert run["backend"] == "emulator" and run["seed"] == 11
    assert "<video" in job._repr_html_()


def test_generate_and_await_and_wan22_has_no_audio(make_client):
    client = make_client()
    job = client.generate("一只狐狸在雨夜里", model="wan2.2-t2v-plus", size="832*480", seed=3,
                          timeout=60)
    assert job.ok and probe(job.video).has_audio is False

    async def cell():
        j = client.submit("a kite over dunes", seed=4, **SMALL)
        return await j

    assert asyncio.run(cell()).ok


def test_callbacks_progress_and_states(make_client):
    client = make_client()
    seen: list[str] = []
    job = client.submit("a lighthouse in fog", seed=5, **SMALL)
    job.on_change(lambda j: seen.append(j.status))
    p = job.progress()
    assert set(p) >= {"status", "elapsed", "eta", "fraction"}
    job.result(timeout=60)
    assert seen[-1] == "SUCCEEDED"
    assert "RUNNING" in seen or "PENDING" in seen
    assert job.progress()["fraction"] == 1.0 and job.eta() is None


def wait_until(condition, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds; the deadline is only there to catch a stall."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {timeout} s for {what}"
        time.sleep(0.05)


def test_cancel_rules(tmp_path, make_emulator, make_client):
    # the emulator's clock only moves when the test says so: no task starts or ends on its own,
    # however fast or slow this machine is (no rate limits either: they count on that clock)
    clock = FakeClock()
    emu = make_emulator(clock=clock, submission_limits=False, query_rate=None)
    # a job never sent: creates paced so far apart that the second one waits in the queue
    paced = make_client(emu, store=tmp_path / "paced", policy=PollPolicy(create_spacing=1e6))
    first, queued = paced.submit("boat 0", seed=0, **SMALL), paced.submit("boat 1", seed=1,
                                                                           **SMALL)
    wait_until(lambda: first.status == "PENDING", "the first create")
    assert queued.status == "QUEUED"
    queued.cancel()
    assert queued.status == "CANCELED" and queued.task_id is None
    first.cancel()  # a created task waiting to start (it would hold one of the 5 slots)
    assert first.status == "CANCELED" and first.task_id
    # created tasks: 5 run at once (the model's concurrency), the others wait PENDING
    client = make_client(emu, store=tmp_path / "store")
    jobs = JobList(client.submit(f"boat {i}", seed=i, **SMALL) for i in range(2, 9))
    wait_until(lambda: all(j.status == "PENDING" for j in jobs), "7 created tasks")
    clock.advance(1)  # past the dispatch delay (0.3 s at speed "fast"), not the run time
    wait_until(lambda: sum(j.status == "RUNNING" for j in jobs) == 5, "5 RUNNING")
    running = next(j for j in jobs if j.status == "RUNNING")
    pending = [j for j in jobs if j.status == "PENDING"]
    assert len(pending) == 2 and all(j.task_id for j in pending)
    pending[0].cancel()
    assert pending[0].status == "CANCELED"
    with pytest.raises(UnsupportedOperationError, match="only QUEUED or PENDING"):
        running.cancel()
    with pytest.raises(JobTimeout, match="goes on"):
        running.result(timeout=0.2)
    assert jobs.cancel() == [pending[1]]  # the rest that are still cancellable
    assert [j.status for j in jobs].count("CANCELED") == 2
    stats = emu.app.state.emulator.stats()
    assert stats["creates"]["accepted"] == sum(1 for j in [first, queued, *jobs] if j.task_id)


def test_many_jobs_use_the_list_endpoint(make_client):
    client = make_client()
    jobs = JobList(client.submit(f"dunes {i}", seed=i, **SMALL) for i in range(8))
    jobs.wait(timeout=120, progress=False)
    assert all(j.ok for j in jobs)
    stats = client.manager.stats
    assert stats["lists"] >= 1
    # details only when a task ended, plus the odd query when a job was due alone
    assert stats["queries"] <= 2 * len(jobs)


def test_faults_during_a_30_job_batch_complete_with_no_duplicates(make_client):
    faults = FaultConfig(seed=7, create_fault_phase="random",
                         error_rates={"create": {429: 0.15, 500: 0.1, 503: 0.05},
                                      "query": {429: 0.1, 500: 0.1, 503: 0.05},
                                      "list": {500: 0.1, 503: 0.1}},
                         drop_rate={"create": 0.08, "query": 0.05, "list": 0.05},
                         latency=(0.0, 0.15))
    client = make_client(faults=faults)
    jobs = JobList(client.submit(f"storm {i}", seed=i, model="wan2.5-t2v-preview",
                                 size="624*624", duration=5) for i in range(30))
    jobs.wait(timeout=240, progress=False)
    assert [j.status for j in jobs] == ["SUCCEEDED"] * 30, [j.error for j in jobs]
    assert all(j.ok for j in jobs)
    emu_stats = client.emulator.app.state.emulator.stats()
    assert emu_stats["faults_total"] > 0
    assert emu_stats["creates"]["accepted"] == 30  # every task paid exactly once
    task_ids = [j.task_id for j in jobs]
    assert len(set(task_ids)) == 30


def test_expired_result_is_reported_clearly(tmp_path, make_emulator, make_client):
    clock = FakeClock()
    # no query limit: it counts requests per second of this clock, which stands still while
    # the render below takes however long it takes on this machine
    emu = make_emulator(clock=clock, query_rate=None)
    first = make_client(emu, store=tmp_path / "s")
    # a kernel that saw the task succeed and died before downloading: run the create and the
    # poll by hand, the way the job layer records them
    state = first.create_task(prompt="an hourglass", seed=1, **SMALL)
    clock.advance(120)
    wait_until(lambda: first.get_task(state.task_id).status == "SUCCEEDED", "the render")
    s = first.get_task(state.task_id)
    req = wan_nb.GenerationRequest("an hourglass", seed=1, **SMALL)
    manager = first.manager
    run_id = first.store.insert_run(**{**manager._row_for(req, None, None, ()),
                                       "status": "SUCCEEDED", "task_id": s.task_id,
                                       "video_url": s.video_url, "owner": None})
    clock.advance(25 * 3600)
    second = make_client(emu, store=tmp_path / "s")
    jobs = second.resume()
    assert [j.run_id for j in jobs] == [run_id]
    job = jobs[0].result(timeout=30, raise_on_error=False)
    assert job.status == "EXPIRED"
    assert "24 hours" in job.error
    with pytest.raises(TaskExpired, match="24 hours"):
        job.result()
    assert not (second.store.videos_dir / f"{run_id}.mp4").exists()


def test_task_unknown_to_the_service_is_final_not_polled_forever(tmp_path, make_emulator,
                                                                 make_client):
    emu = make_emulator()
    client = make_client(emu)
    req = wan_nb.GenerationRequest("ghost", seed=1, **SMALL)
    run_id = client.store.insert_run(**{**client.manager._row_for(req, None, None, ()),
                                        "status": "RUNNING", "task_id": "no-such-task",
                                        "owner": None})
    job = client.resume()[0]
    assert job.run_id == run_id
    job.result(timeout=20, raise_on_error=False)
    assert job.status == "UNKNOWN" and "24 hours" in job.error


def test_rejected_create_is_recorded_and_not_retried(make_client):
    client = make_client()
    job = client.submit("__blocked__ scene", seed=1, **SMALL)
    job.result(timeout=20, raise_on_error=False)
    assert job.status == "REJECTED" and job.error.startswith("DataInspectionFailed")
    assert job.task_id is None


def test_poll_policy_interval_is_clamped_and_jittered():
    import random

    p = PollPolicy(floor=0.5, ceiling=15.0, jitter=0.1)
    rng = random.Random(1)
    assert 0.45 <= p.interval(0.1, rng) <= 0.55
    assert 13.5 <= p.interval(1000, rng) <= 16.5
    assert 5.4 <= p.interval(10, rng) <= 6.6  # 0.6 × remaining
    assert 0.45 <= p.interval(-1, rng) <= 0.55  # just overran: poll soon


def test_a_local_audio_file_gone_before_the_create_rejects_the_job(wav_file, make_client):
    path = wav_file
    # creates one per second, so the job with the audio waits ~6 s in the local queue
    client = make_client(policy=PollPolicy(create_spacing=5.0))
    jobs = JobList(client.submit(f"first {i}", seed=i, **SMALL) for i in range(6))
    late = client.submit("speak", audio_url=str(path), seed=9, **SMALL)
    assert late.status == "QUEUED"  # not sent yet: the file is read when it is
    path.unlink()
    late.result(timeout=30, raise_on_error=False)
    assert late.status == "REJECTED" and "voice.wav" in late.error
    jobs.wait(timeout=60, progress=False)


def test_resume_skips_a_stored_request_that_is_no_longer_valid(tmp_path, make_emulator,
                                                               make_client):
    import json

    emu = make_emulator()
    client = make_client(emu, store=tmp_path / "s")
    req = wan_nb.GenerationRequest("gone", seed=1, **SMALL)
    row = client.manager._row_for(req, None, None, ())
    row["request_json"] = json.dumps({**req.params(), "audio_url": "/no/such/voice.wav",
                                      "audio": "custom"})
    run_id = client.store.insert_run(**{**row, "owner": None})
    ok = client.store.insert_run(**{**client.manager._row_for(
        wan_nb.GenerationRequest("fine", seed=2, **SMALL), None, None, ()), "owner": None})
    resumed = make_client(emu, store=tmp_path / "s").resume()
    assert sorted(j.run_id for j in resumed) == sorted([run_id, ok])
    gone = next(j for j in resumed if j.run_id == run_id)
    gone.result(timeout=60, raise_on_error=False)  # refused before its upload or create
    assert gone.status == "REJECTED" and "voice.wav" in gone.error and not gone.task_id
    next(j for j in resumed if j.run_id == ok).result(timeout=60)
    assert emu.app.state.emulator.stats()["creates"]["accepted"] == 1
