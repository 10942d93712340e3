"""The official ``dashscope`` SDK (2.0.2), unchanged, against the emulator CLI on the 2026 models.

Both of the SDK's clients: the classic ``VideoSynthesis.call`` (its body carries
``input.extend_prompt: true`` and ``input.function: "video-synthesis"``, SDK source
``aigc/video_synthesis.py``) and the v2 ``dashscope.Client().videos.jobs`` (httpx, a clean
body: ``dashscope/v2/resources/videos.py``). The emulator runs as ``python -m wan_nb.emulator``
in its own process on 127.0.0.1, like the service; every video is downloaded and probed.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

dashscope = pytest.importorskip("dashscope")
from dashscope import VideoSynthesis  # noqa: E402

from wan_nb.media import probe  # noqa: E402

from tests.conftest import run_cli_emulator  # noqa: E402

from .conftest import ffmpeg_probe  # noqa: E402

pytestmark = pytest.mark.sdk

KEY = "sk-emulator-sdk-2026"
# §7.1: 720P 4:3 is 1104×832 on the new models (1088*832 on the size protocol)
W27_720P_43 = (1104, 832)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulator CLI on a free loopback port (as tests/conftest.py's ``cli_emulator``,
    faster: speed 0.2); yields its base URL, stopped by its own PID."""
    with run_cli_emulator(tmp_path_factory.mktemp("sdk2026") / "emu", key=KEY,
                          speed="0.2") as url:
        yield url


