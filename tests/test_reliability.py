"""Never hang, never pay twice, never mix up videos (issue 8 items 1, 3, 5, 7, 8, 9): against
the real emulator (in-process on a loopback port, or its CLI), real processes and real files."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

import wan_nb
from tests.conftest import CLI_KEY
from wan_nb.errors import TaskExpired, UnsupportedOperationError, WanError
from wan_nb.jobs import JobList, PollPolicy
from wan_nb.request import GenerationRequest

SMALL = {"model": "wan2.5-t2v-preview", "size": "832*480", "duration": 5}


def _returns_within(fn, seconds: float) -> bool:
    """Run ``fn`` in a thread; whether it returned within ``seconds`` (a hang detector with a
    generous bound, not a speed assertion)."""
    done = threading.Event()

    def target() -> None:
        try:
            fn()
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(seconds)


# -- 1. close() never hangs -------------------------------------------------------------------

def test_close_after_awaiting_a_job_from_a_foreign_loop_returns(tmp_path, make_emulator,
                                                               make_client):
    """The scenario that hung 2 of 20 fresh processes: two jobs, one awaited from a foreign
    event loop, then close(). Repeated, each time with a fresh client."""
    emu = make_emulator()
    for i in range(5):
        client = make_client(emu, store=tmp_path / f"store{i}")
        j1 = client.submit("a red kite", seed=i, **SMALL)
        client.submit("a blue kite", seed=100 + i, **SMALL)

        async def cell(job=j1):
            return await job

        asyncio.run(cell())
        assert _returns_within(client.close, 60), f"close() hung in round {i}"


class _StuckTransport(httpx.AsyncBaseTransport):
    """A transport whose requests never answer and that ignores cancellation: the worst a
    background step can do."""

    def __init__(self) -> None:
        self.entered = threading.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # swallowed on purpose


def test_close_returns_even_when_a_background_step_ignores_cancellation(tmp_path):
    stuck = _StuckTransport()
    aio = wan_nb.AsyncClient("sk-test-stuck", base_url="http://127.0.0.1:9", transport=stuck,
                             backend="stuck")
    client = wan_nb.Client(async_client=aio, store=tmp_path / "store")
    job = client.submit("a kite that never lands", seed=1, **SMALL)
    assert stuck.entered.wait(30), "the create never left"
    started = time.monotonic()
    assert _returns_within(lambda: client.close(timeout=2), 60)
    assert time.monotonic() - started < 30
    # closed: the job is not looked after any more, and it says so
    with pytest.raises(WanError, match="nothing looks after it"):
        job.result(timeout=5)
    assert client.store.get_run(job.run_id)["status"] == "SUBMITTING"  # recorded, resumable


# -- 8. a closed client takes no more work ------------------------------------------------------

def test_a_closed_client_refuses_work_and_says_the_truth(make_client):
    client = make_client(speed=40.0)  # slow tasks: still running when the client closes
    job = client.submit("a slow boat", seed=1, **SMALL)
    client.close()
    with pytest.raises(WanError, match="closed"):
        client.submit("another boat", seed=2, **SMALL)
    with pytest.raises(WanError, match="closed"):
        client.resume()
    with pytest.raises(WanError, match="nothing looks after it"):
        job.result(timeout=1)

    async def cell():
        return await job

    with pytest.raises(WanError, match="nothing looks after it"):
        asyncio.run(cell())
    assert len(client.store.runs()) == 1  # the refused submit wrote nothing
    # a waiter already blocked when the client closes is woken and told
    other = make_client(client.emulator)
    job2 = other.submit("a third boat", seed=3, **SMALL)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            job2.result()
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            errors.append(e)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.5)
    other.close()
    waiter.join(30)
    assert not waiter.is_alive()
    assert errors and isinstance(errors[0], WanError) and "nothing looks after" in str(errors[0])


# -- 3. an ambiguous create never adopts a sibling's task ---------------------------------------

def _forced_submitting(store, request: GenerationRequest, sent_at: dt.datetime) -> str:
    """A run left SUBMITTING by a killed kernel of an older version (no owner)."""
    run_id = store.insert_run(
        model=request.model, prompt=request.prompt, negative_prompt=request.negative_prompt,
        size=request.size, width=request.width, height=request.height, tier=request.tier,
        duration=request.duration, seed=request.seed, prompt_extend=request.prompt_extend,
        watermark=request.watermark, audio_mode=request.audio, audio_url=request.audio_url,
        shot_type=request.shot_type, fingerprint=request.fingerprint,
        request_json=json.dumps(request.params(), ensure_ascii=False, sort_keys=True),
        status="QUEUED", backend="emulator")
    store.update_run(run_id, status="SUBMITTING", sent_at=sent_at)
    return run_id


def test_one_unresolved_create_per_prompt_is_enforced_by_the_store(tmp_path):
    store = wan_nb.Store(tmp_path / "store")
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for seed, prompt in ((1, "same prompt"), (2, "same prompt"), (3, "other prompt")):
        r = GenerationRequest(prompt, seed=seed, **SMALL)
        rows.append(store.insert_run(
            model=r.model, prompt=r.prompt, size=r.size, width=r.width, height=r.height,
            duration=r.duration, seed=r.seed, fingerprint=r.fingerprint,
            request_json=json.dumps(r.params()), status="QUEUED", backend="emulator"))
    assert store.begin_create(rows[0], sent_at=now) == ("started", None)
    # the sibling with the same model and prompt waits; another prompt does not
    assert store.begin_create(rows[1], sent_at=now) == ("busy", rows[0])
    assert store.begin_create(rows[2], sent_at=now) == ("started", None)
    assert store.get_run(rows[1])["status"] == "QUEUED"
    store.update_run(rows[0], status="PENDING", task_id="t-1")  # its create resolved
    assert store.begin_create(rows[1], sent_at=now) == ("started", None)
    assert store.begin_create(rows[1], sent_at=now) == ("gone", None)


def test_two_same_prompt_runs_submitting_one_create_arrived_adopts_nothing(tmp_path,
                                                                          make_emulator):
    """The exact state of the bug: seeds 1 and 2 of one prompt both SUBMITTING, only seed 1's
    create reached the service. The service reports no seed, so neither run may take the
    task; neither is sent again (nothing paid twice); both say why."""
    emu = make_emulator()
    store = wan_nb.Store(tmp_path / "store")
    seed1 = GenerationRequest("a seed sweep prompt", seed=1, **SMALL)
    seed2 = seed1.replace(seed=2)
    sent = dt.datetime.now(dt.timezone.utc)
    a = _forced_submitting(store, seed1, sent)
    b = _forced_submitting(store, seed2, sent)
    # only seed 1's create arrived
    sender = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="emulator",
                           store=tmp_path / "other")
    arrived = sender.create_task(seed1)
    sender.close()
    policy = PollPolicy(reconcile_after=0.3, reconcile_give_up=4.0)
    client = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="emulator",
                           store=store, policy=policy)
    try:
        jobs = client.resume()
        assert {j.run_id for j in jobs} == {a, b}
        jobs.wait(timeout=120, progress=False)
        for job in jobs:
            assert job.status == "FAILED" and job.task_id is None, job.error
            assert "AmbiguousCreate" in job.error and "nothing was sent again" in job.error
        stats = emu.app.state.emulator.stats()
        assert stats["creates"]["accepted"] == 1  # only the one that arrived
        assert arrived.task_id not in {j.task_id for j in jobs}
    finally:
        client.close()


def test_seed_sweep_under_create_faults_attributes_every_task_rightly(make_client):
    """A seed sweep (one prompt x many seeds) while creates fail before or after making a
    task and connections drop: every run ends with its own task (the emulator knows each
    task's seed), every variant is made once, none twice."""
    from wan_nb.emulator.faults import FaultConfig

    faults = FaultConfig(seed=1, create_fault_phase="random",
                         error_rates={"create": {500: 0.1}},
                         drop_rate={"create": 0.3, "query": 0.05})
    client = make_client(faults=faults)
    jobs = JobList(client.submit("one prompt, many seeds", seed=s, **SMALL) for s in range(12))
    jobs.wait(timeout=300, progress=False)
    emulator = client.emulator.app.state.emulator
    assert [j.status for j in jobs] == ["SUCCEEDED"] * 12, [j.error for j in jobs]
    for job in jobs:
        assert emulator.engine.tasks[job.task_id].params["seed"] == job.request.seed
    assert emulator.stats()["creates"]["accepted"] == 12
    assert client.manager.stats["ambiguous_creates"] > 0  # the faults did bite


# -- 5. a job owned by another live kernel follows the ledger ----------------------------------

def _script(url: str, store: str, body: str) -> list[str]:
    code = textwrap.dedent(f"""
        import json, sys, time, wan_nb
        client = wan_nb.connect(api_key={CLI_KEY!r}, base_url={url!r}, store={store!r},
                                quiet=True)
    """) + textwrap.dedent(body)
    return [sys.executable, "-c", code]


def test_a_job_owned_by_another_live_kernel_follows_the_ledger_then_is_taken_over(
        tmp_path, cli_emulator):
    store = str(tmp_path / "store")
    owner = subprocess.Popen(_script(cli_emulator, store, """
        from wan_nb.jobs import PollPolicy
        client.close()  # creates 5 s apart: the owner is busy for a while
        client = wan_nb.Client(client.aio.config.api_key, base_url=client.base_url,
                               store=client.store, policy=PollPolicy(create_spacing=25.0))
        exp = wan_nb.Experiment("shared", base={"model": "wan2.5-t2v-preview",
                                                "size": "624*624", "duration": 5},
                                client=client)
        exp.grid(seed=[1, 2, 3, 4], prompt=["a shared cell"])
        jobs = exp.run()
        print("submitted", flush=True)
        jobs[0].result(timeout=120)
        print("first done", flush=True)
        time.sleep(600)
    """), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "submitted", owner.stderr.read()
        policy = PollPolicy(heartbeat=1.0)
        client = wan_nb.Client(CLI_KEY, base_url=cli_emulator, store=store, policy=policy)
        try:
            exp = wan_nb.Experiment("shared", base={"model": "wan2.5-t2v-preview",
                                                    "size": "624*624", "duration": 5},
                                    client=client)
            exp.grid(seed=[1, 2, 3, 4], prompt=["a shared cell"])
            jobs = exp.run()  # re-attaches, pays nothing
            assert owner.stdout.readline().strip() == "first done"
            jobs[0].result(timeout=60)  # followed through the ledger, not polled here
            assert jobs[0].ok and os.path.exists(jobs[0].video)
            # this kernel beats every second, the owner every 10 s: the owner is alive and
            # must not be taken for dead
            time.sleep(5)
            assert client.manager.stats["taken_over"] == 0
            assert owner.poll() is None
            owner.send_signal(signal.SIGKILL)
            owner.wait(30)
            try:
                jobs.wait(timeout=180, progress=False)
            except wan_nb.JobTimeout:
                m = client.manager
                pytest.fail(f"{[(j.status, j.error) for j in jobs]} ledger: "
                            f"{[(r['status'], r['owner']) for r in client.store.runs()]} "
                            f"watched={m.ownership.watched} task={m._task} stats={dict(m.stats)} "
                            f"ids={[j.run_id for j in jobs]} mine={list(m.jobs)}")
            assert client.manager.stats["taken_over"] >= 1
            assert [j.status for j in jobs] == ["SUCCEEDED"] * 4, [j.error for j in jobs]
            assert all(j.ok for j in jobs)
        finally:
            client.close()
        stats = httpx.get(f"{cli_emulator}/_emulator/stats",
                          headers={"Authorization": f"Bearer {CLI_KEY}"}).json()
        assert stats["creates"]["accepted"] == 4
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        owner.stdout.close()
        owner.stderr.close()


def test_a_run_marked_watched_before_its_job_is_added_is_not_lost(make_client):
    """attach() (a user's thread) marks a run another kernel owns as watched, then adds its
    job; the poller may read the watched runs in between. It must keep the run (it once
    dropped it: the job then stayed QUEUED, never followed nor taken over)."""
    import socket

    from wan_nb import runtime

    client = make_client()
    m = client.manager
    req = GenerationRequest("a heron someone else watches", seed=1, **SMALL)
    other = f"{socket.gethostname()}:{os.getppid()}:other"  # a live process of this host
    run_id = client.store.insert_run(**{**m._row_for(req, None, None, ()), "owner": other})
    m.ownership.watched.add(run_id)  # what attach() does first

    runtime.run(m.ownership.follow())  # the poller's pass, before the job is added
    assert run_id in m.ownership.watched
    job = client.attach(run_id)  # the job arrives: followed through the ledger
    assert job.status == "QUEUED" and run_id in m.ownership.watched
    client.store.update_run(run_id, status="CANCELED", cost_usd=0.0)  # as its owner would
    assert job.result(timeout=60, raise_on_error=False).status == "CANCELED"
    assert m.stats["taken_over"] == 0 and m.stats["creates"] == 0


# -- 7. a failed download can be fetched again --------------------------------------------------

def test_retry_download_fetches_the_paid_video_again(make_client):
    client = make_client()
    job = client.generate("a kite on a wire", seed=5, timeout=120, **SMALL)
    first = client.store.get_run(job.run_id)
    os.remove(job.video)  # as if the disk lost it, or a full disk failed the download
    client.store.update_run(job.run_id, download_error="OSError: [Errno 28] No space left")
    assert client.store.get_run(job.run_id)["download_error"]
    job.retry_download().result(timeout=120)
    again = client.store.get_run(job.run_id)
    assert job.ok and again["download_error"] is None
    assert again["video_sha256"] == first["video_sha256"]  # the same paid video
    assert client.emulator.app.state.emulator.stats()["creates"]["accepted"] == 1
    # nothing to do for an intact video; an expired URL says so
    assert JobList([job]).retry_download() == []
    client.store.update_run(job.run_id, download_error="lost",
                            video_url_expires_at=dt.datetime(2020, 1, 1,
                                                             tzinfo=dt.timezone.utc))
    with pytest.raises(TaskExpired, match="expired"):
        job.retry_download()


def test_resume_fetches_videos_whose_download_failed(tmp_path, make_emulator):
    emu = make_emulator()
    store = tmp_path / "store"
    first = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="emulator", store=store)
    job = first.generate("a lantern at dusk", seed=9, timeout=120, **SMALL)
    first.close()
    os.remove(job.video)
    first.store.update_run(job.run_id, download_error="OSError: [Errno 28] No space left",
                           video_path=None)
    second = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="emulator", store=store)
    try:
        resumed = second.resume()
        assert [j.run_id for j in resumed] == [job.run_id]
        resumed.wait(timeout=120, progress=False)
        assert resumed[0].ok and os.path.exists(resumed[0].video)
    finally:
        second.close()


