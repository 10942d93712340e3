"""``python -m wan_nb.emulator``: banner, a real request, clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DASHSCOPE_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "wan_nb.emulator", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    proc = run_cli("--port", "0", "--data-dir", str(tmp_path), "--speed", "0",
                   "--key", "sk-cli-test", "--fake-clock")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.match(r"wan_nb emulator listening on (http://127\.0\.0\.1:(\d+)) \(key "
                     r"sk-cli-test; export DASHSCOPE_HTTP_BASE_URL=(\S+)/api/v1\)$", line.strip())
        assert m, line
        base = m[1]
        assert m[3] == base and int(m[2]) > 0
        h = {"Authorization": "Bearer sk-cli-test"}
        r = httpx.get(f"{base}/api/v1/tasks", headers=h, timeout=30)
        assert r.status_code == 200 and r.json()["total"] == 0
        r = httpx.post(f"{base}/_emulator/clock", json={"advance": 10}, headers=h, timeout=30)
        assert r.status_code == 200
        proc.send_signal(sig)
        # a generous bound that only a hang exceeds; how fast it stops is measured by
        # benchmarks/bench_emulator.py
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def test_cli_key_persists_in_the_data_dir(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        proc = run_cli("--port", "0", "--data-dir", str(tmp_path), "--speed", "0")
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        keys.append(re.search(r"key (sk-emu-[0-9a-f]{32});", line)[1])  # type: ignore[index]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()
        proc.stderr.close()
    assert keys[0] == keys[1]
    assert (tmp_path / "api_key").read_text().strip() == keys[0]


def test_cli_refuses_non_loopback(tmp_path: Path) -> None:
    proc = run_cli("--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "loopback" in err and out == ""
