"""GenerationRequest: every parameter of one text-to-video task, validated before sending.

>>> r = GenerationRequest("a fox detective in the rain", model="wan2.5-t2v-preview",
...                       size="832*480", duration=10, seed=12345)
>>> r.wire_body()["parameters"]["size"]
'832*480'
>>> r.fingerprint == GenerationRequest(seed=12345, duration=10, size="832*480",
...     model="wan2.5-t2v-preview", prompt="a fox detective in the rain").fingerprint
True
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import catalog
from .catalog import ModelSpec
from .errors import ValidationError

_FIELDS = ("prompt", "negative_prompt", "model", "size", "duration", "seed", "prompt_extend",
           "watermark", "audio", "audio_url", "shot_type")


def _random_seed() -> int:
    return random.SystemRandom().randint(catalog.SEED_MIN, catalog.SEED_MAX)


@dataclass(frozen=True)
class GenerationRequest:
    """One text-to-video request, complete and valid for its model.

    Every value the service would default is made explicit, so that a recorded request says
    exactly what was asked: ``size`` and ``duration`` default to the model's defaults, ``seed``
    to a random seed chosen here (the service would pick one and never tell), ``audio`` to
    ``"auto"`` for models with sound and ``"silent"`` for the others, ``shot_type`` to
    ``"single"`` on wan2.6.

    ``audio`` is ``"auto"`` (the model makes sound), ``"custom"`` (align to ``audio_url``: an
    http(s) URL, an ``oss://`` upload, or a local wav/mp3 file the client uploads) or
    ``"silent"``. Giving ``audio_url`` implies ``"custom"``.

    Invalid input raises :class:`~wan_nb.errors.ValidationError` listing every problem, with
    the field, the bad value and what is allowed.
    """

    prompt: str
    model: str = catalog.DEFAULT_MODEL
    negative_prompt: str = ""
    size: str | None = None
    duration: int | None = None
    seed: int | None = None
    prompt_extend: bool = True
    watermark: bool = False
    audio: str | None = None
    audio_url: str | None = None
    shot_type: str | None = None
    _spec: ModelSpec = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        errors: list[tuple[str, str]] = []
        try:
            spec = catalog.get_model(self.model)
        except ValidationError as e:
            raise ValidationError(e.errors + _check_text(self, 1500)) from None
        set_ = object.__setattr__
        set_(self, "_spec", spec)
        set_(self, "model", spec.name)
        if self.size is None:
            set_(self, "size", spec.default_size)
        if self.duration is None:
            set_(self, "duration", spec.default_duration)
        if self.seed is None:
            set_(self, "seed", _random_seed())
        if self.audio_url is not None and self.audio is None:
            set_(self, "audio", "custom")
        if self.audio is None:
            set_(self, "audio", "auto" if spec.audio else "silent")
        if spec.multi_shot and self.shot_type is None:
            set_(self, "shot_type", "single")
        if isinstance(self.audio_url, Path):
            set_(self, "audio_url", str(self.audio_url))
        errors += _check_text(self, spec.prompt_max)
        errors += _check_params(self, spec)
        if errors:
            raise ValidationError(errors)

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
        return catalog.tier_of(self.size or "")

    @property
    def audio_is_local(self) -> bool:
        """True when ``audio_url`` names a local file the client must upload first."""
        return self.audio == "custom" and _is_local(self.audio_url)

    @property
    def estimated_cost(self) -> float | None:
        return catalog.estimate_cost(self.model, self.size or "", int(self.duration or 0))

    # -- wire --------------------------------------------------------------------------------
    def wire_body(self, *, region: str | None = None, audio_url: str | None = None) -> dict:
        """The exact JSON body of the create call (reference §2).

        ``audio_url`` overrides the request's (the client passes the ``oss://`` URL of an
        uploaded local file here).
        """
        inp: dict[str, Any] = {"prompt": self.prompt}
        if self.negative_prompt:
            inp["negative_prompt"] = self.negative_prompt
        params: dict[str, Any] = {
            "size": self.size,
            "duration": self.duration,
            "prompt_extend": self.prompt_extend,
            "watermark": self.watermark,
            "seed": self.seed,
        }
        if self._spec.audio:
            if self.audio == "custom":
                inp["audio_url"] = audio_url or self.audio_url
            else:
                params["audio"] = self.audio == "auto"
        if self._spec.multi_shot:
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
        for name in ("size", "duration", "seed", "prompt_extend", "watermark", "shot_type"):
            if params.get(name) is not None:
                kwargs[name] = params[name]
        return cls(**kwargs)

    # -- identity ----------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """All parameters as a plain dict (what the store records as ``request_json``)."""
        return {name: getattr(self, name) for name in _FIELDS}

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical parameters: same request → same fingerprint.

        A local audio file counts by its content, not its path.
        """
        p = self.params()
        if self.audio_is_local:
            p["audio_url"] = "sha256:" + file_sha256(str(self.audio_url))
        blob = json.dumps(p, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def replace(self, **changes: Any) -> "GenerationRequest":
        """A copy with some parameters changed (validated again)."""
        kw = self.params()
        if "model" in changes and changes["model"] != self.model:
            # the old model's defaults may not fit the new one: let them be chosen again
            for name in ("size", "duration", "audio", "shot_type"):
                if name not in changes:
                    kw.pop(name)
        kw.update(changes)
        return GenerationRequest(**kw)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | str) -> "GenerationRequest":
        """Inverse of :meth:`params`; also takes the JSON text the store keeps as
        ``request_json``."""
        if isinstance(params, str):
            params = json.loads(params)
        unknown = sorted(set(params) - set(_FIELDS))
        if unknown:
            raise ValidationError([(u, f"unknown parameter {u!r}; allowed: {', '.join(_FIELDS)}")
                                   for u in unknown])
        return cls(**dict(params))


