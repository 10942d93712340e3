"""Results of the 2026 models (issue 10 item 3): the usage shape, raw and as the official SDK
renders it; the pixel size from ``SR`` and ``ratio``; a rewrite the model does not disclose
recorded as not disclosed; the ledger's new columns and the migration of every older ledger.

Real SQLite files, the real emulator in-process; no mocks of wan_nb."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import stat
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.test_store import EXPECTED_DTYPES, V1_SQL
from tests.test_store_robustness import CAN_DROP_PRIVILEGES, lock_down, unprivileged
from wan_nb import catalog
from wan_nb.analysis import prompt_diff, summary
from wan_nb.emulator.app import create_app
from wan_nb.schedule import PollPolicy
from wan_nb.session import Client
from wan_nb.store import SCHEMA_VERSION, Store
from wan_nb.store_db import MIGRATIONS
from wan_nb.transitions import Counters, on_task_state
from wan_nb.wire import Usage, parse_task, service_usage

UTC = dt.timezone.utc
KEY = "sk-results-2026-0123456789"

# -- the usage shapes --------------------------------------------------------------------------

OLD = {"video_count": 1, "video_duration": 10, "video_ratio": "832*480"}
WAN26 = {"duration": 10, "size": "1280*720", "input_video_duration": 0,
         "output_video_duration": 10, "video_count": 1, "SR": 720}
NEW = {"duration": 10, "input_video_duration": 0, "output_video_duration": 10,
       "video_count": 1, "ratio": "16:9", "SR": 720}  # reference §7.3, as the service sends it


def sdk_classic(raw: dict) -> dict:
    """What ``VideoSynthesis.call(...).usage`` is for this answer (SDK 2.0.2, unchanged)."""
    sdk = pytest.importorskip("dashscope.api_entities.dashscope_response")
    return dict(sdk.VideoSynthesisUsage(**raw))


def sdk_v2(raw: dict) -> object:
    """What ``Client().videos.jobs`` gives as ``job.usage`` (its pydantic model)."""
    common = pytest.importorskip("dashscope.v2.types.common")
    return common.Usage(**raw)


@pytest.mark.parametrize("raw, model, columns", [
    (OLD, "wan2.5-t2v-preview", {
        "usage_video_count": 1, "usage_video_duration": 10, "usage_video_ratio": "832*480",
        "usage_duration": None, "usage_size": None, "usage_sr": None, "usage_ratio": None,
        "usage_width": 832, "usage_height": 480, "usage_input_video_duration": None,
        "usage_output_video_duration": None}),
    (WAN26, "wan2.6-t2v", {
        "usage_video_count": 1, "usage_video_duration": None, "usage_video_ratio": None,
        "usage_duration": 10, "usage_size": "1280*720", "usage_sr": 720, "usage_ratio": None,
        "usage_width": 1280, "usage_height": 720, "usage_input_video_duration": 0,
        "usage_output_video_duration": 10}),
    (NEW, "wan2.7-t2v", {
        "usage_video_count": 1, "usage_video_duration": None, "usage_video_ratio": None,
        "usage_duration": 10, "usage_size": None, "usage_sr": 720, "usage_ratio": "16:9",
        "usage_width": 1280, "usage_height": 720, "usage_input_video_duration": 0,
        "usage_output_video_duration": 10}),
], ids=["wan2.5", "wan2.6", "2026"])
@pytest.mark.parametrize("rendering", ["raw", "sdk classic", "sdk v2"])
def test_every_usage_shape_gives_the_same_columns_raw_or_rendered_by_the_sdk(
        raw, model, columns, rendering):
    given = {"raw": lambda r: dict(r), "sdk classic": sdk_classic, "sdk v2": sdk_v2}[rendering](raw)
    usage = Usage.parse(given)
    assert usage is not None
    assert usage.columns(model) == columns
    # what is recorded as "usage as the service sent it" is that, not the SDK's fillers
    assert dict(usage.raw) == raw
    assert usage.seconds == 10


def test_the_sdk_fillers_are_what_they_are_said_to_be():
    """The classic SDK invents ``video_duration: 0`` and ``video_ratio: ""`` for the new
    shape: recorded as facts they would say "0 s billed"."""
    assert sdk_classic(NEW) == {**NEW, "video_duration": 0, "video_ratio": ""}
    assert service_usage(sdk_classic(NEW)) == NEW
    assert service_usage(sdk_classic(OLD)) == OLD  # nothing filled in: nothing taken out


@pytest.mark.parametrize("usage", [None, {}, [], "720P", 3])
def test_no_usage_or_a_usage_that_is_no_object_is_none(usage):
    assert Usage.parse(usage) is None


def test_values_of_the_wrong_type_are_left_out_not_trusted():
    u = Usage.parse({"SR": "720", "ratio": 16, "output_video_duration": "10",
                     "video_count": 1.5, "duration": True})
    assert u is not None
    assert (u.sr, u.ratio, u.output_video_duration, u.video_count, u.duration) == (
        720, None, None, None, None)


# -- the pixel size from SR and ratio ----------------------------------------------------------

@pytest.mark.parametrize("model, sr, ratio, pixels", [
    ("wan2.7-t2v", 720, "16:9", (1280, 720)),
    ("wan2.7-t2v", 720, "4:3", (1104, 832)),  # not the size table's 1088*832
    ("wan2.7-t2v", 720, "3:4", (832, 1104)),
    ("wan2.7-t2v", 1080, "4:3", (1648, 1248)),
    ("wan2.7-t2v", 1080, "9:16", (1080, 1920)),
    ("wan2.7-t2v-2026-04-25", 1080, "1:1", (1440, 1440)),
    ("happyhorse-1.0-t2v", 1080, "3:4", (1248, 1648)),
    ("happyhorse-1.0-t2v", 720, "1:1", (960, 960)),
    ("wan2.7-t2v", 480, "16:9", None),  # wan2.7 has no 480P: not guessed
    ("wan2.7-t2v", 720, "21:9", None),
    ("a-model-from-the-future", 720, "16:9", None),
])
def test_the_pixel_size_follows_from_sr_and_ratio_through_the_catalog(model, sr, ratio, pixels):
    usage = Usage.parse({**NEW, "SR": sr, "ratio": ratio})
    assert usage is not None
    assert usage.resolution == f"{sr}P"
    assert usage.pixels(model) == pixels
    if pixels is not None:
        assert pixels == catalog.pixels(model, f"{sr}P", ratio)
    width, height = pixels or (None, None)
    assert (usage.columns(model)["usage_width"], usage.columns(model)["usage_height"]) == (
        width, height)


def test_a_named_size_wins_and_no_model_is_needed_for_it():
    assert Usage.parse(WAN26).pixels(None) == (1280, 720)  # type: ignore[union-attr]
    assert Usage.parse(NEW).pixels(None) is None  # type: ignore[union-attr]


# -- a 2026 answer through the decisions into the ledger and its DataFrame ---------------------

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = PollPolicy()


def succeeded(task_id: str, prompt: str, usage: dict, actual: str | None = None) -> dict:
    out = {"task_id": task_id, "task_status": "SUCCEEDED", "orig_prompt": prompt,
           "submit_time": "2026-05-01 20:00:01.000", "scheduled_time": "2026-05-01 20:00:05.000",
           "end_time": "2026-05-01 20:04:05.000",
           "video_url": "https://oss.example.com/v.mp4?Expires=1777700000"}
    if actual is not None:
        out["actual_prompt"] = actual
    return {"request_id": "r-" + task_id, "output": out, "usage": usage}


def record_answer(store: Store, rid: str, body: dict) -> None:
    row = store.get_run(rid)
    decision = on_task_state(row, parse_task(body), Counters(), T0, POLICY)
    store.update_run(rid, **decision.write)


def test_a_2026_answer_is_recorded_with_its_pixels_cost_and_an_undisclosed_rewrite(tmp_path):
    store = Store(tmp_path / "s")
    common = dict(prompt="a heron at dawn", prompt_extend=True, status="RUNNING", duration=10,
                  created_at=T0, sent_at=T0)
    rows = {
        "wan2.7": store.insert_run(model="wan2.7-t2v", resolution="720P", ratio="4:3",
                                   width=1104, height=832, task_id="t27", cost_usd=1.0,
                                   **common),
        "happyhorse": store.insert_run(model="happyhorse-1.0-t2v", resolution="1080P",
                                       ratio="9:16", width=1080, height=1920, task_id="thh",
                                       **common),
        "wan2.6": store.insert_run(model="wan2.6-t2v", size="1280*720", resolution="720P",
                                   ratio="16:9", task_id="t26", **common),
        "wan2.5": store.insert_run(model="wan2.5-t2v-preview", size="832*480",
                                   resolution="480P", ratio="16:9", task_id="t25", **common),
        "wan2.5 same": store.insert_run(model="wan2.5-t2v-preview", size="832*480",
                                        resolution="480P", ratio="16:9", task_id="t25s",
                                        **common),
    }
    record_answer(store, rows["wan2.7"], succeeded("t27", "a heron at dawn",
                                                   {**NEW, "ratio": "4:3"}))
    record_answer(store, rows["happyhorse"], succeeded(
        "thh", "a heron at dawn", sdk_classic({**NEW, "SR": 1080, "ratio": "9:16"})))
    record_answer(store, rows["wan2.6"], succeeded("t26", "a heron at dawn", WAN26))
    record_answer(store, rows["wan2.5"], succeeded("t25", "a heron at dawn", OLD,
                                                   actual="A grey heron at dawn, mist."))
    record_answer(store, rows["wan2.5 same"], succeeded("t25s", "a heron at dawn", OLD,
                                                        actual="a heron at dawn"))
    df = store.to_dataframe().loc[list(rows.values())]
    df.index = pd.Index(list(rows))
    assert df["prompt_rewritten"].tolist() == [pd.NA, pd.NA, pd.NA, True, False]
    assert df["actual_prompt"].isna().tolist() == [True, True, True, False, False]
    assert df["usage_width"].tolist() == [1104, 1080, 1280, 832, 832]
    assert df["usage_height"].tolist() == [832, 1920, 720, 480, 480]
    assert df["usage_ratio"].tolist() == ["4:3", "9:16", pd.NA, pd.NA, pd.NA]
    assert df["usage_sr"].tolist() == [720, 1080, 720, pd.NA, pd.NA]
    # billed by resolution: 10 s at 720P, 1080P, 720P, 480P, 480P
    assert df["cost_usd"].tolist() == pytest.approx([1.0, 1.5, 1.0, 0.5, 0.5])
    hh = store.get_run(rows["happyhorse"])
    assert hh["usage_video_duration"] is None and hh["usage_video_ratio"] is None
    assert json.loads(df.loc["happyhorse", "usage_json"]) == {**NEW, "SR": 1080,
                                                              "ratio": "9:16"}
    assert hh["prompt_rewritten"] is None and hh["actual_prompt"] is None
    store.close()


def test_a_run_whose_price_cannot_be_told_keeps_its_estimate():
    row = {"status": "RUNNING", "task_id": "t", "model": "a-model-from-the-future",
           "resolution": "720P", "created_at": T0, "sent_at": T0}
    d = on_task_state(row, parse_task(succeeded("t", "p", NEW)), Counters(), T0, POLICY)
    assert "cost_usd" not in d.write and d.write["usage_sr"] == 720
    assert d.write["usage_width"] is None


def test_runs_on_the_emulator_read_back_with_their_rewrite_disclosed_or_not(tmp_path):
    """End to end, in-process: the models that do not disclose their rewrite are recorded with
    no actual_prompt and prompt_rewritten missing, beside one that does; the 2026 usage gives
    the video's pixels and its cost by resolution."""
    app = create_app(api_keys=(KEY,), data_dir=tmp_path / "emu")
    client = Client(KEY, base_url="http://emulator.test/api/v1",
                    transport=httpx.ASGITransport(app=app), store=tmp_path / "store")
    prompt = "a lantern in the fog"
    try:
        jobs = {
            "wan2.7": client.submit(prompt, model="wan2.7-t2v", resolution="720P",
                                    ratio="4:3", duration=2, seed=3),
            "happyhorse": client.submit(prompt, model="happyhorse-1.0-t2v",
                                        resolution="720P", ratio="9:16", duration=3, seed=3),
            "wan2.6": client.submit(prompt, model="wan2.6-t2v", size="1280*720", duration=2,
                                    seed=3),
            "wan2.5": client.submit(prompt, model="wan2.5-t2v-preview", size="832*480",
                                    duration=5, seed=3),
        }
        for job in jobs.values():
            job.result(timeout=120)
        df = client.to_dataframe().loc[[j.run_id for j in jobs.values()]]
        df.index = pd.Index(list(jobs))
        assert df["actual_prompt"].isna().tolist() == [True, True, True, False]
        assert df["prompt_rewritten"].isna().tolist() == [True, True, True, False]
        assert df["resolution"].tolist() == ["720P", "720P", "720P", "480P"]
        assert df["ratio"].tolist() == ["4:3", "9:16", "16:9", "16:9"]
        assert df["usage_ratio"].tolist() == ["4:3", "9:16", pd.NA, pd.NA]
        assert list(zip(df["usage_width"], df["usage_height"], strict=True)) == [
            (1104, 832), (720, 1280), (1280, 720), (832, 480)]
        assert list(zip(df["usage_width"], df["usage_height"], strict=True)) == list(
            zip(df["width"], df["height"], strict=True))  # the service made what was asked
        assert df["cost_usd"].tolist() == pytest.approx([0.2, 0.3, 0.2, 0.25])
        hh = jobs["happyhorse"]
        assert (hh.resolution, hh.ratio, hh.usage_sr, hh.usage_ratio) == (
            "720P", "9:16", 720, "9:16")
        assert client.store.get_run(hh.run_id)["prompt_rewritten"] is None
        # the models compare row by row, by resolution and ratio, whatever their protocol
        table = summary(client.to_dataframe(), by=["model", "resolution", "ratio"])
        assert table["succeeded"].sum() == 4 and len(table) == 4
        assert table.loc[("wan2.7-t2v", "720P", "4:3"), "total_cost_usd"] == pytest.approx(0.2)
        diffs = prompt_diff(df)
        assert diffs["similarity"].isna().tolist() == [True, True, True, False]
    finally:
        client.close()


