"""Fault injection: error answers, latency, dropped connections and failing tasks, reproducible
from a seed.

>>> cfg = FaultConfig(seed=7, error_rates={"create": {429: 0.5}})
>>> a = [FaultInjector(cfg).decide("create") for _ in range(1)]
>>> [f.status if f else None for f in a] == [f.status if f else None for f in
...  [FaultInjector(cfg).decide("create")]]
True

Each endpoint draws from its own random stream (seeded by ``seed`` and the endpoint name), so
the sequence of faults seen by, say, the create calls does not depend on how many queries ran
in between.

**Dropped connections.** Under uvicorn the connection is closed without any answer: httpx
raises ``httpx.RemoteProtocolError("Server disconnected without sending a response.")`` and
``requests`` raises ``ConnectionError(RemoteDisconnected(...))``. Through
``httpx.ASGITransport`` (no socket to close) the app raises :class:`ConnectionDropped`, a
subclass of ``httpx.RemoteProtocolError``, which the transport passes through: a client sees
the same exception type either way.

**Create faults and "never pay twice".** ``create_fault_phase`` says when a fault on a create
call is decided: ``"before"`` (no task is created), ``"after"`` (the task IS created and queued,
then the client gets the error or the dropped connection: the ambiguous case a careful client
reconciles through the list endpoint) or ``"random"`` (either, from the seed). Only server
errors (408, 5xx) and dropped connections can come "after": a 4xx answer (429 included) is the
service refusing the request, so it never follows a created task.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from .facts import ERROR_CODES

ENDPOINTS = ("create", "query", "list", "cancel")
Phase = Literal["before", "after", "random"]

#: the code an injected error carries, by HTTP status (create's 429 is the submission quota)
STATUS_CODES: dict[int, str] = {400: "InvalidParameter", 408: "RequestTimeOut",
                                429: "Throttling", 500: "InternalError", 502: "InternalError",
                                503: "ModelUnavailable", 504: "RequestTimeOut"}


class ConnectionDropped(httpx.RemoteProtocolError):
    """Raised by the ASGI app for an injected dropped connection when there is no socket to
    close (``httpx.ASGITransport``)."""

    def __init__(self, message: str = "Server disconnected without sending a response."):
        super().__init__(message)


@dataclass(frozen=True)
class Fault:
    kind: Literal["error", "drop"]
    status: int = 0
    code: str = ""
    message: str = ""
    phase: Literal["before", "after"] = "before"


@dataclass
class FaultConfig:
    """What to inject. ``error_rates``: per endpoint (create, query, list, cancel), a map of HTTP
    status (or error code) to probability. ``latency``: (min, max) seconds added to every API
    answer. ``drop_rate``: probability of a dropped connection (a number for every endpoint, or
    a map per endpoint). ``fail_tasks``: ``{"code": "InternalError.Algo", "rate": 0.1}`` makes
    accepted tasks end FAILED with that code after their run."""

    seed: int | None = None
    error_rates: dict[str, dict[Any, float]] = field(default_factory=dict)
    latency: tuple[float, float] | None = None
    drop_rate: float | dict[str, float] = 0.0
    fail_tasks: dict[str, Any] | None = None
    create_fault_phase: Phase = "before"

    def __post_init__(self) -> None:
        for ep, rates in self.error_rates.items():
            if ep not in ENDPOINTS:
                raise ValueError(f"error_rates endpoint {ep!r} is not one of {ENDPOINTS}")
            for status, p in rates.items():
                _code_for(ep, status)
                _check_p(p, f"error_rates[{ep!r}][{status!r}]")
            if sum(rates.values()) > 1:
                raise ValueError(f"error_rates[{ep!r}] add up to more than 1")
        drops = self.drop_rate if isinstance(self.drop_rate, Mapping) else {
            ep: self.drop_rate for ep in ENDPOINTS}
        for ep, p in drops.items():
            if ep not in ENDPOINTS:
                raise ValueError(f"drop_rate endpoint {ep!r} is not one of {ENDPOINTS}")
            _check_p(p, f"drop_rate[{ep!r}]")
        if self.latency is not None:
            lo, hi = (float(x) for x in self.latency)
            if not 0 <= lo <= hi:
                raise ValueError(f"latency must be (min, max) with 0 <= min <= max, "
                                 f"not {self.latency!r}")
            self.latency = (lo, hi)
        if self.fail_tasks:
            code = self.fail_tasks.get("code", "InternalError.Algo")
            if not isinstance(code, str) or not code:
                raise ValueError("fail_tasks code must be an error code string")
            _check_p(self.fail_tasks.get("rate", 0.0), "fail_tasks rate")
        if self.create_fault_phase not in ("before", "after", "random"):
            raise ValueError("create_fault_phase must be 'before', 'after' or 'random'")

    def drop_for(self, endpoint: str) -> float:
        if isinstance(self.drop_rate, Mapping):
            return float(self.drop_rate.get(endpoint, 0.0))
        return float(self.drop_rate)

    @classmethod
    def uniform(cls, rate: float, *, seed: int | None = None, **kw: Any) -> "FaultConfig":
        """``rate`` spread evenly over 429, 500 and 503 on every endpoint (the CLI's
        ``--fault-rate``)."""
        per = rate / 3
        return cls(seed=seed, error_rates={ep: {429: per, 500: per, 503: per}
                                           for ep in ENDPOINTS}, **kw)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FaultConfig":
        """From JSON (``POST /_emulator/faults``): statuses may be strings such as ``"429"``."""
        if not isinstance(data, Mapping):
            raise ValueError("the fault config must be a JSON object")
        unknown = set(data) - {"seed", "error_rates", "latency", "drop_rate", "fail_tasks",
                               "create_fault_phase"}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        rates = data.get("error_rates") or {}
        if not isinstance(rates, Mapping) or not all(isinstance(v, Mapping)
                                                     for v in rates.values()):
            raise ValueError("error_rates must map an endpoint to {status: probability}")
        conv = {ep: {(int(k) if str(k).isdigit() else k): float(p) for k, p in r.items()}
                for ep, r in rates.items()}
        lat = data.get("latency")
        return cls(seed=data.get("seed"), error_rates=conv,
                   latency=tuple(lat) if lat is not None else None,  # type: ignore[arg-type]
                   drop_rate=data.get("drop_rate", 0.0), fail_tasks=data.get("fail_tasks"),
                   create_fault_phase=data.get("create_fault_phase", "before"))

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed,
                "error_rates": {ep: {str(k): p for k, p in r.items()}
                                for ep, r in self.error_rates.items()},
                "latency": list(self.latency) if self.latency else None,
                "drop_rate": self.drop_rate, "fail_tasks": self.fail_tasks,
                "create_fault_phase": self.create_fault_phase}


def _check_p(p: Any, what: str) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"{what} must be a probability from 0 to 1, not {p!r}")


def _code_for(endpoint: str, status_or_code: Any) -> tuple[int, str]:
    if isinstance(status_or_code, str) and not status_or_code.isdigit():
        if status_or_code not in ERROR_CODES:
            raise ValueError(f"unknown error code {status_or_code!r}")
        return ERROR_CODES[status_or_code][0], status_or_code
    status = int(status_or_code)
    if status == 429 and endpoint == "create":
        return 429, "Throttling.RateQuota"
    if status not in STATUS_CODES:
        raise ValueError(f"cannot inject HTTP {status}; choose one of {sorted(STATUS_CODES)} "
                         "or an error code")
    return status, STATUS_CODES[status]


class FaultInjector:
    """Draws the faults of one :class:`FaultConfig`."""

    def __init__(self, config: FaultConfig | None = None):
        self.config = config or FaultConfig()
        self._rngs: dict[str, random.Random] = {}

    @property
    def active(self) -> bool:
        c = self.config
        return bool(c.error_rates or c.latency or c.fail_tasks or any(
            c.drop_for(ep) for ep in ENDPOINTS))

    def _rng(self, stream: str) -> random.Random:
        rng = self._rngs.get(stream)
        if rng is None:
            seed = self.config.seed
            rng = random.Random(f"{seed}:{stream}") if seed is not None else random.Random()
            self._rngs[stream] = rng
        return rng

    def latency(self, endpoint: str) -> float:
        lat = self.config.latency
        if not lat or lat[1] <= 0:
            return 0.0
        return self._rng("latency:" + endpoint).uniform(*lat)

    def decide(self, endpoint: str) -> Fault | None:
        """The fault for one call of ``endpoint``, or None."""
        u = self._rng(endpoint).random()
        acc = self.config.drop_for(endpoint)
        fault: Fault | None = None
        if u < acc:
            fault = Fault("drop")
        else:
            rates = self.config.error_rates.get(endpoint, {})
            for key in sorted(rates, key=str):
                acc += rates[key]
                if u < acc:
                    status, code = _code_for(endpoint, key)
                    fault = Fault("error", status, code, ERROR_CODES.get(code, (0, code))[1])
                    break
        if fault is None:
            return None
        phase = self.config.create_fault_phase if endpoint == "create" else "before"
        if fault.kind == "error" and 400 <= fault.status < 500 and fault.status != 408:
            phase = "before"  # a refusal: the service made no task
        if phase == "random":
            phase = "after" if self._rng("phase").random() < 0.5 else "before"
        return Fault(fault.kind, fault.status, fault.code, fault.message, phase)

    def task_failure(self) -> tuple[str, str] | None:
        """(code, message) if the next accepted task should end FAILED, else None."""
        ft = self.config.fail_tasks
        if not ft or not ft.get("rate"):
            return None
        if self._rng("tasks").random() >= float(ft["rate"]):
            return None
        code = ft.get("code", "InternalError.Algo")
        message = ft.get("message") or (ERROR_CODES[code][1] if code in ERROR_CODES else code)
        return code, message
