"""Two (or more) kernels run the same Experiment cell at the same moment: how many tasks are paid?

The real situation is several processes sharing one ledger and talking to ONE service, so this
starts one emulator CLI (``python -m wan_nb.emulator``) on a loopback port and N worker
processes (``python bench_dedupe_race.py --worker ...``) that each build the same Experiment,
wait on a file barrier, then call ``run()`` at the same moment. Afterwards the emulator's list
endpoint says how many tasks were created; it should equal the number of variants.

    .venv/bin/python benchmarks/bench_dedupe_race.py --reps 10 --procs 4 --variants 6

Prints one line per repetition and a summary; exits 1 if any repetition paid twice.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = {"model": "wan2.5-t2v-preview", "size": "624*624", "duration": 5}


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DASHSCOPE_API_KEY", None)
    env.pop("WAN_NB_STORE", None)
    return env


def start_emulator(data_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "wan_nb.emulator", "--port", "0",
                             "--data-dir", str(data_dir), "--key", "sk-race-test",
                             "--no-query-limit"], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.match(r"wan_nb emulator listening on (http://127\.0\.0\.1:\d+)", line.strip())
    if not m:
        proc.kill()
        raise RuntimeError(f"the emulator did not start: {line!r}")
    return proc, m[1], "sk-race-test"


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def listed_tasks(base: str, key: str) -> int:
    import httpx

    r = httpx.get(f"{base}/api/v1/tasks", params={"page_size": 100},
                  headers={"Authorization": f"Bearer {key}"}, timeout=30)
    r.raise_for_status()
    return int(r.json()["total"])


def worker(args: argparse.Namespace) -> int:
    """One 'kernel': the same cell as every other worker, started at the same moment."""
    import wan_nb
    from wan_nb.experiment import Experiment

    client = wan_nb.Client(args.key, base_url=args.base_url, store=args.store)
    try:
        exp = Experiment(args.experiment, base=BASE, client=client)
        # one prompt per variant: creates of one prompt are serialised (issue 8, item 3),
        # which would only make each race slower, not the race itself different
        exp.grid(prompt=[f"a paper boat at dawn, take {i}" for i in range(args.variants)])
        exp.requests()  # validate before the barrier, as a cell would before run()
        _ = client.manager  # connect to the ledger before the barrier too
        Path(args.barrier + f".ready{os.getpid()}").touch()
        while not os.path.exists(args.barrier):
            time.sleep(0.0005)
        jobs = exp.run()
        # Wait until every run of the experiment has been sent (or ended): the creates are
        # what is counted. Owners of other runs are other processes, so read the ledger.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = client.store.runs(experiment=args.experiment)
            if all(r["task_id"] or r["status"] in ("FAILED", "REJECTED", "CANCELED", "UNKNOWN",
                                                   "EXPIRED", "SUCCEEDED") for r in rows):
                break
            time.sleep(0.1)
        print(json.dumps({"pid": os.getpid(), "jobs": [j.run_id for j in jobs]}))
    finally:
        client.close()
    return 0


def race(procs: int, variants: int, tmp: Path, base: str, key: str, rep: int) -> dict:
    store = tmp / f"store{rep}"
    barrier = str(tmp / f"go{rep}")
    experiment = f"race-{rep}"
    before = listed_tasks(base, key)
    workers = [subprocess.Popen(
        [sys.executable, __file__, "--worker", "--base-url", base, "--key", key, "--store",
         str(store), "--barrier", barrier, "--experiment", experiment,
         "--variants", str(variants)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for _ in range(procs)]
    deadline = time.monotonic() + 120
    while len(list(tmp.glob(f"go{rep}.ready*"))) < procs:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            break
        time.sleep(0.01)
    Path(barrier).touch()
    results = []
    for w in workers:
        out, err = w.communicate(timeout=300)
        if w.returncode != 0:
            raise RuntimeError(f"worker failed ({w.returncode}):\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    import sqlite3

    con = sqlite3.connect(store / "ledger.sqlite3")
    rows = con.execute("SELECT count(*), count(DISTINCT fingerprint) FROM runs").fetchone()
    con.close()
    return {"rep": rep, "tasks": listed_tasks(base, key) - before, "ledger_rows": rows[0],
            "variants": rows[1],
            "distinct_run_ids_seen": len({r for res in results for r in res["jobs"]})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--variants", type=int, default=6)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--base-url", "--key", "--store", "--barrier", "--experiment"):
        p.add_argument(name, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    results = run_races(args.reps, args.procs, args.variants)
    bad = [r for r in results if r["tasks"] != args.variants]
    print(f"{len(results)} races of {args.procs} processes x {args.variants} variants: "
          f"tasks created per race {[r['tasks'] for r in results]}; "
          f"{len(bad)} paid more (or less) than {args.variants}")
    return 1 if bad else 0


def run_races(reps: int, procs: int, variants: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        emu, base, key = start_emulator(tmp / "emu")
        try:
            results = []
            for rep in range(reps):
                res = race(procs, variants, tmp, base, key, rep)
                print(json.dumps(res), flush=True)
                results.append(res)
            return results
        finally:
            stop(emu)


if __name__ == "__main__":
    sys.exit(main())