# -- 9. cancelling many jobs -------------------------------------------------------------------

def test_cancelling_many_jobs_creates_nothing_more_and_stays_within_the_rate(make_client):
    client = make_client(speed=40.0)  # slow tasks: created ones stay PENDING behind 5 running
    jobs = JobList(client.submit(f"crowd {i}", seed=i, **SMALL) for i in range(60))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(1 for j in jobs if j.task_id) < 12:
        time.sleep(0.05)
    cancelled = jobs.cancel()
    emulator = client.emulator.app.state.emulator
    created = sum(1 for j in jobs if j.task_id)
    time.sleep(1.0)  # nothing more may be created after cancel() returned
    assert emulator.stats()["creates"]["accepted"] == created
    statuses = {j.status for j in jobs}
    assert statuses <= {"CANCELED", "RUNNING", "PENDING", "SUCCEEDED"}, statuses
    assert not any(j.status in ("QUEUED", "SUBMITTING") for j in jobs)
    # every created task still PENDING on the service was cancelled
    for job in jobs:
        if job.task_id and job.status != "CANCELED":
            assert emulator.engine.tasks[job.task_id].status != "PENDING"
    assert len(cancelled) == sum(1 for j in jobs if j.status == "CANCELED") >= 48
    assert emulator.stats()["throttled"] == 0  # no query, list or cancel refused


