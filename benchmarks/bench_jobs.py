"""wan_nb's jobs (one poller on the toolkit's thread) against the official dashscope SDK.

    python benchmarks/bench_jobs.py [--quick | --realistic-only [--compression 10]]

Four measurements in one run, every server an emulator on 127.0.0.1:

1. Kernel responsiveness: a real Jupyter kernel runs ``wan_nb.connect(speed=30)`` (the embedded
   emulator, in the kernel's process) with N jobs in flight; the round trip of a trivial cell
   (``1+1``, execute -> reply) is sampled while they are created and polled. Compared with an
   idle kernel and with a kernel where ``dashscope.VideoSynthesis.call`` runs in a cell: the
   next cell waits for the whole task.
   Then 3 jobs submitted in a kernel and a cell that blocks in ``time.sleep`` until they are
   done: how long from the submit until every job was done (its video on disk) while the
   kernel's own loop never ran (tests/test_kernel.py checks that they progress; this times it
   against the 8 s the test used to assert).
2. A 50-task sweep at the model's concurrency of 5 ("fast" emulator, a fresh one per
   contender): wan_nb ``submit`` x50 + ``JobList.wait()`` (videos downloaded and probed), the
   SDK's sequential ``VideoSynthesis.call`` loop, and ``AioVideoSynthesis.call`` under
   ``asyncio.gather``; against the emulator's own schedule.
3. Requests per task (the emulator's ``/_emulator/stats``) and notice delay (a task's end in
   the emulator -> the moment the client knew), for the single-task and 50-task scenarios.
4. The same with task times like the live service's (~2 min, see :class:`Setting`),
   compressed ``--compression`` times, both clients' clocks compressed as much: 5 tasks alone
   one after another (the first with nothing learned) and a sweep of ``--realistic-tasks``.
   Not in ``--quick``; ``--realistic-only`` runs only this (~4 minutes).

The SDK contenders get the emulator's query limit lifted only when they hit 429s with it (the
run says so). ``--quick`` shrinks every scenario (under ~2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import queue
import random
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "sk-bench-jobs"
MODEL, SIZE, DURATION = "wan2.5-t2v-preview", "624*624", 5
SUBMISSIONS_PER_S, CONCURRENCY = 5, 5  # wan2.5-t2v-preview in the catalog
SDK_PACE_S = 0.21  # the aio SDK contender's pacing of creates (it does not pace itself)
OUR_ENV = ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "WAN_NB_STORE", "WAN_NB_EMULATOR_DIR")


@dataclass(frozen=True)
class Plan:
    kernel_jobs: int
    kernel_samples: int
    kernel_speed: float
    idle_samples: int
    sdk_kernel_calls: int
    sweep_tasks: int
    single_tasks: int
    embedded_row: bool
    sweep_budget: float  # seconds per sweep contender before it is cut short


FULL = Plan(kernel_jobs=200, kernel_samples=200, kernel_speed=30.0, idle_samples=100,
            sdk_kernel_calls=5, sweep_tasks=50, single_tasks=5, embedded_row=True,
            sweep_budget=300.0)
QUICK = Plan(kernel_jobs=50, kernel_samples=60, kernel_speed=30.0, idle_samples=30,
             sdk_kernel_calls=1, sweep_tasks=10, single_tasks=2, embedded_row=False,
             sweep_budget=60.0)

# speed.py: the "realistic" speed runs a task 40x as long as "fast" (then clamps it to 60-290 s)
REALISTIC_FACTOR = 40.0
# 480P, 10 s: ~2 min of service time; the smallest video of that length keeps the emulator's
# renders (real time, not compressed) well inside the compressed run time
REAL_SIZE, REAL_DURATION = "832*480", 10
REAL_SINGLE = 5  # tasks alone, one after another: the first with nothing learned yet


@dataclass(frozen=True)
class Setting:
    """The tasks of a scenario, and how much faster than the live service everything runs.

    ``compression`` 1: the emulator's "fast" tasks and every client's clock as shipped.
    ``compression`` C > 1: the emulator runs at speed 40 / C, so a task takes 1 / C of its
    "realistic" (live-like) time, and the clients' clocks are compressed as much (wan_nb's
    poll policy through ``connect(policy=...)``, the SDK's sleeps): one second here is C
    seconds of the live service, and request counts are those the service would see.
    """

    size: str = SIZE
    duration: int = DURATION
    compression: float = 1.0

    @property
    def realistic(self) -> bool:
        return self.compression != 1.0

    @property
    def speed(self) -> str | float:
        return REALISTIC_FACTOR / self.compression if self.realistic else "fast"


FAST = Setting()


# -- small helpers -----------------------------------------------------------------------------
def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}{unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) if i else c.ljust(w)
                              for i, (c, w) in enumerate(zip(r, widths, strict=True))) + " |"
            for r in cells]
    return "\n".join([line, sep, *body])


def say(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    sys.stderr.write(f"  .. {text}\n")
    sys.stderr.flush()


def clean_env() -> dict[str, str]:
    """Our environment without a real key or base URL (everything here is the emulator)."""
    env = {k: v for k, v in os.environ.items() if k not in OUR_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


# -- an emulator in its own process ------------------------------------------------------------
class EmulatorProcess:
    """``python -m wan_nb.emulator`` on a free loopback port, so that client and server do not
    share a process (and its GIL)."""

    def __init__(self, data_dir: Path, speed: str | float = "fast", query_limit: bool = True):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.query_limit = query_limit
        cmd = [sys.executable, "-m", "wan_nb.emulator", "--host", "127.0.0.1", "--port", "0",
               "--key", KEY, "--speed", str(speed), "--data-dir", str(data_dir)]
        if not query_limit:
            cmd.append("--no-query-limit")
        self._log = open(data_dir / "emulator.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     cwd=str(ROOT), env=clean_env())
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline()
        m = re.search(r"listening on (http://\S+) ", banner)
        if not m:
            self.stop()
            raise RuntimeError(f"emulator did not start: {banner!r}; see {data_dir}/emulator.log")
        self.base_url = m.group(1)
        self.api_base = self.base_url + "/api/v1"
        self._http = httpx.Client(base_url=self.base_url, trust_env=False, timeout=30,
                                  headers={"Authorization": f"Bearer {KEY}"})

    def stats(self) -> dict[str, Any]:
        r = self._http.get("/_emulator/stats")
        r.raise_for_status()
        return r.json()

    def tasks(self) -> dict[str, dict[str, Any]]:
        """Every task of the last 24 h by id: gmt_create/start_time/end_time in epoch s."""
        return list_emulator_tasks(self._http)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the CLI exits 0
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_http"):
            self._http.close()
        self._log.close()


def list_emulator_tasks(http: httpx.Client) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    page = 1
    while True:
        for _attempt in range(5):
            r = http.get("/api/v1/tasks", params={"page_no": page, "page_size": 100})
            if r.status_code != 429:
                break
            time.sleep(0.5)
        r.raise_for_status()
        body = r.json()
        for t in body["data"]:
            out[t["task_id"]] = {"status": t["status"], "submit": t["gmt_create"] / 1000,
                                 "start": (t.get("start_time") or 0) / 1000 or None,
                                 "end": (t.get("end_time") or 0) / 1000 or None}
        if page >= body["total_page"]:
            return out
        page += 1


@contextmanager
def emulator(tmp: Path, name: str, **kw: Any) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(tmp / name, **kw)
    try:
        yield emu
    finally:
        emu.stop()


def api_requests(stats: dict[str, Any]) -> int:
    """Every API request the emulator answered (creates incl. refused, queries, lists,
    cancels); /_emulator/* and file downloads are not API requests."""
    return int(stats["creates"]["accepted"] + stats["creates"]["refused"] + stats["queries"]
               + stats["lists"] + stats["cancels"])


def per_task(stats: dict[str, Any], n: int) -> dict[str, float]:
    creates = stats["creates"]["accepted"] + stats["creates"]["refused"]
    api = creates + stats["queries"] + stats["lists"] + stats["cancels"]
    return {"creates": creates / n, "queries": stats["queries"] / n, "lists": stats["lists"] / n,
            "api": api / n, "throttled": float(stats["throttled"]),
            "refused": float(stats["creates"]["refused"])}


# -- the emulator's own schedule ---------------------------------------------------------------
def ideal_makespan(tasks: list[dict[str, Any]], dispatch: float) -> float:
    """The sweep's shortest possible wall time on this emulator: creates exactly at the
    submission rate from t=0, every task served (FIFO, CONCURRENCY slots) for the time the
    emulator actually served it (end - start, render included)."""
    free = [0.0] * CONCURRENCY
    last = 0.0
    for i, t in enumerate(sorted(tasks, key=lambda t: t["submit"])):
        ready = i / SUBMISSIONS_PER_S + dispatch
        k = min(range(CONCURRENCY), key=free.__getitem__)
        free[k] = max(free[k], ready) + (t["end"] - t["start"])
        last = max(last, free[k])
    return last


def schedule(tasks: list[dict[str, Any]]) -> dict[str, float]:
    from wan_nb.emulator.speed import timing

    done = [t for t in tasks if t["end"] and t["start"]]
    if not done:
        return {"span": math.nan, "ideal": math.nan, "service": math.nan, "creates": math.nan}
    dispatch = timing("fast", 624, 624, DURATION)[0]
    submits = [t["submit"] for t in tasks]
    return {"span": max(t["end"] for t in done) - min(t["submit"] for t in done),
            "creates": max(submits) - min(submits),
            "ideal": ideal_makespan(done, dispatch),
            "service": med([t["end"] - t["start"] for t in done])}


# -- results -----------------------------------------------------------------------------------
@dataclass
class Run:
    """One contender in one scenario."""

    name: str
    n: int
    wall: float = math.nan  # first create call -> the last result in the caller's hands
    noticed_wall: float = math.nan  # first create call -> the last task known to have ended
    notice: list[float] = field(default_factory=list)  # task end -> client knew, seconds
    done: list[float] = field(default_factory=list)  # task end -> video on disk (wan_nb)
    fetch: list[float] = field(default_factory=list)  # noticed -> on disk, per task (wan_nb)
    stats: dict[str, Any] = field(default_factory=dict)
    sched: dict[str, float] = field(default_factory=dict)
    downloads: int = 0
    ok: int = 0
    remark: str = ""
    each: list[tuple[str, int]] = field(default_factory=list)  # (task id, API requests), in order
    notice_of: dict[str, float] = field(default_factory=dict)  # task id -> notice delay
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # the emulator's, by id


def delays(ended: dict[str, float], tasks: dict[str, dict[str, Any]]) -> list[float]:
    return list(delays_by_task(ended, tasks).values())


def delays_by_task(ended: dict[str, float], tasks: dict[str, dict[str, Any]]
                   ) -> dict[str, float]:
    return {tid: at - tasks[tid]["end"] for tid, at in ended.items()
            if tid in tasks and tasks[tid]["end"]}


# -- compressed clocks (realistic task times) ---------------------------------------------------
def compressed_policy(c: float) -> tuple[Any, str]:
    """wan_nb's default poll policy with its absolute times divided by ``c`` (and its query
    rate multiplied): against tasks ``c`` times shorter it polls at the same moments of a
    task's life as the default does against the live service. Share, overrun share and
    jitter are ratios and stay. Returns the policy and a line saying what was scaled."""
    import dataclasses

    try:  # where the refactor may move it (DESIGN.md: schedule.py)
        from wan_nb.schedule import PollPolicy  # type: ignore[import-not-found]
    except ImportError:
        from wan_nb.jobs import PollPolicy
    base = PollPolicy()
    names = {f.name for f in dataclasses.fields(base)}
    scaled = {k: getattr(base, k) / c for k in ("floor", "ceiling") if k in names}
    if "query_rate" in names:
        scaled["query_rate"] = base.query_rate * c
    said = ", ".join(f"{k} {getattr(base, k):g} -> {v:g}" for k, v in scaled.items())
    return dataclasses.replace(base, **scaled), f"wan_nb's default PollPolicy with {said}"


class _FastSleep:
    """Stands in for a module (``time`` or ``asyncio``) whose ``sleep`` lasts 1/c as long."""

    def __init__(self, module: Any, c: float):
        self._module, self._c = module, c

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def sleep(self, seconds: float, *args: Any, **kw: Any) -> Any:
        return self._module.sleep(seconds / self._c, *args, **kw)


@contextmanager
def sdk_clock(c: float) -> Iterator[None]:
    """The SDK's ``wait`` (sync and asyncio, ``dashscope.client.base_api``) sleeps its own
    1, 1, 2, 2, 2, 4, 4, 4, 5, 5, ... s divided by ``c``: its polls fall at the same moments
    of a compressed task's life as of a live one. Its requests are the SDK's own code."""
    if c == 1.0:
        yield
        return
    from dashscope.client import base_api

    saved = base_api.time, base_api.asyncio
    base_api.time, base_api.asyncio = _FastSleep(time, c), _FastSleep(asyncio, c)
    try:
        yield
    finally:
        base_api.time, base_api.asyncio = saved


# -- wan_nb in this process --------------------------------------------------------------------
def wan_nb_run(name: str, n: int, tmp: Path, *, embedded: bool, budget: float,
               sequential: bool = False, setting: Setting = FAST) -> Run:
    """wan_nb against a fresh emulator: ``submit`` x n + ``JobList.wait()``, or (sequential)
    one ``submit(...).result()`` after the other (then, with a compressed ``setting``, the
    API requests of each task are counted on their own)."""
    import wan_nb

    run = Run(name, n)
    extra: dict[str, Any] = {}
    if setting.realistic:
        extra["policy"] = compressed_policy(setting.compression)[0]
    tag = re.sub(r"\W+", "_", name) + ("_realistic" if setting.realistic else "")
    store = tmp / tag
    emu: EmulatorProcess | None = None
    if embedded:  # connect()'s default: the emulator embedded in this process
        client = wan_nb.connect(quiet=True, store=store, speed="fast", resume=False,
                                emulator=True)
    else:
        emu = EmulatorProcess(tmp / (tag + "_emu"), speed=setting.speed,
                              query_limit=not setting.realistic)
        # backend="emulator": the run-time prior connect() gives an emulator (3 s, not 150 s)
        client = wan_nb.connect(KEY, base_url=emu.api_base, backend="emulator", store=store,
                                quiet=True, resume=False, **extra)
    noticed: dict[str, float] = {}
    finished: dict[str, float] = {}

    def watch(job: Any) -> None:
        now = time.time()
        if job.status == "SUCCEEDED" and job.task_id not in noticed:
            noticed[job.task_id] = now
        if job.done and job.run_id not in finished:
            finished[job.run_id] = now

    jobs = wan_nb.JobList()
    try:
        t0 = time.time()
        deadline = time.monotonic() + budget
        before = api_requests(emu.stats()) if emu is not None and setting.realistic else 0
        for i in range(n):
            job = client.submit(f"bench sweep fox {i}", model=MODEL, size=setting.size,
                                duration=setting.duration, seed=i)
            job.on_change(watch)
            jobs.append(job)
            if sequential:
                try:
                    job.result(timeout=max(1.0, deadline - time.monotonic()),
                               raise_on_error=False)
                except wan_nb.JobTimeout:
                    run.remark = f"cut at the {budget:.0f} s budget"
                    break
                if emu is not None and setting.realistic:
                    now_requests = api_requests(emu.stats())
                    run.each.append((job.task_id or "", now_requests - before))
                    before = now_requests
        if not sequential:
            try:
                jobs.wait(timeout=max(1.0, deadline - time.monotonic()), progress=False)
            except wan_nb.JobTimeout:
                run.remark = f"cut at the {budget:.0f} s budget"
        t_end = time.time()
        run.ok = sum(j.ok for j in jobs)
        run.wall = (max(finished.values()) if finished else t_end) - t0
        run.noticed_wall = (max(noticed.values()) if noticed else math.nan) - t0
        run.downloads = int(client.manager.stats["downloads"])
        if emu is not None:
            run.stats = emu.stats()
            tasks = emu.tasks()
        else:
            with httpx.Client(base_url=client.emulator.base_url, trust_env=False, timeout=30,
                              headers={"Authorization": f"Bearer {client.emulator.api_key}"}
                              ) as http:
                run.stats = http.get("/_emulator/stats").json()
                tasks = list_emulator_tasks(http)
        run.notice = delays(noticed, tasks)
        run.notice_of, run.tasks = delays_by_task(noticed, tasks), tasks
        by_task = {j.task_id: finished[j.run_id] for j in jobs if j.run_id in finished
                   and j.task_id and j.status == "SUCCEEDED"}
        run.done = delays(by_task, tasks)
        run.fetch = [at - noticed[tid] for tid, at in by_task.items() if tid in noticed]
        refused = run.stats["creates"]["refused"]
        if refused:
            sent = refused + run.stats["creates"]["accepted"]
            note = (f"{refused} of {sent} create requests refused (429 Throttling.RateQuota); "
                    f"the poller started {client.manager.stats['creates']} creates, the other "
                    f"{sent - client.manager.stats['creates']} requests are AsyncClient's own "
                    "retries of a 429")
            run.remark = f"{run.remark}; {note}" if run.remark else note
        run.sched = schedule([tasks[j.task_id] for j in jobs if j.task_id in tasks])
        run.n = len(jobs)
    finally:
        client.close()
        if emu is not None:
            emu.stop()
        elif client.emulator is not None:
            client.emulator.stop()
    return run


# -- the official SDK in this process ----------------------------------------------------------
def sdk_sequential(n: int, tmp: Path, budget: float, setting: Setting = FAST,
                   label: str = "SDK VideoSynthesis.call loop") -> Run:
    import dashscope
    from dashscope import VideoSynthesis
    from dashscope.api_entities.http_request import close_shared_sync_session

    run = Run(label, n)
    returned: dict[str, float] = {}
    name = "sdk_seq_emu" + ("_realistic" if setting.realistic else "")
    with emulator(tmp, name, speed=setting.speed, query_limit=not setting.realistic) as emu, \
            sdk_clock(setting.compression):
        dashscope.base_http_api_url = emu.api_base
        before = api_requests(emu.stats()) if setting.realistic else 0
        t0 = time.time()
        deadline = time.monotonic() + budget
        for i in range(n):
            if time.monotonic() > deadline:
                run.remark = f"cut at the {budget:.0f} s budget after {i} tasks"
                run.n = i
                break
            rsp = VideoSynthesis.call(api_key=KEY, model=MODEL, prompt=f"bench sweep fox {i}",
                                      size=setting.size, duration=setting.duration, seed=i)
            at = time.time()
            if rsp.status_code == 200 and rsp.output.task_status == "SUCCEEDED":
                returned[rsp.output.task_id] = at
                run.ok += 1
            if setting.realistic:
                now_requests = api_requests(emu.stats())
                task_id = rsp.output.task_id if rsp.output is not None else ""
                run.each.append((task_id or "", now_requests - before))
                before = now_requests
        run.wall = time.time() - t0
        run.noticed_wall = run.wall
        close_shared_sync_session()
        run.stats = emu.stats()
        tasks = emu.tasks()
    run.notice = delays(returned, tasks)
    run.notice_of, run.tasks = delays_by_task(returned, tasks), tasks
    run.sched = schedule(list(tasks.values()))
    return run


def sdk_gather(n: int, tmp: Path, budget: float, query_limit: bool,
               setting: Setting = FAST) -> tuple[Run, int]:
    """``AioVideoSynthesis`` x n under ``asyncio.gather``: what its ``call`` does
    (``async_call`` then ``wait``, see ``BaseAsyncAioApi.call``), with the creates paced at
    SDK_PACE_S and a create answered 429 sent again after 1 s (the SDK does neither, and 50
    creates at once would mostly be refused: 5 per second). Returns the run and how many
    calls came back with HTTP 429 as their result (a throttled query ends ``wait``)."""
    import dashscope
    from dashscope.aigc.video_synthesis import AioVideoSynthesis
    # from its module: dashscope/__init__.pyi declares it sync, but it is a coroutine
    from dashscope.api_entities.aio_session import close_shared_aio_session

    label = "SDK AioVideoSynthesis + gather" + ("" if query_limit else " (no query limit)")
    run = Run(label, n)
    returned: dict[str, float] = {}
    throttled = 0
    resent = 0

    async def one(i: int) -> Any:
        nonlocal resent
        await asyncio.sleep(i * SDK_PACE_S)
        while True:
            task = await AioVideoSynthesis.async_call(
                api_key=KEY, model=MODEL, prompt=f"bench sweep fox {i}", size=setting.size,
                duration=setting.duration, seed=i)
            if task.status_code != 429:
                break
            resent += 1
            await asyncio.sleep(1.0)
        if task.status_code != 200:
            return task, time.time()
        rsp = await AioVideoSynthesis.wait(task, api_key=KEY)
        return rsp, time.time()

    async def main() -> list[Any]:
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True), budget)
        finally:
            await close_shared_aio_session()

    name = ("sdk_aio_emu" + ("" if query_limit else "_nolimit")
            + ("_realistic" if setting.realistic else ""))
    with emulator(tmp, name, query_limit=query_limit, speed=setting.speed) as emu, \
            sdk_clock(setting.compression):
        dashscope.base_http_api_url = emu.api_base
        t0 = time.time()
        try:
            results = asyncio.run(main())
        except asyncio.TimeoutError:
            results = []
            run.remark = f"cut at the {budget:.0f} s budget"
        run.wall = time.time() - t0
        errors: list[str] = []
        for res in results:
            if isinstance(res, BaseException):
                errors.append(f"{type(res).__name__}: {res}"[:120])
                continue
            rsp, at = res
            if rsp.status_code == 429:
                throttled += 1
            elif rsp.status_code == 200 and rsp.output.task_status == "SUCCEEDED":
                returned[rsp.output.task_id] = at
                run.ok += 1
            else:
                errors.append(f"HTTP {rsp.status_code} {rsp.code}")
        run.noticed_wall = (max(returned.values()) - t0) if returned else math.nan
        run.stats = emu.stats()
        tasks = emu.tasks()
    notes = [run.remark] if run.remark else []
    notes.append(f"creates paced at {SDK_PACE_S} s; {resent} creates refused (429 "
                 "Throttling.RateQuota) and resent after 1 s")
    if throttled:
        notes.append(f"{throttled} calls returned HTTP 429 (a throttled query) as their result")
    if errors:
        notes.append(f"{len(errors)} other failures, e.g. {errors[0]}")
    run.remark = "; ".join(notes)
    run.notice = delays(returned, tasks)
    run.notice_of, run.tasks = delays_by_task(returned, tasks), tasks
    run.sched = schedule(list(tasks.values()))
    return run, throttled


# -- kernels -----------------------------------------------------------------------------------
class Kernel:
    def __init__(self, cwd: Path):
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd),
                                            env=clean_env())

    def reply(self, msg_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def drain(self) -> None:
        # not iopub_channel.get_msgs(): on the blocking client it polls with no timeout and
        # never returns once the queue is empty
        while True:
            try:
                self.kc.get_iopub_msg(timeout=0)
            except queue.Empty:
                return

    def run(self, code: str, timeout: float = 120.0) -> str:
        """Execute ``code``; return its stdout (raises on an error)."""
        msg_id = self.kc.execute(code)
        out = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        reply = self.reply(msg_id, timeout)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {reply['content'].get('ename')}: "
                               f"{reply['content'].get('evalue')}\n{code}")
        return "".join(out)

    def roundtrip(self, timeout: float = 120.0) -> float:
        """Seconds from sending ``1+1`` to its execute_reply."""
        t = time.perf_counter()
        msg_id = self.kc.execute("1+1", store_history=False)
        self.reply(msg_id, timeout)
        dt = time.perf_counter() - t
        self.drain()
        return dt

    def samples(self, n: int, gap: tuple[float, float], rng: random.Random,
                since: float | None = None) -> tuple[list[float], list[float]]:
        """n round trips, ``gap`` seconds apart; (latencies, their start times - since)."""
        since = time.perf_counter() if since is None else since
        lat, at = [], []
        for _ in range(n):
            at.append(time.perf_counter() - since)
            lat.append(self.roundtrip())
            time.sleep(rng.uniform(*gap))
        return lat, at

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=False)


def kernel_wan_nb(plan: Plan, tmp: Path, rng: random.Random, render: bool = True
                  ) -> dict[str, Any]:
    """A kernel with ``plan.kernel_jobs`` wan_nb jobs in flight. ``render=False`` starts the
    embedded emulator without video rendering first (connect() then reuses it), to tell the
    poller's cost from the renders' (ffmpeg and its feeding threads, in the same kernel)."""
    cwd = tmp / ("kernel_wan_nb" if render else "kernel_wan_nb_norender")
    cwd.mkdir()
    pre = "" if render else textwrap.dedent(f"""
        from wan_nb.emulator.server import start_embedded
        _pre = start_embedded(data_dir="wan_runs/.emulator", speed={plan.kernel_speed!r},
                              render=False)
    """)
    k = Kernel(cwd)
    try:
        k.run("1+1")
        k.run("import json, time, collections, httpx, wan_nb\n" + pre + textwrap.dedent(f"""
            _t = time.perf_counter()
            client = wan_nb.connect(quiet=True, speed={plan.kernel_speed!r})
            connect_s = time.perf_counter() - _t
        """) + ("" if render else "assert client.emulator is _pre\n"))
        t = time.perf_counter()
        out = k.run(textwrap.dedent(f"""
            _t = time.perf_counter()
            jobs = wan_nb.JobList(
                client.submit(f"kernel fox {{i}}", model={MODEL!r}, size={SIZE!r},
                              duration={DURATION}, seed=i)
                for i in range({plan.kernel_jobs}))
            print(json.dumps({{"submit_s": time.perf_counter() - _t}}))
        """))
        cell_s = time.perf_counter() - t
        submit_s = json.loads(out)["submit_s"]
        lat, at = k.samples(plan.kernel_samples, (0.05, 0.25), rng, since=t)
        span = time.perf_counter() - t
        state = json.loads(k.run(textwrap.dedent("""
            _e = client.emulator
            _s = httpx.get(_e.base_url + "/_emulator/stats", trust_env=False,
                           headers={"Authorization": "Bearer " + _e.api_key}).json()
            print(json.dumps({"status": collections.Counter(j.status for j in jobs),
                              "poller": dict(client.manager.stats),
                              "emulator": {"creates": _s["creates"]["accepted"],
                                           "refused": _s["creates"]["refused"],
                                           "queries": _s["queries"], "lists": _s["lists"],
                                           "throttled": _s["throttled"],
                                           "renders": _s["renders"]["started"]},
                              "connect_s": connect_s}))
        """)))
        k.run("client.close()")
    finally:
        k.shutdown()
    return {"lat": lat, "at": at, "span": span, "submit_s": submit_s, "cell_s": cell_s,
            "render": render, **state}


BLOCKING_JOBS, BLOCKING_TARGET_S = 3, 8.0


def kernel_blocking(tmp: Path) -> dict[str, Any]:
    """A kernel submits BLOCKING_JOBS jobs, then runs a cell that blocks until they are done."""
    cwd = tmp / "kernel_blocking"
    cwd.mkdir()
    k = Kernel(cwd)
    try:
        k.run(textwrap.dedent(f"""
            import json, time, wan_nb
            client = wan_nb.connect(quiet=True)
            done_at = {{}}
            _t = time.time()
            jobs = wan_nb.JobList(
                client.submit(f"blocking boat {{i}}", model={MODEL!r}, size={SIZE!r},
                              duration={DURATION}, seed=i)
                for i in range({BLOCKING_JOBS}))
            submitted_at = time.time()
            for j in jobs:
                j.on_change(lambda j: j.done and done_at.setdefault(j.run_id, time.time()))
        """))
        out = k.run(textwrap.dedent("""
            t0 = time.time()
            deadline = time.monotonic() + 240
            while not all(j.done for j in jobs) and time.monotonic() < deadline:
                time.sleep(0.05)
            t1 = time.time()
            print(json.dumps({"submit": _t, "submitted": submitted_at, "t0": t0, "t1": t1,
                              "done": sorted(done_at.values()), "ok": sum(j.ok for j in jobs)}))
        """), timeout=300)
        k.run("client.close()")
    finally:
        k.shutdown()
    return json.loads(out)


def report_blocking(b: dict[str, Any]) -> None:
    done = [t - b["submit"] for t in b["done"]]
    last = max(done, default=math.nan)
    during = sum(b["t0"] <= t <= b["t1"] for t in b["done"])
    say(f"- {BLOCKING_JOBS} jobs submitted, then a cell blocking in time.sleep: {b['ok']} ok, "
        f"done {', '.join(f'{t:.1f}' for t in done)} s after the submit ({during} of them "
        f"while the cell blocked); all done in {last:.1f} s vs the {BLOCKING_TARGET_S:.0f} s the "
        f"kernel test used to assert: {'met' if last <= BLOCKING_TARGET_S else 'MISSED'}.")


def kernel_sdk(plan: Plan, tmp: Path, rng: random.Random) -> dict[str, Any]:
    cwd = tmp / "kernel_sdk"
    cwd.mkdir()
    with emulator(tmp, "kernel_sdk_emu") as emu:
        k = Kernel(cwd)
        try:
            k.run("1+1")
            k.run(textwrap.dedent(f"""
                import json, time, dashscope
                from dashscope import VideoSynthesis
                dashscope.base_http_api_url = {emu.api_base!r}
                dashscope.api_key = {KEY!r}
                calls = []
            """))
            idle, _ = k.samples(plan.idle_samples, (0.02, 0.08), rng)
            waits, calls = [], []
            for i in range(plan.sdk_kernel_calls):
                call_id = k.kc.execute(textwrap.dedent(f"""
                    _t0 = time.time()
                    r = VideoSynthesis.call(model={MODEL!r}, prompt="kernel sdk fox {i}",
                                            size={SIZE!r}, duration={DURATION}, seed={i})
                    calls.append({{"t0": _t0, "t1": time.time(), "status": r.status_code,
                                  "task_id": r.output.task_id,
                                  "task_status": r.output.task_status}})
                """))
                time.sleep(0.05)  # the call is running now
                t = time.perf_counter()
                trivial_id = k.kc.execute("1+1", store_history=False)
                k.reply(call_id, 120)
                k.reply(trivial_id, 120)
                waits.append(time.perf_counter() - t)
                k.drain()
            calls = json.loads(k.run("print(json.dumps(calls))"))
            stats = emu.stats()
            tasks = emu.tasks()
        finally:
            k.shutdown()
    single = Run("SDK VideoSynthesis.call (in the kernel)", len(calls))
    single.notice = delays({c["task_id"]: c["t1"] for c in calls
                            if c["task_status"] == "SUCCEEDED"}, tasks)
    single.ok = sum(c["task_status"] == "SUCCEEDED" for c in calls)
    single.stats = stats
    single.wall = sum(c["t1"] - c["t0"] for c in calls)
    return {"idle": idle, "waits": waits, "call_s": [c["t1"] - c["t0"] for c in calls],
            "single": single}


# -- report ------------------------------------------------------------------------------------
def section(title: str) -> None:
    say()
    say(f"## {title}")
    say()


def report_kernels(plan: Plan, wks: list[dict[str, Any]], sk: dict[str, Any]) -> None:
    section("1. Kernel responsiveness: round trip of a trivial cell (1+1, execute -> reply)")
    idle = [x * 1000 for x in sk["idle"]]
    waits = [x * 1000 for x in sk["waits"]]
    rows = [["idle kernel (baseline)", len(idle), fmt(med(idle)), fmt(pct(idle, 95)),
             fmt(pct(idle, 99)), fmt(max(idle))]]
    for wk in wks:
        lat = [x * 1000 for x in wk["lat"]]
        label = (f"wan_nb, {plan.kernel_jobs} jobs in flight"
                 + ("" if wk["render"] else ", emulator not rendering"))
        rows.append([label, len(lat), fmt(med(lat)), fmt(pct(lat, 95)), fmt(pct(lat, 99)),
                     fmt(max(lat))])
    rows.append(["SDK: cell sent right after VideoSynthesis.call", len(waits),
                 fmt(med(waits), "", 0), fmt(pct(waits, 95), "", 0), fmt(pct(waits, 99), "", 0),
                 fmt(max(waits), "", 0)])
    say(table(["kernel", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows))
    say()
    dispatch = 0.3 * plan.kernel_speed
    for wk in wks:
        lat = [x * 1000 for x in wk["lat"]]
        p99 = pct(lat, 99)
        what = "default connect()" if wk["render"] else "emulator not rendering"
        slow = [f"{t:.1f}" for t, x in zip(wk["at"], lat, strict=True) if x > 20]
        st, e = wk["status"], wk["emulator"]
        say(f"- wan_nb ({what}): p99 {p99:.1f} ms vs target 20 ms: "
            f"{'met' if p99 <= 20 else 'MISSED'} ({p99 / pct(idle, 99):.1f}x the idle p99); "
            + (f"{len(slow)} samples over 20 ms, at {', '.join(slow[:12])}"
               f"{' ...' if len(slow) > 12 else ''} s after the submit cell"
               if slow else "no sample over 20 ms")
            + f" (the first 5 tasks start RUNNING, so rendering, ~{dispatch:.0f} s in). "
            f"connect() {wk['connect_s']:.2f} s; {plan.kernel_jobs} submits took "
            f"{wk['submit_s']:.2f} s in the kernel; samples spanned {wk['span']:.1f} s; at the "
            f"end: jobs {dict(sorted(st.items()))}; the emulator saw {e['creates']} creates "
            f"accepted + {e['refused']} refused, {e['lists']} lists, {e['queries']} queries, "
            f"{e['throttled']} throttled, {e['renders']} renders started; poller stats "
            f"{dict(sorted(wk['poller'].items()))}.")
    lat = [x * 1000 for x in wks[0]["lat"]]
    say(f"- SDK: the next cell waited {med(waits) / 1000:.2f} s (median of {len(waits)}) = "
        f"{med(waits) / med(lat):.0f}x wan_nb's p50; VideoSynthesis.call itself took "
        f"{fmt(med(sk['call_s']))} s (median): the kernel is blocked for the whole task.")


def sweep_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for r in runs:
        ideal = r.sched.get("ideal", math.nan)
        rows.append([r.name, f"{r.ok}/{r.n}", fmt(r.wall, "", 1), fmt(r.noticed_wall, "", 1),
                     fmt(ideal, "", 1), fmt(r.sched.get("span"), "", 1),
                     fmt(r.sched.get("creates"), "", 1),
                     fmt(r.wall / ideal, "x"), fmt(r.noticed_wall / ideal, "x")])
    return rows


def report_sweep(plan: Plan, runs: list[Run], wan: Run) -> None:
    n = plan.sweep_tasks
    section(f"2. {n}-task sweep at concurrency {CONCURRENCY} (emulator speed fast, a fresh "
            "emulator per contender)")
    say(table(["contender", "ok", "wall s", "all noticed s", "ideal s", "emu span s",
               "creates span s", "wall/ideal", "noticed/ideal"], sweep_rows(runs)))
    say()
    say("- wall: first create call -> last result in hand (wan_nb: video downloaded, verified "
        "and probed; the SDK downloads nothing). all noticed: -> the last task known to have "
        "ended. ideal: creates exactly at 5/s from t=0, FIFO over 5 slots, each task served as "
        "long as the emulator served it (end - start, render included). emu span: the "
        "emulator's own last end - first submit for this run. creates span: last accepted "
        f"create - first (at exactly 5/s: {(n - 1) / SUBMISSIONS_PER_S:.1f} s).")
    for r in runs:
        if r.remark:
            say(f"- {r.name}: {r.remark}")
    ideal = wan.sched.get("ideal", math.nan)
    ratio = wan.wall / ideal
    tail = wan.wall - wan.noticed_wall
    say(f"- wan_nb wall/ideal {ratio:.2f}x vs target 1.10x: {'met' if ratio <= 1.1 else 'MISSED'}."
        f" Of the {wan.wall - ideal:+.2f} s gap to the ideal, {tail:.2f} s comes after the last "
        f"task was noticed (the last download + probe) and {wan.noticed_wall - ideal:+.2f} s "
        f"before (creates, polling). Per video, noticed -> on disk (download, sha256, probe) "
        f"takes {fmt(med(wan.fetch), ' s')} median, {fmt(pct(wan.fetch, 90), ' s')} p90, "
        f"{fmt(max(wan.fetch, default=math.nan), ' s')} max; all but the last overlap tasks "
        "still running.")


def report_requests(single: list[Run], sweep: list[Run]) -> None:
    section("3. Requests per task (emulator /_emulator/stats) and notice delay "
            "(task end in the emulator -> the client knew)")
    rows = []
    for scenario, runs in (("single", single), ("sweep", sweep)):
        for r in runs:
            if not r.stats:
                continue
            p = per_task(r.stats, max(1, r.n))
            rows.append([scenario, r.name, r.n, fmt(p["creates"]), fmt(p["queries"]),
                         fmt(p["lists"]), fmt(p["api"]), f"{int(p['refused'])}",
                         f"{int(p['throttled'])}",
                         fmt(r.downloads / max(1, r.n)), fmt(med(r.notice)),
                         fmt(pct(r.notice, 90)), fmt(med(r.done)), fmt(pct(r.done, 90))])
    say(table(["scenario", "contender", "tasks", "creates/t", "queries/t", "lists/t",
               "API req/t", "creates refused", "queries 429", "downl/t", "notice p50 s",
               "notice p90 s", "on disk p50 s", "on disk p90 s"], rows))
    say()
    say("- API req/t = (creates incl. refused + queries + lists + cancels) / tasks; creates "
        "refused = 429 Throttling.RateQuota (over 5 creates/s), queries 429 = throttled "
        "queries/lists (over 20/s); downloads "
        "are file GETs outside the API (the SDK returns a URL and downloads nothing). "
        "SDK notice = the moment call()/wait returned; wan_nb notice = the job's on_change "
        "callback seeing SUCCEEDED, on disk = the job done (video downloaded and probed).")
    for scenario, runs in (("single", single), ("sweep", sweep)):
        wan = [r for r in runs if r.name.startswith("wan_nb")]
        sdk = [r for r in runs if r.name.startswith("SDK") and r.stats]
        if wan and sdk:
            w = per_task(wan[0].stats, max(1, wan[0].n))["api"]
            s_best = min(per_task(r.stats, max(1, r.n))["api"] for r in sdk)
            d = med(wan[0].notice)
            say(f"- {scenario}: wan_nb {w:.2f} API requests/task vs the SDK's best {s_best:.2f} "
                f"({'fewer' if w < s_best else 'NOT fewer'}); median notice {d:.2f} s vs "
                f"target 1 s: {'met' if d <= 1.0 else 'MISSED'}.")


# -- 4. realistic task times ------------------------------------------------------------------
def realistic(compression: float, single_n: int, sweep_n: int, tmp: Path
              ) -> dict[str, Any]:
    """Single tasks one after another, then a sweep, for wan_nb and the SDK, with live-like
    task times compressed ``compression`` times (see :class:`Setting`)."""
    setting = Setting(size=REAL_SIZE, duration=REAL_DURATION, compression=compression)
    load = [os.getloadavg()[0]]
    budget = 3 * single_n * 330 / compression + 60
    sweep_budget = (sweep_n / CONCURRENCY + 2) * 330 / compression + 60
    single = [
        wan_nb_run("wan_nb submit().result()", single_n, tmp, embedded=False, budget=budget,
                   sequential=True, setting=setting),
        sdk_sequential(single_n, tmp, budget, setting, label="SDK VideoSynthesis.call")]
    load.append(os.getloadavg()[0])
    sweep = [wan_nb_run("wan_nb submit + JobList.wait", sweep_n, tmp, embedded=False,
                        budget=sweep_budget, setting=setting),
             sdk_gather(sweep_n, tmp, sweep_budget, False, setting)[0]]
    rtt = query_round_trip(tmp)
    load.append(os.getloadavg()[0])
    return {"setting": setting, "single": single, "sweep": sweep, "load": load, "rtt": rtt}


def query_round_trip(tmp: Path, n: int = 30) -> float:
    """Median seconds of one task query on loopback here and now: the part of a notice delay
    that does not shrink with the compression (the service-time columns multiply it too)."""
    with emulator(tmp, "round_trip_emu") as emu:
        http = emu._http
        r = http.post("/api/v1/services/aigc/video-generation/video-synthesis",
                      headers={"X-DashScope-Async": "enable"},
                      json={"model": MODEL, "input": {"prompt": "round trip"},
                            "parameters": {"size": SIZE, "duration": DURATION}})
        r.raise_for_status()
        task_id = r.json()["output"]["task_id"]
        times = []
        for _ in range(n):
            t = time.perf_counter()
            http.get(f"/api/v1/tasks/{task_id}").raise_for_status()
            times.append(time.perf_counter() - t)
            time.sleep(0.06)  # under the 20/s query limit
    return med(times)


def service_s(r: Run) -> list[float]:
    return [t["end"] - t["start"] for t in r.tasks.values() if t["end"] and t["start"]]


def report_realistic(res: dict[str, Any]) -> None:
    from wan_nb.emulator.speed import timing

    st: Setting = res["setting"]
    c = st.compression
    w, h = (int(x) for x in st.size.split("*"))
    dispatch = timing(st.speed, w, h, st.duration)[0]
    # the run's middle: each task's own +-10% comes from its id
    run_s = statistics.mean(timing(st.speed, w, h, st.duration, str(i))[1] for i in range(500))
    section(f"4. Realistic task times, compressed {c:g}x: API requests per task and notice "
            f"delay, {MODEL} {st.size} {st.duration} s")
    say(f"The emulator runs at speed {st.speed:g} (= {REALISTIC_FACTOR:g} / {c:g}): a task "
        f"waits {dispatch:.1f} s to start and runs {run_s:.1f} s +-10% here, i.e. "
        f"{dispatch * c:.0f} s + {run_s * c:.0f} s +-10% = {(dispatch + run_s) * c / 60:.1f} min "
        "of service time (speed 'realistic' runs it 40x 'fast' too; it waits 8 s instead of "
        f"{dispatch * c:.0f}). Service time = time here x {c:g}. Both clients' clocks are "
        f"compressed {c:g}x as well: {compressed_policy(c)[1]}; the SDK's own wait() with its "
        f"sleeps divided by {c:g}. Not compressed: the 5 creates/s limit (so a sweep's creates "
        f"take {c:g}x longer in service time), request round trips and the poller's own work "
        f"(multiplied by {c:g} in the service-time columns: an upper bound). The emulator's "
        f"20/s query limit is lifted, since {c:g}x compressed clients send {c:g}x as many per "
        "second as live ones would.")
    say()
    rows = []
    for r in res["single"]:
        for i, (tid, req) in enumerate(r.each):
            d = r.notice_of.get(tid, math.nan)
            label = r.name + (" (nothing learned yet)" if i == 0 and r.name.startswith("wan_nb")
                              else "")
            rows.append(["alone", f"{label}, task {i + 1}", 1, req, "<= 3", fmt(d),
                         fmt(d * c, "", 1), "<= 1.0"])
    for r in res["sweep"]:
        p = per_task(r.stats, max(1, r.n)) if r.stats else {"api": math.nan}
        rows.append([f"sweep {r.n}", f"{r.name} ({r.ok} ok)", r.n, fmt(p["api"]), "<= 2.5",
                     fmt(med(r.notice)), fmt(med(r.notice) * c, "", 1), "<= 1.0"])
    say(table(["scenario", "contender", "tasks", "API req/task", "target", "notice p50 s here",
               f"notice p50 s service (x{c:g})", "target s"], rows))
    say()
    rows = []
    for scenario, runs in (("alone", res["single"]), ("sweep", res["sweep"])):
        for r in runs:
            if not r.stats:
                continue
            p = per_task(r.stats, max(1, r.n))
            sv = service_s(r)
            rows.append([scenario, r.name, f"{r.ok}/{r.n}", fmt(p["creates"]),
                         fmt(p["queries"]), fmt(p["lists"]), fmt(p["api"]),
                         fmt(pct(r.notice, 90) * c, "", 1), fmt(max(r.notice, default=math.nan)
                                                                  * c, "", 1),
                         fmt(med(sv) * c / 60, "", 2), fmt(r.wall * c / 60, "", 1)])
    say(table(["scenario", "contender", "ok", "creates/t", "queries/t", "lists/t", "API req/t",
               "notice p90 s service", "notice max s service", "task run min service",
               "wall min service"], rows))
    say()
    say("- API requests = creates (incl. refused) + queries + lists + cancels, from the "
        "emulator's /_emulator/stats (alone: counted around each task, which runs with nothing "
        "else in flight). Notice = a task's end_time in the emulator -> wan_nb's on_change "
        "seeing SUCCEEDED, or the SDK's call()/wait() returning. The SDK contender in the sweep "
        f"is AioVideoSynthesis async_call + wait under asyncio.gather, creates paced at "
        f"{SDK_PACE_S} s.")
    for r in res["single"] + res["sweep"]:
        if r.remark:
            say(f"- {r.name}: {r.remark}")
    load = ", ".join(f"{x:.1f}" for x in res["load"])
    say(f"- 1-minute load average at the start, between the scenarios, at the end: {load} "
        f"({os.cpu_count()} CPUs). One task query's round trip here, measured after the "
        f"sweep: {res['rtt'] * 1000:.0f} ms median, i.e. {res['rtt'] * c:.2f} s in the "
        "service-time columns: every notice includes at least one such round trip (wan_nb's "
        "also a ledger write), so the service-time notices overstate a client whose network "
        "were as fast as loopback by about that much.")
    verdicts = []
    for scenario, runs, limit in (("alone", res["single"], 3.0), ("sweep", res["sweep"], 2.5)):
        for r in runs:
            if not r.stats:
                continue
            reqs = ([q for _, q in r.each] if r.each else [per_task(r.stats, r.n)["api"]])
            worst, d = max(reqs), med(r.notice) * c
            verdicts.append(f"{r.name} {scenario}: up to {fmt(worst, '', 1)} requests/task vs <= "
                            f"{limit:g} {'met' if worst <= limit else 'MISSED'}, median notice "
                            f"{d:.1f} s vs < 1 s {'met' if d < 1.0 else 'MISSED'}")
    say("- targets: " + "; ".join(verdicts) + ".")


# -- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller scenarios (under ~2 min)")
    ap.add_argument("--realistic-only", action="store_true",
                    help="only section 4: live-like task times, compressed (~4 min)")
    ap.add_argument("--compression", type=float, default=10.0,
                    help="section 4: 1 s here = this many s of service time (default 10)")
    ap.add_argument("--realistic-tasks", type=int, default=25,
                    help="section 4: tasks in the sweep (default 25)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if not args.compression > 1:
        ap.error("--compression must be > 1")
    plan = QUICK if args.quick else FULL
    rng = random.Random(args.seed)
    for name in OUR_ENV:
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    import jupyter_client
    from dashscope.version import __version__ as sdk_version

    import wan_nb

    started = time.monotonic()
    mode = " --realistic-only" if args.realistic_only else " --quick" if args.quick else ""
    say(f"# bench_jobs{mode}: wan_nb {wan_nb.__version__} vs "
        f"dashscope {sdk_version} (jupyter_client {jupyter_client.__version__}), "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if not args.realistic_only:
        say(f"model {MODEL}, size {SIZE}, {DURATION} s; emulator limits: {SUBMISSIONS_PER_S} "
            f"creates/s, {CONCURRENCY} running per key, 20 query+list/s per key.")
    say("The machine is shared with other work: these are the numbers of one run, not a "
        "distribution over runs.")
    with tempfile.TemporaryDirectory(prefix="bench_jobs_") as d:
        tmp = Path(d)
        timed: dict[str, float] = {}

        def step(label: str, fn: Callable[[], Any]) -> Any:
            note(label)
            t = time.monotonic()
            try:
                return fn()
            finally:
                timed[label] = time.monotonic() - t

        if args.realistic_only:
            report_realistic(step("realistic task times", lambda: realistic(
                args.compression, REAL_SINGLE, args.realistic_tasks, tmp)))
            return report_steps(timed, started)
        wks = [step("kernel with wan_nb jobs", lambda: kernel_wan_nb(plan, tmp, rng)),
               step("kernel with wan_nb jobs, no renders",
                    lambda: kernel_wan_nb(plan, tmp, rng, render=False))]
        sk = step("kernel with the SDK", lambda: kernel_sdk(plan, tmp, rng))
        blocking = step("kernel with jobs during a blocking cell", lambda: kernel_blocking(tmp))
        report_kernels(plan, wks, sk)
        report_blocking(blocking)

        n = plan.sweep_tasks
        budget = plan.sweep_budget
        sweep: list[Run] = []
        wan = step("wan_nb sweep", lambda: wan_nb_run(
            "wan_nb submit + JobList.wait", n, tmp, embedded=False, budget=budget))
        sweep.append(wan)
        if plan.embedded_row:
            sweep.append(step("wan_nb sweep (embedded)", lambda: wan_nb_run(
                "wan_nb, connect() embedded emulator", n, tmp, embedded=True, budget=budget)))
        sweep.append(step("SDK sequential sweep", lambda: sdk_sequential(n, tmp, budget)))
        aio, throttled = step("SDK gather sweep", lambda: sdk_gather(n, tmp, budget, True))
        sweep.append(aio)
        if throttled:
            aio2, _ = step("SDK gather sweep, no query limit",
                           lambda: sdk_gather(n, tmp, budget, False))
            sweep.append(aio2)
        report_sweep(plan, sweep, wan)

        single_wan = step("wan_nb single tasks", lambda: wan_nb_run(
            "wan_nb submit().result() one by one", plan.single_tasks, tmp, embedded=False,
            budget=120.0, sequential=True))
        single = [single_wan, sk["single"]]
        report_requests(single, sweep)
        if not args.quick:  # --quick stays the baseline it was
            report_realistic(step("realistic task times", lambda: realistic(
                args.compression, REAL_SINGLE, args.realistic_tasks, tmp)))
    return report_steps(timed, started)


def report_steps(timed: dict[str, float], started: float) -> int:
    say()
    say("time per step: " + ", ".join(f"{k} {v:.0f} s" for k, v in timed.items())
        + f"; total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