# -- ledgers of every older version ------------------------------------------------------------

OLD_ROWS = (  # what a size-protocol wan_nb recorded: a wan2.5 run at 4:3, a wan2.6 one
    "INSERT INTO runs (run_id, tags, created_at, updated_at, model, prompt, size, width, "
    "height, tier, duration, prompt_extend, status, task_id, usage_video_count, "
    "usage_video_duration, usage_video_ratio, usage_json, cost_usd) VALUES "
    "('20250201000000-00000001', '[]', '2025-02-01T00:00:00.000000+00:00', "
    "'2025-02-01T00:00:00.000000+00:00', 'wan2.5-t2v-preview', 'an old fox', '1088*832', "
    "1088, 832, '720P', 5, 1, 'SUCCEEDED', 'task-25', 1, 5, '1088*832', "
    "'{\"video_count\": 1, \"video_duration\": 5, \"video_ratio\": \"1088*832\"}', 0.5)",
    "INSERT INTO runs (run_id, tags, created_at, updated_at, model, prompt, size, width, "
    "height, tier, duration, prompt_extend, status, task_id, usage_duration, usage_size, "
    "usage_sr, usage_output_video_duration, cost_usd) VALUES "
    "('20250201000001-00000002', '[]', '2025-02-01T00:00:01.000000+00:00', "
    "'2025-02-01T00:00:01.000000+00:00', 'wan2.6-t2v', 'an old owl', '1920*1080', 1920, "
    "1080, '1080P', 10, 1, 'SUCCEEDED', 'task-26', 10, '1920*1080', 1080, 10, 1.5)",
)
FOX, OWL = "20250201000000-00000001", "20250201000001-00000002"