def test_cancel_of_a_job_being_created_cancels_its_task(make_client):
    client = make_client(speed=40.0)
    jobs = JobList(client.submit(f"busy {i}", seed=i, **SMALL) for i in range(8))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(j.status == "SUBMITTING" for j in jobs):
        time.sleep(0.005)
    submitting = next((j for j in jobs if j.status == "SUBMITTING"), None)
    if submitting is None:
        pytest.skip("no create was caught in flight")
    try:
        submitting.cancel()
    except UnsupportedOperationError as e:
        assert "RUNNING" in str(e)  # it started before the cancel reached it
    else:
        assert submitting.status == "CANCELED"
        if submitting.task_id is None:
            # caught before its create left (waiting for the account's create turn): nothing
            # was created for it (issue 13), which the emulator confirms once the others are
            deadline = time.monotonic() + 60
            while any(j.status in ("QUEUED", "SUBMITTING") for j in jobs):
                assert time.monotonic() < deadline, [j.status for j in jobs]
                time.sleep(0.05)
            stats = client.emulator.app.state.emulator.stats()
            assert stats["creates"]["accepted"] == sum(j.task_id is not None for j in jobs)


def test_a_steady_stream_of_creates_never_starves_a_reconciliation():
    """Creates overlapping back to back (a live service answers in ~1 s at ~5 creates/s)
    must let a waiting reconciliation through, or an ambiguous run would wait forever."""
    from wan_nb.reconcile import CreateGate

    async def scenario() -> bool:
        gate = CreateGate()
        stop = asyncio.Event()

        async def creator() -> None:
            while not stop.is_set():
                await gate.create()
                await asyncio.sleep(0.02)
                await gate.created()

        creators = [asyncio.ensure_future(creator()) for _ in range(3)]
        await asyncio.sleep(0.05)
        reconciled = asyncio.ensure_future(gate.reconcile())
        finished, _ = await asyncio.wait({reconciled}, timeout=5)
        if finished:
            await gate.reconciled()
        stop.set()
        await asyncio.gather(*creators)
        return bool(finished)

    assert asyncio.run(scenario())


