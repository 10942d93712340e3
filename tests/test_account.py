"""One scheduler per account: kernels sharing a ledger share the account's limits.

The ledger members (``take_slots``, ``begin_create(limit=)``) are tested on the SQLite store
with an injected clock; the whole of it with several processes, each its own session on one
ledger folder, against one emulator CLI whose per-model limits are enforced."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_cli_emulator
from wan_nb import catalog
from wan_nb.account import SharedQueryLimiter
from wan_nb.errors import ValidationError
from wan_nb.store import Store

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clocked(tmp_path):
    clock = Clock()
    with Store(tmp_path / "ledger", clock=clock) as store:
        yield store, clock


# -- take_slots ------------------------------------------------------------------------------

def test_turns_are_spaced_after_every_reservation(clocked):
    store, clock = clocked
    assert store.take_slots("acct", "create:m", interval=0.25) == 0.0
    assert store.take_slots("acct", "create:m", interval=0.25) == pytest.approx(0.25)
    assert store.take_slots("acct", "create:m", interval=0.25, count=2) == pytest.approx(0.5)
    assert store.take_slots("acct", "create:m", interval=0.25) == pytest.approx(1.0)
    # another pace, another account: their own turns
    assert store.take_slots("acct", "query", interval=0.05) == 0.0
    assert store.take_slots("other", "create:m", interval=0.25) == 0.0
    clock.advance(0.6)
    assert store.take_slots("acct", "create:m", interval=0.25) == pytest.approx(0.65)
    clock.advance(60)  # idle: past turns are not saved up, the next is now
    assert store.take_slots("acct", "create:m", interval=0.25) == 0.0
    assert store.take_slots("acct", "create:m", interval=0.25) == pytest.approx(0.25)


def test_turns_are_shared_by_every_store_on_the_folder(tmp_path):
    clock = Clock()
    with Store(tmp_path / "l", clock=clock) as a, Store(tmp_path / "l", clock=clock) as b:
        waits = [s.take_slots("acct", "query", interval=0.1) for s in (a, b, a, b)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize("kw, field", [
    ({"interval": 0}, "interval"), ({"interval": -1.0}, "interval"),
    ({"interval": float("nan")}, "interval"), ({"interval": "1"}, "interval"),
    ({"interval": 0.1, "count": 0}, "count"), ({"interval": 0.1, "count": 101}, "count"),
    ({"interval": 0.1, "count": True}, "count"),
    ({"interval": 0.1, "account": ""}, "account"),
    ({"interval": 0.1, "name": "x" * 201}, "name"),
])
def test_bad_slot_arguments_are_refused_and_nothing_is_reserved(clocked, kw, field):
    store, _ = clocked
    args = {"account": "acct", "name": "query", **kw}
    with pytest.raises(ValidationError, match=field):
        store.take_slots(args.pop("account"), args.pop("name"), **args)
    assert store.take_slots("acct", "query", interval=1.0) == 0.0  # nothing was taken


def test_takes_are_atomic_across_processes(tmp_path):
    """Eight processes race for 40 turns: every wait is a distinct turn, none shared."""
    root = tmp_path / "race"
    Store(root).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        waits = sorted(w for ws in pool.map(_take_five, [str(root)] * 8) for w in ws)
    # every process's clock is the real one: turns are 0.05 s apart in one sequence
    gaps = [b - a for a, b in zip(waits, waits[1:], strict=False)]
    assert len(waits) == 40 and min(gaps) > 0.03


def _take_five(root: str) -> list[float]:
    import time
    with Store(root) as store:
        out = []
        for _ in range(5):
            sent = time.time()
            out.append(sent + store.take_slots("acct", "query", interval=0.05))
        return out


# -- the kernel side: query turns shared by kernels ---------------------------------------------

def test_query_turns_are_shared_by_kernels_and_late_turns_are_dropped(tmp_path):
    now = [0.0]  # seconds since T0, for the ledger and both kernels alike
    store = Store(tmp_path / "l", clock=lambda: T0 + dt.timedelta(seconds=now[0]))

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    kernels = [SharedQueryLimiter(store, "emulator", 10.0, clock=lambda: now[0], sleep=sleep)
               for _ in range(2)]
    sent: list[float] = []

    async def burst() -> None:
        for i in range(60):
            await kernels[i % 3 % 2].acquire()  # both kernels, unevenly
            sent.append(now[0])

    asyncio.run(burst())
    # the account's 10/s held by the two together, in every sliding second
    assert max(sum(1 for u in sent if t - 1 + 1e-3 < u <= t) for t in sent) <= 10
    assert min(b - a for a, b in zip(sent, sent[1:], strict=False)) >= 0.1 - 1e-5
    assert sent[-1] < 9.0  # and used: 60 queries at 10/s (turns a kernel skipped are lost)
    assert max(k.block for k in kernels) > 1  # busy kernels reserve several turns at once
    # an idle kernel's reserved turns are dropped, never saved up for a burst later
    idle = kernels[0]
    idle.block, idle._last = 4, None
    idle._turns.clear()
    asyncio.run(idle.acquire())
    now[0] += 5.0
    dropped = idle.dropped
    asyncio.run(idle.acquire())
    assert idle.dropped == dropped + 3 and idle.block == 2
    store.close()


# -- begin_create(limit=): tasks at once across kernels ----------------------------------------

def _run(store, owner, *, model="wan2.5-t2v-preview", prompt="p", status="QUEUED",
         backend="emulator", beat=None):
    return store.insert_run(model=model, prompt=prompt, status=status, backend=backend,
                            owner=owner, owner_heartbeat=beat or store._now(),
                            fingerprint=None)


def test_a_kernel_alone_on_a_model_is_not_held(clocked):
    store, _ = clocked
    runs = [_run(store, "A", prompt=f"p{i}") for i in range(4)]
    for rid in runs:
        assert store.begin_create(rid, sent_at=T0, limit=2) == ("started", None)


def test_with_another_live_kernel_the_limit_holds_for_both(clocked):
    store, clock = clocked
    a = [_run(store, "A", prompt=f"a{i}") for i in range(3)]
    b = _run(store, "B", prompt="b")  # B waits with a queued run of the same model
    assert store.begin_create(a[0], sent_at=T0, limit=2) == ("started", None)
    assert store.begin_create(a[1], sent_at=T0, limit=2) == ("started", None)
    assert store.begin_create(a[2], sent_at=T0, limit=2) == ("full", None)
    assert store.begin_create(b, sent_at=T0, limit=2) == ("full", None)
    assert store.get_run(b)["status"] == "QUEUED"  # nothing moved
    store.update_run(a[0], status="SUCCEEDED")  # a task ended: one place frees
    assert store.begin_create(b, sent_at=T0, limit=2) == ("started", None)
    assert store.begin_create(a[2], sent_at=T0, limit=2) == ("full", None)
    # another model, another limit
    c = _run(store, "A", model="wan2.1-t2v-turbo")
    assert store.begin_create(c, sent_at=T0, limit=2) == ("started", None)
    # no limit: as before
    assert store.begin_create(a[2], sent_at=T0) == ("started", None)
    clock.advance(1)


def test_a_dead_kernels_runs_stop_counting(clocked):
    store, clock = clocked
    dead = [_run(store, "dead", prompt=f"d{i}", status="RUNNING") for i in range(2)]
    mine = _run(store, "A")
    other = _run(store, "B", prompt="b")
    assert store.begin_create(mine, sent_at=T0, limit=2, stale_after=30) == ("full", None)
    clock.advance(31)
    store.heartbeat("A")
    store.heartbeat("B")
    assert store.begin_create(mine, sent_at=T0, limit=2, stale_after=30) == ("started", None)
    assert dead and other


def test_other_backends_do_not_count(clocked):
    store, _ = clocked
    for i in range(2):
        _run(store, "B", prompt=f"x{i}", status="RUNNING", backend="live:singapore")
    mine = _run(store, "A")
    assert store.begin_create(mine, sent_at=T0, limit=2) == ("started", None)


# -- several kernels (processes) on one ledger, against one emulator ---------------------------

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-account-test-0123456789"

#: one kernel: its own session on the shared ledger folder; waits at the barrier, submits
#: ``n`` jobs of ``model`` (prompts of its own), waits for all, prints what it saw as JSON
WORKER = r"""
import json, os, sys, time
import wan_nb
from wan_nb.schedule import PollPolicy
url, key, store, barrier, n, model, tag, share = sys.argv[1:9]
client = wan_nb.connect(api_key=key, base_url=url, store=store, resume=False,
                        policy=PollPolicy(share_account=share == "1"))
