"""Shared fixtures: the real emulator in-process, and recording transports."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import io
import wave
from collections.abc import Callable, Iterator

import httpx
import pytest

import wan_nb
from wan_nb.emulator.server import EmbeddedEmulator

class Recorder:
    """An ``httpx.MockTransport`` handler that answers from a script and records requests."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer(request) if callable(answer) else answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.content]


def json_response(status: int, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def recorder() -> type[Recorder]:
    return Recorder


@pytest.fixture
def make_emulator(tmp_path):
    started: list[EmbeddedEmulator] = []

    def make(**kw) -> EmbeddedEmulator:
        emu = EmbeddedEmulator(data_dir=tmp_path / f"emu{len(started)}", **kw).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def make_client(tmp_path, make_emulator):
    clients: list[wan_nb.Client] = []

    def make(emu: EmbeddedEmulator | None = None, *, store=None, policy=None, **emu_kw):
        emu = emu or make_emulator(**emu_kw)
        c = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="emulator",
                          store=store if store is not None else tmp_path / "store", policy=policy)
        c.emulator = emu
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def wav_file(tmp_path):
    path = tmp_path / "voice.wav"
    path.write_bytes(wav_bytes())
    return path


def wav_bytes(seconds: float = 4.0, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV of ``seconds``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(rate * seconds))
    return buf.getvalue()


CLI_KEY = "sk-resume-test-0123456789"


@contextlib.contextmanager
def run_cli_emulator(data_dir, *, key: str, speed: str = "2.5") -> Iterator[str]:
    """``python -m wan_nb.emulator`` on a free loopback port, in its own process; yields its
    base URL and stops it by its own PID."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wan_nb.emulator", "--port", "0", "--key", key,
         "--data-dir", str(data_dir), "--speed", speed],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        banner = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in banner, banner + proc.stderr.read()
        yield banner.split("listening on ")[1].split()[0]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def cli_emulator(tmp_path):
    """The emulator CLI (like the real service: it outlives the processes of a test), with
    key ``CLI_KEY``. Yields its base URL."""
    with run_cli_emulator(tmp_path / "emu", key=CLI_KEY) as url:
        yield url


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL on 127.0.0.1 for the whole run (tests/pg_server.py); skipped
    without the server locally, failed in CI."""
    from tests.pg_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server):
    """The URL of a fresh, empty database of :func:`pg_server`."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_kind(request):
    """Run a ledger contract test against both ledgers: SQLite and PostgreSQL."""
    return request.param


@pytest.fixture
def make_ledger(request, ledger_kind, tmp_path):
    """``make_ledger(**kw)``: a ledger of ``ledger_kind`` (a SQLite folder in tmp_path, or a
    fresh PostgreSQL database with its videos in tmp_path), closed after the test."""
    from wan_nb.store import Store

    made = []
    location = (str(tmp_path / "runs") if ledger_kind == "sqlite"
                else request.getfixturevalue("pg_url"))

    def make(**kw):
        if ledger_kind == "sqlite":
            ledger = Store(location, **kw)
        else:
            from wan_nb.store_pg import PgLedger

            ledger = PgLedger(location, root=tmp_path / "runs", **kw)
        made.append(ledger)
        return ledger

    make.location = location
    yield make
    for ledger in made:
        ledger.close()
