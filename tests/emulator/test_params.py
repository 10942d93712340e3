"""Create bodies as the service reads them (reference §2, §2.2), sent as raw HTTP to the real app.

The expectations are written out from the reference here, not read from the emulator's table or
the client's catalog, so that a mistake in either shows. Every refusal is a 400
``InvalidParameter`` envelope that creates no task; every accepted body gets its defaults filled
in as the service would.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from wan_nb.emulator.params import InvalidParameter, parse_create

from .conftest import CREATE, HEADERS

pytestmark = pytest.mark.anyio

# -- the reference, §2.1 -------------------------------------------------------------------------
SIZES = {"480P": ["832*480", "480*832", "624*624"],
         "720P": ["1280*720", "720*1280", "960*960", "1088*832", "832*1088"],
         "1080P": ["1920*1080", "1080*1920", "1440*1440", "1632*1248", "1248*1632"]}
# model: tiers, default size, durations, default duration, prompt max, audio, multi-shot
REFERENCE = {
    "wan2.6-t2v": (("720P", "1080P"), "1920*1080", list(range(2, 16)), 5, 1500, True, True),
    "wan2.5-t2v-preview": (("480P", "720P", "1080P"), "1920*1080", [5, 10], 5, 1500, True,
                           False),
    "wan2.2-t2v-plus": (("480P", "1080P"), "1920*1080", [5], 5, 800, False, False),
    "wan2.1-t2v-turbo": (("480P", "720P"), "1280*720", [5], 5, 800, False, False),
    "wan2.1-t2v-plus": (("720P",), "1280*720", [5], 5, 800, False, False),
}
ALIASES = {"wanx2.1-t2v-turbo": "wan2.1-t2v-turbo", "wanx2.1-t2v-plus": "wan2.1-t2v-plus"}


def raw(model: Any = "wan2.5-t2v-preview", prompt: Any = "a heron in the reeds",
        inp: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    return {"model": model, "input": {"prompt": prompt, **(inp or {})}, "parameters": params}


async def send(emu: Any, payload: Any) -> Any:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await emu.client.post(CREATE, content=content, headers=HEADERS)


async def accepted(emu: Any, payload: Any) -> dict[str, Any]:
    """The parameters the task was recorded with (what the emulator will render)."""
    r = await send(emu, payload)
    assert r.status_code == 200, r.text
    return dict(emu.engine.tasks[r.json()["output"]["task_id"]].params)


# -- refusals ------------------------------------------------------------------------------------
def _missing_tier(model: str) -> str | None:
    """The 16:9 size of a tier ``model`` does not offer (None if it offers all three)."""
    return next((SIZES[t][0] for t in SIZES if t not in REFERENCE[model][0]), None)


REFUSED: list[tuple[str, Any, str]] = [
    # the body and its required fields
    ("body a string", b'"hello"', "must be a JSON object"),
    ("body null", b"null", "must be a JSON object"),
    ("no model", {"input": {"prompt": "x"}}, "Model not exist."),
    ("model null", raw(model=None), "Model not exist."),
    ("model a list", raw(model=["wan2.5-t2v-preview"]), "Model not exist."),
    ("model wrong case", raw(model="WAN2.5-T2V-PREVIEW"), "Model not exist."),
    ("image-to-video model", raw(model="wan2.5-i2v-preview"), "Model not exist."),
    ("input missing", {"model": "wan2.5-t2v-preview", "parameters": {}}, "input.prompt"),
    ("input a list", {"model": "wan2.5-t2v-preview", "input": ["x"]}, "input.prompt"),
    ("input without prompt", {"model": "wan2.5-t2v-preview", "input": {"text": "x"}},
     "Field required: input.prompt"),
    ("parameters a string", {"model": "wan2.5-t2v-preview", "input": {"prompt": "x"},
                             "parameters": "size=832*480"}, "parameters must be an object"),
    # texts
    ("prompt null", raw(prompt=None), "prompt must be a non-empty string, not None"),
    ("prompt empty", raw(prompt=""), "prompt must be a non-empty string"),
    ("prompt a list", raw(prompt=["a", "b"]), "prompt must be a non-empty string"),
    ("prompt a bool", raw(prompt=True), "not True (a bool)"),
    ("prompt lone surrogate", b'{"model": "wan2.5-t2v-preview", "input": {"prompt": '
                              b'"a fox \\ud800"}}', "prompt contains an unpaired surrogate"),
    ("negative_prompt a number", raw(inp={"negative_prompt": 3}),
     "negative_prompt must be a string, not 3"),
    ("negative_prompt lone surrogate", b'{"model": "wan2.5-t2v-preview", "input": {"prompt": '
                                       b'"x", "negative_prompt": "\\udc00"}}',
     "negative_prompt contains an unpaired surrogate"),
    # size, per model: a tier it does not offer
    *[(f"{m} size of a missing tier", raw(model=m, size=_missing_tier(m)),
       f"size '{_missing_tier(m)}' is not offered by {m}") for m in REFERENCE
      if _missing_tier(m)],
    ("size not a size", raw(size="640*480"), "size '640*480' is not offered"),
    ("size 'x'", raw(size="1280x720"), "written with '*'"),
    ("size a tier", raw(size="720P"), "choose one of 832*480, 480*832"),
    ("size a list", raw(size=[832, 480]), "size [832, 480] is not offered"),
    # duration, per model
    ("wan2.6 duration 1", raw(model="wan2.6-t2v", size="1280*720", duration=1),
     "use an integer from 2 to 15 (seconds)"),
    ("wan2.6 duration 16", raw(model="wan2.6-t2v", size="1280*720", duration=16),
     "duration 16 is not offered by wan2.6-t2v"),
    ("wan2.5 duration 15", raw(duration=15), "use 5 or 10 (seconds)"),
    ("wan2.2 duration 10", raw(model="wan2.2-t2v-plus", duration=10), "use 5 (seconds)"),
    ("wan2.1 duration 10", raw(model="wanx2.1-t2v-turbo", duration=10),
     "not offered by wan2.1-t2v-turbo"),
    ("duration fractional", raw(duration=5.5), "duration 5.5 is not offered"),
    ("duration a bool", raw(duration=True), "duration True (a bool) is not offered"),
    ("duration a string", raw(duration="10"), "duration '10' is not offered"),
    # seed
    ("seed 2**31", raw(seed=2**31), "seed 2147483648 must be a whole number from 0 to "
                                    "2147483647"),
    ("seed -1", raw(seed=-1), "seed -1 must be"),
    ("seed fractional", raw(seed=1.5), "seed 1.5 must be"),
    ("seed a string", raw(seed="42"), "seed '42' must be"),
    ("seed a bool", raw(seed=False), "seed False (a bool) must be"),
    # flags
    ("prompt_extend a string", raw(prompt_extend="false"), "prompt_extend must be True or False"),
    ("prompt_extend 0", raw(prompt_extend=0), "prompt_extend must be True or False, not 0"),
    ("watermark 1", raw(watermark=1), "watermark must be True or False, not 1"),
    # audio
    ("audio a string", raw(audio="true"), "audio must be true or false, not 'true'"),
    ("audio 1", raw(audio=1), "audio must be true or false, not 1"),
    *[(f"audio on {m}", raw(model=m, audio=True), f"not supported by {m}, which only makes "
       "silent video") for m, ref in REFERENCE.items() if not ref[5]],
    *[(f"audio_url on {m}", raw(model=m, inp={"audio_url": "https://a.example/v.mp3"}),
       f"audio_url is not supported by {m}") for m, ref in REFERENCE.items() if not ref[5]],
    ("audio_url a local path", raw(inp={"audio_url": "voice.mp3"}),
     "audio_url must be a public http(s) URL or an oss:// upload, not 'voice.mp3'"),
    ("audio_url file://", raw(inp={"audio_url": "file:///tmp/voice.mp3"}),
     "must be a public http(s) URL"),
    ("audio_url ftp://", raw(inp={"audio_url": "ftp://a.example/v.mp3"}),
     "must be a public http(s) URL"),
    ("audio_url no host", raw(inp={"audio_url": "https:///v.mp3"}), "has no host"),
    ("audio_url a number", raw(inp={"audio_url": 7}), "must be a public http(s) URL"),
    ("audio_url lone surrogate", b'{"model": "wan2.5-t2v-preview", "input": {"prompt": "x", '
                                 b'"audio_url": "https://a/\\ud800.mp3"}}',
     "audio_url contains an unpaired surrogate"),
    ("oss without the resolve header", raw(inp={"audio_url": "oss://dir/v.mp3"}),
     "X-DashScope-OssResourceResolve"),
    # shot_type: wan2.6 only, single or multi
    *[(f"shot_type on {m}", raw(model=m, shot_type="single"),
       f"shot_type is only supported by wan2.6-t2v, wan2.6-t2v-us, not {m}")
      for m, ref in REFERENCE.items() if not ref[6]],
    ("shot_type unknown", raw(model="wan2.6-t2v", size="1280*720", shot_type="double"),
     "shot_type 'double' must be 'single' or 'multi'"),
    # several problems at once are listed together, in field order
    ("three problems", raw(seed=-1, size="1x1", duration=7),
     "3 problems:\n  - size '1x1' is not offered"),
]


@pytest.mark.parametrize("name,payload,fragment", REFUSED, ids=[r[0] for r in REFUSED])
async def test_refused_bodies(emu_factory: Any, name: str, payload: Any, fragment: str) -> None:
    await assert_refused(emu_factory, payload, fragment)


async def assert_refused(emu_factory: Any, payload: Any, fragment: str) -> None:
    """``payload`` is refused with the service's 400 InvalidParameter envelope, its message
    holding ``fragment``, and no task is made."""
    async with emu_factory(submission_limits=False) as emu:
        r = await send(emu, payload)
        assert r.status_code == 400, r.text
        data = r.json()
        assert set(data) == {"request_id", "code", "message"} and data["request_id"]
        assert data["code"] == "InvalidParameter"
        assert fragment in data["message"], data["message"]
        assert emu.engine.tasks == {}
        assert (await emu.stats())["creates"]["refused"] == 1


async def test_every_problem_is_listed(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await send(emu, raw(prompt=" ", inp={"negative_prompt": 1}, size="1x1", duration=7,
                                seed=-1, prompt_extend="y", watermark="n", audio="a",
                                shot_type="multi"))
        lines = r.json()["message"].split("\n  - ")
        assert lines[0] == "9 problems:"
        assert [line.split()[0] for line in lines[1:]] == [
            "prompt", "negative_prompt", "size", "duration", "seed", "prompt_extend",
            "watermark", "audio", "shot_type"]


async def test_unknown_upload_is_refused(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await emu.client.post(CREATE, json=raw(inp={"audio_url": "oss://nowhere/v.mp3"}),
                                  headers={**HEADERS, "X-DashScope-OssResourceResolve": "enable"})
        assert (r.status_code, r.json()["code"]) == (400, "InvalidParameter")
        assert "does not exist or has expired" in r.json()["message"]


# -- accepted bodies ------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [*REFERENCE, *ALIASES])
async def test_minimal_body_gets_the_service_defaults(emu_factory: Any, model: str) -> None:
    name = ALIASES.get(model, model)
    _, size, _, duration, _, audio, multi = REFERENCE[name]
    async with emu_factory() as emu:
        p = await accepted(emu, {"model": model, "input": {"prompt": "a heron"}})
        seed = p.pop("seed")
        assert isinstance(seed, int) and 0 <= seed <= 2**31 - 1
        assert p == {"prompt": "a heron", "negative_prompt": "", "model": name, "size": size,
                     "duration": duration, "prompt_extend": True, "watermark": False,
                     "audio": "auto" if audio else "silent", "audio_url": None,
                     "shot_type": "single" if multi else None}


@pytest.mark.parametrize("model", list(REFERENCE))
async def test_every_size_and_duration_of_the_reference(emu_factory: Any, model: str) -> None:
    tiers, _, durations, *_ = REFERENCE[model]
    sizes = [s for t in tiers for s in SIZES[t]]
    async with emu_factory(submission_limits=False) as emu:
        for size in sizes:
            assert (await accepted(emu, raw(model=model, size=size)))["size"] == size
        for d in durations:
            assert (await accepted(emu, raw(model=model, size=sizes[0], duration=d)))[
                "duration"] == d


@pytest.mark.parametrize("params", [None, {}, {"size": None, "duration": None, "seed": None,
                                               "prompt_extend": None, "watermark": None,
                                               "audio": None, "shot_type": None}],
                         ids=["no parameters", "empty", "all null"])
async def test_absent_and_null_parameters_are_defaults(emu_factory: Any, params: Any) -> None:
    async with emu_factory() as emu:
        b: dict[str, Any] = {"model": "wan2.5-t2v-preview", "input": {"prompt": "x"}}
        if params is not None:
            b["parameters"] = params
        p = await accepted(emu, b)
        assert (p["size"], p["duration"], p["prompt_extend"], p["watermark"], p["audio"]) == (
            "1920*1080", 5, True, False, "auto")


async def test_values_at_the_limits(emu_factory: Any) -> None:
    async with emu_factory(submission_limits=False) as emu:
        for seed in (0, 2**31 - 1):
            assert (await accepted(emu, raw(seed=seed)))["seed"] == seed
        # JSON has one number type: 10.0 is 10
        p = await accepted(emu, raw(duration=10.0, seed=7.0))
        assert (p["duration"], p["seed"]) == (10, 7)
        assert type(p["duration"]) is int and type(p["seed"]) is int
        p = await accepted(emu, raw(prompt_extend=False, watermark=True))
        assert (p["prompt_extend"], p["watermark"]) == (False, True)


async def test_audio_choices(emu_factory: Any) -> None:
    url = "https://a.example/voice.mp3"
    async with emu_factory(submission_limits=False) as emu:
        assert (await accepted(emu, raw(audio=False)))["audio"] == "silent"
        assert (await accepted(emu, raw(audio=True)))["audio"] == "auto"
        p = await accepted(emu, raw(inp={"audio_url": url}))
        assert (p["audio"], p["audio_url"]) == ("custom", url)
        # audio_url wins over audio (§2.2), whatever audio says
        p = await accepted(emu, raw(inp={"audio_url": url}, audio=False))
        assert (p["audio"], p["audio_url"]) == ("custom", url)
        assert (await accepted(emu, raw(inp={"audio_url": url}, audio="x")))["audio"] == "custom"
        # an empty audio_url is no audio_url
        assert (await accepted(emu, raw(inp={"audio_url": ""})))["audio"] == "auto"
        # silent models take an explicit "no sound"
        p = await accepted(emu, raw(model="wan2.2-t2v-plus", audio=False))
        assert p["audio"] == "silent"
        p = await accepted(emu, raw(model="wan2.6-t2v", size="1280*720",
                                    inp={"audio_url": "http://a.example/v.wav"}))
        assert p["audio"] == "custom"


@pytest.mark.parametrize("shot,extend,runs_as", [("single", True, "single"),
                                                 ("multi", True, "multi"),
                                                 ("multi", False, "single"),
                                                 (None, False, "single")])
async def test_shot_type_on_wan26(emu_factory: Any, shot: str | None, extend: bool,
                                  runs_as: str) -> None:
    async with emu_factory() as emu:
        p = await accepted(emu, raw(model="wan2.6-t2v", size="1280*720", shot_type=shot,
                                    prompt_extend=extend))
        assert p["shot_type"] == runs_as


@pytest.mark.parametrize("inp,params,extend", [
    ({"extend_prompt": False}, {}, False),
    ({"extend_prompt": True}, {"prompt_extend": False}, False),  # prompt_extend wins
    ({"extend_prompt": "no"}, {}, True),  # not a bool: ignored, like other SDK extras
])
async def test_sdk_spelling_extend_prompt(emu_factory: Any, inp: dict, params: dict,
                                          extend: bool) -> None:
    async with emu_factory() as emu:
        p = await accepted(emu, raw(inp={**inp, "function": "video-synthesis"}, **params))
        assert p["prompt_extend"] is extend


async def test_sdk_and_unknown_extras_are_ignored(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        p = await accepted(emu, {"model": "wan2.5-t2v-preview", "request_id": "r",
                                 "input": {"prompt": "x", "function": "video-synthesis",
                                           "img_url": None},
                                 "parameters": {"wait_timeout": 30, "n": 1, "resolution": None,
                                                "api_key": "ignored"}})
        assert set(p) == {"prompt", "negative_prompt", "model", "size", "duration", "seed",
                          "prompt_extend", "watermark", "audio", "audio_url", "shot_type"}


@pytest.mark.parametrize("model,limit", [(m, ref[4]) for m, ref in REFERENCE.items()])
async def test_texts_are_cut_to_the_limits(emu_factory: Any, model: str, limit: int) -> None:
    async with emu_factory() as emu:
        prompt = "雨" * (limit + 50)
        b = raw(model=model, inp={"negative_prompt": "n" * 600})
        b["input"]["prompt"] = prompt
        r = await send(emu, b)
        assert r.status_code == 200, r.text
        t = emu.engine.tasks[r.json()["output"]["task_id"]]
        assert t.params["prompt"] == "雨" * limit and len(t.params["negative_prompt"]) == 500
        assert t.orig_prompt == prompt  # orig_prompt is what was sent


async def test_a_prompt_of_spaces_cut_to_blank_is_refused(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await send(emu, raw(prompt=" " * 1500 + "a fox"))
        assert r.status_code == 400 and "non-empty" in r.json()["message"]


async def test_usage_follows_the_parsed_body(emu_factory: Any) -> None:
    async with emu_factory(submission_limits=False) as emu:
        old = (await send(emu, raw(model="wanx2.1-t2v-plus", seed=3))).json()["output"]
        new = (await send(emu, raw(model="wan2.6-t2v", size="1080*1920", duration=12,
                                   seed=3))).json()["output"]
        emu.clock.advance(600)
        q_old = (await emu.client.get(f"/api/v1/tasks/{old['task_id']}", headers=HEADERS)).json()
        q_new = (await emu.client.get(f"/api/v1/tasks/{new['task_id']}", headers=HEADERS)).json()
        assert q_old["usage"] == {"video_count": 1, "video_duration": 5, "video_ratio": "1280*720"}
        assert q_new["usage"] == {"duration": 12, "size": "1080*1920", "input_video_duration": 0,
                                  "output_video_duration": 12, "video_count": 1, "SR": 1080}


# -- the parser alone ---------------------------------------------------------------------------
def test_parser_is_pure_and_seed_is_injectable() -> None:
    r = parse_create(raw(size="832*480"), seed=lambda: 99)
    assert (r.model.name, r.width, r.height, r.duration, r.seed, r.prompt_extend) == (
        "wan2.5-t2v-preview", 832, 480, 5, 99, True)
    assert r.params["seed"] == 99
    with pytest.raises(InvalidParameter, match="Model not exist"):
        parse_create(raw(model="nope"))
