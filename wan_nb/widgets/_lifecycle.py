"""Widgets that hold callbacks on jobs and sessions release them when they are closed, and when
the cell that made them runs again (its old output is gone then, but the callbacks would stay
and keep sending updates to views nobody sees).

IPython's ``pre_run_cell`` event says which cell is about to run (``info.cell_id``: JupyterLab,
Notebook 7, VS Code and nbclient send it). A widget made while cell X runs is filed under X;
when X runs again, every widget filed under it is closed first. Outside IPython, or when the
front end sends no cell id, nothing is filed: ``close()`` still releases everything.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_lock = threading.Lock()
_current: list[str | None] = [None]  # the id of the cell running now
_by_cell: dict[str, list[weakref.ref[Any]]] = {}
_hooked: list[Any] = []  # the IPython shell whose events we listen to


def _pre_run_cell(info: Any) -> None:
    cell = getattr(info, "cell_id", None)
    _current[0] = cell
    if not cell:
        return
    with _lock:
        old = _by_cell.pop(cell, [])
    for ref in old:
        widget = ref()
        if widget is not None:
            try:
                widget.close()
            except Exception:  # a view that cannot close must not stop the user's cell
                pass


def _hook() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or (_hooked and _hooked[0] is shell):
        return
    shell.events.register("pre_run_cell", _pre_run_cell)
    _hooked[:] = [shell]


def _running_cell() -> str | None:
    """The id of the cell running now: from the execute request the kernel is answering
    (its metadata's ``cellId``), else what the last ``pre_run_cell`` said."""
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        parent = kernel.get_parent("shell") if kernel is not None else None
        cell = (parent or {}).get("metadata", {}).get("cellId")
        if cell:
            return str(cell)
    except Exception:  # another front end or kernel: fall back to the event's id
        pass
    return _current[0]


def file_under_current_cell(widget: Any) -> None:
    """Close ``widget`` when the cell running now runs again."""
    _hook()  # installed on first use: the cell running now is found from the kernel
    cell = _running_cell()
    if cell:
        with _lock:
            refs = _by_cell.setdefault(cell, [])
            refs[:] = [r for r in refs if r() is not None]
            refs.append(weakref.ref(widget))


def filed_count() -> int:
    """Widgets filed under some cell and still alive (for tests)."""
    with _lock:
        return sum(1 for refs in _by_cell.values() for r in refs if r() is not None)


def close_tree(widget: Any) -> None:
    """Close ``widget``, every widget inside it and their layouts and styles (``close()``
    alone leaves all of those open in the kernel). Closing twice is harmless."""
    for child in getattr(widget, "children", ()) or ():
        close_tree(child)
    for part in ("layout", "style"):
        model = getattr(widget, part, None)
        if model is not None and hasattr(model, "close"):
            model.close()
    widget.close()
