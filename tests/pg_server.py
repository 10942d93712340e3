"""A real PostgreSQL for the tests: Debian's server binaries, a throw-away cluster made with
initdb in a temporary folder, listening only on 127.0.0.1 on a free port, run as the
``postgres`` user when the tests run as root (PostgreSQL refuses root), stopped by its PID.

Without the binaries (``apt-get install postgresql``; scripts/test.sh installs them) the
tests that need it skip saying so, and fail when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "wan"


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, pg_ctl and postgres."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").is_file() and (d / "postgres").is_file()]
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
               default=None)


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI (where the server must run)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is needed in CI: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One cluster; :meth:`new_database` gives each test its own database URL."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.password = "pw-" + secrets.token_hex(8)
        self.port = 0
        self.pid: int | None = None
        # not pytest's tmp_path: its parents are private to root, and the server runs as
        # the postgres user, who must own the folder and reach it
        self.dir = Path(tempfile.mkdtemp(prefix="wan_nb-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and there is no 'postgres' user to run it as")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._counter = 0

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir)

    def start(self) -> PgServer:
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as:
            shutil.chown(pwfile, "postgres")
        done = self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER,
                         "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                         "--locale=C.UTF-8", "--no-sync")
        pwfile.unlink()
        if done.returncode != 0:
            unavailable(f"initdb failed: {done.stderr.strip()[-500:]}")
        for _attempt in range(5):
            self.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=200")
            done = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                             str(self.dir / "log"), "-o", options, "-w", "-t", "60", "start")
            if done.returncode == 0:
                break
        else:
            log = (self.dir / "log").read_text(errors="replace")[-1500:]
            unavailable(f"pg_ctl start failed: {done.stderr.strip()[-500:]}\n{log}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, then make sure that PID is gone (SIGKILL as a last
        resort, only to the postmaster this fixture started)."""
        if self.pid is not None:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                      "-w", "-t", "30", "stop", timeout=60)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.1)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running_server() -> Iterator[PgServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable("Debian's postgresql package is not installed (/usr/lib/postgresql/*/bin); "
                    "apt-get install postgresql")
    assert bin_dir is not None
    try:
        import psycopg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        unavailable(f"{exc.name} is not installed: pip install -e '.[team]'")
    server = PgServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()
