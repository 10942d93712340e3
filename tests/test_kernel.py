"""In a real Jupyter kernel: jobs keep progressing while another cell blocks, widget updates
reach the front end after the submitting cell returned, and everything behaves the same in a
kernel where ``nest_asyncio.apply()`` was called first."""

from __future__ import annotations

import json
import queue
import time

import pytest
from jupyter_client.manager import start_new_kernel

# a kernel start, jobs on the embedded emulator and a kernel shutdown: more than the default
# per-test timeout on a loaded machine
pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]


@pytest.fixture
def kernel_and_manager(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    monkeypatch.delenv("WAN_NB_STORE", raising=False)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        yield kc, km
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(kernel_and_manager):
    return kernel_and_manager[0]


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
changes = []  # (time, run_id, status, done) of every change the toolkit reported
jobs = wan_nb.JobList(
    client.submit(f"kernel boat {i}", model="wan2.5-t2v-preview", size="624*624",
                  duration=5, seed=i)
    for i in range(3))
for j in jobs:
    j.on_change(lambda j: changes.append((time.time(), j.run_id, j.status, j.done)))
tracker = jobs.track()
display(tracker)
""")
    assert any(m["msg_type"] == "display_data" for m in msgs)
    # This cell never yields to the kernel's event loop: it blocks in time.sleep until the jobs
    # are done (or a deadline that only a stall reaches). Whatever happens to the jobs while it
    # runs is the work of the toolkit's own thread.
    _, msgs = execute(kernel, """
t0 = time.time()
polls_at_start = dict(client.manager.stats)
states_at_start = [j.status for j in jobs]
done_at_start = [j.done for j in jobs]
deadline = time.monotonic() + 240
while not all(j.done for j in jobs) and time.monotonic() < deadline:
    time.sleep(0.2)
t1 = time.time()
print(json.dumps({"t0": t0, "t1": t1, "changes": changes, "start": states_at_start,
                  "runs": [j.run_id for j in jobs], "done_at_start": done_at_start,
                  "end": [j.status for j in jobs], "ok": [j.ok for j in jobs],
                  "polls_at_start": polls_at_start, "polls": dict(client.manager.stats)}))
""", timeout=300)
    report = json.loads(stdout(msgs).strip().splitlines()[-1])
    assert report["ok"] == [True, True, True], report
    # the jobs moved on while the cell was blocked: every job not done when it started ended
    # during it, the toolkit reported changes and asked the service for news meanwhile
    not_done = {run for run, done in zip(report["runs"], report["done_at_start"], strict=True)
                if not done}
    ended_during = {run for t, run, _, done in report["changes"]
                    if done and report["t0"] <= t <= report["t1"]}
    assert not_done and not_done <= ended_during, report
    polls = sum(report["polls"].get(k, 0) - report["polls_at_start"].get(k, 0)
                for k in ("queries", "lists"))
    assert polls > 0, report
    # the tracker's trait updates were sent from the loop thread during the blocking cell
    updates = [m for m in msgs if m["msg_type"] == "comm_msg"
               and m["content"]["data"].get("method") == "update"]
    assert updates, "no widget updates reached the front end"
    texts = json.dumps([u["content"]["data"]["state"] for u in updates])
    assert "SUCCEEDED" in texts


def report_of(msgs: list[dict]) -> dict:
    return json.loads(stdout(msgs).strip().splitlines()[-1])


@pytest.mark.parametrize("nest", [False, True], ids=["plain", "nest_asyncio"])
def test_jobs_await_wait_tracker_and_close_behave_the_same_beside_nest_asyncio(
        kernel_and_manager, nest):
    kc, km = kernel_and_manager
    if nest:
        # what many notebooks do out of habit, before anything else
        execute(kc, """
import asyncio, nest_asyncio
nest_asyncio.apply()
assert asyncio._nest_patched and asyncio.get_event_loop()._nest_patched
""")
    execute(kc, """
import asyncio, json, time, wan_nb
client = wan_nb.connect(store="runs", quiet=True)
assert client.emulator is not None  # no DASHSCOPE_API_KEY: the embedded emulator
SMALL = dict(model="wan2.5-t2v-preview", size="624*624", duration=5)
def said(jobs):
    print(json.dumps({"status": [j.status for j in jobs], "ok": [j.ok for j in jobs],
                      "videos": [bool(j.video) for j in jobs]}))
""")
    # a blocking wait from a cell
    _, msgs = execute(kc, """
said([client.submit("beside nest_asyncio: result", seed=1, **SMALL).result(timeout=240)])
""", timeout=300)
    assert report_of(msgs) == {"status": ["SUCCEEDED"], "ok": [True], "videos": [True]}
    # top-level await in a cell (IPython runs the cell as a coroutine on the kernel's loop)
    _, msgs = execute(kc, """
said([await client.submit("beside nest_asyncio: await", seed=2, **SMALL)])
""", timeout=300)
    assert report_of(msgs) == {"status": ["SUCCEEDED"], "ok": [True], "videos": [True]}
    if nest:
        # what nest_asyncio is applied for: asyncio.run inside the kernel's running loop
        _, msgs = execute(kc, """
async def one():
    return await client.submit("beside nest_asyncio: asyncio.run", seed=3, **SMALL)
said([asyncio.run(one())])
""", timeout=300)
        assert report_of(msgs) == {"status": ["SUCCEEDED"], "ok": [True], "videos": [True]}
    # a batch with a live tracker, waited for with JobList.wait
    _, msgs = execute(kc, """
jobs = wan_nb.JobList(client.submit(f"beside nest_asyncio: batch {i}", seed=10 + i, **SMALL)
                      for i in range(3))
tracker = jobs.track()
display(tracker)
jobs.wait(timeout=240, progress=False)
said(jobs)
""", timeout=300)
    assert report_of(msgs) == {"status": ["SUCCEEDED"] * 3, "ok": [True] * 3,
                               "videos": [True] * 3}
    assert any(m["msg_type"] == "display_data" for m in msgs)
    updates = json.dumps([m["content"]["data"]["state"] for m in msgs
                          if m["msg_type"] == "comm_msg"
                          and m["content"]["data"].get("method") == "update"])
    assert "SUCCEEDED" in updates, "the tracker's updates did not reach the front end"
    # close() stops the background work and returns: a hang would leave this cell running
    try:
        _, msgs = execute(kc, """
_t = time.monotonic()
client.close()
print(json.dumps({"close_s": time.monotonic() - _t}))
""", timeout=90)
    except queue.Empty:
        km.interrupt_kernel()  # the KeyboardInterrupt's traceback shows where close() waits
        tail = [m["content"] for m in drain(kc) if m["msg_type"] in ("error", "stream")]
        pytest.fail(f"client.close() did not return within 90 s; after an interrupt: {tail}")
    assert report_of(msgs)["close_s"] < 15, report_of(msgs)
    # the kernel is still usable, and the ledger says every run succeeded
    _, msgs = execute(kc, """
print(json.dumps(sorted(set(wan_nb.Store("runs").to_dataframe()["status"]))))
""")
    assert json.loads(stdout(msgs).strip().splitlines()[-1]) == ["SUCCEEDED"]
