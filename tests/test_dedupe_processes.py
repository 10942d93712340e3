"""Kernels racing on the same cell pay once: de-duplication is atomic across real processes.

Issue 8, item 4: two kernels running the same Experiment at the same moment paid 7-8 tasks for
6 variants, because looking the fingerprint up and inserting the run were two steps.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wan_nb.store import ValidationError

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import os, random, sys, time
from wan_nb.ledgers import open_ledger
root, barrier, keys = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_ledger(root)  # a folder (SQLite) or a postgresql:// URL
order = list(range(keys))
random.shuffle(order)
open(barrier + ".ready%d" % os.getpid(), "w").close()
while not os.path.exists(barrier):
    time.sleep(0.0005)
created = 0
for k in order:
    rid, new = store.insert_run_once(reuse_unless=("FAILED",), experiment="race",
                                     fingerprint="fp%d" % k, backend="emulator",
                                     model="wan2.5-t2v-preview", prompt="p", seed=k)
    created += new
print(created)
"""


def _env() -> dict[str, str]:
    return {**os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _race(root: Path | str, barrier: Path, procs: int, keys: int) -> list[int]:
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(barrier),
                                 str(keys)], env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(procs)]
    deadline = time.monotonic() + 120
    while len(list(barrier.parent.glob(barrier.name + ".ready*"))) < procs:
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
            [w.communicate() for w in workers if w.poll() is not None]
        time.sleep(0.01)
    barrier.touch()
    created = []
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        created.append(int(out))
    return created


@pytest.mark.parametrize("rep", range(3))
def test_processes_racing_on_the_same_keys_insert_each_once(tmp_path, rep, make_ledger):
    root = make_ledger.location  # a SQLite folder or a PostgreSQL database
    # the ledger exists before the race, as with a kernel already connected
    store = make_ledger()
    # a failed run does not count: its variant is created again, once
    failed = store.insert_run(experiment="race", fingerprint="fp0", backend="emulator",
                              status="FAILED")
    created = _race(root, tmp_path / "go", procs=4, keys=25)
    assert sum(created) == 25, created
    rows = store.runs(experiment="race")
    live = [r for r in rows if r["run_id"] != failed]
    assert sorted(r["fingerprint"] for r in live) == sorted(f"fp{k}" for k in range(25))
    store.close()


def test_insert_run_once_reuses_by_experiment_fingerprint_and_backend(make_ledger):
    with make_ledger() as store:
        key = {"experiment": "e", "fingerprint": "f", "backend": "emulator"}
        first, new = store.insert_run_once(**key, seed=1)
        assert new
        assert store.insert_run_once(**key) == (first, False)
        # another backend, another experiment, no experiment: separate runs
        assert store.insert_run_once(**{**key, "backend": "live:intl"})[1]
        assert store.insert_run_once(**{**key, "experiment": "other"})[1]
        assert store.insert_run_once(**{**key, "experiment": None})[1]
        assert store.insert_run_once(**{**key, "experiment": None})[1] is False
        # a retryable status does not count; the newest reusable run is returned
        store.update_run(first, status="FAILED")
        second, new = store.insert_run_once(**key, reuse_unless=("FAILED", "CANCELED"))
        assert new and second != first
        assert store.insert_run_once(**key, reuse_unless=("FAILED",)) == (second, False)
        assert store.insert_run_once(**key) == (second, False)
        with pytest.raises(ValidationError, match="reuse_unless"):
            store.insert_run_once(**key, reuse_unless=("BROKEN",))
        with pytest.raises(ValidationError, match="fingerprint"):
            store.insert_run_once(experiment="e", backend="emulator")
        assert len(store) == 5


def _bench():
    spec = importlib.util.spec_from_file_location("bench_dedupe_race",
                                                  ROOT / "benchmarks" / "bench_dedupe_race.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kernels_running_the_same_experiment_cell_at_once_pay_once():
    """3 processes, one emulator CLI, one ledger, the same 4-variant cell started together.
    (benchmarks/bench_dedupe_race.py repeats this more often and reports the counts.)"""
    results = _bench().run_races(reps=2, procs=3, variants=4)
    assert [r["tasks"] for r in results] == [4, 4], results
    assert [r["ledger_rows"] for r in results] == [4, 4], results
