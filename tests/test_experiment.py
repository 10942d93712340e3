"""Experiments: sweeps against the real emulator, dedupe, budgets, restart, frozen reruns."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import wan_nb
from wan_nb.errors import ValidationError
from wan_nb.experiment import Experiment, derived_seed

BASE = {"model": "wan2.5-t2v-preview", "size": "624*624", "duration": 5}
PROMPTS = ["a paper boat at dawn", "一只狐狸侦探在雨夜的办公室里", "a red kite over dunes"]


def creates(client) -> int:
    return client.emulator.app.state.emulator.stats()["creates"]["accepted"]


def test_grid_runs_once_and_rerunning_the_cell_pays_nothing(make_client):
    client = make_client()
    exp = Experiment("fox-rewrite", base=BASE, client=client)
    exp.grid(prompt=PROMPTS, seed=[1, 2, 3], prompt_extend=[True, False])
    assert len(exp.variants) == 18
    est = exp.estimate()
    assert (est["new_runs"], est["reused_runs"]) == (18, 0)
    assert est["estimated_cost_usd"] == pytest.approx(18 * 0.25)
    assert est["eta_seconds"] > 0 and est["prices_are_estimates"]
    jobs = exp.run()
    assert len(jobs) == 18
    exp.wait(timeout=240, progress=False)
    assert all(j.ok for j in jobs), [j.error for j in jobs]
    assert creates(client) == 18

    # the same cell again: same requests, re-attached, zero new tasks
    again = Experiment("fox-rewrite", base=BASE, client=client)
    again.grid(prompt=PROMPTS, seed=[1, 2, 3], prompt_extend=[True, False])
    assert again.estimate()["new_runs"] == 0
    jobs2 = again.run()
    assert sorted(j.run_id for j in jobs2) == sorted(j.run_id for j in jobs)
    assert creates(client) == 18

    df = exp.to_dataframe()
    assert len(df) == 18 and df.index.name == "run_id"
    assert set(df["variant"]) == {v.key for v in exp.variants}
    rewritten = df[df["prompt_extend"]]
    kept = df[~df["prompt_extend"].astype(bool)]
    assert rewritten["prompt_rewritten"].all()
    assert (kept["actual_prompt"] == kept["prompt"]).all()
    assert str(df["created_at"].dtype).startswith("datetime64") and df["created_at"].dt.tz
    assert isinstance(df["model"].dtype, pd.CategoricalDtype)
    assert df["seed"].dtype == "Int64"
    assert df["video_path"].notna().all() and df["has_audio"].all()

    summary = exp.summary(by="prompt_extend")
    assert list(summary["count"]) == [9, 9]
    diff = exp.prompt_diff()
    assert len(diff) == 18

    # force=True re-rolls: new tasks on purpose
    forced = Experiment("fox-rewrite", base=BASE, client=client)
    forced.add("one", prompt=PROMPTS[0], seed=1, prompt_extend=True)
    forced.run(force=True)[0].result(timeout=60)
    assert creates(client) == 19


def test_budget_is_a_hard_cap(make_client):
    client = make_client()
    with pytest.raises(ValidationError, match="no prompt"):
        Experiment("budget", base=BASE, client=client).grid(seed=range(10)).run()
    exp = Experiment("budget", base={**BASE, "prompt": "dunes"}, client=client)
    exp.grid(seed=range(10))
    jobs = exp.run(budget=1.0)  # 0.25 USD (estimated) each
    assert len(jobs) == 4 and len(exp.skipped) == 6
    jobs.wait(timeout=120, progress=False)
    assert creates(client) == 4
    with pytest.raises(ValidationError, match="budget"):
        exp.run(budget=-1)


def test_bad_variants_are_refused_before_anything_is_recorded(make_client):
    client = make_client()
    exp = Experiment("bad", base={"model": "wan2.2-t2v-plus"}, client=client)
    exp.grid(size=["832*480", "1280*720"], duration=[5, 10])
    with pytest.raises(ValidationError) as info:
        exp.run()
    text = str(info.value)
    assert "size=1280*720" in text and "duration=10" in text
    assert "not offered by wan2.2-t2v-plus" in text
    assert len(client.store) == 0 and creates(client) == 0
    with pytest.raises(ValidationError, match="non-empty name"):
        Experiment("  ")


def test_seeds_are_derived_reproducibly():
    a = Experiment("same").grid(prompt=["x", "y"])
    b = Experiment("same").grid(prompt=["x", "y"])
    assert [r.seed for _, r in a.requests()] == [r.seed for _, r in b.requests()]
    assert a.requests()[0][1].seed == derived_seed("same", "prompt#0")
    assert a.requests()[0][1].seed != a.requests()[1][1].seed


def test_rerun_with_frozen_rewrite_and_ratings(make_client):
    client = make_client()
    exp = Experiment("freeze", base=BASE, client=client)
    exp.add("fox", prompt="a fox detective", seed=42)
    job = exp.run()[0].result(timeout=60)
    original = client.store.get_run(job.run_id)
    assert original["actual_prompt"] and original["actual_prompt"] != original["prompt"]
    frozen = exp.rerun(job.run_id).result(timeout=60)
    row = client.store.get_run(frozen.run_id)
    assert row["prompt"] == original["actual_prompt"]
    assert row["prompt_extend"] is False and row["seed"] == 42
    assert row["variant"] == "fox|frozen" and f"rerun-of:{job.run_id}" in row["tags"]
    assert json.loads(row["request_json"])["prompt_extend"] is False
    exp.rate(job.run_id, 4, "good light")
    r = exp.ratings()
    assert list(r["rating"]) == [4]
    exp.rate(job.run_id, keep=True)
    frozen.rate(2, keep=False, notes="lost the hat")
    assert (frozen.rating, frozen.keep, frozen.notes) == (2, False, "lost the hat")
    df = client.to_dataframe()
    assert df.loc[job.run_id, ["rating", "keep", "notes"]].tolist() == [4, True, "good light"]
    assert df.loc[frozen.run_id, ["rating", "keep"]].tolist() == [2, False]
    assert str(df["keep"].dtype) == "boolean"
    for bad, field in (({"rating": 6}, "rating"), ({"rating": True}, "rating"),
                       ({"keep": "yes"}, "keep"), ({}, "rating")):
        with pytest.raises(ValidationError) as info:
            frozen.rate(**bad)
        assert info.value.fields == [field]
    assert client.store.get_run(frozen.run_id)["rating"] == 2  # nothing written


@pytest.mark.timeout(600)
def test_experiment_survives_a_kernel_restart(tmp_path):
    """The done-when scenario: a sweep in a real kernel with the embedded emulator, the kernel
    restarted mid-way, the same cell run again: every run ends once, with its video."""
    from jupyter_client.manager import start_new_kernel

    from .test_kernel import execute, stdout

    cell = f"""
