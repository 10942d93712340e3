"""Inline HTML for jobs: a card with the video, a table of jobs, a side-by-side gallery.

Videos are referenced by a path relative to the kernel's working directory (the notebook's
folder), which JupyterLab serves with range requests: the notebook grows by ~1 KB per video
instead of 1.34× the video (DESIGN.md §3). A video outside that folder cannot be served, so it
is embedded instead when it is small (``EMBED_LIMIT``), and named otherwise. A video that was
deleted, truncated or changed since download is said to be so (``Store.check_video``: size and
mtime, sha256 when they moved). All user text is escaped.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable
from typing import Any

from .video_objects import is_object_url, presigned

EMBED_LIMIT = 8 * 1024 * 1024

_COLOURS = {"SUCCEEDED": "#1a7f37", "FAILED": "#cf222e", "REJECTED": "#cf222e",
            "CANCELED": "#6e7781", "UNKNOWN": "#9a6700", "EXPIRED": "#9a6700",
            "RUNNING": "#0969da", "PENDING": "#8250df", "QUEUED": "#6e7781",
            "SUBMITTING": "#6e7781"}


def video_src(path: str | None) -> str | None:
    """A ``src`` for a ``<video>`` tag: relative path when Jupyter can serve it, else a data
    URL for small files, else None."""
    if not path or not os.path.exists(path):
        return None
    rel = os.path.relpath(path, os.getcwd())
    if not rel.startswith("..") and not os.environ.get("WAN_NB_EMBED_VIDEO"):
        return rel.replace(os.sep, "/")
    if os.path.getsize(path) <= EMBED_LIMIT:
        with open(path, "rb") as f:
            return "data:video/mp4;base64," + base64.b64encode(f.read()).decode()
    return None


# Inside a widget (an ipywidgets HTML), JupyterLab does not resolve a relative src the way it
# does in a cell's output (its rendermime resolver turns it into the server's /files/ URL): the
# browser would resolve it against the page's /lab/tree/... URL and find nothing. So a video
# carries its absolute path, and a 1×1 image's onload (inline handlers of a widget's markup
# run; a <script> would not) makes the /files/ URL from the page's own configuration: the
# server's root folder and base URL (JupyterLab and Notebook 7 publish both). Elements whose
# src is already a URL (a cell's output, a data: URL) are left alone; so is a page without that
# configuration (VS Code: see video_src's data URL fallback).
_PIXEL = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
_RESOLVE_JS = r"""(function (img) {
  img.onload = null;
  var cfgEl = document.getElementById('jupyter-config-data');
  if (!cfgEl) { return; }
  var cfg; try { cfg = JSON.parse(cfgEl.textContent); } catch (e) { return; }
  var root = String(cfg.serverRoot || '').replace(/\\/g, '/').replace(/\/+$/, '');
  var base = String(cfg.baseUrl || '/');
  if (!root || root.charAt(0) === '~') { return; }
  var box = img.parentElement || document;
  var pairs = [['data-wan-path', 'src'], ['data-wan-poster', 'poster']];
  for (var k = 0; k < pairs.length; k++) {
    var els = box.querySelectorAll('[' + pairs[k][0] + ']');
    for (var i = 0; i < els.length; i++) {
      var el = els[i], attr = pairs[k][1];
      var now = el.getAttribute(attr) || '';
      if (/^(\/|[a-z][a-z0-9+.-]*:)/i.test(now)) { continue; }
      var p = el.getAttribute(pairs[k][0]).replace(/\\/g, '/');
      if (p.indexOf(root + '/') !== 0) { continue; }
      var rel = p.slice(root.length + 1).split('/').map(encodeURIComponent).join('/');
      var url = base + 'files/' + rel;
      // window.URL: in an inline handler a bare URL is document.URL, a string
      try { url = new window.URL(url, document.baseURI).href; } catch (e) { /* as is */ }
      el.setAttribute(attr, url);
    }
  }
})(this)"""
RESOLVE_HOOK = (f'<img src="{_PIXEL}" alt="" width="1" height="1" style="display:none" '
                f'class="wan-resolve" onload="{html.escape(_RESOLVE_JS, quote=True)}">')


def served_attrs(path: str | os.PathLike[str] | None,
                 poster: str | os.PathLike[str] | None = None) -> str:
    """The attributes that let :data:`RESOLVE_HOOK` serve a video's ``src`` (and its
    ``poster``) from a widget's markup; put the hook after the element."""
    out = []
    if path is not None:
        out.append(f'data-wan-path="{html.escape(os.path.abspath(path))}"')
    if poster is not None:
        out.append(f'data-wan-poster="{html.escape(os.path.abspath(poster))}"')
    return " ".join(out)