client.store.runs()  # the ledger is open before the race starts
open(barrier + ".ready" + tag, "w").close()
while not os.path.exists(barrier):
    time.sleep(0.002)
start = time.time()
jobs = [client.submit(f"kernel {tag} shot {i}", model=model, size="832*480", duration=5,
                      seed=i) for i in range(int(n))]
jobs = client.jobs.wait(timeout=600, progress=False)
end = time.time()
stats = dict(client.manager.stats)
print(json.dumps({"start": start, "end": end, "stats": stats,
                  "statuses": [j.status for j in jobs],
                  "tasks": [j.task_id for j in jobs],
                  "videos": [str(client.store.video_file(j.record)) for j in jobs]}))
client.close()
"""


def _env() -> dict[str, str]:
    return {**os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_kernels(url: str, key: str, store: Path, barrier: Path, *, kernels: int, jobs: int,
                model: str, share: bool = True, timeout: float = 600) -> list[dict[str, Any]]:
    """``kernels`` processes, each its own session on ``store``, submitting ``jobs`` jobs
    of ``model`` at the same moment (a file barrier); returns what each printed."""
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, key, str(store),
                               str(barrier), str(jobs), model, str(k), "1" if share else "0"],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in range(kernels)]
    try:
        deadline = time.monotonic() + 120
        while len(list(barrier.parent.glob(barrier.name + ".ready*"))) < kernels:
            assert time.monotonic() < deadline, "the kernels never got ready"
            assert all(p.poll() is None for p in procs), \
                [p.communicate() for p in procs if p.poll() is not None]
            time.sleep(0.01)
        barrier.touch()
        out = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            assert p.returncode == 0, stderr
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def emulator_tasks(data_dir: Path) -> list[dict[str, Any]]:
    """Every task the emulator CLI recorded (submit and end times in its clock)."""
    con = sqlite3.connect(data_dir / "tasks.sqlite3")
    try:
        return [json.loads(body) for (body,) in con.execute("SELECT body FROM tasks")]
    finally:
        con.close()


def most_at_once(tasks: list[dict[str, Any]]) -> int:
    """The most tasks the service held at once (created and not yet ended)."""
    events = sorted([(t["submit"], 1) for t in tasks] + [(t["ended"], -1) for t in tasks],
                    key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def emulator_stats(url: str, key: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_emulator/stats", headers={"Authorization": f"Bearer {key}"},
                     timeout=10).json()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kernels_on_one_ledger_share_the_accounts_limits(tmp_path):
    """Three kernels, four jobs each, of a model limited to 2 creates per second and 2 tasks
    at once, against one emulator: no create refused, no query throttled, never more than 2
    tasks at once at the service, every job done with its video, each kernel its own."""
    model = "wan2.2-t2v-plus"
    spec = catalog.get_model(model)
    assert (spec.submissions_per_s, spec.concurrency) == (2, 2)
    emu_dir = tmp_path / "emu"
    with run_cli_emulator(emu_dir, key=KEY, speed="1") as url:
        results = run_kernels(url, KEY, tmp_path / "ledger", tmp_path / "go", kernels=3,
                              jobs=4, model=model)
        stats = emulator_stats(url, KEY)
    assert stats["creates"] == {**stats["creates"], "accepted": 12, "refused": 0}, stats
    assert stats["throttled"] == 0, stats
    tasks = emulator_tasks(emu_dir)
    assert len(tasks) == 12 and all(t["status"] == "SUCCEEDED" for t in tasks)
    assert most_at_once(tasks) <= spec.concurrency, sorted(
        (round(t["submit"], 2), round(t["ended"], 2)) for t in tasks)
    mine = [set(r["tasks"]) for r in results]
    assert all(len(m) == 4 for m in mine) and len(set().union(*mine)) == 12
    for r in results:
        assert r["statuses"] == ["SUCCEEDED"] * 4
        assert all(os.path.getsize(v) > 1000 for v in r["videos"])
    # the kernels were held (they competed), and nothing was created twice
    assert sum(r["stats"].get("creates_held", 0) for r in results) > 0
    with Store(tmp_path / "ledger") as store:
        assert len(store.runs()) == 12


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_without_sharing_the_same_kernels_overrun_the_account(tmp_path):
    """The same race with sharing off: the kernels pace themselves alone and the service
    holds more tasks at once than the account allows (what the sharing prevents)."""
    model = "wan2.2-t2v-plus"
    emu_dir = tmp_path / "emu"
    with run_cli_emulator(emu_dir, key=KEY, speed="1") as url:
        run_kernels(url, KEY, tmp_path / "ledger", tmp_path / "go", kernels=3, jobs=4,
                    model=model, share=False)
    assert most_at_once(emulator_tasks(emu_dir)) > catalog.get_model(model).concurrency
