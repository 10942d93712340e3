"""The emulator's videos: a browser-playable H.264/AAC MP4 made from a prompt and a seed.

The picture is a seeded background with soft lights drifting over it, the prompt, seed and a
caption in a panel, a progress bar along the bottom edge and, like the service, an "AI生成"
watermark in the bottom-right corner when asked. Colours, motion and the generated sound are
derived from sha256(seed, prompt), so the same :class:`RenderSpec` always gives the same file,
byte for byte (on the same machine and library versions).

How (measured, see ``benchmarks/bench_render.py``): numpy draws tiny frames (160 px on the long
side), Pillow draws the text once, and imageio-ffmpeg's bundled ffmpeg scales, overlays, adds the
audio and encodes with ``libx264 -preset ultrafast`` at a constant quantiser. A 1080p 10 s clip
with sound takes about a second on two cores. No OpenCV: it cannot write H.264 that browsers
play.

Example::

    spec = RenderSpec(prompt="一只狐狸侦探在雨夜的办公室里", seed=12345, width=832, height=480,
                      duration=5, watermark=True, audio="generated")
    render_video(spec, "fox.mp4")
"""

from __future__ import annotations

import asyncio
import colorsys
import hashlib
import math
import os
import random
import secrets
import subprocess
import tempfile
import threading
import unicodedata
import wave
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Literal, NamedTuple

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "DEFAULT_CONCURRENCY",
    "FONT_PATH",
    "WATERMARK_TEXT",
    "RenderError",
    "RenderSpec",
    "default_limiter",
    "ffmpeg_exe",
    "load_font",
    "render_overlay",
    "render_video",
    "render_video_async",
    "wrap_text",
]

FONT_PATH = Path(__file__).resolve().parent / "fonts" / "NotoSansCJKsc-Regular-subset.otf"
WATERMARK_TEXT = "AI生成"
DEFAULT_CONCURRENCY = 2
AUDIO_RATE = 48_000

_SMALL_LONG_SIDE = 160  # numpy draws this small; ffmpeg's bilinear upscale makes it smooth
_QP = 26  # constant quantiser: ~1.5x faster than CRF here, and the static text stays sharp
_THREADS = "2"  # pinned: x264's output depends on its thread count (determinism)
_STDERR_TAIL = 1500
_CHUNK_FRAMES = 30


class RenderError(RuntimeError):
    """The video could not be rendered; the message ends with ffmpeg's own last words."""


@dataclass(frozen=True)
class RenderSpec:
    """What to render. Sizes must be even (H.264 with 4:2:0 chroma needs that).

    ``audio``: ``"none"`` writes no audio stream; ``"generated"`` a seeded tone bed;
    ``"custom"`` the file at ``audio_path`` (wav, mp3 or anything ffmpeg reads), cut at the
    video's length or padded with silence to it.
    """

    prompt: str
    seed: int
    width: int
    height: int
    duration: float
    fps: int = 30
    watermark: bool = False
    audio: Literal["none", "generated", "custom"] = "none"
    audio_path: str | None = None
    caption: str = ""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 16 or v % 2:
                raise ValueError(f"{name} must be an even integer >= 16, got {v!r}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps!r}")
        if not (self.duration > 0 and math.isfinite(self.duration)):
            raise ValueError(f"duration must be a positive number of seconds, got "
                             f"{self.duration!r}")
        if self.audio not in ("none", "generated", "custom"):
            raise ValueError(f"audio must be 'none', 'generated' or 'custom', got {self.audio!r}")
        if self.audio == "custom" and not self.audio_path:
            raise ValueError("audio='custom' needs audio_path (a local wav or mp3 file)")

    @property
    def frames(self) -> int:
        """Number of video frames: ``duration * fps``, rounded."""
        return max(1, round(self.duration * self.fps))


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (or ``IMAGEIO_FFMPEG_EXE``)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


