"""The API key never shows in a verbose traceback, every repr works on a half-built object, and
a bad configuration raises before anything is written (issue 8, items 6 and 13).

Each failure path is driven through the public calls with bad arguments; the traceback is
rendered the two ways a user sees it with locals: IPython's VerboseTB (``%xmode Verbose``) and
``traceback.TracebackException(..., capture_locals=True)``.
"""

from __future__ import annotations

import os
import socket
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

import wan_nb
from wan_nb.client import AsyncClient, Client, Config, Secret
from wan_nb.errors import ValidationError, WanError

# Letters that a hex digest or a masked repr never contain, so that any leak is unambiguous.
SECRET_PART = "QXZWVJKQXZWVJKqxzwvjk0123"
KEY = "sk-" + SECRET_PART
PACKAGE = str(Path(wan_nb.__file__).parent)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame inside wan_nb (the test's own frames are not ours:
    they hold the key as a literal)."""
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(PACKAGE):
        tb = tb.tb_next
    return tb


def render(e: BaseException) -> list[str]:
    """The traceback as %xmode Verbose and as capture_locals show it; raises if either crashes."""
    from IPython.core.ultratb import VerboseTB

    tb = ours(e.__traceback__)
    assert tb is not None, "the error was raised outside wan_nb"
    plain = "".join(traceback.TracebackException(type(e), e, tb, capture_locals=True).format())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        verbose = VerboseTB(theme_name="nocolor").text(type(e), e, tb)
    reprs = []
    while tb is not None:  # every local of every frame of ours, as any debugger shows it
        reprs += [f"{k}={v!r}" for k, v in tb.tb_frame.f_locals.items()]
        tb = tb.tb_next
    return [plain, verbose, "\n".join(reprs)]


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder, no key and no store or base URL in the environment."""
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "WAN_NB_STORE"):
        monkeypatch.delenv(name, raising=False)
    return d


def a_file(tmp_path: Path) -> str:
    path = tmp_path / "not_a_folder.txt"
    path.write_text("x")
    return str(path)


# (id, environment, call, error type, field of a ValidationError or None)
Case = tuple[str, dict[str, str], Callable[[Path], Any], type[Exception], str | None]
CASES: list[Case] = [
    ("env base_url without scheme",
     {"DASHSCOPE_API_KEY": KEY, "DASHSCOPE_HTTP_BASE_URL": "dashscope-intl.aliyuncs.com/api/v1"},
     lambda p: wan_nb.connect(), ValidationError, "base_url"),
    ("env key, mistyped region", {"DASHSCOPE_API_KEY": KEY},
     lambda p: wan_nb.connect(region="singapour"), ValidationError, "region"),
    ("key argument, mistyped region", {},
     lambda p: wan_nb.connect(api_key=KEY, region="singapour"), ValidationError, "region"),
    ("key argument, base_url without scheme", {},
     lambda p: wan_nb.connect(KEY, base_url="dashscope-intl.aliyuncs.com"), ValidationError,
     "base_url"),
    ("unparseable base_url", {"DASHSCOPE_API_KEY": KEY},
     lambda p: wan_nb.connect(base_url="http://[::1"), ValidationError, "base_url"),
    ("store of the wrong type", {"DASHSCOPE_API_KEY": KEY},
     lambda p: wan_nb.connect(store=42), ValidationError, "store"),
    ("empty store path", {}, lambda p: wan_nb.connect(KEY, store=""), ValidationError, "store"),
    ("store is a file", {"DASHSCOPE_API_KEY": KEY},
     lambda p: wan_nb.connect(store=a_file(p)), ValidationError, "store"),
    ("unknown keyword", {}, lambda p: wan_nb.connect(KEY, timout=3), ValidationError, "timout"),
    ("emulator with a bad speed", {"DASHSCOPE_API_KEY": KEY},
     lambda p: wan_nb.connect(emulator=True, speed="warp"), ValidationError, "speed"),
    ("Client, unknown region", {}, lambda p: Client(KEY, region="mars"), ValidationError,
     "region"),
    ("Client, bad base_url", {}, lambda p: Client(KEY, base_url="ftp://x"), ValidationError,
     "base_url"),
    ("Client, env key, bad env base_url", {"DASHSCOPE_API_KEY": KEY,
                                          "DASHSCOPE_HTTP_BASE_URL": "localhost:8765"},
     lambda p: Client(), ValidationError, "base_url"),
    ("AsyncClient, unknown region", {}, lambda p: AsyncClient(KEY, region="mars"),
     ValidationError, "region"),
    ("AsyncClient, env key, bad base_url", {"DASHSCOPE_API_KEY": KEY},
     lambda p: AsyncClient(base_url="nope"), ValidationError, "base_url"),
    ("Config.resolve, unknown region", {}, lambda p: Config.resolve(KEY, region="mars"),
     ValidationError, "region"),
    ("a key that is not a string", {}, lambda p: Client(api_key=12345), ValidationError,
     "api_key"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_no_key_in_verbose_tracebacks_and_nothing_written(case: Case, cwd: Path,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _, env, call, error, field = case
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(error) as info:
        call(tmp_path)
    if field is not None:
        assert info.value.fields == [field]  # type: ignore[attr-defined]
    for text in render(info.value):
        assert SECRET_PART not in text
        assert "Exception trying to inspect frame" not in text
    assert os.listdir(cwd) == []  # no ./wan_runs, nothing else


def test_reprs_work_at_every_stage() -> None:
    """A half-built object (its __init__ raised) is printed by a verbose traceback."""
    assert repr(Client.__new__(Client)) == "Client(<not configured>)"
    assert repr(AsyncClient.__new__(AsyncClient)) == "AsyncClient(<not configured>)"
    assert repr(Secret.__new__(Secret)) == "Secret('')"
    half = Client.__new__(Client)
    half.aio = AsyncClient.__new__(AsyncClient)
    assert repr(half) == "Client(<not configured>)"
    built = Client(KEY)
    assert SECRET_PART not in repr(built) and "sk-***" in repr(built)
    assert repr(Secret(Secret(KEY))) == "Secret('sk-***')" and Secret(Secret(KEY)).reveal() == KEY


def test_key_from_the_environment_is_wrapped_in_every_frame(cwd: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """The environment mapping itself (which holds the key) is never a local of ours."""
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    with pytest.raises(WanError) as info:
        Config.resolve(region="mars")
    tb = ours(info.value.__traceback__)
    while tb is not None:
        for name, value in tb.tb_frame.f_locals.items():
            assert value is not os.environ, name
            assert not (isinstance(value, str) and SECRET_PART in value), name
        tb = tb.tb_next


def test_a_valid_configuration_still_connects_without_touching_the_disk(cwd: Path) -> None:
    client = wan_nb.connect(KEY, region="beijing", resume=False)
    try:
        assert client.backend == "live:beijing" and client.aio.config.api_key.reveal() == KEY
        assert os.listdir(cwd) == []  # the store is made by the first job or resume()
    finally:
        client.close()
