"""Where and how a client talks: :class:`Secret` (an API key that never shows itself) and
:class:`Config` (base URL, region, backend name), resolved from arguments, then the
environment (``DASHSCOPE_API_KEY``, ``DASHSCOPE_HTTP_BASE_URL``, like the official SDK),
then defaults. Both are importable from :mod:`wan_nb.client` too."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import ClassVar, Mapping

import httpx

from . import catalog
from ._version import __version__
from .errors import ValidationError, redact

USER_AGENT = f"wan_nb/{__version__} httpx/{httpx.__version__}"


class Secret:
    """An API key that never shows itself in a repr, a log line or an exception.

    Every entry point (:func:`wan_nb.connect`, :meth:`Config.resolve`, :class:`Client`,
    :class:`AsyncClient`) wraps the key on its first line, before anything can raise: a
    verbose traceback (IPython's ``%xmode Verbose``, ``capture_locals=True``) prints the locals
    and arguments of every frame, so no frame of ours holds the key as a plain string.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret = ""):
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise ValidationError([("api_key", f"api_key must be a string (sk-...), not "
                                               f"{type(value).__name__}")])
        self._value = value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 name: str = "DASHSCOPE_API_KEY") -> Secret:
        """The key in the environment (``""`` when unset), read here so that the environment
        mapping, which holds it in clear, is never a local of a caller's frame."""
        return cls((os.environ if env is None else env).get(name) or "")

    def reveal(self) -> str:
        return getattr(self, "_value", "")  # a Secret whose __init__ raised has no value

    def __repr__(self) -> str:
        return "Secret('sk-***')" if self.reveal() else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.reveal())


