"""The ledger against damaged files, read-only folders, full disks and damaged videos.

Issue 8, items 11 and 13. Everything here uses real files: real truncation, real garbage in
the middle of the SQLite file, real permissions (checked in a child process that runs as root
*without* CAP_DAC_OVERRIDE, so permission bits apply as they do for a user) and a real full
disk (a 320 KiB tmpfs in a private mount namespace).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wan_nb.store import (SCHEMA_VERSION, LedgerDamaged, Store, StoreError, VideoCheck)

ROOT = Path(__file__).resolve().parents[1]
CAN_DROP_PRIVILEGES = os.geteuid() != 0 or shutil.which("setpriv") is not None


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def unprivileged(code: str, *, prefix: tuple[str, ...] = ()) -> dict:
    """Run ``code`` in a fresh Python for which permission bits apply (as root: without the
    capabilities that override them). The code sets ``result``; it comes back as JSON."""
    script = textwrap.dedent(code) + "\nimport json as _j\nprint(_j.dumps(result))\n"
    cmd = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", *cmd]
    env = {**os.environ,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([*prefix, *cmd], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lock_down(*paths: Path) -> None:
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)


@pytest.fixture
def unlock():
    """Give write permission back to everything locked down, so tmp_path can be cleaned."""
    locked: list[Path] = []
    yield locked
    for top in locked:
        for p in [top, *top.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def filled_store(root: Path, n: int = 300) -> list[str]:
    with Store(root) as store:
        return store.insert_runs([{"experiment": "e", "prompt": f"prompt {i} " + "x" * 200,
                                   "seed": i} for i in range(n)])


# -- a damaged ledger (item 13) -----------------------------------------------------------------

def test_garbage_in_the_middle_of_the_ledger_is_a_store_error_and_changes_nothing(tmp_path):
    root = tmp_path / "s"
    ids = filled_store(root)
    db = root / "ledger.sqlite3"
    assert not (root / "ledger.sqlite3-wal").exists()  # all in the main file after close
    con = sqlite3.connect(db)  # a leaf page of the runs table near the middle of the file
    pages = [p for (p,) in con.execute("SELECT pageno FROM dbstat WHERE name = 'runs' AND "
                                       "pagetype = 'leaf' ORDER BY pageno")]
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    assert len(pages) > 10
    with open(db, "r+b") as f:
        f.seek((pages[len(pages) // 2] - 1) * page_size)
        f.write(os.urandom(page_size))
    before = db.read_bytes()
    store = Store(root)  # the header is intact: opening works
    for call in (store.runs, store.to_dataframe, lambda: store.export(tmp_path / "x.csv")):
        with pytest.raises(LedgerDamaged) as info:
            call()
        text = str(info.value)
        assert "is damaged" in text and "malformed" in text
        assert "restore a backup" in text and ".recover" in text and "did not change" in text
    assert db.read_bytes() == before  # never reset, never rewritten
    with pytest.raises(LedgerDamaged, match="could not write to it"):
        for rid in ids:  # a write that reaches the damaged page
            store.update_run(rid, rating=1)
    store.close()


def test_garbage_over_the_header_is_a_store_error_that_says_what_to_do(tmp_path):
    root = tmp_path / "s"
    filled_store(root, 5)
    db = root / "ledger.sqlite3"
    with open(db, "r+b") as f:
        f.write(b"garbage" * 20)
    before = tree_digest(root)
    with pytest.raises(LedgerDamaged, match="is damaged.*restore a backup"):
        Store(root)
    assert tree_digest(root) == before


# -- read-only folders and files (item 13) -----------------------------------------------------

@pytest.mark.skipif(not CAN_DROP_PRIVILEGES, reason="needs setpriv to test permissions as root")
def test_an_empty_read_only_store_folder_is_a_clear_error(tmp_path, unlock):
    root = tmp_path / "ro"
    root.mkdir()
    lock_down(root)
    unlock.append(root)
    result = unprivileged(f"""
        from wan_nb.store import Store, StoreError
        try:
            Store({str(root)!r})
            result = "opened"
        except StoreError as e:
            result = str(e)
        except OSError as e:
            result = "raw " + repr(e)
    """)
    assert result.startswith(f"cannot create the run ledger in {root}: Permission denied"), result
    assert "connect(store=" in result and "WAN_NB_STORE" in result
    assert list(root.iterdir()) == []


READ_ONLY_CHECK = """
    from wan_nb.store import Store, StoreError, StoreReadOnly
    store = Store({root!r})
    result = {{"read_only": store.read_only, "len": len(store),
              "runs": [r["prompt"] for r in store.runs(experiment="e")][:3],
              "frame": list(store.to_dataframe().shape),
              "mtime_col": store.to_dataframe()["video_mtime_ns"].isna().all().item(),
              "get": store.get_run({first!r})["seed"]}}
    for name, call in (("insert", lambda: store.insert_run(prompt="x")),
                       ("update", lambda: store.update_run({first!r}, rating=3)),
                       ("claim", lambda: store.claim({first!r}, "me"))):
        try:
            call()
            result[name] = "written"
        except StoreReadOnly as e:
            result[name] = str(e)
    store.close()
