"""Kill -9 a process in the middle of a batch; a new process resumes every job, and the
emulator (a separate process, like the real service) saw each task created exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from tests.conftest import CLI_KEY as KEY
N = 10


def _script(url: str, store: str, body: str) -> list[str]:
    code = textwrap.dedent(f"""
        import json, sys, time, wan_nb
        client = wan_nb.connect(api_key={KEY!r}, base_url={url!r}, store={store!r},
                                quiet=True)
    """) + textwrap.dedent(body)
    return [sys.executable, "-c", code]


def _rows(db: str) -> list[tuple]:
    if not os.path.exists(db):
        return []
    con = sqlite3.connect(db, timeout=5)
    try:
        return con.execute("SELECT run_id, status, task_id FROM runs").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def test_kill_9_mid_batch_then_resume(tmp_path, cli_emulator):
    store = str(tmp_path / "store")
    db = os.path.join(store, "ledger.sqlite3")
    first = subprocess.Popen(_script(cli_emulator, store, f"""
        for i in range({N}):
            client.submit(f"resume boat {{i}}", model="wan2.5-t2v-preview", size="624*624",
                          duration=5, seed=i)
        time.sleep(600)
    """), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = _rows(db)
        with_task = [r for r in rows if r[2]]
        if len(rows) == N and 3 <= len(with_task) < N:
            break
        time.sleep(0.02)
    else:
        first.kill()
        pytest.fail(f"batch never got mid-way: {_rows(db)}")
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stderr.close()
    before = _rows(db)
    assert any(r[1] in ("QUEUED", "SUBMITTING") for r in before), before

    second = subprocess.run(_script(cli_emulator, store, """
        client.jobs.wait(timeout=180, progress=False)
        rows = client.store.runs()
        print(json.dumps([[r["run_id"], r["status"], r["task_id"],
                           str(client.store.video_file(r)), r["download_error"]]
                          for r in rows]))
    """), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert len(result) == N
    assert {r[1] for r in result} == {"SUCCEEDED"}, result
    assert all(r[3] and os.path.getsize(r[3]) > 1000 for r in result)
    assert len({r[2] for r in result}) == N
    stats = httpx.get(f"{cli_emulator}/_emulator/stats",
                      headers={"Authorization": f"Bearer {KEY}"}).json()
    assert stats["creates"]["accepted"] == N  # nothing paid twice, nothing lost
