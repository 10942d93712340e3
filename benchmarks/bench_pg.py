"""A DataFrame of 100,000 runs from the PostgreSQL ledger (issue 13's target: under 1 s), and
from the SQLite ledger for the same rows in the same run.

The rows (every column filled as a finished run fills it) are encoded once by the ledger's
own codec, then loaded with COPY into PostgreSQL and with ``executemany`` into SQLite.
``to_dataframe()`` is timed best of ``--repeat``.

    .venv/bin/python benchmarks/bench_pg.py                    # a throw-away local server
    .venv/bin/python benchmarks/bench_pg.py --url postgresql://me:pw@host/db   # an empty db

The throw-away server is Debian's (``apt-get install postgresql``), made as in the tests
(tests/pg_server.py). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wan_nb.store import Store  # noqa: E402
from wan_nb.store_pg import PgLedger  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def fields(i: int) -> dict[str, Any]:
    """One finished run, as the job layer records it."""
    created = T0 + timedelta(seconds=i)
    return {
        "run_id": created.strftime("%Y%m%d%H%M%S-") + f"{i:08x}", "created_at": created,
        "experiment": f"exp{i % 50}", "variant": f"seed={i}", "tags": ["bench", f"t{i % 7}"],
        "model": ("wan2.5-t2v-preview", "wan2.6-t2v", "wan2.2-t2v-plus")[i % 3],
        "prompt": f"a paper boat on a pond at dawn, take {i}",
        "actual_prompt": f"A small paper boat drifts on a calm pond at dawn. Take {i}.",
        "size": "832*480", "width": 832, "height": 480, "tier": "480P", "resolution": "480P",
        "ratio": "16:9", "duration": 5, "seed": i, "prompt_extend": True, "watermark": False,
        "audio_mode": "auto", "status": ("SUCCEEDED", "FAILED", "SUCCEEDED")[i % 3],
        "task_id": f"task-{i:08d}", "request_id": f"req-{i:08d}", "sent_at": created,
        "submit_time": created + timedelta(seconds=1),
        "scheduled_time": created + timedelta(seconds=5),
        "end_time": created + timedelta(seconds=65), "usage_video_count": 1,
        "usage_video_duration": 5.0, "usage_video_ratio": "832*480",
        "usage_json": {"video_count": 1, "video_duration": 5, "video_ratio": "832*480"},
        "cost_usd": 0.25, "video_url": f"https://oss.example.com/{i}.mp4",
        "video_url_expires_at": created + timedelta(hours=24),
        "video_path": f"videos/{i}.mp4", "video_sha256": f"{i:064x}", "video_bytes": 1234567,
        "video_fps": 24.0, "video_frames": 120, "video_duration": 5.0, "has_audio": True,
        "rating": i % 6 or None, "keep": bool(i % 2), "fingerprint": f"{i:064x}",
        "request_json": {"model": "wan2.5-t2v-preview", "input": {"prompt": f"take {i}"},
                         "parameters": {"size": "832*480", "duration": 5, "seed": i}},
        "backend": "emulator", "wan_nb_version": "0.1.0", "owner": None,
    }


def load_pg(ledger: PgLedger, rows: list[dict[str, Any]]) -> float:
    import psycopg

    names = list(rows[0])
    start = time.perf_counter()
    with psycopg.connect(ledger._sa_url.replace("postgresql+psycopg", "postgresql")) as con:
        with con.cursor() as cur, cur.copy(f"COPY runs ({', '.join(names)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row([row[n] for n in names])
    return time.perf_counter() - start


def best(call: Any, repeat: int) -> tuple[float, float, Any]:
    """Best wall time and best CPU time of this process (the server's work aside) of
    ``repeat`` calls, and the last result. On a loaded machine the CPU figure is the one
    that says what a call costs."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), out


def run(url: str, n: int, repeat: int, tmp: Path) -> dict[str, Any]:
    now = T0 + timedelta(days=5)
    with PgLedger(url, root=tmp / "pg", clock=lambda: now) as pg, \
            Store(tmp / "sqlite", clock=lambda: now) as lite:
        if len(pg):
            raise SystemExit(f"the database {pg.url} already has runs: give an empty one")
        encoded = [pg._prepare_insert(fields(i), now) for i in range(n)]
        for row in encoded:
            row.pop("_generated", None)
        copy_s = load_pg(pg, encoded)
        start = time.perf_counter()
        names = list(encoded[0])
        with lite._write() as con:  # the same encoded rows, in one transaction
            con.executemany(f"INSERT INTO runs ({', '.join(names)}) VALUES "
                            f"({', '.join('?' * len(names))})",
                            ([row[c] for c in names] for row in encoded))
        sqlite_insert_s = time.perf_counter() - start
        pg_s, pg_cpu, pg_df = best(pg.to_dataframe, repeat)
        lite_s, lite_cpu, lite_df = best(lite.to_dataframe, repeat)
        # where the time goes: reading the rows, then building the typed frame (shared)
        fetch_s, fetch_cpu, _ = best(pg._select, repeat)
        import pandas as pd

        pd.testing.assert_frame_equal(pg_df, lite_df)  # the same frame from both
        return {"runs": n, "columns": pg_df.shape[1], "pg_copy_s": round(copy_s, 2),
                "sqlite_executemany_s": round(sqlite_insert_s, 2),
                "pg_to_dataframe_s": round(pg_s, 3), "pg_to_dataframe_cpu_s": round(pg_cpu, 3),
                "pg_fetch_rows_s": round(fetch_s, 3), "pg_fetch_rows_cpu_s": round(fetch_cpu, 3),
                "sqlite_to_dataframe_s": round(lite_s, 3),
                "sqlite_to_dataframe_cpu_s": round(lite_cpu, 3),
                "load_average_1min": round(os.getloadavg()[0], 1), "cpus": os.cpu_count(),
                "target_s": 1.0, "pg_within_target": pg_s < 1.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="an empty PostgreSQL database (default: a throw-away server)")
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        if args.url:
            result = run(args.url, args.runs, args.repeat, Path(d))
        else:
            from tests.pg_server import running_server

            with running_server() as server:
                result = run(server.new_database(), args.runs, args.repeat, Path(d))
    print(json.dumps(result))
    return 0 if result["pg_within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
