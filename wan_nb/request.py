"""GenerationRequest: every parameter of one text-to-video task, validated before sending.

>>> r = GenerationRequest("a fox detective in the rain", model="wan2.5-t2v-preview",
...                       size="832*480", duration=10, seed=12345)
>>> r.wire_body()["parameters"]["size"]
'832*480'
>>> r.fingerprint == GenerationRequest(seed=12345, duration=10, size="832*480",
...     model="wan2.5-t2v-preview", prompt="a fox detective in the rain").fingerprint
True

Validation comes in two steps, kept apart:

- **the values** (every parameter against the catalog: model, size, duration, seed, flags,
  audio mode, the form of ``audio_url``, prompts) are checked by pure functions
  (:mod:`wan_nb.validation`): no file, socket or clock;
- **a local audio file** (``audio_url`` naming a path) is I/O: it is read once, checked and
  hashed from the same bytes (:func:`wan_nb.audiofile.load`), when a request is built from
  user input, and read again only at submit (:meth:`GenerationRequest.read_audio_file`), where
  a file that changed since is refused. Everything else a request does (``fingerprint``,
  ``params()``, ``stored_json()``, equality, ``repr``, :meth:`~GenerationRequest.replace`
  keeping the file, pickling) uses the recorded sha256 and never touches the filesystem; a
  request read back from the store (``from_params(..., stored=True)``) does not either.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import numbers
import os
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from . import audiofile, catalog
# re-exported: the client and the store import them from here
from .audiofile import file_sha256 as file_sha256
from .audiofile import local_path as local_path
from .catalog import ModelSpec
from .errors import ValidationError
# re-exported: callers import them from here
from .validation import _MISSING, check_text, problems
from .validation import check_audio_file as check_audio_file
from .validation import check_tags as check_tags

#: what params() holds for a "size" model: unchanged since the first version, so that stored
#: requests read back and recorded fingerprints keep matching (resolution and ratio follow
#: from size)
_FIELDS = ("prompt", "negative_prompt", "model", "size", "duration", "seed", "prompt_extend",
           "watermark", "audio", "audio_url", "shot_type")
#: what params() holds for a "resolution" model: no size, no shot_type (reference §7.2)
_RESOLUTION_FIELDS = ("prompt", "negative_prompt", "model", "resolution", "ratio", "duration",
                      "seed", "prompt_extend", "watermark", "audio", "audio_url")
#: the parameter names a request takes (for callers that check names themselves)
PARAMETERS: tuple[str, ...] = (*_FIELDS, "resolution", "ratio")
#: the positional order of the constructor; resolution and ratio are keyword-only
_POSITIONAL = ("prompt", "model", "negative_prompt", "size", "duration", "seed", "prompt_extend",
               "watermark", "audio", "audio_url", "shot_type")
#: every field (the dataclass field order)
_ORDER = (*_POSITIONAL, "resolution", "ratio")
#: the extra key a stored ``request_json`` carries for a local audio file (not a parameter)
_STORED_SHA = "audio_sha256"



def _random_seed() -> int:
    return random.SystemRandom().randint(catalog.SEED_MIN, catalog.SEED_MAX)


@dataclass(frozen=True, init=False)
class GenerationRequest:
    """One text-to-video request, complete and valid for its model.

    The picture is ``resolution`` + ``ratio`` for every model (``resolution="720P",
    ratio="16:9"``); the catalog maps it to the model's own pixel table. A ``"size"`` model
    (wan2.6 and older) also takes ``size="1280*720"``, the same request (same fingerprint). A
    ``"resolution"`` model (wan2.7, HappyHorse, Wan 3.0) refuses ``size`` and ``shot_type``,
    saying which resolution and ratio to use. Whatever was given, ``resolution``, ``ratio``,
    ``size`` (the pixel size ``W*H``; sent on the wire only to ``"size"`` models), ``width``
    and ``height`` are all set.

    Every value the service would default is made explicit, so that a recorded request says
    exactly what was asked: the picture and ``duration`` default to the model's defaults,
    ``seed`` to a random seed chosen here (the service would pick one and never tell),
    ``audio`` to ``"auto"`` for models with sound and ``"silent"`` for the others,
    ``shot_type`` to ``"single"`` on wan2.6, ``prompt_extend`` to True where the model rewrites
    prompts, ``watermark`` to the model's default (True on HappyHorse, else False).

    ``audio`` is ``"auto"`` (the model makes sound), ``"custom"`` (align to ``audio_url``: an
    http(s) URL, an ``oss://`` upload, or a local wav/mp3 file the client uploads) or
    ``"silent"``. Giving ``audio_url`` implies ``"custom"``. A local file is read here, once:
    it must exist, be a real WAV (RIFF/WAVE) or MP3 (ID3 tag or MPEG layer III frame)
    matching its extension, at most 15 MB and 3–30 s long; the sha256 of the bytes checked
    stands for the file from then on (:attr:`fingerprint`, the store), and no later use of the
    request reads the file again until it is submitted (:meth:`read_audio_file`).

    ``seed`` and ``duration`` take any whole number: a Python or numpy integer, or a float
    with no fractional part such as ``5.0`` (a pandas column with a gap is float); they are
    stored as ``int``. ``True``/``False`` are refused there, and numpy booleans are accepted
    for ``prompt_extend`` and ``watermark``.

    Invalid input raises :class:`~wan_nb.errors.ValidationError` listing every problem, with
    the field, the bad value and what is allowed (an unknown keyword gets a "did you mean").
    """

    prompt: str
    model: str = catalog.DEFAULT_MODEL
    negative_prompt: str = ""
    size: str | None = None
    duration: int | None = None
    seed: int | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None
    audio: str | None = None
    audio_url: str | None = None
    shot_type: str | None = None
    resolution: str | None = None
    ratio: str | None = None
    _spec: ModelSpec = field(init=False, repr=False, compare=False, hash=False)
    _audio_sha256: str | None = field(init=False, repr=False, compare=False, hash=False)
    _fingerprint: str | None = field(init=False, repr=False, compare=False, hash=False)

    # Written by hand (not generated) so that a wrong call is a ValidationError like any other
    # bad input: a missing prompt, an unknown keyword ("did you mean seed?"), extra positionals.
    def __init__(self, prompt: str = _MISSING, model: str = catalog.DEFAULT_MODEL,
                 negative_prompt: str = "", size: str | None = None,
                 duration: int | None = None, seed: int | None = None,
                 prompt_extend: bool | None = None, watermark: bool | None = None,
                 audio: str | None = None, audio_url: str | None = None,
                 shot_type: str | None = None, *extra: Any, resolution: str | None = None,
                 ratio: str | None = None, **unknown: Any) -> None:
        values = dict(zip(_ORDER, (prompt, model, negative_prompt, size, duration, seed,
                                   prompt_extend, watermark, audio, audio_url, shot_type,
                                   resolution, ratio), strict=True))
        errors = _call_errors(extra, unknown)
        self._setup(values, errors, read_file=True)

    def _setup(self, values: Mapping[str, Any], errors: list[tuple[str, str]], *,
               read_file: bool, audio_sha256: str | None = None,
               fingerprint: str | None = None) -> None:
        """Fill in the defaults, then validate: the values purely
        (:func:`wan_nb.validation.problems`), and a
        local audio file by reading it once when ``read_file`` (a request built from user
        input). Without ``read_file`` the file is not looked at: ``audio_sha256`` stands for
        it (recorded in the store, or carried over by :meth:`replace`), and ``fingerprint``
        (the one the store recorded) serves a row written before its sha256 was kept."""
        set_ = object.__setattr__
        for name in _ORDER:
            set_(self, name, _plain(values[name]))
        for name in ("seed", "duration"):
            set_(self, name, _whole(getattr(self, name)))
        set_(self, "_audio_sha256", None)
        set_(self, "_fingerprint", None)
        spec = self._fill_defaults(errors)
        errors += problems(self, spec)
        if spec.protocol == "resolution" and not errors:
            w, h = catalog.pixels(spec.name, str(self.resolution), str(self.ratio))
            set_(self, "size", f"{w}*{h}")  # the picture's size, never sent to this model
        if self.audio_is_local and not {"audio", "audio_url"} & {f for f, _ in errors}:
            if read_file:
                try:
                    audio_sha256 = audiofile.load(str(self.audio_url),
                                                  min_s=spec.audio_min_s).sha256
                except ValidationError as e:
                    errors += e.errors
            elif audio_sha256 is None and fingerprint is not None:
                set_(self, "_fingerprint", fingerprint)
            set_(self, "_audio_sha256", audio_sha256)
        if errors:
            raise ValidationError(errors)

    def _fill_defaults(self, errors: list[tuple[str, str]]) -> ModelSpec:
        """Resolve the model and make every default explicit (pure; an unknown model or a
        missing prompt raises here, with the other problems found so far)."""
        set_ = object.__setattr__
        if self.prompt is _MISSING:
            errors.append(("prompt", "prompt is required: the text describing the video, e.g. "
                                     "GenerationRequest('a red kite over the sea')"))
        try:
            spec = catalog.get_model(self.model)
        except ValidationError as e:
            raise ValidationError(errors + e.errors + check_text(self, 1500)) from None
        set_(self, "_spec", spec)
        set_(self, "model", spec.name)
        if isinstance(self.resolution, str):  # "720p" is 720P: one spelling, one fingerprint
            set_(self, "resolution", self.resolution.upper())
        if spec.protocol == "size":
            errors += self._fill_size(spec)
        else:
            if self.resolution is None:
                set_(self, "resolution", spec.default_resolution)
            if self.ratio is None:
                set_(self, "ratio", spec.default_ratio)
        if self.prompt_extend is None:
            set_(self, "prompt_extend", spec.prompt_extend)
        if self.watermark is None:
            set_(self, "watermark", spec.default_watermark)
        if self.duration is None:
            set_(self, "duration", spec.default_duration)
        if self.seed is None:
            set_(self, "seed", _random_seed())
        if self.audio_url is not None and self.audio is None:
            set_(self, "audio", "custom")
        if self.audio is None:
            set_(self, "audio", spec.default_audio)
        if spec.multi_shot and self.shot_type is None:
            set_(self, "shot_type", "single")
        if isinstance(self.audio_url, os.PathLike):
            set_(self, "audio_url", os.fspath(self.audio_url))
        return spec

    def _fill_size(self, spec: ModelSpec) -> list[tuple[str, str]]:
        """A ``"size"`` model: ``size`` from ``resolution`` + ``ratio`` (or the defaults), or
        ``resolution`` + ``ratio`` from ``size``; both given must agree."""
        set_ = object.__setattr__
        res, ratio = self.resolution, self.ratio
        if self.size is None:
            res = spec.default_resolution if res is None else res
            ratio = spec.default_ratio if ratio is None else ratio
            set_(self, "resolution", res)
            set_(self, "ratio", ratio)
            if isinstance(res, str) and isinstance(ratio, str) \
                    and ratio in spec.table.get(res, {}):
                w, h = spec.table[res][ratio]
                set_(self, "size", f"{w}*{h}")
            return []
        try:
            found = catalog.resolution_ratio(spec.name, self.size)
        except ValidationError:
            return []  # the size itself is reported by validation
        set_(self, "resolution", found[0])
        set_(self, "ratio", found[1])
        if (res is not None and res != found[0]) or (ratio is not None and ratio != found[1]):
            given = ", ".join(f"{k}={v!r}" for k, v in (("resolution", res), ("ratio", ratio))
                              if v is not None)
            return [("size", f"size {self.size!r} is resolution {found[0]!r}, ratio "
                             f"{found[1]!r} on {spec.name}, not {given}; give either size or "
                             "resolution and ratio")]
        return []

    # -- derived -----------------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def width(self) -> int:
        return catalog.parse_size(self.size or "")[0]

    @property
    def height(self) -> int:
        return catalog.parse_size(self.size or "")[1]

    @property
    def tier(self) -> str:
        """The resolution ("480P", "720P", "1080P")."""
        return str(self.resolution)

    @property
    def audio_is_local(self) -> bool:
        """True when ``audio_url`` names a local file the client must upload first."""
        return self.audio == "custom" and _is_local(self.audio_url)

    @property
    def estimated_cost(self) -> float | None:
        return catalog.estimate_cost(self.model, str(self.resolution), int(self.duration or 0))

    # -- wire --------------------------------------------------------------------------------
    def wire_body(self, *, region: str | None = None, audio_url: str | None = None) -> dict:
        """The exact JSON body of the create call: reference §2 for a ``"size"`` model, §7.2
        for a ``"resolution"`` model (``resolution`` and ``ratio``, no ``size``, no
        ``shot_type``; no ``prompt_extend`` where the model does not rewrite; on wan2.7
        ``audio: false`` is passed through only when silence is asked for).

        ``audio_url`` overrides the request's (the client passes the ``oss://`` URL of an
        uploaded local file here).
        """
        spec = self._spec
        inp: dict[str, Any] = {"prompt": self.prompt}
        if self.negative_prompt:
            inp["negative_prompt"] = self.negative_prompt
        params: dict[str, Any] = (
            {"size": self.size} if spec.protocol == "size"
            else {"resolution": self.resolution, "ratio": self.ratio})
        params["duration"] = self.duration
        if spec.prompt_extend:
            params["prompt_extend"] = self.prompt_extend
        params.update(watermark=self.watermark, seed=self.seed)
        if self.audio == "custom":
            inp["audio_url"] = audio_url or self.audio_url
        elif spec.audio_switch == "documented":
            params["audio"] = self.audio == "auto"
        elif spec.audio_switch == "passthrough" and self.audio == "silent":
            params["audio"] = False
        if spec.multi_shot:
            params["shot_type"] = self.shot_type
        return {"model": catalog.wire_model_name(self.model, region), "input": inp,
                "parameters": params}

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> "GenerationRequest":
        """Parse a create-call body (as the emulator receives it) into a request.

        Fields the official SDK adds (``input.extend_prompt``, ``input.function``, SDK-only
        ``parameters``) are ignored. Wrong types raise :class:`ValidationError`.
        """
        if not isinstance(body, Mapping):
            raise ValidationError([("body", "the request body must be a JSON object")])
        inp = body.get("input")
        params = body.get("parameters")
        params = {} if params is None else params
        if not isinstance(inp, Mapping):
            raise ValidationError([("input", "input must be an object with a prompt")])
        if not isinstance(params, Mapping):
            raise ValidationError([("parameters", "parameters must be an object")])
        if "model" not in body:
            raise ValidationError([("model", "model is required")])
        audio_url = inp.get("audio_url") or None
        audio: str | None = None
        if audio_url is None and "audio" in params:
            if not isinstance(params["audio"], bool):
                raise ValidationError([("audio", f"audio must be true or false, "
                                                 f"not {params['audio']!r}")])
            audio = "auto" if params["audio"] else "silent"
        kwargs: dict[str, Any] = {
            "prompt": inp.get("prompt"),
            "negative_prompt": inp.get("negative_prompt") or "",
            "model": body.get("model"),
            "audio_url": audio_url,
            "audio": audio,
        }
        for name in ("size", "resolution", "ratio", "duration", "seed", "prompt_extend",
                     "watermark", "shot_type"):
            if params.get(name) is not None:
                kwargs[name] = params[name]
        return cls(**kwargs)

    # -- identity ----------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """All parameters as a plain dict (what :meth:`from_params` takes back): for a
        ``"size"`` model its size (not resolution and ratio, which follow from it), for a
        ``"resolution"`` model its resolution and ratio (no size, no shot_type)."""
        names = _FIELDS if self._spec.protocol == "size" else _RESOLUTION_FIELDS
        return {name: getattr(self, name) for name in names}

    def stored_json(self) -> str:
        """The JSON text the store keeps as ``request_json``: :meth:`params`, plus the sha256
        of a local audio file, so that a request read back needs neither the file nor a
        re-hash."""
        p = self.params()
        if self.audio_sha256 is not None:
            p[_STORED_SHA] = self.audio_sha256
        return json.dumps(p, ensure_ascii=False, sort_keys=True)

    @property
    def audio_sha256(self) -> str | None:
        """sha256 of the local audio file's content as checked when the request was built (or
        as the store recorded it); never read from the file here. ``None`` for URLs, and for a
        request read back from a store row written before the sha256 was recorded."""
        return self._audio_sha256 if self.audio_is_local else None

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical parameters: same request → same fingerprint.

        A local audio file counts by its content (the recorded sha256), not its path. Computed
        once per request, without touching the filesystem; the one exception is a request
        read back from a store row written before the sha256 was recorded and without the
        row's fingerprint (``from_params(..., fingerprint=...)``): its file is hashed once,
        here, and a file that is gone is a :class:`ValidationError`.
        """
        if self._fingerprint is None:
            sha = self.audio_sha256
            if self.audio_is_local and sha is None:
                sha = audiofile.hash_file(str(self.audio_url))
            object.__setattr__(self, "_fingerprint", _fingerprint(self.params(), sha))
        return str(self._fingerprint)

    def read_audio_file(self) -> bytes:
        """The local audio file's bytes, read and checked again for the upload (I/O; the
        submit path calls this, in a worker thread). :class:`ValidationError` before anything
        is sent when the file is gone or no longer acceptable audio, or when its content is
        not the one this request was recorded with (its sha256, or for an old store row its
        fingerprint): the run would otherwise be sent with other audio than it says."""
        if not self.audio_is_local:
            raise ValidationError([("audio_url", f"audio_url {self.audio_url!r} names no local "
                                                 "file to read")])
        audio = audiofile.load(str(self.audio_url), min_s=self._spec.audio_min_s)
        recorded = self._audio_sha256
        changed = (audio.sha256 != recorded if recorded is not None else
                   self._fingerprint is not None
                   and _fingerprint(self.params(), audio.sha256) != self._fingerprint)
        if changed:
            raise ValidationError([("audio_url", f"audio file {audio.path!r} changed since the "
                                                 "request was recorded (its sha256 differs); "
                                                 "submit it again as a new request")])
        return audio.data

    def replace(self, **changes: Any) -> "GenerationRequest":
        """A copy with some parameters changed, validated again.

        The same local ``audio_url`` is not read again: the recorded sha256 carries over (the
        file is checked once more when the copy is submitted). A new local file is read and
        checked like in the constructor.
        """
        kw = self.params()
        if "model" in changes and changes["model"] != self.model:
            # the old model's defaults may not fit the new one: let them be chosen again (the
            # rewrite and watermark flags only when they are the old model's defaults)
            spec = self._spec
            for name in ("size", "resolution", "ratio", "duration", "audio", "shot_type"):
                if name not in changes:
                    kw.pop(name, None)
            for name, default in (("prompt_extend", spec.prompt_extend),
                                  ("watermark", spec.default_watermark)):
                if name not in changes and kw.get(name) == default:
                    kw.pop(name)
        kw.update(changes)
        if self._audio_sha256 is None or kw.get("audio_url") != self.audio_url:
            return GenerationRequest(**kw)
        errors = _call_errors((), {k: v for k, v in kw.items() if k not in PARAMETERS})
        copy = GenerationRequest.__new__(GenerationRequest)
        copy._setup({name: kw.get(name, _DEFAULTS[name]) for name in _ORDER}, errors,
                    read_file=False, audio_sha256=self._audio_sha256)
        return copy

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | str, *, stored: bool = False,
                    fingerprint: str | None = None) -> "GenerationRequest":
        """Inverse of :meth:`params`; also takes the JSON text the store keeps as
        ``request_json`` (:meth:`stored_json`).

        ``stored=True`` is for a request read back from the store: every value is validated
        (purely) and the local audio file is not looked at: it may be gone, moved or changed
        since the run; the recorded sha256 stands for it, and a changed file is refused when
        the request is submitted (:meth:`read_audio_file`). ``fingerprint`` is the one the
        store recorded for the row: it stands for the file of a row written before the sha256
        was recorded. Without ``stored``, a local file is read and checked as for a new
        request.
        """
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError as e:
                raise ValidationError([("request_json", f"not valid JSON: {e}")]) from None
        if not isinstance(params, Mapping):
            raise ValidationError([("request", f"expected a mapping of parameters, got "
                                               f"{type(params).__name__}")])
        params = dict(params)
        sha = params.pop(_STORED_SHA, None)
        errors = _call_errors((), {k: v for k, v in params.items() if k not in PARAMETERS})
        values = {name: params.get(name, _DEFAULTS[name]) for name in _ORDER}
        request = cls.__new__(cls)
        request._setup(values, errors, read_file=not stored,
                       audio_sha256=sha if _is_sha256(sha) else None,
                       fingerprint=fingerprint if _is_sha256(fingerprint) else None)
        return request


