"""Four kernels, one account: do kernels sharing a ledger keep within the account's limits,
and how close do they get to the account's ideal schedule? (issue 13)

One emulator CLI (``python -m wan_nb.emulator``) on a loopback port is the account's service;
``--kernels`` processes, each its own ``wan_nb.connect()`` session on one ledger folder, wait
on a file barrier and then submit ``--jobs`` jobs each of ``wan2.5-t2v-preview`` (5 creates
per second and 5 tasks at once for the account) and wait for all of them (videos downloaded
and probed). Measured, per scenario:

- creates refused (429) and queries throttled, from ``/_emulator/stats`` (target 0);
- the most tasks the service held at once (created, not ended), from its task records;
- the combined wall time: barrier -> the last kernel has every video;
- the account's ideal schedule for the same tasks: creates at exactly the account's rate, at
  most 5 tasks at once from create to end (the account's limit held, as the kernels hold
  it), each task taking the dispatch + service time the emulator gave it, no notice delay;
  and the service's own bound (tasks queued at the service past the limit, dispatch
  overlapped: what no scheduler that holds the limit can reach).

Scenarios: ``shared`` (the default policy) and ``alone`` (``PollPolicy(share_account=False)``:
each kernel paces itself, as before issue 13). ``--only shared`` skips the second.

    .venv/bin/python benchmarks/bench_account.py                 # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_account.py --kernels 2 --jobs 10 --only shared

Prints a table; exits 1 if the shared scenario had a create refused or overran the limit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import run_cli_emulator  # noqa: E402
from tests.test_account import (  # noqa: E402
    emulator_stats,
    emulator_tasks,
    most_at_once,
    run_kernels,
)
from wan_nb import catalog  # noqa: E402

MODEL = "wan2.5-t2v-preview"
KEY = "sk-bench-account-0123456789"


def ideal_held(tasks: list[dict[str, Any]], rate: float, slots: int) -> float:
    """Makespan with creates at most ``rate`` per second and at most ``slots`` tasks from
    create to end, each taking its dispatch + service time (in create order)."""
    free = [0.0] * slots
    last_create = -1.0 / rate
    end = 0.0
    for t in sorted(tasks, key=lambda t: t["submit"]):
        k = min(range(slots), key=free.__getitem__)
        create = max(free[k], last_create + 1.0 / rate)
        last_create = create
        free[k] = create + t["dispatch"] + (t["ended"] - t["scheduled"])
        end = max(end, free[k])
    return end


def ideal_queued(tasks: list[dict[str, Any]], rate: float, slots: int) -> float:
    """Makespan with every create at exactly ``rate`` from t=0 and the service queueing past
    ``slots`` (FIFO), dispatch overlapped with earlier tasks' runs."""
    free = [0.0] * slots
    end = 0.0
    for i, t in enumerate(sorted(tasks, key=lambda t: t["submit"])):
        k = min(range(slots), key=free.__getitem__)
        free[k] = max(free[k], i / rate + t["dispatch"]) + (t["ended"] - t["scheduled"])
        end = max(end, free[k])
    return end


def handoffs(tasks: list[dict[str, Any]], slots: int) -> list[float]:
    """For every create made while the account was full before it (all but the first
    ``slots``): seconds from the task end that freed its place to the create."""
    ends = sorted(t["ended"] for t in tasks)
    gaps = []
    for t in sorted(tasks, key=lambda t: t["submit"])[slots:]:
        before = [e for e in ends if e <= t["submit"]]
        if before:
            gaps.append(t["submit"] - before[-1])
    return sorted(gaps)


def scenario(name: str, *, kernels: int, jobs: int, speed: str, share: bool,
             work: Path) -> dict[str, Any]:
    spec = catalog.get_model(MODEL)
    emu_dir = work / f"emu-{name}"
    with run_cli_emulator(emu_dir, key=KEY, speed=speed) as url:
        t0 = time.time()
        results = run_kernels(url, KEY, work / f"ledger-{name}", work / f"go-{name}",
                              kernels=kernels, jobs=jobs, model=MODEL, share=share,
                              timeout=1800)
        stats = emulator_stats(url, KEY)
    tasks = [t for t in emulator_tasks(emu_dir) if t.get("ended") is not None]
    start = min(r["start"] for r in results)
    wall = max(r["end"] for r in results) - start
    held = ideal_held(tasks, spec.submissions_per_s, spec.concurrency)
    queued = ideal_queued(tasks, spec.submissions_per_s, spec.concurrency)
    done = sum(s == "SUCCEEDED" for r in results for s in r["statuses"])
    gaps = handoffs(tasks, spec.concurrency) or [float("nan")]
    return {"scenario": name, "jobs": kernels * jobs, "done": done,
            "accepted": stats["creates"]["accepted"], "refused": stats["creates"]["refused"],
            "throttled": stats["throttled"], "at_once": most_at_once(tasks),
            "wall": wall, "ideal": held, "service_bound": queued,
            "ratio": wall / held, "ratio_service": wall / queued,
            "held": sum(r["stats"].get("creates_held", 0) for r in results),
            "handoff_p50": gaps[len(gaps) // 2], "handoff_p90": gaps[int(len(gaps) * 0.9)],
            "queries": stats["queries"], "lists": stats["lists"],
            "setup": start - t0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernels", type=int, default=4)
    p.add_argument("--jobs", type=int, default=25, help="jobs per kernel")
    p.add_argument("--speed", default="2", help="emulator speed (a multiplier of 'fast')")
    p.add_argument("--only", choices=("shared", "alone"))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-account-") as tmp:
        for name, share in (("shared", True), ("alone", False)):
            if args.only not in (None, name):
                continue
            row = scenario(name, kernels=args.kernels, jobs=args.jobs, speed=args.speed,
                           share=share, work=Path(tmp))
            rows.append(row)
            print(f"{name}: {row}", flush=True)
    limit = catalog.get_model(MODEL).concurrency
    print(f"\n{args.kernels} kernels x {args.jobs} jobs of {MODEL} (account: "
          f"{catalog.get_model(MODEL).submissions_per_s}/s, {limit} at once), "
          f"emulator speed {args.speed}")
    print(f"{'scenario':<8} {'done':>5} {'refused':>7} {'throttled':>9} {'at once':>7} "
          f"{'wall s':>7} {'ideal s':>7} {'x ideal':>7} {'service s':>9} {'x service':>9} "
          f"{'handoff p50/p90 s':>17}")
    for r in rows:
        print(f"{r['scenario']:<8} {r['done']:>5} {r['refused']:>7} {r['throttled']:>9} "
              f"{r['at_once']:>7} {r['wall']:>7.1f} {r['ideal']:>7.1f} {r['ratio']:>7.3f} "
              f"{r['service_bound']:>9.1f} {r['ratio_service']:>9.3f} "
              f"{r['handoff_p50']:>8.2f}/{r['handoff_p90']:<8.2f}")
    shared = next((r for r in rows if r["scenario"] == "shared"), None)
    if shared is not None and (shared["refused"] or shared["at_once"] > limit
                               or shared["done"] != shared["jobs"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
