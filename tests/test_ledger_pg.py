"""The PostgreSQL ledger's own parts, against a real server (tests/pg_server.py): its schema and
migrations, the same frame as SQLite for the same runs, claims that skip locked rows, the
account's shared paces, local videos, and a whole session on it. (The ledger contract itself
runs on both ledgers in tests/test_store.py, test_ledger.py and test_dedupe_processes.py.)"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

import wan_nb
from tests import test_account
from wan_nb.store import SCHEMA_VERSION, STATUSES, SchemaVersionError, Store, StoreError
from wan_nb.store_table import STORED

psycopg = pytest.importorskip("psycopg")
PgLedger = pytest.importorskip("wan_nb.store_pg").PgLedger
PG_MIGRATIONS = pytest.importorskip("wan_nb.store_pg").PG_MIGRATIONS

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 9, 30, 0, 250000, tzinfo=UTC)


def columns(url: str) -> list[str]:
    with psycopg.connect(url) as con:
        return [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs' "
            "ORDER BY ordinal_position")]


def test_schema_has_every_column_and_a_version(pg_url, tmp_path):
    with PgLedger(pg_url, root=tmp_path) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
    assert sorted(columns(pg_url)) == sorted(["seq", *STORED])
    # every SQLite schema version from the first PostgreSQL one has its PostgreSQL step
    assert sorted(PG_MIGRATIONS) == list(range(min(PG_MIGRATIONS), SCHEMA_VERSION + 1))
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT version FROM wan_nb_schema").fetchall() == [
            (SCHEMA_VERSION,)]


def test_a_newer_database_is_refused_and_left_untouched(pg_url, tmp_path):
    PgLedger(pg_url, root=tmp_path).close()
    with psycopg.connect(pg_url) as con:
        con.execute("UPDATE wan_nb_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*"
                                                 "not modified"):
        PgLedger(pg_url, root=tmp_path)
    assert sorted(columns(pg_url)) == sorted(["seq", *STORED])


def test_kernels_opening_a_new_database_together_migrate_it_once(pg_url, tmp_path):
    errors: list[BaseException] = []
    ledgers: list[PgLedger] = []

    def open_it() -> None:
        try:
            ledgers.append(PgLedger(pg_url, root=tmp_path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(ledgers) == 6
    ledgers[0].insert_run(prompt="x")
    assert [len(x) for x in ledgers] == [1] * 6
    for x in ledgers:
        x.close()


def _same_runs(ledger: Store) -> None:
    """The same rows, ids and times into any ledger (every kind of column)."""
    for i in range(40):
        ledger.insert_run(
            run_id=f"20260301093000-{i:08x}", created_at=T0 + timedelta(seconds=i // 3),
            experiment=f"e{i % 3}", variant=f"seed={i}", tags=["a", f"t{i % 4}"],
            model=("wan2.5-t2v-preview", "wan2.6-t2v", None)[i % 3], prompt=f"cat {i}",
            actual_prompt=f"cat {i}" if i % 5 else None, size="832*480", width=832,
            height=480, tier="480P", resolution=("480P", "720P")[i % 2], ratio="16:9",
            duration=5, seed=i, prompt_extend=bool(i % 2), watermark=False,
            audio_mode=("auto", None)[i % 2], status=STATUSES[i % len(STATUSES)],
            submit_time=T0 if i % 2 else None, scheduled_time=T0 + timedelta(seconds=3),
            end_time=T0 + timedelta(seconds=60), cost_usd=0.1 * i, usage_json={"n": i},
            video_bytes=2**40 + i, has_audio=i % 3 == 0, rating=i % 6 or None,
            keep=(True, False, None)[i % 3], backend="emulator", owner_heartbeat=T0,
            request_json={"model": "m", "seed": i}, fingerprint=f"fp{i % 7}")


def test_the_frame_is_the_same_as_sqlites_for_the_same_runs(pg_url, tmp_path):
    clock = lambda: T0 + timedelta(minutes=5)  # noqa: E731 (updated_at)
    with Store(tmp_path / "sqlite", clock=clock) as lite, \
            PgLedger(pg_url, root=tmp_path / "pg", clock=clock) as pg:
        for ledger in (lite, pg):
            _same_runs(ledger)
            assert ledger.to_dataframe().shape == (40, len(STORED) + 2)
        pd.testing.assert_frame_equal(pg.to_dataframe(), lite.to_dataframe())
        pd.testing.assert_frame_equal(pg.to_dataframe(experiment="e1"),
                                      lite.to_dataframe(experiment="e1"))
        assert pg.runs(status=("FAILED", "QUEUED")) == lite.runs(status=("FAILED", "QUEUED"))
        assert pg.unfinished(max_age=timedelta(days=9999)) == \
            lite.unfinished(max_age=timedelta(days=9999))
        empty = PgLedger(pg_url.rsplit("/", 1)[0] + "/postgres", root=tmp_path / "e")
        try:  # (the server's default database, with no runs table until now)
            pd.testing.assert_frame_equal(empty.to_dataframe(),
                                          Store(tmp_path / "empty").to_dataframe())
        finally:
            empty.close()


def test_a_claim_does_not_wait_for_a_locked_run(pg_url, tmp_path):
    """SELECT … FOR UPDATE SKIP LOCKED: a run another transaction holds is answered at once
    (no, unless the claimant owns it already), not after that transaction."""
    with PgLedger(pg_url, root=tmp_path, lock_timeout=60) as ledger:
        mine, free = ledger.insert_run(prompt="a"), ledger.insert_run(prompt="b")
        assert ledger.claim(mine, "A")
        with psycopg.connect(pg_url) as other:  # another kernel, mid-transaction on both
            other.execute("SELECT 1 FROM runs WHERE run_id IN (%s, %s) FOR UPDATE",
                          (mine, free))
            start = time.monotonic()
            assert not ledger.claim(free, "B")  # busy now: not waited for
            assert not ledger.claim(mine, "B", stale_after=0)
            assert ledger.claim(mine, "A")  # already A's
            assert time.monotonic() - start < 5
            other.rollback()
        assert ledger.claim(free, "B")
        assert ledger.claim(mine, "B", stale_after=0)
        assert ledger.get_run(mine)["owner"] == "B"


def test_videos_stay_local_and_check_verify_and_bundle_work(pg_url, tmp_path):
    with PgLedger(pg_url, root=tmp_path / "local") as ledger:
        rid = ledger.insert_run(prompt="a cat", status="SUCCEEDED", experiment="v")
        path = ledger.new_video_path(rid)
        assert path.parent == tmp_path / "local" / "videos"
        data = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
        path.write_bytes(data)
        ledger.update_run(rid, video_path=path, video_bytes=len(data),
                          video_sha256=hashlib.sha256(data).hexdigest())
        assert ledger.get_run(rid)["video_path"] == f"videos/{rid}.mp4"
        assert ledger.video_file(rid) == path
        assert ledger.check_video(rid, full=True).ok
        assert ledger.verify("v")["ok"].tolist() == [True]
        out = ledger.export_bundle(tmp_path / "b.zip", experiment="v")
        with zipfile.ZipFile(out) as zf:
            assert zf.read(f"videos/{rid}.mp4") == data
        # another machine (another root) has no copy: the check says so
        with PgLedger(pg_url, root=tmp_path / "elsewhere") as there:
            check = there.check_video(rid)
            assert check.state == "missing" and check.redownload


def test_a_session_on_a_postgresql_ledger(pg_url, tmp_path, monkeypatch, caplog):
    """connect(store=URL) end to end: the embedded emulator, a job, its video in ./wan_runs,
    the run in PostgreSQL; the password nowhere in the output, the repr or the logs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    password = pg_url.split(":")[2].split("@")[0]
    caplog.set_level(logging.DEBUG)
    with wan_nb.connect(store=pg_url, quiet=True) as session:
        job = session.generate("a paper boat", model="wan2.5-t2v-preview", size="832*480",
                               duration=5, timeout=120)
        assert job.status == "SUCCEEDED"
        assert str(job.video).startswith(str(tmp_path / "wan_runs" / "videos"))
        assert repr(session.store).startswith("PgLedger('postgresql://wan:***@127.0.0.1")
        # each machine's embedded emulator is its own backend on a shared ledger
        assert session.backend.startswith("emulator:") and str(tmp_path) in session.backend
        df = session.to_dataframe()
        assert df.loc[job.run_id, "status"] == "SUCCEEDED"
        assert password not in repr(session) + repr(session.store) + caplog.text
    with PgLedger(pg_url, root=tmp_path / "other") as elsewhere:
        assert elsewhere.get_run(job.run_id)["video_sha256"] == \
            hashlib.sha256(Path(job.video).read_bytes()).hexdigest()


