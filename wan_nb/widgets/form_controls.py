"""The generation form's parts that are not the form itself: the browser hook (keyboard and
Ctrl+Enter), the small HTML read-outs (character count, pixel size, estimate, errors, model
notes), reading a past run back into a request, and saving an uploaded audio file.

Everything here is pure or plain I/O; :mod:`wan_nb.widgets.form` wires it into widgets. Colours
come only from ``--jp-*`` CSS variables with fallbacks, and every text from a user or a run is
escaped before it goes into HTML.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import catalog
from ..catalog import ModelSpec
from ..errors import ValidationError, redact
from ..request import GenerationRequest
from ..schedule import RunBand
from ..validation import _is_cjk

ERROR = "var(--jp-error-color1, #c62828)"
WARN = "var(--jp-warn-color1, #e65100)"
MUTED = "var(--jp-ui-font-color2, #616161)"
OK = "var(--jp-success-color1, #2e7d32)"

#: the CSS classes the browser hook looks for (also what a browser test finds)
FORM_CLASS = "wan-nb-form"
PROMPT_CLASS = "wan-nb-prompt"
NEGATIVE_CLASS = "wan-nb-negative-prompt"
GENERATE_CLASS = "wan-nb-generate"
CHANNEL_CLASS = "wan-nb-submit-channel"

#: which control shows a validation problem of each request field
FIELD_CONTROL = {"prompt": "prompt", "negative_prompt": "negative_prompt", "model": "model",
                 "resolution": "resolution", "size": "resolution", "ratio": "ratio",
                 "duration": "duration", "seed": "seed", "prompt_extend": "prompt_extend",
                 "watermark": "watermark", "audio": "audio", "audio_url": "audio",
                 "shot_type": "multi_shot"}

# The hook: runs once per rendered form, from an <img> whose load fails (ipywidgets' HTML view
# sets innerHTML unsanitized, and inline handlers of inserted markup run; <script> would not).
# 1. data-lm-suppress-shortcuts on the form and on every focusable element inside it: lumino's
#    key matcher walks from the event's target up and stops at the first element carrying the
#    attribute, but it tests the target itself first, so the attribute on the container alone
#    would not stop a ":focus" shortcut (A, B, X, D D, ...) while a dropdown or checkbox of the
#    form has the focus; a MutationObserver marks controls rendered later.
# 2. Ctrl+Enter (Cmd+Enter) in the prompts, and a click on Generate, go to the kernel as ONE
#    state update of a hidden text field carrying the prompts' current text: a Button click is
#    a custom message that ipywidgets sends at once, while a text's state updates wait in a
#    per-model buffer whenever one is unanswered, so a click right after typing could reach the
#    kernel before the last characters did. The kernel sets the texts, then clicks Generate
#    (every on_click handler runs, as for a plain click).
_GUARD_JS = """(function (img) {
  img.onerror = null;
  var tries = 0;
  function mark(box) {
    var els = box.querySelectorAll('input, textarea, select, button, [tabindex]');
    for (var i = 0; i < els.length; i++) {
      if (!els[i].hasAttribute('data-lm-suppress-shortcuts')) {
        els[i].setAttribute('data-lm-suppress-shortcuts', 'true');
      }
    }
  }
  function setup() {
    var box = img.closest('.%(container)s');
    if (!box) { if (tries++ < 600) { setTimeout(setup, 50); } return; }
    if (box.getAttribute('data-wan-nb-hooked')) { return; }
    box.setAttribute('data-wan-nb-hooked', '1');
    box.setAttribute('data-lm-suppress-shortcuts', 'true');
    mark(box);
    new MutationObserver(function () { mark(box); }).observe(box, {childList: true, subtree: true});
    %(extra)s
  }
  setup();
})(this);"""

_FORM_JS = """function text(cls) {
      var ta = box.querySelector('.' + cls + ' textarea');
      return ta ? ta.value : null;
    }
    function send(source) {
      var input = box.querySelector('.%(channel)s input');
      if (!input) { return false; }
      input.value = JSON.stringify({n: Date.now() + Math.random(), source: source,
        texts: {prompt: text('%(prompt)s'), negative_prompt: text('%(negative)s')}});
      input.dispatchEvent(new Event('change', {bubbles: true}));
      return true;
    }
    box.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && e.target.closest
          && e.target.closest('.%(prompt)s, .%(negative)s')) {
        e.preventDefault();
        e.stopPropagation();
        var b = box.querySelector('.%(generate)s');
        if (!(b && b.disabled)) { send('ctrl-enter'); }
      }
    }, true);
    box.addEventListener('click', function (e) {
      var b = e.target.closest ? e.target.closest('.%(generate)s') : null;
      if (b && !b.disabled && send('click')) { e.preventDefault(); e.stopPropagation(); }
    }, true);""" % {"channel": CHANNEL_CLASS, "prompt": PROMPT_CLASS,
                     "negative": NEGATIVE_CLASS, "generate": GENERATE_CLASS}

_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _img(js: str) -> str:
    return (f'<img src="data:," alt="" width="0" height="0" style="display:block" '
            f'onerror="{html.escape(js, quote=True)}">')


def guard_html(container_class: str) -> str:
    """Markup for a ``W.HTML`` placed inside a box that has the CSS class
    ``container_class`` (``box.add_class(...)``): once rendered, it sets
    ``data-lm-suppress-shortcuts`` on that box and on every focusable element in it (later ones
    too), so no key pressed in the box reaches JupyterLab's shortcuts, and marks the box
    ``data-wan-nb-hooked="1"``. Runs from an invisible image's failed load (see the module's
    notes on why)."""
    if not _CLASS_NAME.match(container_class):
        raise ValidationError([("container_class", f"{container_class!r} is not a CSS class "
                                                   "name (letters, digits, '-' and '_')")])
    return _img(_GUARD_JS % {"container": container_class, "extra": ""})


def hook_html() -> str:
    """The form's hook: :func:`guard_html` for the form, plus Ctrl+Enter and Generate sending
    the prompts' text through the hidden channel."""
    return _img(_GUARD_JS % {"container": FORM_CLASS, "extra": _FORM_JS})


