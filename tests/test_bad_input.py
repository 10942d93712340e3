"""Bad input never escapes as a raw exception (issue 8, item 12): every entry point refuses it
with a ValidationError naming the field and what is allowed, before anything is sent or
written. And the inputs that were wrongly refused (numpy integers, whole floats) are accepted;
a string of tags is one tag; a text file named .wav is never uploaded."""

from __future__ import annotations

import asyncio
import subprocess
import wave

import httpx
import imageio_ffmpeg
import numpy as np
import pytest

import wan_nb
from wan_nb import catalog
from wan_nb.client import AsyncClient
from wan_nb.errors import ValidationError
from wan_nb.experiment import Experiment
from wan_nb.request import GenerationRequest

SMALL = {"model": "wan2.5-t2v-preview", "size": "624*624", "duration": 5}
MISSING = object()  # "leave the prompt out"


# -- files -------------------------------------------------------------------------------------
def _ffmpeg(out, seconds: float, *args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"sine=frequency=440:duration={seconds}", *args, str(out)],
                   check=True, timeout=60)


def _wav(path, seconds: float):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Real files made once per module: audio of every common layout, and impostors."""
    d = tmp_path_factory.mktemp("audio")
    f = {}
    text = "these are my notes, not audio\n" * 20
    for name in ("text.wav", "text.mp3"):
        (d / name).write_text(text)
        f[name] = d / name
    (d / "empty.wav").write_bytes(b"")
    f["empty.wav"] = d / "empty.wav"
    f["short.wav"] = _wav(d / "short.wav", 2)
    f["long.wav"] = _wav(d / "long.wav", 31)
    layouts = {"cbr-id3.mp3": ("-c:a", "libmp3lame", "-b:a", "64k"),
               "bare.mp3": ("-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "0",
                            "-id3v2_version", "0"),
               "vbr.mp3": ("-ac", "2", "-c:a", "libmp3lame", "-q:a", "4"),
               "mpeg2.mp3": ("-ar", "16000", "-c:a", "libmp3lame", "-q:a", "6"),
               "float.wav": ("-c:a", "pcm_f32le")}
    for name, args in layouts.items():
        _ffmpeg(d / name, 4, *args)
        f[name] = d / name
    _ffmpeg(d / "short.mp3", 1, "-c:a", "libmp3lame", "-b:a", "64k")
    f["short.mp3"] = d / "short.mp3"
    # exactly at the limits: ffmpeg says 30.00 s and 3.00 s, the frame count says a little
    # more or less (encoder delay and padding)
    for name, seconds, args in (("cbr-30s.mp3", 30, ("-c:a", "libmp3lame", "-b:a", "64k")),
                                ("vbr-30s.mp3", 30, ("-c:a", "libmp3lame", "-q:a", "4")),
                                ("cbr-3s.mp3", 3, ("-c:a", "libmp3lame", "-b:a", "64k"))):
        _ffmpeg(d / name, seconds, *args)
        f[name] = d / name
    f["30s.wav"] = _wav(d / "30s.wav", 30)
    f["3s.wav"] = _wav(d / "3s.wav", 3)
    return f


@pytest.fixture
def files(made, tmp_path, wav_file):
    """``made`` plus the suite's real WAV (``wav_file``) and a WAV renamed .mp3."""
    (tmp_path / "wav-named.mp3").write_bytes(wav_file.read_bytes())
    return {**made, "wav": wav_file, "wav-named.mp3": tmp_path / "wav-named.mp3"}


# -- the entry points ----------------------------------------------------------------------------
def _params(kwargs: dict, files: dict) -> dict:
    params = {"prompt": "a fox", **SMALL, **kwargs}
    if isinstance(params.get("audio_url"), str) and params["audio_url"].startswith("file:"):
        params["audio_url"] = str(files[params["audio_url"][5:]])
    if params["prompt"] is MISSING:
        del params["prompt"]
    return params


class Nothing:
    """A transport that records anything sent (nothing should be)."""

    def __init__(self):
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(500, json={"code": "InternalError", "message": "unexpected"})


def via_constructor(params, tmp_path):
    GenerationRequest(**params)


def via_create_task(params, tmp_path):
    wire = Nothing()

    async def go():
        async with AsyncClient("sk-test", transport=httpx.MockTransport(wire)) as c:
            await c.create_task(**params)

    try:
        asyncio.run(go())
    finally:
        assert wire.sent == []


def _client(tmp_path, wire):
    return wan_nb.Client("sk-test", base_url="http://127.0.0.1:9", backend="test",
                         transport=httpx.MockTransport(wire), store=tmp_path / "store")


def via_submit(params, tmp_path):
    wire = Nothing()
    client = _client(tmp_path, wire)
    try:
        client.submit(**params)
    finally:
        try:
            assert wire.sent == [] and client.store.runs() == []
        finally:
            client.close()


