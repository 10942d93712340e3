"""Pure validation (issue 9, item 6): a request's values are checked against the catalog
without touching the filesystem; a local audio file is read once, when the request is built
from user input, and never again until it is submitted.

File opens are counted with Python's audit hook (``open`` events of the test's own thread),
on a real file, with nothing of wan_nb mocked."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from wan_nb import audiofile, catalog
from wan_nb.errors import ValidationError

from .conftest import wav_bytes
from wan_nb.request import PARAMETERS, GenerationRequest

# -- counting file opens -----------------------------------------------------------------------
_watched: dict[int, list[str]] = {}


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _watched:
        seen = _watched.get(threading.get_ident())
        if seen is not None:
            what = args[0]
            seen.append(os.fsdecode(what) if isinstance(what, (str, bytes, os.PathLike))
                        else repr(what))


# An audit hook cannot be removed: it records only while a test watches, and only the opens of
# the watching thread (the toolkit's own thread may be writing a ledger meanwhile).
sys.addaudithook(_audit)


@contextmanager
def file_opens() -> Iterator[list[str]]:
    """The paths the current thread opens inside the ``with`` block."""
    seen: list[str] = []
    _watched[threading.get_ident()] = seen
    try:
        yield seen
    finally:
        del _watched[threading.get_ident()]


# -- a local file is read once -------------------------------------------------------------------
def _every_later_use(r: GenerationRequest) -> dict:
    """Everything a caller does with a built request, besides submitting it."""
    again = r.replace(seed=r.seed)
    return {
        "fingerprint": r.fingerprint, "audio_sha256": r.audio_sha256, "params": r.params(),
        "stored_json": r.stored_json(), "wire_body": r.wire_body(), "repr": repr(r),
        "equal": r == again and again.fingerprint == r.fingerprint, "hash": hash(r),
        "replaced": r.replace(seed=5).audio_sha256, "other_model": r.replace(
            model="wan2.6-t2v").audio_sha256,
        "pickled": pickle.loads(pickle.dumps(r)).fingerprint,
        "copied": copy.copy(r).fingerprint, "deepcopied": copy.deepcopy(r).fingerprint,
        "stored": GenerationRequest.from_params(r.stored_json(), stored=True).fingerprint,
        "cost": r.estimated_cost, "tier": r.tier,
    }


def test_a_local_file_is_opened_once_when_the_request_is_built(wav_file):
    with file_opens() as opened:
        r = GenerationRequest("speak", audio_url=str(wav_file), seed=3)
    assert opened == [str(wav_file)]  # checked and hashed from one read
    with file_opens() as opened:
        uses = _every_later_use(r)
    assert opened == []
    assert uses["replaced"] == uses["other_model"] == uses["audio_sha256"] == r.audio_sha256
    assert uses["pickled"] == uses["copied"] == uses["deepcopied"] == uses["stored"] \
        == r.fingerprint and uses["equal"]


@pytest.mark.parametrize("change", ["deleted", "rewritten", "not audio any more"])
def test_later_uses_survive_any_change_of_the_file(change, wav_file):
    r = GenerationRequest("speak", audio_url=f"file://{wav_file}", seed=3)
    before = _every_later_use(r)
    if change == "deleted":
        wav_file.unlink()
    elif change == "rewritten":
        wav_file.write_bytes(wav_file.read_bytes()[:-2] + b"\x01\x00")
    else:
        wav_file.write_text("my notes")
    with file_opens() as opened:
        after = _every_later_use(r)
    assert opened == [] and after == before


def test_a_new_file_in_replace_is_read(wav_file, tmp_path):
    r = GenerationRequest("speak", audio_url=str(wav_file), seed=3)
    other = tmp_path / "other.wav"
    other.write_bytes(wav_file.read_bytes()[:-2] + b"\x01\x00")
    with file_opens() as opened:
        s = r.replace(audio_url=str(other))
    assert opened == [str(other)] and s.audio_sha256 != r.audio_sha256
    with pytest.raises(ValidationError, match="existing local file"):
        r.replace(audio_url=str(tmp_path / "gone.wav"))


# -- the values: pure, table-driven ----------------------------------------------------------------
MODELS = ", ".join(catalog.MODELS)
SIZES_25 = ", ".join(catalog.sizes_for("wan2.5-t2v-preview"))
SIZES_22 = ", ".join(catalog.sizes_for("wan2.2-t2v-plus"))
ALLOWED = ", ".join(PARAMETERS)
WITH_AUDIO = ", ".join(m.name for m in catalog.MODELS.values() if m.audio)

# (parameter, the call's values, field named, the whole message: the bad value and what is
# allowed). The base call (BASE) is a valid wan2.5-t2v-preview request.
PURE = [
    ("prompt", {"prompt": ""}, "prompt", "prompt must be a non-empty string, not ''"),
    ("prompt", {"prompt": 3}, "prompt", "prompt must be a non-empty string, not 3"),
    ("prompt", {"prompt": "x" * 1501}, "prompt",
     "prompt has 1501 characters; wan2.5-t2v-preview allows at most 1500 (the service would "
     "silently cut it)"),
    ("prompt", {"prompt": "y" * 801, "model": "wan2.2-t2v-plus"}, "prompt",
     "prompt has 801 characters; wan2.2-t2v-plus allows at most 800 (the service would "
     "silently cut it)"),
    ("prompt", {"prompt": "a\ud800"}, "prompt",
     "prompt contains an unpaired surrogate '\\ud800' at character 1 (not valid Unicode text, "
     "often left by a broken copy-paste or a mis-decoded file); remove it or fix the source "
     "text"),
    ("negative_prompt", {"negative_prompt": 5}, "negative_prompt",
     "negative_prompt must be a string, not 5"),
    ("negative_prompt", {"negative_prompt": "n" * 501}, "negative_prompt",
     "negative_prompt has 501 characters; at most 500 are allowed"),
    ("model", {"model": "wan2.5-t2v"}, "model",
     f"model 'wan2.5-t2v' is unknown; choose one of {MODELS}"),
    ("size", {"size": "1280x720"}, "size",
     "size '1280x720' is not offered by wan2.5-t2v-preview (sizes are written with '*', e.g. "
     f"'1280*720'); choose one of {SIZES_25}"),
    ("size", {"size": "1280*720", "model": "wan2.2-t2v-plus"}, "size",
     f"size '1280*720' is not offered by wan2.2-t2v-plus; choose one of {SIZES_22}"),
    ("size", {"size": 720}, "size",
     f"size 720 is not offered by wan2.5-t2v-preview; choose one of {SIZES_25}"),
    ("duration", {"duration": 15}, "duration",
     "duration 15 is not offered by wan2.5-t2v-preview; use 5 or 10 (seconds)"),
    ("duration", {"duration": 10, "model": "wan2.2-t2v-plus"}, "duration",
     "duration 10 is not offered by wan2.2-t2v-plus; use 5 (seconds)"),
    ("duration", {"duration": 16, "model": "wan2.6-t2v"}, "duration",
     "duration 16 is not offered by wan2.6-t2v; use an integer from 2 to 15 (seconds)"),
    ("duration", {"duration": "5"}, "duration",
     "duration '5' is not offered by wan2.5-t2v-preview; use 5 or 10 (seconds)"),
    ("duration", {"duration": True}, "duration",
     "duration True (a bool) is not offered by wan2.5-t2v-preview; use 5 or 10 (seconds)"),
    ("seed", {"seed": -1}, "seed",
     "seed -1 must be a whole number from 0 to 2147483647 (an integer)"),
    ("seed", {"seed": 2**31}, "seed",
     "seed 2147483648 must be a whole number from 0 to 2147483647 (an integer)"),
    ("seed", {"seed": 1.5}, "seed",
     "seed 1.5 must be a whole number from 0 to 2147483647 (an integer)"),
    ("seed", {"seed": "7"}, "seed",
     "seed '7' must be a whole number from 0 to 2147483647 (an integer)"),
    ("prompt_extend", {"prompt_extend": "yes"}, "prompt_extend",
     "prompt_extend must be True or False, not 'yes'"),
    ("prompt_extend", {"prompt_extend": 1}, "prompt_extend",
     "prompt_extend must be True or False, not 1"),
    ("watermark", {"watermark": "no"}, "watermark", "watermark must be True or False, not 'no'"),
    ("audio", {"audio": "loud"}, "audio", "audio 'loud' must be 'auto', 'custom' or 'silent'"),
    ("audio", {"audio": "auto", "model": "wan2.2-t2v-plus"}, "audio",
     "audio 'auto' is not supported by wan2.2-t2v-plus, which only makes silent video; models "
     f"with audio: {WITH_AUDIO}"),
    ("audio", {"audio": "custom"}, "audio_url",
     "audio='custom' needs audio_url: an http(s) URL, an oss:// upload or a local .wav/.mp3 "
     "file"),
    ("audio_url", {"audio_url": "https://example.invalid/a.mp3", "model": "wan2.1-t2v-turbo"},
     "audio_url", "audio_url is not supported by wan2.1-t2v-turbo, which only makes silent "
     f"video; models with audio: {WITH_AUDIO}"),
    ("audio_url", {"audio_url": "ftp://host/a.mp3"}, "audio_url",
     "audio_url 'ftp://host/a.mp3' must be an http(s) URL, an oss:// upload or a local file"),
    ("audio_url", {"audio_url": "https://"}, "audio_url", "audio_url 'https://' has no host"),
    ("audio_url", {"audio_url": "voice.ogg"}, "audio_url",
     "audio file 'voice.ogg' must be .wav or .mp3"),
    ("audio_url", {"audio_url": "file:///music/voice.flac"}, "audio_url",
     "audio file '/music/voice.flac' must be .wav or .mp3"),
    ("audio_url", {"audio": "silent", "audio_url": "https://example.invalid/a.mp3"},
     "audio_url", "audio_url is only used with audio='custom', not audio='silent'"),
    ("shot_type", {"shot_type": "multi"}, "shot_type",
     "shot_type is only supported by wan2.6-t2v, wan2.6-t2v-us, not wan2.5-t2v-preview; leave "
     "it unset"),
    ("shot_type", {"shot_type": "many", "model": "wan2.6-t2v"}, "shot_type",
     "shot_type 'many' must be 'single' or 'multi'"),
    ("shot_type", {"shot_type": "multi", "prompt_extend": False, "model": "wan2.6-t2v"},
     "shot_type", "shot_type 'multi' only takes effect with prompt_extend=True; set "
     "prompt_extend=True or use 'single'"),
    ("resolution", {"resolution": "720"}, "resolution",
     "resolution '720' is not offered by wan2.5-t2v-preview; choose one of 480P, 720P, 1080P"),
    ("ratio", {"ratio": "21:9"}, "ratio",
     "ratio '21:9' is not offered by wan2.5-t2v-preview at 1080P; choose one of 16:9, 9:16, "
     "1:1, 4:3, 3:4"),
    ("(unknown)", {"sed": 3}, "sed",
     f"unknown parameter 'sed' (did you mean 'seed'?); allowed: {ALLOWED}"),
]
BASE = {"prompt": "a paper boat", "model": "wan2.5-t2v-preview", "duration": 5, "seed": 1}


@pytest.mark.parametrize(("param", "values", "field", "message"), PURE,
                         ids=[f"{i}-{case[0]}" for i, case in enumerate(PURE)])
def test_each_bad_value_is_refused_with_what_is_allowed_without_io(param, values, field,
                                                                   message):
    call = {**BASE, **values}
    with file_opens() as opened, pytest.raises(ValidationError) as built:
        GenerationRequest(**call)
    assert built.value.errors == [(field, message)]
    # a stored request is validated the same way, purely
    if "a\ud800" not in call.values():  # (not valid JSON text)
        with file_opens() as also, pytest.raises(ValidationError) as stored:
            GenerationRequest.from_params(json.dumps(call), stored=True)
        assert stored.value.errors == [(field, message)]
        assert also == []
    assert opened == []


def test_the_table_covers_every_parameter():
    assert set(PARAMETERS) <= {case[0] for case in PURE}


def test_several_bad_values_are_reported_together_without_io():
    with file_opens() as opened, pytest.raises(ValidationError) as info:
        GenerationRequest("a", model="wan2.2-t2v-plus", size="1280*720", duration=10, seed=-5,
                          watermark="no", audio_url="voice.ogg")
    assert info.value.fields == ["size", "duration", "seed", "watermark", "audio_url"]
    assert opened == []


def test_a_bad_value_and_a_bad_file_are_reported_together(tmp_path):
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio")
    with file_opens() as opened, pytest.raises(ValidationError) as info:
        GenerationRequest("a", seed=-1, audio_url=str(notes))
    assert info.value.fields == ["seed", "audio_url"]
    assert "not a WAV file" in str(info.value) and opened == [str(notes)]


@pytest.mark.parametrize("values", [
    {}, {"model": "wan2.6-t2v", "shot_type": "multi", "duration": 7},
    {"audio_url": "https://example.invalid/a.mp3"}, {"audio_url": "oss://dir/a.wav"},
    {"model": "wanx2.1-t2v-turbo", "size": "624*624"}, {"audio": "silent"},
], ids=["plain", "multi-shot", "https-audio", "oss-audio", "alias", "silent"])
def test_a_valid_request_without_a_local_file_opens_nothing(values):
    with file_opens() as opened:
        r = GenerationRequest(**{**BASE, **values})
        _every_later_use(r)
    assert opened == []


def test_a_stored_request_reads_no_file_even_when_it_names_one(tmp_path):
    """The stored form of a run whose file was never on this machine (another kernel's
    ledger, a moved notebook): validated purely, nothing opened or stat'ed into an error."""
    text = json.dumps({**BASE, "audio": "custom", "audio_url": str(tmp_path / "elsewhere.wav"),
                       "audio_sha256": "ab" * 32})
    with file_opens() as opened:
        r = GenerationRequest.from_params(text, stored=True)
        uses = _every_later_use(r)
    assert opened == [] and r.audio_sha256 == "ab" * 32
    assert json.loads(uses["stored_json"])["audio_sha256"] == "ab" * 32


def test_reading_an_audio_header_is_pure():
    """What the file is and how long it lasts comes from bytes in memory; only
    ``audiofile.load`` opens the file."""
    buf = io.BytesIO(wav_bytes())
    with file_opens() as opened:
        assert audiofile.seconds(buf.getvalue(), "WAV") == 4.0
        with pytest.raises(audiofile.NotAudio, match="not RIFF....WAVE"):
            audiofile.seconds(b"my notes", "WAV")
        with pytest.raises(audiofile.NotAudio, match="neither an ID3 tag"):
            audiofile.seconds(buf.getvalue(), "MP3")
    assert opened == []
