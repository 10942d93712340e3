"""The exception tree, and the service's error codes (shared with the emulator).

::

    WanError
    ├── ValidationError (also ValueError)   bad input, raised before any request is sent
    ├── APIError                            the service answered with an error envelope
    │   ├── AuthenticationError             401 InvalidApiKey, 403 AccessDenied*
    │   ├── InvalidRequestError             400 InvalidParameter, 404 ModelNotFound, 413
    │   │   └── UnsupportedOperationError   400 UnsupportedOperation (cancel of a non-PENDING task)
    │   ├── ContentRejectedError            400 DataInspectionFailed, IPInfringementSuspect,
    │   │                                   InvalidParameter.DataInspection
    │   ├── BillingError                    400 Arrearage
    │   ├── ThrottledError                  429 Throttling*, ServiceOverloaded, ResourceExhausted
    │   └── ServerError                     408, 5xx (InternalError.DataInspection included)
    ├── TransportError                      the request did not get a usable answer (wraps httpx)
    │   └── AmbiguousCreateError            a create may have reached the service
    ├── TaskFailed                          the task ended FAILED or CANCELED
    ├── TaskExpired                         UNKNOWN: older than 24 h, or the video URL expired
    ├── DownloadError                       the result could not be fetched or is not an MP4
    └── JobTimeout (also TimeoutError)      a wait reached its deadline; the task goes on

Every message says what was wrong and, where it can, what is allowed. None of them ever
contains an API key: :func:`redact` is applied to every text taken from outside.
"""

from __future__ import annotations

import re
from typing import Any

_KEY_RE = re.compile(r"(sk-|Bearer\s+)[A-Za-z0-9._\-]{4,}")


def redact(text: str) -> str:
    """Mask anything that looks like a DashScope key (``sk-…``) or a bearer token."""
    return _KEY_RE.sub(lambda m: m.group(1) + "***", text)


class WanError(Exception):
    """Root of every error wan_nb raises."""


class ValidationError(WanError, ValueError):
    """Invalid parameters; raised before any request is sent.

    ``errors`` is a list of ``(field, message)`` pairs, one per problem found.
    """

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = list(errors)
        lines = [msg for _, msg in self.errors]
        super().__init__(lines[0] if len(lines) == 1 else
                         f"{len(lines)} problems:\n  - " + "\n  - ".join(lines))

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.errors]


class APIError(WanError):
    """An error envelope from the service: ``status``, ``code``, ``message``, ``request_id``."""

    def __init__(self, status: int, code: str | None, message: str | None,
                 request_id: str | None = None):
        self.status = status
        self.code = code or "Unknown"
        self.message = redact(message or "")
        self.request_id = request_id
        rid = f" (request_id {request_id})" if request_id else ""
        super().__init__(f"HTTP {status} {self.code}: {self.message}{rid}")

    @property
    def retryable(self) -> bool:
        return False


class AuthenticationError(APIError):
    """The key is missing, wrong, of another region, or has no access to the model."""


class InvalidRequestError(APIError):
    """The service refused the parameters."""


class UnsupportedOperationError(InvalidRequestError):
    """Cancel of a task that is no longer PENDING."""


class ContentRejectedError(APIError):
    """Content inspection refused the prompt (or, as a FAILED task, the output)."""


class BillingError(APIError):
    """The account is overdue."""


class ThrottledError(APIError):
    """Rate or quota limit. ``retry_after`` (seconds) when the service said so."""

    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return True


class ServerError(APIError):
    """408 or 5xx: worth retrying for idempotent calls."""

    @property
    def retryable(self) -> bool:
        return True


class TransportError(WanError):
    """No usable answer: connection refused or reset, timeout, protocol error."""


class AmbiguousCreateError(TransportError):
    """A create request left this process but no answer came back: the task may exist.

    It is never retried blindly; the job layer reconciles it with the list endpoint.
    ``sent_at`` is when the request left (UTC).
    """

    def __init__(self, message: str, sent_at: Any = None):
        super().__init__(message)
        self.sent_at = sent_at


class TaskFailed(WanError):
    """The task ended FAILED (``code``/``message`` from the service) or CANCELED."""

    def __init__(self, message: str, *, code: str | None = None, status: str = "FAILED",
                 task_id: str | None = None, job: Any = None):
        super().__init__(redact(message))
        self.code = code
        self.status = status
        self.task_id = task_id
        self.job = job


