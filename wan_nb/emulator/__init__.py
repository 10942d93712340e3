"""An offline emulator of the DashScope (Wan) text-to-video API.

It answers exactly like the service (reference: ``shared/reference/dashscope-t2v-api.md``),
queues and throttles like it, renders real H.264 MP4 files, persists its tasks, and can inject
faults reproducibly. Three ways to run it:

- in-process: ``app = create_app(...)`` and ``httpx.AsyncClient(transport=httpx.ASGITransport(
  app=app), base_url="http://emulator")``;
- on a loopback port from Python: ``emu = start_embedded()`` (``emu.base_url``, ``emu.api_key``);
- from a shell: ``python -m wan_nb.emulator --port 8765``.
"""

from .app import Emulator, create_app
from .engine import ApiFailure, Clock, Engine, FakeClock, SystemClock
from .faults import ConnectionDropped, FaultConfig, FaultInjector
from .server import EmbeddedEmulator, default_data_dir, start_embedded, stop_all

__all__ = ["ApiFailure", "Clock", "ConnectionDropped", "EmbeddedEmulator", "Emulator", "Engine",
           "FakeClock", "FaultConfig", "FaultInjector", "SystemClock", "create_app",
           "default_data_dir", "start_embedded", "stop_all"]
