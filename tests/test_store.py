"""The run ledger: round trips, dtypes, validation, crash and multi-process safety, migrations,
exports. Real SQLite files in tmp_path, real subprocesses, no mocks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from wan_nb.errors import ValidationError, WanError
from wan_nb.store import (
    FINAL_STATUSES,
    SCHEMA_VERSION,
    STATUSES,
    RunNotFound,
    SchemaVersionError,
    Store,
    StoreError,
    read_export,
)

REPO = Path(__file__).resolve().parents[1]
UTC = timezone.utc
BEIJING = timezone(timedelta(hours=8))
T0 = datetime(2025, 10, 23, 11, 47, 23, 879000, tzinfo=BEIJING)

# Every writable column with a non-empty value (times in UTC+8 to check the conversion).
FULL = {
    "experiment": "cats", "variant": "seed=7", "tags": ["a", "b c", "猫"],
    "model": "wan2.5-t2v-preview", "prompt": "一只猫 on a skateboard, NA",
    "negative_prompt": "blurry", "actual_prompt": "A fluffy cat rides a skateboard.\nSlow pan.",
    "size": "832*480", "width": 832, "height": 480, "tier": "480P", "resolution": "480P",
    "ratio": "16:9", "duration": 10,
    "seed": 2147483647, "prompt_extend": True, "watermark": False, "audio_mode": "custom",
    "audio_url": "https://example.com/voice.mp3", "shot_type": "single",
    "fingerprint": "ab" * 32,
    "request_json": {"model": "wan2.5-t2v-preview", "input": {"prompt": "一只猫"},
                     "parameters": {"seed": 2147483647}},
    "task_id": "0385dc79-5ff8-4d82-bcb6-xxxxxx", "request_id": "4909100c-7b5a",
    "status": "SUCCEEDED", "error_code": "InternalError", "error_message": "retried once",
    "sent_at": T0 - timedelta(seconds=1), "submit_time": T0,
    "scheduled_time": T0 + timedelta(seconds=10, microseconds=472000),
    "end_time": T0 + timedelta(seconds=311, microseconds=444000),
    "usage_video_count": 1, "usage_video_duration": 10.0, "usage_video_ratio": "832*480",
    "usage_duration": 10.0, "usage_size": "1280*720", "usage_sr": 720, "usage_ratio": "16:9",
    "usage_width": 1280, "usage_height": 720,
    "usage_input_video_duration": 0.0, "usage_output_video_duration": 10.0,
    "usage_json": {"video_count": 1, "video_duration": 10, "video_ratio": "832*480"},
    "cost_usd": 0.5, "video_url": "https://oss.example.com/v.mp4?Expires=1761277655",
    "video_url_expires_at": T0 + timedelta(hours=24), "video_path": "videos/x.mp4",
    "video_sha256": "cd" * 32, "video_bytes": 2**40, "video_fps": 30.0, "video_frames": 300,
    "video_duration": 10.033, "has_audio": True, "download_error": "first try timed out",
    "backend": "live:singapore", "wan_nb_version": "9.9.9", "rating": 4,
    "keep": True, "notes": "good light",
    "owner": "kernel-1", "owner_heartbeat": T0 + timedelta(seconds=5),
}
JSON_FIELDS = ("request_json", "usage_json")

# Written out by hand on purpose: the contract other code and users rely on.
EXPECTED_DTYPES = {
    "experiment": "string", "variant": "string", "tags": "object", "prompt": "string",
    "negative_prompt": "string", "actual_prompt": "string", "prompt_rewritten": "boolean",
    "model": "category", "size": "string", "width": "Int64", "height": "Int64",
    "tier": "category", "resolution": "category", "ratio": "category", "duration": "Int64",
    "seed": "Int64", "prompt_extend": "boolean",
    "watermark": "boolean", "audio_mode": "category", "audio_url": "string",
    "shot_type": "string", "status": "category", "error_code": "string",
    "error_message": "string", "task_id": "string", "request_id": "string",
    "created_at": "datetime64[us, UTC]", "sent_at": "datetime64[us, UTC]",
    "submit_time": "datetime64[us, UTC]", "scheduled_time": "datetime64[us, UTC]",
    "end_time": "datetime64[us, UTC]", "queue_s": "Float64", "run_s": "Float64",
    "usage_video_count": "Int64", "usage_video_duration": "Float64",
    "usage_video_ratio": "string", "usage_duration": "Float64", "usage_size": "string",
    "usage_sr": "Int64", "usage_ratio": "string", "usage_width": "Int64",
    "usage_height": "Int64", "usage_input_video_duration": "Float64",
    "usage_output_video_duration": "Float64", "usage_json": "string", "cost_usd": "Float64",
    "video_url": "string", "video_url_expires_at": "datetime64[us, UTC]",
    "video_path": "string", "video_sha256": "string", "video_bytes": "Int64",
    "video_mtime_ns": "Int64", "video_fps": "Float64", "video_frames": "Int64",
    "video_duration": "Float64",
    "has_audio": "boolean", "download_error": "string", "rating": "Int64",
    "keep": "boolean", "notes": "string",
    "fingerprint": "string", "request_json": "string", "backend": "category",
    "wan_nb_version": "string", "owner": "string", "owner_heartbeat": "datetime64[us, UTC]",
    "updated_at": "datetime64[us, UTC]",
}


class Clock:
    """A settable clock for the store (claims, ages)."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(make_ledger):
    """The ledger contract tests run on SQLite and PostgreSQL (conftest.make_ledger)."""
    return make_ledger()


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- configuration and layout ----------------------------------------------------------------

