"""Rendering through the app, restarts (the kernel-restart case), uploads, start_embedded."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from wan_nb.emulator import EmbeddedEmulator, start_embedded, stop_all
from wan_nb.emulator.server import ENV_DIR, default_data_dir

from .conftest import AUTH, body, ffmpeg_probe

pytestmark = pytest.mark.anyio


async def test_render_then_expiry(emu_factory: Any, tmp_path: Path) -> None:
    async with emu_factory(render=True, speed=0.0) as emu:
        a = await emu.create_id(body(size="624*624", seed=5, audio=False))
        b = await emu.create_id(body(size="624*624", seed=5, audio=False))
        assert await emu.status(a) == "RUNNING"  # run time is over, the file is not ready
        await emu.settle_renders()
        q = await emu.query(a)
        assert q["output"]["task_status"] == "SUCCEEDED"
        url = q["output"]["video_url"]
        assert url.startswith("http://emulator/_files/")
        r = await emu.client.get(url)
        assert r.status_code == 200
        (tmp_path / "a.mp4").write_bytes(r.content)
        info = ffmpeg_probe(tmp_path / "a.mp4")
        assert (info["width"], info["height"], info["has_audio"]) == (624, 624, False)
        # same inputs, same bytes
        other = (await emu.client.get((await emu.query(b))["output"]["video_url"])).content
        assert hashlib.sha256(other).digest() == hashlib.sha256(r.content).digest()
        stats = await emu.stats()
        assert stats["renders"]["done"] == 2 and stats["renders"]["in_progress"] == 0
        emu.clock.advance(25 * 3600)
        assert await emu.status(a) == "UNKNOWN"
        r = await emu.client.get(url)
        assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text


async def test_upload_endpoints_refuse_forgeries(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await emu.client.get("/api/v1/uploads", params={"action": "nope", "model": "m"},
                                 headers=AUTH)
        assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
        r = await emu.client.get("/api/v1/uploads", params={"action": "getPolicy", "model": "m"})
        assert r.status_code == 401
        r = await emu.client.get("/api/v1/uploads",
                                 params={"action": "getPolicy", "model": "wan2.5-t2v-preview"},
                                 headers=AUTH)
        policy = r.json()["data"]
        assert policy["upload_host"] == "http://emulator/_oss"
        form = {"OSSAccessKeyId": policy["oss_access_key_id"], "policy": policy["policy"],
                "Signature": policy["signature"], "key": policy["upload_dir"] + "/a.wav",
                "success_action_status": "200", "x-oss-forbid-overwrite": "true"}
        files = {"file": ("a.wav", b"RIFF....WAVEfmt ")}
        r = await emu.client.post("/_oss", data=form, files=files)
        assert r.status_code == 200
        r = await emu.client.post("/_oss", data=form, files=files)
        assert r.status_code == 409  # x-oss-forbid-overwrite
        for change in ({"Signature": "forged"}, {"key": "dashscope-instant/other/a.wav"},
                       {"key": policy["upload_dir"] + "/../../x.wav"}):
            r = await emu.client.post("/_oss", data={**form, **change}, files=files)
            assert r.status_code == 403 and r.text.startswith("<?xml")
        emu.clock.advance(600)  # the policy lives 300 s
        form["key"] = policy["upload_dir"] + "/b.wav"
        r = await emu.client.post("/_oss", data=form, files=files)
        assert r.status_code == 403 and "expired" in r.text
        # an uploaded object is usable with the resolve header, unknown ones are refused
        h = {**AUTH, "X-DashScope-Async": "enable", "X-DashScope-OssResourceResolve": "enable"}
        for key, status in ((policy["upload_dir"] + "/a.wav", 200),
                            (policy["upload_dir"] + "/zzz.wav", 400)):
            b = body()
            b["input"]["audio_url"] = "oss://" + key
            r = await emu.client.post("/api/v1/services/aigc/video-generation/video-synthesis",
                                      json=b, headers=h)
            assert r.status_code == status, r.text


def test_restart_keeps_key_tasks_and_urls(tmp_path: Path) -> None:
    """A kernel restart: a new process, the same data_dir, the same key and tasks."""
    b = body(size="624*624", seed=11, audio=False)
    with EmbeddedEmulator(data_dir=tmp_path, speed=0.0) as first:
        key = first.api_key
        h = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"{first.api_base}/services/aigc/video-generation/video-synthesis",
                       json=b, headers={**h, "X-DashScope-Async": "enable"}, timeout=10)
        task_id = r.json()["output"]["task_id"]
    assert key.startswith("sk-emu-") and len(key) == 7 + 32
    with EmbeddedEmulator(data_dir=tmp_path, speed=0.0) as second:
        assert second.api_key == key
        h = {"Authorization": f"Bearer {key}"}
        for _ in range(200):  # the interrupted render is redone after the restart
            out = httpx.get(f"{second.api_base}/tasks/{task_id}", headers=h,
                            timeout=10).json()["output"]
            if out["task_status"] != "RUNNING":
                break
            time.sleep(0.05)
        assert out["task_status"] == "SUCCEEDED"
        url = out["video_url"]
        assert httpx.get(url, timeout=10).status_code == 200
    with EmbeddedEmulator(data_dir=tmp_path, speed=0.0) as third:
        # the URL signed before the restart is still valid (the secret persists)
        old = urlsplit(url)
        assert httpx.get(f"{third.base_url}{old.path}?{old.query}", timeout=10).status_code \
            == 200
        out2 = httpx.get(f"{third.api_base}/tasks/{task_id}", timeout=10,
                         headers={"Authorization": f"Bearer {key}"}).json()["output"]
        assert out2["video_url"].split("?")[1] == url.split("?")[1]


def test_start_embedded_is_a_singleton(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "env_dir"))
    assert default_data_dir() == tmp_path / "env_dir"
    try:
        a = start_embedded(render=False)
        b = start_embedded()
        assert a is b and a.running and a.data_dir == (tmp_path / "env_dir").resolve()
        c = start_embedded(tmp_path / "other", render=False)
        assert c is not a and c.port != a.port
        assert "***" in repr(a) and a.api_key not in repr(a)
        r = httpx.get(f"{a.api_base}/tasks", headers={"Authorization": f"Bearer {a.api_key}"},
                      timeout=10)
        assert r.status_code == 200
        a.stop()
        assert not a.running
        d = start_embedded()
        assert d is not a and d.running and d.api_key == a.api_key
    finally:
        stop_all()


def test_refuses_remote_hosts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        EmbeddedEmulator(data_dir=tmp_path, host="0.0.0.0")
