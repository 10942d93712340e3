"""Hostile input and other callers' secrets (issue 8, item 14): a deeply nested body is a 400,
the data directory is owner-only, the task database holds key hashes (an old one is migrated),
and the stats never show another caller's key."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from wan_nb.emulator import FakeClock, create_app
from wan_nb.emulator.persist import account_id

from .conftest import CREATE, TASKS, body

pytestmark = pytest.mark.anyio

# letters a sha256 hex digest never contains: any trace of the key in a file or answer shows
ALICE = "sk-ALICEqwertyuiopQWERTYUIOP"
BOB = "sk-BOBzxcvbnmlkjhgZXCVBNMLKJHG"
SHORT = "sk-Tiny"  # short keys were shown whole by the old masking


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-DashScope-Async": "enable"}


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator")


def nested(depth: int) -> bytes:
    inner = "[" * depth + "]" * depth
    return json.dumps(body()).replace('"seed": 42', f'"seed": 42, "x": {inner}').encode()


@pytest.mark.parametrize("payload", [b"[" * 100_000, b"{\"a\":" * 50_000 + b"1" + b"}" * 50_000,
                                     nested(200), nested(900)],
                         ids=["unclosed 100k", "objects 50k", "200 levels", "900 levels"])
async def test_deeply_nested_bodies_are_400s(payload: bytes) -> None:
    app = create_app(api_keys=(ALICE,), render=False)
    async with client(app) as c:
        r = await c.post(CREATE, content=payload, headers=headers(ALICE))
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "InvalidParameter" and "nested" in r.json()["message"]
        r = await c.post("/_emulator/faults", content=payload, headers=headers(ALICE))
        assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
        # brackets inside strings are text, not nesting
        ok = body(prompt="[" * 500 + "{" * 500)
        r = await c.post(CREATE, json=ok, headers=headers(ALICE))
        assert r.status_code == 200, r.text
    await app.state.emulator.aclose()


def files_of(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.iterdir() if p.name.startswith("tasks.sqlite3"))


def assert_private(data_dir: Path) -> None:
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    db_files = files_of(data_dir)
    assert db_files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in db_files), \
        [(p.name, oct(p.stat().st_mode)) for p in db_files]


def assert_no_key(data_dir: Path, *keys: str) -> None:
    for p in files_of(data_dir):
        raw = p.read_bytes()
        for key in keys:
            assert key.encode() not in raw and key[3:].encode() not in raw, p.name


async def test_a_folder_the_user_named_keeps_its_mode_the_files_are_private(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "mine"  # e.g. --data-dir . : the user's own folder
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    app = create_app(api_keys=None, data_dir=data_dir, render=False, speed=0.0)
    async with client(app) as c:
        r = await c.post(CREATE, json=body(), headers=headers(ALICE))
        assert r.status_code == 200, r.text
    await app.state.emulator.aclose()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files_of(data_dir))
    assert_no_key(data_dir, ALICE)


async def test_database_is_private_and_holds_hashes(tmp_path: Path) -> None:
    data_dir = tmp_path / "emu"  # made by the emulator: owner-only
    app = create_app(api_keys=None, data_dir=data_dir, render=False, speed=0.0)
    async with client(app) as c:
        for key in (ALICE, BOB):
            r = await c.post(CREATE, json=body(), headers=headers(key))
            assert r.status_code == 200, r.text
    await app.state.emulator.aclose()
    assert_private(data_dir)
    assert_no_key(data_dir, ALICE, BOB)
    con = sqlite3.connect(data_dir / "tasks.sqlite3")
    owners = {json.loads(b)["key"] for (b,) in con.execute("SELECT body FROM tasks")}
    con.close()
    assert owners == {account_id(ALICE), account_id(BOB)}


async def test_an_old_database_with_keys_in_clear_is_migrated(tmp_path: Path) -> None:
    data_dir = tmp_path / "emu"
    app = create_app(api_keys=None, data_dir=data_dir, render=False, speed=0.0)
    async with client(app) as c:
        r = await c.post(CREATE, json=body(), headers=headers(ALICE))
        task_id = r.json()["output"]["task_id"]
    await app.state.emulator.aclose()
    # what the emulator wrote before: the key in clear, schema version 0, mode 0644
    db = data_dir / "tasks.sqlite3"
    con = sqlite3.connect(db, isolation_level=None)
    (blob,) = con.execute("SELECT body FROM tasks").fetchone()
    row = json.loads(blob)
    row["key"] = ALICE
    con.execute("UPDATE tasks SET body = ?", (json.dumps(row),))
    con.execute("PRAGMA user_version = 0")
    con.close()
    for p in [data_dir, *files_of(data_dir)]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    assert any(ALICE.encode() in p.read_bytes() for p in files_of(data_dir))

    app = create_app(api_keys=None, data_dir=data_dir, render=False, speed=0.0)
    assert_private(data_dir)
    assert_no_key(data_dir, ALICE)
    async with client(app) as c:  # the owner still finds the task; nobody else does
        r = await c.get(f"{TASKS}/{task_id}", headers=headers(ALICE))
        assert r.json()["output"]["task_status"] == "SUCCEEDED"
        r = await c.get(f"{TASKS}/{task_id}", headers=headers(BOB))
        assert r.json()["output"]["task_status"] == "UNKNOWN"
    await app.state.emulator.aclose()


async def test_stats_never_show_a_key(tmp_path: Path) -> None:
    app = create_app(api_keys=None, render=False, speed=0.0, query_rate=1,
                     clock=FakeClock(1_760_000_000.0))  # time stands still: 1/s is exact
    async with client(app) as c:
        for key in (ALICE, BOB, SHORT):
            await c.post(CREATE, json=body(), headers=headers(key))
            for _ in range(3):  # the second and third are throttled (1/s)
                await c.get(TASKS, headers=headers(key))
        r = await c.get("/_emulator/stats", headers=headers(ALICE))
    await app.state.emulator.aclose()
    text = r.text
    for key in (ALICE, BOB, SHORT):
        assert key[3:7] not in text and key[-4:] not in text, key
    stats = r.json()
    assert stats["you"] == account_id(ALICE)
    assert set(stats["creates"]["by_key"]) == {account_id(k) for k in (ALICE, BOB, SHORT)}
    assert stats["throttled"] == 6
