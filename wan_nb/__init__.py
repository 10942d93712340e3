"""wan_nb: Alibaba Cloud's Wan text-to-video service (DashScope) in Jupyter.

Without DASHSCOPE_API_KEY, connect() uses the offline emulator::

    import wan_nb
    client = wan_nb.connect()
    job = client.submit("a paper boat on a pond at dawn", size="832*480")
    job.result()        # the video plays inline in a notebook
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ._version import __version__
from .client import AsyncClient, Client
from .errors import (AmbiguousCreateError, APIError, AuthenticationError, BillingError,
                     ContentRejectedError, DownloadError, InvalidRequestError, JobTimeout,
                     ServerError, TaskExpired, TaskFailed, ThrottledError, TransportError,
                     UnsupportedOperationError, ValidationError, WanError)
from .request import GenerationRequest

__all__ = [
    "__version__", "connect", "Client", "AsyncClient", "GenerationRequest", "Job", "JobList",
    "Store", "Experiment", "catalog",
    "WanError", "ValidationError", "APIError", "AuthenticationError", "InvalidRequestError",
    "UnsupportedOperationError", "ContentRejectedError", "BillingError", "ThrottledError",
    "ServerError", "TransportError", "AmbiguousCreateError", "TaskFailed", "TaskExpired",
    "DownloadError", "JobTimeout",
]

_LAZY = {"Job": "jobs", "JobList": "jobs", "Store": "store", "Experiment": "experiment",
         "catalog": "catalog"}


def __getattr__(name: str) -> Any:  # heavy modules (pandas) load on first use
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return module if name == "catalog" else getattr(module, name)
    raise AttributeError(f"module 'wan_nb' has no attribute {name!r}")


def connect(api_key: str | None = None, *, region: str | None = None,
            base_url: str | None = None, store: Any = None, emulator: bool | None = None,
            speed: str | float | None = None, resume: bool = True, quiet: bool = False,
            **kwargs: Any) -> Client:
    """A :class:`Client` ready for notebooks.

    With an API key (``api_key=`` or ``DASHSCOPE_API_KEY``) it talks to the real service
    (``region`` singapore/beijing/virginia, or ``base_url`` / ``DASHSCOPE_HTTP_BASE_URL``).
    Without one, or with ``emulator=True``, it starts the offline emulator on 127.0.0.1 and
    says so in one line. ``store`` is the run ledger's folder (default ``./wan_runs``).
    ``resume`` re-attaches to unfinished runs left by an earlier kernel.
    """
    from .store import Store

    key = api_key if api_key is not None else os.environ.get("DASHSCOPE_API_KEY", "")
    use_emulator = (not key) if emulator is None else emulator
    the_store = store if isinstance(store, Store) else Store(store)
    if use_emulator:
        try:
            from .emulator.server import start_embedded
        except ImportError as e:  # pragma: no cover - the emulator ships with the package
            raise WanError(f"the offline emulator is not available ({e}); set "
                           "DASHSCOPE_API_KEY to use the real service") from e
        emu = start_embedded(data_dir=the_store.root / ".emulator", speed=speed or "fast")
        client = Client(emu.api_key, base_url=emu.base_url, backend="emulator",
                        store=the_store, **kwargs)
        client.emulator = emu
        if not quiet:
            print(f"wan_nb {__version__}: no DASHSCOPE_API_KEY, so this session uses the offline "
                  f"emulator at {emu.base_url}\n(synthetic videos, nothing billed).\n"
                  f"Runs are recorded in {the_store.root}", file=sys.stdout)
    else:
        client = Client(key, region=region, base_url=base_url, store=the_store, **kwargs)
    if resume:
        client.resume()
    return client