def error_html(messages: list[str]) -> str:
    if not messages:
        return ""
    return "".join(f"<div style='color:{ERROR};font-size:0.85em;line-height:1.3'>⚠ "
                   f"{html.escape(m)}</div>" for m in messages)


def note_html(text: str, colour: str = MUTED) -> str:
    return (f"<span style='color:{colour};font-size:0.85em;line-height:1.3'>"
            f"{html.escape(text)}</span>") if text else ""


def prompt_limit(spec: ModelSpec, prompt: str) -> tuple[int, bool]:
    """The prompt's limit on ``spec`` and whether the CJK limit applies to it."""
    cjk = spec.prompt_max_cjk is not None and any(_is_cjk(c) for c in prompt)
    return (spec.prompt_max_cjk if cjk and spec.prompt_max_cjk is not None
            else spec.prompt_max), cjk


def count_html(n: int, limit: int, cjk: bool = False) -> str:
    which = " (the limit for Chinese, Japanese or Korean text)" if cjk else ""
    if n > limit:
        return (f"<span style='color:{ERROR};font-size:0.85em'>{n} / {limit} characters"
                f"{which}: {n - limit} too many</span>")
    colour = WARN if n > 0.9 * limit else MUTED
    return f"<span style='color:{colour};font-size:0.85em'>{n} / {limit} characters{which}</span>"


def pixels_html(model: str, resolution: str, ratio: str) -> str:
    """``1280 × 720 px`` for the picture, or nothing when the model has no such picture."""
    try:
        w, h = catalog.pixels(model, resolution, ratio)
    except ValidationError:
        return ""
    spec = catalog.get_model(model)
    notes = []
    if ratio == "adaptive":
        notes.append("16:9 without an input image")
    if (spec.pixel_table, resolution, ratio) in catalog.ASSUMED_PIXELS:
        notes.append("assumed: undocumented")
    extra = f" ({'; '.join(notes)})" if notes else ""
    return (f"<span style='color:{MUTED}' title='the pixel size of this resolution and "
            f"ratio on {html.escape(spec.name)}'>{w} × {h} px{html.escape(extra)}</span>")