def old_ledger(root: Path, version: int) -> Path:
    """A ledger as wan_nb at schema ``version`` left it: the hand-written v1 file of
    tests/test_store.py, then the frozen steps that version ran, then its runs."""
    root.mkdir(parents=True)
    con = sqlite3.connect(root / "ledger.sqlite3")
    con.executescript(V1_SQL)
    for step in MIGRATIONS[1:version]:
        for statement in step:
            con.execute(statement)
    for statement in OLD_ROWS:
        con.execute(statement)
    con.execute(f"PRAGMA user_version = {version}")
    con.commit()
    con.close()
    return root


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_every_older_ledger_migrates_to_the_newest_and_takes_a_verdict(tmp_path, version):
    root = old_ledger(tmp_path / f"v{version}", version)
    with Store(root) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.get_run(FOX)["keep"] is None  # v6: no verdict yet
        store.update_run(FOX, keep=True, rating=5)
        assert store.to_dataframe().loc[FOX, ["keep", "rating"]].tolist() == [True, 5]


# the ledgers from before v5, which derives resolution and ratio from their size
@pytest.mark.parametrize("version", range(1, 5))
def test_a_ledger_of_every_older_version_migrates_and_reads_back(tmp_path, version):
    root = old_ledger(tmp_path / f"v{version}", version)
    with Store(root) as store:
        assert store.schema_version == SCHEMA_VERSION
        fox, owl = store.get_run(FOX), store.get_run(OWL)
        assert (fox["resolution"], fox["ratio"]) == ("720P", "4:3")
        assert (owl["resolution"], owl["ratio"]) == ("1080P", "16:9")
        assert (fox["usage_width"], fox["usage_height"]) == (1088, 832)
        assert (owl["usage_width"], owl["usage_height"]) == (1920, 1080)
        assert fox["usage_ratio"] is None and owl["usage_ratio"] is None
        assert (fox["prompt"], fox["cost_usd"], owl["usage_sr"]) == ("an old fox", 0.5, 1080)
        no_size = store.get_run("20250101000000-0000abcd")  # V1_SQL's own run
        assert (no_size["resolution"], no_size["usage_width"]) == (None, None)
        df = store.to_dataframe()
        assert {c: str(t) for c, t in df.dtypes.items()} == EXPECTED_DTYPES
        assert df.loc[FOX, "resolution"] == "720P" and df.loc[OWL, "ratio"] == "16:9"
        assert df.loc[FOX, "prompt_rewritten"] is pd.NA  # no actual_prompt was recorded
        store.update_run(FOX, usage_ratio="4:3", resolution="720P")
        new = store.insert_run(prompt="a new heron", model="wan2.7-t2v", resolution="1080P",
                               ratio="3:4", width=1248, height=1648)
        assert store.get_run(new)["ratio"] == "3:4"
    with Store(root) as again:  # a migrated file opens as it is
        assert again.get_run(FOX)["usage_ratio"] == "4:3" and len(again) == 5


@pytest.fixture
def locked_ledger(tmp_path):
    """A v4 ledger whose file and folder are read-only (write permission given back after)."""
    root = old_ledger(tmp_path / "v4", 4)
    lock_down(root / "ledger.sqlite3", root)
    yield root
    for p in (root, *root.rglob("*")):
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.mark.skipif(not CAN_DROP_PRIVILEGES, reason="needs setpriv to test permissions as root")
def test_an_older_ledger_read_only_shows_the_columns_the_migration_would_fill(locked_ledger):
    root = locked_ledger
    result = unprivileged(f"""
        from wan_nb.store import Store
        s = Store({str(root)!r})
        fox = s.get_run({FOX!r})
        df = s.to_dataframe()
        result = [s.read_only, fox["resolution"], fox["ratio"], fox["usage_width"],
                  str(df.loc[{OWL!r}, "resolution"]), int(df.loc[{OWL!r}, "usage_height"]),
                  str(df["ratio"].dtype)]
    """)
    assert result == [True, "720P", "4:3", 1088, "1080P", 1080, "category"]
