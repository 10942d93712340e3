"""What a local audio file really is: WAV or MP3 by its header, and how long it lasts.

Pure reading of a few header bytes (no decoder): the client checks a file this way before
uploading it, so that a text file named ``.wav`` is refused instead of paid for.

>>> duration("voice.wav", "WAV")            # doctest: +SKIP
4.0
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Literal


def duration(path: str, kind: Literal["WAV", "MP3"]) -> float | None:
    """Seconds of audio in ``path``, read from its header; :class:`NotAudio` when the file is
    not a ``kind`` file. ``None`` when the header does not tell."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        return _wav_seconds(f, size) if kind == "WAV" else _mp3_seconds(f, size)


class NotAudio(Exception):
    """The file is not audio of the kind its name says; the text says what it starts with."""


def _wav_seconds(f: BinaryIO, size: int) -> float:
    """Duration of a RIFF/WAVE file from its ``fmt `` and ``data`` chunks (any codec)."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise NotAudio(f"it starts with {head[:12]!r}, not RIFF....WAVE")
    byte_rate = None
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        chunk = f.read(8)
        cid, length = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
        if cid == b"fmt ":
            fmt = f.read(16)
            if len(fmt) < 16:
                raise NotAudio("its fmt chunk is cut short")
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
        elif cid == b"data":
            if not byte_rate:
                raise NotAudio("it has no usable fmt chunk before its data")
            # a streamed WAV may say 0 or 0xFFFFFFFF: the data then runs to the end
            available = size - pos - 8
            data = length if 0 < length <= available else available
            return data / byte_rate
        pos += 8 + length + (length & 1)
    raise NotAudio("it has no data chunk")


# MPEG audio layer III: kbit/s by version (1, or 2 and 2.5) and index; Hz by version.
_MP3_KBPS = {1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_HZ = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame(h: bytes) -> tuple[int, int, int, int] | None:
    """(version bits, kbit/s, Hz, channel mode) of an MPEG layer III frame header, or None."""
    if len(h) < 4 or h[0] != 0xFF or h[1] & 0xE0 != 0xE0:
        return None
    version, layer = (h[1] >> 3) & 3, (h[1] >> 1) & 3
    rate_i, hz_i = h[2] >> 4, (h[2] >> 2) & 3
    if version == 1 or layer != 1 or rate_i in (0, 15) or hz_i == 3:
        return None  # reserved, not layer III, free-format or invalid
    kbps = _MP3_KBPS[1 if version == 3 else 2][rate_i]
    return version, kbps, _MP3_HZ[version][hz_i], h[3] >> 6


def _mp3_seconds(f: BinaryIO, size: int) -> float | None:
    """Duration of an MP3: from its Xing/Info or VBRI frame count when present, otherwise as
    constant bit rate (how ffmpeg estimates it too). Needs an ID3v2 tag followed by an MPEG
    layer III frame, or such a frame at the very start."""
    head = f.read(10)
    start = 0
    if head[:3] == b"ID3" and len(head) == 10:
        tag = ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7
               | (head[9] & 0x7F))
        start = 10 + tag + (10 if head[5] & 0x10 else 0)
        f.seek(start)
        window = f.read(4096)  # some encoders pad between the tag and the first frame
        offsets = [i for i in range(max(len(window) - 3, 0)) if _mp3_frame(window[i:i + 4])]
        if not offsets:
            raise NotAudio("an ID3 tag with no MPEG layer III audio frame after it")
        start += offsets[0]
    elif _mp3_frame(head[:4]) is None:
        raise NotAudio(f"it starts with {head[:10]!r}, neither an ID3 tag nor an MPEG "
                        "layer III frame")
    f.seek(start)
    frame = f.read(200)
    header = _mp3_frame(frame)
    if header is None:
        raise NotAudio("no MPEG layer III frame where the audio should start")
    version, kbps, hz, mode = header
    samples = 1152 if version == 3 else 576
    side = (32 if mode != 3 else 17) if version == 3 else (17 if mode != 3 else 9)
    for at, frames_at in ((4 + side, 8), (36, 14)):
        magic = frame[at:at + 4]
        if magic in (b"Xing", b"Info") and len(frame) >= at + 12:
            if struct.unpack(">I", frame[at + 4:at + 8])[0] & 1:
                return struct.unpack(">I", frame[at + 8:at + 12])[0] * samples / hz
        elif magic == b"VBRI" and at == 36 and len(frame) >= at + 18:
            return struct.unpack(">I", frame[at + frames_at:at + frames_at + 4])[0] * samples / hz
    return (size - start) * 8 / (kbps * 1000)
