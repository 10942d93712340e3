"""One scheduler per account: kernels sharing a ledger share the account's limits.

The ledger members (``take_slots``, ``begin_create(limit=)``) are tested on the SQLite store
with an injected clock; the whole of it with several processes, each its own session on one
ledger folder, against one emulator CLI whose per-model limits are enforced."""

from __future__ import annotations

import datetime as dt
import multiprocessing

import pytest

from wan_nb.errors import ValidationError
from wan_nb.store import Store

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clocked(tmp_path):
    clock = Clock()
    with Store(tmp_path / "ledger", clock=clock) as store:
        yield store, clock


# -- take_slots ------------------------------------------------------------------------------

def test_turns_are_spaced_after_every_reservation(clocked):
    store, clock = clocked
    assert store.take_slots("acct", "create:m", interval=0.25) == 0.0
    assert store.take_slots("acct", "create:m", interval=0.25) == pytest.approx(0.25)
    assert store.take_slots("acct", "create:m", interval=0.25, count=2) == pytest.approx(0.5)
    assert store.take_slots("acct", "create:m", interval=0.25) == pytest.approx(1.0)
    # another pace, another account: their own turns
    assert store.take_slots("acct", "query", interval=0.05) == 0.0
    assert store.take_slots("other", "create:m", interval=0.25) == 0.0
    clock.advance(0.6)
    assert store.take_slots("acct", "create:m", interval=0.25) == pytest.approx(0.65)
    clock.advance(60)  # idle: past turns are not saved up, the next is now
    assert store.take_slots("acct", "create:m", interval=0.25) == 0.0
    assert store.take_slots("acct", "create:m", interval=0.25) == pytest.approx(0.25)


def test_turns_are_shared_by_every_store_on_the_folder(tmp_path):
    clock = Clock()
    with Store(tmp_path / "l", clock=clock) as a, Store(tmp_path / "l", clock=clock) as b:
        waits = [s.take_slots("acct", "query", interval=0.1) for s in (a, b, a, b)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize("kw, field", [
    ({"interval": 0}, "interval"), ({"interval": -1.0}, "interval"),
    ({"interval": float("nan")}, "interval"), ({"interval": "1"}, "interval"),
    ({"interval": 0.1, "count": 0}, "count"), ({"interval": 0.1, "count": 101}, "count"),
    ({"interval": 0.1, "count": True}, "count"),
    ({"interval": 0.1, "account": ""}, "account"),
    ({"interval": 0.1, "name": "x" * 201}, "name"),
])
def test_bad_slot_arguments_are_refused_and_nothing_is_reserved(clocked, kw, field):
    store, _ = clocked
    args = {"account": "acct", "name": "query", **kw}
    with pytest.raises(ValidationError, match=field):
        store.take_slots(args.pop("account"), args.pop("name"), **args)
    assert store.take_slots("acct", "query", interval=1.0) == 0.0  # nothing was taken


def test_takes_are_atomic_across_processes(tmp_path):
    """Eight processes race for 40 turns: every wait is a distinct turn, none shared."""
    root = tmp_path / "race"
    Store(root).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        waits = sorted(w for ws in pool.map(_take_five, [str(root)] * 8) for w in ws)
    # every process's clock is the real one: turns are 0.05 s apart in one sequence
    gaps = [b - a for a, b in zip(waits, waits[1:], strict=False)]
    assert len(waits) == 40 and min(gaps) > 0.03


def _take_five(root: str) -> list[float]:
    import time
    with Store(root) as store:
        out = []
        for _ in range(5):
            sent = time.time()
            out.append(sent + store.take_slots("acct", "query", interval=0.05))
        return out


# -- begin_create(limit=): tasks at once across kernels ----------------------------------------

def _run(store, owner, *, model="wan2.5-t2v-preview", prompt="p", status="QUEUED",
         backend="emulator", beat=None):
    return store.insert_run(model=model, prompt=prompt, status=status, backend=backend,
                            owner=owner, owner_heartbeat=beat or store._now(),
                            fingerprint=None)


def test_a_kernel_alone_on_a_model_is_not_held(clocked):
    store, _ = clocked
    runs = [_run(store, "A", prompt=f"p{i}") for i in range(4)]
    for rid in runs:
        assert store.begin_create(rid, sent_at=T0, limit=2) == ("started", None)


def test_with_another_live_kernel_the_limit_holds_for_both(clocked):
    store, clock = clocked
    a = [_run(store, "A", prompt=f"a{i}") for i in range(3)]
    b = _run(store, "B", prompt="b")  # B waits with a queued run of the same model
    assert store.begin_create(a[0], sent_at=T0, limit=2) == ("started", None)
    assert store.begin_create(a[1], sent_at=T0, limit=2) == ("started", None)
    assert store.begin_create(a[2], sent_at=T0, limit=2) == ("full", None)
    assert store.begin_create(b, sent_at=T0, limit=2) == ("full", None)
    assert store.get_run(b)["status"] == "QUEUED"  # nothing moved
    store.update_run(a[0], status="SUCCEEDED")  # a task ended: one place frees
    assert store.begin_create(b, sent_at=T0, limit=2) == ("started", None)
    assert store.begin_create(a[2], sent_at=T0, limit=2) == ("full", None)
    # another model, another limit
    c = _run(store, "A", model="wan2.1-t2v-turbo")
    assert store.begin_create(c, sent_at=T0, limit=2) == ("started", None)
    # no limit: as before
    assert store.begin_create(a[2], sent_at=T0) == ("started", None)
    clock.advance(1)


def test_a_dead_kernels_runs_stop_counting(clocked):
    store, clock = clocked
    dead = [_run(store, "dead", prompt=f"d{i}", status="RUNNING") for i in range(2)]
    mine = _run(store, "A")
    other = _run(store, "B", prompt="b")
    assert store.begin_create(mine, sent_at=T0, limit=2, stale_after=30) == ("full", None)
    clock.advance(31)
    store.heartbeat("A")
    store.heartbeat("B")
    assert store.begin_create(mine, sent_at=T0, limit=2, stale_after=30) == ("started", None)
    assert dead and other


def test_other_backends_do_not_count(clocked):
    store, _ = clocked
    for i in range(2):
        _run(store, "B", prompt=f"x{i}", status="RUNNING", backend="live:singapore")
    mine = _run(store, "A")
    assert store.begin_create(mine, sent_at=T0, limit=2) == ("started", None)
