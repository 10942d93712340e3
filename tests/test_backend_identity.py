"""A backend is named by what it is, not by how its URL is spelled (issue 8, item 10): the live
service by region, an emulator by its own instance id, any other server by its host."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import wan_nb
from wan_nb.client import AsyncClient, Client, Config
from wan_nb.emulator import create_app
from wan_nb.experiment import Experiment

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-identity-test-0123456789"

LABELS = [  # base URL → (region, backend)
    ("https://dashscope-intl.aliyuncs.com/api/v1", "singapore", "live:singapore"),
    ("https://DashScope.AliyunCS.com/", "beijing", "live:beijing"),
    ("http://dashscope-us.aliyuncs.com:443", "virginia", "live:virginia"),
    ("https://ws-8f2a.ap-southeast-1.maas.aliyuncs.com/api/v1", "singapore", "live:singapore"),
    ("https://ws-8f2a.cn-beijing.maas.aliyuncs.com", "beijing", "live:beijing"),
    ("https://ws-8f2a.us-east-1.maas.aliyuncs.com", "virginia", "live:virginia"),
    ("https://ws-8f2a.eu-central-1.maas.aliyuncs.com", None, "live:eu-central-1"),
    # any other server keeps the name earlier versions gave it (host, port and path):
    # two forwarders on one host, or a gateway routing paths to two accounts, stay apart
    ("http://127.0.0.1:8765/api/v1/", None, "custom:127.0.0.1:8765"),
    ("http://LocalHost:9999", None, "custom:LocalHost:9999"),
    ("https://gateway.example.com:8443/dashscope", None,
     "custom:gateway.example.com:8443/dashscope"),
]


@pytest.mark.parametrize("url,region,label", LABELS, ids=[u for u, *_ in LABELS])
def test_labels_without_asking(url: str, region: str | None, label: str) -> None:
    cfg = Config.resolve(KEY, base_url=url, env={})
    assert (cfg.region, cfg.backend) == (region, label)
    assert cfg.ask_identity == label.startswith("custom:")
    named = Config.resolve(KEY, base_url=url, backend="mine", env={})
    assert (named.backend, named.ask_identity) == ("mine", False)


class _NotAnEmulator(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def plain_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAnEmulator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _NotAnEmulator.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_server_that_is_not_an_emulator_is_named_by_host(plain_server: str) -> None:
    client = Client(KEY, base_url=plain_server + "/api/v1")
    try:
        assert client.backend == "custom:" + plain_server.split("//")[1]
        assert len(_NotAnEmulator.seen) == 1  # asked once, without the key
        assert "authorization" not in _NotAnEmulator.seen[0]
    finally:
        client.close()


def test_an_emulator_in_process_names_itself(tmp_path: Path) -> None:
    app = create_app(api_keys=(KEY,), data_dir=tmp_path / "emu", render=False)
    ident = app.state.emulator.instance_id
    for url in ("http://127.0.0.1:1", "http://localhost:2/api/v1"):
        client = Client(KEY, base_url=url, transport=httpx.ASGITransport(app=app))
        try:
            assert client.backend == f"emulator:{ident}"
        finally:
            client.close()
    # the bare async client never blocks to ask (it keeps no store); it can be asked to
    aio = AsyncClient(KEY, base_url="http://127.0.0.1:1")
    assert aio.backend == "custom:127.0.0.1:1"
    asked = asyncio.run(aio.config.identify(httpx.ASGITransport(app=app)))
    assert asked.backend == f"emulator:{ident}" and asked.api_key is aio.config.api_key


# -- the CLI emulator restarted on another port, reached by another name ---------------------
class Cli:
    def __init__(self, data_dir: Path):
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                    "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wan_nb.emulator", "--port", "0", "--key", KEY,
             "--data-dir", str(data_dir), "--speed", "0"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in banner, banner
        self.port = int(banner.split("listening on http://127.0.0.1:")[1].split()[0])

    def creates(self) -> int:
        r = httpx.get(f"http://127.0.0.1:{self.port}/_emulator/stats",
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        return r.json()["creates"]["accepted"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def sweep(url: str, store: Path) -> tuple[str, int]:
    """Run the same Experiment cell; (backend, new runs it had to pay for)."""
    client = wan_nb.connect(KEY, base_url=url, store=store, quiet=True)
    try:
        exp = Experiment("identity", base={"model": "wan2.5-t2v-preview", "size": "624*624",
                                           "duration": 5}, client=client)
        exp.grid(prompt=["a paper boat at dawn", "a red kite over dunes"], seed=[1, 2])
        new = exp.estimate()["new_runs"]
        exp.run()
        jobs = exp.wait(timeout=240, progress=False)
        assert all(j.ok for j in jobs), [j.error for j in jobs]
        return client.backend, new
    finally:
        client.close()


def test_restarted_on_another_port_and_reached_as_localhost_pays_nothing(tmp_path: Path) -> None:
    data_dir, store = tmp_path / "emu", tmp_path / "store"
    first = Cli(data_dir)
    try:
        backend, new = sweep(f"http://127.0.0.1:{first.port}/api/v1", store)
        assert backend.startswith("emulator:") and new == 4 and first.creates() == 4
        assert sweep(f"http://localhost:{first.port}/api/v1", store) == (backend, 0)
        assert first.creates() == 4
    finally:
        first.stop()
    with socket.socket() as old_port:  # held, so that the restart gets another port
        old_port.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        old_port.bind(("127.0.0.1", first.port))
        second = Cli(data_dir)
    try:
        assert second.port != first.port
        assert sweep(f"http://127.0.0.1:{second.port}", store) == (backend, 0)
        assert sweep(f"http://localhost:{second.port}/api/v1", store) == (backend, 0)
        assert second.creates() == 0  # nothing paid again
    finally:
        second.stop()


def test_runs_filed_under_the_urls_name_join_the_emulator_once_it_answers(tmp_path: Path
                                                                          ) -> None:
    """Runs recorded under ``custom:<host:port>`` (by wan_nb 0.1, or while the emulator did
    not answer) are renamed when the emulator says who it is: matched, not paid again."""
    from wan_nb import Experiment, Store

    app = create_app(api_keys=(KEY,), data_dir=tmp_path / "emu", render=False)
    store = Store(tmp_path / "store")
    from wan_nb.request import GenerationRequest

    req = GenerationRequest("old", model="wan2.5-t2v-preview", size="832*480", seed=1)
    store.insert_run(model=req.model, prompt=req.prompt, size=req.size, width=req.width,
                     height=req.height, duration=req.duration, seed=req.seed,
                     fingerprint=req.fingerprint, request_json=req.stored_json(),
                     status="FAILED", backend="custom:127.0.0.1:8765", experiment="old")
    client = Client(KEY, base_url="http://127.0.0.1:8765/api/v1",
                    transport=httpx.ASGITransport(app=app), store=store)
    try:
        assert client.backend.startswith("emulator:")
        assert [r["backend"] for r in client.store.runs()] == [client.backend]
        assert len(Experiment("old", client=client).resume()) == 1
    finally:
        client.close()