def _via_experiment(define):
    def run(params, tmp_path):
        wire = Nothing()
        client = _client(tmp_path, wire)
        try:
            define(Experiment("bad-input", client=client), params).run()
        finally:
            try:
                assert wire.sent == [] and client.store.runs() == []
            finally:
                client.close()
    return run


via_experiment_add = _via_experiment(lambda e, p: e.add("only", **p))
via_experiment_add.__name__ = "via_experiment_add"
via_experiment_grid = _via_experiment(lambda e, p: e.grid(**{k: [v] for k, v in p.items()}))
via_experiment_grid.__name__ = "via_experiment_grid"

ENTRIES = [via_constructor, via_create_task, via_submit, via_experiment_add,
           via_experiment_grid]

# (parameters, field named, words the message must contain)
BAD = [
    ({"prompt": "a fox\ud800 in the rain"}, "prompt", ["unpaired surrogate", r"'\ud800'",
                                                      "character 5"]),
    ({"negative_prompt": "blur\udfff"}, "negative_prompt", ["unpaired surrogate"]),
    ({"sed": 3}, "sed", ["unknown parameter 'sed'", "did you mean 'seed'?"]),
    ({"promt": "a fox"}, "promt", ["did you mean 'prompt'?"]),
    ({"prompt": MISSING}, "prompt", ["prompt"]),
    ({"prompt": None}, "prompt", ["non-empty string", "None"]),
    ({"seed": True}, "seed", ["True (a bool)", "whole number"]),
    ({"seed": np.bool_(True)}, "seed", ["(a bool)"]),
    ({"duration": True}, "duration", ["(a bool)"]),
    ({"seed": 1.5}, "seed", ["1.5", "whole number"]),
    ({"seed": np.float64("nan")}, "seed", ["nan"]),
    ({"duration": np.int64(7)}, "duration", ["7", "5 or 10"]),
    ({"audio_url": "file:text.wav"}, "audio_url", ["not a WAV file", "RIFF",
                                                    "these are my"]),
    ({"audio_url": "file:text.mp3"}, "audio_url", ["not an MP3 file", "ID3"]),
    ({"audio_url": "file:wav-named.mp3"}, "audio_url", ["not an MP3 file", "RIFF"]),
    ({"audio_url": "file:empty.wav"}, "audio_url", ["not a WAV file"]),
    ({"audio_url": "file:short.wav"}, "audio_url", ["2.00 s", "3 to 30 s"]),
    ({"audio_url": "file:long.wav"}, "audio_url", ["31.00 s", "3 to 30 s"]),
    ({"audio_url": "file:short.mp3"}, "audio_url", ["lasts 1.0", "3 to 30 s"]),
]

# what experiment.py does not do yet (it filters unknown names itself, without a suggestion)
NEEDS_EXPERIMENT: set = set()


def _cases():
    for entry in ENTRIES:
        for i, (kwargs, field, words) in enumerate(BAD):
            marks = ()
            if (entry, field) in NEEDS_EXPERIMENT:
                marks = (pytest.mark.xfail(strict=True, reason="experiment.py: use "
                                           "request.unknown_parameter() for unknown names"),)
            yield pytest.param(entry, kwargs, field, words, marks=marks,
                               id=f"{entry.__name__}-{i}-{field}")


@pytest.mark.parametrize(("entry", "kwargs", "field", "words"), list(_cases()))
def test_bad_input_is_a_validation_error_before_anything_is_sent(entry, kwargs, field, words,
                                                                 files, tmp_path):
    with pytest.raises(ValidationError) as info:
        entry(_params(kwargs, files), tmp_path)
    fields = info.value.fields
    assert any(f == field or f.endswith(f": {field}") for f in fields), fields
    for word in words:
        assert word in str(info.value), str(info.value)


@pytest.mark.parametrize("call", [
    lambda c: c.submit(),
    lambda c: c.submit(None),
    lambda c: c.submit("a fox", prompt="a cat"),
    lambda c: c.create_task(sed=3, prompt="a fox"),
], ids=["no-prompt", "none", "prompt-twice", "create-task-typo"])
def test_wrong_calls_of_the_client_are_validation_errors(call, tmp_path):
    wire = Nothing()
    client = _client(tmp_path, wire)
    try:
        with pytest.raises(ValidationError, match="prompt|did you mean|GenerationRequest"):
            call(client)
        assert wire.sent == [] and client.store.runs() == []
    finally:
        client.close()


def test_wrong_positional_call_is_a_validation_error():
    with pytest.raises(ValidationError, match="at most 11 values by position"):
        GenerationRequest("a", "wan2.6-t2v", "", None, 5, 1, True, False, None, None, None, 1)


