"""In a real Jupyter kernel: jobs keep progressing while another cell blocks, and widget
updates reach the front end after the submitting cell returned."""

from __future__ import annotations

import json
import queue
import time

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.kernel


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def execute(kc, code: str, timeout: float = 120) -> tuple[dict, list[dict]]:
    """Run ``code``; return the execute_reply and the iopub messages until idle."""
    msg_id = kc.execute(code)
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        messages.append(msg)
        if (msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    reply = kc.get_shell_msg(timeout=timeout)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply, messages


def drain(kc) -> list[dict]:
    out = []
    while True:
        try:
            out.append(kc.get_iopub_msg(timeout=0.05))
        except queue.Empty:
            return out


def stdout(messages: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in messages
                   if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def test_jobs_progress_during_a_blocking_cell_and_widgets_update(kernel):
    _, msgs = execute(kernel, """
import json, time, wan_nb
client = wan_nb.connect(quiet=True)
finished = {}
jobs = wan_nb.JobList(
    client.submit(f"kernel boat {i}", model="wan2.5-t2v-preview", size="624*624",
                  duration=5, seed=i)
    for i in range(3))
for j in jobs:
    j.on_change(lambda j: j.done and finished.setdefault(j.run_id, time.time()))
tracker = jobs.track()
display(tracker)
submitted_at = time.time()
""")
    assert any(m["msg_type"] == "display_data" for m in msgs)
    _, msgs = execute(kernel, """
t0 = time.time()
states_at_start = [j.status for j in jobs]
time.sleep(8)
t1 = time.time()
print(json.dumps({"t0": t0, "t1": t1, "submitted_at": submitted_at, "finished": finished,
                  "start": states_at_start, "end": [j.status for j in jobs],
                  "ok": [j.ok for j in jobs]}))
""")
    report = json.loads(stdout(msgs).strip().splitlines()[-1])
    assert report["ok"] == [True, True, True], report
    assert all(s != "SUCCEEDED" for s in report["start"]), report
    # every job finished while the other cell was blocked in time.sleep
    for when in report["finished"].values():
        assert report["t0"] <= when <= report["t1"], report
    # the tracker's trait updates were sent from the loop thread during the sleep
    updates = [m for m in msgs if m["msg_type"] == "comm_msg"
               and m["content"]["data"].get("method") == "update"]
    assert updates, "no widget updates reached the front end"
    texts = json.dumps([u["content"]["data"]["state"] for u in updates])
    assert "SUCCEEDED" in texts
