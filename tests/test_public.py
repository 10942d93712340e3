"""The public surface is what __all__ and the README say, and secrets never leak."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import wan_nb

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_public_name_is_importable_and_documented():
    for name in wan_nb.__all__:
        assert getattr(wan_nb, name) is not None, name
        if name not in ("__version__",):
            assert name in README, f"{name} is public but the README does not mention it"
    for name in ("connect", "Client", "AsyncClient", "GenerationRequest", "Job", "Experiment",
                 "Store", "WanError", "ValidationError", "APIError", "TaskFailed"):
        assert name in wan_nb.__all__


def test_the_api_key_never_reaches_the_store_or_the_logs(make_client, caplog):
    client = make_client()
    key = client.emulator.api_key
    caplog.set_level(logging.DEBUG)
    job = client.submit("a quiet harbour", model="wan2.2-t2v-plus", size="832*480", seed=1)
    job.result(timeout=60)
    failing = client.submit("__blocked__ harbour", model="wan2.2-t2v-plus", size="832*480",
                            seed=2).result(timeout=60, raise_on_error=False)
    assert failing.status == "REJECTED"
    assert key not in caplog.text
    for text in (repr(client), repr(client.aio), repr(job), repr(client.emulator),
                 job._repr_html_(), failing.error or ""):
        assert key not in text
    con = sqlite3.connect(client.store.db_path)
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    assert key not in dump
    assert key not in client.to_dataframe().to_csv()
