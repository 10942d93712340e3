"""Analysis helpers on a small store built by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from wan_nb.analysis import prompt_diff, ratings, summary, word_diff
from wan_nb.store import Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def timed(queue_s, run_s):
    return {"submit_time": T0, "scheduled_time": T0 + timedelta(seconds=queue_s),
            "end_time": T0 + timedelta(seconds=queue_s + run_s)}


@pytest.fixture
def df(tmp_path):
    with Store(tmp_path) as store:
        rows = [
            dict(variant="a", model="wan2.5-t2v-preview", seed=1, status="SUCCEEDED",
                 cost_usd=0.5, prompt="a cat on a mat", actual_prompt="a fluffy cat on a mat",
                 rating=3, notes="ok", **timed(10, 60)),
            dict(variant="a", model="wan2.5-t2v-preview", seed=2, status="SUCCEEDED",
                 cost_usd=0.5, prompt="a cat", actual_prompt="a cat", rating=5, **timed(20, 80)),
            dict(variant="a", model="wan2.5-t2v-preview", seed=3, status="FAILED",
                 prompt="a cat", error_code="DataInspectionFailed", **timed(5, 1)),
            dict(variant="b", model="wan2.6-t2v", seed=1, status="REJECTED", prompt="a dog"),
            dict(variant="b", model="wan2.6-t2v", seed=2, status="RUNNING", prompt="a dog"),
            dict(variant="b", model="wan2.6-t2v", seed=3, status="CANCELED", prompt="a dog",
                 rating=5, notes="tie, later"),
            dict(model="wan2.6-t2v", seed=9, status="SUCCEEDED", cost_usd=1.0,
                 prompt="一只猫在垫子上", actual_prompt="一只胖猫在垫子上", **timed(1, 30)),
        ]
        store.insert_runs(rows)
        return store.to_dataframe()


def test_summary_by_variant(df):
    s = summary(df)
    assert s.index.name == "variant"
    assert list(s.columns) == ["count", "finished", "succeeded", "failed", "success_rate",
                               "median_queue_s", "median_run_s", "total_cost_usd",
                               "mean_cost_usd"]
    a, b = s.loc["a"], s.loc["b"]
    assert (a["count"], a["finished"], a["succeeded"], a["failed"]) == (3, 3, 2, 1)
    assert a["success_rate"] == pytest.approx(2 / 3)
    assert a["median_queue_s"] == 10 and a["median_run_s"] == 60
    assert a["total_cost_usd"] == 1.0 and a["mean_cost_usd"] == 0.5
    assert (b["count"], b["finished"], b["succeeded"], b["failed"]) == (3, 2, 0, 1)
    assert b["success_rate"] == 0 and pd.isna(b["median_run_s"])
    assert b["total_cost_usd"] == 0 and pd.isna(b["mean_cost_usd"])
    missing = s[s.index.isna()]  # runs without a variant keep their own row
    assert missing["count"].tolist() == [1] and missing["success_rate"].tolist() == [1.0]


def test_summary_by_several_columns_and_nothing_finished(df):
    s = summary(df, by=["model", "variant"])
    assert s.index.names == ["model", "variant"]
    assert s.loc[("wan2.6-t2v", "b"), "count"] == 3
    running = summary(df[df["status"] == "RUNNING"], by="model")
    assert running["finished"].tolist() == [0] and pd.isna(running["success_rate"].iloc[0])
    assert len(summary(df.iloc[0:0])) == 0


def test_prompt_diff(df):
    d = prompt_diff(df)
    assert list(d.columns) == ["prompt", "actual_prompt", "diff", "similarity"]
    assert d.index.equals(df.index)
    by_seed = d.assign(seed=df["seed"], variant=df["variant"])
    first = by_seed[(by_seed["seed"] == 1) & (by_seed["variant"] == "a")].iloc[0]
    assert first["diff"] == "a {+fluffy+} cat on a mat"
    assert first["similarity"] == pytest.approx(10 / 11)
    same = by_seed[(by_seed["seed"] == 2) & (by_seed["variant"] == "a")].iloc[0]
    assert same["diff"] == "a cat" and same["similarity"] == 1.0
    chinese = by_seed[by_seed["seed"] == 9].iloc[0]
    assert chinese["diff"] == "一只{+胖+}猫在垫子上"
    no_rewrite = by_seed[by_seed["variant"] == "b"]
    assert no_rewrite["diff"].isna().all() and no_rewrite["similarity"].isna().all()
    assert str(d["diff"].dtype) == "string" and str(d["similarity"].dtype) == "Float64"


@pytest.mark.parametrize(("old", "new", "diff"), [
    ("a red car", "a blue car", "a [-red-]{+blue+} car"),
    ("slow pan, sunset", "slow pan", "slow pan[-, sunset-]"),
    ("", "new", "{+new+}"),
    ("old", "", "[-old-]"),
    ("A cat (tabby) walks.\n\nSlow pan.", "A cat walks. Slow pan, golden hour.",
     "A cat [-(tabby)-] walks. Slow pan{+, golden hour+}."),
    ("猫在跑", "一只猫在跑", "{+一只+}猫在跑"),
])
def test_word_diff_marks(old, new, diff):
    assert word_diff(old, new)[0] == diff


def test_ratings(df):
    r = ratings(df)
    assert list(r.columns) == ["run_id", "variant", "model", "seed", "rating", "notes"]
    assert r["rating"].tolist() == [5, 5, 3]
    assert r["seed"].tolist() == [2, 3, 1]  # ties keep run order
    assert r["notes"].tolist()[1:] == ["tie, later", "ok"] and pd.isna(r["notes"].iloc[0])
    assert r["run_id"].isin(df.index).all()
