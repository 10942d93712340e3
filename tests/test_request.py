"""Validation against the catalog: every valid row of the per-model matrix, and invalid input
that must fail before any HTTP request is sent."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from wan_nb import catalog
from wan_nb.client import AsyncClient
from wan_nb.errors import ValidationError
from wan_nb.request import GenerationRequest

VALID_ROWS = [
    (spec.name, size, duration)
    for spec in catalog.MODELS.values()
    for size in spec.sizes
    for duration in spec.durations
]


@pytest.mark.parametrize(("model", "size", "duration"), VALID_ROWS)
def test_every_row_of_the_matrix_is_accepted(model, size, duration):
    r = GenerationRequest("a paper boat on a pond", model=model, size=size, duration=duration,
                          seed=7)
    body = r.wire_body()
    assert body["model"] == model
    assert body["parameters"]["size"] == size
    assert body["parameters"]["duration"] == duration
    assert body["parameters"]["seed"] == 7
    spec = catalog.get_model(model)
    assert ("audio" in body["parameters"]) == spec.audio
    assert ("shot_type" in body["parameters"]) == spec.multi_shot


def test_matrix_has_the_documented_shape():
    assert catalog.sizes_for("wan2.6-t2v") == tuple(
        s for t in ("720P", "1080P") for s in catalog.SIZES[t].values())
    assert "1280*720" not in catalog.sizes_for("wan2.2-t2v-plus")
    assert catalog.get_model("wan2.5-t2v-preview").durations == (5, 10)
    assert catalog.get_model("wan2.6-t2v").durations == tuple(range(2, 16))
    assert catalog.get_model("wanx2.1-t2v-plus").name == "wan2.1-t2v-plus"
    assert catalog.wire_model_name("wan2.1-t2v-turbo", "beijing") == "wanx2.1-t2v-turbo"
    assert catalog.estimate_cost("wan2.6-t2v", "1920*1080", 10) == pytest.approx(1.5)


LONG = "x" * 1501
INVALID = [
    # (kwargs, field named, words the message must contain)
    (dict(model="wan2.2-t2v-plus", size="1280*720"), "size", ["not offered by wan2.2-t2v-plus",
                                                              "832*480"]),
    (dict(model="wan2.5-t2v-preview", duration=15), "duration", ["15", "5 or 10"]),
    (dict(model="wan2.2-t2v-plus", duration=3), "duration", ["3", "5"]),
    (dict(model="wan2.6-t2v", duration=1), "duration", ["from 2 to 15"]),
    (dict(model="wan2.6-t2v", duration=16), "duration", ["from 2 to 15"]),
    (dict(model="wan2.6-t2v", size="832*480"), "size", ["wan2.6-t2v", "1280*720"]),
    (dict(model="wan2.1-t2v-plus", size="832*480"), "size", ["wan2.1-t2v-plus"]),
    (dict(model="wan2.1-t2v-turbo", size="1920*1080"), "size", ["wan2.1-t2v-turbo"]),
    (dict(model="wan2.2-t2v-plus", audio_url="https://example.invalid/a.mp3"), "audio_url",
     ["silent", "wan2.5-t2v-preview"]),
    (dict(model="wan2.1-t2v-turbo", audio="auto"), "audio", ["silent"]),
    (dict(model="wan2.5-t2v-preview", shot_type="multi"), "shot_type", ["wan2.6-t2v"]),
    (dict(model="wan2.6-t2v", shot_type="multi", prompt_extend=False), "shot_type",
     ["prompt_extend=True"]),
    (dict(model="wan2.6-t2v", shot_type="many"), "shot_type", ["'single' or 'multi'"]),
    (dict(seed=-1), "seed", ["0 to 2147483647"]),
    (dict(seed=2**31), "seed", ["2147483648"]),
    (dict(seed=1.5), "seed", ["integer"]),
    (dict(seed=True), "seed", ["integer"]),
    (dict(prompt=""), "prompt", ["non-empty"]),
    (dict(prompt="   "), "prompt", ["non-empty"]),
    (dict(prompt=None), "prompt", ["non-empty"]),
    (dict(prompt=LONG), "prompt", ["1501", "1500"]),
    (dict(model="wan2.2-t2v-plus", prompt="y" * 801), "prompt", ["801", "800"]),
    (dict(negative_prompt="n" * 501), "negative_prompt", ["501", "500"]),
    (dict(size="1280x720"), "size", ["'*'"]),
    (dict(size="1280*721"), "size", ["not offered"]),
    (dict(size=None, model="nope"), "model", ["unknown", "wan2.6-t2v"]),
    (dict(model="wan3-t2v"), "model", ["unknown"]),
    (dict(audio_url="ftp://host/a.mp3"), "audio_url", ["http(s)"]),
    (dict(audio_url="/no/such/file.mp3"), "audio_url", ["existing local file"]),
    (dict(audio="custom"), "audio_url", ["needs audio_url"]),
    (dict(audio="loud"), "audio", ["'auto', 'custom' or 'silent'"]),
    (dict(audio="silent", audio_url="https://example.invalid/a.mp3"), "audio_url",
     ["audio='custom'"]),
    (dict(duration="5"), "duration", ["'5'"]),
    (dict(watermark="yes"), "watermark", ["True or False"]),
    (dict(prompt_extend=1), "prompt_extend", ["True or False"]),
]


@pytest.mark.parametrize(("kwargs", "field", "words"), INVALID,
                         ids=[f"{i}-{c[1]}" for i, c in enumerate(INVALID)])
def test_invalid_input_fails_before_any_request(kwargs, field, words):
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"output": {"task_id": "t", "task_status": "PENDING"}})

    async def go():
        async with AsyncClient("sk-test", transport=httpx.MockTransport(handler)) as c:
            await c.create_task(**{"prompt": "a fox", **kwargs})

    with pytest.raises(ValidationError) as info:
        asyncio.run(go())
    assert field in info.value.fields
    for word in words:
        assert word in str(info.value), str(info.value)
    assert sent == []


def test_several_problems_are_reported_together():
    with pytest.raises(ValidationError) as info:
        GenerationRequest("a", model="wan2.2-t2v-plus", size="1280*720", duration=10, seed=-5)
    assert info.value.fields == ["size", "duration", "seed"]
    assert str(info.value).startswith("3 problems")


def test_wrong_audio_file_type_and_size(tmp_path, wav_file):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ValidationError, match=r"\.wav or \.mp3"):
        GenerationRequest("a", audio_url=str(txt))
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (catalog.AUDIO_MAX_BYTES + 1))
    with pytest.raises(ValidationError, match="at most 15 MB"):
        GenerationRequest("a", audio_url=str(big))
    r = GenerationRequest("a", audio_url=str(wav_file))
    assert r.audio == "custom" and r.audio_is_local


def test_defaults_are_made_explicit():
    r = GenerationRequest("a lighthouse at dusk")
    spec = catalog.get_model(catalog.DEFAULT_MODEL)
    assert r.size == spec.default_size and r.duration == spec.default_duration
    assert isinstance(r.seed, int) and 0 <= r.seed <= catalog.SEED_MAX
    assert r.audio == "auto"
    assert GenerationRequest("a", model="wan2.2-t2v-plus").audio == "silent"
    assert GenerationRequest("a", model="wan2.6-t2v").shot_type == "single"
    # two requests without a seed get different random seeds, each recorded
    assert len({GenerationRequest("a").seed for _ in range(5)}) > 1


def test_wire_body_matches_the_seed_example():
    prompt = "Shot from a low angle, in a medium close-up"
    url = ("https://help-static-aliyun-doc.aliyuncs.com/file-manage-files/zh-CN/20250929/"
           "stjqnq/%E7%8B%90%E7%8B%B8.mp3")
    r = GenerationRequest(prompt, model="wan2.5-t2v-preview", audio_url=url, size="832*480",
                          duration=10, negative_prompt="", prompt_extend=True, watermark=False,
                          seed=12345)
    assert r.wire_body() == {
        "model": "wan2.5-t2v-preview",
        "input": {"prompt": prompt, "audio_url": url},
        "parameters": {"size": "832*480", "duration": 10, "prompt_extend": True,
                       "watermark": False, "seed": 12345},
    }
    assert r.wire_body(region="beijing")["model"] == "wan2.5-t2v-preview"
    assert GenerationRequest("a", model="wanx2.1-t2v-turbo", size="832*480").wire_body(
        region="beijing")["model"] == "wanx2.1-t2v-turbo"


def test_fingerprint_is_canonical(wav_file, tmp_path):
    a = GenerationRequest("a fox", size="832*480", duration=10, seed=1, watermark=False)
    b = GenerationRequest(seed=1, watermark=False, duration=10, size="832*480", prompt="a fox")
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != a.replace(seed=2).fingerprint
    assert a.fingerprint != a.replace(prompt_extend=False).fingerprint
    # aliases name the same model
    c = GenerationRequest("a", model="wanx2.1-t2v-plus", seed=3)
    assert c.fingerprint == GenerationRequest("a", model="wan2.1-t2v-plus", seed=3).fingerprint
    # a local audio file counts by content, not by path
    copy = tmp_path / "copy.wav"
    copy.write_bytes(wav_file.read_bytes())
    assert (GenerationRequest("a", audio_url=str(wav_file), seed=1).fingerprint
            == GenerationRequest("a", audio_url=str(copy), seed=1).fingerprint)


def test_params_round_trip_and_replace_across_models():
    r = GenerationRequest("a", model="wan2.6-t2v", duration=7, seed=9, shot_type="multi")
    assert GenerationRequest.from_params(r.params()) == r
    s = r.replace(model="wan2.2-t2v-plus")
    assert (s.size, s.duration, s.audio, s.shot_type) == ("1920*1080", 5, "silent", None)
    with pytest.raises(ValidationError, match="unknown parameter 'colour'"):
        GenerationRequest.from_params({"prompt": "a", "colour": "red"})


def test_from_wire_tolerates_sdk_fields():
    body = {"model": "wan2.5-t2v-preview",
            "input": {"prompt": "hi", "extend_prompt": True, "function": "video-synthesis"},
            "parameters": {"size": "832*480", "duration": 5, "seed": 1, "wait_timeout": 3}}
    r = GenerationRequest.from_wire(body)
    assert (r.size, r.duration, r.seed, r.audio) == ("832*480", 5, 1, "auto")
    r2 = GenerationRequest.from_wire({"model": "wan2.5-t2v-preview", "input": {"prompt": "x"},
                                      "parameters": {"audio": False}})
    assert r2.audio == "silent"
    for bad in ([1, 2], {"model": "wan2.5-t2v-preview"}, {"input": {"prompt": "x"}},
                {"model": "wan2.5-t2v-preview", "input": {"prompt": "x"}, "parameters": []},
                {"model": "wan2.5-t2v-preview", "input": {"prompt": "x"},
                 "parameters": {"audio": "yes"}}):
        with pytest.raises(ValidationError):
            GenerationRequest.from_wire(bad)


@pytest.mark.parametrize(("model", "audio"), [(m.name, a) for m in catalog.MODELS.values()
                                               for a in m.audio_modes])
def test_from_wire_reads_back_every_models_body(model, audio):
    kw = {"audio_url": "https://example.invalid/a.mp3"} if audio == "custom" else {"audio": audio}
    r = GenerationRequest("a kite", model=model, seed=4, **kw)
    assert GenerationRequest.from_wire(r.wire_body()) == r
