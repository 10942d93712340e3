"""The emulator's renderer: real MP4 files checked with our probe and with ffmpeg itself."""

from __future__ import annotations

import asyncio
import hashlib
import re
import resource
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from wan_nb.emulator import render
from wan_nb.emulator.render import (
    FONT_PATH,
    RenderError,
    RenderSpec,
    ffmpeg_exe,
    load_font,
    render_overlay,
    render_video,
    render_video_async,
    wrap_text,
)
from wan_nb.media import probe

FOX = "一只狐狸侦探在雨夜的办公室里，翻阅着一份旧案卷宗。"
CAPTION = "wan2.5-t2v-preview · 832*480 · seed 12345"


# -- helpers -------------------------------------------------------------------------------------
def ffmpeg_info(path: Path) -> dict[str, Any]:
    """An independent look at the file: what ``ffmpeg -i`` says about it."""
    text = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True, timeout=30).stderr
    video = re.search(r"Stream #\S+: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+).*?"
                      r"([\d.]+) fps", text)
    assert video, text
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    assert duration, text
    audio = re.search(r"Stream #\S+: Audio: (\w+)", text)
    return {"codec": video[1], "pix_fmt": video[2], "width": int(video[3]),
            "height": int(video[4]), "fps": float(video[5]),
            "duration": int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]),
            "audio": audio[1] if audio else None}


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    kinds, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        kinds.append(kind.decode())
        pos += size or len(data)
    return kinds


def decoded_audio(path: Path) -> np.ndarray:
    """The file's audio decoded to mono float samples at 48 kHz."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a", "-ac", "1",
                          "-ar", "48000", "-f", "f32le", "-"], capture_output=True, check=True,
                         timeout=30).stdout
    return np.frombuffer(raw, np.float32)


def frame_png(video: Path, png: Path, at: float = 1.0) -> Image.Image:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-ss", str(at), "-i", str(video),
                    "-frames:v", "1", str(png)], check=True, timeout=30)
    return Image.open(png).convert("RGB")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 7 s mp3 (longer than the videos it goes into) and a 1 s wav (shorter)."""
    d = tmp_path_factory.mktemp("sounds")
    out = {"long": d / "long.mp3", "short": d / "short.wav", "text": d / "notes.mp3"}
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "sine=frequency=330:sample_rate=22050:duration=7", "-ac", "1",
                    "-c:a", "libmp3lame", "-b:a", "64k", str(out["long"])], check=True, timeout=60)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "sine=frequency=550:sample_rate=44100:duration=1", str(out["short"])],
                   check=True, timeout=60)
    out["text"].write_text("this is a shopping list, not an mp3\n" * 20)
    return out


