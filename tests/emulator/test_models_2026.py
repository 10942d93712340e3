"""The 2026 models (reference §7) sent as raw HTTP to the real app: wan2.7-t2v and its dated
snapshot, HappyHorse 1.0, Wan 3.0 (and prime) on ``resolution`` + ``ratio``, and wan2.6-t2v-us on
``size``.

As in test_params.py the expectations are written out from the reference here, not read from
the emulator's facts or the client's catalog. Refusals are the service's 400 ``InvalidParameter``
envelope and create nothing; accepted bodies get the service's defaults; finished tasks answer
with the §7.3 usage and no ``actual_prompt``; rendered files have the §7.1 pixels and the asked
duration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from wan_nb.emulator import FaultConfig

from .conftest import AUTH, ffmpeg_probe, make_audio
from .test_params import accepted, assert_refused, raw, send

pytestmark = pytest.mark.anyio

# -- the reference, §7.1 -------------------------------------------------------------------------
PIXELS = {  # (resolution, ratio) -> (width, height); 4:3 and 3:4 differ from the size tables
    "720P": {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960), "4:3": (1104, 832),
             "3:4": (832, 1104)},
    "1080P": {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1440, 1440),
              "4:3": (1648, 1248), "3:4": (1248, 1648)},
}
# the §7.1 decision for Wan 3.0: 480P and 21:9 assumed, adaptive = 16:9
WAN3_PIXELS = {
    "480P": {"16:9": (832, 480), "9:16": (480, 832), "1:1": (624, 624), "4:3": (640, 480),
             "3:4": (480, 640), "21:9": (1120, 480), "adaptive": (832, 480)},
    "720P": {**PIXELS["720P"], "21:9": (1680, 720), "adaptive": (1280, 720)},
    "1080P": {**PIXELS["1080P"], "21:9": (2520, 1080), "adaptive": (1920, 1080)},
}
FIVE = ("16:9", "9:16", "1:1", "4:3", "3:4")
# model: pixel table, durations (lo, hi), prompt max, watermark default, sound of its own
NEW = {
    "wan2.7-t2v": (PIXELS, (2, 15), 5000, False, True),
    "wan2.7-t2v-2026-04-25": (PIXELS, (2, 15), 5000, False, True),
    "happyhorse-1.0-t2v": (PIXELS, (3, 15), 5000, True, False),
    "wan3.0-video": (WAN3_PIXELS, (2, 30), 5000, False, True),
    "wan3.0-video-prime": (WAN3_PIXELS, (2, 30), 5000, False, True),
}
US = "wan2.6-t2v-us"
US_SIZES = ["1280*720", "720*1280", "960*960", "1088*832", "832*1088", "1920*1080", "1080*1920",
            "1440*1440", "1632*1248", "1248*1632"]


def _defaults(model: str, seed: int) -> dict[str, Any]:
    table, _, _, watermark, sound = NEW[model]
    return {"prompt": "a heron", "negative_prompt": "", "model": model, "resolution": "1080P",
            "ratio": "16:9", "size": "1920*1080", "duration": 5, "seed": seed,
            "prompt_extend": model != "happyhorse-1.0-t2v", "watermark": watermark,
            "audio": "auto" if sound else "silent", "audio_url": None}


# -- accepted bodies -----------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(NEW))
async def test_minimal_body_gets_the_service_defaults(emu_factory: Any, model: str) -> None:
    async with emu_factory() as emu:
        p = await accepted(emu, {"model": model, "input": {"prompt": "a heron"}})
        assert p == _defaults(model, p["seed"])  # no size asked, no shot_type recorded


async def test_wan26_us_defaults_are_wan26s(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        p = await accepted(emu, {"model": US, "input": {"prompt": "a heron"}})
        p.pop("seed")
        assert p == {"prompt": "a heron", "negative_prompt": "", "model": US,
                     "size": "1920*1080", "duration": 5, "prompt_extend": True,
                     "watermark": False, "audio": "auto", "audio_url": None,
                     "shot_type": "single"}


@pytest.mark.parametrize("model", list(NEW))
async def test_every_resolution_ratio_and_duration_limit(emu_factory: Any, model: str) -> None:
    table, (lo, hi), *_ = NEW[model]
    async with emu_factory(submission_limits=False) as emu:
        for resolution, by_ratio in table.items():
            for ratio, (w, h) in by_ratio.items():
                r = await send(emu, raw(model=model, resolution=resolution, ratio=ratio))
                assert r.status_code == 200, r.text
                t = emu.engine.tasks[r.json()["output"]["task_id"]]
                assert (t.params["resolution"], t.params["ratio"]) == (resolution, ratio)
                assert t.params["size"] == f"{w}*{h}", (resolution, ratio)
        for d in (lo, hi):
            p = await accepted(emu, raw(model=model, duration=d, resolution="720P"))
            assert p["duration"] == d
        for d in (lo - 1, hi + 1):
            r = await send(emu, raw(model=model, duration=d))
            assert r.status_code == 400 and f"duration {d} is not offered by {model}; use an " \
                f"integer from {lo} to {hi}" in r.json()["message"]


async def test_wan26_us_sizes_and_durations(emu_factory: Any) -> None:
    async with emu_factory(submission_limits=False) as emu:
        for size in US_SIZES:
            assert (await accepted(emu, raw(model=US, size=size)))["size"] == size
        for d in (5, 10):
            assert (await accepted(emu, raw(model=US, size="1280*720", duration=d)))[
                "duration"] == d
        assert (await accepted(emu, raw(model=US, size="1280*720", shot_type="multi")))[
            "shot_type"] == "multi"


@pytest.mark.parametrize("model", list(NEW))
async def test_size_and_shot_type_are_ignored(emu_factory: Any, model: str) -> None:
    """§7.2: "setting it has no effect", whatever it says."""
    async with emu_factory(submission_limits=False) as emu:
        for junk in ({"size": "832*480"}, {"size": "1x1", "shot_type": "double"},
                     {"shot_type": "multi"}, {"size": 7, "shot_type": ["multi"]}):
            p = await accepted(emu, raw(model=model, resolution="720P", ratio="1:1", **junk))
            assert (p["size"], "shot_type" in p) == ("960*960", False)


@pytest.mark.parametrize("model", ["wan2.7-t2v", "happyhorse-1.0-t2v", "wan3.0-video"])
async def test_classic_sdk_body_and_v2_clean_body(emu_factory: Any, model: str) -> None:
    classic = {"model": model,
               "input": {"prompt": "a fox", "extend_prompt": True, "function": "video-synthesis"},
               "parameters": {"resolution": "720P", "ratio": "4:3", "duration": 5, "seed": 3}}
    clean = {"model": model, "input": {"prompt": "a fox"},
             "parameters": {"seed": 3, "duration": 5, "resolution": "720P", "ratio": "4:3"}}
    async with emu_factory(submission_limits=False) as emu:
        a, b = await accepted(emu, classic), await accepted(emu, clean)
        assert a == b and (a["size"], a["seed"]) == ("1104*832", 3)


async def test_happyhorse_rules(emu_factory: Any) -> None:
    hh = "happyhorse-1.0-t2v"
    async with emu_factory(submission_limits=False) as emu:
        assert (await accepted(emu, raw(model=hh)))["watermark"] is True  # default true
        assert (await accepted(emu, raw(model=hh, watermark=False)))["watermark"] is False
        # no rewrite: the switch (and the SDK's extend_prompt) is taken and changes nothing
        for params, inp in (({"prompt_extend": True}, {}), ({}, {"extend_prompt": True})):
            assert (await accepted(emu, raw(model=hh, inp=inp, **params)))[
                "prompt_extend"] is False
        assert (await accepted(emu, raw(model=hh, audio=False)))["audio"] == "silent"
        # an empty negative prompt is no negative prompt
        assert (await accepted(emu, raw(model=hh, inp={"negative_prompt": ""})))[
            "negative_prompt"] == ""


async def test_audio_rules(emu_factory: Any) -> None:
    url = "https://a.example/voice.mp3"
    async with emu_factory(submission_limits=False) as emu:
        # wan2.7: audio_url taken; parameters.audio undocumented: taken, sound anyway
        p = await accepted(emu, raw(model="wan2.7-t2v", inp={"audio_url": url}))
        assert (p["audio"], p["audio_url"]) == ("custom", url)
        assert (await accepted(emu, raw(model="wan2.7-t2v", audio=False)))["audio"] == "auto"
        # Wan 3.0: the documented switch
        assert (await accepted(emu, raw(model="wan3.0-video", audio=False)))["audio"] == "silent"
        assert (await accepted(emu, raw(model="wan3.0-video", audio=True)))["audio"] == "auto"


async def test_prompts_are_cut_to_the_limits(emu_factory: Any) -> None:
    async with emu_factory(submission_limits=False) as emu:
        for model, prompt, kept in (("wan2.7-t2v", "a" * 5100, 5000),
                                    ("wan2.7-t2v", "雨" * 5100, 5000),
                                    ("happyhorse-1.0-t2v", "a" * 5100, 5000),
                                    ("happyhorse-1.0-t2v", "雨" * 2600, 2500),
                                    ("happyhorse-1.0-t2v", "a fox 雨" + "a" * 4000, 2500),
                                    ("wan3.0-video", "a" * 5100, 5000)):
            b = raw(model=model, inp={"negative_prompt": "n" * 600} if model[0] == "w" else {})
            b["input"]["prompt"] = prompt
            r = await send(emu, b)
            assert r.status_code == 200, r.text
            t = emu.engine.tasks[r.json()["output"]["task_id"]]
            assert t.params["prompt"] == prompt[:kept] and t.orig_prompt == prompt
            assert len(t.params["negative_prompt"]) == (500 if model[0] == "w" else 0)


# -- refusals ------------------------------------------------------------------------------------
HH, W27, W30 = "happyhorse-1.0-t2v", "wan2.7-t2v", "wan3.0-video"
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    *[(f"{m} resolution 480P", raw(model=m, resolution="480P"),
       f"resolution '480P' is not offered by {m}; choose one of 720P, 1080P")
      for m in (W27, "wan2.7-t2v-2026-04-25", HH)],
    ("resolution 4K", raw(model=W30, resolution="4K"),
     "resolution '4K' is not offered by wan3.0-video; choose one of 480P, 720P, 1080P"),
    ("resolution lower case", raw(model=W27, resolution="720p"), "written like '720P'"),
    ("resolution a number", raw(model=W27, resolution=720), "resolution 720 is not offered"),
    *[(f"{m} ratio 21:9", raw(model=m, ratio="21:9"),
       f"ratio '21:9' is not offered by {m}; choose one of 16:9, 9:16, 1:1, 4:3, 3:4")
      for m in (W27, HH)],
    ("wan2.7 ratio adaptive", raw(model=W27, ratio="adaptive"), "ratio 'adaptive' is not"),
    ("ratio 2:1", raw(model=W30, ratio="2:1"),
     "choose one of adaptive, 21:9, 16:9, 4:3, 1:1, 3:4, 9:16"),
    ("ratio a size", raw(model=W27, ratio="1280*720"), "ratio '1280*720' is not offered"),
    ("duration a string", raw(model=W27, duration="10"), "duration '10' is not offered"),
    ("duration fractional", raw(model=W30, duration=7.5), "duration 7.5 is not offered"),
    ("HappyHorse negative prompt", raw(model=HH, inp={"negative_prompt": "blur"}),
     "negative_prompt is not supported by happyhorse-1.0-t2v"),
    ("HappyHorse audio true", raw(model=HH, audio=True),
     "audio 'auto' is not supported by happyhorse-1.0-t2v, which only makes silent video"),
    ("HappyHorse audio_url", raw(model=HH, inp={"audio_url": "https://a.example/v.mp3"}),
     "audio_url is not supported by happyhorse-1.0-t2v"),
    ("HappyHorse prompt_extend not a bool", raw(model=HH, prompt_extend="yes"),
     "prompt_extend must be True or False"),
    ("HappyHorse watermark not a bool", raw(model=HH, watermark="true"),
     "watermark must be True or False"),
    ("Wan 3.0 audio_url", raw(model=W30, inp={"audio_url": "https://a.example/v.mp3"}),
     "audio_url is not supported by wan3.0-video, which makes its own sound"),
    ("Wan 3.0 audio not a bool", raw(model=W30, audio="off"), "audio must be true or false"),
    ("Wan 3.0 media", raw(model=W30, inp={"media": [{"type": "first_frame",
                                                     "url": "https://a.example/f.png"}]}),
     "input.media is not served by this emulator"),
    ("wan2.7 audio_url a local path", raw(model=W27, inp={"audio_url": "voice.mp3"}),
     "must be a public http(s) URL or an oss:// upload"),
    ("wan2.7 seed too big", raw(model=W27, seed=2**31), "seed 2147483648 must be"),
    ("wan2.6-t2v-us 480P size", raw(model=US, size="832*480"),
     "size '832*480' is not offered by wan2.6-t2v-us"),
    ("wan2.6-t2v-us 2026 pixels", raw(model=US, size="1104*832"), "is not offered"),
    ("wan2.6-t2v-us duration 15", raw(model=US, size="1280*720", duration=15),
     "duration 15 is not offered by wan2.6-t2v-us; use 5 or 10 (seconds)"),
    ("several problems", raw(model=HH, resolution="480P", ratio="5:4", duration=2),
     "3 problems:\n  - resolution '480P'"),
]


@pytest.mark.parametrize("name,payload,fragment", REFUSED, ids=[r[0] for r in REFUSED])
async def test_refused_bodies(emu_factory: Any, name: str, payload: Any, fragment: str) -> None:
    await assert_refused(emu_factory, payload, fragment)


async def test_the_snapshot_is_its_own_model(emu_factory: Any) -> None:
    """Its exact name is what lists show; its submissions are counted apart from wan2.7's and
    (the emulator's decision) throttled at 2 per second."""
    snap = "wan2.7-t2v-2026-04-25"
    async with emu_factory() as emu:
        codes = [(await send(emu, raw(model=snap, seed=i))).status_code for i in range(3)]
        assert codes == [200, 200, 429]
        assert (await send(emu, raw(model="wan2.7-t2v"))).status_code == 200
        items = (await emu.list(model_name=snap)).json()["data"]
        assert [i["model_name"] for i in items] == [snap, snap]


# -- answers -------------------------------------------------------------------------------------
async def _finished(emu: Any, payload: dict[str, Any]) -> dict[str, Any]:
    task_id = (await send(emu, payload)).json()["output"]["task_id"]
    emu.clock.advance(600)
    q = await emu.query(task_id)
    assert q["output"]["task_status"] == "SUCCEEDED", q
    return q


@pytest.mark.parametrize("model,params,usage", [
    (W27, {"resolution": "720P", "ratio": "4:3", "duration": 10},
     {"duration": 10, "input_video_duration": 0, "output_video_duration": 10, "video_count": 1,
      "ratio": "4:3", "SR": 720}),
    ("wan2.7-t2v-2026-04-25", {}, {"duration": 5, "input_video_duration": 0,
                                   "output_video_duration": 5, "video_count": 1,
                                   "ratio": "16:9", "SR": 1080}),
    (HH, {"resolution": "1080P", "ratio": "9:16", "duration": 15},
     {"duration": 15, "input_video_duration": 0, "output_video_duration": 15, "video_count": 1,
      "ratio": "9:16", "SR": 1080}),
    (W30, {"resolution": "480P", "ratio": "adaptive", "duration": 30},
     {"duration": 30, "input_video_duration": 0, "output_video_duration": 30, "video_count": 1,
      "ratio": "16:9", "SR": 480}),
    ("wan3.0-video-prime", {"resolution": "720P", "ratio": "21:9"},
     {"duration": 5, "input_video_duration": 0, "output_video_duration": 5, "video_count": 1,
      "ratio": "21:9", "SR": 720}),
])
async def test_usage_of_the_2026_models(emu_factory: Any, model: str, params: dict[str, Any],
                                        usage: dict[str, Any]) -> None:
    """§7.3: the new usage shape (no size: the pixels follow from SR and ratio) and no
    actual_prompt, with or without the rewrite."""
    async with emu_factory(submission_limits=False) as emu:
        for extend in (True, False):
            q = await _finished(emu, raw(model=model, prompt="a fox", prompt_extend=extend,
                                         **params))
            assert q["usage"] == usage
            assert list(q["usage"]) == list(usage)
            out = q["output"]
            assert "actual_prompt" not in out and out["orig_prompt"] == "a fox"


async def test_usage_of_wan26_us(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        q = await _finished(emu, raw(model=US, size="1632*1248", duration=10))
        assert q["usage"] == {"duration": 10, "size": "1632*1248", "input_video_duration": 0,
                              "output_video_duration": 10, "video_count": 1, "SR": 1080}
        assert "actual_prompt" not in q["output"]


# -- §7.4 errors the fault injector can answer ----------------------------------------------------
@pytest.mark.parametrize("code,status", [("Throttling.BurstRate", 429),
                                         ("ServiceOverloaded", 429),
                                         ("ResourceExhausted", 429),
                                         ("InvalidParameter.DataInspection", 400)])
async def test_2026_refusals_can_be_injected(emu_factory: Any, code: str, status: int) -> None:
    """Refusals: even with faults decided "after", nothing is created."""
    cfg = FaultConfig(error_rates={"create": {code: 1.0}}, create_fault_phase="after")
    async with emu_factory(faults=cfg) as emu:
        r = await send(emu, raw(model=W27))
        assert (r.status_code, r.json()["code"]) == (status, code)
        assert r.json()["message"] and emu.engine.tasks == {}


async def test_internal_data_inspection_on_create_is_ambiguous(emu_factory: Any) -> None:
    """§7.4: a 500 InternalError.DataInspection does not prove that no task was made."""
    cfg = FaultConfig(error_rates={"create": {"InternalError.DataInspection": 1.0}},
                      create_fault_phase="after")
    async with emu_factory(faults=cfg) as emu:
        r = await send(emu, raw(model=HH))
        assert (r.status_code, r.json()["code"]) == (500, "InternalError.DataInspection")
        listed = (await emu.list()).json()
        assert listed["total"] == 1 and listed["data"][0]["model_name"] == HH


async def test_input_inspection_can_answer_the_2026_code(emu_factory: Any) -> None:
    async with emu_factory(blocked_terms={"__inspect__": "InvalidParameter.DataInspection"}
                           ) as emu:
        r = await send(emu, raw(model=W27, prompt="an __inspect__ scene"))
        assert (r.status_code, r.json()["code"]) == (400, "InvalidParameter.DataInspection")
        assert r.json()["message"] == "The input failed content inspection."
        assert emu.engine.tasks == {}
    with pytest.raises(ValueError, match="content codes must be one of"):
        async with emu_factory(output_blocked_terms={"x": "InvalidParameter.DataInspection"}):
            pass


# -- rendered files ------------------------------------------------------------------------------
RENDERS = [
    (W27, {"resolution": "720P", "ratio": "4:3", "duration": 2}, (1104, 832, 2, True)),
    ("wan2.7-t2v-2026-04-25", {"resolution": "720P", "ratio": "3:4", "duration": 3},
     (832, 1104, 3, True)),
    (HH, {"resolution": "720P", "ratio": "4:3", "duration": 3}, (1104, 832, 3, False)),
    (W30, {"resolution": "480P", "ratio": "21:9", "duration": 30, "audio": False},
     (1120, 480, 30, False)),
    ("wan3.0-video-prime", {"resolution": "480P", "ratio": "adaptive", "duration": 2},
     (832, 480, 2, True)),
    (US, {"size": "1088*832", "duration": 5, "audio": False}, (1088, 832, 5, False)),
]


@pytest.mark.parametrize("model,params,expect", RENDERS, ids=[r[0] for r in RENDERS])
async def test_rendered_pixels_and_duration(emu_factory: Any, tmp_path: Path, model: str,
                                            params: dict[str, Any],
                                            expect: tuple[int, int, int, bool]) -> None:
    async with emu_factory(render=True, speed=0.0) as emu:
        task_id = (await send(emu, raw(model=model, seed=11, **params))).json()["output"][
            "task_id"]
        await emu.status(task_id)
        await emu.settle_renders(120)
        q = await emu.query(task_id)
        assert q["output"]["task_status"] == "SUCCEEDED", q
        r = await emu.client.get(q["output"]["video_url"])
        assert r.status_code == 200
        (tmp_path / "v.mp4").write_bytes(r.content)
        info = ffmpeg_probe(tmp_path / "v.mp4")
        w, h, seconds, sound = expect
        assert (info["width"], info["height"], info["has_audio"]) == (w, h, sound)
        assert info["duration"] == pytest.approx(seconds, abs=0.1) and info["fps"] == 30


@pytest.mark.slow
async def test_longest_wan3_video_renders_in_sane_time(emu_factory: Any, tmp_path: Path) -> None:
    """30 s at 1080P 21:9 (2520×1080) with sound, Wan 3.0's largest video: ~5-10 s of render
    on two shared cores (measured), bounded here with room for a loaded CI machine."""
    async with emu_factory(render=True, speed=0.0) as emu:
        start = time.perf_counter()
        task_id = (await send(emu, raw(model=W30, resolution="1080P", ratio="21:9",
                                       duration=30))).json()["output"]["task_id"]
        await emu.status(task_id)
        await emu.settle_renders(240)
        took = time.perf_counter() - start
        q = await emu.query(task_id)
        r = await emu.client.get(q["output"]["video_url"], headers=AUTH)
        (tmp_path / "long.mp4").write_bytes(r.content)
        info = ffmpeg_probe(tmp_path / "long.mp4")
        assert (info["width"], info["height"], info["has_audio"]) == (2520, 1080, True)
        assert info["duration"] == pytest.approx(30, abs=0.1)
        assert took < 120, f"rendering 30 s of 2520x1080 took {took:.1f} s"


@pytest.mark.parametrize("model,seconds,ok", [
    (W27, 2.0, True), (W27, 1.5, False), (W27, 31.0, False),
    ("wan2.5-t2v-preview", 3.0, True), ("wan2.5-t2v-preview", 2.5, False),
])
async def test_audio_url_length_limits(emu_factory: Any, audio_dir: Path, audio_server: str,
                                       model: str, seconds: float, ok: bool) -> None:
    """§2.2 and §7.1: an audio_url file of 3-30 s (2-30 s on wan2.7); checked when the task
    runs, so a file out of range ends the task FAILED with InvalidParameter."""
    name = f"len-{seconds:g}.wav"
    if not (audio_dir / name).exists():
        make_audio(audio_dir / name, seconds)
    params = ({"resolution": "720P", "ratio": "1:1", "duration": 2} if model == W27
              else {"size": "624*624", "duration": 5})
    async with emu_factory(render=True, speed=0.0) as emu:
        r = await send(emu, raw(model=model, inp={"audio_url": f"{audio_server}/{name}"},
                                **params))
        task_id = r.json()["output"]["task_id"]
        await emu.status(task_id)
        await emu.settle_renders(120)
        out = (await emu.query(task_id))["output"]
        if ok:
            assert out["task_status"] == "SUCCEEDED", out
        else:
            lo = 2 if model == W27 else 3
            assert (out["task_status"], out["code"]) == ("FAILED", "InvalidParameter")
            assert f"is {seconds:.2f} s long; {model} takes {lo} to 30 s" in out["message"]
