"""media.probe: the pure-Python MP4 reader, against ffmpeg-made files and hand-built boxes."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from wan_nb.emulator.render import RenderSpec, ffmpeg_exe, render_video
from wan_nb.media import VideoInfo, looks_like_mp4, probe


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An emulator render: 832*480, 2 s, generated sound."""
    out = tmp_path_factory.mktemp("media") / "clip.mp4"
    render_video(RenderSpec(prompt="一只狐狸", seed=1, width=832, height=480, duration=2,
                            audio="generated"), out)
    return out


def test_probe_reads_an_emulator_render(clip: Path) -> None:
    assert probe(clip) == VideoInfo(width=832, height=480, fps=30.0, duration=2.0, frames=60,
                                    has_audio=True, video_codec="avc1", audio_codec="mp4a",
                                    brand="isom")


@pytest.mark.parametrize(("codec", "fourcc", "rate", "seconds", "extra"), [
    ("libx264", "avc1", 25, 3, []),  # moov after mdat (no +faststart)
    ("libx264", "avc1", 24, 2, ["-movflags", "+faststart"]),
    ("libx265", "hev1", 30, 1, ["-x265-params", "log-level=error"]),
])
def test_probe_agrees_with_what_ffmpeg_wrote(tmp_path: Path, codec: str, fourcc: str,
                                             rate: int, seconds: int, extra: list[str]) -> None:
    out = tmp_path / "v.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=320x240:rate={rate}:duration={seconds}",
           "-c:v", codec, "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, str(out))
    info = probe(out)
    assert (info.width, info.height, info.frames) == (320, 240, rate * seconds)
    assert info.fps == pytest.approx(rate) and info.duration == pytest.approx(seconds, abs=0.01)
    assert (info.video_codec, info.has_audio, info.audio_codec) == (fourcc, False, None)


def test_probe_silent_video(tmp_path: Path) -> None:
    out = tmp_path / "silent.mp4"
    render_video(RenderSpec(prompt="p", seed=1, width=320, height=192, duration=2), out)
    info = probe(out)
    assert info.has_audio is False and info.audio_codec is None and info.frames == 60


def test_a_json_error_body_is_not_an_mp4(tmp_path: Path) -> None:
    body = json.dumps({"code": "AccessDenied", "message": "Request has expired."}).encode()
    bad = tmp_path / "video.mp4"
    bad.write_bytes(body)
    assert not looks_like_mp4(body)
    with pytest.raises(ValueError, match=r"not an MP4 file.*error body"):
        probe(bad)
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="not an MP4"):
        probe(bad)


@pytest.mark.parametrize("where", ["moov", "half", "last byte"])
def test_a_truncated_download_is_rejected(tmp_path: Path, clip: Path, where: str) -> None:
    data = clip.read_bytes()
    keep = {"moov": data.index(b"moov") + 100, "half": len(data) // 2, "last byte": len(data) - 1}
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: keep[where]])
    assert looks_like_mp4(cut.read_bytes())  # the head is fine: only parsing can tell
    with pytest.raises(ValueError, match="truncated"):
        probe(cut)


def test_looks_like_mp4(clip: Path) -> None:
    assert looks_like_mp4(clip.read_bytes()[:12])
    assert not looks_like_mp4(b"\x00\x00\x00\x20ftyp")  # too short to tell
    assert not looks_like_mp4(b"<?xml version='1.0'?><Error>")
    assert not looks_like_mp4(b"\x00\x00\x00\x04ftypisom")  # an impossible ftyp size


# -- hand-built files: 64-bit sizes, version-1 headers, a missing moov or video track ----------
def box(kind: bytes, *children: bytes, large: bool = False) -> bytes:
    payload = b"".join(children)
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(version: int, body: bytes) -> bytes:
    return bytes([version, 0, 0, 0]) + body


def track(handler: bytes, fourcc: bytes, timescale: int, duration: int, samples: int,
          width: int = 0, height: int = 0) -> bytes:
    tkhd = full(1, struct.pack(">QQIIQ", 0, 0, 1, 0, duration) + bytes(16) + bytes(36)
                + struct.pack(">II", width << 16, height << 16))
    mdhd = full(1, struct.pack(">QQIQ", 0, 0, timescale, duration) + bytes(4))
    hdlr = full(0, bytes(4) + handler + bytes(12) + b"\0")
    entry = box(fourcc, bytes(78))
    stsd = full(0, struct.pack(">I", 1) + entry)
    stts = full(0, struct.pack(">III", 1, samples, 1))
    stbl = box(b"stbl", box(b"stsd", stsd), box(b"stts", stts))
    return box(b"trak", box(b"tkhd", tkhd),
               box(b"mdia", box(b"mdhd", mdhd), box(b"hdlr", hdlr),
                   box(b"minf", stbl)))


FTYP = box(b"ftyp", b"mp42", bytes(4), b"mp42isom")


def test_hand_built_version_1_boxes_and_64_bit_sizes(tmp_path: Path) -> None:
    mvhd = box(b"mvhd", full(1, struct.pack(">QQIQ", 0, 0, 1000, 4000) + bytes(80)))
    moov = box(b"moov", mvhd, track(b"vide", b"avc1", 12800, 51200, 96, 640, 360),
               track(b"soun", b"mp4a", 44100, 176400, 173))
    path = tmp_path / "v1.mp4"
    path.write_bytes(FTYP + moov + box(b"mdat", bytes(100), large=True))
    assert probe(path) == VideoInfo(width=640, height=360, fps=24.0, duration=4.0, frames=96,
                                    has_audio=True, video_codec="avc1", audio_codec="mp4a",
                                    brand="mp42")


def test_missing_moov_or_video_track_or_garbage_moov(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(FTYP + box(b"mdat", bytes(10)))
    with pytest.raises(ValueError, match="no moov"):
        probe(path)
    path.write_bytes(FTYP + box(b"moov", track(b"soun", b"mp4a", 44100, 44100, 43)))
    with pytest.raises(ValueError, match="no video track"):
        probe(path)
    path.write_bytes(FTYP + box(b"moov", struct.pack(">I4s", 500, b"trak")))
    with pytest.raises(ValueError, match="malformed moov"):
        probe(path)