# -- accepted now -------------------------------------------------------------------------------
WHOLE = [np.int64(10), np.int32(10), np.uint8(10), 10.0, np.float64(10.0), np.array(10)]


@pytest.mark.parametrize("value", WHOLE, ids=lambda v: type(v).__name__)
def test_any_whole_number_is_a_seed_and_a_duration(value):
    r = GenerationRequest("a fox", model="wan2.5-t2v-preview", size="832*480", seed=value,
                          duration=value, prompt_extend=np.bool_(True))
    assert (r.seed, r.duration) == (10, 10)
    assert type(r.seed) is int and type(r.duration) is int and r.prompt_extend is True
    same = GenerationRequest("a fox", model="wan2.5-t2v-preview", size="832*480", seed=10,
                             duration=10)
    assert r.fingerprint == same.fingerprint and r == same
    assert r.wire_body() == same.wire_body()


def test_numpy_seeds_through_submit_and_a_grid(make_client):
    client = make_client()
    job = client.submit("a numpy seed", seed=np.int64(41), **SMALL)
    assert job.request.seed == 41 and client.store.get_run(job.run_id)["seed"] == 41
    exp = Experiment("numpy-grid", base={"prompt": "a grid", **SMALL}, client=client)
    jobs = exp.grid(seed=np.arange(3)).run()
    assert sorted(j.request.seed for j in jobs) == [0, 1, 2]
    jobs.append(job)
    jobs.wait(timeout=120, progress=False)
    assert all(j.ok for j in jobs), [j.error for j in jobs]


@pytest.mark.parametrize("name", ["wav", "float.wav", "cbr-id3.mp3", "bare.mp3", "vbr.mp3",
                                  "mpeg2.mp3", "cbr-30s.mp3", "vbr-30s.mp3", "cbr-3s.mp3",
                                  "30s.wav", "3s.wav"])
def test_real_audio_files_are_accepted(name, files):
    path = files[name]
    r = GenerationRequest("speak", audio_url=str(path), seed=1)
    assert r.audio == "custom" and r.audio_is_local
    assert GenerationRequest("speak", audio_url=f"file://{path}", seed=1).fingerprint \
        == r.fingerprint


def test_a_text_file_named_wav_is_never_uploaded_even_if_swapped_after_validation(files):
    """Validated as a real WAV, then replaced by text before the create: the upload checks
    again, so nothing is sent (not even the upload policy request)."""
    wire = Nothing()
    path = files["wav"]
    request = GenerationRequest("speak", audio_url=str(path), **SMALL)
    path.write_text("not audio any more")

    async def go():
        async with AsyncClient("sk-test", transport=httpx.MockTransport(wire)) as c:
            await c.create_task(request)

    with pytest.raises(ValidationError, match="not a WAV file"):
        asyncio.run(go())
    assert wire.sent == []


# -- tags ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tags", "stored"), [
    ("baseline", ["baseline"]),
    (["baseline", "night"], ["baseline", "night"]),
    (("a", "b", "a"), ["a", "b"]),
    (None, []),
    ((), []),
])
def test_tags_are_stored_as_given(tags, stored, make_client):
    client = make_client()
    job = client.submit("tagged", seed=1, tags=tags, **SMALL)
    assert client.store.get_run(job.run_id)["tags"] == stored == job.tags


@pytest.mark.parametrize(("tags", "words"), [
    (["ok", 3], "not 3"),
    (["ok", ""], "non-empty"),
    (5, "string or a list of strings"),
    (b"baseline", "string or a list of strings"),
    (["bad\ud800"], "unpaired surrogate"),
])
def test_bad_tags_are_refused_before_anything_is_written(tags, words, tmp_path):
    wire = Nothing()
    client = _client(tmp_path, wire)
    try:
        with pytest.raises(ValidationError, match=words) as info:
            client.submit("tagged", seed=1, tags=tags, **SMALL)
        assert info.value.fields == ["tags"] or set(info.value.fields) == {"tags"}
        assert wire.sent == [] and client.store.runs() == []
    finally:
        client.close()


def test_an_experiment_tag_string_is_one_tag(make_client):
    client = make_client()
    exp = Experiment("one-tag", base={"prompt": "tagged", **SMALL}, client=client,
                     tags="baseline")
    jobs = exp.add(seed=1).run()
    assert client.store.get_run(jobs[0].run_id)["tags"] == ["baseline"]
    jobs.wait(timeout=60, progress=False)


def test_the_audio_limits_come_from_the_catalog():
    assert (catalog.AUDIO_MIN_S, catalog.AUDIO_MAX_S) == (3.0, 30.0)
    assert catalog.AUDIO_MAX_BYTES == 15 * 1024 * 1024
