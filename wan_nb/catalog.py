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
>>> pixels("wan2.7-t2v", "720P", "4:3")      # the 2026 table differs from §2 at 4:3 and 3:4
(1104, 832)
>>> resolution_ratio("wan2.5-t2v-preview", "1088*832")
('720P', '4:3')

Two wire protocols share one endpoint (:attr:`ModelSpec.protocol`): ``"size"`` models (wan2.6
and older) take a concrete ``size`` string; ``"resolution"`` models (wan2.7, HappyHorse, Wan 3.0)
take ``resolution`` + ``ratio``. A request may always be written as resolution + ratio; the
catalog maps it to the model's own pixel table (:func:`pixels`).

Adding a model (the recipe): add one :class:`ModelSpec` row to ``MODELS`` below (name, protocol,
the pixel table it uses, resolutions, durations, limits, audio, rewrite, watermark, regions, rate
limits, with a ``DECISION`` comment for anything the sources leave open), its prices to
``PRICES_USD_PER_S``, and the same model to the emulator's own table
(``wan_nb/emulator/facts.py``; ``tests/emulator/test_facts.py`` compares the two). A new pixel
table goes into ``PIXEL_TABLES``. Nothing else in the package names models: requests,
validation, wire bodies, prices and experiments read these rows. A dated snapshot (same rules,
its own name on the wire and in the ledger) is ``snapshot(base_row, "name-YYYY-MM-DD", ...)``.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, replace
from typing import Literal

from .errors import ValidationError

Tier = Literal["480P", "720P", "1080P"]
#: how a model is told the picture size: a ``size`` string (§2) or ``resolution`` + ``ratio`` (§7)
Protocol = Literal["size", "resolution"]
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

#: Pixels ``(width, height)`` for (resolution, ratio), one table per family of models.
#: ``"size"``: the §2 ``size`` strings. ``"2026"``: §7.1 (wan2.7, HappyHorse), which differs from
#: §2 at 4:3 and 3:4. ``"wan3"``: §7.1 plus Wan 3.0's 480P, 21:9 and ``adaptive``.
PIXEL_TABLES: dict[str, dict[str, dict[str, tuple[int, int]]]] = {
    "size": {res: {ratio: (int(s.split("*")[0]), int(s.split("*")[1]))
                   for ratio, s in by_ratio.items()} for res, by_ratio in SIZES.items()},
    "2026": {
        "720P": {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960),
                 "4:3": (1104, 832), "3:4": (832, 1104)},
        "1080P": {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1440, 1440),
                  "4:3": (1648, 1248), "3:4": (1248, 1648)},
    },
}
# ASSUMPTION (DECISION, §7.1): Wan 3.0's 480P and 21:9 sizes are undocumented: 480P takes the
# §2 480P sizes and 640*480 / 480*640 for 4:3 / 3:4; 21:9 is 1120*480 / 1680*720 / 2520*1080;
# ``adaptive`` without an input image is 16:9. The ratios are listed in the reference's order.
PIXEL_TABLES["wan3"] = {
    res: {"adaptive": by["16:9"], "21:9": wide, "16:9": by["16:9"], "4:3": by["4:3"],
          "1:1": by["1:1"], "3:4": by["3:4"], "9:16": by["9:16"]}
    for res, by, wide in (
        ("480P", {"16:9": (832, 480), "9:16": (480, 832), "1:1": (624, 624),
                  "4:3": (640, 480), "3:4": (480, 640)}, (1120, 480)),
        ("720P", PIXEL_TABLES["2026"]["720P"], (1680, 720)),
        ("1080P", PIXEL_TABLES["2026"]["1080P"], (2520, 1080)),
    )
}
#: the (table, resolution, ratio) cells no source documents: the decisions above
ASSUMED_PIXELS: frozenset[tuple[str, str, str]] = frozenset(
    {("wan3", "480P", r) for r in PIXEL_TABLES["wan3"]["480P"]}
    | {("wan3", res, r) for res in ("720P", "1080P") for r in ("21:9", "adaptive")})
RESOLUTIONS = ("480P", "720P", "1080P")

