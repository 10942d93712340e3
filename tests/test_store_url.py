"""What ``store=`` accepts: a folder (SQLite) or a postgresql:// URL. Any other URL, or a typo of
one, is refused with a clear error naming what is supported, before a folder is made, a
server reached or an emulator started; a password in a URL is never shown."""

from __future__ import annotations

import os

import pytest

import wan_nb
from wan_nb.errors import ValidationError
from wan_nb.store import Store, StoreError
from wan_nb.ledgers import open_ledger
from wan_nb.store_url import check_store_arg, check_url, mask_url, url_scheme

SECRET = "s3cr3t-Pa55"

REFUSED = [
    (f"mysql://me:{SECRET}@db.lab/runs", "cannot keep its ledger in 'mysql'"),
    (f"s3://key:{SECRET}@bucket/runs", "object storage cannot hold the ledger"),
    ("gs://bucket/runs", "object storage cannot hold the ledger"),
    ("sqlite:///tmp/ledger.sqlite3", "a SQLite ledger is given as its folder"),
    ("sqlite://", "a SQLite ledger is given as its folder"),
    ("postgres:/db.lab/runs", "not a PostgreSQL URL: write postgresql://"),
    ("postgresql:runs", "not a PostgreSQL URL: write postgresql://"),
    (f"postgresql+psycopg2://me:{SECRET}@db.lab/runs", "driver 'psycopg2' is not supported"),
    (f"postgresq://me:{SECRET}@db.lab/runs", "cannot keep its ledger in 'postgresq'"),
    (f"postgresql://me:{SECRET}@db.lab", "names no database"),
    (f"postgresql://me:{SECRET}@/runs", "names no host"),
    (f"postgresql://me:{SECRET}@db.lab:port/runs", "not a valid PostgreSQL URL"),
    ("https://example.com/ledger", "cannot keep its ledger in 'https'"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_unsupported_store_urls_are_refused_before_anything_is_made(url, why, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WAN_NB_STORE", raising=False)
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    for attempt in (lambda: wan_nb.connect(store=url, quiet=True),
                    lambda: wan_nb.connect("sk-test-key-0123456789", store=url,
                                           base_url="http://127.0.0.1:9", quiet=True),
                    lambda: wan_nb.Session("sk-test-key-0123456789",
                                           base_url="http://127.0.0.1:9", store=url),
                    lambda: open_ledger(url)):
        with pytest.raises(ValidationError) as info:
            attempt()
        text = str(info.value)
        assert why in text
        assert info.value.fields == ["store"]
        assert SECRET not in text and SECRET not in repr(info.value)
        assert "Supported:" in text or "postgresql://user:password@host:port/database" in text
    assert os.listdir(tmp_path) == []  # no folder named 'mysql:' or 'postgresql:'


def test_the_environment_variable_is_checked_alike(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WAN_NB_STORE", f"mysql://me:{SECRET}@db.lab/runs")
    with pytest.raises(ValidationError, match="WAN_NB_STORE: store 'mysql://me:\\*\\*\\*@db") \
            as info:
        wan_nb.connect(quiet=True)
    assert SECRET not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_folders_stay_folders(tmp_path, monkeypatch):
    """A colon in a folder name is not a URL unless it names a known scheme."""
    monkeypatch.chdir(tmp_path)
    for name in ("runs:v2", "C:runs", "wan_runs", str(tmp_path / "abs:olute")):
        assert url_scheme(name) is None
        check_store_arg(name)
        with open_ledger(name) as store:
            assert isinstance(store, Store) and store.root.is_dir()
    with pytest.raises(ValidationError, match="must be a folder path, a postgresql:// URL"):
        check_store_arg(42)
    with pytest.raises(ValidationError, match="empty path"):
        check_store_arg(" ")


def test_postgresql_urls_are_accepted_in_their_spellings():
    for url in ("postgresql://me:pw@db.lab:5432/runs", "postgres://me@db.lab/runs",
                "postgresql+psycopg://me:pw@db.lab/runs", "postgresql://db.lab/runs?sslmode=require"):
        check_store_arg(url)
        assert check_url(url).startswith("postgresql+psycopg://")


def test_passwords_are_masked():
    assert mask_url(f"postgresql://me:{SECRET}@db.lab:5432/runs") == \
        "postgresql://me:***@db.lab:5432/runs"
    assert mask_url("postgresql://me@db.lab/runs") == "postgresql://me@db.lab/runs"
    assert mask_url(f"postgresql://db.lab/runs?sslmode=require&password={SECRET}") == \
        "postgresql://db.lab/runs?sslmode=require&password=***"
    assert SECRET not in mask_url(f"postgresql://me:{SECRET}@db.lab:port/runs")


def test_an_unreachable_server_is_a_clear_error_with_the_password_hidden(tmp_path,
                                                                         monkeypatch):
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    from tests.pg_server import _free_port

    monkeypatch.chdir(tmp_path)
    url = f"postgresql://me:{SECRET}@127.0.0.1:{_free_port()}/runs"
    with pytest.raises(StoreError, match="cannot open the PostgreSQL ledger "
                                         "postgresql://me:\\*\\*\\*@127.0.0.1") as info:
        open_ledger(url)
    assert "Is the server running" in str(info.value)
    assert SECRET not in str(info.value) and info.value.__cause__ is None
    assert os.listdir(tmp_path) == []  # no video folder for a ledger that cannot be used