# -- rendering ---------------------------------------------------------------------------------
def render_video(spec: RenderSpec, out_path: str | os.PathLike[str]) -> None:
    """Render ``spec`` to an MP4 at ``out_path``, atomically (readers never see a partial file).

    Raises :class:`RenderError` when ffmpeg fails, for example when a custom audio file is not
    audio. Blocks for about a second; from async code use :func:`render_video_async`.
    """
    _render(spec, Path(out_path), None)


_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())


def default_limiter() -> asyncio.Semaphore:
    """The shared semaphore (``DEFAULT_CONCURRENCY`` renders at once) of the running loop.

    One per event loop, because an asyncio.Semaphore belongs to the first loop that waits on it.
    """
    loop = asyncio.get_running_loop()
    sem = _limiters.get(loop)
    if sem is None:
        sem = _limiters.setdefault(loop, asyncio.Semaphore(DEFAULT_CONCURRENCY))
    return sem


async def render_video_async(spec: RenderSpec, out_path: str | os.PathLike[str], *,
                             limiter: asyncio.Semaphore | None = None) -> None:
    """:func:`render_video` in a worker thread, at most ``limiter``'s value at once.

    Cancelling the awaiting task kills ffmpeg and leaves no file behind.
    """
    sem = default_limiter() if limiter is None else limiter
    async with sem:
        cancel = threading.Event()
        try:
            await asyncio.to_thread(_render, spec, Path(out_path), cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise


class _Cancelled(Exception):
    pass


def _render(spec: RenderSpec, out: Path, cancel: threading.Event | None) -> None:
    if spec.audio == "custom" and not Path(str(spec.audio_path)).is_file():
        raise RenderError(f"custom audio file not found: {spec.audio_path}")
    small = _small_size(spec.width, spec.height)
    with tempfile.TemporaryDirectory(prefix="wan_nb-render-") as tmp_dir:
        tmp = Path(tmp_dir)
        layers = []
        for i, layer in enumerate(_overlay_layers(spec)):
            png = tmp / f"layer{i}.png"
            layer.image.save(png, compress_level=1)
            layers.append((png, layer.x, layer.y))
        audio_in: Path | None = None
        if spec.audio == "generated":
            audio_in = tmp / "bed.wav"
            _write_wav(audio_in, _audio_bed(spec))
        elif spec.audio == "custom":
            audio_in = Path(str(spec.audio_path))
        # beside the target so os.replace is atomic; ffmpeg creates it with the usual mode
        part = out.parent / f".{out.name}.{secrets.token_hex(6)}.part"
        try:
            args = _ffmpeg_args(spec, small, layers, audio_in, part)
            with open(tmp / "stderr.txt", "w+b") as err:
                rc = _run_ffmpeg(args, _frames(spec, small), err, cancel)
                if rc != 0:
                    err.seek(0, os.SEEK_END)
                    err.seek(max(0, err.tell() - _STDERR_TAIL))
                    tail = err.read().decode("utf-8", "replace").strip()
                    what = f" (audio_path={spec.audio_path})" if spec.audio == "custom" else ""
                    raise RenderError(f"ffmpeg could not render {out.name}{what}, exit status "
                                      f"{rc}: {tail or 'no message'}")
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)


def _lower_priority(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 10)
    except (AttributeError, OSError):  # not on this platform, or the process already ended
        pass


def _run_ffmpeg(args: list[str], frames: Iterator[bytes], err: IO[bytes],
                cancel: threading.Event | None) -> int:
    """Feed raw frames to ffmpeg's stdin; return its exit status."""
    # renders run at a lower CPU priority: the embedded emulator shares the kernel's machine,
    # and a notebook cell must stay responsive while videos are being made
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
    _lower_priority(proc.pid)
    assert proc.stdin is not None
    try:
        try:
            for chunk in frames:
                if cancel is not None and cancel.is_set():
                    raise _Cancelled
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: it failed, and its exit status says so
        while True:
            try:
                return proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise _Cancelled from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass


