"""How long the emulator takes to render a clip, by size, duration and sound.

Run: ``python benchmarks/bench_render.py`` (about a minute on 2 cores). Prints the median of 3
renders per cell and whether 1080p, 10 s, with generated sound stays within the 2 s target.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from wan_nb.emulator.render import RenderSpec, render_video
from wan_nb.media import probe

SIZES = {"480p": (832, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
DURATIONS = (5, 10, 15)
RUNS = 3
TARGET_S = 2.0
PROMPT = "一只狐狸侦探在雨夜的办公室里，翻阅着一份旧案卷宗。A fox detective, cinematic, 35mm."


def time_render(width: int, height: int, duration: int, audio: str, out: Path) -> float:
    times = []
    for run in range(RUNS):
        spec = RenderSpec(prompt=PROMPT, seed=1000 + run, width=width, height=height,
                          duration=duration, watermark=True, audio=audio,  # type: ignore[arg-type]
                          caption=f"wan2.5-t2v-preview · {width}*{height} · seed {1000 + run}")
        started = time.perf_counter()
        render_video(spec, out)
        times.append(time.perf_counter() - started)
        info = probe(out)
        assert (info.width, info.height, info.frames) == (width, height, duration * 30)
    return statistics.median(times)


def main() -> int:
    results: dict[tuple[str, int, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.mp4"
        time_render(832, 480, 2, "generated", out)  # warm-up: font, page cache, imports
        for label, (w, h) in SIZES.items():
            for duration in DURATIONS:
                for audio in ("none", "generated"):
                    results[label, duration, audio] = time_render(w, h, duration, audio, out)

    print(f"Render time, median of {RUNS} (seconds); watermark on; x264 ultrafast, 2 threads")
    print()
    print("| size            | duration | no audio | generated audio | x realtime (audio) |")
    print("|-----------------|---------:|---------:|----------------:|-------------------:|")
    for label, (w, h) in SIZES.items():
        for duration in DURATIONS:
            silent, sound = results[label, duration, "none"], results[label, duration, "generated"]
            size = f"{label} {w}*{h}"
            print(f"| {size:<15} | {duration:6} s | {silent:8.2f} | {sound:15.2f} | "
                  f"{duration / sound:18.1f} |")
    key = results["1080p", 10, "generated"]
    verdict = "met" if key <= TARGET_S else "NOT met"
    print()
    print(f"Target 1080p 10 s with generated audio <= {TARGET_S:.1f} s: {key:.2f} s, {verdict}")
    return 0 if key <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
