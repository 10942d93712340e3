"""The emulator's stand-ins for two services behind the real API: prompt rewriting and content
inspection. Both are deterministic so that tests and recorded experiments can rely on them.

>>> rewrite_prompt("a red fox in the snow", 7) == rewrite_prompt("a red fox in the snow", 7)
True
>>> rewrite_prompt("雨中的狐狸偵探", 1).startswith("雨中的狐狸偵探")
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_EN_CAMERA = ("Low-angle shot", "Medium close-up", "Slow dolly-in", "Wide establishing shot",
              "Handheld tracking shot", "Overhead crane shot", "Static eye-level framing",
              "Smooth orbit around the subject")
_EN_LIGHT = ("warm tones with soft side lighting", "cool moonlight with gentle rim light",
             "golden-hour backlight", "overcast diffuse light", "high-contrast chiaroscuro",
             "neon practical lights reflecting on wet surfaces", "soft morning haze")
_EN_STYLE = ("cinematic, shallow depth of field", "photorealistic detail, 35mm film grain",
             "central composition, balanced framing", "rich textures, natural motion blur",
             "documentary realism, steady pacing")
_ZH_CAMERA = ("低角度拍攝", "中近景", "緩慢推鏡", "大遠景建立鏡頭", "手持跟拍", "俯視搖臂鏡頭",
              "平視固定機位", "環繞主體的平穩運鏡")
_ZH_LIGHT = ("暖色調,柔和側光", "冷色月光,輕微輪廓光", "黃金時刻逆光", "陰天漫射光",
             "強烈明暗對比", "霓虹燈光映照在潮濕地面", "清晨薄霧柔光")
_ZH_STYLE = ("電影質感,淺景深", "寫實細節,35毫米膠片顆粒", "中心構圖,畫面均衡",
             "豐富紋理,自然動態模糊", "紀錄片式寫實,節奏平穩")


def _is_cjk(text: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff"
               or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff" for ch in text)


def rewrite_prompt(prompt: str, seed: int | None) -> str:
    """The emulator's ``actual_prompt``: the prompt expanded with a camera, a lighting and a
    style phrase chosen from a hash of (prompt, seed). CJK prompts get Chinese phrases."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    cjk = _is_cjk(prompt)
    camera, light, style = (_ZH_CAMERA, _ZH_LIGHT, _ZH_STYLE) if cjk else (
        _EN_CAMERA, _EN_LIGHT, _EN_STYLE)
    picks = (camera[digest[0] % len(camera)], light[digest[1] % len(light)],
             style[digest[2] % len(style)])
    body = prompt.strip()
    if cjk:
        return f"{body.rstrip('。')}。{picks[0]},{picks[1]},{picks[2]}。"
    return f"{body.rstrip('. ')}. {picks[0]}, {picks[1]}; {picks[2]}."


#: Default marker words. They are deliberately unlike anything a real prompt would contain.
DEFAULT_INPUT_TERMS: dict[str, str] = {
    "__blocked__": "DataInspectionFailed",
    "__ip_blocked__": "IPInfringementSuspect",
}
DEFAULT_OUTPUT_TERMS: dict[str, str] = {
    "__fail_output__": "DataInspectionFailed",
    "__ip_output__": "IPInfringementSuspect",
}
_CONTENT_CODES = ("DataInspectionFailed", "IPInfringementSuspect")
#: a refused input may also carry the 2026 code (reference §7.4); a failed output may not
_INPUT_CODES = (*_CONTENT_CODES, "InvalidParameter.DataInspection")

INPUT_MESSAGES = {
    "DataInspectionFailed": "Input data may contain inappropriate content.",
    "IPInfringementSuspect": "Input data is suspected of being involved in IP infringement.",
    "InvalidParameter.DataInspection": "The input failed content inspection.",
}
OUTPUT_MESSAGES = {
    "DataInspectionFailed": "Output data may contain inappropriate content.",
    "IPInfringementSuspect": "Output data is suspected of being involved in IP infringement.",
}


def _terms(value: Mapping[str, str] | Iterable[str] | None, default: Mapping[str, str],
           allowed: tuple[str, ...] = _CONTENT_CODES) -> dict[str, str]:
    if value is None:
        return dict(default)
    if isinstance(value, Mapping):
        out = {str(k).lower(): str(v) for k, v in value.items()}
    elif isinstance(value, str):
        out = {value.lower(): "DataInspectionFailed"}
    else:
        out = {str(t).lower(): "DataInspectionFailed" for t in value}
    bad = sorted({c for c in out.values() if c not in allowed})
    if bad:
        raise ValueError(f"content codes must be one of {', '.join(allowed)}, not {bad}")
    return out


@dataclass
class ContentPolicy:
    """Content inspection: ``input_terms`` refuse the create call (HTTP 400), ``output_terms``
    let the task run and end FAILED "for the output". Both map a case-insensitive term to the
    code (``DataInspectionFailed`` or ``IPInfringementSuspect``; for input also the 2026
    ``InvalidParameter.DataInspection``). A plain list of terms means
    ``DataInspectionFailed``."""

    input_terms: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_INPUT_TERMS))
    output_terms: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_OUTPUT_TERMS))

    @classmethod
    def build(cls, blocked_terms: Mapping[str, str] | Iterable[str] | None = None,
              output_blocked_terms: Mapping[str, str] | Iterable[str] | None = None
              ) -> "ContentPolicy":
        return cls(_terms(blocked_terms, DEFAULT_INPUT_TERMS, _INPUT_CODES),
                   _terms(output_blocked_terms, DEFAULT_OUTPUT_TERMS))

    @staticmethod
    def _match(terms: Mapping[str, str], texts: Iterable[str]) -> str | None:
        lowered = [t.lower() for t in texts if t]
        for term, code in terms.items():
            if any(term in t for t in lowered):
                return code
        return None

    def check_input(self, *texts: str) -> tuple[str, str] | None:
        code = self._match(self.input_terms, texts)
        return None if code is None else (code, INPUT_MESSAGES[code])

    def check_output(self, *texts: str) -> tuple[str, str] | None:
        code = self._match(self.output_terms, texts)
        return None if code is None else (code, OUTPUT_MESSAGES[code])