def _ffmpeg_args(spec: RenderSpec, small: tuple[int, int], layers: list[tuple[Path, int, int]],
                 audio_in: Path | None, out: Path) -> list[str]:
    w, h, n = spec.width, spec.height, spec.frames
    seconds = f"{n / spec.fps:.9g}"
    args = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{small[0]}x{small[1]}",
            "-framerate", str(spec.fps), "-i", "pipe:0"]
    for png, _, _ in layers:
        args += ["-i", str(png)]
    graph = [f"[0:v]scale={w}:{h}:flags=bilinear+bitexact,format=yuv420p[v0]"]
    label = "v0"
    for i, (_, x, y) in enumerate(layers, start=1):
        graph.append(f"[{label}][{i}:v]overlay=x={x}:y={y}:eval=init:format=yuv420[v{i}]")
        label = f"v{i}"
    bar_h = _bar_height(w, h)
    r, g, b = _palette(spec).accent
    graph.append(f"color=c=0x{r:02X}{g:02X}{b:02X}:s={w}x{bar_h}:r={spec.fps}[bar]")
    graph.append(f"[{label}][bar]overlay=x='W*(n+1)/{n}-w':y=H-h:format=yuv420:"
                 "shortest=1,format=yuv420p[v]")
    maps = ["-map", "[v]"]
    if audio_in is not None:
        a = len(layers) + 1
        args += ["-i", str(audio_in)]
        # trim a longer file, pad a shorter one with silence: the track spans the whole video
        graph.append(f"[{a}:a:0]aformat=sample_rates={AUDIO_RATE}:channel_layouts=stereo,"
                     f"apad=whole_dur={seconds},atrim=end={seconds}[a]")
        # the fast AAC coder: 0.15 s less per 10 s of audio, no audible loss on a tone bed
        maps += ["-map", "[a]", "-c:a", "aac", "-aac_coder", "fast", "-b:a", "128k",
                 "-flags:a", "+bitexact", "-metadata:s:a:0", "encoder="]
    args += ["-filter_complex", ";".join(graph), *maps,
             "-c:v", "libx264", "-preset", "ultrafast", "-qp", str(_QP), "-pix_fmt", "yuv420p",
             "-threads", _THREADS, "-flags:v", "+bitexact",
             # no encoder names or versions in the file: x264 writes them into an SEI NAL
             # unit, ffmpeg into a stream tag
             "-bsf:v", "filter_units=remove_types=6", "-metadata:s:v:0", "encoder=",
             "-frames:v", str(n), "-t", seconds,
             "-fflags", "+bitexact", "-map_metadata", "-1", "-map_chapters", "-1",
             "-movflags", "+faststart", "-f", "mp4", str(out)]
    return args


# -- picture -----------------------------------------------------------------------------------
class _Light(NamedTuple):
    """A soft coloured light drifting on a Lissajous path (sizes relative to the frame)."""

    colour: tuple[float, float, float]
    strength: float
    sigma: float  # of the short side
    ax: float  # amplitude, frequency (Hz) and phase of the horizontal motion
    fx: float
    px: float
    ay: float
    fy: float
    py: float


class _Palette(NamedTuple):
    top: tuple[float, float, float]
    bottom: tuple[float, float, float]
    angle: float
    accent: tuple[int, int, int]
    lights: tuple[_Light, ...]


def _rng(spec: RenderSpec, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"wan_nb.render\0{purpose}\0{spec.seed}\0{spec.prompt}".encode())
    return random.Random(digest.digest())  # seeding from bytes is stable across Pythons


def _palette(spec: RenderSpec) -> _Palette:
    rnd = _rng(spec, "picture")
    hue = rnd.random()
    top = colorsys.hsv_to_rgb(hue, rnd.uniform(0.45, 0.75), rnd.uniform(0.14, 0.24))
    bottom = colorsys.hsv_to_rgb((hue + rnd.uniform(0.05, 0.2)) % 1, rnd.uniform(0.5, 0.8),
                                 rnd.uniform(0.3, 0.45))
    angle = rnd.uniform(0, 2 * math.pi)
    lights = tuple(
        _Light(colorsys.hsv_to_rgb((hue + rnd.uniform(-0.2, 0.3)) % 1, rnd.uniform(0.35, 0.8),
                                   rnd.uniform(0.7, 1.0)),
               strength=rnd.uniform(0.45, 0.8), sigma=rnd.uniform(0.10, 0.22),
               ax=rnd.uniform(0.15, 0.42), fx=rnd.uniform(0.04, 0.16), px=rnd.uniform(0, 6.3),
               ay=rnd.uniform(0.15, 0.42), fy=rnd.uniform(0.04, 0.16), py=rnd.uniform(0, 6.3))
        for _ in range(rnd.randint(3, 5)))
    ar, ag, ab = colorsys.hsv_to_rgb((hue + 0.5) % 1, 0.55, 1.0)
    return _Palette(top, bottom, angle, (round(ar * 255), round(ag * 255), round(ab * 255)),
                    lights)