FPS = 30
NEGATIVE_PROMPT_MAX = 500
SEED_MIN, SEED_MAX = 0, 2**31 - 1
AUDIO_MIN_S, AUDIO_MAX_S = 3.0, 30.0  # §2.2; wan2.7 takes 2 s (ModelSpec.audio_min_s)
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
#: how a model takes ``parameters.audio``: documented (sent always, unless custom audio),
#: passed through (sent only to ask for silence; the service may ignore it) or not at all
AudioSwitch = Literal["documented", "passthrough", "none"]


@dataclass(frozen=True)
class ModelSpec:
    """One model's rules (reference §2, §5, §7). Read it, don't build it: rows live in
    ``MODELS``.

    ``durations`` is what the service accepts; ``offered_durations`` is what a form shows first.
    ``resolutions`` and ``ratios`` are what a request may say for every model; ``pixel_table``
    names the table (``PIXEL_TABLES``) that turns them into pixels. For a ``"size"`` model,
    ``sizes`` are the ``size`` strings it takes; a ``"resolution"`` model takes none.
    """

    name: str
    aliases: tuple[str, ...]
    protocol: Protocol
    pixel_table: str
    resolutions: tuple[str, ...]
    default_resolution: str
    default_ratio: str
    durations: tuple[int, ...]
    offered_durations: tuple[int, ...]
    default_duration: int
    prompt_max: int
    audio: bool  # the model makes sound of its own ("auto")
    multi_shot: bool  # parameters.shot_type
    returns_actual_prompt: bool
    usage_shape: Literal["v1", "v2", "v3"]  # v2: wan2.6's usage; v3: §7.3 (SR and ratio)
    submissions_per_s: int
    concurrency: int
    regions: tuple[str, ...]
    sdk_supported: bool = True
    fps: int = FPS
    custom_audio: bool = False  # input.audio_url
    audio_switch: AudioSwitch = "none"
    audio_min_s: float = AUDIO_MIN_S
    negative_prompt: bool = True
    negative_prompt_max: int = NEGATIVE_PROMPT_MAX
    prompt_max_cjk: int | None = None  # a prompt with Chinese/Japanese/Korean text
    prompt_extend: bool = True  # parameters.prompt_extend (the service's rewrite)
    multi_shot_in_prompt: bool = False  # several shots are asked for in the prompt itself
    default_watermark: bool = False
    snapshot_of: str | None = None  # a dated snapshot: the mainline name it freezes
    assumptions: tuple[str, ...] = ()  # facts taken from less certain sources, or decided

    @property
    def tiers(self) -> tuple[str, ...]:
        """The resolutions (the older name: "tiers")."""
        return self.resolutions

    @property
    def table(self) -> dict[str, dict[str, tuple[int, int]]]:
        """``{resolution: {ratio: (width, height)}}`` for this model's resolutions."""
        return {res: PIXEL_TABLES[self.pixel_table][res] for res in self.resolutions}

    @property
    def ratios(self) -> tuple[str, ...]:
        """Every ratio at some resolution (:meth:`ratios_at` for one resolution)."""
        out: list[str] = []
        for by_ratio in self.table.values():
            out += [r for r in by_ratio if r not in out]
        return tuple(out)

    def ratios_at(self, resolution: str) -> tuple[str, ...]:
        return tuple(self.table.get(resolution, {}))

    @property
    def default_size(self) -> str:
        """The pixel size ``W*H`` of the default resolution and ratio."""
        w, h = self.table[self.default_resolution][self.default_ratio]
        return f"{w}*{h}"

    @property
    def sizes(self) -> tuple[str, ...]:
        """The ``size`` strings the model takes: none for a ``"resolution"`` model."""
        if self.protocol != "size":
            return ()
        return tuple(s for t in self.resolutions for s in SIZES[t].values())

    @property
    def pixel_sizes(self) -> tuple[str, ...]:
        """Every picture the model makes, as ``W*H`` (for both protocols; no repeats)."""
        return tuple(dict.fromkeys(f"{w}*{h}" for by_ratio in self.table.values()
                                   for w, h in by_ratio.values()))

    @property
    def audio_modes(self) -> tuple[str, ...]:
        """The ``audio`` values a request may take for this model."""
        return tuple(m for m, ok in (("auto", self.audio), ("custom", self.custom_audio),
                                     ("silent", not self.audio or self.audio_switch != "none"))
                     if ok)

    @property
    def default_audio(self) -> str:
        return "auto" if self.audio else "silent"