def model_note(spec: ModelSpec) -> str:
    """What a user should know about the model beyond the controls it shows."""
    notes = [f"prompt up to {spec.prompt_max} characters"
             + (f" ({spec.prompt_max_cjk} with CJK text)" if spec.prompt_max_cjk else "")]
    if not spec.negative_prompt:
        notes.append("no negative prompt")
    if not spec.prompt_extend:
        notes.append("no prompt rewrite")
    elif not spec.returns_actual_prompt:
        notes.append("does not disclose its rewrite")
    if spec.multi_shot_in_prompt:
        notes.append("several shots: describe them in the prompt")
    if not spec.audio:
        notes.append("silent video")
    if spec.default_watermark:
        notes.append("watermarks by default")
    if spec.snapshot_of:
        notes.append(f"dated snapshot of {spec.snapshot_of}")
    return " · ".join(notes)


def _duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def estimate_html(cost: float | None, band: RunBand | None, *, live: bool,
                  threshold: float | None = None) -> str:
    """The estimate line: cost (USD, an estimate; free on the emulator) and time (p50-p90)."""
    if cost is None:
        money = "cost: no price known for this model and resolution"
    elif live:
        money = f"≈ USD {cost:.2f} (estimate)"
        if threshold is not None and cost > threshold:
            money += f", above your USD {threshold:.2f}: Generate asks first"
    else:
        money = f"≈ USD {cost:.2f} on the live service (the emulator is free)"
    if band is None:
        time_ = "time: unknown"
    else:
        learned = (f"from {band.samples} finished run{'s' * (band.samples != 1)}"
                   if band.samples else "a default: nothing learned yet")
        time_ = f"runs {_duration_text(band.p50)}–{_duration_text(band.p90)} ({learned})"
    return (f"<span style='color:{MUTED};font-size:0.9em'>{html.escape(money)} · "
            f"{html.escape(time_)}</span>")


def status_html(text: str, colour: str = MUTED) -> str:
    return f"<span style='color:{colour}'>{html.escape(text)}</span>" if text else ""


def confirm_html(cost: float | None, threshold: float, backend: str) -> str:
    what = ("no price is known for it" if cost is None else
            f"it is estimated at USD {cost:.2f}, above your USD {threshold:.2f}")
    return status_html(f"This run is paid on {backend} and {what}. Send it?", WARN)


def duration_options(spec: ModelSpec) -> list[tuple[str, int]]:
    """Every duration the model accepts, as ``("5 s", 5)``."""
    return [(f"{d} s", d) for d in spec.durations]


def audio_options(spec: ModelSpec) -> list[tuple[str, str]]:
    """auto (the model's own sound), custom (a file or URL), silent: what the model takes."""
    return [(m, m) for m in spec.audio_modes]


class Checker:
    """Every problem of a form's parameters (pure validation; a model the session's region
    does not offer), plus a local audio file's, read once per path, model and file version
    (not on every keystroke)."""

    def __init__(self) -> None:
        self._audio: tuple[tuple[Any, ...], list[str]] | None = None

    def __call__(self, params: dict[str, Any],
                 region: str | None = None) -> list[tuple[str, str]]:
        try:
            GenerationRequest.from_params(params, stored=True)
            errors: list[tuple[str, str]] = []
        except ValidationError as e:
            errors = list(e.errors)
        if not any(f == "model" for f, _ in errors):
            try:
                catalog.check_region(str(params.get("model")), region)
            except ValidationError as e:
                errors += e.errors
        url = params.get("audio_url")
        if not url or any(f in ("audio", "audio_url") for f, _ in errors) or \
                str(url).startswith(("http://", "https://", "oss://")):
            return errors
        try:
            st = os.stat(str(url).removeprefix("file://"))
            version: tuple[Any, ...] = (st.st_mtime_ns, st.st_size)
        except OSError:
            version = ()
        key = (str(url), params.get("model"), *version)
        if self._audio is None or self._audio[0] != key:
            try:
                GenerationRequest(**params)
                found: list[str] = []
            except ValidationError as e:
                found = [m for f, m in e.errors if f == "audio_url"]
            self._audio = (key, found)
        return errors + [("audio_url", m) for m in self._audio[1]]