def test_root_argument_beats_env_beats_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WAN_NB_STORE", raising=False)
    with Store() as default:
        assert default.root == tmp_path / "wan_runs"
        assert default.db_path == tmp_path / "wan_runs" / "ledger.sqlite3"
        assert default.videos_dir.is_dir()
    monkeypatch.setenv("WAN_NB_STORE", str(tmp_path / "from_env"))
    with Store() as from_env:
        assert from_env.root == tmp_path / "from_env"
    with Store(tmp_path / "arg") as from_arg:
        assert from_arg.root == tmp_path / "arg"
        assert from_arg.schema_version == SCHEMA_VERSION
    con = sqlite3.connect(tmp_path / "arg" / "ledger.sqlite3")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_run_ids_are_time_sortable_and_unique(store):
    clock = Clock(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    store._clock = clock
    first = store.insert_run(prompt="a")
    clock.now += timedelta(seconds=1)
    batch = store.insert_runs([{"prompt": str(i)} for i in range(2000)])
    assert first.startswith("20250102030405-") and len(first) == 23
    assert int(first[15:], 16) >= 0
    assert len(set(batch)) == 2000 and all(b > first for b in batch)
    assert [r["run_id"] for r in store.runs()][0] == first


# -- round trip and dtypes -------------------------------------------------------------------

def expected_value(name, value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if name in JSON_FIELDS else value


def test_every_column_round_trips(store):
    first = {k: v for i, (k, v) in enumerate(FULL.items()) if i % 2 == 0}
    rest = {k: v for k, v in FULL.items() if k not in first}
    created = datetime(2025, 10, 23, 3, 0, 0, 123456, tzinfo=UTC)
    rid = store.insert_run(created_at=created, **first)
    store.update_run(rid, **rest)

    run = store.get_run(rid)
    assert list(run) == ["run_id", *EXPECTED_DTYPES]
    for name, value in FULL.items():
        assert run[name] == expected_value(name, value), name
        if isinstance(value, datetime):
            assert run[name].tzinfo == UTC
    assert run["created_at"] == created
    assert run["updated_at"] >= created
    assert run["prompt_rewritten"] is True
    assert run["queue_s"] == pytest.approx(10.472)
    assert run["run_s"] == pytest.approx(300.972)

    df = store.to_dataframe()
    assert df.index.tolist() == [rid] and df.index.name == "run_id"
    row = df.loc[rid]
    for name, value in FULL.items():
        assert row[name] == expected_value(name, value), name
    assert row["tags"] == ["a", "b c", "猫"] and isinstance(row["tags"], list)
    assert row["created_at"] == pd.Timestamp(created)
    assert row["queue_s"] == pytest.approx(10.472)


def test_dataframe_dtypes_for_every_column(store):
    empty = store.to_dataframe()
    store.insert_run(**FULL)
    store.insert_run(prompt="bare")  # every optional column missing
    full = store.to_dataframe()
    for df in (empty, full):
        assert {c: str(t) for c, t in df.dtypes.items()} == EXPECTED_DTYPES
        assert list(df.columns) == list(EXPECTED_DTYPES)
        assert str(df.index.dtype) == "string" and df.index.name == "run_id"
        assert list(df["status"].cat.categories) == list(STATUSES)
        assert list(df["audio_mode"].cat.categories) == ["auto", "custom", "silent"]
    assert len(empty) == 0
    bare = full[full["prompt"] == "bare"].iloc[0]
    assert bare["tags"] == [] and bare["status"] == "QUEUED"
    assert bare["prompt_rewritten"] is pd.NA  # no rewrite disclosed (yet): not "unchanged"
    assert pd.isna(bare["seed"]) and pd.isna(bare["sent_at"]) and pd.isna(bare["queue_s"])


def test_prompt_rewritten_is_derived(store):
    """Known where the service disclosed its rewrite, False where none was asked for, missing
    where it was not disclosed (wan2.6, the 2026 models) or not yet known: never False then."""
    same = store.insert_run(prompt="a cat", actual_prompt="a cat")
    other = store.insert_run(prompt="a cat", actual_prompt="a fluffy cat")
    none = store.insert_run(prompt="a cat")
    hidden = store.insert_run(prompt="a cat", prompt_extend=True, status="SUCCEEDED",
                              model="wan2.6-t2v")
    off = store.insert_run(prompt="a cat", prompt_extend=False, status="SUCCEEDED")
    # HappyHorse has no rewrite switch (recorded prompt_extend False): whether it rewrites
    # is not disclosed
    no_switch = store.insert_run(prompt="a cat", prompt_extend=False, status="SUCCEEDED",
                                 model="happyhorse-1.0-t2v")
    runs = (same, other, none, hidden, off, no_switch)
    df = store.to_dataframe()
    assert df.loc[list(runs), "prompt_rewritten"].tolist() == [
        False, True, pd.NA, pd.NA, False, pd.NA]
    assert [store.get_run(r)["prompt_rewritten"] for r in runs] == [
        False, True, None, None, False, None]


def test_empty_text_is_stored_as_missing(store):
    rid = store.insert_run(prompt="x", negative_prompt="", notes="")
    run = store.get_run(rid)
    assert run["negative_prompt"] is None and run["notes"] is None


def test_video_path_is_kept_relative_to_the_root(store, tmp_path):
    rid = store.insert_run(prompt="x", video_path=store.new_video_path("r1"))
    assert store.get_run(rid)["video_path"] == "videos/r1.mp4"
    assert store.video_file(rid) == store.root / "videos" / "r1.mp4"
    with pytest.raises(ValidationError, match="outside the store root"):
        store.update_run(rid, video_path=tmp_path / "elsewhere.mp4")


# -- validation: nothing is written ------------------------------------------------------------

NAIVE = datetime(2025, 1, 1, 12, 0)

BAD_FIELDS = [
    ({"colour": "red"}, "colour", "unknown field 'colour'"),
    ({"status": "DONE"}, "status", "unknown status 'DONE'"),
    ({"sent_at": NAIVE}, "sent_at", "naive datetime"),
    ({"sent_at": "2025-01-01T00:00:00Z"}, "sent_at", "timezone-aware datetime"),
    ({"seed": "12"}, "seed", "expected an integer"),
    ({"seed": True}, "seed", "expected an integer"),
    ({"cost_usd": "0.5"}, "cost_usd", "expected a number"),
    ({"prompt_extend": 1}, "prompt_extend", "expected True or False"),
    ({"tags": "a,b"}, "tags", "list of strings"),
    ({"tags": ["a", 1]}, "tags", "every tag must be a string"),
    ({"audio_mode": "loud"}, "audio_mode", "not one of auto, custom, silent"),
    ({"request_json": "{not json"}, "request_json", "request_json"),
    ({"queue_s": 3.0}, "queue_s", "is derived"),
    ({"video_path": "../x.mp4"}, "video_path", "outside the store root"),
    ({"prompt": 42}, "prompt", "expected a string"),
]


@pytest.mark.parametrize(("fields", "field", "message"), BAD_FIELDS)
def test_bad_insert_raises_and_writes_nothing(store, fields, field, message):
    with pytest.raises(ValidationError, match=message) as info:
        store.insert_run(**{"prompt": "x", **fields})
    assert info.value.fields == [field]
    assert len(store) == 0


@pytest.mark.parametrize(("fields", "field", "message"), [
    *BAD_FIELDS, ({"run_id": "other"}, "run_id", "unknown field"),
    ({"created_at": T0}, "created_at", "unknown field")])
def test_bad_update_raises_and_changes_nothing(store, fields, field, message):
    rid = store.insert_run(prompt="x", seed=1)
    before = store.get_run(rid)
    with pytest.raises(ValidationError, match=message):
        store.update_run(rid, **{"seed": 2, **fields})
    with pytest.raises(ValidationError, match=message):
        store.transition(rid, expect="QUEUED", **{"seed": 2, **fields})
    assert store.get_run(rid) == before


def test_unknown_field_message_lists_allowed_fields_and_all_problems(store):
    with pytest.raises(ValidationError) as info:
        store.insert_run(prompt="x", colour="red", seed="7")
    assert info.value.fields == ["colour", "seed"]
    assert "allowed fields: run_id, experiment, variant, tags" in str(info.value)
    with pytest.raises(ValidationError) as batch:
        store.insert_runs([{"prompt": "ok"}, {"prompt": "bad", "seed": 1.5}])
    assert batch.value.fields == ["[1].seed"]
    assert len(store) == 0


def test_unknown_run_raises_key_error_like(store):
    for call in (lambda: store.update_run("nope", notes="x"), lambda: store.get_run("nope"),
                 lambda: store.transition("nope", expect="QUEUED", status="SUBMITTING"),
                 lambda: store.claim("nope", "me")):
        with pytest.raises(RunNotFound, match="no run 'nope'") as info:
            call()
        assert isinstance(info.value, KeyError) and isinstance(info.value, WanError)


def test_task_id_is_unique(store):
    store.insert_run(prompt="a", task_id="t-1")
    store.insert_run(prompt="b")
    store.insert_run(prompt="c")  # several runs without a task are fine
    with pytest.raises(ValidationError, match="task_id 't-1' is already recorded"):
        store.insert_run(prompt="d", task_id="t-1")
    assert len(store) == 3


# -- state machine helpers ---------------------------------------------------------------------

def test_transition_is_compare_and_set(store):
    rid = store.insert_run(prompt="x")
    assert not store.transition(rid, expect="PENDING", status="RUNNING")
    assert store.transition(rid, expect=("QUEUED", "SUBMITTING"), status="SUBMITTING",
                            sent_at=T0)
    assert not store.transition(rid, expect="QUEUED", status="SUBMITTING")
    run = store.get_run(rid)
    assert run["status"] == "SUBMITTING" and run["sent_at"] == T0
    with pytest.raises(ValidationError, match="expect must name statuses"):
        store.transition(rid, expect="WAITING", status="PENDING")


def test_claim_heartbeat_and_release(make_ledger):
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    with make_ledger(clock=clock) as store:
        rid = store.insert_run(prompt="x")
        assert store.claim(rid, "A")
        assert not store.claim(rid, "B")
        assert store.claim(rid, "A")  # re-entrant
        clock.now += timedelta(seconds=20)
        assert store.heartbeat("A") == 1
        clock.now += timedelta(seconds=20)
        assert not store.claim(rid, "B", stale_after=30)  # A beat 20 s ago
        clock.now += timedelta(seconds=11)
        assert store.claim(rid, "B", stale_after=30)  # A silent for 31 s
        assert store.get_run(rid)["owner"] == "B"
        assert store.get_run(rid)["owner_heartbeat"] == clock.now
        assert not store.release(rid, "A")
        assert store.release(rid, "B")
        assert store.get_run(rid)["owner"] is None
        assert store.claim(rid, "A")


def test_a_dead_owners_run_is_taken_once(make_ledger):
    """Two kernels that both saw A die: the first takes the run, the second does not take it
    from the first (its heartbeat is fresh, and its owner is no longer A)."""
    with make_ledger() as store:
        rid = store.insert_run(prompt="x")
        assert store.claim(rid, "A")
        assert not store.claim(rid, "B")
        assert store.claim(rid, "B", dead_owner="A")  # A's heartbeat is fresh: taken anyway
        assert not store.claim(rid, "C", dead_owner="A")  # B holds it now
        assert store.get_run(rid)["owner"] == "B"
        assert store.claim(rid, "B", dead_owner="A")  # re-entrant


def test_unfinished_lists_what_a_poller_must_resume(make_ledger):
    clock = Clock(datetime(2025, 1, 2, tzinfo=UTC))
    with make_ledger(clock=clock) as store:
        old = store.insert_run(prompt="old", created_at=clock.now - timedelta(hours=25))
        want = {store.insert_run(prompt=s, status=s) for s in STATUSES
                if s not in FINAL_STATUSES}
        for status in FINAL_STATUSES:
            store.insert_run(prompt=status, status=status, video_path="videos/v.mp4")
        want.add(store.insert_run(prompt="no video yet", status="SUCCEEDED"))
        store.insert_run(prompt="gave up", status="SUCCEEDED", download_error="404")
        got = store.unfinished()
        assert {r["run_id"] for r in got} == want
        assert old in {r["run_id"] for r in store.unfinished(max_age=timedelta(days=2))}


def test_reconciliation_reads_answer_for_their_key_and_window(make_ledger):
    clock = Clock(datetime(2025, 1, 2, tzinfo=UTC))
    now, key = clock.now, {"backend": "emu", "model": "wan2.5-t2v-preview", "prompt": "a kite"}
    with make_ledger(clock=clock) as store:
        me = store.insert_run(**key, status="SUBMITTING", sent_at=now)
        counted = [store.insert_run(**key, status="SUBMITTING", sent_at=now - timedelta(minutes=2)),
                   store.insert_run(**key, status="FAILED", error_code="AmbiguousCreate",
                                    sent_at=now + timedelta(minutes=1))]
        for other in ({"prompt": "a boat"}, {"model": "wan2.2-t2v-plus"}, {"backend": "live"},
                      {"sent_at": now - timedelta(minutes=4)}, {"task_id": "t-has-one"},
                      {"status": "FAILED", "error_code": "InvalidParameter"}):
            store.insert_run(**{**key, "status": "SUBMITTING", "sent_at": now, **other})
        assert store.ambiguous_siblings(me, window=timedelta(minutes=3)) == 2
        assert store.ambiguous_siblings(me, window=timedelta(minutes=5)) == 3
        assert store.ambiguous_siblings(store.insert_run(**key), window=timedelta(hours=1)) == 0
        # SUBMITTING runs of emu's model besides `me`, whatever the prompt: the first counted
        # one, the boat, the one sent 4 min earlier and the one with a task; created more than
        # max_age ago they do not count
        assert store.unresolved_creates("emu", key["model"], exclude=me) == 4
        assert store.unresolved_creates("emu", key["model"]) == 5
        assert store.unresolved_creates("live", key["model"]) == 1
        store.insert_run(**key, task_id="t-old", created_at=now - timedelta(hours=30))
        assert store.known_task_ids("emu", since=now - timedelta(hours=24)) == {"t-has-one"}
        assert store.known_task_ids("emu", since=now - timedelta(hours=31)) == {"t-has-one",
                                                                                 "t-old"}
        assert [r["run_id"] for r in store.runs(run_ids=[*counted, "gone"])] == counted
        clock.now += timedelta(hours=25)
        assert store.unresolved_creates("emu", key["model"]) == 0
        assert store.unresolved_creates("emu", key["model"], max_age=timedelta(hours=26)) == 5


def test_runs_filters(store):
    a = store.insert_run(experiment="e1", prompt="a", fingerprint="f1", task_id="t1")
    b = store.insert_run(experiment="e1", prompt="b", status="FAILED")
    c = store.insert_run(experiment="e2", prompt="c", fingerprint="f1")
    ids = lambda runs: [r["run_id"] for r in runs]  # noqa: E731
    assert ids(store.runs()) == [a, b, c]
    assert ids(store.runs(experiment="e1")) == [a, b]
    assert ids(store.runs(status=("FAILED", "QUEUED"))) == [a, b, c]
    assert ids(store.runs(status="FAILED")) == [b]
    assert ids(store.runs(fingerprint="f1", experiment="e2")) == [c]
    assert ids(store.runs(task_id="t1")) == [a]
    assert ids(store.runs(run_ids=[c, a, "missing"])) == [a, c]
    assert store.to_dataframe(run_ids=[b]).index.tolist() == [b]
    assert store.to_dataframe(experiment="e2").index.tolist() == [c]
    with pytest.raises(ValidationError, match="unknown status"):
        store.runs(status="DONE")


def test_threads_share_one_store(store):
    def work(t):
        for i in range(50):
            rid = store.insert_run(experiment=f"t{t}", prompt=str(i))
            store.update_run(rid, status="SUCCEEDED", seed=i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    df = store.to_dataframe()
    assert len(df) == 400 and (df["status"] == "SUCCEEDED").all()


# -- processes: concurrency and crashes --------------------------------------------------------

CHILD = r"""
import os, random, sys, time
from wan_nb.ledgers import open_ledger
mode, root, go, tag, n = sys.argv[1:6]
store = open_ledger(root)  # a folder, or a postgresql:// URL
ids = [run["run_id"] for run in store.runs()]
random.Random(tag).shuffle(ids)  # both sweep all runs, in different orders, at the same time
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
if mode == "write":
    for i in range(int(n)):
        rid = store.insert_run(experiment=tag, prompt=f"{tag} {i}", seed=i)
        store.update_run(rid, status="SUCCEEDED", video_bytes=i, video_sha256=f"{tag}-{i}")
elif mode == "loop":
    i = 0
    while True:
        ids = store.insert_runs([{"experiment": tag, "prompt": f"{tag} {i + k}", "seed": i + k}
                                 for k in range(10)])
        for k, rid in enumerate(ids):
            store.update_run(rid, status="SUCCEEDED", video_bytes=i + k,
                             video_sha256=f"{tag}-{i + k}", notes="x" * 2000)
            print(rid, flush=True)
        i += 10
elif mode == "transition":
    for rid in ids:
        if store.transition(rid, expect="QUEUED", status="SUBMITTING", owner=tag):
            print(rid, flush=True)
        time.sleep(0.001)  # let the other process in (SQLite's busy wait is not fair)
elif mode == "claim":
    for rid in ids:
        if store.claim(rid, tag, stale_after=3600):
            print(rid, flush=True)
        time.sleep(0.001)
print("done", flush=True)
"""


def spawn(mode, root, go, tag, n=0):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(root), str(go), tag, str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)


def run_together(tmp_path, root, jobs):
    """Start the children, release them at once, return each one's printed lines."""
    go = tmp_path / "go"
    procs = [spawn(mode, root, go, tag, n) for mode, tag, n in jobs]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    return [out.split()[:-1] for out, _ in outs]  # drop "done"


def test_two_processes_write_1000_runs_at_once(tmp_path):
    root = tmp_path / "shared"  # fresh: both children also race to create the schema
    run_together(tmp_path, root, [("write", "A", 500), ("write", "B", 500)])
    assert integrity(root / "ledger.sqlite3") == "ok"
    with Store(root) as store:
        df = store.to_dataframe()
    assert len(df) == 1000 and df.index.is_unique
    for tag in "AB":
        part = df[df["experiment"] == tag].sort_values("seed")
        assert part["seed"].tolist() == list(range(500))
        assert (part["status"] == "SUCCEEDED").all()
        assert part["video_bytes"].tolist() == list(range(500))
        assert part["video_sha256"].tolist() == [f"{tag}-{i}" for i in range(500)]
        assert part["prompt"].tolist() == [f"{tag} {i}" for i in range(500)]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX kill -9")
@pytest.mark.parametrize("seen", [37, 150, 333])
def test_kill_9_in_the_middle_of_writing(tmp_path, seen):
    root = tmp_path / "crash"
    go = tmp_path / "go"
    go.touch()
    proc = spawn("loop", root, go, "K")
    try:
        assert proc.stdout.readline().strip() == "ready"
        committed = [proc.stdout.readline().strip() for _ in range(seen)]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert integrity(root / "ledger.sqlite3") == "ok"
    with Store(root) as store:
        runs = {r["run_id"]: r for r in store.runs()}
        assert integrity(store.db_path) == "ok"
    assert set(committed) <= set(runs)
    assert len(runs) % 10 == 0  # insert_runs batches are all or nothing
    for rid, run in runs.items():
        i = run["seed"]
        assert run["prompt"] == f"K {i}"
        if run["status"] == "SUCCEEDED":  # an update is whole, never half applied
            assert (run["video_bytes"], run["video_sha256"], run["notes"]) == (
                i, f"K-{i}", "x" * 2000)
        else:
            assert rid not in committed
            assert (run["status"], run["video_bytes"], run["notes"]) == ("QUEUED", None, None)


@pytest.mark.parametrize("mode", ["transition", "claim"])
def test_compare_and_set_races_have_exactly_one_winner(tmp_path, mode, make_ledger):
    with make_ledger() as store:
        ids = store.insert_runs([{"prompt": str(i)} for i in range(300)])
    won_a, won_b = run_together(tmp_path, make_ledger.location,
                                [(mode, "A", 0), (mode, "B", 0)])
    assert not set(won_a) & set(won_b)
    assert sorted(won_a + won_b) == sorted(ids)
    assert won_a and won_b  # the sweeps really overlapped (random orders, ~half each)
    with make_ledger() as store:
        owners = {r["run_id"]: r["owner"] for r in store.runs()}
    assert {owners[r] for r in won_a} <= {"A"} and {owners[r] for r in won_b} <= {"B"}


# -- schema versions ---------------------------------------------------------------------------

V1_SQL = """
CREATE TABLE runs (
  run_id TEXT PRIMARY KEY, experiment TEXT, variant TEXT, tags TEXT NOT NULL DEFAULT '[]',
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, model TEXT, prompt TEXT,
  negative_prompt TEXT, actual_prompt TEXT, size TEXT, width INTEGER, height INTEGER,
  tier TEXT, duration INTEGER, seed INTEGER, prompt_extend INTEGER, watermark INTEGER,
  audio_mode TEXT, audio_url TEXT, shot_type TEXT, fingerprint TEXT, request_json TEXT,
  task_id TEXT UNIQUE, request_id TEXT, status TEXT NOT NULL DEFAULT 'QUEUED',
  error_code TEXT, error_message TEXT, sent_at TEXT, submit_time TEXT, scheduled_time TEXT,
  end_time TEXT, usage_video_count INTEGER, usage_video_duration REAL, usage_video_ratio TEXT,
  usage_duration REAL, usage_size TEXT, usage_sr INTEGER, usage_input_video_duration REAL,
  usage_output_video_duration REAL, usage_json TEXT, cost_usd REAL, video_url TEXT,
  video_url_expires_at TEXT, video_path TEXT, video_sha256 TEXT, video_bytes INTEGER,
  video_fps REAL, video_frames INTEGER, video_duration REAL, has_audio INTEGER,
  download_error TEXT, backend TEXT, wan_nb_version TEXT);
CREATE INDEX runs_experiment ON runs(experiment, created_at);
CREATE INDEX runs_status ON runs(status, created_at);
CREATE INDEX runs_fingerprint ON runs(fingerprint);
CREATE INDEX runs_created ON runs(created_at);
INSERT INTO runs (run_id, experiment, tags, created_at, updated_at, model, prompt, seed,
                  prompt_extend, status, task_id, submit_time, scheduled_time, end_time,
                  cost_usd, video_path, wan_nb_version)
VALUES ('20250101000000-0000abcd', 'old', '["v1"]', '2025-01-01T00:00:00.000000+00:00',
        '2025-01-01T00:05:00.000000+00:00', 'wan2.1-t2v-turbo', 'an old cat', 42, 1,
        'SUCCEEDED', 'task-old', '2025-01-01T00:00:01.000000+00:00',
        '2025-01-01T00:00:03.500000+00:00', '2025-01-01T00:01:03.500000+00:00', 0.24,
        'videos/old.mp4', '0.0.1'),
       ('20250101000001-0000abce', 'old', '[]', '2025-01-01T00:00:01.000000+00:00',
        '2025-01-01T00:00:01.000000+00:00', 'wan2.1-t2v-turbo', 'a failed cat', 43, 0,
        'FAILED', NULL, NULL, NULL, NULL, NULL, NULL, '0.0.1');
PRAGMA user_version = 1;
"""


def test_migrates_a_v1_file_keeping_its_data(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    con = sqlite3.connect(root / "ledger.sqlite3")
    con.executescript(V1_SQL)
    con.close()
    with Store(root) as store:
        assert store.schema_version == SCHEMA_VERSION == 7
        old = store.get_run("20250101000000-0000abcd")
        assert (old["prompt"], old["seed"], old["tags"], old["prompt_extend"]) == (
            "an old cat", 42, ["v1"], True)
        assert old["run_s"] == 60.0 and old["queue_s"] == 2.5 and old["cost_usd"] == 0.24
        assert (old["rating"], old["notes"], old["owner"]) == (None, None, None)
        assert store.get_run("20250101000001-0000abce")["status"] == "FAILED"
        assert (old["resolution"], old["ratio"]) == (None, None)  # it recorded no size
        store.update_run(old["run_id"], rating=5, notes="still good")
        assert store.claim(old["run_id"], "me")
        assert store.to_dataframe().loc[old["run_id"], "rating"] == 5
    con = sqlite3.connect(root / "ledger.sqlite3")
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    con.close()
    assert {"runs_owner", "runs_sent"} <= indexes
    with Store(root) as again:  # opening a current file is a no-op
        assert len(again) == 2


def test_newer_file_is_refused_and_left_untouched(tmp_path):
    root = tmp_path / "future"
    root.mkdir()
    con = sqlite3.connect(root / "ledger.sqlite3")
    con.executescript("CREATE TABLE runs (run_id TEXT PRIMARY KEY, hologram BLOB);"
                      "INSERT INTO runs VALUES ('r', x'00'); PRAGMA user_version = 8;")
    con.close()
    before = tree_digest(root)
    with pytest.raises(SchemaVersionError, match="schema version 8.*up to 7.*not modified"):
        Store(root)
    assert tree_digest(root) == before


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    root = tmp_path / "junk"
    root.mkdir()
    (root / "ledger.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="ledger.sqlite3"):
        Store(root)


# -- exports ----------------------------------------------------------------------------------

def sample_store(root: Path) -> Store:
    store = Store(root)
    rid = store.insert_run(**{**FULL, "video_path": "videos/full.mp4"})
    (store.root / "videos" / "full.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"v" * 100)
    store.insert_run(experiment="cats", prompt="NA", negative_prompt="null", tags=[],
                     model="wan2.6-t2v", status="FAILED", error_code="DataInspectionFailed",
                     submit_time=T0, cost_usd=0.1, video_path="videos/lost.mp4")
    store.insert_run(experiment="dogs", prompt='a "quoted", comma\nnewline', variant="v2",
                     tier="1440P", seed=0, has_audio=False, rating=2)
    store.update_run(rid, notes="kept")
    return store


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_reads_back_equal(tmp_path, suffix):
    with sample_store(tmp_path / "s") as store:
        df = store.to_dataframe()
        path = store.export(tmp_path / "out" / f"runs{suffix}")
        assert path.is_file()
        pd.testing.assert_frame_equal(read_export(path), df)
        cats = store.export(tmp_path / f"cats{suffix}", experiment="cats")
        pd.testing.assert_frame_equal(read_export(cats), store.to_dataframe(experiment="cats"))
    with Store(tmp_path / "empty") as empty:
        pd.testing.assert_frame_equal(read_export(empty.export(tmp_path / f"e{suffix}")),
                                      empty.to_dataframe())


def test_export_refuses_other_suffixes(store, tmp_path):
    with pytest.raises(ValidationError, match=r"\.parquet or \.csv"):
        store.export(tmp_path / "runs.xlsx")
    with pytest.raises(ValidationError, match=r"\.zip"):
        store.export_bundle(tmp_path / "runs.tar")
    with pytest.raises(ValidationError, match="expected a .parquet"):
        read_export(tmp_path / "runs.json")


def test_bundle_has_table_videos_and_manifest(tmp_path):
    with sample_store(tmp_path / "s") as store:
        df = store.to_dataframe()
        path = store.export_bundle(tmp_path / "bundle.zip")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        assert zf.read("videos/full.mp4").startswith(b"\x00\x00\x00\x18ftyp")
    assert names == {"runs.parquet", "videos/full.mp4", "manifest.json"}
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["wan_nb_version"] and manifest["created_at"]
    assert manifest["experiments"] == ["cats", "dogs"]
    assert manifest["missing_videos"] == ["videos/lost.mp4"]
    by_id = {r["run_id"]: r for r in manifest["runs"]}
    assert set(by_id) == set(df.index)
    full = next(r for r in manifest["runs"] if r["video"] == "videos/full.mp4")
    assert full["request"] == FULL["request_json"] and full["seed"] == 2147483647
    pd.testing.assert_frame_equal(read_export(path), df)


# -- reconciliation reads only what it needs ----------------------------------------------------

BIG = 20_000
BIG_NOW = datetime(2025, 6, 1, tzinfo=UTC)
MODEL = "wan2.5-t2v-preview"


@pytest.fixture(scope="module")
def big_ledger(tmp_path_factory):
    """20 000 runs over 100 days (a tenth without a task), and one unresolved create now."""
    store = Store(tmp_path_factory.mktemp("big"), clock=Clock(BIG_NOW))
    start = BIG_NOW - timedelta(days=100)
    rows = []
    for i in range(BIG):
        created = start + timedelta(seconds=i * 432)
        rows.append({"run_id": f"r{i:05d}", "backend": "emu", "model": MODEL,
                     "prompt": f"prompt {i % 700}", "created_at": created,
                     "sent_at": created + timedelta(seconds=1),
                     "status": "CANCELED" if i % 10 == 0 else "SUCCEEDED",
                     "task_id": None if i % 10 == 0 else f"t{i:05d}"})
    store.insert_runs(rows)
    me = store.insert_run(backend="emu", model=MODEL, prompt="prompt 3", status="SUBMITTING",
                          sent_at=BIG_NOW)
    yield store, me
    store.close()


def vm_steps(store: Store, call) -> tuple[int, list[str]]:
    """SQLite virtual-machine steps (x100) a call costs, and the statements it ran."""
    con = store._connect()
    steps, statements = [0], []

    def count() -> int:
        steps[0] += 1
        return 0
    con.set_progress_handler(count, 100)
    con.set_trace_callback(statements.append)
    try:
        call()
    finally:
        con.set_progress_handler(None, 0)
        con.set_trace_callback(None)
    return steps[0], statements


def test_reconciliation_reads_are_targeted_in_a_big_ledger(big_ledger):
    store, me = big_ledger
    since = BIG_NOW - timedelta(hours=24)
    calls = {
        "known_task_ids": lambda: store.known_task_ids("emu", since=since),
        "unresolved_creates": lambda: store.unresolved_creates("emu", MODEL, exclude=me),
        "ambiguous_siblings": lambda: store.ambiguous_siblings(me, window=timedelta(minutes=3)),
        "runs(run_ids=...)": lambda: store.runs(run_ids=[f"r{i:05d}" for i in range(0, BIG,
                                                                                   2000)]),
    }
    # what reading every task id would cost (the look-up before it was targeted)
    full, _ = vm_steps(store, lambda: store.known_task_ids("emu", since=BIG_NOW - timedelta(
        days=1000)))
    assert full > 1000
    con = store._connect()
    for name, call in calls.items():
        steps, statements = vm_steps(store, call)
        assert steps < full / 20, (name, steps, full)
        for sql in statements:
            plan = [r[3] for r in con.execute(f"EXPLAIN QUERY PLAN {sql}")]
            assert not any(p.startswith("SCAN runs") for p in plan), (name, sql, plan)