def snapshot(base: ModelSpec, name: str, **changes: object) -> ModelSpec:
    """A dated snapshot of ``base``: the same rules under its own name (sent on the wire and
    recorded in the ledger as is), with ``changes`` (snapshots are throttled more tightly)."""
    return replace(base, name=name, aliases=(), snapshot_of=base.name, **changes)  # type: ignore[arg-type]


_OLD = ("singapore", "beijing")
_WAN26 = dict(protocol="size", pixel_table="size", resolutions=("720P", "1080P"),
              default_resolution="1080P", default_ratio="16:9", prompt_max=1500, audio=True,
              multi_shot=True, returns_actual_prompt=False, usage_shape="v2",
              submissions_per_s=5, concurrency=5, sdk_supported=False, custom_audio=True,
              audio_switch="documented")
_WAN27 = ModelSpec(
    "wan2.7-t2v", (), "resolution", "2026", ("720P", "1080P"), "1080P", "16:9",
    tuple(range(2, 16)), (5, 10, 15), 5, 5000, audio=True, multi_shot=False,
    returns_actual_prompt=False, usage_shape="v3", submissions_per_s=5, concurrency=5,
    regions=_OLD, custom_audio=True, audio_switch="passthrough", audio_min_s=2.0,
    multi_shot_in_prompt=True)
_WAN30 = ModelSpec(
    "wan3.0-video", (), "resolution", "wan3", ("480P", "720P", "1080P"), "1080P", "16:9",
    tuple(range(2, 31)), (5, 10, 15, 30), 5, 5000, audio=True, multi_shot=False,
    returns_actual_prompt=False, usage_shape="v3", submissions_per_s=5, concurrency=5,
    regions=_OLD, audio_switch="documented",
    assumptions=("the Wan 3.0 facts come from third-party notes",
                 "480P and 21:9 pixel sizes; 'adaptive' without an image is 16:9",
                 "defaults 1080P, 16:9, 5 s; prompt at most 5000 characters; negative prompt "
                 "at most 500", "usage as wan2.7 (SR and ratio)"))

# DECISION: wan2.6 accepts any integer 2..15 (newest reference); the seed and older references
# list 5/10/15, which forms offer first.
# DECISION: the Beijing spelling ``wanx2.1-…`` is an alias of ``wan2.1-…``; the client sends
# the spelling of the configured region.
# DECISION: the §2 models are offered in Singapore and Beijing (the references name no
# Virginia model but wan2.6-t2v-us and HappyHorse).
# DECISION: HappyHorse's "audio: no" is read as silent video (no audio_url, no switch); its
# Chinese limit (2500) applies to a prompt holding any CJK character.
# DECISION: the dated snapshot is its own row; "throttled more tightly" has no figure, so 2
# submissions/s and 2 at once (the tightest limit of §5).
MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        _WAN27,
        snapshot(_WAN27, "wan2.7-t2v-2026-04-25", submissions_per_s=2, concurrency=2,
                 assumptions=("rate limits: 'tighter than mainline', no figure published",)),
        ModelSpec("happyhorse-1.0-t2v", (), "resolution", "2026", ("720P", "1080P"), "1080P",
                  "16:9", tuple(range(3, 16)), (5, 10, 15), 5, 5000, audio=False,
                  multi_shot=False, returns_actual_prompt=False, usage_shape="v3",
                  submissions_per_s=5, concurrency=5,
                  regions=("singapore", "beijing", "virginia"), negative_prompt=False,
                  prompt_max_cjk=2500, prompt_extend=False, default_watermark=True,
                  assumptions=("no audio: silent video",
                               "the 2500-character limit applies to any prompt with CJK text")),
        _WAN30,
        replace(_WAN30, name="wan3.0-video-prime"),
        ModelSpec("wan2.6-t2v", (), durations=tuple(range(2, 16)), offered_durations=(5, 10, 15),
                  default_duration=5, regions=_OLD, **_WAN26),  # type: ignore[arg-type]
        ModelSpec("wan2.6-t2v-us", (), durations=(5, 10), offered_durations=(5, 10),
                  default_duration=5, regions=("virginia",), **_WAN26),  # type: ignore[arg-type]
        ModelSpec("wan2.5-t2v-preview", (), "size", "size", ("480P", "720P", "1080P"), "1080P",
                  "16:9", (5, 10), (5, 10), 5, 1500, True, False, True, "v1", 5, 5, _OLD,
                  custom_audio=True, audio_switch="documented"),
        ModelSpec("wan2.2-t2v-plus", (), "size", "size", ("480P", "1080P"), "1080P", "16:9",
                  (5,), (5,), 5, 800, False, False, True, "v1", 2, 2, _OLD),
        ModelSpec("wan2.1-t2v-turbo", ("wanx2.1-t2v-turbo",), "size", "size", ("480P", "720P"),
                  "720P", "16:9", (5,), (5,), 5, 800, False, False, True, "v1", 2, 2, _OLD),
        ModelSpec("wan2.1-t2v-plus", ("wanx2.1-t2v-plus",), "size", "size", ("720P",), "720P",
                  "16:9", (5,), (5,), 5, 800, False, False, True, "v1", 2, 2, _OLD),
    )
}
DEFAULT_MODEL = "wan2.5-t2v-preview"

