"""Videos on object storage: ``connect(videos="s3://bucket/prefix")`` (issue 13).

A downloaded video is verified and probed on local disk as always, then uploaded once,
content-addressed: the object ``<prefix>/<sha256>.mp4`` (with the sha256 in its metadata and
``Content-Type: video/mp4``). An object already there with the same size and sha256 is not
written again (two kernels, or two runs with the same video, write it once). The run's
``video_path`` is then the object's URL (``s3://bucket/prefix/<sha256>.mp4``), so
``to_dataframe()`` says where every video is, from any machine.

Playback: the local copy stays under the store as the cache, ``videos/<sha256>.mp4`` (served
by Jupyter by relative path, as local videos are); a kernel without it (another machine)
fetches it, verified, the first time it is shown (:func:`local_copy`). Where no copy can be
made, :func:`presigned` signs a URL at display time, never stored.

Checks (:func:`check_object`, used by ``Store.check_video`` and ``verify``): the object's size
against the ledger's ``video_bytes`` (a HEAD), and with ``full=True`` its sha256, hashed from
the object's bytes.

Endpoint and credentials: the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, profiles), or fsspec
``storage_options`` as ``connect(video_options={...})``. Option values never appear in reprs,
errors or the ledger. Needs ``pip install 'wan_nb[team]'`` (fsspec + s3fs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ValidationError, WanError
from .store_video import VideoCheck

__all__ = ["ObjectVideos", "check_object", "is_object_url", "local_copy", "presigned",
           "target_for"]

#: object stores wan_nb writes videos to (fsspec protocols)
SCHEMES = ("s3",)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def is_object_url(value: object) -> bool:
    """Is a ``video_path`` an object URL (``s3://…``) rather than a path in the store?"""
    return isinstance(value, str) and value.split("://", 1)[0] in SCHEMES and "://" in value


class ObjectVideos:
    """Where a session's videos go: ``ObjectVideos("s3://bucket/prefix", options)``.
    ``options`` are fsspec storage options (``key``, ``secret``, ``endpoint_url``,
    ``client_kwargs``, ...); without them the AWS environment decides."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        problems = _url_problems(url)
        if options is not None and not isinstance(options, Mapping):
            problems.append(("video_options", "video_options must be a dict of fsspec "
                                              "storage options (endpoint_url, key, secret, "
                                              f"...), not {type(options).__name__}"))
        if problems:
            raise ValidationError(problems)
        self.url = url.rstrip("/")
        self.options = dict(options or {})
        parts = urlsplit(self.url)
        self.scheme, self.bucket = parts.scheme, parts.netloc
        self._fs: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        # option names only: values may be credentials
        names = ", ".join(sorted(self.options))
        return f"ObjectVideos({self.url!r}" + (f", options: {names})" if names else ")")

    def _identity(self) -> tuple[str, str]:
        return self.url, json.dumps(self.options, sort_keys=True, default=str)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectVideos) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (made on first use)."""
        with self._lock:
            if self._fs is None:
                try:
                    import fsspec
                except ImportError:
                    raise WanError("videos on object storage need fsspec and s3fs: pip "
                                   "install 'wan_nb[team]'") from None
                try:
                    self._fs = fsspec.filesystem(self.scheme, **self.options)
                except ImportError:
                    raise WanError(f"videos on {self.scheme}:// need s3fs: pip install "
                                   "'wan_nb[team]'") from None
                except (TypeError, ValueError) as e:
                    raise ValidationError([("video_options", "the storage options were "
                                            f"refused ({type(e).__name__}); names given: "
                                            f"{', '.join(sorted(self.options)) or 'none'}")]
                                          ) from None
            return self._fs

    def object_url(self, sha256: str) -> str:
        """The URL of the video whose content has this sha256."""
        if not _SHA256.fullmatch(sha256 or ""):
            raise ValidationError([("sha256", f"not a sha256 hex digest: {sha256!r}")])
        return f"{self.url}/{sha256}.mp4"

    def put(self, path: str | os.PathLike[str], sha256: str, size: int) -> str:
        """Upload a verified local video (its ``sha256`` and ``size`` already known) unless
        the object is there with the same size and sha256; returns its URL. Raises
        :class:`~wan_nb.errors.WanError` when the upload fails or reads back wrong."""
        url = self.object_url(sha256)
        fs = self.fs
        try:
            have = self._head(url)
            if have is not None and have[0] == size and have[1] in (sha256, None):
                return url  # written once: the same content is already there
            fs.put_file(os.fspath(path), url, ContentType="video/mp4",
                        Metadata={"sha256": sha256})
            have = self._head(url)
        except WanError:
            raise
        except Exception as e:  # botocore's and aiohttp's errors are not all OSErrors
            raise WanError(f"could not upload the video to {url}: {_reason(e)}") from None
        if have is None or have[0] != size:
            raise WanError(f"the upload to {url} reads back as "
                           f"{'nothing' if have is None else f'{have[0]} bytes'}, not {size}")
        return url

    def _head(self, url: str) -> tuple[int, str | None] | None:
        """(size, sha256 from its metadata or None) of an object, None when there is none."""
        fs = self.fs
        fs.invalidate_cache(url)
        try:
            info = fs.info(url)
        except FileNotFoundError:
            return None
        meta: Mapping[str, Any] = {}
        with contextlib.suppress(OSError, AttributeError, NotImplementedError):
            meta = fs.metadata(url) or {}
        return int(info.get("size") or 0), meta.get("sha256")

    def sha256(self, url: str) -> str:
        """The sha256 of an object's bytes (read through)."""
        digest = hashlib.sha256()
        with self.fs.open(url, "rb", block_size=_CHUNK) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def fetch(self, url: str, dest: Path, sha256: str | None) -> Path:
        """Copy an object to ``dest`` (atomically), checked against ``sha256``."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        try:
            self.fs.get_file(url, str(part))
            if sha256 is not None and _file_sha256(part) != sha256:
                raise WanError(f"the object {url} is not the video that was uploaded "
                               "(sha256 differs)")
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        return dest

    def sign(self, url: str, expires: int = 3600) -> str:
        return str(self.fs.sign(url, expiration=expires))


def _url_problems(url: object) -> list[tuple[str, str]]:
    allowed = ", ".join(f"{s}://bucket/prefix" for s in SCHEMES)
    if not isinstance(url, str):
        return [("videos", f"videos must be a URL such as {allowed}, not "
                           f"{type(url).__name__}")]
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.netloc:
        return [("videos", f"videos={_safe(url)!r} is not supported: give {allowed} "
                           "(local disk, the default, needs no videos=)")]
    if "@" in parts.netloc or parts.query or parts.fragment:
        return [("videos", "videos= is a bucket and prefix only: credentials, queries and "
                           "fragments go in the AWS environment or video_options")]
    return []


def _safe(url: str) -> str:
    """A URL as it may be shown: anything before an ``@`` (credentials) masked."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return (scheme + sep + rest)[:200]


def _reason(e: BaseException) -> str:
    """An error's kind and message, without anything credential-like."""
    text = re.sub(r"(?i)(secret|token|password|signature|credential)\S*", r"\1=***", str(e))
    return f"{type(e).__name__}: {text[:300]}"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- which target serves an object URL ------------------------------------------------------
_targets: dict[str, ObjectVideos] = {}
_targets_lock = threading.Lock()


def register(target: ObjectVideos) -> ObjectVideos:
    """Make ``target`` (its options) the one that serves URLs under its prefix in this
    process; returns the registered one (an equal target registered earlier is reused, so
    its filesystem is too)."""
    with _targets_lock:
        have = _targets.get(target.url)
        if have is not None and have == target:
            return have
        _targets[target.url] = target
        return target


def target_for(url: str) -> ObjectVideos:
    """The target that serves an object URL: the registered one with the longest prefix of
    it, else one for its bucket with the AWS environment's settings."""
    with _targets_lock:
        best = max((t for t in _targets.values() if url.startswith(t.url + "/")),
                   key=lambda t: len(t.url), default=None)
        if best is None:
            parts = urlsplit(url)
            best = _targets.setdefault(f"{parts.scheme}://{parts.netloc}",
                                       ObjectVideos(f"{parts.scheme}://{parts.netloc}"))
        return best


# -- what the store and the display ask ------------------------------------------------------
def cache_path(root: Path, run: Mapping[str, Any]) -> Path:
    """Where the local copy of a run's object video lives (may not exist)."""
    sha = run.get("video_sha256") or Path(urlsplit(str(run.get("video_path"))).path).stem
    return root / "videos" / f"{sha}.mp4"


def check_object(root: Path, run: Mapping[str, Any], *, full: bool = False) -> VideoCheck:
    """Is a run's object still the video that was uploaded? Size against ``video_bytes``
    (one HEAD); with ``full`` its sha256 too. Never raises: a store that cannot be reached
    reads as ``missing`` with the reason."""
    run_id, url = run["run_id"], str(run["video_path"])
    local = cache_path(root, run)
    try:
        target = target_for(url)
        have = target._head(url)
        if have is None:
            return VideoCheck(run_id, "missing", f"the video object is gone ({url})", local)
        size, _meta = have
        expected = run.get("video_bytes")
        if expected is not None and size < expected:
            return VideoCheck(run_id, "truncated", f"the video object is truncated: {url} "
                                                   f"has {size} of the {expected} bytes "
                                                   "uploaded", local)
        if expected is not None and size > expected:
            return VideoCheck(run_id, "changed", f"the video object changed since upload: "
                                                 f"{url} has {size} bytes, {expected} were "
                                                 "uploaded", local)
        if full and run.get("video_sha256"):
            if target.sha256(url) != run["video_sha256"]:
                return VideoCheck(run_id, "changed", f"the video object changed since upload "
                                                     f"(sha256 differs): {url}", local, True)
            return VideoCheck(run_id, "ok", None, local, True)
    except WanError as e:
        return VideoCheck(run_id, "missing", f"the video object cannot be checked ({url}): "
                                             f"{e}", local)
    except Exception as e:  # a network or credentials failure: said, never raised
        return VideoCheck(run_id, "missing", f"the video object cannot be checked ({url}): "
                                             f"{_reason(e)}", local)
    return VideoCheck(run_id, "ok", None, local)


def local_copy(root: Path, run: Mapping[str, Any]) -> Path | None:
    """The local copy of a run's object video, fetched (and checked against its sha256)
    when it is not there yet; None when it cannot be made (the object is gone, no access,
    a read-only folder)."""
    path = cache_path(root, run)
    expected = run.get("video_bytes")
    if path.is_file() and (expected is None or path.stat().st_size == expected):
        return path
    try:
        return target_for(str(run["video_path"])).fetch(str(run["video_path"]), path,
                                                        run.get("video_sha256"))
    except Exception:  # a display never fails for a video it cannot show
        return None


def presigned(run: Mapping[str, Any], expires: int = 3600) -> str | None:
    """A URL that plays the run's object video for ``expires`` s (made now, never stored);
    None when it cannot be signed."""
    try:
        return target_for(str(run["video_path"])).sign(str(run["video_path"]), expires)
    except Exception:
        return None


def with_local_videos(frame: Any, root: Path) -> Any:
    """A runs frame whose videos on object storage read as their local copies (relative to
    ``root``, fetched when missing): for a bundle or thumbnails, which need the files. A
    video no copy can be made of keeps its URL (the bundle then lists it as missing)."""
    urls = [(rid, v) for rid, v in frame["video_path"].items() if is_object_url(v)]
    if not urls:
        return frame
    frame = frame.copy()
    for run_id, url in urls:
        row = {"run_id": run_id, "video_path": url,
               "video_sha256": _value(frame.at[run_id, "video_sha256"]),
               "video_bytes": _value(frame.at[run_id, "video_bytes"])}
        local = local_copy(root, row)
        if local is not None:
            frame.at[run_id, "video_path"] = local.relative_to(root).as_posix()
    return frame


def _value(value: Any) -> Any:
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value
