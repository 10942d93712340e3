"""Pure validation of a request's values against the catalog: no file, socket or clock.

:func:`problems` returns every ``(field, message)`` wrong with a
:class:`~wan_nb.request.GenerationRequest` (the field, the bad value, what is allowed);
:func:`check_tags` checks a run's tags. The one I/O step, checking a local audio file, is
:func:`check_audio_file` (it reads the file once, through :mod:`wan_nb.audiofile`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from . import audiofile, catalog
from .audiofile import local_path
from .catalog import ModelSpec
from .errors import ValidationError

if TYPE_CHECKING:
    from .request import GenerationRequest


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def check_tags(tags: Any) -> list[str]:
    """The tags of a run as a list: a string is one tag (``tags="baseline"``), ``None`` is
    none; otherwise an iterable of non-empty strings. Repeats are dropped, order kept.
    :class:`ValidationError` for anything else, before anything is written."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    elif isinstance(tags, (bytes, Mapping)) or not isinstance(tags, Iterable):
        raise ValidationError([("tags", f"tags must be a string or a list of strings, not "
                                        f"{_show(tags)}")])
    out: list[str] = []
    errors: list[tuple[str, str]] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            errors.append(("tags", f"each tag must be a non-empty string, not {_show(tag)}"))
            continue
        errors += _unicode_errors("tags", str(tag))
        if tag not in out:
            out.append(str(tag))
    if errors:
        raise ValidationError(errors)
    return out



def _show(v: Any) -> str:
    """A value for a message; the type is named where the repr alone would mislead."""
    if isinstance(v, bool):
        return f"{v!r} (a bool)"
    if type(v).__module__ == "builtins" or v is _MISSING:
        return repr(v)
    return f"{v!r} (a {type(v).__module__}.{type(v).__qualname__})"


def _unicode_errors(name: str, text: str) -> list[tuple[str, str]]:
    """A lone surrogate cannot be encoded as UTF-8: it would fail later, in the store or on the
    wire. Refuse it here, saying where it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return [(name, f"{name} contains an unpaired surrogate {text[e.start]!r} at character "
                       f"{e.start} (not valid Unicode text, often left by a broken copy-paste "
                       "or a mis-decoded file); remove it or fix the source text")]
    return []


def problems(r: GenerationRequest, spec: ModelSpec) -> list[tuple[str, str]]:
    """Every problem with the request's values, checked against the catalog: ``(field,
    message)`` pairs, each message naming the bad value and what is allowed. Pure: no file is
    looked at (a local ``audio_url`` is checked for its form only; its file is
    :func:`wan_nb.audiofile.load`'s business)."""
    return check_text(r, spec.prompt_max, spec) + _check_params(r, spec)


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF
            or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F)


def check_text(r: GenerationRequest, prompt_max: int,
               spec: ModelSpec | None = None) -> list[tuple[str, str]]:
    errors = []
    cjk = (spec is not None and spec.prompt_max_cjk is not None and isinstance(r.prompt, str)
           and any(_is_cjk(c) for c in r.prompt))
    if cjk and spec is not None and spec.prompt_max_cjk is not None:
        prompt_max = spec.prompt_max_cjk
    if r.prompt is _MISSING:
        pass  # already reported as required
    elif not isinstance(r.prompt, str) or not r.prompt.strip():
        errors.append(("prompt", f"prompt must be a non-empty string, not {_show(r.prompt)}"))
    elif len(r.prompt) > prompt_max:
        which = " for a prompt with Chinese, Japanese or Korean text" if cjk else ""
        errors.append(("prompt", f"prompt has {len(r.prompt)} characters; {r.model} allows at "
                                 f"most {prompt_max}{which} (the service would silently cut "
                                 "it)"))
    else:
        errors += _unicode_errors("prompt", r.prompt)
    negative_max = catalog.NEGATIVE_PROMPT_MAX if spec is None else spec.negative_prompt_max
    if not isinstance(r.negative_prompt, str):
        errors.append(("negative_prompt", f"negative_prompt must be a string, "
                                          f"not {_show(r.negative_prompt)}"))
    elif r.negative_prompt and spec is not None and not spec.negative_prompt:
        takers = ", ".join(m.name for m in catalog.MODELS.values() if m.negative_prompt)
        errors.append(("negative_prompt", f"negative_prompt is not taken by {spec.name}; leave "
                                          f"it empty (models with a negative prompt: {takers})"))
    elif len(r.negative_prompt) > negative_max:
        errors.append(("negative_prompt", f"negative_prompt has {len(r.negative_prompt)} "
                                          f"characters; at most {negative_max} "
                                          "are allowed"))
    else:
        errors += _unicode_errors("negative_prompt", r.negative_prompt)
    return errors


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_params(r: GenerationRequest, spec: ModelSpec) -> list[tuple[str, str]]:
    errors = _check_picture(r, spec)
    name = spec.name
    if not _is_int(r.duration) or r.duration not in spec.durations:
        allowed = (f"an integer from {spec.durations[0]} to {spec.durations[-1]}"
                   if len(spec.durations) > 3 else " or ".join(map(str, spec.durations)))
        errors.append(("duration", f"duration {_show(r.duration)} is not offered by {name}; "
                                   f"use {allowed} (seconds)"))
    if not _is_int(r.seed) or not catalog.SEED_MIN <= int(r.seed or 0) <= catalog.SEED_MAX:
        errors.append(("seed", f"seed {_show(r.seed)} must be a whole number from "
                               f"{catalog.SEED_MIN} to {catalog.SEED_MAX} (an integer)"))
    for flag in ("prompt_extend", "watermark"):
        if not isinstance(getattr(r, flag), bool):
            errors.append((flag, f"{flag} must be True or False, not {_show(getattr(r, flag))}"))
    if r.prompt_extend is True and not spec.prompt_extend:
        errors.append(("prompt_extend", f"prompt_extend=True is not offered by {name}, which "
                                        "does not rewrite prompts; leave it unset or False"))
    errors += _check_audio(r, spec)
    if r.shot_type is not None:
        if spec.protocol == "resolution":
            how = (" (ask for several shots in the prompt itself)"
                   if spec.multi_shot_in_prompt else "")
            errors.append(("shot_type", f"shot_type {r.shot_type!r} is not used by {name}, "
                                        f"which would ignore it{how}; leave it unset"))
        elif not spec.multi_shot:
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