def _is_local(url: str | None) -> bool:
    return bool(url) and not str(url).startswith(("http://", "https://", "oss://"))


def local_path(url: str) -> str:
    """The file a local ``audio_url`` names (a path or a ``file://`` URL)."""
    return url.removeprefix("file://")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's content (``file://`` URLs accepted), read in 1 MiB chunks."""
    path = local_path(os.fspath(path))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_text(r: GenerationRequest, prompt_max: int) -> list[tuple[str, str]]:
    errors = []
    if not isinstance(r.prompt, str) or not r.prompt.strip():
        errors.append(("prompt", f"prompt must be a non-empty string, not {r.prompt!r}"))
    elif len(r.prompt) > prompt_max:
        errors.append(("prompt", f"prompt has {len(r.prompt)} characters; {r.model} allows at "
                                 f"most {prompt_max} (the service would silently cut it)"))
    if not isinstance(r.negative_prompt, str):
        errors.append(("negative_prompt", f"negative_prompt must be a string, "
                                          f"not {r.negative_prompt!r}"))
    elif len(r.negative_prompt) > catalog.NEGATIVE_PROMPT_MAX:
        errors.append(("negative_prompt", f"negative_prompt has {len(r.negative_prompt)} "
                                          f"characters; at most {catalog.NEGATIVE_PROMPT_MAX} "
                                          "are allowed"))
    return errors


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_params(r: GenerationRequest, spec: ModelSpec) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    name = spec.name
    if not isinstance(r.size, str) or r.size not in spec.sizes:
        hint = ""
        if isinstance(r.size, str) and "x" in r.size.lower():
            hint = " (sizes are written with '*', e.g. '1280*720')"
        errors.append(("size", f"size {r.size!r} is not offered by {name}{hint}; choose one "
                               f"of {', '.join(spec.sizes)}"))
    if not _is_int(r.duration) or r.duration not in spec.durations:
        allowed = (f"an integer from {spec.durations[0]} to {spec.durations[-1]}"
                   if len(spec.durations) > 3 else " or ".join(map(str, spec.durations)))
        errors.append(("duration", f"duration {r.duration!r} is not offered by {name}; "
                                   f"use {allowed} (seconds)"))
    if not _is_int(r.seed) or not catalog.SEED_MIN <= r.seed <= catalog.SEED_MAX:
        errors.append(("seed", f"seed {r.seed!r} must be an integer from {catalog.SEED_MIN} to "
                               f"{catalog.SEED_MAX}"))
    for flag in ("prompt_extend", "watermark"):
        if not isinstance(getattr(r, flag), bool):
            errors.append((flag, f"{flag} must be True or False, not {getattr(r, flag)!r}"))
    errors += _check_audio(r, spec)
    if r.shot_type is not None:
        if not spec.multi_shot:
            multi = [m.name for m in catalog.MODELS.values() if m.multi_shot]
            errors.append(("shot_type", f"shot_type is only supported by {', '.join(multi)}, "
                                        f"not {name}; leave it unset"))
        elif r.shot_type not in ("single", "multi"):
            errors.append(("shot_type", f"shot_type {r.shot_type!r} must be 'single' or "
                                        "'multi'"))
        elif r.shot_type == "multi" and r.prompt_extend is not True:
            errors.append(("shot_type", "shot_type 'multi' only takes effect with "
                                        "prompt_extend=True; set prompt_extend=True or use "
                                        "'single'"))
    return errors


def _check_audio(r: GenerationRequest, spec: ModelSpec) -> list[tuple[str, str]]:
    name = spec.name
    with_audio = ", ".join(m.name for m in catalog.MODELS.values() if m.audio)
    if r.audio not in ("auto", "custom", "silent"):
        return [("audio", f"audio {r.audio!r} must be 'auto', 'custom' or 'silent'")]
    if not spec.audio and r.audio != "silent":
        what = "audio_url" if r.audio_url is not None else f"audio {r.audio!r}"
        return [("audio_url" if r.audio_url is not None else "audio",
                 f"{what} is not supported by {name}, which only makes silent video; "
                 f"models with audio: {with_audio}")]
    if r.audio != "custom":
        if r.audio_url is not None:
            return [("audio_url", f"audio_url is only used with audio='custom', not "
                                  f"audio={r.audio!r}")]
        return []
    url = r.audio_url
    if not isinstance(url, str) or not url:
        return [("audio_url", "audio='custom' needs audio_url: an http(s) URL, an oss:// "
                              "upload or a local .wav/.mp3 file")]
    if url.startswith(("http://", "https://")):
        return [] if len(url) > len("https://") else [("audio_url", f"audio_url {url!r} has "
                                                                    "no host")]
    if url.startswith("oss://"):
        return []
    if "://" in url and not url.startswith("file://"):
        return [("audio_url", f"audio_url {url!r} must be an http(s) URL, an oss:// upload or "
                              "a local file")]
    path = local_path(url)
    if not os.path.isfile(path):
        return [("audio_url", f"audio_url {url!r} is neither an http(s) URL nor an existing "
                              "local file")]
    if not path.lower().endswith(catalog.AUDIO_EXTENSIONS):
        return [("audio_url", f"audio file {path!r} must be .wav or .mp3")]
    size = os.path.getsize(path)
    if size > catalog.AUDIO_MAX_BYTES:
        return [("audio_url", f"audio file {path!r} is {size / 2**20:.1f} MB; at most 15 MB")]
    return []