import wan_nb
client = wan_nb.connect(quiet=True, speed=3.0)
exp = wan_nb.Experiment("restart", base={BASE!r}, client=client)
exp.grid(prompt={PROMPTS!r}, seed=[1, 2, 3], prompt_extend=[True, False])
jobs = exp.run()
"""
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        execute(kc, cell)
        _, msgs = execute(kc, """
import time
deadline = time.time() + 60
while sum(j.done for j in jobs) < 3 and time.time() < deadline:
    time.sleep(0.2)
print(sum(j.done for j in jobs), sum(j.task_id is not None for j in jobs))
""")
        done, with_task = map(int, stdout(msgs).split())
        assert 3 <= done < 18, (done, with_task)
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        execute(kc, cell)
        _, msgs = execute(kc, """
import json
exp.wait(timeout=300, progress=False)
df = exp.to_dataframe()
print(json.dumps({"rows": len(df), "tasks": int(df["task_id"].nunique()),
                  "ok": int(df["video_path"].notna().sum()),
                  "status": sorted(df["status"].astype(str).unique()),
                  "emulator_tasks": len(client.emulator.engine.tasks)}))
import io
buf = io.StringIO()
df.info(buf=buf)
print(buf.getvalue())
""", timeout=360)
        report = json.loads(stdout(msgs).splitlines()[0])
        assert report == {"rows": 18, "tasks": 18, "ok": 18, "status": ["SUCCEEDED"],
                          "emulator_tasks": 18}, report
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_connect_without_a_key_uses_the_emulator(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    client = wan_nb.connect()
    try:
        out = capsys.readouterr().out
        assert "offline emulator" in out and "127.0.0.1" in out
        assert client.backend == "emulator"
        assert client.store.root == tmp_path / "wan_runs"
        assert client.emulator.api_key not in out and client.emulator.api_key not in repr(client)
    finally:
        client.close()


def test_thumbnail_strips_for_a_visual_scan(make_client):
    from PIL import Image
    import io
    import base64

    from wan_nb.analysis import with_thumbnails
    from wan_nb.media import thumbnail_strip

    client = make_client()
    exp = Experiment("thumbs", base={**BASE, "prompt": "<b>bold</b> lanterns"}, client=client)
    exp.grid(seed=[1, 2])
    exp.run().wait(timeout=60, progress=False)
    job = exp.jobs[0]
    png = thumbnail_strip(job.video, frames=4, height=48)
    img = Image.open(io.BytesIO(png))
    assert img.size == (4 * 48, 48)  # 624*624 frames, four side by side
    df = with_thumbnails(exp.to_dataframe(), client.store.root)
    assert all(c.startswith('<img src="data:image/png;base64,') for c in df["thumbnails"])
    assert base64.b64decode(df["thumbnails"].iloc[0].split(",")[1][:-2] + "==")[:4] \
        == b"\x89PNG"
    page = exp.thumbnails().data
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page


CROSS_MODELS = ["wan2.5-t2v-preview", "wan2.6-t2v", "wan2.7-t2v", "happyhorse-1.0-t2v",
                "wan3.0-video"]


def test_a_grid_over_models_of_both_protocols_with_one_resolution_and_ratio(make_client):
    client = make_client()
    exp = Experiment("models", base={"prompt": "a paper boat", "resolution": "720P",
                                     "ratio": "4:3", "duration": 5}, client=client)
    exp.grid(model=CROSS_MODELS)
    est = exp.estimate()
    assert set(est["per_model"]) == set(CROSS_MODELS)
    for model, entry in est["per_model"].items():
        price = wan_nb.catalog.price_per_second(model, "720P")
        assert entry == {"runs": 1, "new_runs": 1, "estimated_cost_usd": pytest.approx(5 * price),
                         "unpriced": 0}
    assert est["estimated_cost_usd"] == pytest.approx(
        sum(e["estimated_cost_usd"] for e in est["per_model"].values()))
    jobs = exp.run()
    exp.wait(timeout=240, progress=False)
    assert all(j.ok for j in jobs), [j.error for j in jobs]
    df = exp.to_dataframe().set_index("model")
    # one row per model, comparable: the same resolution and ratio, each model's own pixels
    assert sorted(df.index) == sorted(CROSS_MODELS)
    assert set(df["duration"]) == {5}
    assert df.loc["wan2.5-t2v-preview", ["width", "height"]].tolist() == [1088, 832]
    assert df.loc["wan2.6-t2v", ["width", "height"]].tolist() == [1088, 832]
    for model in ("wan2.7-t2v", "happyhorse-1.0-t2v", "wan3.0-video"):
        assert df.loc[model, ["width", "height"]].tolist() == [1104, 832]
    if "resolution" in df.columns:  # the ledger's columns (issue 10 item 3)
        assert set(df["resolution"].astype(str)) == {"720P"}
        assert set(df["ratio"].astype(str)) == {"4:3"}
    # the same cell again pays nothing
    again = Experiment("models", base=exp.base, client=client).grid(model=CROSS_MODELS)
    assert again.estimate()["new_runs"] == 0


def test_a_size_in_a_cross_model_grid_is_refused_for_the_resolution_models(make_client):
    exp = Experiment("sized", base={"prompt": "a boat", "size": "1280*720"},
                     client=make_client())
    exp.grid(model=["wan2.5-t2v-preview", "wan2.7-t2v"])
    with pytest.raises(ValidationError) as e:
        exp.requests()
    assert [f for f, _ in e.value.errors] == ["model=wan2.7-t2v: size"]
    assert "resolution='720P', ratio='16:9'" in e.value.errors[0][1]
