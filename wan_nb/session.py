"""The notebook session (what :func:`wan_nb.connect` returns): one backend, one ledger, and
the background jobs between them.

A :class:`Session` owns

- the backend: an :class:`~wan_nb.client.AsyncClient` (HTTP to DashScope or an emulator), whose
  endpoints it also offers synchronously (``create_task``, ``get_task``, ...);
- the store (the run ledger, ``./wan_runs`` unless told otherwise);
- a job manager (:class:`~wan_nb.poller.JobManager`), shared with every other session of
  this process on the same store and backend, so a Studio and the cells around it see the same
  jobs, and one poller paces them all. The manager stops when its last session closes.

Everything users call is typed here: ``submit`` → :class:`~wan_nb.jobs.Job`, ``jobs`` →
:class:`~wan_nb.jobs.JobList`, ``store`` → :class:`~wan_nb.store.Store`, ``to_dataframe``
→ a pandas DataFrame. ``Client`` is the same class under its earlier name.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import runtime
from .client import (AsyncClient, Config, DownloadResult, Secret, as_request)
from .errors import ValidationError, WanError
from .request import GenerationRequest
from .schedule import RunBand
from .wire import TaskPage, TaskState

if TYPE_CHECKING:
    import pandas as pd

    from .jobs import Job, JobList
    from .poller import JobManager
    from .schedule import PollPolicy
    from .store import Store

log = logging.getLogger("wan_nb.session")


class Session:
    """A notebook session: the backend's endpoints, background jobs recorded in a store.

    The endpoint calls run on the toolkit's loop thread, so they work in scripts, inside a
    running notebook kernel and in widget callbacks.

    >>> s = wan_nb.connect()                                      # doctest: +SKIP
    >>> job = s.submit("a red kite over dunes", size="832*480")   # returns at once
    >>> job.result().video                                        # doctest: +SKIP
    '/home/me/wan_runs/videos/20261123-...mp4'
    """

    def __init__(self, api_key: str | Secret | None = None, *, region: str | None = None,
                 base_url: str | None = None, async_client: AsyncClient | None = None,
                 store: Store | str | os.PathLike[str] | None = None,
                 policy: PollPolicy | None = None, videos: str | None = None,
                 video_options: Mapping[str, Any] | None = None, **kwargs: Any):
        api_key = None if api_key is None else Secret(api_key)  # first: see Secret
        #: where downloaded videos go: None for the store's folder, else object storage
        #: (``videos="s3://bucket/prefix"``; wan_nb.video_objects)
        self.videos = _video_target(videos, video_options)
        from .store_url import check_store_arg

        check_store_arg(store)  # a store URL wan_nb cannot use is refused before anything
        self.aio = async_client or AsyncClient(api_key, region=region, base_url=base_url,
                                               **kwargs)
        self.emulator: Any = None  # the embedded emulator, when connect() started one
        self._store_arg = store
        self._store: Store | None = None
        self._policy = policy
        self._manager: JobManager | None = None
        self._closed = False
        self._added: list[Callable[[Job], Any]] = []  # job-added callbacks, for close()
        if self.aio.config.ask_identity:
            # asked once, here: the job manager and experiments read the backend as built
            self.aio.config = runtime.run(self.aio.config.identify(
                self.aio._transport, timeout=min(10.0, self.aio.timeout)))

    def __repr__(self) -> str:
        config = getattr(getattr(self, "aio", None), "config", None)  # may be half-built
        if not isinstance(config, Config):
            return f"{type(self).__name__}(<not configured>)"
        return (f"{type(self).__name__}(base_url={config.base_url!r}, "
                f"backend={config.backend!r}, api_key={config.api_key!r})")

    @property
    def backend(self) -> str:
        """Which service this session talks to: ``live:<region>``, ``emulator``, ..."""
        return self.aio.backend

    @property
    def base_url(self) -> str:
        return self.aio.base_url

    # -- the endpoints, synchronously --------------------------------------------------------
    def create_task(self, request: GenerationRequest | None = None,
                    **params: Any) -> TaskState:
        return runtime.run(self.aio.create_task(as_request(request, params)))

    def get_task(self, task_id: str) -> TaskState:
        return runtime.run(self.aio.get_task(task_id))

    def list_tasks(self, **filters: Any) -> TaskPage:
        return runtime.run(self.aio.list_tasks(**filters))

    def cancel_task(self, task_id: str) -> None:
        return runtime.run(self.aio.cancel_task(task_id))

    def download(self, url: str, path: str | os.PathLike[str]) -> DownloadResult:
        return runtime.run(self.aio.download(url, path))

    # -- the ledger --------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The run ledger (``./wan_runs`` beside the notebook unless told otherwise)."""
        if self._store is None:
            from .ledgers import open_ledger

            store = open_ledger(self._store_arg)  # a folder (SQLite) or postgresql:// URL
            legacy = self.aio.config.legacy_backend
            if legacy and legacy != self.backend and not store.read_only:
                # runs an earlier version (or an unanswered question) filed under the URL's
                # spelling belong to the service that has now said who it is
                store.rename_backend(legacy, self.backend)
            self._store = store
        return self._store

    def to_dataframe(self, **filters: Any) -> pd.DataFrame:
        """The store's runs as a pandas DataFrame (one row per run, typed columns)."""
        return self.store.to_dataframe(**filters)

    # -- background jobs ---------------------------------------------------------------------
    @property
    def manager(self) -> JobManager:
        """The job manager this session shares with the others on its store and backend."""
        if self._manager is None:
            self._check_open()
            self._manager = _managers.acquire(self)
        return self._manager

    def submit(self, request: GenerationRequest | str | None = None, *,
               experiment: str | None = None, variant: str | None = None,
               tags: Iterable[str] = (), dedupe: bool = False,
               reuse_unless: Iterable[str] = (), always_reuse_codes: Iterable[str] = (),
               **params: Any) -> Job:
        """Validate, record and queue a generation; returns a :class:`~wan_nb.jobs.Job` at
        once. The task is created as soon as the model's submission rate allows, polled in
        the background, and its video downloaded into the store.

        With ``dedupe=True`` a run of the same experiment and request already recorded on
        this backend is re-attached instead of paid again (unless its status is in
        ``reuse_unless`` and its error code not in ``always_reuse_codes``); the look-up and
        the insert are one step in the store, so kernels racing on one cell create it once."""
        req = as_request(request, params)
        self._check_open()
        self.aio.require_key()
        return self.manager.submit(req, experiment=experiment, variant=variant, tags=tags,
                                   dedupe=dedupe, reuse_unless=reuse_unless,
                                   always_reuse_codes=always_reuse_codes)

    def expected_run_seconds(self, request: GenerationRequest) -> float:
        """How long the service is expected to run ``request`` (the median of finished runs
        of this backend, model, size and duration; scaled from other sizes; a default)."""
        r = request
        return self.manager.schedule.expected_run(r.model, r.size or "", int(r.duration or 0))

    def expected_run_band(self, request: GenerationRequest) -> RunBand:
        """The p50-p90 band of the run time of ``request`` (see :meth:`expected_run_seconds`):
        what the form's estimate and the tracker's time left show."""
        r = request
        return self.manager.schedule.run_band(r.model, r.size or "", int(r.duration or 0))

    def generate(self, request: GenerationRequest | str | None = None, *,
                 timeout: float | None = None, **params: Any) -> Job:
        """:meth:`submit` and wait for the result (Ctrl-C stops the wait, not the task)."""
        return self.submit(request, **params).result(timeout=timeout)

    def resume(self) -> JobList:
        """Re-attach to the unfinished runs of this backend in the store (after a restart)."""
        self._check_open()
        return self.manager.resume()

    def attach(self, run_id: str) -> Job:
        """The job of a recorded run (looked after again if it is unfinished)."""
        self._check_open()
        return self.manager.attach(run_id)

    @property
    def jobs(self) -> JobList:
        """Every job this session's manager looks after, oldest first."""
        from .jobs import JobList

        if self._manager is None and self._closed:
            return JobList()
        return JobList(self.manager.jobs.values())

    def on_job_added(self, callback: Callable[[Job], Any]) -> Callable[[], None]:
        """Call ``callback(job)`` (on the toolkit's thread) whenever a job is added to this
        session's manager: submitted here or by another session on the same store and
        backend, resumed, or followed. Returns a function that unsubscribes."""
        self.manager.on_job_added(callback)  # the manager starts now, if it had not
        self._added.append(callback)

        def unsubscribe() -> None:
            if callback in self._added:
                self._added.remove(callback)
            if self._manager is not None:
                self._manager.off_job_added(callback)

        return unsubscribe

    # -- lifetime ----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed or self.aio.closed

    def _check_open(self) -> None:
        if self.closed:
            raise WanError("this client is closed: it takes no more work; call "
                           "wan_nb.connect() again (recorded runs resume there)")

    def close(self, timeout: float = 10.0) -> None:
        """Stop this session: it takes no more work. When it is the last on its store and
        backend, background work stops too (jobs stay recorded and resume on the next
        connect) and the connection pool closes. Returns within about ``timeout`` seconds
        whatever a background step is doing."""
        if self._closed:
            return
        self._closed = True
        manager, self._manager = self._manager, None
        if manager is not None:
            for callback in self._added:
                manager.off_job_added(callback)
            _managers.release(self, manager, timeout)
        if not _managers.uses(self.aio):
            self.aio.closed = True
            try:
                runtime.run(self.aio.aclose(), timeout=timeout)
            except WanError:
                pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Client(Session):
    """A :class:`Session` under the name it had before sessions had a module of their own;
    :func:`wan_nb.connect` returns one, so ``isinstance(s, wan_nb.Client)`` keeps working."""


