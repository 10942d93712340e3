"""Downloading a succeeded task's video into the store before the service's 24 hours run
out: atomically, verified (sha256, size) and probed (frames, fps, audio), with retry rounds
while the signed URL is valid, and again on request (``job.retry_download()``, resume)."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import transitions
from .errors import APIError, DownloadError, TaskExpired, TransportError, WanError
from .jobs import Job, _utcnow
from .request import GenerationRequest
from .video_objects import ObjectVideos, cache_path

if TYPE_CHECKING:
    from .poller import JobManager

log = logging.getLogger("wan_nb.jobs")


class Downloader:
    """The download side of a job manager (runtime thread)."""

    def __init__(self, manager: JobManager) -> None:
        self.m = manager
        self._chains: collections.Counter[str] = collections.Counter()  # per run
        self._sem: asyncio.Semaphore | None = None

    def busy(self, job: Job) -> bool:
        """Is a download of ``job`` on its way (or waiting for its turn)?"""
        return bool(self._chains.get(job.run_id))

    def start(self, job: Job, *, delay: float = 0.0, refresh: bool = False) -> None:
        """Download ``job``'s video (after ``delay`` s; first asking the service for a fresh
        URL when ``refresh``). Counted per run, so a retry never starts a second download
        into the same file."""
        self._chains[job.run_id] += 1
        self.m.spawn(self._chain(job, delay, refresh), job)

    async def _chain(self, job: Job, delay: float, refresh: bool) -> None:
        m = self.m
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if refresh:
                await m.limiter.acquire()
                try:
                    state = await m.aio.get_task(m.task_of(job))
                except (APIError, TransportError):
                    state = None
                m.carry_out(job, transitions.on_url_refresh(state, m.track(job).counters))
            await self._download(job)
        finally:
            self._chains[job.run_id] -= 1
            if self._chains[job.run_id] <= 0:
                del self._chains[job.run_id]

    async def _download(self, job: Job) -> None:
        m = self.m
        if self._sem is None:
            self._sem = asyncio.Semaphore(m.policy.downloads)
        async with self._sem:
            record = m.state(job).record
            track = m.track(job)
            d = transitions.on_download_start(record, track.counters)
            if d is not None:
                m.carry_out(job, d)
                return
            path = m.store.new_video_path(job.run_id)
            try:
                result = await m.aio.download(record["video_url"], path)
                info = await asyncio.to_thread(_probe, str(path))
                where = str(result.path)
                if m.videos is not None:  # object storage: uploaded once, by content
                    where = await asyncio.to_thread(_upload, m.videos, path, result.sha256,
                                                    result.bytes, m.store.root)
            except (DownloadError, TransportError, TaskExpired, ValueError, OSError) as e:
                if not isinstance(e, TaskExpired):
                    path.unlink(missing_ok=True)
                d = transitions.on_download_failure(record, e, track.counters, _utcnow(),
                                                    m.policy)
                if d is None:
                    raise
                if d.download:
                    log.info("download of %s: %s", job.run_id, d.reason)
                m.carry_out(job, d)
                return
            m.stats["downloads"] += 1
            problems = check_video(job.request, info)
            m.finish(job, video_path=where, video_sha256=result.sha256,
                     video_bytes=result.bytes, video_fps=info.fps,
                     video_frames=info.frames, video_duration=info.duration,
                     has_audio=info.has_audio,
                     download_error=("; ".join(problems) if problems else None))

    # -- again -------------------------------------------------------------------------------
    async def again(self, job: Job) -> bool:
        """Fetch a SUCCEEDED job's video again (after a failed download, or a file deleted or
        damaged since) while its URL is valid. Returns False when there is nothing to do."""
        m = self.m
        m.check_open()
        m.reload(job)
        if job.status != "SUCCEEDED":
            raise WanError(f"job {job.run_id} is {job.status}: only a SUCCEEDED run has a "
                           "video to download")
        record = m.state(job).record
        if not record.get("video_url"):
            raise WanError(f"job {job.run_id}: the service reported no video URL")
        if record.get("video_path") and not record.get("download_error") \
                and job.check_video().ok:
            return False
        expires = record.get("video_url_expires_at")
        if expires is not None and expires <= _utcnow():
            raise TaskExpired(f"job {job.run_id}: its video URL expired at "
                              f"{expires.isoformat()} (the service keeps results for 24 hours); "
                              "the video cannot be fetched again")
        if self.busy(job):
            return True  # already on its way
        if not m.ownership.claim(record):
            raise WanError(f"job {job.run_id} is looked after by another live kernel "
                           f"({record.get('owner')}); download it there")
        m.ownership.watched.discard(job.run_id)
        m.add(job)
        m.update(job, download_error=None, video_path=None, video_sha256=None,
                 video_bytes=None)
        state = m.state(job)
        if state.done_event is not None and state.done_event.is_set():
            state.done_event = None  # not done any more: new waiters wait for this download
        track = m.track(job)
        track.counters = transitions.Counters()
        m.ensure_running()
        self.start(job, refresh=True)
        return True

    def to_fetch_again(self) -> list[dict[str, Any]]:
        """SUCCEEDED runs of this backend with a valid video URL whose download failed, or
        whose file is missing or damaged."""
        m = self.m
        soon = _utcnow() + dt.timedelta(minutes=1)
        out = []
        for row in m.store.runs(status="SUCCEEDED"):
            expires = row.get("video_url_expires_at")
            if (row.get("backend") != m.backend or not row.get("video_url")
                    or expires is None or expires <= soon or row["run_id"] in m.jobs
                    and not m.jobs[row["run_id"]].done):
                continue
            if row.get("download_error") or not row.get("video_path"):
                out.append(row)
                continue
            if not m.store.check_video(row).ok:
                out.append(row)
        return out


def _upload(videos: ObjectVideos, path: Path, sha256: str, size: int, root: Path) -> str:
    """Upload a verified, probed video (written once, by content) and keep the local file as
    the cache copy Jupyter serves; returns the object's URL. A failed upload is a failed
    download (retried in rounds while the service's URL is valid)."""
    try:
        url = videos.put(path, sha256, size)
    except WanError as e:
        raise DownloadError(str(e), retryable=True) from None
    cache = cache_path(root, {"video_sha256": sha256, "video_path": url})
    os.replace(path, cache)
    return url


def _probe(path: str) -> Any:
    from .media import probe

    return probe(path)


def check_video(request: GenerationRequest, info: Any) -> list[str]:
    """What in the downloaded video differs from what was asked (empty when all is well)."""
    problems = []
    if (info.width, info.height) != (request.width, request.height):
        problems.append(f"video is {info.width}*{info.height}, asked {request.size}")
    if request.duration and abs(info.duration - request.duration) > 0.5:
        problems.append(f"video lasts {info.duration:.2f} s, asked {request.duration} s")
    return problems
