"""Video files: probing (here), download verification, thumbnails and inline display.

:func:`probe` reads an MP4's boxes in pure Python: no ffprobe (imageio-ffmpeg ships none) and no
subprocess, so checking a downloaded video costs well under a millisecond::

    info = probe("runs/fox.mp4")
    info.width, info.height, info.fps, info.duration, info.has_audio
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# -- MP4 probe ---------------------------------------------------------------------------------
# ISO/IEC 14496-12 (ISO base media file format). A box is a 32-bit big-endian size (1: a 64-bit
# size follows the type, 0: to the end of the file), a four-character type, then its payload.
# We read the top level by seeking (so a large mdat costs nothing), then the whole moov.

__all__ = ["VideoInfo", "cached_poster", "looks_like_mp4", "make_posters", "poster_path", "probe"]

_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"})


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found: size in pixels, frame rate, duration in seconds, frame count,
    codec four-character codes (``"avc1"``, ``"mp4a"``) and the ``ftyp`` major brand."""

    width: int
    height: int
    fps: float
    duration: float
    frames: int
    has_audio: bool
    video_codec: str | None
    audio_codec: str | None
    brand: str | None


def looks_like_mp4(head: bytes) -> bool:
    """True when ``head`` (a file's first 12 or more bytes) starts with an ISO-BMFF ``ftyp`` box.

    Tells a video from an error body saved by mistake (JSON, XML, HTML) before parsing.
    """
    if len(head) < 12 or head[4:8] != b"ftyp":
        return False
    size = int.from_bytes(head[:4], "big")
    return size == 1 or size >= 16  # ftyp holds at least a major brand and a minor version


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read width, height, fps, duration, frames, codecs and audio presence of an MP4 file.

    Raises ``ValueError`` when the file is not an MP4 (for example a JSON error body saved
    under a ``.mp4`` name), is truncated, or has no video track.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        head = f.read(16)
        if not looks_like_mp4(head):
            raise ValueError(f"{name} is not an MP4 file: it starts with {head!r}"
                             + (" (an error body saved as a video?)"
                                if head[:1] in (b"{", b"<", b"[") else ""))
        brand = head[8:12].decode("latin-1")
        moov: bytes | None = None
        pos = 0
        while pos < file_size:
            f.seek(pos)
            kind, header, size = _read_header(f, pos, file_size, name)
            if kind == b"moov":
                moov = f.read(size - header)
            pos += size
    if moov is None:
        raise ValueError(f"{name} has no moov box (an unfinished or truncated MP4)")
    return _parse_moov(moov, brand, name)


def _read_header(f: BinaryIO, pos: int, file_size: int, name: str) -> tuple[bytes, int, int]:
    raw = f.read(8)
    if len(raw) < 8:
        raise ValueError(f"{name} is truncated: a box header at byte {pos} is cut off")
    size, kind = struct.unpack(">I4s", raw)
    header = 8
    if size == 1:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{name} is truncated: a box header at byte {pos} is cut off")
        size, header = struct.unpack(">Q", raw)[0], 16
    elif size == 0:
        size = file_size - pos
    if size < header:
        raise ValueError(f"{name} is not a valid MP4: box {kind!r} at byte {pos} has size {size}")
    if pos + size > file_size:
        raise ValueError(f"{name} is truncated: box {kind.decode('latin-1')!r} at byte {pos} "
                         f"needs {size} bytes, the file has {file_size - pos} left")
    return kind, header, size


