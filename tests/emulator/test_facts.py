"""The emulator is an independent oracle of the service (issue 9, item 9).

It reads create bodies with its own parser and its own table of service facts, and imports
nothing of wan_nb outside ``wan_nb.emulator``: a bug in the client's validation or catalog
cannot be shared by the emulator, so it shows in tests. The client's catalog and the emulator's
table are both copies of the reference; the tests below compare them field by field, so a
mistake in either one is a failing test, not a silent agreement.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from wan_nb import catalog
from wan_nb.emulator import facts
from wan_nb.errors import ERROR_CODES

EMULATOR_DIR = Path(facts.__file__).parent
ROOT = EMULATOR_DIR.parent.parent


# -- independence ----------------------------------------------------------------------------------
def _wan_nb_imports(path: Path) -> set[str]:
    """The wan_nb modules a file of wan_nb/emulator imports (anywhere in it, functions too)."""
    package = ["wan_nb", "emulator"]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "wan_nb"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "wan_nb":
                continue
            if node.module is None or module in ("wan_nb", "wan_nb.emulator"):
                # `from . import facts`, `from .. import catalog`: the names are modules
                found |= {f"{module}.{a.name}" for a in node.names}
            else:
                found.add(module)
    return found


@pytest.mark.parametrize("path", sorted(EMULATOR_DIR.glob("*.py")), ids=lambda p: p.name)
def test_emulator_modules_import_nothing_of_the_client(path: Path) -> None:
    outside = {m for m in _wan_nb_imports(path) if not m.startswith("wan_nb.emulator.")}
    assert outside == set(), (f"{path.name} imports {sorted(outside)}: the emulator must keep "
                              "its own parsing and facts (wan_nb/emulator/params.py, facts.py)")


def test_import_check_sees_relative_imports(tmp_path: Path) -> None:
    """The checker itself: it would catch the imports the engine used to have."""
    text = ("from .. import catalog\nfrom ..errors import ValidationError\n"
            "def f():\n    from ..request import GenerationRequest\n"
            "import wan_nb.client\nfrom . import facts\n")
    probe = tmp_path / "probe.py"
    probe.write_text(text, encoding="utf-8")
    assert _wan_nb_imports(probe) == {"wan_nb.catalog", "wan_nb.errors", "wan_nb.request",
                                      "wan_nb.client", "wan_nb.emulator.facts"}


def test_the_emulator_runs_without_the_client(tmp_path: Path) -> None:
    """In a fresh process where wan_nb.request, catalog, errors and client cannot be imported
    (and the wan_nb package's own __init__, which imports the client, is skipped), the app
    imports, accepts a body and refuses a bad one."""
    script = textwrap.dedent(f"""
        import asyncio, sys, types
        pkg = types.ModuleType("wan_nb")
        pkg.__path__ = [{str(ROOT / "wan_nb")!r}]
        sys.modules["wan_nb"] = pkg
        for name in ("request", "catalog", "errors", "client", "jobs", "poller", "store"):
            sys.modules["wan_nb." + name] = None  # importing it raises ImportError
        import httpx
        import wan_nb.emulator
        from wan_nb.emulator import FakeClock, create_app

        async def main():
            app = create_app(api_keys=("sk-x",), render=False, clock=FakeClock(1.7e9))
            h = {{"Authorization": "Bearer sk-x", "X-DashScope-Async": "enable"}}
            t = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=t, base_url="http://e") as c:
                ok = await c.post("/api/v1/services/aigc/video-generation/video-synthesis",
                                  json={{"model": "wan2.2-t2v-plus", "input": {{"prompt": "x"}}}},
                                  headers=h)
                bad = await c.post("/api/v1/services/aigc/video-generation/video-synthesis",
                                   json={{"model": "wan2.2-t2v-plus", "input": {{"prompt": "x"}},
                                         "parameters": {{"duration": 10}}}}, headers=h)
            await app.state.emulator.aclose()
            print(ok.status_code, bad.status_code, bad.json()["code"])
        asyncio.run(main())
        leaked = sorted(m for m, v in sys.modules.items()
                        if m.startswith("wan_nb.") and not m.startswith("wan_nb.emulator")
                        and v is not None)
        print("leaked", leaked)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:2] == ["200 400 InvalidParameter", "leaked []"], out.stdout


