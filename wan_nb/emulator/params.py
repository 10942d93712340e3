"""Reading a create body the way the service does (reference §2, §2.2 and §7.2).

The emulator's own parser, written against the reference and not against the client: nothing
here imports :mod:`wan_nb.request` or the client's ``ValidationError`` (a test checks), so a
validation bug in the client shows up as a disagreement with the emulator instead of being
shared by both sides. Model facts come from :mod:`.facts`, the emulator's own table.

What the service does, and so what this does:

- ``model`` and ``input.prompt`` are required; ``parameters`` may be missing or empty; a
  parameter sent as ``null`` counts as not sent;
- fields the official SDK adds are tolerated: ``input.extend_prompt`` (read as
  ``prompt_extend`` when that is not given), ``input.function`` and SDK-only ``parameters``
  such as ``wait_timeout`` are ignored;
- over-long ``prompt`` (model's limit) and ``negative_prompt`` (500) are cut, not refused;
- ``audio_url`` wins over ``audio``; it must be a public http(s) URL or an ``oss://`` upload
  (the engine resolves uploads); models without sound refuse both;
- ``shot_type: "multi"`` with ``prompt_extend: false`` runs as ``single``;
- every other problem is a 400 ``InvalidParameter`` listing each problem found.

Each model speaks one picture protocol (:attr:`.facts.ServiceModel.protocol`), one entry of
:data:`_PICTURE`: ``size`` (a concrete ``W*H``, §2.1) or ``resolution`` + ``ratio`` (§7). On the
``resolution`` protocol ``size`` and ``shot_type`` are ignored whatever their value, as the
service does ("setting it has no effect"). The 2026 models' own rules (§7.1), and the
emulator's decisions where the reference is silent:

- HappyHorse takes no negative prompt (a non-empty one is refused, like sound on a silent
  model), makes no sound (``audio: true`` and ``audio_url`` refused) and has no prompt rewrite:
  ``prompt_extend`` and the SDK's ``input.extend_prompt`` must be booleans if sent and are then
  ignored (the task records ``prompt_extend: false``); its watermark defaults to true;
- wan2.7 takes ``audio_url``; ``parameters.audio`` is not documented for it: a boolean is
  accepted and changes nothing (the model makes sound unless given audio);
- Wan 3.0 turns sound off with ``audio: false`` and takes no ``audio_url``; ``ratio:
  "adaptive"`` renders 16:9; a non-empty ``input.media`` (image or reference input) is refused:
  the emulator serves text-to-video only.

>>> r = parse_create({"model": "wan2.5-t2v-preview", "input": {"prompt": "a fox"},
...                   "parameters": {"size": "832*480", "seed": 7, "audio": False}})
>>> (r.width, r.height, r.duration, r.seed, r.params["audio"])
(832, 480, 5, 7, 'silent')
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .facts import (MODELS, NEGATIVE_PROMPT_MAX, SEED_MAX, SEED_MIN, ServiceModel, find_model,
                    parse_size, ratio_size)

#: the order problems are listed in
FIELDS = ("prompt", "negative_prompt", "media", "resolution", "ratio", "size", "duration",
          "seed", "prompt_extend", "watermark", "audio", "audio_url", "shot_type")


class InvalidParameter(Exception):
    """A body the service refuses with 400 ``InvalidParameter``; ``str(e)`` is the message."""


@dataclass(frozen=True)
class CreateRequest:
    """An accepted create body, every default filled in as the service would."""

    model: ServiceModel
    prompt: str  # after the service's truncation
    negative_prompt: str
    width: int
    height: int
    duration: int
    seed: int  # the body's, or one chosen here (the service never reports it)
    prompt_extend: bool
    audio_url: str | None  # http(s) or oss://, as sent
    #: what a task records: prompt, negative_prompt, model, (resolution, ratio: the
    #: ``resolution`` protocol), size (the pixels rendered, ``W*H``), duration, seed,
    #: prompt_extend, watermark, audio ("auto", "custom" or "silent"), audio_url, (shot_type:
    #: the ``size`` protocol)
    params: dict[str, Any]


def random_seed() -> int:
    return random.SystemRandom().randint(SEED_MIN, SEED_MAX)


def parse_create(body: Any, *, seed: Callable[[], int] = random_seed) -> CreateRequest:
    """The create body as the service reads it; :class:`InvalidParameter` if it refuses it.

    ``seed`` picks the seed of a body without one.
    """
    if not isinstance(body, Mapping):
        raise InvalidParameter("The request body must be a JSON object.")
    model = find_model(body.get("model"))
    if model is None:
        raise InvalidParameter("Model not exist.")
    inp, params = body.get("input"), body.get("parameters")
    if not isinstance(inp, Mapping) or "prompt" not in inp:
        raise InvalidParameter("Field required: input.prompt")
    if params is not None and not isinstance(params, Mapping):
        raise InvalidParameter("parameters must be an object")
    b = _Body(model, inp, params or {})
    prompt, negative = _texts(b)
    duration = _duration(b)
    chosen_seed = _seed(b, seed)
    extend, watermark = _flags(b)
    audio, audio_url = _audio(b)
    picture, width, height = _PICTURE[model.protocol](b, extend)
    if b.errors:
        raise InvalidParameter(b.message())
    values = {"prompt": prompt, "negative_prompt": negative, "model": model.name,
              **{k: v for k, v in picture.items() if k != "shot_type"}, "duration": duration,
              "seed": chosen_seed, "prompt_extend": extend, "watermark": watermark,
              "audio": audio, "audio_url": audio_url}
    if "shot_type" in picture:
        values["shot_type"] = picture["shot_type"]
    return CreateRequest(model=model, prompt=prompt, negative_prompt=negative, width=width,
                         height=height, duration=duration, seed=chosen_seed,
                         prompt_extend=extend, audio_url=audio_url, params=values)


class _Body:
    """One body being read, and the problems found so far."""

    def __init__(self, model: ServiceModel, inp: Mapping[str, Any], params: Mapping[str, Any]):
        self.model, self.input, self.params = model, inp, params
        self.errors: list[tuple[str, str]] = []

    def param(self, name: str, default: Any) -> Any:
        value = self.params.get(name)
        return default if value is None else value

    def fail(self, name: str, message: str) -> None:
        self.errors.append((name, message))

    def message(self) -> str:
        lines = [m for _, m in sorted(self.errors, key=lambda e: FIELDS.index(e[0]))]
        return lines[0] if len(lines) == 1 else (f"{len(lines)} problems:\n  - "
                                                 + "\n  - ".join(lines))


def _show(v: Any) -> str:
    return f"{v!r} (a bool)" if isinstance(v, bool) else repr(v)


def _whole(v: Any) -> Any:
    """``5.0`` reads as ``5`` (JSON has one number type); anything else as is."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _valid_text(b: _Body, name: str, text: str) -> None:
    """A lone surrogate (``"\\ud800"`` in JSON) is not text: it cannot be encoded as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        b.fail(name, f"{name} contains an unpaired surrogate {text[e.start]!r} at character "
                     f"{e.start} (not valid Unicode text)")


def _has_cjk(text: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff"
               or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff" for ch in text)


def _texts(b: _Body) -> tuple[str, str]:
    m = b.model
    prompt = b.input["prompt"]
    if isinstance(prompt, str):
        cjk = m.prompt_max_cjk is not None and _has_cjk(prompt)
        prompt = prompt[:m.prompt_max_cjk if cjk else m.prompt_max]
    if not isinstance(prompt, str) or not prompt.strip():
        b.fail("prompt", f"prompt must be a non-empty string, not {_show(prompt)}")
    else:
        _valid_text(b, "prompt", prompt)
    negative = b.input.get("negative_prompt") or ""
    if not isinstance(negative, str):
        b.fail("negative_prompt", f"negative_prompt must be a string, not {_show(negative)}")
    elif negative and not m.negative_prompt:
        takes = ", ".join(x.name for x in MODELS.values() if x.negative_prompt)
        b.fail("negative_prompt", f"negative_prompt is not supported by {m.name}; leave it "
                                  f"empty (models that take one: {takes})")
    else:
        negative = negative[:NEGATIVE_PROMPT_MAX]
        _valid_text(b, "negative_prompt", negative)
    media = b.input.get("media")
    if m.protocol == "resolution" and media:
        b.fail("media", f"input.media is not served by this emulator: it renders text-to-video "
                        f"only; send {m.name} a prompt without media")
    return prompt, negative


def _duration(b: _Body) -> int:
    m = b.model
    duration = _whole(b.param("duration", m.default_duration))
    if not _is_int(duration) or duration not in m.durations:
        allowed = (f"an integer from {m.durations[0]} to {m.durations[-1]}"
                   if len(m.durations) > 3 else " or ".join(map(str, m.durations)))
        b.fail("duration", f"duration {_show(duration)} is not offered by {m.name}; use "
                           f"{allowed} (seconds)")
    return duration  # type: ignore[no-any-return]


def _seed(b: _Body, choose: Callable[[], int]) -> int:
    value = b.params.get("seed")
    seed = choose() if value is None else _whole(value)
    if not _is_int(seed) or not SEED_MIN <= seed <= SEED_MAX:
        b.fail("seed", f"seed {_show(seed)} must be a whole number from {SEED_MIN} to "
                       f"{SEED_MAX} (an integer)")
    return seed  # type: ignore[no-any-return]


def _flags(b: _Body) -> tuple[bool, bool]:
    legacy = b.input.get("extend_prompt")  # the SDK's older spelling, in input
    extend = b.param("prompt_extend", legacy if isinstance(legacy, bool) else True)
    watermark = b.param("watermark", b.model.default_watermark)
    for name, value in (("prompt_extend", extend), ("watermark", watermark)):
        if not isinstance(value, bool):
            b.fail(name, f"{name} must be True or False, not {_show(value)}")
    if not b.model.prompt_extend:
        extend = False  # a model without rewrite ignores the switch (the SDK always sends it)
    return extend, watermark


def _audio(b: _Body) -> tuple[str, str | None]:
    """(``"auto"``, ``"custom"`` or ``"silent"``; the audio_url) — audio_url wins over audio."""
    m = b.model
    url = b.input.get("audio_url") or None
    if url is not None:
        mode = "custom"
    else:
        flag = b.params.get("audio")
        if flag is None:
            mode = "auto" if m.audio else "silent"
        elif isinstance(flag, bool):
            # a model that cannot turn its sound off takes the switch and makes sound anyway
            mode = "auto" if flag or (m.audio and m.audio_switch != "documented") else "silent"
        else:
            b.fail("audio", f"audio must be true or false, not {flag!r}")
            return "silent", None
    if not m.audio and mode != "silent":
        what = "audio_url" if url is not None else f"audio {mode!r}"
        with_audio = ", ".join(x.name for x in MODELS.values() if x.audio)
        b.fail("audio_url" if url is not None else "audio",
               f"{what} is not supported by {m.name}, which only makes silent video; "
               f"models with audio: {with_audio}")
    elif url is not None and not m.custom_audio:
        takes = ", ".join(x.name for x in MODELS.values() if x.custom_audio)
        b.fail("audio_url", f"audio_url is not supported by {m.name}, which makes its own "
                            f"sound (turn it off with audio: false); models that take "
                            f"audio_url: {takes}")
    elif url is not None:
        _audio_url(b, url)
    return mode, url


def _audio_url(b: _Body, url: Any) -> None:
    """Where the service can fetch audio from: a public http(s) URL or an ``oss://`` upload
    (a local path means nothing to a server)."""
    if isinstance(url, str):
        before = len(b.errors)
        _valid_text(b, "audio_url", url)
        if len(b.errors) > before or url.startswith("oss://"):
            return
        if url.startswith(("http://", "https://")):
            if not urlsplit(url).hostname:
                b.fail("audio_url", f"audio_url {url!r} has no host")
            return
    b.fail("audio_url", f"audio_url must be a public http(s) URL or an oss:// upload, "
                        f"not {url!r}")


# -- picture protocols (reference §2.1; §7 adds "resolution") -------------------------------------
Picture = tuple[dict[str, Any], int, int]  # (parameters to record, width, height)


def _size_protocol(b: _Body, prompt_extend: Any) -> Picture:
    """``size`` (a concrete ``W*H`` of the model's tiers) and, on multi-shot models,
    ``shot_type``."""
    m = b.model
    size = b.param("size", m.default_size)
    width = height = 0
    if not isinstance(size, str) or size not in m.sizes:
        hint = (" (sizes are written with '*', e.g. '1280*720')"
                if isinstance(size, str) and "x" in size.lower() else "")
        b.fail("size", f"size {size!r} is not offered by {m.name}{hint}; choose one of "
                       f"{', '.join(m.sizes)}")
    else:
        width, height = parse_size(size)
    shot = b.param("shot_type", "single" if m.multi_shot else None)
    if shot is not None and not m.multi_shot:
        multi = ", ".join(x.name for x in MODELS.values() if x.multi_shot)
        b.fail("shot_type", f"shot_type is only supported by {multi}, not {m.name}; leave it "
                            "unset")
    elif shot is not None and shot not in ("single", "multi"):
        b.fail("shot_type", f"shot_type {shot!r} must be 'single' or 'multi'")
    elif shot == "multi" and prompt_extend is False:
        shot = "single"  # multi-shot only takes effect with prompt_extend
    return {"size": size, "shot_type": shot}, width, height


def _resolution_protocol(b: _Body, prompt_extend: Any) -> Picture:
    """``resolution`` + ``ratio`` (§7.1); ``size`` and ``shot_type`` are ignored, whatever
    they say, as the service ignores them."""
    m = b.model
    resolution = b.param("resolution", m.default_resolution)
    ratio = b.param("ratio", m.default_ratio)
    ok = True
    if not isinstance(resolution, str) or resolution not in m.tiers:
        hint = (" (resolutions are written like '720P')"
                if isinstance(resolution, str) and resolution.upper() in m.tiers else "")
        b.fail("resolution", f"resolution {resolution!r} is not offered by {m.name}{hint}; "
                             f"choose one of {', '.join(m.tiers)}")
        ok = False
    if not isinstance(ratio, str) or ratio not in m.ratios:
        b.fail("ratio", f"ratio {ratio!r} is not offered by {m.name}; choose one of "
                        f"{', '.join(m.ratios)}")
        ok = False
    size = ratio_size(resolution, ratio) if ok else ""
    width, height = parse_size(size) if ok else (0, 0)
    return {"resolution": resolution, "ratio": ratio, "size": size}, width, height


_PICTURE: dict[str, Callable[[_Body, Any], Picture]] = {"size": _size_protocol,
                                                        "resolution": _resolution_protocol}
