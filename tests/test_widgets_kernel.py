"""In a real kernel: a Studio made in a cell is closed, with every callback it held, when that
cell runs again (the front end sends the cell's id with each execution, as JupyterLab does)."""

from __future__ import annotations

import json
import time

import pytest

from .test_kernel import kernel, kernel_and_manager, stdout  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]


def run_cell(kc, code: str, cell_id: str | None, timeout: float = 180) -> list[dict]:
    """Execute ``code`` as the cell ``cell_id`` (the metadata JupyterLab sends)."""
    content = {"code": code, "silent": False, "store_history": True,
               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
    msg = kc.session.msg("execute_request", content,
                         metadata={"cellId": cell_id} if cell_id else {})
    kc.shell_channel.send(msg)
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        messages.append(m)
        if (m["parent_header"].get("msg_id") == msg["header"]["msg_id"]
                and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"):
            break
    reply = kc.get_shell_msg(timeout=timeout)
    assert reply["content"]["status"] == "ok", reply["content"]
    return messages


def test_running_a_studios_cell_again_closes_the_old_one(kernel):  # noqa: F811
    run_cell(kernel, """
import json, wan_nb
client = wan_nb.connect(quiet=True)
job = client.submit("kept running", model="wan2.5-t2v-preview", size="832*480", seed=1)
def counts():
    return {"added": len(client.manager._added), "job": len(job._state.callbacks)}
print(json.dumps(counts()))
""", "setup")
    shown = []
    for _ in range(3):  # the same cell, three times
        run_cell(kernel, "studio = wan_nb.Studio(client)\nstudio", "studio-cell")
        msgs = run_cell(kernel, "print(json.dumps({**counts(), 'closed': ["
                                "s._closed for s in seen]}) if 'seen' in dir() else "
                                "json.dumps(counts()))\nseen = globals().get('seen', []) "
                                "+ [studio]", "probe")
        shown.append(json.loads(stdout(msgs).strip().splitlines()[-1]))
    # one Studio's worth of callbacks at a time: the earlier ones were closed when the cell
    # ran again
    assert shown[0]["added"] == shown[1]["added"] == shown[2]["added"], shown
    assert shown[1]["closed"] == [True] and shown[2]["closed"] == [True, True], shown
    # a different cell keeps its own Studio open
    run_cell(kernel, "other = wan_nb.Studio(client)", "other-cell")
    msgs = run_cell(kernel, "print(json.dumps([studio._closed, other._closed]))", None)
    assert json.loads(stdout(msgs).strip().splitlines()[-1]) == [False, False]
