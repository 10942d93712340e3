"""Benchmark of the run ledger: appends, the job layer's write pattern, DataFrame build, exports.

    python benchmarks/bench_store.py [--runs 10000] [--dir PATH]

Rows are fully populated (every column a finished run has), so the DataFrame figure is the
worst case. Target: 10,000 runs -> DataFrame in at most 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wan_nb.store import Store  # noqa: E402

TARGET_S = 0.5
T0 = datetime(2025, 10, 23, 3, 47, 23, tzinfo=timezone.utc)


def queued(i: int) -> dict:
    return {
        "experiment": f"exp{i % 10}", "variant": f"seed={i % 8}", "tags": ["bench", "cats"],
        "model": "wan2.5-t2v-preview", "prompt": f"a cat on a skateboard, take {i}",
        "negative_prompt": "blurry", "size": "832*480", "width": 832, "height": 480,
        "tier": "480P", "duration": 10, "seed": i, "prompt_extend": True, "watermark": False,
        "audio_mode": "auto", "fingerprint": f"{i:064x}", "cost_usd": 0.5,
        "request_json": {"model": "wan2.5-t2v-preview", "input": {"prompt": f"cat {i}"},
                         "parameters": {"size": "832*480", "duration": 10, "seed": i}},
        "backend": "emulator", "owner": "bench", "owner_heartbeat": T0,
    }


def finished(i: int) -> dict:
    return {
        "status": "SUCCEEDED", "task_id": f"task-{i}", "request_id": f"req-{i}",
        "actual_prompt": f"A fluffy cat rides a skateboard, take {i}.", "sent_at": T0,
        "submit_time": T0, "scheduled_time": T0 + timedelta(seconds=10),
        "end_time": T0 + timedelta(seconds=300), "usage_video_count": 1,
        "usage_video_duration": 10.0, "usage_video_ratio": "832*480",
        "usage_json": {"video_count": 1, "video_duration": 10, "video_ratio": "832*480"},
        "video_url": f"https://example.com/{i}.mp4", "video_url_expires_at": T0,
        "video_path": f"videos/{i}.mp4", "video_sha256": f"{i:064x}", "video_bytes": 4_000_000,
        "video_fps": 30.0, "video_frames": 300, "video_duration": 10.0, "has_audio": True,
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(root: Path, n: int) -> list[tuple[str, int, float]]:
    results = []
    with Store(root / "single") as store:
        t = timed(lambda: [store.insert_run(**queued(i), **finished(i)) for i in range(n)])
        results.append(("insert_run, 1 transaction per run (NORMAL)", n, t))
    with Store(root / "batch") as store:
        t = timed(lambda: store.insert_runs([{**queued(i), **finished(i)} for i in range(n)]))
        results.append(("insert_runs, one batch transaction", n, t))
    life = max(n // 5, 1)
    for sync in ("NORMAL", "FULL"):
        with Store(root / f"life-{sync}", synchronous=sync) as store:
            def lifecycle(store: Store = store) -> None:
                for i in range(life):
                    rid = store.insert_run(**queued(i))
                    store.transition(rid, expect="QUEUED", status="SUBMITTING", sent_at=T0)
                    store.transition(rid, expect="SUBMITTING", status="PENDING",
                                     task_id=f"task-{i}")
                    store.transition(rid, expect="PENDING", status="RUNNING")
                    store.update_run(rid, **finished(i))
            t = timed(lifecycle)
            results.append((f"job lifecycle, 5 writes per run ({sync})", life, t))
    with Store(root / "batch") as store:
        times = [timed(store.to_dataframe) for _ in range(5)]
        results.append(("to_dataframe, median of 5", n, statistics.median(times)))
        df = store.to_dataframe()
        assert len(df) == n
        for suffix in (".parquet", ".csv"):
            t = timed(lambda s=suffix: store.export(root / f"runs{s}"))
            results.append((f"export {suffix}", n, t))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the stores")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = bench(Path(tmp), args.runs)
    print(f"{'operation':48} {'runs':>7} {'seconds':>9} {'runs/s':>10}")
    for name, n, seconds in results:
        print(f"{name:48} {n:>7} {seconds:>9.3f} {n / seconds:>10.0f}")
    df_s = next(s for name, _, s in results if name.startswith("to_dataframe"))
    verdict = "met" if df_s <= TARGET_S else "NOT met"
    print(f"\nDataFrame of {args.runs} runs in {df_s:.3f} s: target {TARGET_S} s {verdict}")


if __name__ == "__main__":
    main()