def test_experiment_retry_download_after_a_truncated_file(tmp_path, make_client):
    client = make_client()
    exp = wan_nb.Experiment("refetch", base=SMALL, client=client)
    exp.grid(seed=[1, 2], prompt=["a kite"])
    jobs = exp.run()
    jobs.wait(timeout=120, progress=False)
    assert all(j.ok for j in jobs)
    with open(jobs[0].video, "r+b") as f:  # damaged on disk since the download
        f.truncate(1000)
    assert not jobs[0].ok and jobs[1].ok
    again = exp.retry_download()
    assert [j.run_id for j in again] == [jobs[0].run_id]
    again.wait(timeout=120, progress=False)
    assert all(j.ok for j in jobs)
    assert client.emulator.app.state.emulator.stats()["creates"]["accepted"] == 2


# -- from review: failures of our own steps never strand or re-pay a run ----------------------

class _FlakyStore(wan_nb.Store):
    """The real store, injected with ``failures[name] = n``: the next n calls of that method
    (or, for ``update_run``, of updates writing ``only`` fields) raise a StoreError first, as
    a locked or full ledger does."""

    def __init__(self, root, **failures: int):
        super().__init__(root)
        self.failures = dict(failures)
        self.only: set[str] = set()

    def _maybe_fail(self, name: str, fields=()) -> None:
        from wan_nb.store_table import StoreError

        if self.failures.get(name, 0) > 0 and (not self.only or self.only & set(fields)):
            self.failures[name] -= 1
            raise StoreError(f"injected: the ledger is locked ({name})")

    def known_task_ids(self, *a, **kw):
        self._maybe_fail("known_task_ids")
        return super().known_task_ids(*a, **kw)

    def update_run(self, run_id, /, **fields):
        self._maybe_fail("update_run", fields)
        return super().update_run(run_id, **fields)