# -- the matrix that matters -------------------------------------------------------------------
SIZES = [(832, 480), (1280, 720), (480, 832), (624, 624)]
AUDIO = [("none", None), ("generated", None), ("custom", "long"), ("custom", "short")]
# every size with every kind of sound; durations 2 and 5 and the watermark alternate over them
CASES = [(w, h, (2, 5)[(i + j) % 2], audio, sound, (i + j // 2) % 2 == 0)
         for i, (w, h) in enumerate(SIZES) for j, (audio, sound) in enumerate(AUDIO)]


@pytest.mark.parametrize(("width", "height", "duration", "audio", "sound", "watermark"), CASES)
def test_rendered_file_is_what_was_asked(tmp_path: Path, sounds: dict[str, Path], width: int,
                                         height: int, duration: int, audio: Any,
                                         sound: str | None, watermark: bool) -> None:
    spec = RenderSpec(prompt=FOX, seed=12345, width=width, height=height, duration=duration,
                      watermark=watermark, audio=audio,
                      audio_path=str(sounds[sound]) if sound else None, caption=CAPTION)
    out = tmp_path / "clip.mp4"
    render_video(spec, out)

    info = probe(out)
    assert (info.width, info.height, info.frames) == (width, height, duration * 30)
    assert info.fps == pytest.approx(30) and info.duration == pytest.approx(duration, abs=0.02)
    assert info.video_codec == "avc1" and info.brand == "isom"
    assert info.has_audio is (audio != "none")
    assert info.audio_codec == (None if audio == "none" else "mp4a")

    ff = ffmpeg_info(out)
    assert ff == {"codec": "h264", "pix_fmt": "yuv420p", "width": width, "height": height,
                  "fps": 30.0, "duration": pytest.approx(duration, abs=0.02),
                  "audio": None if audio == "none" else "aac"}
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # +faststart: playable while loading
    assert list(tmp_path.iterdir()) == [out]  # the temporary file was renamed, not left behind

    if audio != "none":
        samples = decoded_audio(out)
        assert len(samples) / 48000 == pytest.approx(duration, abs=0.03)  # spans the video
        first, last = samples[: 48000 * 3 // 4], samples[-48000 * 3 // 4:]
        assert np.sqrt(np.mean(first**2)) > 0.02  # audible
        if sound == "short":  # a 1 s file: the rest of the video is silent
            assert np.abs(last).max() < 1e-3
        else:
            assert np.sqrt(np.mean(last**2)) > 0.02


def test_1080p_ten_seconds_with_sound(tmp_path: Path) -> None:
    spec = RenderSpec(prompt="a red fox walking through fresh snow, golden hour", seed=3,
                      width=1920, height=1080, duration=10, audio="generated", watermark=True)
    out = tmp_path / "hd.mp4"
    render_video(spec, out)
    info = probe(out)
    assert (info.width, info.height, info.frames, info.has_audio) == (1920, 1080, 300, True)
    assert ffmpeg_info(out)["pix_fmt"] == "yuv420p"
    # how fast (target 2 s) is measured by benchmarks/bench_render.py, not asserted on a shared
    # machine


# -- determinism -------------------------------------------------------------------------------
def test_same_spec_gives_identical_bytes_and_any_change_differs(tmp_path: Path) -> None:
    base = RenderSpec(prompt=FOX, seed=42, width=320, height=192, duration=2, audio="generated",
                      watermark=True, caption=CAPTION)
    variants = {"a": base, "b": base, "seed": RenderSpec(**{**base.__dict__, "seed": 43}),
                "prompt": RenderSpec(**{**base.__dict__, "prompt": FOX + "!"})}
    digests = {}
    for name, spec in variants.items():
        render_video(spec, tmp_path / f"{name}.mp4")
        digests[name] = sha(tmp_path / f"{name}.mp4")
    assert digests["a"] == digests["b"]
    assert len({digests["a"], digests["seed"], digests["prompt"]}) == 3
    data = (tmp_path / "a.mp4").read_bytes()
    for tool in (b"Lavf", b"Lavc", b"libx264", b"x264 - core"):  # no tool names or versions
        assert tool not in data


def test_picture_and_sound_depend_on_seed_and_move_over_time() -> None:
    one = RenderSpec(prompt="p", seed=1, width=320, height=192, duration=2, audio="generated")
    two = RenderSpec(prompt="p", seed=2, width=320, height=192, duration=2, audio="generated")
    small = render._small_size(320, 192)
    frames = np.frombuffer(b"".join(render._frames(one, small)), np.uint8).reshape(
        60, small[1], small[0], 3)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1  # the lights move
    other = np.frombuffer(next(render._frames(two, small)), np.uint8)
    assert not np.array_equal(frames[0].ravel(), other[: frames[0].size])
    assert not np.array_equal(render._audio_bed(one), render._audio_bed(two))
    assert render._palette(one) == render._palette(one)


# -- text ----------------------------------------------------------------------------------------
def test_bundled_font_is_small_licensed_and_draws_cjk_glyphs() -> None:
    assert FONT_PATH.stat().st_size < 10_000_000
    assert "SIL OPEN FONT LICENSE" in (FONT_PATH.parent / "OFL.txt").read_text()
    font = load_font(48)

    def glyph(ch: str) -> bytes:
        mask = font.getmask(ch)
        return bytes(mask) + repr(mask.size).encode()

    tofu = glyph("\U0001f98a")  # an emoji the font lacks: drawn as the .notdef box
    shapes = {ch: glyph(ch) for ch in "狐狸侦探雨夜生成あア한語A"}
    assert len(set(shapes.values())) == len(shapes)  # every character has its own shape
    assert tofu not in shapes.values()


def test_overlay_draws_the_cjk_prompt_and_the_watermark() -> None:
    spec = RenderSpec(prompt=FOX, seed=1, width=832, height=480, duration=2, watermark=True,
                      caption=CAPTION)
    overlay = render_overlay(spec)
    assert overlay.size == (832, 480) and overlay.mode == "RGBA"
    boxes = render_overlay(RenderSpec(**{**spec.__dict__, "prompt": "\U0001f98a" * len(FOX)}))
    other = render_overlay(RenderSpec(**{**spec.__dict__, "prompt": FOX[::-1]}))
    panel = (0, 0, 832, 240)
    assert overlay.crop(panel).tobytes() != boxes.crop(panel).tobytes()  # not tofu
    assert overlay.crop(panel).tobytes() != other.crop(panel).tobytes()  # text follows prompt
    corner = np.asarray(overlay.crop((832 - 160, 480 - 80, 832, 480)))[..., 3]
    assert corner.max() > 150  # "AI生成" bottom-right
    plain = render_overlay(RenderSpec(**{**spec.__dict__, "watermark": False}))
    assert np.asarray(plain.crop((832 - 160, 480 - 80, 832, 480)))[..., 3].max() == 0


def test_cjk_watermarked_frame_looks_right(tmp_path: Path) -> None:
    """Also saves /tmp/render_check.png to look at by eye."""
    spec = RenderSpec(prompt=FOX, seed=12345, width=832, height=480, duration=2, watermark=True,
                      caption=CAPTION)
    out = tmp_path / "fox.mp4"
    render_video(spec, out)
    frame = np.asarray(frame_png(out, Path("/tmp/render_check.png")), np.int16)
    text_row = frame[40:80, 40:600]  # white prompt text on the dark panel
    assert (text_row.min(axis=2) > 200).mean() > 0.05 and (text_row.max(axis=2) < 60).mean() > 0.3
    mark = frame[420:470, 700:820]  # the watermark
    assert (mark.min(axis=2) > 200).mean() > 0.01


@pytest.mark.parametrize("prompt", [
    FOX * 30,  # very long Chinese
    "A cinematic shot of " + "a very long prompt " * 80,  # very long English
    "x" * 400,  # one word wider than a line
    "霓虹灯下的 cyberpunk 城市, rain-soaked streets，镜头缓慢推进。" * 6,
])
def test_wrapping_keeps_lines_inside_and_truncates_with_ellipsis(prompt: str) -> None:
    font = load_font(30)
    lines = wrap_text(prompt, font, 600, 4)
    assert len(lines) == 4 and lines[-1].endswith("…")
    overhang = font.getlength("，")  # closing punctuation may hang over the edge
    assert all(font.getlength(line) <= 600 + overhang for line in lines)
    words = set(re.findall(r"[A-Za-z-]+", prompt))
    for line in lines[:-1]:  # Latin words are never split across lines (except the giant one)
        tail = re.findall(r"[A-Za-z-]+$", line)
        assert not tail or tail[0] in words or len(tail[0]) > 30


def test_short_prompt_and_empty_prompt() -> None:
    font = load_font(30)
    assert wrap_text("a fox", font, 600, 4) == ["a fox"]
    assert wrap_text("  一只\n狐狸  ", font, 600, 4) == ["一只 狐狸"]
    assert wrap_text("", font, 600, 4) == []
    spec = RenderSpec(prompt="", seed=1, width=320, height=192, duration=2)
    assert render_overlay(spec).getbbox() is not None  # "(empty prompt)" and the seed


# -- errors and async --------------------------------------------------------------------------
def test_audio_file_that_is_not_audio_raises_render_error(tmp_path: Path,
                                                          sounds: dict[str, Path]) -> None:
    spec = RenderSpec(prompt="p", seed=1, width=320, height=192, duration=2, audio="custom",
                      audio_path=str(sounds["text"]))
    with pytest.raises(RenderError, match=r"(?s)notes\.mp3.*Invalid data found") as e:
        render_video(spec, tmp_path / "x.mp4")
    assert "ffmpeg could not render x.mp4" in str(e.value)
    assert list(tmp_path.iterdir()) == []  # no partial file
    missing = RenderSpec(**{**spec.__dict__, "audio_path": str(tmp_path / "gone.wav")})
    with pytest.raises(RenderError, match="not found"):
        render_video(missing, tmp_path / "x.mp4")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("width", 831, "even"), ("height", 0, "even"), ("duration", 0, "duration"),
    ("duration", float("nan"), "duration"), ("audio", "loud", "audio"),
    ("audio", "custom", "audio_path"),
])
def test_spec_is_validated(field: str, value: Any, message: str) -> None:
    fields = {"prompt": "p", "seed": 1, "width": 832, "height": 480, "duration": 5}
    with pytest.raises(ValueError, match=message):
        RenderSpec(**{**fields, field: value})


def test_async_renders_concurrently_with_a_bound(tmp_path: Path) -> None:
    limiter = asyncio.Semaphore(2)
    specs = [RenderSpec(prompt=f"clip {i}", seed=i, width=320, height=192, duration=2)
             for i in range(3)]

    async def main() -> None:
        await asyncio.gather(*(render_video_async(s, tmp_path / f"{i}.mp4", limiter=limiter)
                               for i, s in enumerate(specs)))
        await render_video_async(specs[0], tmp_path / "default.mp4")  # the default limiter

    asyncio.run(main())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.mp4", "1.mp4", "2.mp4",
                                                          "default.mp4"]
    assert sha(tmp_path / "0.mp4") == sha(tmp_path / "default.mp4")
    assert not limiter.locked()