def _video_target(videos: str | None, options: Mapping[str, Any] | None) -> Any:
    """``videos=``/``video_options=`` checked (before anything is made) and registered."""
    if videos is None:
        if options is not None:
            raise ValidationError([("video_options", "video_options= configures videos= "
                                                     "(object storage); give both")])
        return None
    from .video_objects import ObjectVideos, register

    return register(ObjectVideos(videos, options))


class _Managers:
    """One job manager per (store, backend) in a process, shared by every session on it; it
    stops when its last session closes. A session that asks for another poll policy gets a
    manager of its own (as another kernel would)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, ...], list[tuple[JobManager, set[int]]]] = {}

    @staticmethod
    def _key(session: Session) -> tuple[str, ...]:
        # the repr tells two ledgers apart that share a video folder (a database URL)
        return (str(session.store.root.resolve()), repr(session.store), session.backend,
                session.base_url)

    def acquire(self, session: Session) -> JobManager:
        from .poller import JobManager

        key = self._key(session)
        with self._lock:
            for manager, holders in self._by_key.get(key, []):
                if not manager.closed and manager.videos == session.videos and (
                        session._policy is None or session._policy == manager.policy):
                    holders.add(id(session))
                    return manager
            manager = JobManager(session.aio, session.store, policy=session._policy)
            manager.videos = session.videos
            self._by_key.setdefault(key, []).append((manager, {id(session)}))
            return manager

    def release(self, session: Session, manager: JobManager, timeout: float) -> None:
        last = False
        with self._lock:
            for key, entries in list(self._by_key.items()):
                for entry in entries:
                    if entry[0] is manager:
                        entry[1].discard(id(session))
                        if not entry[1]:
                            entries.remove(entry)
                            last = True
                        break
                if not entries:
                    del self._by_key[key]
        if last:
            manager.close(timeout=timeout)
            if manager.aio is not session.aio:  # the session that made it closed earlier
                manager.aio.closed = True
                try:
                    runtime.run(manager.aio.aclose(), timeout=timeout)
                except WanError:
                    pass

    def uses(self, aio: AsyncClient) -> bool:
        """Whether a running manager still talks through ``aio``."""
        with self._lock:
            return any(m.aio is aio for entries in self._by_key.values() for m, _ in entries)


_managers = _Managers()
