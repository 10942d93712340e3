"""What the Wan text-to-video models accept: data first, lookups second.

Every decision about the DashScope API lives here, so that a change of the service is a change
of one table. Sources: ``shared/reference/dashscope-t2v-api.md`` and the seed document. Where
they disagree the choice is marked ``DECISION`` below.

>>> get_model("wanx2.1-t2v-turbo").name
'wan2.1-t2v-turbo'
>>> sizes_for("wan2.2-t2v-plus")
('832*480', '480*832', '624*624', '1920*1080', '1080*1920', '1440*1440', '1632*1248', '1248*1632')
>>> estimate_cost("wan2.5-t2v-preview", "832*480", 10)
0.5
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Literal

from .errors import ValidationError

Tier = Literal["480P", "720P", "1080P"]
Region = Literal["singapore", "beijing", "virginia"]

#: API bases per region (the SDK's ``base_http_api_url`` is these plus ``/api/v1``).
REGIONS: dict[str, str] = {
    "singapore": "https://dashscope-intl.aliyuncs.com",
    "beijing": "https://dashscope.aliyuncs.com",
    "virginia": "https://dashscope-us.aliyuncs.com",
}
DEFAULT_REGION = "singapore"

#: Paths, relative to the base.
CREATE_PATH = "/api/v1/services/aigc/video-generation/video-synthesis"
TASKS_PATH = "/api/v1/tasks"
UPLOAD_POLICY_PATH = "/api/v1/uploads"

#: Sizes by tier and aspect. ``size`` on the wire is always a concrete ``W*H`` string.
SIZES: dict[str, dict[str, str]] = {
    "480P": {"16:9": "832*480", "9:16": "480*832", "1:1": "624*624"},
    "720P": {"16:9": "1280*720", "9:16": "720*1280", "1:1": "960*960",
             "4:3": "1088*832", "3:4": "832*1088"},
    "1080P": {"16:9": "1920*1080", "9:16": "1080*1920", "1:1": "1440*1440",
              "4:3": "1632*1248", "3:4": "1248*1632"},
}

FPS = 30
NEGATIVE_PROMPT_MAX = 500
SEED_MIN, SEED_MAX = 0, 2**31 - 1
AUDIO_MIN_S, AUDIO_MAX_S = 3.0, 30.0
AUDIO_MAX_BYTES = 15 * 1024 * 1024
AUDIO_EXTENSIONS = (".wav", ".mp3")
#: task ids and result URLs live this long on the service
TASK_TTL = _dt.timedelta(hours=24)
#: query + list + cancel, per account
QUERY_RATE_PER_S = 20
#: DECISION: the service's timestamps carry no zone; Beijing documents UTC+8 and Singapore is
#: undocumented, so both are parsed as UTC+8 unless the client is told otherwise.
SERVICE_TZ = _dt.timezone(_dt.timedelta(hours=8))

AudioMode = Literal["auto", "custom", "silent"]
ShotType = Literal["single", "multi"]


@dataclass(frozen=True)
class ModelSpec:
    """One model's limits. ``durations`` is what the service accepts; ``offered_durations`` is
    what a form shows first."""

    name: str
    aliases: tuple[str, ...]
    tiers: tuple[str, ...]
    default_size: str
    durations: tuple[int, ...]
    offered_durations: tuple[int, ...]
    default_duration: int
    prompt_max: int
    audio: bool  # auto audio and custom audio_url supported
    multi_shot: bool  # shot_type supported
    returns_actual_prompt: bool
    usage_shape: Literal["v1", "v2"]  # v2 = the wan2.6 usage object
    submissions_per_s: int
    concurrency: int
    sdk_supported: bool = True
    fps: int = FPS

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(s for t in self.tiers for s in SIZES[t].values())


# DECISION: wan2.6 accepts any integer 2..15 (newest reference); the seed and older references
# list 5/10/15, which forms offer first.
# DECISION: the Beijing spelling ``wanx2.1-…`` is an alias of ``wan2.1-…``; the client sends
# the spelling of the configured region.
MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("wan2.6-t2v", (), ("720P", "1080P"), "1920*1080", tuple(range(2, 16)),
                  (5, 10, 15), 5, 1500, True, True, False, "v2", 5, 5, sdk_supported=False),
        ModelSpec("wan2.5-t2v-preview", (), ("480P", "720P", "1080P"), "1920*1080", (5, 10),
                  (5, 10), 5, 1500, True, False, True, "v1", 5, 5),
        ModelSpec("wan2.2-t2v-plus", (), ("480P", "1080P"), "1920*1080", (5,), (5,), 5, 800,
                  False, False, True, "v1", 2, 2),
        ModelSpec("wan2.1-t2v-turbo", ("wanx2.1-t2v-turbo",), ("480P", "720P"), "1280*720",
                  (5,), (5,), 5, 800, False, False, True, "v1", 2, 2),
        ModelSpec("wan2.1-t2v-plus", ("wanx2.1-t2v-plus",), ("720P",), "1280*720", (5,), (5,),
                  5, 800, False, False, True, "v1", 2, 2),
    )
}
DEFAULT_MODEL = "wan2.5-t2v-preview"

_ALIASES: dict[str, str] = {a: m.name for m in MODELS.values() for a in (m.name, *m.aliases)}

#: ESTIMATES, USD per second of successfully generated video (international prices; the first
#: two rows partly from third parties). Edit with :func:`set_price` when your bill says otherwise.
PRICES_USD_PER_S: dict[str, dict[str, float]] = {
    "wan2.6-t2v": {"720P": 0.10, "1080P": 0.15},
    "wan2.5-t2v-preview": {"480P": 0.05, "720P": 0.10, "1080P": 0.15},
    "wan2.2-t2v-plus": {"480P": 0.02, "1080P": 0.10},
    "wan2.1-t2v-turbo": {"480P": 0.036, "720P": 0.036},
    "wan2.1-t2v-plus": {"720P": 0.10},
}
PRICES_ARE_ESTIMATES = True


def model_names() -> tuple[str, ...]:
    """The canonical model names, newest first."""
    return tuple(MODELS)


def get_model(name: str) -> ModelSpec:
    """The spec of ``name`` (either spelling); :class:`ValidationError` for an unknown model."""
    if not isinstance(name, str) or name not in _ALIASES:
        raise ValidationError(
            [("model", f"model {name!r} is unknown; choose one of {', '.join(MODELS)}")]
        )
    return MODELS[_ALIASES[name]]


def wire_model_name(name: str, region: str | None) -> str:
    """The spelling to send: Beijing uses ``wanx2.1-…`` for the 2.1 models."""
    spec = get_model(name)
    if region == "beijing" and spec.aliases:
        return spec.aliases[0]
    return spec.name


def sizes_for(model: str) -> tuple[str, ...]:
    return get_model(model).sizes


def parse_size(size: str) -> tuple[int, int]:
    """``"832*480"`` → ``(832, 480)``; :class:`ValidationError` for anything else."""
    if isinstance(size, str):
        w, sep, h = size.partition("*")
        if sep and w.isdigit() and h.isdigit():
            return int(w), int(h)
    raise ValidationError([("size", f"size {size!r} is not a 'W*H' string such as '1280*720'")])


def tier_of(size: str) -> str:
    for tier, by_aspect in SIZES.items():
        if size in by_aspect.values():
            return tier
    raise ValidationError([("size", f"size {size!r} is not a size of any tier")])


def aspect_of(size: str) -> str:
    for by_aspect in SIZES.values():
        for aspect, s in by_aspect.items():
            if s == size:
                return aspect
    raise ValidationError([("size", f"size {size!r} is not a size of any tier")])


def size_for(model: str, tier: str, aspect: str = "16:9") -> str:
    """The concrete size of ``tier`` and ``aspect`` if ``model`` offers it."""
    spec = get_model(model)
    if tier not in spec.tiers:
        raise ValidationError([("size", f"{spec.name} offers tiers {', '.join(spec.tiers)}, "
                                        f"not {tier!r}")])
    try:
        return SIZES[tier][aspect]
    except KeyError:
        raise ValidationError([("size", f"tier {tier} has aspects "
                                        f"{', '.join(SIZES[tier])}, not {aspect!r}")]) from None


def price_per_second(model: str, size: str) -> float | None:
    """Estimated USD per second of video, or None when no price is known."""
    return PRICES_USD_PER_S.get(get_model(model).name, {}).get(tier_of(size))


def estimate_cost(model: str, size: str, duration: int) -> float | None:
    """Estimated USD for one successful video (failed tasks are not billed)."""
    p = price_per_second(model, size)
    return None if p is None else round(p * duration, 6)


def set_price(model: str, tier: str, usd_per_second: float) -> None:
    """Override an estimate, for example from your own bill."""
    if tier not in SIZES:
        raise ValidationError([("tier", f"tier {tier!r} is not one of {', '.join(SIZES)}")])
    if not usd_per_second >= 0:
        raise ValidationError([("price", f"price {usd_per_second!r} must be >= 0")])
    PRICES_USD_PER_S.setdefault(get_model(model).name, {})[tier] = float(usd_per_second)


def base_url_for(region: str) -> str:
    try:
        return REGIONS[region]
    except KeyError:
        raise ValidationError([("region", f"region {region!r} is unknown; choose one of "
                                          f"{', '.join(REGIONS)}")]) from None
