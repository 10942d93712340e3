"""Fault sweep: does every run of a seed sweep get its own task and its own video, paid once?

    python benchmarks/fault_sweep.py                  # 1 run of 30 jobs (2 prompts x 15 seeds)
    python benchmarks/fault_sweep.py --runs 4         # fault seeds 1..4, a fresh emulator each
    python benchmarks/fault_sweep.py --kill --runs 3  # kill -9 mid-sweep, then resume
    python benchmarks/fault_sweep.py --jobs 12 --prompts 2 --json out.json

Each run starts ``python -m wan_nb.emulator`` on a free 127.0.0.1 port with ``--fault-rate 0.1
--drop-rate 0.3 --create-fault-phase random --seed S`` (S = 1..N) and a fresh data directory,
then runs the sweep in a child process (``wan_nb.Client(..., store=tmp)`` +
``Experiment.grid(prompt=..., seed=...).run()`` + ``.wait(timeout)``), so that a hang in
``close()`` or a ``kill -9`` never takes the harness down. With ``--kill`` the first child is
killed with SIGKILL at a random moment while its creates are going out (the moment is drawn
from S), and a second child re-runs the same cell on the same store (``Experiment.resume()`` +
``run()`` + ``wait()``).

The truth comes from the emulator itself, never from wan_nb: once every emulator task is final,
the emulator is stopped and its task database (``<data_dir>/tasks.sqlite3``: every task created,
with the parameters the service received) and its result files (``<data_dir>/files/<task>.mp4``)
are read. Compared with the run ledger (the store's ``ledger.sqlite3``, read with plain SQLite,
and the video files it points to), a run counts as

- **wrong**: its task_id is a task created with other parameters (prompt, seed, size, duration,
  model) than the run's request, or is unknown to the emulator, or its video file's sha256 is
  not that of its task's file (another variant's video, or a damaged one);
- **double payment**: a variant with more than one billable emulator task (PENDING, RUNNING or
  SUCCEEDED; cancelled and failed tasks are not billed), plus any billable task that matches no
  variant at all;
- **missing**: a variant for which the emulator never produced a SUCCEEDED task.

Extra columns (they make the exit code non-zero too, but are not item 3's bug): ``undelivered``
(variants without a SUCCEEDED ledger run holding the right, verified video: a timeout, a hang
or a wrong attribution), ``amb`` (create calls the emulator answered with a fault *after*
making the task: the ambiguous creates that exercise reconciliation) and notes (wait timeout,
close() hang, crash, the ledger at the moment of the kill).

Exit status: 0 when every count of every run is 0, 1 otherwise, 2 when the harness could not
run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]

KEY = "sk-fault-sweep"
MODEL, SIZE, DURATION = "wan2.5-t2v-preview", "832*480", 5
EXPERIMENT = "fault-sweep"
PROMPTS = (
    "a paper boat drifting on a pond at dawn, soft mist",
    "a red kite over sand dunes at noon, long shadows",
    "a lighthouse in a storm at night, waves breaking",
    "a tram climbing a hill in autumn rain",
)
FAULT_ARGS = ("--fault-rate", "0.1", "--drop-rate", "0.3", "--create-fault-phase", "random")
BILLABLE = ("PENDING", "RUNNING", "SUCCEEDED")
COMPARED = ("model", "prompt", "negative_prompt", "seed", "size", "duration")
OUR_ENV = ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "WAN_NB_STORE", "WAN_NB_EMULATOR_DIR")


def clean_env(code: Path) -> dict[str, str]:
    """The children's environment: ``code``'s wan_nb first (it must hold ``wan_nb/``)."""
    env = {k: v for k, v in os.environ.items() if k not in OUR_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sweep_axes(jobs: int, prompts: int) -> tuple[list[str], list[int]]:
    """``prompts`` prompts x ``jobs // prompts`` seeds (seeds 1, 2, ...)."""
    if not 1 <= prompts <= len(PROMPTS):
        raise SystemExit(f"--prompts must be from 1 to {len(PROMPTS)}")
    if jobs < prompts or jobs % prompts:
        raise SystemExit("--jobs must be a multiple of --prompts")
    return list(PROMPTS[:prompts]), list(range(1, jobs // prompts + 1))


# -- the emulator, a process of its own ----------------------------------------------------------
class EmulatorProcess:
    """``python -m wan_nb.emulator`` on a free loopback port with the fault flags."""

    def __init__(self, data_dir: Path, fault_seed: int, speed: str, code: Path,
                 start_timeout: float = 60):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        cmd = [sys.executable, "-m", "wan_nb.emulator", "--host", "127.0.0.1", "--port", "0",
               "--key", KEY, "--speed", speed, "--data-dir", str(data_dir), *FAULT_ARGS,
               "--seed", str(fault_seed)]
        self.cmd = cmd
        self._log = open(data_dir.parent / f"{data_dir.name}.log", "w")
        # cwd is on sys.path first under -m: it decides which wan_nb runs
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     cwd=str(code), env=clean_env(code))
        self.pid = self.proc.pid
        banner = _readline(self.proc, start_timeout)
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+) ", banner or "")
        if not m:
            self.stop()
            raise RuntimeError(f"emulator did not start within {start_timeout} s: {banner!r}; "
                               f"see {self._log.name}")
        self.base_url = m.group(1)
        self._http = httpx.Client(base_url=self.base_url, trust_env=False, timeout=30,
                                  headers={"Authorization": f"Bearer {KEY}"})

    def stats(self) -> dict[str, Any]:
        r = self._http.get("/_emulator/stats")  # admin endpoint: no faults injected
        r.raise_for_status()
        return r.json()

    def settle(self, timeout: float) -> dict[str, Any]:
        """Wait until no task is PENDING or RUNNING (renders included); the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            live = s["tasks"].get("PENDING", 0) + s["tasks"].get("RUNNING", 0)
            if not live or time.monotonic() > deadline:
                s["unsettled"] = live
                return s
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM by PID (the CLI exits 0), SIGKILL after 15 s."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(15)
        if hasattr(self, "_http"):
            self._http.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _readline(proc: subprocess.Popen[str], timeout: float) -> str | None:
    """One stdout line of ``proc`` within ``timeout`` seconds (None: none came)."""
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()),  # type: ignore
                         daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else None


def emulator_truth(data_dir: Path) -> list[dict[str, Any]]:
    """Every task the emulator created: id, status, params, sha256 of its file (or None).

    Read from its own database after it stopped (``wan_nb/emulator/persist.py``: one JSON row
    per task with the parameters it received)."""
    db = data_dir / "tasks.sqlite3"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [json.loads(b) for (b,) in con.execute("SELECT body FROM tasks ORDER BY submit")]
    finally:
        con.close()
    out = []
    for r in rows:
        f = data_dir / "files" / f"{r['task_id']}.mp4"
        out.append({"task_id": r["task_id"], "status": r["status"], "params": r["params"],
                    "orig_prompt": r.get("orig_prompt"), "submit": r["submit"],
                    "sha256": sha256_file(f) if f.is_file() else None})
    return out


LEDGER = "ledger.sqlite3"  # wan_nb.store.DB_NAME
LEDGER_COLUMNS = ("run_id", "experiment", "variant", "status", "task_id", "prompt", "seed",
                  "request_json", "video_path", "video_sha256", "created_at")


def ledger_rows(store_dir: Path) -> list[dict[str, Any]]:
    """The experiment's rows of the run ledger, read with plain SQLite (read-only), so that the
    harness does not depend on the wan_nb under test, nor on a half-edited working tree."""
    db = store_dir / LEDGER
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        cur = con.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM runs WHERE experiment = ? "
                          "ORDER BY created_at, rowid", (EXPERIMENT,))
        return [dict(zip(LEDGER_COLUMNS, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def video_file(store_dir: Path, run: dict[str, Any]) -> Path | None:
    rel = run.get("video_path")
    if not rel:
        return None
    if rel.startswith("file://"):
        rel = rel[len("file://"):]
    path = Path(rel)
    return path if path.is_absolute() else store_dir / path


# -- the sweep, in a child process ---------------------------------------------------------------
def child_main(a: argparse.Namespace) -> int:
    """One notebook session: build the cell's experiment, run (or resume) it, wait, close."""
    import wan_nb
    from wan_nb.experiment import Experiment

    def say(event: str, **kw: Any) -> None:
        print(json.dumps({"event": event, "t": time.time(), **kw}), flush=True)

    say("started", wan_nb=str(Path(wan_nb.__file__).resolve().parent))
    client = wan_nb.Client(KEY, base_url=a.base_url, store=a.store)
    exp = Experiment(EXPERIMENT, base={"model": MODEL, "size": SIZE, "duration": DURATION},
                     client=client)
    exp.grid(prompt=json.loads(a.prompts), seed=json.loads(a.seeds))
    if a.resume:
        exp.resume()
    jobs = exp.run()
    say("submitted", jobs=len(jobs))
    timed_out = False
    try:
        exp.wait(timeout=a.wait_timeout, progress=False)
    except wan_nb.JobTimeout:
        timed_out = True
    statuses = Counter(j.status for j in exp.jobs)
    say("waited", timed_out=timed_out, statuses=dict(statuses))
    client.close()
    say("closed")
    return 0


