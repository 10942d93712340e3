"""A request read back from the store never touches the filesystem (issue 8, item 15; issue
9, item 6).

A local audio file is checked and hashed once, when the user builds the request; the stored
``request_json`` carries its sha256, so reading a run back (a Job, ``Experiment.resume()``)
works after the file is gone, moved or changed, and fingerprints of rows written by earlier
versions are unchanged, so an existing experiment still de-duplicates after an upgrade. The
file is read again only to be sent, and a file that changed since is refused then."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from wan_nb.client import AsyncClient
from wan_nb.errors import ValidationError
from wan_nb.experiment import Experiment
from wan_nb.request import GenerationRequest

from .test_validation_pure import file_opens

# Produced by wan_nb before this change (commit ee62b11): the parameters, the request_json
# the store kept and the fingerprint it recorded. ``{wav}`` is the conftest ``wav_file``,
# whose bytes are fixed (4 s of 8 kHz mono silence).
OLD_ROWS = [
    ({"prompt": "a fox detective in the rain", "model": "wan2.5-t2v-preview",
      "size": "832*480", "duration": 10, "seed": 12345},
     '{"audio": "auto", "audio_url": null, "duration": 10, "model": "wan2.5-t2v-preview", '
     '"negative_prompt": "", "prompt": "a fox detective in the rain", "prompt_extend": true, '
     '"seed": 12345, "shot_type": null, "size": "832*480", "watermark": false}',
     "dc50740aa0fd811846774e8547e4c9514cde51c6d855e2e0172735a3c5e9d0d5"),
    ({"prompt": "一只猫在雨中", "model": "wan2.6-t2v", "duration": 7, "seed": 9,
      "shot_type": "multi", "negative_prompt": "blur"},
     '{"audio": "auto", "audio_url": null, "duration": 7, "model": "wan2.6-t2v", '
     '"negative_prompt": "blur", "prompt": "一只猫在雨中", "prompt_extend": true, "seed": 9, '
     '"shot_type": "multi", "size": "1920*1080", "watermark": false}',
     "59b2ce7dcd3ea270fa24702ac8e40a74ffaa286a27c1416083c12669d94e4e2a"),
    ({"prompt": "speak", "model": "wan2.5-t2v-preview", "size": "832*480", "seed": 7,
      "audio_url": "{wav}"},
     '{"audio": "custom", "audio_url": "{wav}", "duration": 5, "model": "wan2.5-t2v-preview", '
     '"negative_prompt": "", "prompt": "speak", "prompt_extend": true, "seed": 7, '
     '"shot_type": null, "size": "832*480", "watermark": false}',
     "240c6b9bdef7551a6c30b7db70f1f652ab134b114c03c4c36c6768e957d3715c"),
]
AUDIO_ROW = OLD_ROWS[2]


def _fill(obj, wav):
    if isinstance(obj, str):
        return obj.replace("{wav}", str(wav))
    if isinstance(obj, dict):
        return {k: _fill(v, wav) for k, v in obj.items()}
    return obj


@pytest.mark.parametrize(("params", "old_json", "old_fp"), OLD_ROWS, ids=["plain", "cjk", "wav"])
def test_fingerprints_of_old_rows_are_unchanged(params, old_json, old_fp, wav_file):
    built = GenerationRequest(**_fill(params, wav_file))
    assert built.fingerprint == old_fp
    back = GenerationRequest.from_params(_fill(old_json, wav_file), stored=True)
    assert back == built and back.fingerprint == old_fp
    if not built.audio_is_local:  # the stored text itself is unchanged too
        assert built.stored_json() == old_json


@pytest.mark.parametrize("change", ["deleted", "rewritten"])
def test_a_stored_request_never_reads_its_audio_file(change, wav_file, tmp_path):
    built = GenerationRequest("speak", audio_url=str(wav_file), seed=3)
    text = built.stored_json()
    assert json.loads(text)["audio_sha256"] == built.audio_sha256
    if change == "deleted":
        wav_file.unlink()
    else:
        wav_file.write_bytes(b"RIFF")  # neither the old content nor audio at all
    back = GenerationRequest.from_params(text, stored=True)
    assert back == built and back.audio_is_local
    assert back.fingerprint == built.fingerprint  # the recorded sha256, not a re-hash
    assert back.wire_body() == built.wire_body()
    # the user building it anew is told about the file, before anything is sent
    with pytest.raises(ValidationError) as info:
        GenerationRequest.from_params(text)
    assert info.value.fields == ["audio_url"]


def test_the_fingerprint_is_taken_once(wav_file):
    """Hashed when built: later accesses neither re-read the file nor change."""
    r = GenerationRequest("speak", audio_url=str(wav_file), seed=3)
    first = r.fingerprint
    wav_file.write_bytes(wav_file.read_bytes()[:-2] + b"\x01\x00")  # other content
    assert r.fingerprint == first
    wav_file.unlink()
    assert r.fingerprint == first and r.audio_sha256
    # a copy keeps the file as recorded; the file is looked at again when it is sent
    copy = r.replace(seed=4)
    assert copy.audio_sha256 == r.audio_sha256 and copy.fingerprint != first
    with pytest.raises(ValidationError, match="existing local file"):
        copy.read_audio_file()


def test_an_old_row_whose_file_is_gone_still_loads(wav_file):
    params, old_json, old_fp = AUDIO_ROW
    text = _fill(old_json, wav_file)
    wav_file.unlink()
    back = GenerationRequest.from_params(text, stored=True)  # no file, no sha: still a request
    assert back.seed == 7 and back.audio == "custom" and back.audio_sha256 is None
    # only asking for the content fingerprint needs the file; that is a clear error, not OSError
    with pytest.raises(ValidationError, match="cannot be read"):
        _ = back.fingerprint
    # given the fingerprint its row recorded, it needs no file at all
    with file_opens() as opened:
        back = GenerationRequest.from_params(text, stored=True, fingerprint=old_fp)
        assert back.fingerprint == old_fp
    assert opened == []


def test_an_old_row_is_sent_only_with_the_audio_it_was_recorded_with(wav_file):
    """A row written before the sha256 was recorded: its fingerprint (which counts the
    content) tells whether the file is still the one it was recorded with."""
    params, old_json, old_fp = AUDIO_ROW
    back = GenerationRequest.from_params(_fill(old_json, wav_file), stored=True,
                                         fingerprint=old_fp)
    assert back.read_audio_file() == wav_file.read_bytes()
    wav_file.write_bytes(wav_file.read_bytes()[:-2] + b"\x01\x00")
    with pytest.raises(ValidationError, match="changed since the request was recorded"):
        back.read_audio_file()


class Nothing:
    """A transport that records anything sent (nothing should be) and fails the test."""

    def __init__(self):
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        raise AssertionError(f"sent {request.method} {request.url.path}")


def _create(request: GenerationRequest, wire: Nothing) -> None:
    """``create_task`` of ``request``, as the poller's create step calls it."""

    async def go():
        async with AsyncClient("sk-test", transport=httpx.MockTransport(wire)) as c:
            await c.create_task(request)

    asyncio.run(go())


