"""Contract suite: the official ``dashscope`` SDK (PyPI) against the emulator on a loopback port.

Every scenario succeeds or fails exactly as documented in shared/reference/dashscope-t2v-api.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

dashscope = pytest.importorskip("dashscope")
from dashscope import VideoSynthesis  # noqa: E402
from dashscope.aigc.video_synthesis import AioVideoSynthesis  # noqa: E402
from dashscope.api_entities.aio_session import close_shared_aio_session  # noqa: E402
from dashscope.common.error import InvalidTask  # noqa: E402

from wan_nb.emulator import EmbeddedEmulator, FakeClock, FaultConfig  # noqa: E402
from wan_nb.errors import ERROR_CODES  # noqa: E402

from .conftest import ffmpeg_probe  # noqa: E402

pytestmark = pytest.mark.sdk

FOX = ("Shot from a low angle, in a medium close-up, with warm tones, mixed lighting (the "
       "practical light from the desk lamp blends with the overcast light from the window), "
       "side lighting, and a central composition. In a classic detective office, wooden "
       "bookshelves are filled with old case files and ashtrays. A green desk lamp illuminates "
       "a case file spread out in the center of the desk. A fox, wearing a dark brown trench "
       "coat and a light gray fedora, sits in a leather chair, its fur crimson, its tail "
       "resting lightly on the edge, its fingers slowly turning yellowed pages. Outside, a "
       "steady drizzle falls beneath a blue sky, streaking the glass with meandering streaks. "
       "It slowly raises its head, its ears twitching slightly, its amber eyes gazing directly "
       "at the camera, its mouth clearly moving as it speaks in a smooth, cynical voice: 'The "
       "case was cold, colder than a fish in winter. But every chicken has its secrets, and I, "
       "for one, intended to find them '.")
SMALL = {"size": "624*624", "duration": 5, "seed": 7}


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEmulator]:
    """A real emulator on 127.0.0.1, fast enough that SDK waits end on the first polls."""
    with EmbeddedEmulator(data_dir=tmp_path_factory.mktemp("sdk_emu"), speed=0.2) as e:
        yield e


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEmulator]:
    """An emulator whose clock moves only through POST /_emulator/clock."""
    with EmbeddedEmulator(data_dir=tmp_path_factory.mktemp("sdk_frozen"), speed=1.0,
                          render=False, clock=FakeClock()) as e:
        yield e


@pytest.fixture
def sdk(emu: EmbeddedEmulator) -> Iterator[EmbeddedEmulator]:
    old = dashscope.base_http_api_url
    dashscope.base_http_api_url = emu.api_base
    try:
        yield emu
    finally:
        dashscope.base_http_api_url = old


def use(e: EmbeddedEmulator) -> None:
    dashscope.base_http_api_url = e.api_base


def advance(e: EmbeddedEmulator, seconds: float) -> None:
    r = httpx.post(f"{e.base_url}/_emulator/clock", json={"advance": seconds},
                   headers={"Authorization": f"Bearer {e.api_key}"}, timeout=10)
    assert r.status_code == 200


def stats(e: EmbeddedEmulator) -> dict[str, Any]:
    return httpx.get(f"{e.base_url}/_emulator/stats", timeout=10,
                     headers={"Authorization": f"Bearer {e.api_key}"}).json()


def download(url: str, dest: Path) -> dict[str, Any]:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    dest.write_bytes(r.content)
    info = ffmpeg_probe(dest)
    try:
        from wan_nb.media import probe
    except ImportError:  # media.py may not have landed yet; ffmpeg -i is the reference
        return info
    v = probe(dest)
    assert (v.width, v.height, v.has_audio) == (info["width"], info["height"], info["has_audio"])
    return info


def test_seed_example_with_custom_audio(sdk: EmbeddedEmulator, audio_server: str,
                                        tmp_path: Path) -> None:
    rsp = VideoSynthesis.call(api_key=sdk.api_key, model="wan2.5-t2v-preview", prompt=FOX,
                              audio_url=f"{audio_server}/voice.mp3", size="832*480",
                              duration=10, negative_prompt="", prompt_extend=True,
                              watermark=False, seed=12345)
    assert rsp.status_code == 200 and rsp.code is None and rsp.request_id
    out = rsp.output
    assert out.task_status == "SUCCEEDED"
    assert out.orig_prompt == FOX and out.actual_prompt and out.actual_prompt != FOX
    assert out.submit_time <= out.scheduled_time <= out.end_time
    assert "?Expires=" in out.video_url and "Signature=" in out.video_url
    assert rsp.usage.video_count == 1 and rsp.usage.video_duration == 10
    assert rsp.usage.video_ratio == "832*480"
    info = download(out.video_url, tmp_path / "fox.mp4")
    assert (info["video_codec"], info["width"], info["height"]) == ("h264", 832, 480)
    assert info["fps"] == 30 and info["duration"] == pytest.approx(10, abs=0.1)
    assert info["has_audio"] and info["brand"] in ("isom", "mp42")


def test_wan22_is_silent(sdk: EmbeddedEmulator, tmp_path: Path) -> None:
    rsp = VideoSynthesis.call(api_key=sdk.api_key, model="wan2.2-t2v-plus",
                              prompt="a paper boat on a pond", size="832*480", seed=3)
    assert rsp.status_code == 200 and rsp.output.task_status == "SUCCEEDED"
    info = download(rsp.output.video_url, tmp_path / "boat.mp4")
    assert (info["width"], info["height"], info["has_audio"]) == (832, 480, False)
    assert info["duration"] == pytest.approx(5, abs=0.1)


@pytest.mark.parametrize("form", ["path", "file_url"])
def test_local_audio_file_is_uploaded(sdk: EmbeddedEmulator, audio_dir: Path, tmp_path: Path,
                                      form: str) -> None:
    path = audio_dir / "voice.wav"
    url = str(path) if form == "path" else f"file://{path}"
    rsp = VideoSynthesis.call(api_key=sdk.api_key, model="wan2.5-t2v-preview",
                              prompt="a cat singing", audio_url=url, **SMALL)
    assert rsp.status_code == 200 and rsp.output.task_status == "SUCCEEDED", rsp
    info = download(rsp.output.video_url, tmp_path / "cat.mp4")
    assert info["has_audio"] and (info["width"], info["height"]) == (624, 624)
    uploads = list((sdk.data_dir / "uploads").rglob("voice.wav"))
    assert uploads and uploads[0].read_bytes() == path.read_bytes()


def test_async_call_fetch_wait(sdk: EmbeddedEmulator) -> None:
    task = VideoSynthesis.async_call(api_key=sdk.api_key, model="wan2.5-t2v-preview",
                                     prompt="a lighthouse at dusk", audio=False, **SMALL)
    assert task.status_code == 200 and task.output.task_status == "PENDING"
    assert task.output.task_id
    now = VideoSynthesis.fetch(task, api_key=sdk.api_key)
    assert now.status_code == 200
    assert now.output.task_status in ("PENDING", "RUNNING", "SUCCEEDED")
    done = VideoSynthesis.wait(task, api_key=sdk.api_key)
    assert done.output.task_status == "SUCCEEDED" and done.output.task_id == task.output.task_id


def test_refusals_come_back_as_responses(sdk: EmbeddedEmulator) -> None:
    bad_key = VideoSynthesis.async_call(api_key="sk-wrong", model="wan2.5-t2v-preview",
                                        prompt="x")
    assert (bad_key.status_code, bad_key.code, bad_key.message) == (
        401, "InvalidApiKey", "Invalid API-key provided.")
    # quirk: call() = async_call + wait, and wait raises on a failed create
    with pytest.raises(InvalidTask, match="InvalidApiKey"):
        VideoSynthesis.call(api_key="sk-wrong", model="wan2.5-t2v-preview", prompt="x")
    r = VideoSynthesis.async_call(api_key=sdk.api_key, model="wan9-t2v", prompt="x")
    assert (r.status_code, r.code, r.message) == (400, "InvalidParameter", "Model not exist.")
    r = VideoSynthesis.async_call(api_key=sdk.api_key, model="wan2.2-t2v-plus", prompt="x",
                                  size="1280*720")
    assert (r.status_code, r.code) == (400, "InvalidParameter") and "1280*720" in r.message
    r = VideoSynthesis.async_call(api_key=sdk.api_key, model="wan2.5-t2v-preview",
                                  prompt="a __blocked__ scene")
    assert (r.status_code, r.code) == (400, "DataInspectionFailed")
    gone = VideoSynthesis.fetch("no-such-task", api_key=sdk.api_key)
    assert gone.status_code == 200 and gone.output.task_status == "UNKNOWN"
    assert VideoSynthesis.wait("no-such-task", api_key=sdk.api_key).output.task_status \
        == "UNKNOWN"


def test_failed_tasks(sdk: EmbeddedEmulator, audio_server: str) -> None:
    rsp = VideoSynthesis.call(api_key=sdk.api_key, model="wan2.5-t2v-preview",
                              prompt="a __fail_output__ scene", **SMALL)
    assert rsp.status_code == 200 and rsp.output.task_status == "FAILED"
    assert rsp.output.code == "DataInspectionFailed" and rsp.usage is None
    rsp = VideoSynthesis.call(api_key=sdk.api_key, model="wan2.5-t2v-preview",
                              prompt="a song", audio_url=f"{audio_server}/not_audio.mp3",
                              **SMALL)
    assert rsp.output.task_status == "FAILED" and rsp.output.code == "InvalidParameter"
    rsp = VideoSynthesis.call(api_key=sdk.api_key, model="wan2.5-t2v-preview",
                              prompt="a song", audio_url=f"{audio_server}/missing.mp3", **SMALL)
    assert rsp.output.task_status == "FAILED" and "HTTP 404" in rsp.output.message


def test_cancel_pending_and_running(frozen: EmbeddedEmulator) -> None:
    use(frozen)
    pending = VideoSynthesis.async_call(api_key=frozen.api_key, model="wan2.5-t2v-preview",
                                        prompt="to be canceled", **SMALL)
    r = VideoSynthesis.cancel(pending, api_key=frozen.api_key)
    assert r.status_code == 200 and r.request_id
    assert VideoSynthesis.fetch(pending, api_key=frozen.api_key).output.task_status \
        == "CANCELED"
    running = VideoSynthesis.async_call(api_key=frozen.api_key, model="wan2.5-t2v-preview",
                                        prompt="too late to cancel", **SMALL)
    advance(frozen, 0.5)
    assert VideoSynthesis.fetch(running, api_key=frozen.api_key).output.task_status \
        == "RUNNING"
    r = VideoSynthesis.cancel(running, api_key=frozen.api_key)
    assert (r.status_code, r.code, r.message) == (400, "UnsupportedOperation",
                                                  ERROR_CODES["UnsupportedOperation"][2])


def test_submission_rate_limit(frozen: EmbeddedEmulator) -> None:
    use(frozen)
    advance(frozen, 2.0)
    codes = [VideoSynthesis.async_call(api_key=frozen.api_key, model="wan2.1-t2v-turbo",
                                       prompt=f"burst {i}", size="832*480", seed=i).status_code
             for i in range(3)]
    assert codes == [200, 200, 429]


def test_list(frozen: EmbeddedEmulator) -> None:
    use(frozen)
    advance(frozen, 2.0)
    ids = [VideoSynthesis.async_call(api_key=frozen.api_key, model="wan2.2-t2v-plus",
                                     prompt=f"listed {i}", size="832*480").output.task_id
           for i in range(2)]
    r = VideoSynthesis.list(api_key=frozen.api_key, model_name="wan2.2-t2v-plus",
                            status="PENDING", page_size=50)
    assert r.status_code == 200
    assert {d["task_id"] for d in r.output["data"]} >= set(ids)
    assert r.output["page_size"] == 50 and r.output["total"] >= 2
    r = VideoSynthesis.list(api_key=frozen.api_key, start_time="20200101000000",
                            end_time="20200105000000")
    assert (r.status_code, r.code) == (400, "InvalidParameter")


def test_aio_client(sdk: EmbeddedEmulator, frozen: EmbeddedEmulator) -> None:
    async def main() -> None:
        try:
            use(sdk)
            task = await AioVideoSynthesis.async_call(api_key=sdk.api_key,
                                                      model="wan2.5-t2v-preview",
                                                      prompt="an owl at night", **SMALL)
            assert task.status_code == 200 and task.output.task_status == "PENDING"
            done = await AioVideoSynthesis.wait(task, api_key=sdk.api_key)
            assert done.status_code == 200 and done.output.task_status == "SUCCEEDED"
            assert done.output.video_url and done.usage.video_duration == 5
            use(frozen)
            pending = await AioVideoSynthesis.async_call(api_key=frozen.api_key,
                                                         model="wan2.5-t2v-preview",
                                                         prompt="aio cancel", **SMALL)
            r = await AioVideoSynthesis.cancel(pending, api_key=frozen.api_key)
            assert r.status_code == 200
            r = await AioVideoSynthesis.fetch(pending, api_key=frozen.api_key)
            assert r.output.task_status == "CANCELED"
            r = await AioVideoSynthesis.list(api_key=frozen.api_key, status="CANCELED")
            assert r.status_code == 200 and r.output["total"] >= 1
        finally:
            await close_shared_aio_session()
    asyncio.run(main())
    # the asyncio client's quirks reached the server as documented
    assert stats(frozen)["cancels"] >= 1


def test_sdk_resends_a_dropped_create(tmp_path: Path) -> None:
    """Quirk: the SDK resends a POST once when the connection drops, even after the server has
    read it; with a drop *after* creating, one SDK call makes two tasks."""
    cfg = FaultConfig(drop_rate={"create": 1.0}, create_fault_phase="after")
    with EmbeddedEmulator(data_dir=tmp_path, render=False, faults=cfg) as e:
        use(e)
        import requests
        with pytest.raises(requests.exceptions.ConnectionError):
            VideoSynthesis.async_call(api_key=e.api_key, model="wan2.5-t2v-preview",
                                      prompt="paid twice?", **SMALL)
        assert stats(e)["creates"]["accepted"] == 2
