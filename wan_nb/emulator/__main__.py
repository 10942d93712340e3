"""``python -m wan_nb.emulator`` (or ``wan-nb-emulator``): serve the emulator on a loopback port.

    python -m wan_nb.emulator --port 8765 --speed fast
    wan_nb emulator listening on http://127.0.0.1:8765 (key sk-emu-…; export
    DASHSCOPE_HTTP_BASE_URL=http://127.0.0.1:8765/api/v1)

``--port 0`` picks a free port (the banner says which). Ctrl-C or SIGTERM stops it (exit 0).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import facts
from .engine import FakeClock, parse_speed
from .faults import FaultConfig
from .server import EmbeddedEmulator, default_data_dir, is_loopback


def _latency(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    try:
        return float(lo), float(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"latency is MIN,MAX seconds, not {text!r}") from None


def _speed(text: str) -> Any:
    try:
        return parse_speed(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wan-nb-emulator", description="Offline emulator of the "
                                "DashScope (Wan) text-to-video API, for wan_nb and the official "
                                "dashscope SDK.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only unless "
                   "--allow-remote; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (0 = a free one; default 8765)")
    p.add_argument("--key", help="API key to accept (default: the one stored in the data "
                   "directory, created on first use)")
    p.add_argument("--any-key", action="store_true", help="accept any key that starts with sk-")
    p.add_argument("--speed", type=_speed, default="fast",
                   help="fast (default), realistic (1-5 min per task) or a multiplier")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"tasks, results and uploads (default ${'{'}WAN_NB_EMULATOR_DIR{'}'} or "
                        f"{default_data_dir()})")
    p.add_argument("--fault-rate", type=float, default=0.0,
                   help="probability of an injected 429/500/503 on every API call")
    p.add_argument("--drop-rate", type=float, default=0.0,
                   help="probability of a dropped connection on every API call")
    p.add_argument("--latency", type=_latency, default=None, metavar="MIN,MAX",
                   help="added latency in seconds")
    p.add_argument("--fail-task-rate", type=float, default=0.0,
                   help="probability that an accepted task ends FAILED (InternalError.Algo)")
    p.add_argument("--create-fault-phase", choices=("before", "after", "random"),
                   default="before", help="inject create faults before or after the task is "
                   "created (after = the ambiguous case)")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault injection")
    p.add_argument("--fake-clock", action="store_true",
                   help="time moves only through POST /_emulator/clock")
    p.add_argument("--no-query-limit", action="store_true",
                   help=f"lift the {facts.QUERY_RATE_PER_S} query/list/cancel per second limit")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow binding a non-loopback address")
    p.add_argument("--log-level", default="warning")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.allow_remote and not is_loopback(args.host):
        print(f"wan_nb emulator: refusing to bind {args.host}: use a loopback address or "
              "--allow-remote", file=sys.stderr)
        return 2
    faults = FaultConfig.uniform(args.fault_rate, seed=args.seed, drop_rate=args.drop_rate,
                                 latency=args.latency,
                                 fail_tasks={"code": "InternalError.Algo",
                                             "rate": args.fail_task_rate}
                                 if args.fail_task_rate else None,
                                 create_fault_phase=args.create_fault_phase)
    kw: dict[str, Any] = {}
    if args.any_key:
        kw["api_keys"] = None
    if args.no_query_limit:
        kw["query_rate"] = None
    try:
        emu = EmbeddedEmulator(data_dir=args.data_dir or default_data_dir(), api_key=args.key,
                               host=args.host, port=args.port, speed=args.speed,
                               allow_remote=args.allow_remote, log_level=args.log_level,
                               clock=FakeClock() if args.fake_clock else None,
                               faults=faults, **kw)
        emu.start()
    except (OSError, RuntimeError, ValueError) as e:
        print(f"wan_nb emulator: cannot start: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    key = "any sk-… key" if args.any_key else f"key {emu.api_key}"
    print(f"wan_nb emulator listening on {emu.base_url} ({key}; export "
          f"DASHSCOPE_HTTP_BASE_URL={emu.api_base})", flush=True)
    while not stop.wait(0.5):
        if not emu.running:
            print("wan_nb emulator: the server stopped unexpectedly", file=sys.stderr)
            return 1
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
