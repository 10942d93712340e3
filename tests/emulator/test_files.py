"""Result files: signed URLs, expiry, range requests, and no way out of data_dir/files."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from wan_nb.emulator import EmbeddedEmulator

pytestmark = pytest.mark.anyio
DATA = bytes(range(256)) * 40  # 10240 bytes


def put_file(emulator: Any, name: str = "abc.mp4") -> str:
    """Place a file as a finished render would, and return its signed path+query."""
    (emulator.objects.files_dir / name).write_bytes(DATA)
    expires = int(emulator.engine.clock.now()) + 3600
    return f"/_files/{name}?{emulator.objects.signed_query(name, expires)}"


def is_oss_xml(r: Any, status: int, code: str) -> None:
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/xml")
    assert f"<Code>{code}</Code>" in r.text and "<RequestId>" in r.text
    assert DATA[:64] not in r.content


async def test_signed_file_and_ranges(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        url = put_file(emu.emulator)
        r = await emu.client.get(url)
        assert r.status_code == 200 and r.content == DATA
        assert r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
        r = await emu.client.get(url, headers={"Range": "bytes=0-99"})
        assert r.status_code == 206 and r.content == DATA[:100]
        assert r.headers["content-range"] == f"bytes 0-99/{len(DATA)}"
        r = await emu.client.get(url, headers={"Range": "bytes=-10"})
        assert r.status_code == 206 and r.content == DATA[-10:]
        r = await emu.client.get(url, headers={"Range": f"bytes={len(DATA) + 5}-"})
        assert r.status_code == 416
        r = await emu.client.head(url)
        assert r.status_code == 200 and r.headers["content-length"] == str(len(DATA))


async def test_expired_and_forged_urls(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        url = put_file(emu.emulator)
        forged = url.replace("Signature=", "Signature=x")
        is_oss_xml(await emu.client.get(forged), 403, "SignatureDoesNotMatch")
        later = url.replace("Expires=", "Expires=9")  # a longer life is a forgery too
        is_oss_xml(await emu.client.get(later), 403, "SignatureDoesNotMatch")
        is_oss_xml(await emu.client.get("/_files/abc.mp4"), 403, "AccessDenied")
        emu.clock.advance(3601)
        r = await emu.client.get(url)
        is_oss_xml(r, 403, "AccessDenied")
        assert "expired" in r.text


@pytest.mark.parametrize("path", [
    "/_files/%2e%2e/tasks.sqlite3", "/_files/%2E%2E%2Fsecret", "/_files/..%2fsecret",
    "/_files/%2fetc%2fpasswd", "/_files//etc/passwd", "/_files/sub/abc.mp4",
    "/_files/.hidden", "/_files/%00abc.mp4"])
async def test_traversal_is_refused(emu_factory: Any, path: str) -> None:
    async with emu_factory() as emu:
        put_file(emu.emulator)
        (emu.emulator.data_dir / "secret").write_bytes(b"top secret")
        name = path.removeprefix("/_files/")
        expires = int(emu.clock.now()) + 3600
        signed = f"{path}?{emu.emulator.objects.signed_query(name, expires)}"
        for target in (path, signed):
            r = await emu.client.get(target)
            assert r.status_code in (403, 404)
            assert b"top secret" not in r.content and b"SQLite" not in r.content


async def test_symlink_out_of_files_is_refused(emu_factory: Any, tmp_path: Path) -> None:
    async with emu_factory() as emu:
        outside = tmp_path / "outside.mp4"
        outside.write_bytes(b"outside the files directory")
        os.symlink(outside, emu.emulator.objects.files_dir / "link.mp4")
        expires = int(emu.clock.now()) + 3600
        url = f"/_files/link.mp4?{emu.emulator.objects.signed_query('link.mp4', expires)}"
        r = await emu.client.get(url)
        assert r.status_code == 403 and b"outside" not in r.content


def raw_get(port: int, target: str) -> bytes:
    """A request line sent as is (clients normalise '..' away; an attacker does not)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_traversal_over_a_real_socket(tmp_path: Path) -> None:
    with EmbeddedEmulator(data_dir=tmp_path / "emu", render=False) as emu:
        (emu.data_dir / "outside.mp4").write_bytes(b"never served")
        key = emu.api_key.encode()
        objects = emu.app.state.emulator.objects
        expires = int(emu.engine.clock.now()) + 3600
        for name in ("../outside.mp4", "../api_key", "%2e%2e/api_key", "/etc/passwd",
                     "..%2f..%2fapi_key"):
            target = f"/_files/{name}?{objects.signed_query(name, expires)}"
            answer = raw_get(emu.port, target)
            status = int(answer.split(b" ", 2)[1])
            assert status in (400, 403, 404), answer[:200]
            assert b"never served" not in answer and key not in answer