@dataclass(frozen=True)
class Config:
    """Where and how a client talks; resolved from arguments, then environment, then defaults.

    ``backend`` names the service that holds the tasks; it is stored with every run and is what
    de-duplication and resume match on, so it names the service, not the URL's spelling:

    - ``live:<region>`` for a known DashScope host, including the per-workspace hosts
      ``{WorkspaceId}.{region-id}.maas.aliyuncs.com`` (same account, same tasks);
    - ``emulator:<instance id>`` for a wan_nb emulator reached by URL: :class:`Client` asks
      it once who it is (:meth:`identify`), so a restart on another port or ``localhost``
      versus ``127.0.0.1`` is the same backend;
    - ``emulator`` for the one :func:`wan_nb.connect` embeds (its data lives inside the
      store, one per store, and earlier runs are already recorded under that name);
    - ``custom:<host:port/path>`` for any other server (a gateway or proxy), spelled as
      before (two forwarders on one host, or one gateway routing paths to two accounts,
      stay apart), and for an emulator that did not answer when asked.

    ``legacy_backend`` is the name an earlier wan_nb version gave the same URL
    (``custom:<host:port/path>``) when it differs: :class:`Client` renames such rows of its
    store once the service has said who it is, so earlier runs are still matched.
    """

    api_key: Secret
    base_url: str
    region: str | None
    backend: str
    ask_identity: bool = False  # a custom URL whose server has not yet said who it is
    legacy_backend: str | None = None

    #: DashScope's region ids (workspace hosts, ``DASHSCOPE_API_REGION``) → our region names
    REGION_IDS: ClassVar[dict[str, str]] = {"ap-southeast-1": "singapore",
                                            "cn-beijing": "beijing", "us-east-1": "virginia"}
    #: our region names → DashScope's region ids (the inverse of REGION_IDS)
    REGION_ID_OF: ClassVar[dict[str, str]] = {v: k for k, v in REGION_IDS.items()}
    #: the header every answer of a wan_nb emulator carries (wan_nb/emulator/app.py)
    IDENTITY_HEADER: ClassVar[str] = "x-wan-emulator-id"

    @classmethod
    def resolve(cls, api_key: str | Secret | None = None, region: str | None = None,
                base_url: str | None = None, *, backend: str | None = None,
                env: Mapping[str, str] | None = None, workspace: str | None = None) -> Config:
        """``workspace`` (with ``region``) builds the per-workspace host
        (:meth:`workspace_url`) in place of ``base_url``."""
        # The key is wrapped first and the environment mapping dropped: both would otherwise
        # be printed by a verbose traceback of a bad region or base_url below.
        api_key = Secret(api_key) if api_key is not None else Secret.from_env(env)
        if workspace is not None:
            if base_url is not None:
                raise ValidationError([("workspace", "give workspace= (with region=) or "
                                                     "base_url=, not both")])
            base_url = cls.workspace_url(workspace, region)
        if base_url is None and region is None:
            base_url = (os.environ if env is None else env).get("DASHSCOPE_HTTP_BASE_URL") \
                or None
        env = None
        legacy = None
        if base_url is not None:
            base = base_url.rstrip("/").removesuffix("/api/v1")
            found, label = cls.name_of(base, "base_url")
            region = found or region
            old = "custom:" + base.split("//", 1)[1]  # what wan_nb <= 0.1 named this URL
            legacy = old if old != label and label.startswith("live:") else None
            if label.startswith("custom:"):
                legacy = old  # an emulator answering later is renamed from this
        else:
            region = region or catalog.DEFAULT_REGION
            base = catalog.base_url_for(region)
            label = f"live:{region}"
        return cls(api_key, base, region, backend or label,
                   ask_identity=backend is None and label.startswith("custom:"),
                   legacy_backend=None if backend is not None else legacy)

    @classmethod
    def workspace_url(cls, workspace: str, region: str | None = None) -> str:
        """The per-workspace host of reference §7.5,
        ``https://{WorkspaceId}.{region-id}.maas.aliyuncs.com``; ``region`` is one of ours
        (singapore, beijing, virginia; default singapore) or a region id (``ap-southeast-1``).
        :class:`ValidationError` for a workspace id that cannot be a host name label.

        >>> Config.workspace_url("ws-8f2a", "beijing")
        'https://ws-8f2a.cn-beijing.maas.aliyuncs.com'
        """
        region = catalog.DEFAULT_REGION if region is None else region
        region_id = cls.REGION_ID_OF.get(region, region)
        if region_id not in cls.REGION_IDS:
            names = sorted({*cls.REGION_ID_OF, *cls.REGION_IDS})
            raise ValidationError([("region", f"region {region!r} has no workspace host; "
                                              f"choose one of {', '.join(names)}")])
        ok = (isinstance(workspace, str) and 0 < len(workspace) <= 63
              and all(c.isascii() and (c.isalnum() or c == "-") for c in workspace)
              and not workspace.startswith("-") and not workspace.endswith("-"))
        if not ok:
            raise ValidationError([("workspace", f"workspace {workspace!r} is not a workspace "
                                                 "id: it must be the id shown in the Model "
                                                 "Studio console (letters, digits and '-', at "
                                                 "most 63, e.g. 'ws-8f2a...'), not a URL or "
                                                 "a name")])
        return f"https://{workspace.lower()}.{region_id}.maas.aliyuncs.com"

    @classmethod
    def name_of(cls, base: str, field: str = "base_url") -> tuple[str | None, str]:
        """``(region or None, backend label)`` of a base URL, without asking the server.

        >>> Config.name_of("https://ws-1.ap-southeast-1.maas.aliyuncs.com")
        ('singapore', 'live:singapore')
        >>> Config.name_of("http://LocalHost:8765")
        (None, 'custom:LocalHost:8765')
        """
        if not base.startswith(("http://", "https://")):
            raise ValidationError([(field, f"{field} {base!r} must start with http:// or "
                                           "https://")])
        try:
            host, problem = httpx.URL(base).host.lower(), ""
        except httpx.InvalidURL as e:
            host, problem = "", f"is not a URL: {e}"
        # raised outside the except block: the chained httpx error would carry a half-built
        # httpx.URL whose repr fails, and a traceback with locals would then crash
        if problem or not host:
            raise ValidationError([(field, f"{field} {base!r} {problem or 'has no host'}")])
        for region, url in catalog.REGIONS.items():
            if httpx.URL(url).host == host:
                return region, f"live:{region}"
        suffix = ".maas.aliyuncs.com"
        parts = host.removesuffix(suffix).split(".")
        if host.endswith(suffix) and len(parts) == 2 and all(parts):
            region = cls.REGION_IDS.get(parts[1], parts[1])
            return (region if region in catalog.REGIONS else None), f"live:{region}"
        return None, "custom:" + base.split("//", 1)[1]

    async def identify(self, transport: httpx.AsyncBaseTransport | None = None,
                       timeout: float = 10.0) -> Config:
        """This configuration named by the server itself: a wan_nb emulator answers with its
        instance id (``emulator:<id>``); any other server keeps ``custom:<host:port/path>``.
        One ``GET {base}/`` without the key. When nobody answers (a gateway offline, an
        emulator not started yet) the name stays ``custom:…``, with a warning; rows filed
        under it are renamed the next time the emulator answers."""
        if not self.ask_identity:
            return self
        try:
            async with httpx.AsyncClient(transport=transport, timeout=timeout,
                                         headers={"User-Agent": USER_AGENT},
                                         follow_redirects=False) as http:
                resp = await http.get(self.base_url + "/")
        except Exception as e:  # any failure of the question: keep the URL's name
            import logging

            logging.getLogger("wan_nb").warning(
                "could not ask %s who it is (%s); its runs are filed under %s", self.base_url,
                redact(f"{type(e).__name__}: {e}"), self.backend)
            return self
        ident = resp.headers.get(self.IDENTITY_HEADER, "").strip().lower()
        label = self.backend
        if 8 <= len(ident) <= 64 and all(c in "0123456789abcdef" for c in ident):
            label = f"emulator:{ident}"
        return dataclasses.replace(self, backend=label, ask_identity=False)
