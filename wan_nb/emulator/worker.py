"""Background work of the emulator app: rendering the MP4 of each task that starts RUNNING,
fetching its custom audio, and waking the state machine when the next event is due.

Audio, like the service: wan2.2/2.1 and HappyHorse are silent; ``audio: false`` is silent
(not on wan2.7, which does not document it); ``audio: true`` (or absent) on wan2.5/2.6/2.7 and
Wan 3.0 gets generated sound; ``audio_url`` is fetched (http(s) through httpx,
or an ``oss://`` upload stored locally) and used as is (the renderer trims or pads it). An
audio file that cannot be fetched, is larger than 15 MB, is neither wav nor mp3 (checked by
its leading bytes) or lasts less than the model takes (3 s; 2 s on wan2.7) or more than 30 s
(as ffmpeg reads it, 0.1 s of slack) makes the task end FAILED with ``InvalidParameter``
(**decision**: the service fetches the audio while processing, so the failure arrives with the
task, not at create).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx

from . import facts
from .engine import Engine, FakeClock, Task
from .objects import ObjectStore

log = logging.getLogger("wan_nb.emulator")


def _picture(params: dict[str, Any]) -> str:
    """How the caption names the picture asked for: ``832*480``, or ``720P 4:3``."""
    if params.get("resolution"):
        return f"{params['resolution']} {params['ratio']}"
    return str(params["size"])


class AudioFailure(Exception):
    """The task's audio_url is unusable; the task ends FAILED with InvalidParameter."""


def audio_kind(head: bytes) -> str | None:
    """"wav", "mp3" or None, from a file's first bytes."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


#: ffmpeg's reading of an MP3's length can be off by a frame or two either way
AUDIO_SLACK_S = 0.1


def audio_seconds(path: Path) -> float | None:
    """The length of an audio file as ffmpeg reads it (None if it says nothing)."""
    from .render import ffmpeg_exe

    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True,
                         text=True, timeout=30).stderr
    m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", out)
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None


class RenderWorker:
    """Starts renders for the engine's new RUNNING tasks, on the running event loop."""

    def __init__(self, engine: Engine, objects: ObjectStore, *, fetch_timeout: float = 20.0,
                 limiter: Any = None):
        self.engine = engine
        self.objects = objects
        self.fetch_timeout = fetch_timeout
        self.limiter = limiter
        self.audio_dir = objects.root / "audio"
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    # -- scheduling ----------------------------------------------------------------------------
    def kick(self) -> None:
        """Start renders that are due and arm a wake-up for the next clock event. Call on the
        event loop after anything that may have changed the engine's state."""
        loop = asyncio.get_running_loop()
        for t in self.engine.take_render_jobs():
            job = loop.create_task(self._render(t), name=f"render {t.task_id}")
            self._tasks.add(job)
            job.add_done_callback(self._tasks.discard)
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        # with a FakeClock time only moves when told; nothing to wake up for
        if isinstance(self.engine.clock, FakeClock):
            return
        nxt = self.engine.next_event()
        if nxt is None or (self._timer_at is not None and self._timer_at <= nxt
                           and self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, nxt - self.engine.clock.now()) + 0.005
        self._timer_at = nxt
        self._timer = loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        try:
            self.engine.settle()
            self.kick()
        except Exception:  # a wake-up must never kill the loop
            log.exception("emulator wake-up failed")

    @property
    def busy(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every started render has finished."""
        async def _wait() -> None:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await asyncio.wait_for(_wait(), timeout)

    async def aclose(self) -> None:
        """Cancel the wake-up and any render still running (they are redone after a restart)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        for job in list(self._tasks):
            job.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- one render ----------------------------------------------------------------------------
    async def _render(self, t: Task) -> None:
        self.engine.stats.renders["started"] += 1
        error: tuple[str, str] | None = None
        audio_path: Path | None = None
        try:
            mode, audio_path = await self._audio(t)
            await self._render_file(t, mode, audio_path)
        except asyncio.CancelledError:
            raise
        except AudioFailure as e:
            error = ("InvalidParameter", str(e))
        except Exception as e:  # the renderer's failure becomes the task's
            log.warning("render of %s failed: %s", t.task_id, e)
            error = ("InternalError.Algo", "An internal algorithm error has occured.")
        finally:
            if audio_path is not None and audio_path.parent == self.audio_dir:
                audio_path.unlink(missing_ok=True)
        self.engine.render_done(t.task_id, error)
        self.kick()

    async def _render_file(self, t: Task, mode: str, audio_path: Path | None) -> None:
        from .render import RenderSpec, render_video_async

        p = t.params
        w, h = facts.parse_size(p["size"])
        spec = RenderSpec(prompt=p["prompt"], seed=int(p["seed"]), width=w, height=h,
                          duration=float(p["duration"]), fps=t.spec.fps,
                          watermark=bool(p["watermark"]), audio=mode,  # type: ignore[arg-type]
                          audio_path=str(audio_path) if audio_path else None,
                          caption=f"{t.model} · {_picture(p)} · seed {p['seed']}")
        await render_video_async(spec, self.objects.file_path(t.file_name),
                                 limiter=self.limiter)

    async def _audio(self, t: Task) -> tuple[str, Path | None]:
        p = t.params
        if not t.spec.audio or p.get("audio") == "silent":
            return "none", None
        if p.get("audio") != "custom":
            return "generated", None
        src = t.audio_source or p.get("audio_url") or ""
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        if src.startswith(("http://", "https://")):
            path = await self._fetch(src, self.audio_dir / f"{t.task_id}.audio")
        else:
            path = Path(src)
            if not path.is_file():
                raise AudioFailure(f"The audio file {p.get('audio_url')} is no longer "
                                   "available.")
        with open(path, "rb") as f:
            kind = audio_kind(f.read(16))
        if kind is None:
            raise AudioFailure(f"The audio_url {p.get('audio_url')} is not a wav or mp3 file.")
        if path.stat().st_size > facts.AUDIO_MAX_BYTES:
            raise AudioFailure(f"The audio file {p.get('audio_url')} is larger than 15 MB.")
        seconds = await asyncio.to_thread(audio_seconds, path)
        lo, hi = t.spec.audio_min_s, facts.AUDIO_MAX_S
        if seconds is not None and not lo - AUDIO_SLACK_S <= seconds <= hi + AUDIO_SLACK_S:
            raise AudioFailure(f"The audio file {p.get('audio_url')} is {seconds:.2f} s long; "
                               f"{t.model} takes {lo:g} to {hi:g} s of audio.")
        if path.parent == self.audio_dir:
            final = path.with_suffix("." + kind)
            shutil.move(path, final)
            path = final
        return "custom", path

    async def _fetch(self, url: str, dest: Path) -> Path:
        size = 0
        try:
            async with httpx.AsyncClient(timeout=self.fetch_timeout, follow_redirects=True,
                                         trust_env=False) as client:
                async with client.stream("GET", url) as r:
                    if r.status_code != 200:
                        raise AudioFailure(f"Failed to download the audio file from "
                                           f"{url}: HTTP {r.status_code}.")
                    with open(dest, "wb") as f:
                        async for chunk in r.aiter_bytes():
                            size += len(chunk)
                            if size > facts.AUDIO_MAX_BYTES:
                                raise AudioFailure(f"The audio file {url} is larger than "
                                                   "15 MB.")
                            f.write(chunk)
        except httpx.HTTPError as e:
            raise AudioFailure(f"Failed to download the audio file from {url}: "
                               f"{type(e).__name__}.") from None
        return dest
