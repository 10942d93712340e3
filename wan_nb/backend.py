"""What a job manager needs from a service: the backend protocol.

:class:`~wan_nb.client.AsyncClient` (DashScope over HTTP, or the emulator) satisfies it;
another service can sit behind the same :class:`~wan_nb.jobs.Job` API by implementing these
members with the same contracts (mypy checks ``AsyncClient`` against it in
tests/test_backend_protocol.py).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from .request import GenerationRequest
from .wire import TaskPage, TaskState, TaskSummary


class DownloadedVideo(Protocol):
    """A downloaded video: where it is, its size and its sha256."""

    @property
    def path(self) -> Any: ...
    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...


class Backend(Protocol):
    """A text-to-video service as the job manager uses it."""

    @property
    def backend(self) -> str:
        """The service's stable name, stored with every run (``live:<region>``,
        ``emulator``, ``emulator:<id>``, ...): resume and de-duplication match on it."""

    closed: bool

    async def create_task(self, request: GenerationRequest | None = None, *,
                          retry_throttled: bool = True, **params: Any) -> TaskState:
        """Create a task. Raises ``ThrottledError`` when refused (nothing was created),
        ``AmbiguousCreateError`` when the request may have made a task whose answer was lost
        (never blindly resent: see :meth:`find_created_task`), ``APIError`` for a refusal."""

    async def get_task(self, task_id: str) -> TaskState:
        """The task's state now (``UNKNOWN`` once the service no longer knows it)."""

    async def list_tasks(self, *, task_id: str | None = None,
                         start_time: dt.datetime | None = None,
                         end_time: dt.datetime | None = None, model_name: str | None = None,
                         status: str | None = None, page_no: int = 1,
                         page_size: int = 10) -> TaskPage:
        """One page of the account's tasks in a window of at most 24 hours."""

    async def cancel_task(self, task_id: str) -> None:
        """Cancel a PENDING task; ``UnsupportedOperationError`` once it runs."""

    async def find_created_task(self, request: GenerationRequest, sent_at: dt.datetime, *,
                                exclude: Iterable[str] = (), window: float = 120.0,
                                others_pending: int = 0, siblings_pending: int = 0,
                                throttle: Callable[[], Awaitable[Any]] | None = None
                                ) -> TaskSummary | None:
        """The task an ambiguous create made, if it can be told apart (None: it made none
        that is listed; ``AmbiguousCreateError``: candidates cannot be told apart yet)."""

    async def download(self, url: str, path: str | os.PathLike[str], *,
                       max_attempts: int = 4) -> DownloadedVideo:
        """Stream the video at ``url`` into ``path`` atomically; ``TaskExpired`` when the
        URL has expired, ``DownloadError`` (with ``retryable``) otherwise."""

    async def aclose(self) -> None:
        """Close connections; nothing more is sent."""
