"""An offline emulator of the DashScope (Wan) text-to-video API.

It answers exactly like the service (reference: ``shared/reference/dashscope-t2v-api.md``),
queues and throttles like it, renders real H.264 MP4 files, persists its tasks, and can inject
faults reproducibly. It is an independent oracle of the service: it reads create bodies with its
own parser (:mod:`.params`) and its own table of models, limits and error codes (:mod:`.facts`),
and imports nothing of the client, so a client bug cannot hide in its tests. Three ways to run it:

- in-process: ``app = create_app(...)`` and ``httpx.AsyncClient(transport=httpx.ASGITransport(
  app=app), base_url="http://emulator")``;
- on a loopback port from Python: ``emu = start_embedded()`` (``emu.base_url``, ``emu.api_key``);
- from a shell: ``python -m wan_nb.emulator --port 8765``.

Where the sources are silent, the emulator decides (one place each, easy to change):

- every API key is its own account: its own queues, limits and task list; a task of another
  key queries as UNKNOWN;
- every model of :data:`.facts.MODELS` is served, both wire protocols (``size``; the 2026
  ``resolution`` + ``ratio``, where ``size`` and ``shot_type`` are ignored), whatever the
  emulator's region; the 2026 models' own rules and decisions are in :mod:`.params` and
  :mod:`.facts`;
- ``actual_prompt`` with ``prompt_extend: false`` is the prompt itself (wan2.6, wan2.7,
  HappyHorse, Wan 3.0: never sent);
  ``orig_prompt`` is the prompt as received, before the service's truncation (prompt to the
  model's limit, negative_prompt to 500 characters); both only in SUCCEEDED answers;
- a PENDING task waits a dispatch delay (0.3 s × speed; 8 s realistic) even with a free slot,
  like the service's ~10 s between ``submit_time`` and ``scheduled_time``;
- FAILED answers carry ``code``, ``message``, ``submit_time``, ``scheduled_time``,
  ``end_time``; CANCELED ones ``submit_time`` and ``end_time``; list items have ``start_time``
  only once RUNNING;
- cancelling an unknown or expired id is the same 400 UnsupportedOperation;
- list: newest first, ``page_size`` 1-100, a window longer than 24 h or a malformed time is
  400 InvalidParameter; only ``start_time`` given means that day, only ``end_time`` the day
  before it;
- a create over the submission rate, a refused body or a blocked prompt is not counted as a
  submission; submissions count per key and model in a sliding 1 s window;
- a parameter sent as ``null`` counts as not sent; a refused body lists every problem found;
- ``shot_type: "multi"`` with ``prompt_extend: false`` is accepted and runs as single (the
  reference says it only takes effect with prompt_extend);
- ``audio_url`` must be http(s) or ``oss://`` (with ``X-DashScope-OssResourceResolve:
  enable``; otherwise, or for an unknown upload, 400 InvalidParameter at create); a URL that
  cannot be fetched or is not wav/mp3 makes the task FAILED with InvalidParameter;
- unknown paths under ``/api/v1`` answer 400 InvalidParameter "url error, please check url!";
- ``video_url`` expires 24 h after the task ended; uploads are kept (no 48 h expiry).
"""

from .app import Emulator, create_app
from .engine import ApiFailure, Clock, Engine, FakeClock, SystemClock
from .faults import ConnectionDropped, FaultConfig, FaultInjector
from .server import EmbeddedEmulator, default_data_dir, start_embedded, stop_all

__all__ = ["ApiFailure", "Clock", "ConnectionDropped", "EmbeddedEmulator", "Emulator", "Engine",
           "FakeClock", "FaultConfig", "FaultInjector", "SystemClock", "create_app",
           "default_data_dir", "start_embedded", "stop_all"]
