"""Markup shared by the Player, the Gallery and the History: colours from JupyterLab's
``--jp-*`` variables (with fallbacks, so the light and dark themes, Notebook 7 and VS Code stay
legible), escaped text, status badges, the marked-up rewrite, and ``<video>`` tags that load
lazily (DESIGN.md §3). Nothing here holds state."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping
from typing import Any

from ..analysis import diff_segments
from ..display import RESOLVE_HOOK, served_attrs, video_src

# colours: a JupyterLab variable first, the light theme's value as the fallback
FG = "var(--jp-ui-font-color1, #1f2328)"
FG_DIM = "var(--jp-ui-font-color2, #59636e)"
BORDER = "var(--jp-border-color2, #d0d7de)"
PANEL = "var(--jp-layout-color2, #f6f8fa)"
ERROR = "var(--jp-error-color1, #cf222e)"
INVERSE = "var(--jp-ui-inverse-font-color1, #ffffff)"
# the rewrite's marks: a tint of the theme's green or red under text of the theme's own colour
ADDED_BG = "color-mix(in srgb, var(--jp-success-color1, #1a7f37) 25%, transparent)"
REMOVED_BG = "color-mix(in srgb, var(--jp-error-color1, #cf222e) 25%, transparent)"

_STATUS = {"SUCCEEDED": "var(--jp-success-color1, #1a7f37)",
           "FAILED": ERROR, "REJECTED": ERROR,
           "RUNNING": "var(--jp-brand-color1, #0969da)",
           "PENDING": "var(--jp-brand-color2, #8250df)",
           "UNKNOWN": "var(--jp-warn-color1, #9a6700)",
           "EXPIRED": "var(--jp-warn-color1, #9a6700)"}
_STATUS_OTHER = "var(--jp-layout-color4, #6e7781)"

ONE_LINE = "white-space:nowrap;overflow:hidden;text-overflow:ellipsis"


def esc(value: Any) -> str:
    """``value`` as text that HTML shows as written (quotes too: safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def short(text: Any, n: int) -> str:
    """``text`` cut to ``n`` characters (with an ellipsis), escaped."""
    text = "" if text is None else str(text)
    return esc(text if len(text) <= n else text[: n - 1] + "…")


def badge(status: str) -> str:
    colour = _STATUS.get(status, _STATUS_OTHER)
    return (f"<span style='background:{colour};color:{INVERSE};border-radius:3px;"
            f"padding:1px 6px;font-size:0.85em'>{esc(status)}</span>")


def dim(text_html: str) -> str:
    return f"<span style='color:{FG_DIM}'>{text_html}</span>"


def error(text: Any) -> str:
    return f"<div style='color:{ERROR}'>{esc(text)}</div>"


def file_src(path: str | os.PathLike[str] | None, mime: str) -> str | None:
    """A ``src`` for a small file (a poster): its path relative to the notebook's folder where
    Jupyter serves it, else a data URL (VS Code, or a store outside that folder)."""
    if path is None or not os.path.exists(path):
        return None
    rel = os.path.relpath(path, os.getcwd())
    if not rel.startswith("..") and not os.environ.get("WAN_NB_EMBED_VIDEO"):
        return rel.replace(os.sep, "/")
    with open(path, "rb") as f:
        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()


def video(path: str | None, *, poster: str | os.PathLike[str] | None = None,
          preload: str = "none", duration: float | None = None, muted: bool = False,
          extra: str = "", max_width: str = "100%") -> str:
    """A ``<video>`` tag (``display.video_src``: a relative path, made the server's URL in the
    browser by ``display.RESOLVE_HOOK``, or a data URL fallback),
    as wide as its container, with a poster frame and ``preload`` (``none`` in grids: nothing
    is fetched before it is played). ``data-duration`` lets a shared seek bar place a video
    whose metadata is not loaded yet. Empty when there is no file to show."""
    src = video_src(path)
    if src is None:
        return ""
    poster_src = file_src(poster, "image/jpeg")
    # relative paths: the hook makes them the server's /files/ URLs in the browser (a widget's
    # markup is not resolved the way a cell's output is; see display.RESOLVE_HOOK). They are
    # not written as src/poster meanwhile: the browser would fetch each from the page's URL
    # first (a 4 KB HTML page per poster, measured by bench_ui)
    video_served = not src.startswith("data:")
    poster_served = bool(poster_src) and not str(poster_src).startswith("data:")
    attrs = ["controls", "loop", "playsinline", f'preload="{esc(preload)}"']
    if not video_served:
        attrs.insert(0, f'src="{esc(src)}"')
    if poster_src and not poster_served:
        attrs.append(f'poster="{esc(poster_src)}"')
    served = served_attrs(path if video_served else None, poster if poster_served else None)
    if served:
        attrs.append(served)
    if duration:
        attrs.append(f'data-duration="{float(duration):.3f}"')
    if muted:
        attrs.append("muted")
    return (f"<video {' '.join(attrs)} {extra} style='width:100%;max-width:{esc(max_width)};"
            "display:block'></video>" + (RESOLVE_HOOK if served else ""))


def diff_html(prompt: str, actual: str) -> str:
    """The service's rewrite of ``prompt`` with what it removed struck through and what it
    added marked (escaped; marks are tinted in both themes and told by ``<del>`` and ``<ins>``
    too: struck through and underlined)."""
    segments, ratio = diff_segments(prompt, actual)
    out = []
    for kind, text in segments:
        if kind == "added":
            out.append(f"<ins style='background:{ADDED_BG}' title='added by the service'>"
                       f"{esc(text)}</ins>")
        elif kind == "removed":
            out.append(f"<del style='background:{REMOVED_BG}' title='removed by the service'>"
                       f"{esc(text)}</del>")
        else:
            out.append(esc(text))
    return (f"<div style='line-height:1.5'>{''.join(out)}</div>"
            f"<div style='color:{FG_DIM};font-size:0.85em'>{ratio:.0%} of the words kept "
            "their place</div>")


def table(rows: Mapping[str, Any]) -> str:
    """A two-column table of ``name: value`` (values escaped; missing ones left out)."""
    cells = "".join(
        f"<tr><th style='text-align:left;font-weight:normal;color:{FG_DIM};padding:0 8px 0 0'>"
        f"{esc(k)}</th><td style='padding:0'>{esc(v)}</td></tr>"
        for k, v in rows.items() if v is not None and v != "")
    return f"<table style='border-collapse:collapse;font-size:0.9em'>{cells}</table>"


def close_all(*widgets: Any) -> None:
    """Close widgets with their layouts and styles (each a model of its own, which
    ``Widget.close`` leaves behind), each once: shared layouts and styles are fine."""
    seen: set[int] = set()
    for widget in widgets:
        for part in (widget, getattr(widget, "layout", None), getattr(widget, "style", None)):
            if part is not None and id(part) not in seen:
                seen.add(id(part))
                part.close()