# -- a past run back into a request ----------------------------------------------------------
_ROW_PARAMS = ("prompt", "negative_prompt", "model", "resolution", "ratio", "size", "duration",
               "seed", "prompt_extend", "watermark", "audio_url", "shot_type")


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    try:
        import pandas as pd

        return v is pd.NA or v is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False


def request_of(run: Any) -> GenerationRequest:
    """The request of a past run: a Job, a GenerationRequest, a ledger row (a dict from the
    store, or a ``to_dataframe()`` row) with its ``request_json``, or the row's columns.
    Read as recorded: no local audio file is touched. :class:`ValidationError` otherwise."""
    if isinstance(run, GenerationRequest):
        return run
    request = getattr(run, "request", None)
    if isinstance(request, GenerationRequest):
        return request
    if hasattr(run, "to_dict") and not isinstance(run, Mapping):
        run = run.to_dict()  # a DataFrame row
    if not isinstance(run, Mapping):
        raise ValidationError([("run", f"cannot load {type(run).__name__}: give a Job, a "
                                       "GenerationRequest or a run record (a dict or a "
                                       "to_dataframe() row)")])
    fingerprint = run.get("fingerprint")
    fingerprint = None if _missing(fingerprint) else str(fingerprint)
    stored = run.get("request_json")
    if isinstance(stored, (str, Mapping)):
        return GenerationRequest.from_params(stored, stored=True, fingerprint=fingerprint)
    params = {k: run[k] for k in _ROW_PARAMS if k in run and not _missing(run[k])}
    if not _missing(run.get("audio_mode")):
        params["audio"] = str(run["audio_mode"])
    if params.get("size") and params.get("resolution"):
        params.pop("size")  # the columns carry both spellings; the picture is one of them
    if "model" in params and catalog.get_model(params["model"]).protocol == "resolution":
        params.pop("size", None)
        params.pop("shot_type", None)
    return GenerationRequest.from_params(params, stored=True, fingerprint=fingerprint)


# -- an uploaded audio file ------------------------------------------------------------------
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def save_upload(folder: Path, upload: Mapping[str, Any]) -> Path:
    """Write one FileUpload entry (``name``, ``content``) into ``folder`` under a name made of
    its content's sha256 and its own (sanitised) name, and return the path. The same bytes
    land in the same file, so uploading a file twice keeps one copy."""
    name = str(upload.get("name") or "audio")
    data = bytes(upload.get("content") or b"")
    if not data:
        raise ValidationError([("audio_url", f"the uploaded file {name!r} is empty")])
    if not name.lower().endswith(catalog.AUDIO_EXTENSIONS):
        raise ValidationError([("audio_url", f"the uploaded file {name!r} is not .wav or .mp3; "
                                             "pick a WAV or MP3 file (3-30 s, at most 15 MB)")])
    if len(data) > catalog.AUDIO_MAX_BYTES:
        raise ValidationError([("audio_url", f"the uploaded file {name!r} has {len(data)} "
                                             f"bytes; at most {catalog.AUDIO_MAX_BYTES} are "
                                             "allowed")])
    stem = _SAFE.sub("_", Path(name).name)[-80:] or "audio"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{stem}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def upload_entries(value: Any) -> list[Mapping[str, Any]]:
    """FileUpload's value as a list of entries (ipywidgets 8: a tuple of dicts)."""
    if isinstance(value, Mapping):  # ipywidgets 7 shape: {name: {...}}
        return [{"name": k, **v} for k, v in value.items()]
    return list(value or ())


def channel_message(value: str) -> dict[str, Any] | None:
    """The browser hook's message (JSON with ``texts``), or None when it is not one."""
    try:
        msg = json.loads(value)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


def descendants(box: Any) -> list[Any]:
    """``box`` and every widget inside it."""
    out = [box]
    for child in getattr(box, "children", ()):
        out += descendants(child)
    return out


def new_seed() -> int:
    return random.SystemRandom().randint(catalog.SEED_MIN, catalog.SEED_MAX)


def message(e: BaseException) -> str:
    """An error as one line for the form (any key-like text masked)."""
    return redact(str(e)) or type(e).__name__


def run_id_of(run: Any) -> str:
    run_id = getattr(run, "run_id", None)
    if run_id is None and isinstance(run, Mapping):
        run_id = run.get("run_id")
    return f" {run_id}" if isinstance(run_id, str) else ""