def video_tag(path: str | None, width: int = 480, *, widget: bool = False) -> str:
    """A ``<video>`` of ``path``. ``widget``: for a widget's markup, where a relative src
    would first be fetched from the wrong URL (the page's): it is left to the resolve hook."""
    src = video_src(path)
    if src is None:
        if not path:
            return ""
        if not os.path.exists(path):
            return (f"<div><i>the video file was deleted ({html.escape(str(path))} is gone)"
                    "</i></div>")
        return (f"<div><i>video at {html.escape(str(path))} (outside the notebook's folder, "
                "too large to embed)</i></div>")
    served = "" if src.startswith("data:") else served_attrs(path)
    src_attr = "" if served and widget else f'src="{html.escape(src)}" '
    return (f'<video {src_attr}{served} controls loop playsinline '
            f'preload="metadata" style="max-width:100%;width:{width}px"></video>'
            + (RESOLVE_HOOK if served else ""))


def signed_video_tag(run: Any, width: int) -> str:
    """A video on object storage that has no local copy here: played from a URL signed now
    (valid an hour, never stored)."""
    url = presigned(run)
    if url is None:
        return (f"<div><i>the video is at {html.escape(str(run.get('video_path')))} (no local "
                "copy could be made, and no URL could be signed)</i></div>")
    return (f'<video src="{html.escape(url)}" controls loop playsinline preload="metadata" '
            f'style="max-width:100%;width:{width}px"></video>')


def video_problem(job: Any) -> Any:
    """The store's check of a job's video (None when there is nothing to say or no store)."""
    if not job.video_path:
        return None
    try:
        check = job.check_video()
    except Exception:  # a display never fails because the ledger cannot be read
        return None
    return None if check.ok else check


def video_block(job: Any, width: int) -> str:
    """The job's video, preceded by what is wrong with the file, if anything."""
    check = video_problem(job)
    if check is None:
        video = job.video
        if video is None and is_object_url(job.video_path):
            return signed_video_tag(job.record, width)
        return video_tag(video, width)
    warning = (f"<div style='color:#cf222e'>⚠ {html.escape(check.problem or check.state)}"
               "</div>")
    return warning if check.state == "missing" else warning + video_tag(job.video, width)


def badge(status: str) -> str:
    colour = _COLOURS.get(status, "#6e7781")
    return (f'<span style="background:{colour};color:white;border-radius:3px;padding:1px 6px;'
            f'font-size:0.85em">{html.escape(status)}</span>')


def _short(text: str | None, n: int = 90) -> str:
    text = text or ""
    return html.escape(text if len(text) <= n else text[: n - 1] + "…")


def job_html(job: Any, width: int = 480) -> str:
    r = job.request
    lines = [f"<div style='font-family:sans-serif;margin:4px 0'>{badge(job.status)} "
             f"<b>{html.escape(r.model)}</b> {html.escape(str(r.size))} · {r.duration}s · "
             f"seed {r.seed} · <code>{html.escape(job.run_id)}</code></div>",
             f"<div title='{html.escape(r.prompt)}'>{_short(r.prompt, 200)}</div>"]
    actual = job.actual_prompt
    if actual and actual != r.prompt:
        lines.append(f"<details><summary>rewritten prompt</summary>{html.escape(actual)}"
                     "</details>")
    if job.error:
        lines.append(f"<div style='color:#cf222e'>{html.escape(job.error)}</div>")
    if job.video:
        lines.append(video_block(job, width))
    return "<div>" + "".join(lines) + "</div>"


def jobs_table_html(jobs: Iterable[Any]) -> str:
    rows = []
    for j in jobs:
        r = j.request
        eta = j.eta()
        rows.append(
            f"<tr><td><code>{html.escape(j.run_id)}</code></td><td>{badge(j.status)}</td>"
            f"<td>{html.escape(r.model)}</td><td>{html.escape(str(r.size))}</td>"
            f"<td>{r.duration}s</td><td>{r.seed}</td><td>{_short(r.prompt, 60)}</td>"
            f"<td>{j.elapsed:.0f}s</td><td>{'' if eta is None else f'{eta:.0f}s'}</td>"
            f"<td>{html.escape(j.error or '')}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "status", "model", "size", "duration",
                                            "seed", "prompt", "elapsed", "ETA", "error"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class Gallery:
    """Finished videos side by side (``jobs.gallery()``)."""

    def __init__(self, jobs: Iterable[Any], columns: int = 3, width: int = 320):
        self.jobs = list(jobs)
        self.columns = max(1, int(columns))
        self.width = width

    def _repr_html_(self) -> str:
        cells = []
        for j in self.jobs:
            r = j.request
            body = video_block(j, self.width) if j.video else badge(j.status)
            cells.append(f"<figure style='margin:4px'>{body}<figcaption style='font-size:0.85em'>"
                         f"{_short(r.prompt, 80)}<br>{html.escape(r.model)} · seed {r.seed}"
                         "</figcaption></figure>")
        return (f"<div style='display:grid;grid-template-columns:repeat({self.columns},"
                f"minmax(0,1fr));gap:6px'>{''.join(cells)}</div>")

    def __repr__(self) -> str:
        return f"<Gallery of {len(self.jobs)} jobs>"


def gallery(jobs: Iterable[Any], columns: int = 3, width: int = 320) -> Gallery:
    return Gallery(jobs, columns, width)
