"""What the emulated service is: its models, sizes, limits and error codes (reference §2, §4, §5).

This is deliberately the emulator's own copy, not an import of :mod:`wan_nb.catalog` or
:mod:`wan_nb.errors` (no module of the emulator imports anything of wan_nb outside it). The
emulator is the oracle the client is tested against: if both read one table, a wrong size,
duration, limit or status in it would be wrong on both sides and no test could see it. Here a
mistake in either table shows as a disagreement (``tests/emulator/test_facts.py`` compares them
field by field), and a deliberate difference has to be written down there.

Two wire protocols share the create endpoint: ``size`` (wan2.6 and older, §2) and
``resolution`` + ``ratio`` (the 2026 models, §7). :attr:`ServiceModel.protocol` says which one
a model speaks; :mod:`.params` reads the body by it.

Where the reference is silent the emulator decides here (one place, the names say why):

- Wan 3.0's 480P and 21:9 pixel sizes, and ``adaptive`` without an input image (16:9), are the
  reference's own assumptions (§7.1), kept in :data:`RATIO_SIZES` and :data:`ADAPTIVE_RATIO`;
- Wan 3.0's undocumented defaults: 1080P, 16:9, 5 s, prompt cut at 5000 characters, a
  negative prompt taken like wan2.7's, no ``actual_prompt`` (the §7.3 answer shape);
- HappyHorse cuts a prompt with any CJK character at 2500 characters, otherwise at 5000;
- the dated snapshot ``wan2.7-t2v-2026-04-25`` is its own model (its own name in answers,
  lists and limits) with wan2.7's rules; its tighter throttling has no published figure, so it
  takes 2 submissions/s and runs 2 at once (the tightest limit of §5);
- every model is served whatever the emulator's region (``regions`` is recorded, not enforced).

>>> find_model("wanx2.1-t2v-turbo").name
'wan2.1-t2v-turbo'
>>> find_model("wan9") is None
True
>>> tier_of("1632*1248")
'1080P'
>>> ratio_size("720P", "4:3")
'1104*832'
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Literal

#: "size": a concrete ``W*H`` (§2); "resolution": ``resolution`` + ``ratio`` (§7)
Protocol = Literal["size", "resolution"]
#: "v1": wan2.5 and older; "v2": wan2.6 (with ``size``); "v3": the 2026 models (``ratio``, §7.3)
UsageShape = Literal["v1", "v2", "v3"]
#: how a model takes ``parameters.audio``: "documented" (false makes silent video),
#: "passthrough" (a boolean is taken and changes nothing here), "none" (a model without sound:
#: only false is taken)
AudioSwitch = Literal["documented", "passthrough", "none"]

#: endpoints, relative to the base (§1)
CREATE_PATH = "/api/v1/services/aigc/video-generation/video-synthesis"
TASKS_PATH = "/api/v1/tasks"
UPLOAD_POLICY_PATH = "/api/v1/uploads"
#: task ids and video URLs live this long
TASK_TTL_S = 24 * 3600.0
#: query + list + cancel requests per second, per account
QUERY_RATE_PER_S = 20
#: the zone of the service's time strings (Beijing documents UTC+8; Singapore is undocumented)
SERVICE_TZ = _dt.timezone(_dt.timedelta(hours=8))
#: the largest input audio file
AUDIO_MAX_BYTES = 15 * 1024 * 1024
#: how long an input audio file may be (§2.2; wan2.7 takes 2 s: ServiceModel.audio_min_s)
AUDIO_MIN_S, AUDIO_MAX_S = 3.0, 30.0

#: ``size`` values by tier and aspect (reference §2.1)
SIZES: dict[str, dict[str, str]] = {
    "480P": {"16:9": "832*480", "9:16": "480*832", "1:1": "624*624"},
    "720P": {"16:9": "1280*720", "9:16": "720*1280", "1:1": "960*960",
             "4:3": "1088*832", "3:4": "832*1088"},
    "1080P": {"16:9": "1920*1080", "9:16": "1080*1920", "1:1": "1440*1440",
              "4:3": "1632*1248", "3:4": "1248*1632"},
}

#: pixels of (resolution, ratio) on the ``resolution`` protocol (reference §7.1): 4:3 and 3:4
#: differ from :data:`SIZES`. ASSUMED (§7.1 decision): every 480P size and every 21:9 size
RATIO_SIZES: dict[str, dict[str, str]] = {
    "480P": {"16:9": "832*480", "9:16": "480*832", "1:1": "624*624", "4:3": "640*480",
             "3:4": "480*640", "21:9": "1120*480"},
    "720P": {"16:9": "1280*720", "9:16": "720*1280", "1:1": "960*960", "4:3": "1104*832",
             "3:4": "832*1104", "21:9": "1680*720"},
    "1080P": {"16:9": "1920*1080", "9:16": "1080*1920", "1:1": "1440*1440",
              "4:3": "1648*1248", "3:4": "1248*1648", "21:9": "2520*1080"},
}
#: ASSUMED (§7.1 decision): what ``ratio: "adaptive"`` means with no input image
ADAPTIVE_RATIO = "16:9"
FIVE_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4")
WAN3_RATIOS = ("adaptive", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16")

FPS = 30
NEGATIVE_PROMPT_MAX = 500
SEED_MIN, SEED_MAX = 0, 2**31 - 1


@dataclass(frozen=True)
class ServiceModel:
    """One model as the service treats it: what a create body may ask for, what a finished
    task reports, and how many tasks it takes and runs.

    ``tiers`` are the model's resolutions and ``ratios`` its aspect ratios, on both protocols
    (a ``size`` model: those of its sizes); ``default_resolution`` + ``default_ratio`` name its
    default picture (:attr:`default_size` in pixels).
    """

    name: str
    aliases: tuple[str, ...]
    protocol: Protocol
    tiers: tuple[str, ...]
    default_resolution: str
    default_ratio: str
    durations: tuple[int, ...]
    default_duration: int
    prompt_max: int  # longer prompts are cut, not refused
    audio: bool  # makes sound of its own (without an audio_url)
    multi_shot: bool  # parameters.shot_type
    returns_actual_prompt: bool
    usage_shape: UsageShape
    submissions_per_s: int
    concurrency: int
    regions: tuple[str, ...]  # recorded, not enforced: the emulator serves every model
    fps: int = FPS
    ratios: tuple[str, ...] = ()  # () = every ratio of its tiers in the table
    custom_audio: bool = False  # input.audio_url
    audio_min_s: float = AUDIO_MIN_S  # the shortest audio_url file
    audio_switch: AudioSwitch = "none"
    negative_prompt: bool = True  # input.negative_prompt taken
    prompt_max_cjk: int | None = None  # a prompt with CJK characters is cut here instead
    prompt_extend: bool = True  # the prompt may be rewritten (parameters.prompt_extend)
    default_watermark: bool = False

    def __post_init__(self) -> None:
        if not self.ratios:
            table = SIZES if self.protocol == "size" else RATIO_SIZES
            seen = dict.fromkeys(r for t in self.tiers for r in table[t])
            object.__setattr__(self, "ratios", tuple(seen))

    @property
    def table(self) -> dict[str, dict[str, tuple[int, int]]]:
        """``{resolution: {ratio: (width, height)}}``: every picture the model makes."""
        if self.protocol == "size":
            return {t: {r: parse_size(s) for r, s in SIZES[t].items()} for t in self.tiers}
        return {t: {r: parse_size(ratio_size(t, r)) for r in self.ratios} for t in self.tiers}

    @property
    def default_size(self) -> str:
        """The pixels ``W*H`` of the default resolution and ratio."""
        w, h = self.table[self.default_resolution][self.default_ratio]
        return f"{w}*{h}"

    @property
    def sizes(self) -> tuple[str, ...]:
        """The ``size`` values a body may name: none on the ``resolution`` protocol."""
        if self.protocol != "size":
            return ()
        return tuple(s for t in self.tiers for s in SIZES[t].values())

    @property
    def pixel_sizes(self) -> tuple[str, ...]:
        """Every picture the model makes, ``W*H``, without repeats (both protocols)."""
        seen = dict.fromkeys(f"{w}*{h}" for by in self.table.values() for w, h in by.values())
        return tuple(seen)


def ratio_size(resolution: str, ratio: str) -> str:
    """``("720P", "4:3")`` → ``"1104*832"`` on the ``resolution`` protocol (§7.1)."""
    return RATIO_SIZES[resolution][ADAPTIVE_RATIO if ratio == "adaptive" else ratio]


_OLD = ("singapore", "beijing")
_ALL = ("singapore", "beijing", "virginia")


def _wan27(name: str, per_s: int) -> ServiceModel:
    # sound of its own unless given an audio_url; parameters.audio is not documented for it:
    # taken ("passthrough") and not honoured by the emulator
    return ServiceModel(name, (), "resolution", ("720P", "1080P"), "1080P", "16:9",
                        tuple(range(2, 16)), 5, 5000, audio=True, multi_shot=False,
                        returns_actual_prompt=False, usage_shape="v3",
                        submissions_per_s=per_s, concurrency=per_s, regions=_OLD,
                        ratios=FIVE_RATIOS, custom_audio=True, audio_switch="passthrough",
                        audio_min_s=2.0)


def _wan30(name: str) -> ServiceModel:
    return ServiceModel(name, (), "resolution", ("480P", "720P", "1080P"), "1080P", "16:9",
                        tuple(range(2, 31)), 5, 5000, audio=True, multi_shot=False,
                        returns_actual_prompt=False, usage_shape="v3", submissions_per_s=5,
                        concurrency=5, regions=_OLD, ratios=WAN3_RATIOS,
                        audio_switch="documented")


def _size_model(name: str, aliases: tuple[str, ...], tiers: tuple[str, ...], default: str,
                durations: tuple[int, ...], prompt_max: int, audio: bool, multi_shot: bool,
                actual_prompt: bool, usage: UsageShape, per_s: int,
                regions: tuple[str, ...] = _OLD) -> ServiceModel:
    resolution, ratio = _resolution_ratio(default)
    return ServiceModel(name, aliases, "size", tiers, resolution, ratio, durations, 5,
                        prompt_max, audio=audio, multi_shot=multi_shot,
                        returns_actual_prompt=actual_prompt, usage_shape=usage,
                        submissions_per_s=per_s, concurrency=per_s, regions=regions,
                        custom_audio=audio, audio_switch="documented" if audio else "none")


def _resolution_ratio(size: str) -> tuple[str, str]:
    return next((t, r) for t, by in SIZES.items() for r, s in by.items() if s == size)


# Newest first. wan2.6 durations: any integer 2..15 (the newest reference; the seed lists
# 5/10/15). The Beijing spelling wanx2.1-… names the same 2.1 models. The dated snapshot is its
# own model; it is "throttled more tightly" with no figure: 2/s and 2 at once (§5's tightest).
MODELS: dict[str, ServiceModel] = {m.name: m for m in (
    _wan27("wan2.7-t2v", 5),
    _wan27("wan2.7-t2v-2026-04-25", 2),
    ServiceModel("happyhorse-1.0-t2v", (), "resolution", ("720P", "1080P"), "1080P", "16:9",
                 tuple(range(3, 16)), 5, 5000, audio=False, multi_shot=False,
                 returns_actual_prompt=False, usage_shape="v3", submissions_per_s=5,
                 concurrency=5, regions=_ALL, ratios=FIVE_RATIOS, negative_prompt=False,
                 prompt_max_cjk=2500, prompt_extend=False, default_watermark=True),
    _wan30("wan3.0-video"),
    _wan30("wan3.0-video-prime"),
    _size_model("wan2.6-t2v", (), ("720P", "1080P"), "1920*1080", tuple(range(2, 16)), 1500,
                True, True, False, "v2", 5),
    # Virginia only: wan2.6's rules with 5 or 10 s (§7.1)
    _size_model("wan2.6-t2v-us", (), ("720P", "1080P"), "1920*1080", (5, 10), 1500, True, True,
                False, "v2", 5, regions=("virginia",)),
    _size_model("wan2.5-t2v-preview", (), ("480P", "720P", "1080P"), "1920*1080", (5, 10), 1500,
                True, False, True, "v1", 5),
    _size_model("wan2.2-t2v-plus", (), ("480P", "1080P"), "1920*1080", (5,), 800, False, False,
                True, "v1", 2),
    _size_model("wan2.1-t2v-turbo", ("wanx2.1-t2v-turbo",), ("480P", "720P"), "1280*720", (5,),
                800, False, False, True, "v1", 2),
    _size_model("wan2.1-t2v-plus", ("wanx2.1-t2v-plus",), ("720P",), "1280*720", (5,), 800,
                False, False, True, "v1", 2),
)}

_BY_NAME: dict[str, ServiceModel] = {a: m for m in MODELS.values() for a in (m.name, *m.aliases)}


def find_model(name: Any) -> ServiceModel | None:
    """The model a create body or a list filter names (either spelling), or None."""
    return _BY_NAME.get(name) if isinstance(name, str) else None


def tier_of(size: str) -> str:
    """``"1280*720"`` → ``"720P"``; ValueError for a size of no tier."""
    for tier, by_aspect in SIZES.items():
        if size in by_aspect.values():
            return tier
    raise ValueError(f"size {size!r} is not a size of any tier")


def parse_size(size: str) -> tuple[int, int]:
    """``"832*480"`` → ``(832, 480)`` (the size is already one of :data:`SIZES`)."""
    w, _, h = size.partition("*")
    return int(w), int(h)


#: code → (HTTP status, the service's message when it says nothing more specific) (§3, §4)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "InvalidParameter": (400, "The request parameter is invalid."),
    "DataInspectionFailed": (400, "Input data may contain inappropriate content."),
    "IPInfringementSuspect": (400, "Input data is suspected of being involved in IP "
                                   "infringement."),
    "Arrearage": (400, "Access denied, please make sure your account is in good standing."),
    "UnsupportedOperation": (400, "Failed to cancel the task, please confirm if the task is in "
                                  "PENDING status."),
    "InvalidApiKey": (401, "Invalid API-key provided."),
    "AccessDenied": (403, "Access denied."),
    "Model.AccessDenied": (403, "Model access denied."),
    "AccessDenied.Unpurchased": (403, "Access denied: model not purchased."),
    "ModelNotFound": (404, "Model not found."),
    "RequestTimeOut": (408, "Request timed out, please try again later."),
    "BadRequest.TooLarge": (413, "Payload too large."),
    "Throttling": (429, "Requests throttling triggered."),
    "Throttling.RateQuota": (429, "Requests rate limit exceeded, please try again later."),
    "Throttling.AllocationQuota": (429, "Allocated quota exceeded, please increase your quota "
                                        "limit."),
    # §7.4, added in 2026: refusals (nothing was created)
    "Throttling.BurstRate": (429, "Request rate increased too quickly, please slow down."),
    "ServiceOverloaded": (429, "The service is overloaded, please try again later."),
    "ResourceExhausted": (429, "Resources are exhausted, please try again later."),
    "InvalidParameter.DataInspection": (400, "The input failed content inspection."),
    "InternalError": (500, "An internal error has occured, please try again later."),
    "InternalError.Algo": (500, "An internal algorithm error has occured."),
    "InternalError.Timeout": (500, "An internal timeout error has occured."),
    "SystemError": (500, "An system error has occured, please try again later."),
    # §7.4: on a create it does not prove that no task was made (an ambiguous create)
    "InternalError.DataInspection": (500, "An internal error occurred during data inspection."),
    "ModelUnavailable": (503, "Model is unavailable, please try again later."),
}