@pytest.fixture
def classic(cli: str) -> Iterator[str]:
    old = dashscope.base_http_api_url
    dashscope.base_http_api_url = f"{cli}/api/v1"
    try:
        yield cli
    finally:
        dashscope.base_http_api_url = old


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Forwards every request to the emulator and keeps the JSON bodies of creates: what the
    SDK really sends, seen on the wire."""

    target = ""
    bodies: list[dict[str, Any]] = []

    def _forward(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.command == "POST" and "video-synthesis" in self.path:
            self.bodies.append(json.loads(raw))
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "content-length", "connection")}
        r = httpx.request(self.command, self.target + self.path, content=raw, headers=headers,
                          timeout=30)
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                 "content-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def wire(cli: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(base URL of a recording proxy in front of the CLI, the create bodies it saw)."""
    handler = type("Recorder", (_Recorder,), {"target": cli, "bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def fetched(url: str, dest: Path) -> dict[str, Any]:
    """The video at ``url``: ffmpeg's view of it, checked against wan_nb.media.probe."""
    r = httpx.get(url, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    dest.write_bytes(r.content)
    info = ffmpeg_probe(dest)
    v = probe(dest)
    assert (v.width, v.height, v.has_audio) == (info["width"], info["height"], info["has_audio"])
    assert v.duration == pytest.approx(info["duration"], abs=0.05)
    return info


def test_classic_call_wan27_720p_4_3(classic: str, tmp_path: Path) -> None:
    rsp = VideoSynthesis.call(api_key=KEY, model="wan2.7-t2v", prompt="a fox detective",
                              resolution="720P", ratio="4:3", duration=3, seed=12345)
    assert rsp.status_code == 200 and rsp.code is None, rsp
    out = rsp.output
    assert out.task_status == "SUCCEEDED" and out.orig_prompt == "a fox detective"
    assert out.get("actual_prompt") is None  # §7.3: the rewrite is not disclosed
    # the new usage, as the classic SDK renders it: its own three fields keep their defaults
    usage = dict(rsp.usage)
    assert usage == {"video_count": 1, "video_duration": 0, "video_ratio": "", "duration": 3,
                     "input_video_duration": 0, "output_video_duration": 3, "ratio": "4:3",
                     "SR": 720}
    info = fetched(out.video_url, tmp_path / "w27.mp4")
    assert (info["width"], info["height"]) == W27_720P_43
    assert info["duration"] == pytest.approx(3, abs=0.1) and info["has_audio"]


def test_classic_call_happyhorse(classic: str, tmp_path: Path) -> None:
    rsp = VideoSynthesis.call(api_key=KEY, model="happyhorse-1.0-t2v", prompt="a horse at dawn",
                              resolution="720P", ratio="4:3", duration=3, seed=7)
    assert rsp.status_code == 200 and rsp.output.task_status == "SUCCEEDED", rsp
    assert rsp.output.get("actual_prompt") is None
    assert (rsp.usage["duration"], rsp.usage["ratio"], rsp.usage["SR"]) == (3, "4:3", 720)
    info = fetched(rsp.output.video_url, tmp_path / "hh.mp4")
    assert (info["width"], info["height"], info["has_audio"]) == (1104, 832, False)
    assert info["duration"] == pytest.approx(3, abs=0.1)


def test_classic_refusals_on_the_new_models(classic: str) -> None:
    r = VideoSynthesis.async_call(api_key=KEY, model="happyhorse-1.0-t2v", prompt="x",
                                  negative_prompt="blur")
    assert (r.status_code, r.code) == (400, "InvalidParameter")
    assert "negative_prompt is not supported by happyhorse-1.0-t2v" in r.message
    r = VideoSynthesis.async_call(api_key=KEY, model="wan2.7-t2v", prompt="x",
                                  resolution="480P", ratio="21:9")
    assert (r.status_code, r.code) == (400, "InvalidParameter")
    assert "resolution '480P'" in r.message and "ratio '21:9'" in r.message
    # size and shot_type are ignored on the new models, as the service ignores them
    r = VideoSynthesis.async_call(api_key=KEY, model="wan2.7-t2v", prompt="x",
                                  size="832*480", shot_type="multi", resolution="720P",
                                  ratio="1:1", duration=2)
    assert r.status_code == 200 and r.output.task_status == "PENDING", r


@pytest.mark.parametrize("model,params,expect", [
    ("wan2.7-t2v", {"resolution": "720P", "ratio": "4:3", "duration": 3},
     (*W27_720P_43, 3, True, "4:3", 720)),
    ("wan3.0-video", {"resolution": "480P", "ratio": "21:9", "duration": 30},
     (1120, 480, 30, True, "21:9", 480)),
])
def test_v2_client_jobs_create(cli: str, tmp_path: Path, model: str, params: dict[str, Any],
                               expect: tuple[Any, ...]) -> None:
    with dashscope.Client(api_key=KEY, base_url=f"{cli}/api/v1") as client:
        job = client.videos.jobs.create(model=model, prompt="a lantern on a river", seed=5,
                                        **params)
        assert job.status == "PENDING" and job.task_id
        done = client.videos.jobs.wait(job, timeout=180)
    assert done.succeeded and done.video_url, done
    assert "actual_prompt" not in (done.output or {})
    w, h, seconds, sound, ratio, sr = expect
    assert done.usage is not None
    usage = done.usage.model_dump()
    assert {k: usage[k] for k in ("duration", "input_video_duration", "output_video_duration",
                                  "video_count", "ratio", "SR")} == {
        "duration": seconds, "input_video_duration": 0, "output_video_duration": seconds,
        "video_count": 1, "ratio": ratio, "SR": sr}
    info = fetched(done.video_url, tmp_path / "v2.mp4")
    assert (info["width"], info["height"], info["has_audio"]) == (w, h, sound)
    assert info["duration"] == pytest.approx(seconds, abs=0.1)


def test_the_two_bodies_on_the_wire_are_both_accepted(wire: tuple[str, list[dict[str, Any]]]
                                                      ) -> None:
    """§7.2: the classic call adds input.extend_prompt and input.function; the v2 client sends
    a clean body. The emulator takes both and makes the same task of them."""
    base, bodies = wire
    old = dashscope.base_http_api_url
    dashscope.base_http_api_url = f"{base}/api/v1"
    try:
        a = VideoSynthesis.async_call(api_key=KEY, model="wan2.7-t2v", prompt="a fox",
                                      resolution="720P", ratio="4:3", duration=2, seed=9)
    finally:
        dashscope.base_http_api_url = old
    with dashscope.Client(api_key=KEY, base_url=f"{base}/api/v1") as client:
        b = client.videos.jobs.create(model="wan2.7-t2v", prompt="a fox", resolution="720P",
                                      ratio="4:3", duration=2, seed=9)
    assert a.status_code == 200 and a.output.task_status == "PENDING", a
    assert b.status == "PENDING"
    classic, clean = bodies
    assert classic["input"] == {"prompt": "a fox", "extend_prompt": True,
                                "function": "video-synthesis"}
    assert clean == {"model": "wan2.7-t2v", "input": {"prompt": "a fox"},
                     "parameters": {"seed": 9, "duration": 2, "resolution": "720P",
                                    "ratio": "4:3"}}
    assert {k: classic["parameters"][k] for k in clean["parameters"]} == clean["parameters"]
