"""Is a downloaded video still the file that was downloaded? (used by :mod:`wan_nb.store`)

The ledger records each video's sha256, size and mtime at download. A check compares size and
mtime (a ``stat``, microseconds) and hashes the file only when the mtime moved or when asked
to, so it is cheap enough for every display and every resume.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .request import file_sha256

State = Literal["ok", "missing", "truncated", "changed", "no_video"]
#: states in which the paid video should be fetched again (while its URL is valid)
DAMAGED: tuple[State, ...] = ("missing", "truncated", "changed")


@dataclass(frozen=True)
class VideoCheck:
    """What :meth:`Store.check_video` found: ``ok``, ``state``, ``problem`` (a sentence for
    the user, None when ok), ``path`` and whether the file was hashed."""

    run_id: str
    state: State
    problem: str | None = None
    path: Path | None = None
    hashed: bool = False

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def redownload(self) -> bool:
        """The file is gone or not what was downloaded: fetch it again if the URL is valid."""
        return self.state in DAMAGED


def check_video_file(root: Path, run: dict[str, Any], *,
                     full: bool = False) -> tuple[VideoCheck, int | None]:
    """Check ``run``'s video under ``root``. Returns the check and, when the content was
    confirmed by hashing under a different mtime than recorded, the mtime to record."""
    run_id = run["run_id"]
    rel = run.get("video_path")
    if not rel:
        why = run.get("download_error")
        return VideoCheck(run_id, "no_video", "no video was downloaded for this run"
                          + (f" ({why})" if why else "")), None
    path = root / rel
    try:
        st = path.stat()
    except FileNotFoundError:
        return VideoCheck(run_id, "missing", f"the video file was deleted ({path} is gone)",
                          path), None
    except OSError as exc:
        return VideoCheck(run_id, "missing", f"the video file cannot be read ({path}: "
                                             f"{exc.strerror or exc})", path), None
    if not stat.S_ISREG(st.st_mode):
        return VideoCheck(run_id, "missing", f"the video file was replaced by something that "
                                             f"is not a file ({path})", path), None
    expected = run.get("video_bytes")
    if expected is not None and st.st_size < expected:
        return VideoCheck(run_id, "truncated", f"the video file is truncated: {path} has "
                                               f"{st.st_size} of the {expected} bytes "
                                               "downloaded", path), None
    if expected is not None and st.st_size > expected:
        return VideoCheck(run_id, "changed", f"the video file changed since download: {path} "
                                             f"has {st.st_size} bytes, {expected} were "
                                             "downloaded", path), None
    recorded = run.get("video_mtime_ns")
    sha = run.get("video_sha256")
    if sha is None or (not full and recorded is not None and st.st_mtime_ns == recorded):
        return VideoCheck(run_id, "ok", None, path), None
    try:
        digest = file_sha256(path)
    except OSError as exc:
        return VideoCheck(run_id, "missing", f"the video file cannot be read ({path}: "
                                             f"{exc.strerror or exc})", path), None
    if digest != sha:
        return VideoCheck(run_id, "changed", f"the video file changed since download "
                                             f"(sha256 differs): {path}", path, True), None
    return (VideoCheck(run_id, "ok", None, path, True),
            st.st_mtime_ns if st.st_mtime_ns != recorded else None)