def test_a_failing_reconcile_pass_is_retried_not_stranded(tmp_path, make_client):
    from wan_nb.emulator.faults import FaultConfig

    store = _FlakyStore(tmp_path / "store", known_task_ids=2)
    # every create makes its task, then the connection drops: always ambiguous
    client = make_client(store=store, policy=PollPolicy(reconcile_after=0.3),
                         faults=FaultConfig(seed=1, create_fault_phase="after",
                                            drop_rate={"create": 1.0}))
    first = client.submit("a stranded kite", seed=1, **SMALL)
    sibling = client.submit("a stranded kite", seed=2, **SMALL)  # waits for first's create
    first.result(timeout=120)
    assert store.failures["known_task_ids"] == 0  # the failures did happen
    assert first.ok
    emulator = client.emulator.app.state.emulator
    assert emulator.engine.tasks[first.task_id].params["seed"] == 1
    sibling.result(timeout=120)
    assert emulator.engine.tasks[sibling.task_id].params["seed"] == 2
    assert emulator.stats()["creates"]["accepted"] == 2


def test_a_paid_video_whose_record_failed_is_downloaded_again_not_failed(tmp_path,
                                                                        make_client):
    store = _FlakyStore(tmp_path / "store", update_run=1)
    store.only = {"video_sha256"}
    client = make_client(store=store)
    job = client.submit("a recorded kite", seed=1, **SMALL)
    job.result(timeout=120)
    assert store.failures["update_run"] == 0
    assert job.status == "SUCCEEDED" and job.ok
    exp_run = client.store.get_run(job.run_id)
    assert exp_run["video_sha256"] and exp_run["error_code"] is None
    assert client.emulator.app.state.emulator.stats()["creates"]["accepted"] == 1


def test_a_client_closed_before_its_first_job_takes_no_experiment(make_emulator, tmp_path):
    emu = make_emulator()
    client = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="emulator",
                           store=tmp_path / "store")
    client.close()
    exp = wan_nb.Experiment("late", base=SMALL, client=client)
    exp.grid(seed=[1, 2], prompt=["too late"])
    with pytest.raises(WanError, match="closed"):
        exp.run()
    assert emu.app.state.emulator.stats()["creates"]["accepted"] == 0


