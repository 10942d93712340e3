"""What the emulated service is: its models, sizes, limits and error codes (reference §2, §4, §5).

This is deliberately the emulator's own copy, not an import of :mod:`wan_nb.catalog` or
:mod:`wan_nb.errors` (no module of the emulator imports anything of wan_nb outside it). The
emulator is the oracle the client is tested against: if both read one table, a wrong size,
duration, limit or status in it would be wrong on both sides and no test could see it. Here a
mistake in either table shows as a disagreement (``tests/emulator/test_facts.py`` compares them
field by field), and a deliberate difference has to be written down there.

Two wire protocols share the create endpoint: ``size`` (wan2.6 and older, §2) and
``resolution`` + ``ratio`` (the 2026 models, §7). :attr:`ServiceModel.protocol` says which one
a model speaks; :mod:`.params` reads the body by it. Only ``size`` models exist here today.

>>> find_model("wanx2.1-t2v-turbo").name
'wan2.1-t2v-turbo'
>>> find_model("wan9") is None
True
>>> tier_of("1632*1248")
'1080P'
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Literal

Protocol = Literal["size"]  # issue 10 adds "resolution" (reference §7)

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

#: ``size`` values by tier and aspect (reference §2.1)
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


@dataclass(frozen=True)
class ServiceModel:
    """One model as the service treats it: what a create body may ask for, what a finished
    task reports, and how many tasks it takes and runs."""

    name: str
    aliases: tuple[str, ...]
    protocol: Protocol
    tiers: tuple[str, ...]
    default_size: str
    durations: tuple[int, ...]
    default_duration: int
    prompt_max: int  # longer prompts are cut, not refused
    audio: bool  # generated sound and input.audio_url
    multi_shot: bool  # parameters.shot_type
    returns_actual_prompt: bool
    usage_shape: Literal["v1", "v2"]  # v2: the wan2.6 usage object
    submissions_per_s: int
    concurrency: int
    fps: int = FPS

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(s for t in self.tiers for s in SIZES[t].values())


# wan2.6 durations: any integer 2..15 (the newest reference; the seed lists 5/10/15).
# The Beijing spelling wanx2.1-… names the same 2.1 models.
MODELS: dict[str, ServiceModel] = {m.name: m for m in (
    ServiceModel("wan2.6-t2v", (), "size", ("720P", "1080P"), "1920*1080", tuple(range(2, 16)), 5,
                 1500, audio=True, multi_shot=True, returns_actual_prompt=False,
                 usage_shape="v2", submissions_per_s=5, concurrency=5),
    ServiceModel("wan2.5-t2v-preview", (), "size", ("480P", "720P", "1080P"), "1920*1080",
                 (5, 10), 5, 1500, audio=True, multi_shot=False, returns_actual_prompt=True,
                 usage_shape="v1", submissions_per_s=5, concurrency=5),
    ServiceModel("wan2.2-t2v-plus", (), "size", ("480P", "1080P"), "1920*1080", (5,), 5, 800,
                 audio=False, multi_shot=False, returns_actual_prompt=True, usage_shape="v1",
                 submissions_per_s=2, concurrency=2),
    ServiceModel("wan2.1-t2v-turbo", ("wanx2.1-t2v-turbo",), "size", ("480P", "720P"),
                 "1280*720", (5,), 5, 800, audio=False, multi_shot=False,
                 returns_actual_prompt=True, usage_shape="v1", submissions_per_s=2,
                 concurrency=2),
    ServiceModel("wan2.1-t2v-plus", ("wanx2.1-t2v-plus",), "size", ("720P",), "1280*720", (5,),
                 5, 800, audio=False, multi_shot=False, returns_actual_prompt=True,
                 usage_shape="v1", submissions_per_s=2, concurrency=2),
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
    "InternalError": (500, "An internal error has occured, please try again later."),
    "InternalError.Algo": (500, "An internal algorithm error has occured."),
    "InternalError.Timeout": (500, "An internal timeout error has occured."),
    "SystemError": (500, "An system error has occured, please try again later."),
    "ModelUnavailable": (503, "Model is unavailable, please try again later."),
}
