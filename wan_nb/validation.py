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
    return check_text(r, spec.prompt_max) + _check_params(r, spec)


def check_text(r: GenerationRequest, prompt_max: int) -> list[tuple[str, str]]:
    errors = []
    if r.prompt is _MISSING:
        pass  # already reported as required
    elif not isinstance(r.prompt, str) or not r.prompt.strip():
        errors.append(("prompt", f"prompt must be a non-empty string, not {_show(r.prompt)}"))
    elif len(r.prompt) > prompt_max:
        errors.append(("prompt", f"prompt has {len(r.prompt)} characters; {r.model} allows at "
                                 f"most {prompt_max} (the service would silently cut it)"))
    else:
        errors += _unicode_errors("prompt", r.prompt)
    if not isinstance(r.negative_prompt, str):
        errors.append(("negative_prompt", f"negative_prompt must be a string, "
                                          f"not {_show(r.negative_prompt)}"))
    elif len(r.negative_prompt) > catalog.NEGATIVE_PROMPT_MAX:
        errors.append(("negative_prompt", f"negative_prompt has {len(r.negative_prompt)} "
                                          f"characters; at most {catalog.NEGATIVE_PROMPT_MAX} "
                                          "are allowed"))
    else:
        errors += _unicode_errors("negative_prompt", r.negative_prompt)
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
        errors.append(("duration", f"duration {_show(r.duration)} is not offered by {name}; "
                                   f"use {allowed} (seconds)"))
    if not _is_int(r.seed) or not catalog.SEED_MIN <= int(r.seed or 0) <= catalog.SEED_MAX:
        errors.append(("seed", f"seed {_show(r.seed)} must be a whole number from "
                               f"{catalog.SEED_MIN} to {catalog.SEED_MAX} (an integer)"))
    for flag in ("prompt_extend", "watermark"):
        if not isinstance(getattr(r, flag), bool):
            errors.append((flag, f"{flag} must be True or False, not {_show(getattr(r, flag))}"))
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


def check_audio_file(url: str) -> None:
    """:class:`ValidationError` unless the local file ``url`` names is acceptable audio (the
    client calls this again right before uploading: the file may have changed since). I/O:
    the file is read once (:func:`wan_nb.audiofile.load`)."""
    audiofile.load(url)
