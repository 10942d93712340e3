"""The pure decision for an ambiguous create (wan_nb.reconcile), as a table."""

from __future__ import annotations

import pytest

from wan_nb.reconcile import create_key, match_created_task
from wan_nb.request import GenerationRequest
from wan_nb.wire import TaskSummary


def task(task_id: str) -> TaskSummary:
    return TaskSummary(task_id, "SUCCEEDED", "wan2.5-t2v-preview", None, None, None, None, None)


A, B, C = task("a"), task("b"), task("c")
MINE = "a fox"

CASES = [
    # candidates (task, orig_prompt), others_pending, siblings_pending -> kind, task
    ("nothing listed: no task was made", [], 0, 0, "absent", None),
    ("one ended task with this prompt", [(A, MINE)], 0, 0, "found", A),
    ("this prompt among others' ended tasks", [(A, "other"), (B, MINE)], 0, 0, "found", B),
    ("this prompt, and another that has not ended", [(A, MINE), (B, None)], 2, 0,
     "found", A),
    ("only others' ended tasks: none is this create's", [(A, "x"), (B, "y")], 0, 0,
     "absent", None),
    ("two tasks with this prompt: never pick one", [(A, MINE), (B, MINE)], 0, 0,
     "undecided", None),
    ("one task not ended, nothing else unresolved", [(A, None)], 0, 0, "found", A),
    ("one task not ended, another create unresolved", [(A, None)], 1, 0, "undecided", None),
    ("two tasks not ended", [(A, None), (B, None)], 0, 0, "undecided", None),
    ("a same-prompt sibling unresolved: even a confirmed task waits", [(A, MINE)], 0, 1,
     "undecided", None),
    ("a same-prompt sibling unresolved, nothing listed: absent", [], 0, 1, "absent", None),
    ("prompts compare exactly", [(A, MINE + " "), (B, "A fox"), (C, None)], 0, 0,
     "found", C),
]


@pytest.mark.parametrize("why,candidates,others,siblings,kind,found", CASES,
                         ids=[c[0] for c in CASES])
def test_match_created_task(why, candidates, others, siblings, kind, found):
    match = match_created_task(MINE, candidates, others_pending=others,
                               siblings_pending=siblings)
    assert (match.kind, match.task) == (kind, found)
    assert bool(match.why) == (kind == "undecided")


def test_create_key_is_what_the_service_reports():
    one = GenerationRequest("a fox", model="wan2.5-t2v-preview", size="832*480", seed=1)
    assert create_key(one) == create_key(one.replace(seed=2, negative_prompt="blur"))
    assert create_key(one) != create_key(one.replace(prompt="a fox!"))
    assert create_key(one) != create_key(one.replace(model="wan2.2-t2v-plus"))