def test_a_wrong_password_is_a_clear_error(pg_server, tmp_path):
    url = pg_server.url().replace(pg_server.password, "not-the-password")
    with pytest.raises(StoreError, match="password authentication failed") as info:
        PgLedger(url, root=tmp_path / "x")
    assert "not-the-password" not in str(info.value)
    assert not (tmp_path / "x").exists()


# -- the account's shared paces (tests/test_account.py's ledger tests, on PostgreSQL) ----------

@pytest.fixture
def clocked(pg_url, tmp_path):
    clock = test_account.Clock()
    with PgLedger(pg_url, root=tmp_path, clock=clock) as ledger:
        yield ledger, clock


test_turns_are_spaced_after_every_reservation = (
    test_account.test_turns_are_spaced_after_every_reservation)
test_bad_slot_arguments_are_refused_and_nothing_is_reserved = (
    test_account.test_bad_slot_arguments_are_refused_and_nothing_is_reserved)
test_a_kernel_alone_on_a_model_is_not_held = test_account.test_a_kernel_alone_on_a_model_is_not_held
test_with_another_live_kernel_the_limit_holds_for_both = (
    test_account.test_with_another_live_kernel_the_limit_holds_for_both)
test_a_dead_kernels_runs_stop_counting = test_account.test_a_dead_kernels_runs_stop_counting
test_other_backends_do_not_count = test_account.test_other_backends_do_not_count


def test_slots_are_taken_once_by_racing_threads(pg_url, tmp_path):
    """Each take is atomic: 8 threads on 4 pools race for 40 turns 0.05 s apart; every one
    gets a turn of its own (as tests/test_account.py checks across processes on SQLite)."""
    ledgers = [PgLedger(pg_url, root=tmp_path) for _ in range(4)]
    ledgers[0].take_slots("acct", "warm-up", interval=1.0)
    turns: list[float] = []
    lock = threading.Lock()

    def take(ledger: PgLedger) -> None:
        for _ in range(5):
            sent = time.time()
            turn = sent + ledger.take_slots("acct", "query", interval=0.05)
            with lock:
                turns.append(turn)

    threads = [threading.Thread(target=take, args=(ledgers[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x in ledgers:
        x.close()
    turns.sort()
    gaps = [b - a for a, b in zip(turns, turns[1:], strict=False)]
    assert len(turns) == 40 and min(gaps) > 0.03, gaps
