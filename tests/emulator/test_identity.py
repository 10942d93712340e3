"""The emulator says who it is: a stable instance id per data directory, on every answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from wan_nb.emulator import create_app

from .conftest import AUTH, CREATE, HEADERS, KEY, TASKS, body

HEADER = "x-wan-emulator-id"
pytestmark = pytest.mark.anyio


async def answers(app: Any) -> list[httpx.Response]:
    """One answer of each kind: API success and errors, admin, files, unknown paths."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://emulator") as c:
        return [
            await c.get("/"),
            await c.post(CREATE, json=body(), headers=HEADERS),
            await c.post(CREATE, content=b"{", headers=HEADERS),  # 400
            await c.get(f"{TASKS}/nope", headers=AUTH),
            await c.get(TASKS),  # 401
            await c.get("/api/v1/unknown", headers=AUTH),  # 400 url error
            await c.get("/_emulator/stats", headers=AUTH),
            await c.get("/_files/x.mp4?Expires=1&Signature=x"),  # 403 XML
            await c.get("/no/such/path"),  # Starlette's 404
            await c.delete("/"),  # 405
        ]


async def test_every_answer_names_the_instance(tmp_path: Path) -> None:
    app = create_app(api_keys=(KEY,), data_dir=tmp_path / "d", render=False)
    ident = app.state.emulator.instance_id
    assert len(ident) == 16 and int(ident, 16) >= 0
    got = await answers(app)
    assert {r.status_code for r in got} >= {200, 400, 401, 403, 404, 405}
    assert [r.headers.get(HEADER) for r in got] == [ident] * len(got)
    assert got[0].json()["instance_id"] == ident
    assert got[6].json()["instance_id"] == ident
    await app.state.emulator.aclose()


async def test_the_id_belongs_to_the_data_directory(tmp_path: Path) -> None:
    ids = []
    for d in ("a", "a", "b"):
        app = create_app(api_keys=(KEY,), data_dir=tmp_path / d, render=False)
        ids.append(app.state.emulator.instance_id)
        await app.state.emulator.aclose()
    assert ids[0] == ids[1] != ids[2]
    assert (tmp_path / "a" / "instance_id").read_text().strip() == ids[0]
    temporary = [create_app(api_keys=(KEY,), render=False) for _ in range(2)]
    assert temporary[0].state.emulator.instance_id != temporary[1].state.emulator.instance_id
    for app in temporary:
        await app.state.emulator.aclose()