def children_cpu_s() -> float:
    """CPU seconds used by this process's finished child processes (ffmpeg): unlike wall time,
    it does not grow when other work shares the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_cancelling_an_async_render_stops_ffmpeg_and_leaves_no_file(tmp_path: Path) -> None:
    spec = RenderSpec(prompt="p", seed=1, width=1920, height=1080, duration=10)
    full = tmp_path / "full"
    full.mkdir()
    before = children_cpu_s()
    render_video(spec, full / "whole.mp4")  # what finishing this render costs, on this machine
    whole_cpu = children_cpu_s() - before
    cancelled = tmp_path / "cancelled"
    cancelled.mkdir()

    async def main() -> None:
        task = asyncio.ensure_future(render_video_async(spec, cancelled / "big.mp4"))
        # cancel once ffmpeg is writing its output, however long it took to get there
        deadline = time.monotonic() + 120
        while not list(cancelled.glob(".big.mp4.*.part")):
            assert not task.done() and time.monotonic() < deadline, "ffmpeg never started"
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = children_cpu_s()
    asyncio.run(main())
    deadline = time.monotonic() + 120
    while list(cancelled.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker thread notices the cancel and removes its temp file
    assert list(cancelled.iterdir()) == []
    # ffmpeg was killed, not left to finish: the render's file is gone only after ffmpeg was
    # reaped, and it used a small part of the CPU time a whole render takes (measured ~1/20)
    cancelled_cpu = children_cpu_s() - before
    assert cancelled_cpu < whole_cpu / 4, (cancelled_cpu, whole_cpu)
