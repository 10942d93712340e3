"""Fixtures for the emulator: the real app in-process (httpx.ASGITransport) and on a loopback
port, audio files made with the bundled ffmpeg, and a tiny static HTTP server."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import pytest

from wan_nb import catalog
from wan_nb.emulator import FakeClock, create_app

KEY = "sk-test-emulator"
CREATE = catalog.CREATE_PATH
TASKS = catalog.TASKS_PATH
HEADERS = {"Authorization": f"Bearer {KEY}", "X-DashScope-Async": "enable"}
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def body(prompt: str = "a red fox walking through fresh snow", model: str = "wan2.5-t2v-preview",
         **params: Any) -> dict[str, Any]:
    p = {"size": "832*480", "duration": 5, "seed": 42}
    p.update(params)
    return {"model": model, "input": {"prompt": prompt}, "parameters": p}


class Emu:
    """An in-process emulator with a FakeClock and an httpx client on it."""

    def __init__(self, app: Any, client: httpx.AsyncClient, clock: FakeClock):
        self.app, self.client, self.clock = app, client, clock
        self.engine = app.state.engine
        self.emulator = app.state.emulator

    async def create(self, b: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return await self.client.post(CREATE, json=b if b is not None else body(**kw),
                                      headers=HEADERS)

    async def create_id(self, b: dict[str, Any] | None = None, **kw: Any) -> str:
        r = await self.create(b, **kw)
        assert r.status_code == 200, r.text
        return r.json()["output"]["task_id"]

    async def query(self, task_id: str) -> dict[str, Any]:
        r = await self.client.get(f"{TASKS}/{task_id}", headers=AUTH)
        assert r.status_code == 200, r.text
        return r.json()

    async def status(self, task_id: str) -> str:
        return (await self.query(task_id))["output"]["task_status"]

    async def list(self, **params: Any) -> httpx.Response:
        return await self.client.get(TASKS, params=params, headers=AUTH)

    async def stats(self) -> dict[str, Any]:
        r = await self.client.get("/_emulator/stats", headers=AUTH)
        assert r.status_code == 200
        return r.json()

    async def settle_renders(self, timeout: float = 60) -> None:
        await self.emulator.worker.drain(timeout)


@pytest.fixture
def emu_factory(tmp_path: Path) -> Any:
    """``async with emu_factory(**create_app_kw) as emu``: app, client and FakeClock."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(**kw: Any) -> AsyncIterator[Emu]:
        kw.setdefault("api_keys", (KEY,))
        kw.setdefault("render", False)
        kw.setdefault("speed", 1.0)
        clock = kw.pop("clock", None) or FakeClock(1_760_000_000.0)
        app = create_app(clock=clock, **kw)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as c:
            try:
                yield Emu(app, c, clock)
            finally:
                await app.state.emulator.aclose()
    return make


# -- media helpers -------------------------------------------------------------------------------
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_audio(path: Path, seconds: float = 12.0) -> Path:
    """A real tone (mp3 or wav by suffix), made with the bundled ffmpeg."""
    codec = ["-c:a", "libmp3lame", "-b:a", "64k"] if path.suffix == ".mp3" else []
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=330:sample_rate=22050:duration={seconds}", "-ac", "1",
                    *codec, str(path)], check=True, timeout=60)
    return path


def ffmpeg_probe(path: Path) -> dict[str, Any]:
    """Width, height, fps, duration, codecs and audio presence parsed from ``ffmpeg -i``."""
    import re

    out = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                         text=True, timeout=30).stderr
    info: dict[str, Any] = {"text": out, "has_audio": " Audio: " in out}
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", out)
    if m:
        info["duration"] = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    m = re.search(r"Video: (\w+).*?, (\d{2,5})x(\d{2,5})", out)
    if m:
        info["video_codec"], info["width"], info["height"] = m[1], int(m[2]), int(m[3])
    m = re.search(r"([\d.]+) fps", out)
    if m:
        info["fps"] = float(m[1])
    m = re.search(r"major_brand\s*:\s*(\w+)", out)
    info["brand"] = m[1] if m else None
    m = re.search(r"Audio: (\w+)", out)
    info["audio_codec"] = m[1] if m else None
    return info


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    make_audio(d / "voice.mp3", 12.0)
    make_audio(d / "voice.wav", 4.0)
    (d / "not_audio.mp3").write_bytes(b"this is plain text, not an mp3 file\n" * 20)
    return d


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def audio_server(audio_dir: Path) -> Iterator[str]:
    """A static HTTP server on 127.0.0.1 serving ``audio_dir``; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(audio_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