_ALIASES: dict[str, str] = {a: m.name for m in MODELS.values() for a in (m.name, *m.aliases)}

#: ESTIMATES, USD per second of successfully generated video (international prices). The §5
#: rows are partly from third parties; wan2.7, its snapshot, HappyHorse and wan2.6-t2v-us have no
#: official figure (resellers' prices, §7.1); Wan 3.0's are list prices (audio off costs the
#: same). Edit with :func:`set_price` when your bill says otherwise.
PRICES_USD_PER_S: dict[str, dict[str, float]] = {
    "wan2.7-t2v": {"720P": 0.10, "1080P": 0.15},
    "wan2.7-t2v-2026-04-25": {"720P": 0.10, "1080P": 0.15},
    "happyhorse-1.0-t2v": {"720P": 0.10, "1080P": 0.15},
    "wan3.0-video": {"480P": 0.05, "720P": 0.10, "1080P": 0.20},
    "wan3.0-video-prime": {"480P": 0.068, "720P": 0.14, "1080P": 0.28},
    "wan2.6-t2v": {"720P": 0.10, "1080P": 0.15},
    "wan2.6-t2v-us": {"720P": 0.10, "1080P": 0.15},
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


def models_in(region: str) -> tuple[str, ...]:
    """The models offered in ``region`` (singapore, beijing, virginia)."""
    base_url_for(region)
    return tuple(m.name for m in MODELS.values() if region in m.regions)


def check_region(model: str, region: str | None) -> None:
    """:class:`ValidationError` when ``model`` is not offered in ``region`` (None: not known,
    nothing checked), naming where it is and what the region offers instead:
    ``check_region("wan2.6-t2v-us", "singapore")`` says "wan2.6-t2v-us is offered in virginia,
    not singapore; singapore offers wan2.7-t2v, …"."""
    spec = get_model(model)
    if region is None or region in spec.regions:
        return
    raise ValidationError([("model", f"{spec.name} is offered in {', '.join(spec.regions)}, "
                                     f"not {region}; {region} offers "
                                     f"{', '.join(models_in(region))}")])


def wire_model_name(name: str, region: str | None) -> str:
    """The spelling to send: Beijing uses ``wanx2.1-…`` for the 2.1 models."""
    spec = get_model(name)
    if region == "beijing" and spec.aliases:
        return spec.aliases[0]
    return spec.name


def sizes_for(model: str) -> tuple[str, ...]:
    """The ``size`` strings ``model`` takes (none for a ``"resolution"`` model)."""
    return get_model(model).sizes


def parse_size(size: str) -> tuple[int, int]:
    """``"832*480"`` → ``(832, 480)``; :class:`ValidationError` for anything else."""
    if isinstance(size, str):
        w, sep, h = size.partition("*")
        if sep and w.isdigit() and h.isdigit():
            return int(w), int(h)
    raise ValidationError([("size", f"size {size!r} is not a 'W*H' string such as '1280*720'")])


def tier_of(size: str) -> str:
    """The §2 tier of a ``size`` string (:func:`resolution_ratio` for one model's table)."""
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
    """The pixel size ``W*H`` of ``tier`` and ``aspect`` if ``model`` offers it."""
    w, h = pixels(model, tier, aspect, field="size")
    return f"{w}*{h}"


def pixels(model: str, resolution: str, ratio: str, *, field: str = "") -> tuple[int, int]:
    """``(width, height)`` of ``resolution`` + ``ratio`` on ``model``, from its own table.

    >>> pixels("wan2.5-t2v-preview", "720P", "4:3"), pixels("wan2.7-t2v", "720P", "4:3")
    ((1088, 832), (1104, 832))
    """
    spec = get_model(model)
    if resolution not in spec.resolutions:
        raise ValidationError([(field or "resolution", resolution_message(spec, resolution))])
    if ratio not in spec.ratios_at(resolution):
        raise ValidationError([(field or "ratio", ratio_message(spec, resolution, ratio))])
    return spec.table[resolution][ratio]


def resolution_message(spec: ModelSpec, resolution: object) -> str:
    return (f"resolution {resolution!r} is not offered by {spec.name}; choose one of "
            f"{', '.join(spec.resolutions)}")


def ratio_message(spec: ModelSpec, resolution: str, ratio: object) -> str:
    return (f"ratio {ratio!r} is not offered by {spec.name} at {resolution}; choose one of "
            f"{', '.join(spec.ratios_at(resolution))}")


def resolution_ratio(model: str, size: str) -> tuple[str, str]:
    """The (resolution, ratio) a pixel size ``W*H`` is on ``model`` (its own table; for a
    ``"size"`` model, the ``size`` strings it takes). :class:`ValidationError` when the model
    makes no such picture.

    >>> resolution_ratio("wan2.2-t2v-plus", "1632*1248")
    ('1080P', '4:3')
    """
    spec = get_model(model)
    found = _find_pixels(spec, size)
    if found is None:
        raise ValidationError([("size", f"size {size!r} is not a picture {spec.name} makes; "
                                        f"choose one of {', '.join(spec.pixel_sizes)}")])
    return found


def _find_pixels(spec: ModelSpec, size: object) -> tuple[str, str] | None:
    if not isinstance(size, str):
        return None
    found = [(res, ratio) for res, by_ratio in spec.table.items()
             for ratio, (w, h) in by_ratio.items() if size == f"{w}*{h}"]
    # "adaptive" has the pixels of another ratio: name that one
    found.sort(key=lambda f: f[1] == "adaptive")
    return found[0] if found else None


_RESOLUTION = re.compile(r"^\d+P$")


def resolution_of(model: str, resolution_or_size: str) -> str:
    """``"720P"`` as is; a pixel size ``W*H`` as the resolution it is on ``model`` (its own
    table first, then any table: a size a model does not make still has a tier)."""
    value = resolution_or_size
    if isinstance(value, str) and _RESOLUTION.match(value):
        return value
    found = _find_pixels(get_model(model), value)
    if found is not None:
        return found[0]
    for table in PIXEL_TABLES.values():
        for res, by_ratio in table.items():
            if any(value == f"{w}*{h}" for w, h in by_ratio.values()):
                return res
    raise ValidationError([("size", f"size {value!r} is neither a resolution such as '720P' "
                                    "nor a pixel size of any table")])


def price_per_second(model: str, resolution_or_size: str) -> float | None:
    """Estimated USD per second of video at a resolution (``"720P"``) or a pixel size
    (``"832*480"``), or None when no price is known."""
    res = resolution_of(model, resolution_or_size)
    return PRICES_USD_PER_S.get(get_model(model).name, {}).get(res)


def estimate_cost(model: str, resolution_or_size: str, duration: int) -> float | None:
    """Estimated USD for one successful video (failed tasks are not billed)."""
    p = price_per_second(model, resolution_or_size)
    return None if p is None else round(p * duration, 6)


def set_price(model: str, tier: str, usd_per_second: float) -> None:
    """Override an estimate, for example from your own bill."""
    if tier not in RESOLUTIONS:
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