"""


@pytest.mark.skipif(not CAN_DROP_PRIVILEGES, reason="needs setpriv to test permissions as root")
def test_a_read_only_ledger_can_be_read_and_refuses_writes_saying_why(tmp_path, unlock):
    root = tmp_path / "ro"
    ids = filled_store(root, 12)
    lock_down(root / "ledger.sqlite3", root / "videos", root)
    unlock.append(root)
    before = tree_digest(root)
    result = unprivileged(READ_ONLY_CHECK.format(root=str(root), first=ids[0]))
    assert result["read_only"] and result["len"] == 12 and result["get"] == 0
    assert result["runs"][0].startswith("prompt 0 ")
    assert result["frame"][0] == 12
    for name in ("insert", "update", "claim"):
        assert result[name].startswith(f"the ledger {root / 'ledger.sqlite3'} is read-only "
                                       "here (no permission to write the file"), result[name]
        assert "copy the store folder somewhere writable" in result[name]
    assert tree_digest(root) == before


@pytest.mark.skipif(not CAN_DROP_PRIVILEGES, reason="needs setpriv to test permissions as root")
def test_a_read_only_ledger_left_with_its_write_ahead_log_reads_every_commit(tmp_path, unlock):
    """A kernel killed with kill -9 leaves committed rows only in ledger.sqlite3-wal; a
    read-only reader must see them (``immutable=1`` alone would not)."""
    root = tmp_path / "ro"
    filled_store(root, 3)
    code = (f"import os; from wan_nb.store import Store; s = Store({str(root)!r}); "
            "s.insert_run(experiment='e', prompt='only in the WAL', seed=99); os._exit(0)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert (root / "ledger.sqlite3-wal").stat().st_size > 0
    lock_down(*root.iterdir(), root)
    unlock.append(root)
    result = unprivileged(f"""
        from wan_nb.store import Store
        s = Store({str(root)!r})
        result = [s.read_only, [r["prompt"] for r in s.runs()][-1], len(s)]
    """)
    assert result == [True, "only in the WAL", 4]


@pytest.mark.skipif(not CAN_DROP_PRIVILEGES, reason="needs setpriv to test permissions as root")
def test_an_older_read_only_ledger_is_read_without_migrating(tmp_path, unlock):
    from tests.test_store import V1_SQL

    root = tmp_path / "old"
    root.mkdir()
    con = sqlite3.connect(root / "ledger.sqlite3")
    con.executescript(V1_SQL)
    con.close()
    lock_down(root / "ledger.sqlite3", root)
    unlock.append(root)
    before = tree_digest(root)
    result = unprivileged(f"""
        from wan_nb.store import Store
        s = Store({str(root)!r})
        df = s.to_dataframe()
        result = [s.read_only, len(df), df["rating"].isna().all().item(),
                  s.get_run("20250101000000-0000abcd")["prompt"]]
    """)
    assert result == [True, 2, True, "an old cat"]
    assert tree_digest(root) == before
    assert SCHEMA_VERSION > 1


# -- a full disk (item 13) ----------------------------------------------------------------------

FULL_DISK = """
    import subprocess, os
    mnt = {mnt!r}
    from wan_nb.store import Store, StoreFull
    s = Store(mnt + "/store")
    written, error = 0, None
    try:
        for i in range(10000):
            s.insert_run(experiment="e", prompt="p" * 2000, seed=i)
            written += 1
    except StoreFull as e:
        error = str(e)
    s.close()
    s = Store(mnt + "/store")  # reopen: every committed run is there, the file is sound
    check = s._read("PRAGMA integrity_check")[0][0]
    result = {{"written": written, "error": error, "count": len(s), "check": check}}
