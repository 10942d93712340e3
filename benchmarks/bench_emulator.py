"""How many task queries (GET /api/v1/tasks/{id}) the emulator answers per second, and how
fast its command line stops.

    python benchmarks/bench_emulator.py [--requests 2000] [--stops 5]

Over a loopback uvicorn server (the embedded emulator) with httpx, and in-process through
httpx.ASGITransport, at concurrency 1 and 8. The 20 requests/s per key limit is lifted
(``query_rate=None``) and rendering is off, so this measures the HTTP path and the engine.

Then ``python -m wan_nb.emulator`` is started ``--stops`` times per signal, answers one request,
and gets SIGINT or SIGTERM: the time from the signal to the process's exit (status 0) is
reported against the 5 s that tests/emulator/test_cli.py used to assert.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wan_nb import catalog  # noqa: E402
from wan_nb.emulator import EmbeddedEmulator, create_app  # noqa: E402

KEY = "sk-bench"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CREATE_HEADERS = {**HEADERS, "X-DashScope-Async": "enable"}
BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "benchmark fox"},
        "parameters": {"size": "832*480", "duration": 5, "seed": 1}}


async def measure(client: httpx.AsyncClient, n: int, concurrency: int) -> tuple[float, list[float]]:
    r = await client.post(catalog.CREATE_PATH, json=BODY, headers=CREATE_HEADERS)
    r.raise_for_status()
    path = f"{catalog.TASKS_PATH}/{r.json()['output']['task_id']}"
    for _ in range(20):  # warm up
        (await client.get(path, headers=HEADERS)).raise_for_status()
    latencies: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t = time.perf_counter()
            resp = await client.get(path, headers=HEADERS)
            latencies.append(time.perf_counter() - t)
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}: {resp.text}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


def row(label: str, concurrency: int, elapsed: float, lat: list[float]) -> str:
    lat = sorted(lat)
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    return (f"| {label:<28} | {concurrency:>4} | {len(lat):>6} | {len(lat) / elapsed:>9.0f} "
            f"| {p50:>7.2f} | {p99:>7.2f} |")


async def run_loopback(base: str, n: int, concurrency: int) -> str:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, trust_env=False) as c:
        elapsed, lat = await measure(c, n, concurrency)
    return row("loopback uvicorn + httpx", concurrency, elapsed, lat)


async def run_asgi(n: int, concurrency: int) -> str:
    app = create_app(api_keys=(KEY,), render=False, speed=0.0, query_rate=None)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://emulator") as c:
            elapsed, lat = await measure(c, n, concurrency)
    finally:
        await app.state.emulator.aclose()
    return row("in-process ASGITransport", concurrency, elapsed, lat)


STOP_TARGET_S = 5.0


def time_cli_stop(sig: int, data_dir: str) -> float:
    """Start the CLI, make one request, send ``sig``: seconds from the signal to exit 0."""
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "wan_nb.emulator", "--port", "0", "--data-dir",
                             data_dir, "--speed", "0", "--key", KEY], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        m = re.search(r"listening on (http://\S+) ", proc.stdout.readline())
        if not m:
            raise RuntimeError("the emulator CLI did not start")
        httpx.get(f"{m[1]}/api/v1/tasks", headers=HEADERS, timeout=30,
                  trust_env=False).raise_for_status()
        t = time.perf_counter()
        proc.send_signal(sig)
        rc = proc.wait(timeout=120)
        elapsed = time.perf_counter() - t
        if rc != 0:
            raise RuntimeError(f"the emulator CLI exited {rc} after {signal.Signals(sig).name}")
        return elapsed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def report_cli_stops(runs: int) -> None:
    print(f"\n`python -m wan_nb.emulator`: signal -> exit 0, {runs} runs per signal\n")
    print("| signal  | median s | max s | within 5 s |")
    print("|---------|----------|-------|------------|")
    with tempfile.TemporaryDirectory() as d:
        for sig in (signal.SIGINT, signal.SIGTERM):
            times = [time_cli_stop(sig, d) for _ in range(runs)]
            within = sum(t <= STOP_TARGET_S for t in times)
            print(f"| {signal.Signals(sig).name:<7} | {statistics.median(times):8.2f} | "
                  f"{max(times):5.2f} | {f'{within} of {runs}':>10} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--stops", type=int, default=5, help="CLI starts and stops per signal")
    args = ap.parse_args(argv)
    n = args.requests
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {n} queries per row\n")
    print("| path                         | conc | reqs   | req/s     | p50 ms  | p99 ms  |")
    print("|------------------------------|------|--------|-----------|---------|---------|")
    runs: list[Callable[[], Awaitable[str]]] = []
    with tempfile.TemporaryDirectory() as d, \
            EmbeddedEmulator(data_dir=d, api_key=KEY, render=False, speed=0.0,
                             query_rate=None) as emu:
        for conc in (1, 8):
            runs.append(lambda conc=conc: run_loopback(emu.base_url, n, conc))
        for conc in (1, 8):
            runs.append(lambda conc=conc: run_asgi(n, conc))
        for run in runs:
            print(asyncio.run(run()), flush=True)
    report_cli_stops(args.stops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