_DEFAULTS: dict[str, Any] = {"prompt": _MISSING, "model": catalog.DEFAULT_MODEL,
                             "negative_prompt": "", "size": None, "duration": None,
                             "seed": None, "prompt_extend": None, "watermark": None,
                             "audio": None, "audio_url": None, "shot_type": None,
                             "resolution": None, "ratio": None}


def _call_errors(extra: tuple[Any, ...], unknown: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with how the request was called: unknown keywords, too many positionals."""
    errors = [(name, unknown_parameter(name)) for name in sorted(unknown)]
    if extra:
        errors.append(("request", f"GenerationRequest takes at most {len(_POSITIONAL)} values "
                                  f"by position ({', '.join(_POSITIONAL)}); got "
                                  f"{len(_POSITIONAL) + len(extra)}; pass the others by name"))
    return errors


def unknown_parameter(name: str, allowed: Iterable[str] = PARAMETERS) -> str:
    """The message for an unknown parameter ``name``, with the close match if there is one:
    "unknown parameter 'sed' (did you mean 'seed'?); allowed: …"."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown parameter {name!r}{hint}; allowed: {', '.join(allowed)}"


def _is_local(url: str | None) -> bool:
    return bool(url) and not str(url).startswith(("http://", "https://", "oss://"))


def _is_sha256(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _fingerprint(params: dict[str, Any], audio_sha256: str | None) -> str:
    """The canonical hash of a request's parameters, a local audio file by its content (pure;
    unchanged since the first version, so recorded fingerprints keep matching)."""
    if audio_sha256 is not None:
        params = {**params, "audio_url": "sha256:" + audio_sha256}
    blob = json.dumps(params, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _plain(v: Any) -> Any:
    """numpy scalars (and other look-alikes) as the plain Python values they stand for."""
    if getattr(v, "shape", None) == () and hasattr(v, "dtype") and hasattr(v, "item"):
        v = v.item()
    if isinstance(v, str) and type(v) is not str:
        return str(v)
    if isinstance(v, numbers.Integral) and not isinstance(v, (bool, int)):
        return int(v)
    return v


def _whole(v: Any) -> Any:
    """A whole number as ``int`` (``5``, ``numpy.int64(5)``, ``5.0``); anything else as is."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return v
    return int(f) if math.isfinite(f) and f.is_integer() else v