"""


def test_a_full_disk_is_a_store_error_and_loses_no_committed_run(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = textwrap.dedent(FULL_DISK.format(mnt=str(mnt))) + \
        "\nimport json as _j\nprint(_j.dumps(result))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # a private mount namespace: the tmpfs disappears with the process
    cmd = ["unshare", "-m", "sh", "-c",
           f"mount -t tmpfs -o size=320k tmpfs {mnt} && exec \"$0\" -c \"$1\"",
           sys.executable, script]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if "mount" in proc.stderr and proc.returncode != 0 and "Traceback" not in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] and result["written"] > 0, result
    assert result["error"].startswith(f"the disk holding the ledger {mnt}/store/ledger.sqlite3 "
                                      "is full"), result["error"]
    assert "Runs recorded so far are safe; free some space" in result["error"]
    assert result["count"] == result["written"] and result["check"] == "ok"


# -- damaged or deleted videos (item 11) --------------------------------------------------------

def recorded_video(store: Store, name: str = "a", size: int = 50_000) -> tuple[str, Path]:
    path = store.new_video_path(name)
    data = b"\x00\x00\x00\x18ftypmp42" + os.urandom(size - 12)
    path.write_bytes(data)
    rid = store.insert_run(run_id=name, experiment="e", status="SUCCEEDED", backend="emulator")
    store.update_run(rid, video_path=str(path), video_bytes=len(data),
                     video_sha256=hashlib.sha256(data).hexdigest())
    return rid, path


def test_check_video_is_cheap_when_untouched_and_names_each_damage(tmp_path):
    with Store(tmp_path / "s") as store:
        rid, path = recorded_video(store)
        run = store.get_run(rid)
        assert run["video_mtime_ns"] == path.stat().st_mtime_ns  # stamped with the path
        check = store.check_video(rid)
        assert (check.ok, check.state, check.problem, check.hashed) == (True, "ok", None, False)
        data = path.read_bytes()

        # touched (same bytes, new mtime): hashed once, still ok, new mtime remembered
        os.utime(path, ns=(time.time_ns(), run["video_mtime_ns"] + 5_000_000_000))
        check = store.check_video(rid)
        assert check.ok and check.hashed
        assert store.get_run(rid)["video_mtime_ns"] == path.stat().st_mtime_ns
        assert not store.check_video(rid).hashed

        with open(path, "r+b") as f:  # truncated by a full disk or a half copy
            f.truncate(len(data) // 3)
        check = store.check_video(rid)
        assert (check.ok, check.state, check.redownload) == (False, "truncated", True)
        assert check.problem == (f"the video file is truncated: {path} has {len(data) // 3} "
                                 f"of the {len(data)} bytes downloaded")

        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other content
        check = store.check_video(rid)
        assert (check.state, check.hashed, check.redownload) == ("changed", True, True)
        assert check.problem.startswith("the video file changed since download (sha256 "
                                        "differs)")

        path.unlink()
        check = store.check_video(rid)
        assert (check.state, check.redownload) == ("missing", True)
        assert check.problem == f"the video file was deleted ({path} is gone)"


def test_verify_reports_every_video_of_a_store(tmp_path):
    with Store(tmp_path / "s") as store:
        good, _ = recorded_video(store, "good")
        gone, gone_path = recorded_video(store, "gone")
        cut, cut_path = recorded_video(store, "cut")
        swapped, swapped_path = recorded_video(store, "swapped")
        store.insert_run(run_id="nodl", experiment="e", status="SUCCEEDED",
                         download_error="disk full")
        store.insert_run(run_id="queued", experiment="e")
        store.insert_run(run_id="other", experiment="other", status="SUCCEEDED")
        gone_path.unlink()
        cut_path.write_bytes(cut_path.read_bytes()[:100])
        raw = bytearray(swapped_path.read_bytes())
        raw[5000] ^= 0xFF
        mtime = swapped_path.stat().st_mtime_ns
        swapped_path.write_bytes(bytes(raw))
        os.utime(swapped_path, ns=(mtime, mtime))  # even the mtime was kept: only full=True
        df = store.verify(experiment="e")
        assert df["state"].to_dict() == {"good": "ok", "gone": "missing", "cut": "truncated",
                                         "swapped": "ok", "nodl": "no_video"}
        assert df.loc["nodl", "problem"] == "no video was downloaded for this run (disk full)"
        full = store.verify(experiment="e", full=True)
        assert full.loc["swapped", "state"] == "changed"
        assert list(full.columns) == ["status", "video_path", "state", "ok", "problem"]
        assert str(full["ok"].dtype) == "boolean" and not full["ok"]["gone"]
        assert set(store.verify().index) == {*df.index, "other"}
        damaged = store.damaged_videos(backend="emulator")
        assert sorted(run["run_id"] for run, _ in damaged) == ["cut", "gone"]
        assert all(isinstance(c, VideoCheck) and c.redownload for _, c in damaged)
        assert store.verify(experiment="nothing").empty


def test_a_ledger_from_before_the_mtime_column_is_migrated_and_checked_by_hash(tmp_path):
    root = tmp_path / "s"
    with Store(root) as store:
        rid, path = recorded_video(store)
    con = sqlite3.connect(root / "ledger.sqlite3")  # what a v2 ledger holds: no mtime
    con.execute("UPDATE runs SET video_mtime_ns = NULL")
    con.commit()
    con.close()
    with Store(root) as store:
        first = store.check_video(rid)
        assert first.ok and first.hashed
        assert store.get_run(rid)["video_mtime_ns"] == path.stat().st_mtime_ns
        assert not store.check_video(rid).hashed


def test_a_deleted_or_truncated_video_is_said_so_when_a_job_is_shown(make_client, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = make_client()
    job = client.submit("a red kite over dunes", model="wan2.5-t2v-preview", size="624*624",
                        duration=5).result(timeout=120)
    html_ok = job._repr_html_()
    assert "<video" in html_ok and "⚠" not in html_ok
    video = Path(job.video)
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    html_cut = job._repr_html_()
    assert "the video file is truncated" in html_cut and "<video" in html_cut
    video.unlink()
    html_gone = job._repr_html_()
    assert "the video file was deleted" in html_gone
    assert "outside the notebook" not in html_gone and "<video" not in html_gone
    gallery = job._manager.store.runs()  # the gallery says the same
    from wan_nb.display import gallery as make_gallery

    assert "the video file was deleted" in make_gallery([job])._repr_html_()
    assert len(gallery) == 1


def test_check_video_of_a_read_only_store_does_not_write(tmp_path):
    # a store that cannot record the new mtime still answers (and writes nothing)
    with Store(tmp_path / "s") as store:
        rid, path = recorded_video(store)
        os.utime(path, ns=(1, 1))
        store.read_only_reason = "test"
        assert store.check_video(rid).ok
        store.read_only_reason = None
        assert store.get_run(rid)["video_mtime_ns"] != 1
        with pytest.raises(StoreError):
            store.read_only_reason = "test"
            store.update_run(rid, rating=1)


@pytest.mark.skipif(not CAN_DROP_PRIVILEGES, reason="needs setpriv to test permissions as root")
def test_connect_without_a_key_reads_a_read_only_store(tmp_path, unlock):
    """The default start (no key: the embedded emulator) on a ledger this user may only
    read: it opens, reads and says so; nothing is written into the store."""
    root = tmp_path / "ro"
    filled_store(root, 5)
    lock_down(root / "ledger.sqlite3", root / "videos", root)
    unlock.append(root)
    before = tree_digest(root)
    result = unprivileged(f"""
        import io, contextlib, wan_nb
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            client = wan_nb.connect(store={str(root)!r})
        try:
            result = [len(client.to_dataframe()), out.getvalue()]
        finally:
            client.close()
    """)
    assert result[0] == 5 and "read-only" in result[1]
    assert tree_digest(root) == before


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv: a reader without write permission beside "
                           "a writer")
def test_a_read_only_reader_sees_what_a_writer_commits_later(tmp_path, unlock):
    """A reader that opened the ledger read-only (immutable: no WAL then) must not keep
    showing the rows of that moment after a writer commits more."""
    root = tmp_path / "ro"
    filled_store(root, 3)
    lock_down(root / "ledger.sqlite3", root)
    unlock.append(root)
    ready, written = tmp_path / "ready", tmp_path / "written"
    reader = subprocess.Popen(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--",
         sys.executable, "-c", textwrap.dedent(f"""
            import pathlib, time
            from wan_nb.store import Store
            store = Store({str(root)!r})
            first = len(store)
            pathlib.Path({str(ready)!r}).touch()
            deadline = time.monotonic() + 60
            while not pathlib.Path({str(written)!r}).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            print(store.read_only, first, len(store), len(store.to_dataframe()))
        """)] if os.geteuid() == 0 else [sys.executable, "-c", "print('skip')"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and reader.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), reader.stderr.read()
        with Store(root) as writer:  # root writes despite the modes, as another user could
            writer.insert_runs([{"experiment": "e", "prompt": f"later {i}", "seed": i}
                                for i in range(50)])
        written.touch()
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    assert out.split() == ["True", "3", "53", "53"], err
