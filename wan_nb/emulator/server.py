"""The emulator on a real loopback port: uvicorn in a daemon thread with its own event loop.

>>> emu = start_embedded(data_dir="/tmp/wan_nb_doctest_emu")     # doctest: +SKIP
>>> emu.base_url, emu.api_base                                   # doctest: +SKIP
('http://127.0.0.1:41234', 'http://127.0.0.1:41234/api/v1')

``start_embedded`` is what :func:`wan_nb.connect` uses when no API key is configured: one
emulator per process and data directory, reused by later calls, stopped at interpreter exit.
Its API key is ``sk-emu-<hex>``, stored in the data directory so that a restarted kernel (a new
process) gets the same key and finds its earlier tasks.
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from .app import create_app
from .engine import Engine, Speed
from .persist import private_dir, read_or_create_key

ENV_DIR = "WAN_NB_EMULATOR_DIR"
DEFAULT_DIR = Path("wan_runs") / ".emulator"

log = logging.getLogger("wan_nb.emulator")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_data_dir() -> Path:
    """``$WAN_NB_EMULATOR_DIR``, else ``./wan_runs/.emulator`` (beside the notebook)."""
    return Path(os.environ.get(ENV_DIR) or DEFAULT_DIR)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every answer waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class EmbeddedEmulator:
    """An emulator serving on ``host:port`` (port 0: a free one) from a daemon thread.

    ``api_key``: the key to accept (default: the one stored in ``data_dir``, created on first
    use). Other keyword arguments go to :func:`~wan_nb.emulator.app.create_app`. Binding a
    non-loopback host needs ``allow_remote=True``.
    """

    def __init__(self, *, data_dir: str | Path, api_key: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, speed: Speed = "fast",
                 allow_remote: bool = False, log_level: str = "warning", **app_kw: Any):
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to serve on {host!r}: the emulator binds loopback "
                             "addresses only unless allow_remote=True")
        self.data_dir = private_dir(Path(data_dir).expanduser().resolve())
        self.api_key = read_or_create_key(self.data_dir, api_key)
        app_kw.setdefault("api_keys", (self.api_key,))
        self.app = create_app(data_dir=self.data_dir, speed=speed, **app_kw)
        self.host, self._want_port = host, int(port)
        self.port = 0
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- what clients need ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``DASHSCOPE_HTTP_BASE_URL`` / ``dashscope.base_http_api_url`` should be."""
        return self.base_url + "/api/v1"

    @property
    def instance_id(self) -> str:
        """Who this emulator is (stable for its data directory; see ``X-Wan-Emulator-Id``)."""
        return self.app.state.emulator.instance_id

    @property
    def engine(self) -> Engine:
        return self.app.state.engine

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive() and self._server
                    and self._server.started and not self._server.should_exit)

    def __repr__(self) -> str:
        key = self.api_key[:7] + "***"
        state = "running" if self.running else "stopped"
        return f"<EmbeddedEmulator {self.base_url} key={key} {state} data_dir={self.data_dir}>"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> "EmbeddedEmulator":
        if self.running:
            return self
        sock = _bind(self.host, self._want_port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self._log_level, access_log=False,
                                lifespan="on", proxy_headers=False, server_header=False,
                                http="h11", ws="none", timeout_graceful_shutdown=3)
        self._server = server = uvicorn.Server(config)
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(server, sock), daemon=True,
                                        name=f"wan_nb-emulator:{self.port}")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            self.stop()
            raise RuntimeError(f"the emulator did not start within {timeout} s"
                               + (f": {self._error!r}" if self._error else ""))
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            # serve() installs no signal handlers off the main thread (uvicorn >= 0.29)
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as e:  # SystemExit from a failed startup included
            self._error = e
            log.error("emulator server stopped: %r", e)
        finally:
            sock.close()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (renders in progress are cancelled and redone on the next start)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)

    def __enter__(self) -> "EmbeddedEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_instances: dict[Path, EmbeddedEmulator] = {}
_lock = threading.Lock()


def start_embedded(data_dir: str | Path | None = None, speed: Speed = "fast",
                   **kw: Any) -> EmbeddedEmulator:
    """The process's emulator for ``data_dir`` (default :func:`default_data_dir`), started if
    needed. A running one is returned as is (its settings win over ``speed`` and ``kw``)."""
    d = Path(data_dir or default_data_dir()).expanduser().resolve()
    with _lock:
        emu = _instances.get(d)
        if emu is not None and emu.running:
            return emu
        emu = EmbeddedEmulator(data_dir=d, speed=speed, **kw).start()
        _instances[d] = emu
        return emu


def stop_all() -> None:
    """Stop every emulator started by :func:`start_embedded` (also run at exit)."""
    with _lock:
        emus = list(_instances.values())
        _instances.clear()
    for emu in emus:
        emu.stop()


atexit.register(stop_all)