class TaskExpired(WanError):
    """The task id or the video URL is past the service's 24-hour window."""


class DownloadError(WanError):
    """The result could not be downloaded, or what came back is not the promised MP4.

    ``status`` is the HTTP status of the answer when there was one; ``retryable`` says that
    the failure was the network's or the server's (5xx, 408, 429, a dropped or short
    transfer), so the same URL may work later, unlike a 403/404 or a body that is no MP4.
    """

    def __init__(self, message: str, *, status: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class JobTimeout(WanError, TimeoutError):
    """A wait reached its deadline. The task itself goes on (and still gets recorded)."""


#: code → (HTTP status the service uses, exception class, a typical message)
ERROR_CODES: dict[str, tuple[int, type[APIError], str]] = {
    "InvalidParameter": (400, InvalidRequestError, "The request parameter is invalid."),
    "DataInspectionFailed": (400, ContentRejectedError,
                             "Input data may contain inappropriate content."),
    "IPInfringementSuspect": (400, ContentRejectedError,
                              "Input data is suspected of being involved in IP infringement."),
    "Arrearage": (400, BillingError, "Access denied, please make sure your account is in good "
                                     "standing."),
    "UnsupportedOperation": (400, UnsupportedOperationError,
                             "Failed to cancel the task, please confirm if the task is in "
                             "PENDING status."),
    "InvalidApiKey": (401, AuthenticationError, "Invalid API-key provided."),
    "AccessDenied": (403, AuthenticationError, "Access denied."),
    "Model.AccessDenied": (403, AuthenticationError, "Model access denied."),
    "AccessDenied.Unpurchased": (403, AuthenticationError, "Access denied: model not purchased."),
    "ModelNotFound": (404, InvalidRequestError, "Model not found."),
    "RequestTimeOut": (408, ServerError, "Request timed out, please try again later."),
    "BadRequest.TooLarge": (413, InvalidRequestError, "Payload too large."),
    "Throttling": (429, ThrottledError, "Requests throttling triggered."),
    "Throttling.RateQuota": (429, ThrottledError, "Requests rate limit exceeded, please try "
                                                  "again later."),
    "Throttling.AllocationQuota": (429, ThrottledError, "Allocated quota exceeded, please "
                                                        "increase your quota limit."),
    "InternalError": (500, ServerError, "An internal error has occured, please try again later."),
    "InternalError.Algo": (500, ServerError, "An internal algorithm error has occured."),
    "InternalError.Timeout": (500, ServerError, "An internal timeout error has occured."),
    "SystemError": (500, ServerError, "An system error has occured, please try again later."),
    "ModelUnavailable": (503, ServerError, "Model is unavailable, please try again later."),
    # 2026 (reference §7.4). The three 429s are refusals like the ones above: nothing was
    # created, so a create is sent again after backing off. A 400 DataInspection is a content
    # refusal. A 500 DataInspection does not prove that no task was made: like every 5xx
    # answer to a create, the client treats it as an ambiguous create and reconciles it.
    # DECISION: the service's texts are undocumented (only "Request rate increased too
    # quickly" is quoted): these are the emulator's (emulator/facts.py), word for word.
    "Throttling.BurstRate": (429, ThrottledError, "Request rate increased too quickly, please "
                                                  "slow down."),
    "ServiceOverloaded": (429, ThrottledError, "The service is overloaded, please try again "
                                               "later."),
    "ResourceExhausted": (429, ThrottledError, "Resources are exhausted, please try again "
                                               "later."),
    "InvalidParameter.DataInspection": (400, ContentRejectedError,
                                        "The input failed content inspection."),
    "InternalError.DataInspection": (500, ServerError, "An internal error occurred during data "
                                                       "inspection."),
}


def error_class(status: int, code: str | None) -> type[APIError]:
    """The exception class for an error envelope: by code first, by HTTP status otherwise."""
    if code in ERROR_CODES:
        return ERROR_CODES[code][1]
    if code and code.startswith("Throttling"):
        return ThrottledError
    if status in (401, 403):
        return AuthenticationError
    if status == 429:
        return ThrottledError
    if status == 408 or status >= 500:
        return ServerError
    if 400 <= status < 500:
        return InvalidRequestError
    return APIError
