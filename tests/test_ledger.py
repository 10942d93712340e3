"""The ledger protocol: the SQLite Store and the PostgreSQL PgLedger implement it, and it names
exactly what the package asks of its store (what any other ledger must provide)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from wan_nb.ledger import LEDGER_MEMBERS, Ledger

PACKAGE = Path(__file__).resolve().parents[1] / "wan_nb"
# the ledger's own modules, and the emulator (its task store is another thing)
NOT_CLIENTS = ("store", "ledger", "emulator/")


def test_each_store_is_a_ledger(make_ledger) -> None:
    """SQLite and PostgreSQL (conftest.make_ledger) both."""
    ledger: Ledger = make_ledger()  # mypy checks the signatures in store.py
    assert isinstance(ledger, Ledger)
    for name in sorted(LEDGER_MEMBERS):
        declared = inspect.getattr_static(Ledger, name)
        assert hasattr(ledger, name), f"{type(ledger).__name__} lacks the ledger member {name}"
        if isinstance(declared, property):
            continue
        want = inspect.signature(declared).parameters.values()
        got = inspect.signature(getattr(type(ledger), name)).parameters.values()
        assert [(p.name, p.kind, p.default is p.empty) for p in want] == \
               [(p.name, p.kind, p.default is p.empty) for p in got], name
    ledger.insert_run(prompt="a cat")
    assert [r["prompt"] for r in ledger.runs()] == ["a cat"]


def _store_expression(node: ast.AST) -> bool:
    """``store``, ``the_store`` or ``<anything>.store``: how the package names its ledger."""
    return (isinstance(node, ast.Name) and node.id in ("store", "the_store")) or (
        isinstance(node, ast.Attribute) and node.attr == "store")


def _members_used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(NOT_CLIENTS):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name: str | None = None
            if isinstance(node, ast.Attribute) and _store_expression(node.value):
                name = node.attr
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
                  and _store_expression(node.args[0])
                  and isinstance(node.args[1], ast.Constant)):
                name = str(node.args[1].value)
            if name is not None:
                used.setdefault(name, set()).add(rel)
    return used


def test_the_protocol_is_exactly_what_the_package_uses() -> None:
    used = _members_used()
    missing = {name: sorted(where) for name, where in used.items()
               if name not in LEDGER_MEMBERS}
    assert not missing, ("the package uses store members the Ledger protocol does not "
                         f"declare (add them to wan_nb/ledger.py, with their contract): {missing}")
    unused = LEDGER_MEMBERS - set(used)
    assert not unused, f"Ledger members nothing in the package uses any more: {sorted(unused)}"