def _check_picture(r: GenerationRequest, spec: ModelSpec) -> list[tuple[str, str]]:
    """``size`` for a ``"size"`` model that has one; otherwise ``resolution`` + ``ratio`` (and a
    ``size`` given to a ``"resolution"`` model is refused, naming what to use instead)."""
    name = spec.name
    if spec.protocol == "size" and r.size is not None:
        if isinstance(r.size, str) and r.size in spec.sizes:
            return []
        hint = ""
        if isinstance(r.size, str) and "x" in r.size.lower():
            hint = " (sizes are written with '*', e.g. '1280*720')"
        return [("size", f"size {r.size!r} is not offered by {name}{hint}; choose one "
                         f"of {', '.join(spec.sizes)}")]
    errors = []
    if spec.protocol == "resolution" and r.size is not None:
        errors.append(("size", _size_refusal(r.size, spec)))
    if not isinstance(r.resolution, str) or r.resolution not in spec.resolutions:
        errors.append(("resolution", catalog.resolution_message(spec, r.resolution)))
    elif not isinstance(r.ratio, str) or r.ratio not in spec.ratios_at(r.resolution):
        errors.append(("ratio", catalog.ratio_message(spec, r.resolution, r.ratio)))
    return errors


def _size_refusal(size: Any, spec: ModelSpec) -> str:
    """What to say to ``size=`` on a ``"resolution"`` model: the resolution and ratio that
    stand for it, when there are such."""
    found = None
    if isinstance(size, str):
        for table in (catalog.PIXEL_TABLES["size"], spec.table):  # "adaptive" only last
            found = found or next(((res, ratio) for res, by in table.items()
                                   for ratio, (w, h) in by.items() if size == f"{w}*{h}"),
                                  None)
    head = f"size is not used by {spec.name}, which takes resolution and ratio"
    if found and found[0] in spec.resolutions and found[1] in spec.ratios_at(found[0]):
        w, h = spec.table[found[0]][found[1]]
        return (f"{head}: instead of size={size!r} use resolution={found[0]!r}, "
                f"ratio={found[1]!r} ({w}*{h} on {spec.name})")
    return (f"{head}; size={size!r} has no match: use resolution= one of "
            f"{', '.join(spec.resolutions)} and ratio= one of {', '.join(spec.ratios)}")


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
    if r.audio == "custom" and not spec.custom_audio:
        takers = ", ".join(m.name for m in catalog.MODELS.values() if m.custom_audio)
        return [("audio_url" if r.audio_url is not None else "audio",
                 f"custom audio (audio_url) is not supported by {name}; use audio="
                 f"{' or '.join(repr(m) for m in spec.audio_modes)}; models taking audio_url: "
                 f"{takers}")]
    if r.audio not in spec.audio_modes:
        return [("audio", f"audio {r.audio!r} is not offered by {name}; use "
                          f"{' or '.join(repr(m) for m in spec.audio_modes)}")]
    if r.audio != "custom":
        if r.audio_url is not None:
            return [("audio_url", f"audio_url is only used with audio='custom', not "
                                  f"audio={r.audio!r}")]
        return []
    url = r.audio_url
    if not isinstance(url, str) or not url:
        return [("audio_url", "audio='custom' needs audio_url: an http(s) URL, an oss:// "
                              "upload or a local .wav/.mp3 file")]
    bad = _unicode_errors("audio_url", url)
    if bad:
        return bad
    if url.startswith(("http://", "https://")):
        return [] if len(url) > len("https://") else [("audio_url", f"audio_url {url!r} has "
                                                                    "no host")]
    if url.startswith("oss://"):
        return []
    if "://" in url and not url.startswith("file://"):
        return [("audio_url", f"audio_url {url!r} must be an http(s) URL, an oss:// upload or "
                              "a local file")]
    if not local_path(url).lower().endswith(catalog.AUDIO_EXTENSIONS):
        return [("audio_url", f"audio file {local_path(url)!r} must be .wav or .mp3")]
    return []  # the file itself is I/O: read once, by audiofile.load


def check_audio_file(url: str, model: str | None = None) -> None:
    """:class:`ValidationError` unless the local file ``url`` names is acceptable audio (the
    client calls this again right before uploading: the file may have changed since), for
    ``model`` when given (wan2.7 takes 2 s, the others 3 s). I/O: the file is read once
    (:func:`wan_nb.audiofile.load`)."""
    min_s = catalog.AUDIO_MIN_S if model is None else catalog.get_model(model).audio_min_s
    audiofile.load(url, min_s=min_s)
