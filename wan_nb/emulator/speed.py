"""How long an emulated task takes: a dispatch delay, then a run time growing with resolution
and duration, scaled by a speed setting.

>>> dispatch, run = timing("fast", 832, 480, 5)
>>> 1.5 <= dispatch + run <= 3.0
True
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

Speed = str | float


def timing(speed: Speed, width: int, height: int, duration: int, salt: str = ""
           ) -> tuple[float, float]:
    """(dispatch delay, run time) in seconds for one task.

    ``"fast"``: a 480p 5 s task takes ~2 s, 1080p 15 s ~6 s; ``"realistic"``: 1-5 minutes like
    the service; a float multiplies the fast figures (0 = instant, apart from rendering).
    """
    ratio = (width * height) / (832 * 480)
    fast_run = 1.3 + 0.137 * duration * math.sqrt(ratio)
    jitter = 0.9 + 0.2 * (int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF)
    if speed == "fast":
        return 0.3, fast_run * jitter
    if speed == "realistic":
        return 8.0, min(max(fast_run * 40, 60.0), 290.0) * jitter
    mult = float(speed)
    if not mult >= 0:
        raise ValueError(f"speed must be 'fast', 'realistic' or a number >= 0, not {speed!r}")
    return 0.3 * mult, fast_run * jitter * mult


def parse_speed(value: Any) -> Speed:
    if value in ("fast", "realistic"):
        return str(value)
    try:
        mult = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"speed must be 'fast', 'realistic' or a number, not {value!r}") from None
    if not mult >= 0 or math.isinf(mult):
        raise ValueError(f"speed must be a finite number >= 0, not {value!r}")
    return mult