# -- the two tables agree --------------------------------------------------------------------------
# Every field of the emulator's ServiceModel has the same name in the catalog's ModelSpec (as a
# field or a property); so do the derived pictures: the pixel table, the size strings a body may
# name, every picture made, the default picture.
_SAME_FIELDS = [f.name for f in fields(facts.ServiceModel)]
_SAME_PROPERTIES = ("table", "sizes", "pixel_sizes", "default_size")


def test_the_same_models() -> None:
    assert list(facts.MODELS) == list(catalog.MODELS), (
        "the emulator (wan_nb/emulator/facts.py MODELS) and the client (wan_nb/catalog.py "
        "MODELS) know different models: a model must be added to both, or the client cannot be "
        "tested against it")


@pytest.mark.parametrize("name", list(facts.MODELS))
def test_model_facts_agree_with_the_catalog(name: str) -> None:
    ours, theirs = facts.MODELS[name], catalog.MODELS[name]
    differ = {}
    for f in (*_SAME_FIELDS, *_SAME_PROPERTIES):
        mine, other = getattr(ours, f), getattr(theirs, f, "<missing>")
        if mine != other:
            differ[f] = (mine, other)
    assert differ == {}, f"{name}: emulator vs catalog {differ}"


def test_constants_agree_with_the_catalog() -> None:
    assert facts.SIZES == catalog.SIZES
    assert (facts.NEGATIVE_PROMPT_MAX, facts.SEED_MIN, facts.SEED_MAX, facts.FPS,
            facts.AUDIO_MAX_BYTES, facts.QUERY_RATE_PER_S, facts.AUDIO_MIN_S,
            facts.AUDIO_MAX_S) == (
        catalog.NEGATIVE_PROMPT_MAX, catalog.SEED_MIN, catalog.SEED_MAX, catalog.FPS,
        catalog.AUDIO_MAX_BYTES, catalog.QUERY_RATE_PER_S, catalog.AUDIO_MIN_S,
        catalog.AUDIO_MAX_S)
    assert facts.TASK_TTL_S == catalog.TASK_TTL.total_seconds()
    assert facts.SERVICE_TZ == catalog.SERVICE_TZ
    assert (facts.CREATE_PATH, facts.TASKS_PATH, facts.UPLOAD_POLICY_PATH) == (
        catalog.CREATE_PATH, catalog.TASKS_PATH, catalog.UPLOAD_POLICY_PATH)


@pytest.mark.parametrize("code", list(facts.ERROR_CODES))
def test_every_code_the_emulator_answers_is_known_alike_to_the_client(code: str) -> None:
    """The client classifies by code first, then status: a code it does not know, or knows with
    another status, would be handled differently from what the emulator means."""
    assert code in ERROR_CODES, f"the client does not know {code}"
    status, message = facts.ERROR_CODES[code]
    assert (ERROR_CODES[code][0], ERROR_CODES[code][2]) == (status, message)


def test_reference_statuses() -> None:
    """Reference §4 and §7.4, written out here (not read from either table)."""
    by_status = {400: {"InvalidParameter", "DataInspectionFailed", "IPInfringementSuspect",
                       "Arrearage", "UnsupportedOperation"},
                 401: {"InvalidApiKey"},
                 403: {"AccessDenied", "Model.AccessDenied", "AccessDenied.Unpurchased"},
                 404: {"ModelNotFound"}, 408: {"RequestTimeOut"}, 413: {"BadRequest.TooLarge"},
                 429: {"Throttling", "Throttling.RateQuota", "Throttling.AllocationQuota"},
                 500: {"InternalError", "InternalError.Algo", "InternalError.Timeout",
                       "SystemError"},
                 503: {"ModelUnavailable"}}
    added_2026 = {429: {"Throttling.BurstRate", "ServiceOverloaded", "ResourceExhausted"},
                  400: {"InvalidParameter.DataInspection"},
                  500: {"InternalError.DataInspection"}}  # §7.4
    for status, codes in added_2026.items():
        by_status[status] = by_status[status] | codes
    assert {c: s for s, codes in by_status.items() for c in codes} == {
        c: s for c, (s, _) in facts.ERROR_CODES.items()}