def _small_size(width: int, height: int) -> tuple[int, int]:
    scale = _SMALL_LONG_SIDE / max(width, height)
    return max(8, round(width * scale)), max(8, round(height * scale))


def _frames(spec: RenderSpec, small: tuple[int, int]) -> Iterator[bytes]:
    """Raw rgb24 frames at the small size, a chunk of frames per item."""
    sw, sh = small
    pal = _palette(spec)
    xs = np.arange(sw, dtype=np.float32) + 0.5
    ys = np.arange(sh, dtype=np.float32) + 0.5
    # static background: a two-colour gradient along a seeded direction, darker at the edges
    along = (xs[None, :] / sw - 0.5) * math.cos(pal.angle) + (ys[:, None] / sh - 0.5) * math.sin(
        pal.angle)
    mix = np.clip(along + 0.5, 0, 1)[..., None]
    bg = np.asarray(pal.top, np.float32) * (1 - mix) + np.asarray(pal.bottom, np.float32) * mix
    edge = ((xs[None, :] / sw - 0.5) ** 2 + (ys[:, None] / sh - 0.5) ** 2)[..., None]
    bg = (bg * (1 - 0.6 * edge)).astype(np.float32)
    short = min(sw, sh)

    def column(name: str) -> np.ndarray:
        return np.asarray([getattr(light, name) for light in pal.lights], np.float32)

    colours = column("colour") * column("strength")[:, None]
    sigma = column("sigma") * short
    ax, fx, px, ay, fy, py = (column(name) for name in ("ax", "fx", "px", "ay", "fy", "py"))
    two_pi = np.float32(2 * math.pi)
    for start in range(0, spec.frames, _CHUNK_FRAMES):
        t = (np.arange(start, min(spec.frames, start + _CHUNK_FRAMES), dtype=np.float32)
             / np.float32(spec.fps))[:, None]
        cx = sw * (0.5 + ax * np.sin(two_pi * fx * t + px))  # (frames, lights)
        cy = sh * (0.5 + ay * np.sin(two_pi * fy * t + py))
        gx = np.exp(-0.5 * ((xs - cx[..., None]) / sigma[:, None]) ** 2)  # (frames, lights, sw)
        gy = np.exp(-0.5 * ((ys - cy[..., None]) / sigma[:, None]) ** 2)
        light = np.einsum("fkh,fkwc->fhwc", gy, gx[..., None] * colours[None, :, None, :])
        img = bg + (1 - bg) * np.minimum(light, 1)  # screen blend: lights never darken
        yield (img * 255 + 0.5).astype(np.uint8).tobytes()


