"""The toolkit's own asyncio loop on a daemon thread (DESIGN.md §3).

A task on the kernel's own loop stops whenever a cell runs blocking code; a loop on a thread of
its own keeps polling. Sync callers wait on ``run_coroutine_threadsafe`` futures, which works in
plain scripts, inside a running kernel loop and in widget callbacks, without nest_asyncio.

>>> import asyncio
>>> run(asyncio.sleep(0, result=42))
42
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Coroutine, TypeVar

from .errors import JobTimeout, WanError

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The runtime loop, started on first use (never at import)."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def _run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=_run, name="wan_nb-runtime", daemon=True)
            thread.start()
            started.wait()
            _loop, _thread = loop, thread
        return _loop


def in_runtime_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
    """Schedule ``coro`` on the runtime loop; returns a thread-safe future."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the runtime loop and wait for its result from a sync caller.

    Ctrl-C (KeyboardInterrupt) stops the wait and cancels the coroutine. Calling this from the
    runtime thread itself would deadlock, so it raises instead.
    """
    if in_runtime_thread():
        coro.close()
        raise WanError("a blocking wan_nb call was made from the toolkit's own loop thread "
                       "(for example in a job callback); use the async API there")
    fut = submit(coro)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        # wait in short slices so that KeyboardInterrupt is delivered promptly on all platforms
        while not fut.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                fut.cancel()
                raise JobTimeout(f"no result within {timeout} s")
            concurrent.futures.wait([fut], timeout=0.2 if left is None else min(0.2, left))
    except KeyboardInterrupt:
        fut.cancel()
        raise
    return fut.result()
