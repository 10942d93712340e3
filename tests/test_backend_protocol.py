"""The backend seam: AsyncClient satisfies wan_nb.backend.Backend, at run time (members,
parameters, async-ness) and for mypy (JobManager takes a Backend, and the session passes it
an AsyncClient; tests/test_codebase.py runs mypy over the package)."""

from __future__ import annotations

import inspect

from wan_nb.backend import Backend
from wan_nb.client import AsyncClient


def _members(proto: type) -> set[str]:
    return {n for n in vars(proto) if not n.startswith("_")} | set(
        getattr(proto, "__annotations__", {}))


def test_async_client_has_every_backend_member_with_its_parameters() -> None:
    for name in _members(Backend):
        assert hasattr(AsyncClient, name) or name in AsyncClient.__init__.__code__.co_names, \
            name
        want = getattr(Backend, name, None)
        have = getattr(AsyncClient, name, None)
        if inspect.isfunction(want):
            assert inspect.isfunction(have), name
            assert list(inspect.signature(want).parameters) == \
                list(inspect.signature(have).parameters), name
            assert inspect.iscoroutinefunction(want) == inspect.iscoroutinefunction(have), name


def test_async_client_is_a_backend_for_mypy() -> None:
    client: Backend = AsyncClient("sk-test-0123456789", base_url="http://127.0.0.1:9")
    assert client.backend.startswith("custom:") or client.backend