def _bar_height(width: int, height: int) -> int:
    return max(2, round(min(width, height) / 120) // 2 * 2)


# -- text --------------------------------------------------------------------------------------
@lru_cache(maxsize=32)
def load_font(size: int) -> ImageFont.FreeTypeFont:
    """The bundled CJK + Latin font (Noto Sans CJK SC subset, OFL) at ``size`` pixels."""
    # basic layout: identical glyph positions whether or not Pillow was built with raqm
    return ImageFont.truetype(str(FONT_PATH), size, layout_engine=ImageFont.Layout.BASIC)


class _Layer(NamedTuple):
    image: Image.Image
    x: int
    y: int


_NO_LINE_START = set("，。、；：！？）」』】》〉…,.;:!?)]}%·")


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _tokens(text: str) -> list[str]:
    """Words, single wide (CJK) characters and single spaces, in order."""
    out: list[str] = []
    word = ""
    for ch in text:
        if ch.isspace() or _is_wide(ch):
            if word:
                out.append(word)
                word = ""
            out.append(" " if ch.isspace() else ch)
        else:
            word += ch
    if word:
        out.append(word)
    return out


def wrap_text(text: str, font: ImageFont.FreeTypeFont, max_width: float,
              max_lines: int) -> list[str]:
    """Greedy line breaking for mixed CJK/Latin text; ``…`` ends the last line when cut."""
    text = " ".join(text.split())
    lines: list[str] = []
    line = ""
    for tok in _tokens(text):
        if tok == " ":
            line += " " if line else ""
            continue
        candidate = line + tok
        if font.getlength(candidate) <= max_width or (tok in _NO_LINE_START and line.strip()):
            line = candidate  # it fits, or closing punctuation overhangs rather than wraps
        else:
            if line.strip():
                lines.append(line.rstrip())
            line = tok
            while len(line) > 1 and font.getlength(line) > max_width:  # a word wider than a line
                lo, hi = 1, len(line) - 1  # the longest prefix that fits (at least 1 character)
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    lo, hi = (mid, hi) if font.getlength(line[:mid]) <= max_width else (lo, mid - 1)
                lines.append(line[:lo])
                line = line[lo:]
                if len(lines) > max_lines:
                    break
        if len(lines) > max_lines:
            break
    if line.strip():
        lines.append(line.rstrip())
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "…") > max_width:
            last = last[:-1]
        lines = lines[: max_lines - 1] + [last.rstrip() + "…"]
    return lines


def _meta_text(spec: RenderSpec) -> str:
    seed = f"seed {spec.seed}"
    if seed in spec.caption:
        return spec.caption
    return " · ".join(p for p in (spec.caption, seed) if p)


