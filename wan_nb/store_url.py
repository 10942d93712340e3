"""What a ``store=`` may name: a folder (the SQLite :class:`~wan_nb.store.Store`, the
default) or a ``postgresql://`` URL (:class:`~wan_nb.store_pg.PgLedger`, for a team). Anything
else that looks like a URL is refused here, before a folder is made or a server is reached.

Passwords in URLs never leave this module unmasked: :func:`mask_url` is what reprs, errors
and logs show (``postgresql://wan:***@db.lab:5432/runs``).
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ValidationError

#: the URL schemes of a PostgreSQL ledger (all mean psycopg 3 through SQLAlchemy)
PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
SUPPORTED = ("a folder path (SQLite, the default: e.g. 'wan_runs')",
             "postgresql://user:password@host:port/database (a shared PostgreSQL ledger)")
# schemes that name a database or a storage service: ``name:`` with them is a URL (or a typo
# of one) even without ``//``, never a folder; other ``word:`` prefixes stay folder names
_KNOWN = {"postgresql", "postgres", "pg", "psql", "mysql", "mariadb", "sqlite", "sqlite3",
          "mssql", "oracle", "mongodb", "redis", "s3", "gs", "gcs", "az", "abfs", "abfss",
          "http", "https", "file", "ftp", "sftp", "hdfs", "cockroachdb"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to show."""
    try:
        parts = urlsplit(url)
        # libpq also takes the password as a parameter: ?password=...
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
        parts = parts._replace(query=query)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
        return urlunsplit(parts)
    except ValueError:  # a malformed URL: show only its scheme
        return url.split(":", 1)[0] + ":<malformed URL hidden>"


def url_scheme(text: str) -> str | None:
    """The scheme when ``text`` is a URL (or a typo of a known one), else None (a folder)."""
    m = _SCHEME.match(text)
    if m is None or len(m[1]) < 2:  # "C:" is a Windows drive, not a scheme
        return None
    scheme = m[1].lower()
    if text[m.end():].startswith("//") or scheme.split("+")[0] in _KNOWN:
        return scheme
    return None


def check_store_arg(store: Any) -> None:
    """``store`` is None, a ledger, a folder path or a supported URL; anything else is
    refused (a ValidationError naming what is supported) before anything is made."""
    if store is None or _is_store(store):
        return
    if not isinstance(store, (str, os.PathLike)) or isinstance(store, bytes):
        raise ValidationError([("store", f"store must be a folder path, a postgresql:// URL "
                                         f"or a ledger (wan_nb.Store), not "
                                         f"{type(store).__name__}")])
    text = os.fspath(store)
    if not isinstance(text, str) or not text.strip():
        raise ValidationError([("store", "store must name a folder or a postgresql:// URL; "
                                         "an empty path would write the ledger into the "
                                         "current folder")])
    if url_scheme(text) is not None:
        check_url(text)
        return
    path = os.path.expanduser(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValidationError([("store", f"store {text!r} exists and is not a folder")])


def check_url(url: str) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg://…``) of a supported store URL; a
    ValidationError (password masked) for any other."""
    scheme = url_scheme(url) or ""
    shown = mask_url(url)
    base = scheme.split("+")[0]
    supported = "; ".join(SUPPORTED)
    if scheme in PG_SCHEMES:
        rest = url[len(scheme) + 1:]
        if not rest.startswith("//"):
            raise ValidationError([("store", f"store {shown!r} is not a PostgreSQL URL: write "
                                             "postgresql://user:password@host:port/database")])
        try:
            parts = urlsplit("postgresql+psycopg:" + rest)
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError as exc:
            raise ValidationError([("store", f"store {shown!r} is not a valid PostgreSQL URL "
                                             f"({exc}); write postgresql://user:password@"
                                             "host:port/database")]) from None
        if not parts.hostname and "host=" not in parts.query:
            raise ValidationError([("store", f"store {shown!r} names no host: write "
                                             "postgresql://user:password@host:port/database")])
        if not parts.path.strip("/"):
            raise ValidationError([("store", f"store {shown!r} names no database: write "
                                             "postgresql://user:password@host:port/database")])
        return urlunsplit(parts)
    if base in ("postgresql", "postgres", "pg", "psql"):
        why = (f"the driver {scheme.split('+', 1)[1]!r} is not supported (wan_nb uses psycopg "
               "3)" if "+" in scheme else f"{scheme!r} is not a PostgreSQL scheme")
    elif base in ("sqlite", "sqlite3"):
        why = "a SQLite ledger is given as its folder, e.g. store='wan_runs'"
    elif base in ("s3", "gs", "gcs", "az", "abfs", "abfss"):
        why = ("object storage cannot hold the ledger (it keeps videos): give the ledger as a "
               "folder or a postgresql:// URL")
    else:
        why = f"wan_nb cannot keep its ledger in {scheme!r}"
    raise ValidationError([("store", f"store {shown!r} is not supported: {why}. "
                                     f"Supported: {supported}")])


def is_shared_ledger(ledger: Any) -> bool:
    """Whether ``ledger`` is one other machines may share (a PostgreSQL ledger)."""
    import sys

    module = sys.modules.get("wan_nb.store_pg")  # never imported: no such ledger exists
    return module is not None and isinstance(ledger, module.PgLedger)


def _is_store(value: Any) -> bool:
    from .store import Store

    return isinstance(value, Store)