@pytest.mark.parametrize(("change", "words"), [
    ("deleted", "existing local file"),
    ("moved", "existing local file"),
    ("rewritten", "changed since the request was recorded"),
    ("not audio any more", "not a WAV file"),
])
def test_a_stored_request_whose_file_changed_is_refused_when_sent(change, words, wav_file,
                                                                  tmp_path):
    built = GenerationRequest("speak", audio_url=str(wav_file), seed=3)
    text = built.stored_json()
    if change == "deleted":
        wav_file.unlink()
    elif change == "moved":
        wav_file.rename(tmp_path / "elsewhere.wav")
    elif change == "rewritten":  # another recording under the same name, still valid audio
        wav_file.write_bytes(wav_file.read_bytes()[:-2] + b"\x01\x00")
    else:
        wav_file.write_text("my notes")
    with file_opens() as opened:  # read back: nothing looked at
        back = GenerationRequest.from_params(text, stored=True)
        assert back.audio_sha256 == built.audio_sha256 and back.fingerprint == built.fingerprint
    assert opened == []
    with pytest.raises(ValidationError, match=words):
        back.read_audio_file()
    wire = Nothing()
    with pytest.raises(ValidationError, match=words) as info:
        _create(back, wire)
    assert info.value.fields == ["audio_url"] and wire.sent == []


def test_an_old_row_whose_file_changed_is_refused_when_sent(wav_file):
    params, old_json, old_fp = AUDIO_ROW
    back = GenerationRequest.from_params(_fill(old_json, wav_file), stored=True,
                                         fingerprint=old_fp)
    wav_file.write_bytes(wav_file.read_bytes()[:-2] + b"\x01\x00")
    wire = Nothing()
    with pytest.raises(ValidationError, match="changed since the request was recorded"):
        _create(back, wire)
    assert wire.sent == []


def _insert_old_row(client, wav_file, experiment="upgrade", variant="speak"):
    """A finished run exactly as the previous version recorded it."""
    params, old_json, old_fp = AUDIO_ROW
    request = GenerationRequest(**_fill(params, wav_file))
    row = client.manager._row_for(request, experiment, variant, ())
    row.update(request_json=_fill(old_json, wav_file), fingerprint=old_fp, status="SUCCEEDED",
               owner=None, task_id="old-task-1")
    return client.store.insert_run(**row)


def _variant(wav_file):
    return _fill(AUDIO_ROW[0], wav_file)


def test_an_old_experiment_still_deduplicates_after_the_upgrade(make_client, wav_file):
    client = make_client()
    old = _insert_old_row(client, wav_file)
    exp = Experiment("upgrade", client=client).add("speak", **_variant(wav_file))
    assert exp.estimate()["new_runs"] == 0
    jobs = exp.run()
    assert [j.run_id for j in jobs] == [old]
    assert client.emulator.app.state.emulator.stats()["creates"]["accepted"] == 0


def test_resume_works_after_one_runs_audio_file_is_gone(make_client, wav_file, tmp_path):
    client = make_client()
    gone = _insert_old_row(client, wav_file)
    other = tmp_path / "other.wav"
    other.write_bytes(wav_file.read_bytes())
    kept = GenerationRequest("speak", model="wan2.5-t2v-preview", size="832*480", seed=8,
                             audio_url=str(other))
    row = client.manager._row_for(kept, "upgrade", "speak-8", ())
    kept_id = client.store.insert_run(**{**row, "status": "SUCCEEDED", "owner": None,
                                         "task_id": "old-task-2"})
    wav_file.unlink()
    jobs = Experiment("upgrade", client=client).resume()
    assert sorted(j.run_id for j in jobs) == sorted([gone, kept_id])
    assert {j.request.seed for j in jobs} == {7, 8}
