"""A local audio file: what it really is (WAV or MP3 by its header), how long it lasts, and
its sha256, all from one read.

Two layers, kept apart on purpose:

- :func:`seconds` is **pure**: it looks at bytes already in memory (no decoder, a few header
  bytes), so it is tested without files.
- :func:`load` is the **I/O**: it opens the file once, refuses it when it is not acceptable
  (gone, over 15 MB, not the audio its name says, outside 3–30 s) and returns its bytes and
  their sha256. The check and the hash see the same bytes: a file swapped between them cannot
  be checked as one content and recorded as another. A request calls it once, when built from
  user input; the client calls it again right before the upload.

>>> load("voice.wav").sha256               # doctest: +SKIP
'9f2c…'
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from . import catalog
from .errors import ValidationError

Kind = Literal["WAV", "MP3"]


def local_path(url: str) -> str:
    """The file a local ``audio_url`` names (a path or a ``file://`` URL)."""
    return url.removeprefix("file://")


def kind_of(path: str) -> Kind:
    """The audio kind a file's name promises (its extension)."""
    return "WAV" if path.lower().endswith(".wav") else "MP3"


@dataclass(frozen=True)
class Audio:
    """An acceptable local audio file as read once: its bytes and what they are."""

    path: str
    kind: Kind
    seconds: float | None
    sha256: str
    data: bytes = field(repr=False)


def load(url: str, *, min_s: float = catalog.AUDIO_MIN_S) -> Audio:
    """Read the local file ``url`` names (a path or ``file://``) once and check it: present,
    at most 15 MB, really WAV or MP3 (by its header, matching its extension) and ``min_s`` to
    30 s long (3 s by default, reference §2.2; wan2.7 takes 2 s, §7.1).
    :class:`~wan_nb.errors.ValidationError` (field ``audio_url``) saying what is wrong and what
    is allowed; otherwise its bytes and their sha256. This is I/O."""
    path = local_path(url)
    if not os.path.isfile(path):  # also keeps a FIFO or a device from being opened
        raise _refused(f"audio_url {url!r} is neither an http(s) URL nor an existing local "
                       "file")
    limit = catalog.AUDIO_MAX_BYTES
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = b"" if size > limit else f.read(limit + 1)
    except OSError as e:
        raise _refused(f"audio file {path!r} cannot be read: {e.strerror or e}") from None
    if size > limit or len(data) > limit:  # the second: it grew after the size was taken
        size = max(size, len(data))
        raise _refused(f"audio file {path!r} is {size / 2**20:.1f} MB; at most 15 MB")
    kind = kind_of(path)
    try:
        secs = seconds(data, kind)
    except NotAudio as e:
        article = "a WAV" if kind == "WAV" else "an MP3"
        raise _refused(f"audio file {path!r} is not {article} file ({e}); the service takes "
                       "WAV (RIFF/WAVE) or MP3 audio, 3–30 s, at most 15 MB") from None
    lo, hi = min_s, catalog.AUDIO_MAX_S
    # an MP3's frame count includes the encoder's delay and padding (LAME adds ~50 ms that
    # players and ffmpeg do not count): two frames of slack either way
    slack = 0.06 if kind == "MP3" else 0.0
    if secs is not None and not lo - slack <= secs <= hi + slack:
        raise _refused(f"audio file {path!r} lasts {secs:.2f} s; the service takes {lo:g} to "
                       f"{hi:g} s")
    return Audio(path, kind, secs, hashlib.sha256(data).hexdigest(), data)


def _refused(message: str) -> ValidationError:
    return ValidationError([("audio_url", message)])


def hash_file(url: str) -> str:
    """The sha256 of the file a local ``audio_url`` names, without checking it (I/O): for a
    request read back from a store row written before the sha256 was recorded.
    :class:`~wan_nb.errors.ValidationError` when it cannot be read."""
    try:
        return file_sha256(url)
    except OSError as e:
        raise _refused(f"the local audio file {local_path(url)!r} cannot be read "
                       f"({e.strerror or e}), so its content cannot be fingerprinted") from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's content (``file://`` URLs accepted), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(local_path(os.fspath(path)), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def seconds(data: bytes, kind: Kind) -> float | None:
    """Seconds of audio in ``data`` (a whole file's bytes), read from its header (pure);
    :class:`NotAudio` when it is not a ``kind`` file, ``None`` when the header does not tell.

    >>> seconds(b"not audio", "WAV")
    Traceback (most recent call last):
    ...
    wan_nb.audiofile.NotAudio: it starts with b'not audio', not RIFF....WAVE
    """
    f = io.BytesIO(data)
    return _wav_seconds(f, len(data)) if kind == "WAV" else _mp3_seconds(f, len(data))


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