@dataclass
class Child:
    """A child process running :func:`child_main`, its events read on a thread."""

    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, args: list[str], log: Path, code: Path) -> Child:
        cmd = [sys.executable, str(Path(__file__).resolve()), "_child", *args]
        errf = open(log, "a")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True,
                                cwd=str(code), env=clean_env(code))
        errf.close()
        child = cls(proc)
        threading.Thread(target=child._read, daemon=True).start()
        return child

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"event": "eof"})
            self._cond.notify_all()

    def wait_event(self, name: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if ev["event"] == name:
                        return ev
                if any(ev["event"] == "eof" for ev in self.events):
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(15)

    def finish(self, timeout: float) -> str:
        """Wait for the child to exit; kill it after ``timeout``. Returns a note."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return "killed: did not exit"
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return "" if rc == 0 else f"exit {rc}"


# -- comparing the ledger with the truth ---------------------------------------------------------
@dataclass
class Counts:
    wrong: int = 0
    double_paid: int = 0
    missing: int = 0
    undelivered: int = 0
    tasks: int = 0
    billable: int = 0
    runs: int = 0
    succeeded_runs: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def bad(self) -> bool:
        return bool(self.wrong or self.double_paid or self.missing or self.undelivered)


def _key(params: dict[str, Any]) -> tuple[str, int]:
    return (str(params.get("prompt")), int(params.get("seed") or 0))


def _request_of(run: dict[str, Any]) -> dict[str, Any]:
    req = run.get("request_json")
    if isinstance(req, str):
        req = json.loads(req)
    if isinstance(req, dict):
        return req
    return {k: run.get(k) for k in COMPARED}


def compare(variants: list[tuple[str, int]], tasks: list[dict[str, Any]],
            runs: list[dict[str, Any]], video_of: Any) -> Counts:
    """The counts for one run (see the module docstring)."""
    c = Counts(tasks=len(tasks), runs=len(runs))
    by_id = {t["task_id"]: t for t in tasks}
    by_variant: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for t in tasks:
        by_variant[_key(t["params"])].append(t)
    wanted = set(variants)

    # (b) double payments: billable tasks beyond one per variant, and any matching no variant
    for key, ts in by_variant.items():
        billable = [t for t in ts if t["status"] in BILLABLE]
        c.billable += len(billable)
        extra = len(billable) - 1 if key in wanted else len(billable)
        if extra > 0:
            c.double_paid += extra
            c.details.append(f"paid {len(billable)}x for prompt#{_pidx(key[0])} seed {key[1]}: "
                             + ", ".join(f"{t['task_id'][:8]} {t['status']}" for t in billable))

    # (c) variants the service never generated
    never = []
    for key in variants:
        if not any(t["status"] == "SUCCEEDED" for t in by_variant.get(key, [])):
            c.missing += 1
            never.append(f"prompt#{_pidx(key[0])} seed {key[1]} "
                         f"{[t['status'] for t in by_variant.get(key, [])]}")
    if never:
        c.details.append(f"never generated ({len(never)}): " + ", ".join(never))

    # (a) wrong attributions, and what each variant's ledger finally delivers
    delivered: set[tuple[str, int]] = set()
    holders: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        req = _request_of(run)
        key = _key(req)
        tid = run.get("task_id")
        if run.get("status") == "SUCCEEDED":
            c.succeeded_runs += 1
        if not tid:
            continue
        holders[tid].append(run["run_id"])
        label = f"run {run['run_id']} (prompt#{_pidx(key[0])} seed {key[1]}, {run.get('status')})"
        task = by_id.get(tid)
        if task is None:
            c.wrong += 1
            c.details.append(f"WRONG {label}: task {tid[:8]} unknown to the emulator")
            continue
        diff = {k: (req.get(k), task["params"].get(k)) for k in COMPARED
                if req.get(k) != task["params"].get(k)}
        path = video_of(run)
        if diff:
            c.wrong += 1
            shown = ""
            if path is not None and path.is_file():
                shown = ("; its video is that task's file" if sha256_file(path) == task["sha256"]
                         else "; its video is not even that task's file")
            c.details.append(f"WRONG {label}: holds task {tid[:8]} made for "
                             f"prompt#{_pidx(task['params'].get('prompt'))} seed "
                             f"{task['params'].get('seed')} ({', '.join(diff)} differ{shown})")
            continue
        if path is None or not path.is_file():
            continue  # no video (yet): nothing shown, nothing mixed up
        actual = sha256_file(path)
        if task["sha256"] is None or actual != task["sha256"]:
            owner = next((t for t in tasks if t["sha256"] == actual), None)
            whose = (f"the video of prompt#{_pidx(owner['params']['prompt'])} seed "
                     f"{owner['params']['seed']}" if owner else "matching no emulator file")
            c.wrong += 1
            c.details.append(f"WRONG {label}: its video is {whose}")
            continue
        if run.get("video_sha256") and run["video_sha256"] != actual:
            c.details.append(f"note {label}: ledger sha256 differs from its file")
        if run.get("status") == "SUCCEEDED":
            delivered.add(key)
    for tid, rids in holders.items():
        if len(rids) > 1:
            c.details.append(f"note: task {tid[:8]} is held by {len(rids)} runs {rids}")
    c.undelivered = len([k for k in variants if k not in delivered])
    return c


def _pidx(prompt: Any) -> str:
    return str(PROMPTS.index(prompt)) if prompt in PROMPTS else "?"


# -- one run -------------------------------------------------------------------------------------
@dataclass
class RunResult:
    fault_seed: int
    kill: bool
    counts: Counts
    seconds: float
    notes: list[str]
    emulator_stats: dict[str, Any]

    @property
    def ambiguous_creates(self) -> int:
        """Create calls whose fault came after the task was made (the ambiguous case)."""
        faults = self.emulator_stats.get("faults") or {}
        return sum(n for k, n in faults.items() if k.startswith("create:") and
                   k.endswith(":after"))

    def row(self) -> dict[str, Any]:
        c = self.counts
        return {"seed": self.fault_seed, "mode": "kill-9" if self.kill else "faults",
                "wrong": c.wrong, "double_paid": c.double_paid, "missing": c.missing,
                "undelivered": c.undelivered, "tasks": c.tasks, "runs": c.runs,
                "ok_runs": c.succeeded_runs, "amb": self.ambiguous_creates,
                "s": round(self.seconds, 1),
                "notes": "; ".join(self.notes)}


def one_run(fault_seed: int, a: argparse.Namespace, work: Path) -> RunResult:
    t0 = time.monotonic()
    prompts, seeds = sweep_axes(a.jobs, a.prompts)
    variants = [(p, s) for p in prompts for s in seeds]
    run_dir = work / f"run{fault_seed}{'-kill' if a.kill else ''}"
    store_dir, emu_dir = run_dir / "store", run_dir / "emulator"
    run_dir.mkdir(parents=True)
    log = run_dir / "children.log"
    notes: list[str] = []
    emu = EmulatorProcess(emu_dir, fault_seed, a.speed, a.code)
    children: list[Child] = []
    try:
        child_args = ["--base-url", emu.base_url, "--store", str(store_dir),
                      "--prompts", json.dumps(prompts), "--seeds", json.dumps(seeds),
                      "--wait-timeout", str(a.wait_timeout)]
        first = Child.start(child_args, log, a.code)
        children.append(first)
        started = first.wait_event("started", a.start_timeout)
        if started and Path(started["wan_nb"]) != (a.code / "wan_nb").resolve():
            raise RuntimeError(f"the child imported {started['wan_nb']}, not {a.code}/wan_nb")
        if first.wait_event("submitted", a.start_timeout) is None:
            first.finish(5)
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError("the sweep's child process never submitted the experiment: "
                               + " | ".join(tail))
        if a.kill:
            rng = random.Random(f"kill:{fault_seed}")
            delay = rng.uniform(a.kill_after[0], a.kill_after[1])
            time.sleep(delay)
            first.kill9()
            first.finish(15)
            at_kill = _ledger_statuses(store_dir)
            notes.append(f"kill -9 after {delay:.1f} s ({_fmt_counter(at_kill)})")
            second = Child.start([*child_args, "--resume"], log, a.code)
            children.append(second)
            notes += _await_child(second, a, "resumed child")
        else:
            notes += _await_child(first, a, "child")
        stats = emu.settle(a.settle_timeout)
        if stats.get("unsettled"):
            notes.append(f"{stats['unsettled']} emulator tasks still live after "
                         f"{a.settle_timeout} s")
    finally:
        for child in children:  # only on an error can one still be alive
            child.kill9()
        emu.stop()
    tasks = emulator_truth(emu_dir)
    runs = ledger_rows(store_dir)
    counts = compare(variants, tasks, runs, lambda run: video_file(store_dir, run))
    stats.pop("now", None)
    return RunResult(fault_seed, a.kill, counts, time.monotonic() - t0, notes,
                     {k: stats.get(k) for k in ("creates", "faults", "faults_total", "tasks")})


def _await_child(child: Child, a: argparse.Namespace, who: str) -> list[str]:
    notes: list[str] = []
    ev = child.wait_event("waited", a.wait_timeout + a.start_timeout + 30)
    if ev is None:
        notes.append(f"{who}: wait() never returned (or it crashed; see children.log)")
    elif ev["timed_out"]:
        notes.append(f"{who}: wait({a.wait_timeout}) timed out: {ev['statuses']}")
    if ev is not None and child.wait_event("closed", a.close_timeout) is None:
        notes.append(f"{who}: close() did not return within {a.close_timeout} s")
    end = child.finish(5 if ev is None else a.close_timeout)
    if end:
        notes.append(f"{who}: {end}")
    return notes


def _ledger_statuses(store_dir: Path) -> Counter[str]:
    try:
        return Counter(r["status"] for r in ledger_rows(store_dir))
    except sqlite3.Error as e:
        return Counter({f"unreadable: {e}": 1})


def _fmt_counter(c: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "no rows"


# -- reporting -----------------------------------------------------------------------------------
COLS = ("seed", "mode", "wrong", "double_paid", "missing", "undelivered", "tasks", "runs",
        "ok_runs", "amb", "s")


def print_table(results: list[RunResult], verbose: bool) -> None:
    rows = [r.row() for r in results]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLS}
    print("  ".join(c.rjust(widths[c]) for c in COLS) + "  notes")
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) for c in COLS) + "  " + r["notes"])
    tot = {c: sum(r[c] for r in rows) for c in ("wrong", "double_paid", "missing",
                                                "undelivered", "tasks", "runs", "ok_runs")}
    bad = sum(1 for r in results if r.counts.bad)
    print(f"totals over {len(rows)} runs: wrong {tot['wrong']}, double_paid "
          f"{tot['double_paid']}, missing {tot['missing']}, undelivered {tot['undelivered']} "
          f"({tot['tasks']} tasks for {tot['runs']} runs); runs with any count > 0: "
          f"{bad} of {len(rows)}")
    if verbose:
        for res in results:
            if res.counts.details:
                print(f"-- fault seed {res.fault_seed} ({'kill-9' if res.kill else 'faults'}):")
                for d in res.counts.details:
                    print("   " + d)


def describe_code(a: argparse.Namespace, work: Path) -> str:
    """Set ``a.code`` (extracting ``--code-rev``) and say which code is tested."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()

    if a.code_rev:
        sha = git("rev-parse", "--verify", a.code_rev + "^{commit}")
        a.code = work / "code"
        a.code.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "wan_nb"],
                                 capture_output=True, check=True, timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", str(a.code)], input=archive, check=True, timeout=120)
        return f"{a.code_rev} = {sha[:10]} (git archive)"
    a.code = a.code.resolve()
    if not (a.code / "wan_nb" / "__init__.py").is_file():
        raise SystemExit(f"--code {a.code} holds no wan_nb/")
    if a.code == ROOT:
        try:
            dirty = git("status", "--porcelain", "--", "wan_nb")
            return (f"working tree at {git('rev-parse', '--short', 'HEAD')}"
                    f"{' + uncommitted changes in wan_nb/' if dirty else ''}")
        except (OSError, subprocess.SubprocessError):
            pass
    return str(a.code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        p = argparse.ArgumentParser(prog="fault_sweep.py _child")
        p.add_argument("--base-url", required=True)
        p.add_argument("--store", required=True)
        p.add_argument("--prompts", required=True)
        p.add_argument("--seeds", required=True)
        p.add_argument("--wait-timeout", type=float, required=True)
        p.add_argument("--resume", action="store_true")
        return child_main(p.parse_args(argv[1:]))

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1, help="repetitions, fault seeds 1..N "
                   "(default 1)")
    p.add_argument("--first-seed", type=int, default=1, help="first fault seed (default 1)")
    p.add_argument("--jobs", type=int, default=30, help="jobs per sweep (default 30)")
    p.add_argument("--prompts", type=int, default=2, help="prompts; the rest are seeds "
                   "(default 2)")
    p.add_argument("--kill", action="store_true", help="kill -9 the sweep mid-way, resume it "
                   "in a second process")
    p.add_argument("--kill-after", type=lambda s: tuple(float(x) for x in s.split(",")),
                   default=(0.5, 5.0), metavar="MIN,MAX",
                   help="kill after a random delay in this range, seconds after the "
                        "experiment was submitted (default 0.5,5)")
    p.add_argument("--speed", default="fast", help="emulator --speed (default fast: a 480p "
                   "5 s task takes ~2 s)")
    p.add_argument("--wait-timeout", type=float, default=240.0,
                   help="Experiment.wait(timeout) in each child (default 240)")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--settle-timeout", type=float, default=60.0,
                   help="how long the emulator's tasks may take to be final afterwards")
    p.add_argument("--close-timeout", type=float, default=30.0)
    p.add_argument("--code", type=Path, default=ROOT, help="a folder holding the wan_nb to test "
                   "(client and emulator; default: this checkout's working tree)")
    p.add_argument("--code-rev", metavar="REV", help="test the wan_nb of this git revision "
                   "of this checkout instead (git archive into the work directory), e.g. HEAD: "
                   "figures that other people's uncommitted edits cannot change")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", type=Path, help="write every run's counts and details here")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-run details")
    a = p.parse_args(argv)
    if len(a.kill_after) != 2 or not 0 <= a.kill_after[0] <= a.kill_after[1]:
        p.error("--kill-after is MIN,MAX seconds")
    sweep_axes(a.jobs, a.prompts)

    # SIGTERM (e.g. a test's timeout) unwinds through the finally blocks: children killed,
    # emulator stopped, work directory removed; nothing is left running
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="wan_nb_fault_sweep_"))
    results: list[RunResult] = []
    try:
        code_label = describe_code(a, work)
        for seed in range(a.first_seed, a.first_seed + a.runs):
            try:
                r = one_run(seed, a, work)
            except Exception as e:  # noqa: BLE001 - the harness reports and stops
                print(f"fault seed {seed}: the harness failed: {type(e).__name__}: {e} "
                      f"(work dir {work})", file=sys.stderr)
                a.keep = True
                return 2
            results.append(r)
            print(f"fault seed {seed}: " + ", ".join(f"{k} {v}" for k, v in r.row().items()
                                                     if k not in ("seed", "notes")),
                  file=sys.stderr, flush=True)
        print(f"fault sweep: {a.runs} run(s) x {a.jobs} jobs ({a.prompts} prompts x "
              f"{a.jobs // a.prompts} seeds), {MODEL} {SIZE} {DURATION}s, emulator "
              f"{' '.join(FAULT_ARGS)} --seed S --speed {a.speed}"
              f"{', kill -9 mid-sweep then resume' if a.kill else ''}; code: {code_label}")
        print_table(results, verbose=not a.quiet)
        if a.json:
            a.json.write_text(json.dumps([{**r.row(), "details": r.counts.details,
                                           "counts": {k: v for k, v in asdict(r.counts).items()
                                                      if k != "details"},
                                           "emulator": r.emulator_stats}
                                          for r in results], indent=1))
        return 1 if any(r.counts.bad for r in results) else 0
    finally:
        if a.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
