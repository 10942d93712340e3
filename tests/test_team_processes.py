"""Issue 13's test: three processes, as three machines (each its own working folder, so its own
local video cache), share one PostgreSQL ledger, one S3 bucket (moto's server, as in
tests/test_videos_s3.py) and ONE emulator CLI, and run the same Experiment cell at the same
moment. Each variant is created once (counted on the emulator); one process is killed with -9
mid-sweep and the others take over its runs; every video in the bucket matches its sha256;
``to_dataframe()`` is the same from each.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import run_cli_emulator

pytest.importorskip("psycopg")
from tests.test_videos_s3 import BUCKET, _options, s3  # noqa: E402, F401 (the fixture)
from wan_nb.store_pg import PgLedger  # noqa: E402
from wan_nb.video_objects import ObjectVideos  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-team-test-0123456789"
VARIANTS = 6
FINAL = ("SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN", "EXPIRED", "REJECTED")

WORKER = r"""
import json, logging, os, sys, time
logging.basicConfig(filename="worker.log", level=logging.DEBUG,
                    format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
for noisy in ("botocore", "s3fs", "fsspec", "aiobotocore", "urllib3", "httpcore", "httpx",
              "asyncio", "sqlalchemy"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
import wan_nb
from wan_nb.experiment import Experiment
from wan_nb.store_pg import PgLedger

base_url, key, url, barrier, n, videos, options = sys.argv[1:8]
client = wan_nb.Client(key, base_url=base_url, store=url, videos=videos,
                       video_options=json.loads(options))
exp = Experiment("team", base={"model": "wan2.5-t2v-preview", "size": "624*624",
                               "duration": 5}, client=client)
exp.grid(prompt=[f"a paper boat at dawn, take {i}" for i in range(int(n))])
exp.requests()  # validated before the barrier, as a cell would before run()
print(json.dumps({"owner": client.manager.owner}), flush=True)
open(barrier + ".ready%d" % os.getpid(), "w").close()
while not os.path.exists(barrier):
    time.sleep(0.0005)
jobs = exp.run()
print(json.dumps({"run_ids": sorted(j.run_id for j in jobs)}), flush=True)
jobs.wait(timeout=240, progress=False)
deadline = time.monotonic() + 120  # until every run has its video (another kernel's too)
while time.monotonic() < deadline:
    rows = client.store.runs(experiment="team")
    if all(r["status"] in ("FAILED", "CANCELED") or r["video_path"] for r in rows):
        break
    time.sleep(0.2)
stats = dict(client.manager.stats)
client.close()  # no more writes (heartbeats) from this kernel
print(json.dumps({"settled": True, "taken_over": stats.get("taken_over", 0),
                  "statuses": sorted(j.status for j in jobs)}), flush=True)
while not os.path.exists(barrier + ".read"):
    time.sleep(0.01)
with PgLedger(url) as ledger:  # its videos under ./wan_runs, this machine's folder
    ledger.to_dataframe(experiment="team").to_pickle("frame.pkl")
print(json.dumps({"done": True}), flush=True)
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name in ("DASHSCOPE_API_KEY", "WAN_NB_STORE", "DASHSCOPE_HTTP_BASE_URL"):
        env.pop(name, None)
    return env


def _message(proc: subprocess.Popen[str], key: str, timeout: float = 240) -> dict:
    """The next JSON line of a worker that has ``key`` (a worker's log: its worker.log)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"worker {proc.pid} ended: {proc.wait()} "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        if line.startswith("{") and key in (msg := json.loads(line)):
            return msg
    raise AssertionError(f"no {key!r} from worker {proc.pid}")


def _tasks(base: str) -> list[dict]:
    r = httpx.get(f"{base}/api/v1/tasks", params={"page_size": 100},
                  headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    r.raise_for_status()
    return r.json()["data"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_three_machines_share_one_postgresql_ledger(pg_url, tmp_path, request):
    endpoint = request.getfixturevalue("s3")  # moto's S3 server (tests/test_videos_s3.py)
    barrier = tmp_path / "go"
    videos = f"s3://{BUCKET}/team-{tmp_path.name}"
    machines = [tmp_path / f"machine{i}" for i in range(3)]
    with run_cli_emulator(tmp_path / "emu", key=KEY, speed="4") as base:
        procs = []
        for folder in machines:
            folder.mkdir()
            procs.append(subprocess.Popen(
                [sys.executable, "-c", WORKER, base, KEY, pg_url, str(barrier), str(VARIANTS),
                 videos, json.dumps(_options(endpoint))],
                cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True))
        try:
            owners = {_message(p, "owner")["owner"]: p for p in procs}
            deadline = time.monotonic() + 120
            while len(list(tmp_path.glob("go.ready*"))) < 3:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            barrier.touch()  # the same cell, started at once in three places
            for p in procs:
                assert len(_message(p, "run_ids")["run_ids"]) == VARIANTS

            # kill -9 the kernel that owns the most runs whose tasks are still running
            ledger = PgLedger(pg_url, root=tmp_path / "observer")
            victim, held = None, []
            deadline = time.monotonic() + 120
            while victim is None and time.monotonic() < deadline:
                live = [r for r in ledger.runs(experiment="team")
                        if r["task_id"] and r["status"] in ("PENDING", "RUNNING")]
                by_owner = {o: [r["run_id"] for r in live if r["owner"] == o] for o in owners}
                best = max(by_owner, key=lambda o: len(by_owner[o]))
                if by_owner[best]:
                    victim, held = best, by_owner[best]
                else:
                    time.sleep(0.05)
            assert victim is not None, "no run was in flight to kill its owner over"
            owners[victim].send_signal(signal.SIGKILL)
            owners[victim].wait(30)
            survivors = [p for o, p in owners.items() if o != victim]
            settled = [_message(p, "settled") for p in survivors]

            barrier.with_name("go.read").touch()
            for p in survivors:
                _message(p, "done")
                p.wait(60)
                assert p.returncode == 0
            tasks = _tasks(base)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.communicate()

    # each variant created once: one task per variant on the one emulator, one run each
    assert len(tasks) == VARIANTS, [t.get("task_id") for t in tasks]
    runs = ledger.runs(experiment="team")
    assert len(runs) == VARIANTS and len({r["fingerprint"] for r in runs}) == VARIANTS
    assert {r["task_id"] for r in runs} == {t["task_id"] for t in tasks}
    assert all(r["status"] == "SUCCEEDED" for r in runs), [r["status"] for r in runs]
    for s in settled:
        assert s["statuses"] == ["SUCCEEDED"] * VARIANTS
    # the killed kernel's runs were taken over and finished by the others, each by one
    assert sum(s["taken_over"] for s in settled) >= len(held)
    took = [line.split("took over ")[1].split()[0] for f in machines
            if (f / "worker.log").exists()
            for line in (f / "worker.log").read_text().splitlines() if "took over " in line]
    assert set(held) <= set(took) and len(took) == len(set(took)), took
    assert all(r["owner"] is None for r in runs)  # released by the kernel that finished it
    # every video is in the bucket once, named by its sha256, and its bytes match it
    fs = ObjectVideos(f"s3://{BUCKET}", _options(endpoint)).fs
    fs.invalidate_cache()
    stored = sorted(fs.find(videos.removeprefix("s3://")))
    assert len(stored) == VARIANTS
    for run in runs:
        assert run["video_path"] == f"{videos}/{run['video_sha256']}.mp4"
        data = fs.cat_file(run["video_path"])
        assert hashlib.sha256(data).hexdigest() == run["video_sha256"]
        assert len(data) == run["video_bytes"]
    # the same frame from each surviving machine and from here
    here = ledger.to_dataframe(experiment="team")
    ledger.close()
    frames = [pd.read_pickle(f / "frame.pkl") for f in machines if (f / "frame.pkl").exists()]
    assert len(frames) == 2
    for frame in frames:
        pd.testing.assert_frame_equal(frame, here)