def _children(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes in ``buf[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise ValueError("box header cut off")
            size, header = struct.unpack_from(">Q", buf, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"box {kind!r} overruns its parent")
        yield kind, pos + header, pos + size
        pos += size


@dataclass
class _Track:
    handler: bytes = b""
    width: float = 0.0
    height: float = 0.0
    timescale: int = 0
    duration: int = 0
    codec: str | None = None
    samples: int = 0
    entry_width: int = 0
    entry_height: int = 0


def _parse_moov(moov: bytes, brand: str, name: str) -> VideoInfo:
    try:
        movie_scale, movie_duration = 0, 0
        tracks: list[_Track] = []
        for kind, start, end in _children(moov, 0, len(moov)):
            if kind == b"mvhd":
                movie_scale, movie_duration = _times(moov, start)
            elif kind == b"trak":
                track = _Track()
                _walk_track(moov, start, end, track)
                tracks.append(track)
    except (ValueError, struct.error) as e:
        raise ValueError(f"{name} is not a valid MP4: malformed moov ({e})") from None
    video = next((t for t in tracks if t.handler == b"vide"), None)
    audio = next((t for t in tracks if t.handler == b"soun"), None)
    if video is None:
        raise ValueError(f"{name} has no video track")
    video_seconds = video.duration / video.timescale if video.timescale else 0.0
    if movie_scale and movie_duration:
        duration = movie_duration / movie_scale
    else:  # e.g. a fragmented MP4, whose mvhd duration may be 0
        duration = video_seconds
    return VideoInfo(
        width=round(video.width) or video.entry_width,
        height=round(video.height) or video.entry_height,
        fps=video.samples / video_seconds if video_seconds else 0.0,
        duration=duration,
        frames=video.samples,
        has_audio=audio is not None,
        video_codec=video.codec,
        audio_codec=audio.codec if audio else None,
        brand=brand,
    )


def _times(buf: bytes, start: int) -> tuple[int, int]:
    """(timescale, duration) of an mvhd or mdhd box."""
    if buf[start] == 1:
        return struct.unpack_from(">IQ", buf, start + 20)
    return struct.unpack_from(">II", buf, start + 12)


def _walk_track(buf: bytes, start: int, end: int, track: _Track) -> None:
    for kind, s, e in _children(buf, start, end):
        if kind in _CONTAINERS:
            _walk_track(buf, s, e, track)
        elif kind == b"tkhd":
            # after version/flags, times, track id, reserved and duration (v0: 24, v1: 36
            # bytes), reserved, layer, group, volume, reserved (16), matrix (36): width,
            # height as 16.16 fixed point
            offset = s + (36 if buf[s] == 1 else 24) + 52
            w, h = struct.unpack_from(">II", buf, offset)
            track.width, track.height = w / 65536, h / 65536
        elif kind == b"mdhd":
            track.timescale, track.duration = _times(buf, s)
        elif kind == b"hdlr":
            track.handler = buf[s + 8:s + 12]
        elif kind == b"stsd":
            entries = list(_children(buf, s + 8, e))
            if entries:
                entry, es, _ = entries[0]
                track.codec = entry.decode("latin-1")
                if track.handler == b"vide":  # VisualSampleEntry: width, height at +24
                    track.entry_width, track.entry_height = struct.unpack_from(">HH", buf, es + 24)
        elif kind == b"stsz":
            track.samples = struct.unpack_from(">I", buf, s + 8)[0]
        elif kind == b"stz2":
            track.samples = struct.unpack_from(">I", buf, s + 8)[0]
        elif kind == b"stts" and not track.samples:
            count = struct.unpack_from(">I", buf, s + 4)[0]
            track.samples = sum(struct.unpack_from(">I", buf, s + 8 + 8 * i)[0]
                                for i in range(count))


# -- thumbnails ------------------------------------------------------------------------------
def thumbnail_strip(path: str | os.PathLike[str], *, frames: int = 4, height: int = 48) -> bytes:
    """A PNG of ``frames`` evenly spaced frames side by side, ``height`` pixels tall, for a
    quick visual scan of many runs (uses imageio-ffmpeg's bundled ffmpeg)."""
    import subprocess

    import imageio_ffmpeg

    info = probe(path)
    step = max(1, info.frames // max(1, frames))
    vf = (f"select='not(mod(n\\,{step}))',scale=-2:{int(height)},"
          f"tile={int(frames)}x1")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", os.fspath(path), "-vf", vf,
           "-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-"]
    out = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    if out.returncode != 0 or not out.stdout.startswith(b"\x89PNG"):
        raise ValueError(f"cannot make thumbnails of {os.fspath(path)!r}: "
                         f"{out.stderr.decode(errors='replace')[-300:]}")
    return out.stdout


# -- poster frames ---------------------------------------------------------------------------
POSTER_WIDTH = 320  # px: a gallery cell's width; a 16:9 emulator frame is ~4 KB as JPEG
POSTER_BATCH = 8  # videos per ffmpeg process: its start-up dominates the cost of one poster


def poster_path(video: str | os.PathLike[str]) -> Path:
    """Where the poster frame of ``video`` is cached: beside it, ``<name>.jpg``."""
    return Path(video).with_suffix(".jpg")


def cached_poster(video: str | os.PathLike[str]) -> Path | None:
    """The poster of ``video`` when it is already made and not older than the video."""
    path = poster_path(video)
    try:
        if path.stat().st_mtime_ns >= Path(video).stat().st_mtime_ns:
            return path
    except OSError:
        pass
    return None


def make_posters(videos: Sequence[str | os.PathLike[str]], *, width: int = POSTER_WIDTH,
                 quality: int = 5) -> list[Path | None]:
    """The poster frame of each video (a small JPEG, at most ``width`` pixels on its longer
    side, from a second in, or the middle of a shorter clip), made once with imageio-ffmpeg's
    ffmpeg and cached beside the video (:func:`poster_path`); a poster already there and not
    older than its video is reused. ``None`` for a video that cannot be read or a folder that
    cannot be written. Several videos share one ffmpeg process (its start-up is most of the
    cost: ~40 ms a poster in batches, ~200 ms alone)::

        make_posters(["wan_runs/videos/a.mp4"])   # [PosixPath('wan_runs/videos/a.jpg')]
    """
    out: list[Path | None] = [cached_poster(v) for v in videos]
    todo = [i for i, p in enumerate(out) if p is None]
    for start in range(0, len(todo), POSTER_BATCH):
        batch = todo[start:start + POSTER_BATCH]
        made = _ffmpeg_posters([videos[i] for i in batch], width, quality)
        if made is None:  # one unreadable video fails the whole command: one at a time
            made = [(_ffmpeg_posters([videos[i]], width, quality) or [None])[0] for i in batch]
        for i, path in zip(batch, made, strict=True):
            out[i] = path
    return out


def _ffmpeg_posters(videos: Sequence[str | os.PathLike[str]], width: int,
                    quality: int) -> list[Path | None] | None:
    """One ffmpeg run making the posters of ``videos``; None when it failed."""
    import subprocess

    import imageio_ffmpeg

    inputs: list[str] = []
    outputs: list[str] = []
    temps: list[Path] = []
    scale = f"scale={int(width)}:{int(width)}:force_original_aspect_ratio=decrease"
    for n, video in enumerate(videos):
        try:
            seconds = probe(video).duration
        except (OSError, ValueError):
            return None
        at = min(1.0, seconds / 2)
        # the JPEG is written under a temporary name and renamed: a half-written poster is
        # never served
        temp = poster_path(video).with_name(f".{poster_path(video).name}.{os.getpid()}.tmp")
        temps.append(temp)
        inputs += ["-threads", "1", "-ss", f"{at:.3f}", "-i", os.fspath(video)]
        outputs += ["-map", f"{n}:v:0", "-frames:v", "1", "-vf", scale, "-q:v", str(quality),
                    "-f", "mjpeg", os.fspath(temp)]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *inputs, *outputs]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError):
        done = None
    made: list[Path | None] = []
    for video, temp in zip(videos, temps, strict=True):
        try:
            if done is None or done.returncode != 0 or temp.stat().st_size == 0:
                raise OSError("no poster")
            os.replace(temp, poster_path(video))
            made.append(poster_path(video))
        except OSError:
            temp.unlink(missing_ok=True)
            made.append(None)
    return None if done is None or done.returncode != 0 else made