def _overlay_layers(spec: RenderSpec) -> list[_Layer]:
    w, h = spec.width, spec.height
    base = min(w, h)
    margin = _even(base * 0.045)
    pad = max(6, round(base * 0.028))
    size = max(14, round(base * 0.058))
    meta_size = max(12, round(size * 0.75))  # legible when the player is ~300 px wide
    font, meta_font = load_font(size), load_font(meta_size)
    max_text = w - 2 * margin - 2 * pad
    pitch, meta_pitch = round(size * 1.32), round(meta_size * 1.35)
    max_lines = max(1, min(6, int(h * 0.45 // pitch)))
    prompt_lines = wrap_text(spec.prompt or "(empty prompt)", font, max_text, max_lines)
    meta_lines = wrap_text(_meta_text(spec), meta_font, max_text, 2)
    text_w = max(font.getlength(s) for s in prompt_lines)
    text_w = max([text_w] + [meta_font.getlength(s) for s in meta_lines])
    gap = round(size * 0.35)
    panel_w = min(math.ceil(text_w) + 2 * pad, w - 2 * margin)  # overhanging "。" uses the pad
    panel_h = pad * 2 + pitch * len(prompt_lines) + gap + meta_pitch * len(meta_lines)
    panel = Image.new("RGBA", (panel_w + panel_w % 2, panel_h + panel_h % 2), (0, 0, 0, 0))
    draw = ImageDraw.Draw(panel)
    draw.rounded_rectangle((0, 0, panel_w - 1, panel_h - 1), radius=round(pad * 0.8),
                           fill=(0, 0, 0, 150))
    y = pad
    for s in prompt_lines:  # ideographs sit between the baseline and ~0.88 em above it
        draw.text((pad, y + round(size * 1.05)), s, font=font, fill=(255, 255, 255, 255),
                  anchor="ls")
        y += pitch
    y += gap
    for s in meta_lines:
        draw.text((pad, y + round(meta_size * 1.05)), s, font=meta_font,
                  fill=(200, 215, 240, 255), anchor="ls")
        y += meta_pitch
    layers = [_Layer(panel, margin, margin)]
    if spec.watermark:
        layers.append(_watermark_layer(w, h))
    return layers


def _watermark_layer(w: int, h: int) -> _Layer:
    base = min(w, h)
    size = max(12, round(base * 0.048))
    font = load_font(size)
    stroke = max(1, size // 16)
    left, top, right, bottom = (math.floor(v) for v in font.getbbox(
        WATERMARK_TEXT, stroke_width=stroke, anchor="ls"))
    tw, th = right - left + 3, bottom - top + 3
    img = Image.new("RGBA", (tw + tw % 2, th + th % 2), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((1 - left, 1 - top), WATERMARK_TEXT, font=font,
                             fill=(255, 255, 255, 215), stroke_width=stroke,
                             stroke_fill=(0, 0, 0, 110), anchor="ls")
    margin = _even(base * 0.035)
    x = w - margin - img.width
    y = h - _bar_height(w, h) - margin - img.height
    return _Layer(img, x - x % 2, y - y % 2)


def render_overlay(spec: RenderSpec) -> Image.Image:
    """The full-frame RGBA text overlay (prompt panel and watermark) as drawn into the video."""
    frame = Image.new("RGBA", (spec.width, spec.height), (0, 0, 0, 0))
    for layer in _overlay_layers(spec):
        frame.alpha_composite(layer.image, (layer.x, layer.y))
    return frame


def _even(v: float) -> int:
    return int(round(v)) // 2 * 2


# -- sound -------------------------------------------------------------------------------------
def _audio_bed(spec: RenderSpec) -> np.ndarray:
    """Seeded stereo int16 samples: a soft chord with a slow swell and a plucked arpeggio."""
    rnd = _rng(spec, "audio")
    n = max(1, round(spec.frames / spec.fps * AUDIO_RATE))
    t64 = np.arange(n, dtype=np.float64) / AUDIO_RATE
    t = t64.astype(np.float32)

    def tone(freq: float, phase: float = 0.0) -> np.ndarray:
        # the phase in cycles is reduced in float64, then float32 sin (20x faster than float64)
        cycles = freq * t64 + phase
        return np.sin(np.float32(2 * np.pi) * (cycles - np.floor(cycles)).astype(np.float32))

    root = 110.0 * 2 ** (rnd.randrange(12) / 12)
    chord = rnd.choice([(0, 4, 7, 12), (0, 3, 7, 10), (0, 5, 7, 12), (0, 4, 7, 11)])
    pad = np.zeros(n, np.float32)
    for step in chord:
        swell = np.float32(0.6) + np.float32(0.4) * tone(rnd.uniform(0.05, 0.2), rnd.random())
        pad += tone(root * 2 ** (step / 12), rnd.random()) * swell
    pad /= np.float32(len(chord))
    beat = 60.0 / rnd.choice([72, 84, 96, 108])
    beats = int(t64[-1] // beat) + 1
    notes = np.array([root * 2 ** ((12 + rnd.choice(chord)) / 12) for _ in range(beats)])
    idx = np.minimum((t64 // beat).astype(np.int64), beats - 1)
    since = t64 - idx * beat
    cycles = notes[idx] * since
    pluck = np.sin(np.float32(2 * np.pi) * (cycles - np.floor(cycles)).astype(np.float32))
    pluck *= np.exp(np.float32(-5.0) * since.astype(np.float32))
    pan = (0.5 + 0.35 * np.sin(2 * np.pi * np.arange(beats) / 5.0)).astype(np.float32)[idx]
    fade = np.minimum(np.float32(1), np.minimum(t, t[-1] - t) / np.float32(0.05))
    left = (np.float32(0.55) * pad + np.float32(0.45) * pluck * (1 - pan)) * fade
    right = (np.float32(0.55) * pad + np.float32(0.45) * pluck * pan) * fade
    stereo = np.stack([left, right], axis=1) * np.float32(0.8 * 32767)
    return np.clip(stereo, -32767, 32767).astype("<i2")


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(AUDIO_RATE)
        f.writeframes(samples.tobytes())
