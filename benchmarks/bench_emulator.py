"""How many task queries (GET /api/v1/tasks/{id}) the emulator answers per second.

    python benchmarks/bench_emulator.py [--requests 2000]

Over a loopback uvicorn server (the embedded emulator) with httpx, and in-process through
httpx.ASGITransport, at concurrency 1 and 8. The 20 requests/s per key limit is lifted
(``query_rate=None``) and rendering is off, so this measures the HTTP path and the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
