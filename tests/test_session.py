"""The session (what connect() returns): one job manager per store and backend in a process,
shared by every session on it; the job-added event; Job as a typed view of its record."""

from __future__ import annotations

import pytest

import threading

import wan_nb
from wan_nb.jobs import Field, Job
from wan_nb.schedule import PollPolicy
from wan_nb.store_table import STORED

SMALL = {"model": "wan2.5-t2v-preview", "size": "624*624", "duration": 5}


def test_sessions_on_one_store_and_backend_share_one_manager_until_the_last_closes(
        make_client, make_emulator, tmp_path):
    emu = make_emulator()
    first = make_client(emu, store=tmp_path / "s")
    second = make_client(emu, store=tmp_path / "s")
    assert first.manager is second.manager  # one poller, the same jobs
    job = first.submit("a shared heron", seed=1, **SMALL)
    assert job in second.jobs
    # another store, or another poll policy, is another manager (as another kernel would be)
    elsewhere = make_client(emu, store=tmp_path / "other")
    assert elsewhere.manager is not first.manager
    paced = make_client(emu, store=tmp_path / "s", policy=PollPolicy(create_spacing=5.0))
    assert paced.manager is not first.manager
    # the session that made the manager closes: the other one's jobs go on
    manager = first.manager
    first.close()
    assert first.closed and not manager.closed and not second.closed
    assert job.result(timeout=120).ok
    later = second.generate("a second heron", seed=2, timeout=120, **SMALL)
    assert later.ok
    second.close()
    assert manager.closed and second.aio.closed and first.aio.closed
    assert not paced.manager.closed  # a manager of its own, still open


def test_on_job_added_tells_every_session_and_unsubscribes(make_client, make_emulator,
                                                           tmp_path):
    emu = make_emulator()
    code = make_client(emu, store=tmp_path / "s")
    studio = make_client(emu, store=tmp_path / "s")
    seen: list[str] = []
    threads: set[str] = set()
    added = threading.Event()

    def on_added(job: Job) -> None:
        seen.append(job.run_id)
        threads.add(threading.current_thread().name)
        added.set()

    unsubscribe = studio.on_job_added(on_added)
    job = code.submit("a job the studio sees", seed=1, **SMALL)
    assert added.wait(30)
    assert seen == [job.run_id]
    assert threads == {"wan_nb-runtime"}, threads
    unsubscribe()
    added.clear()
    code.submit("a job nobody is told about", seed=2, **SMALL)
    assert not added.wait(1.0)
    assert seen == [job.run_id]
    code.jobs.wait(timeout=120, progress=False)


def test_job_is_a_typed_view_of_every_ledger_column(make_client):
    client = make_client()
    job = client.generate("a view of a record", seed=3, timeout=120, **SMALL)
    declared = {name for name, value in vars(Job).items() if isinstance(value, Field)}
    # every stored column but the request (job.request), the run id and the status is a field
    assert declared == set(STORED) - {"run_id", "request_json", "status"}  # status: a property
    for name in declared:
        assert getattr(job, name) == job.record[name], name
    assert job.task_id and job.video_sha256 and job.actual_prompt
    assert not hasattr(Job, "__getattr__")
    try:
        job.record["status"] = "FAILED"  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("the record must be read-only through the job")
    changes: list[str] = []
    cb = job.on_change(lambda j: changes.append(j.status))
    assert job.off_change(cb) and not job.off_change(cb)


def test_client_is_the_session_under_its_earlier_name(make_client):
    from wan_nb.client import Client

    assert Client is wan_nb.Client and issubclass(Client, wan_nb.Session)
    session = make_client()
    assert isinstance(session, wan_nb.Session) and isinstance(session, wan_nb.Client)


def test_the_run_time_band_is_learned_from_finished_runs():
    from wan_nb.schedule import Durations, RunBand

    d = Durations()
    assert d.band("emulator", "wan2.5-t2v-preview", "1280*720", 5) == RunBand(3.0, 4.5, 0)
    for s in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100):
        d.learn("live:singapore", "wan2.5-t2v-preview", "1280*720", 5, s)
    band = d.band("live:singapore", "wan2.5-t2v-preview", "1280*720", 5)
    assert (band.p50, band.p90, band.samples) == (55.0, pytest.approx(91.0), 10)
    assert band.left(60.0) == (0.0, 31.0) and band.left(200.0) == (0.0, 0.0)
    # another size of the same model: scaled by pixels × seconds (1080P 10 s = 4.5 × 2 ×)
    scaled = d.band("live:singapore", "wan2.5-t2v-preview", "1920*1080", 10)
    assert scaled.samples == 10 and scaled.p50 == pytest.approx(55.0 * 2.25 * 2)
