"""wan_nb: Alibaba Cloud's Wan text-to-video service (DashScope) in Jupyter.

Without DASHSCOPE_API_KEY, connect() uses the offline emulator::

    import wan_nb
    client = wan_nb.connect()
    job = client.submit("a paper boat on a pond at dawn", size="832*480")
    job.result()        # the video plays inline in a notebook
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._version import __version__
from .client import AsyncClient, Secret
from .errors import (AmbiguousCreateError, APIError, AuthenticationError, BillingError,
                     ContentRejectedError, DownloadError, InvalidRequestError, JobTimeout,
                     ServerError, TaskExpired, TaskFailed, ThrottledError, TransportError,
                     UnsupportedOperationError, ValidationError, WanError)
from .request import GenerationRequest
from .session import Client, Session

__all__ = [
    "__version__", "connect", "Session", "Client", "AsyncClient", "GenerationRequest", "Job",
    "JobList", "Store", "Experiment", "Studio", "catalog",
    "WanError", "ValidationError", "APIError", "AuthenticationError", "InvalidRequestError",
    "UnsupportedOperationError", "ContentRejectedError", "BillingError", "ThrottledError",
    "ServerError", "TransportError", "AmbiguousCreateError", "TaskFailed", "TaskExpired",
    "DownloadError", "JobTimeout",
]

_LAZY = {"Job": "jobs", "JobList": "jobs", "Store": "store", "Experiment": "experiment",
         "Studio": "widgets", "catalog": "catalog"}


def __getattr__(name: str) -> Any:  # heavy modules (pandas) load on first use
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return module if name == "catalog" else getattr(module, name)
    raise AttributeError(f"module 'wan_nb' has no attribute {name!r}")


def connect(api_key: str | Secret | None = None, *, region: str | None = None,
            base_url: str | None = None, workspace: str | None = None, store: Any = None,
            emulator: bool | None = None,
            speed: str | float | None = None, resume: bool = True, quiet: bool = False,
            videos: str | None = None, video_options: Mapping[str, Any] | None = None,
            **kwargs: Any) -> Session:
    """A :class:`Session` ready for notebooks.

    With an API key (``api_key=`` or ``DASHSCOPE_API_KEY``) it talks to the real service
    (``region`` singapore/beijing/virginia, or ``base_url`` / ``DASHSCOPE_HTTP_BASE_URL``).
    ``workspace`` (a Model Studio workspace id) with ``region`` uses the per-workspace host
    ``https://{workspace}.{region-id}.maas.aliyuncs.com`` (the same account and tasks).
    Without one, or with ``emulator=True``, it starts the offline emulator on 127.0.0.1 and
    says so in one line. ``store`` is the run ledger: its folder (default ``./wan_runs``,
    SQLite) or, for a team sharing runs, ``"postgresql://user:password@host:port/db"`` (needs
    ``pip install 'wan_nb[team]'``; videos then go to the local ``./wan_runs``).
    ``resume`` re-attaches to unfinished runs left by an earlier kernel.
    ``videos="s3://bucket/prefix"`` keeps the downloaded videos on object storage, once each
    by sha256 (``video_options``: fsspec storage options; else the AWS environment; needs
    ``pip install 'wan_nb[team]'``); a local copy beside the notebook plays them inline.

    A bad configuration raises before anything is written: no ``./wan_runs`` is left behind.
    """
    # Wrapped first, before anything can raise: a verbose traceback prints every frame's
    # arguments and locals (see Secret).
    api_key = Secret(api_key) if api_key is not None else Secret.from_env()
    from .ledgers import open_ledger
    from .store_url import is_shared_ledger

    use_emulator = (not api_key) if emulator is None else bool(emulator)
    if workspace is not None and not use_emulator:
        from .config import Config

        if base_url is not None:
            raise ValidationError([("workspace", "give workspace= (with region=) or "
                                                 "base_url=, not both")])
        base_url = Config.workspace_url(workspace, region)
    _check_store_arg(store)
    _check_client_kwargs(kwargs)
    from .session import _video_target

    _video_target(videos, video_options)  # checked before anything starts or is written
    kwargs.update(videos=videos, video_options=video_options)
    if not use_emulator:
        # configuration (and, for a custom URL, the server's identity) checked here; the
        # store is created only by resume() or the first job
        client = Client(api_key, region=region, base_url=base_url, store=store, **kwargs)
    else:
        try:
            from .emulator.server import start_embedded
            from .emulator.speed import parse_speed
        except ImportError as e:  # pragma: no cover - the emulator ships with the package
            raise WanError(f"the offline emulator is not available ({e}); set "
                           "DASHSCOPE_API_KEY to use the real service") from e
        try:
            emu_speed = parse_speed(speed or "fast")
        except ValueError as e:
            raise ValidationError([("speed", str(e))]) from None
        clash = [(name, f"{name}= names another service, but no API key was given, so "
                        "connect() would use its embedded emulator; pass api_key= too (a CLI "
                        "emulator prints its key), or leave it out")
                 for name, value in (("base_url", base_url), ("region", region),
                                     ("workspace", workspace),
                                     ("backend", kwargs.get("backend")),
                                     ("config", kwargs.get("config")),
                                     ("async_client", kwargs.get("async_client")))
                 if value is not None]
        if clash:
            raise ValidationError(clash)
        the_store = open_ledger(store)
        if the_store.read_only:
            # a read-only ledger can be read, not written: its emulator lives elsewhere
            # and nothing is resumed
            import tempfile

            data_dir = Path(tempfile.mkdtemp(prefix="wan_nb-emulator-"))
            resume = False
        else:
            data_dir = the_store.root / ".emulator"
        emu = start_embedded(data_dir=data_dir, speed=emu_speed)
        emu_key = Secret(emu.api_key)
        # The embedded emulator keeps the label "emulator", not "emulator:<id>": its data
        # lives inside this store (one emulator per store, so the name is unambiguous) and
        # every run recorded so far carries that label, so de-duplication and resume keep
        # matching them without a store migration. A ledger other machines share
        # (PostgreSQL) sees every machine's embedded emulator: each is named by its host
        # and folder there, so none takes another's runs (and tasks) for its own.
        label = (f"emulator:{socket.gethostname()}:{data_dir}" if is_shared_ledger(the_store)
                 else "emulator")
        client = Client(emu_key, base_url=emu.base_url, backend=label,
                        store=the_store, **kwargs)
        client.emulator = emu
        if not quiet:
            print(f"wan_nb {__version__}: no DASHSCOPE_API_KEY, so this session uses the offline "
                  f"emulator at {emu.base_url}\n(synthetic videos, nothing billed).\n"
                  + (f"The store {the_store.root} is read-only: its runs can be read, "
                     "not added to." if the_store.read_only else
                     f"Runs are recorded in {the_store.root}"), file=sys.stdout)
    if resume:
        client.resume()
    return client


def _check_store_arg(store: Any) -> None:
    """``store`` is None, a folder path, a postgresql:// URL or a Store; anything else is
    refused before any folder is made (:func:`wan_nb.store_url.check_store_arg`)."""
    from .store_url import check_store_arg

    check_store_arg(store)


def _check_client_kwargs(kwargs: dict[str, Any]) -> None:
    """Unknown keyword arguments are refused before anything starts or is written."""
    import inspect

    allowed = (set(inspect.signature(AsyncClient).parameters)
               | {"policy", "async_client"}) - {"api_key", "region", "base_url"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValidationError([(name, f"connect() has no argument {name!r}; it takes "
                                      f"{', '.join(sorted(allowed))}") for name in unknown])