def test_cancel_after_close_says_the_client_is_closed(make_client):
    client = make_client(speed=40.0)
    job = client.submit("a kite", seed=1, **SMALL)
    client.close()
    with pytest.raises(WanError, match="closed"):
        job.cancel()


def test_a_run_cancelled_by_another_kernel_wakes_its_owners_waiter(tmp_path, make_emulator,
                                                                    make_client):
    emu = make_emulator(speed=40.0)
    # creates 8 s apart: the second job surely waits its turn
    owner = make_client(emu, store=tmp_path / "store",
                        policy=PollPolicy(create_spacing=40.0))
    jobs = JobList(owner.submit(f"queue {i}", seed=i, **SMALL) for i in range(2))
    last = jobs[-1]
    assert last.status == "QUEUED"
    results: list[str] = []

    def wait() -> None:
        last.result(timeout=120, raise_on_error=False)
        results.append(last.status)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    other = make_client(emu, store=tmp_path / "store")
    followed = other.manager.attach(last.run_id)  # owned by a live kernel: followed
    followed.cancel()
    assert followed.status == "CANCELED"
    waiter.join(60)
    assert results == ["CANCELED"]
    assert not last.task_id


def test_retry_download_twice_starts_one_download(make_client):
    client = make_client()
    job = client.generate("a kite twice", seed=1, timeout=120, **SMALL)
    with open(job.video, "r+b") as f:
        f.truncate(500)
    before = client.manager.stats["downloads"]
    job.retry_download()
    job.retry_download()  # on its way already (or done): never a second download
    job.result(timeout=120)
    assert job.ok and client.manager.stats["downloads"] == before + 1


def test_creates_get_through_many_retrying_reconciliations():
    from wan_nb.reconcile import CreateGate

    async def scenario() -> bool:
        gate = CreateGate()
        stop = asyncio.Event()

        async def reconciler() -> None:
            while not stop.is_set():
                await gate.reconcile()
                await asyncio.sleep(0.01)
                await gate.reconciled()
                await asyncio.sleep(0.02)

        workers = [asyncio.ensure_future(reconciler()) for _ in range(8)]
        await asyncio.sleep(0.05)

        async def one_create() -> None:
            await gate.create()
            await gate.created()

        finished, _ = await asyncio.wait({asyncio.ensure_future(one_create())}, timeout=5)
        stop.set()
        await asyncio.gather(*workers)
        return bool(finished)

    assert asyncio.run(scenario())


def test_an_ambiguous_create_given_up_is_not_sent_again_by_rerunning_the_cell(tmp_path,
                                                                             make_emulator):
    """A run FAILED as AmbiguousCreate may have a paid task: re-running the experiment cell
    (retry_failed, the default) must not pay for it again; force=True still re-rolls."""
    emu = make_emulator()
    store = wan_nb.Store(tmp_path / "store")
    client = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="emulator",
                           store=store)
    try:
        exp = wan_nb.Experiment("given-up", base=SMALL, client=client)
        exp.grid(seed=[1], prompt=["an undecided kite"])
        [job] = exp.run()
        job.result(timeout=120)
        client.store.update_run(job.run_id, status="FAILED", error_code="AmbiguousCreate",
                                error_message="could not tell", task_id=None)
        assert exp.estimate()["new_runs"] == 0
        [again] = exp.run()
        assert again.run_id == job.run_id
        assert emu.app.state.emulator.stats()["creates"]["accepted"] == 1
    finally:
        client.close()


def test_audio_changed_after_submit_is_refused_before_upload(make_client, wav_file):
    """The run was recorded with the file's content (its fingerprint counts the sha256): a
    different file under the same name at create time is refused, nothing uploaded or paid."""
    import wave

    # creates spaced 20 s apart: the second job waits its turn, time to change its file
    client = make_client(policy=PollPolicy(create_spacing=100.0))
    jobs = JobList(client.submit(f"speak {i}", seed=i, audio_url=str(wav_file), **SMALL)
                   for i in range(2))
    last = jobs[-1]
    assert last.status == "QUEUED"
    with wave.open(str(wav_file), "wb") as w:  # another recording, same name, still valid
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * 8000 * 5)
    last.result(timeout=120, raise_on_error=False)
    assert last.status == "REJECTED" and "changed since" in last.error and not last.task_id
