"""The committed tutorial notebooks stay small, clean and safe to share.

CI executes them (nbval, ``scripts/test.sh``); these checks are about the files themselves: valid
nbformat, committed without outputs (the repository's convention: outputs are made by running,
and a saved video or plot would grow the repository), under 1 MB, no embedded video, nothing that
looks like an API key, each waiting for its jobs, and each listed in the README.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
MAX_BYTES = 1_000_000
# a DashScope key is "sk-" and 32 hex digits; anything like it, or an assignment of a literal
# to DASHSCOPE_API_KEY, has no place in a notebook
KEY_LIKE = re.compile(r"sk-[A-Za-z0-9]{16,}|DASHSCOPE_API_KEY\s*=\s*['\"][^'\"]+['\"]")
# an MP4 starts with an ftyp box: base64 of its first bytes, whatever the box size
MP4_BASE64 = re.compile(r"AAAA[A-Za-z0-9+/]{2}Z0eXB")
ids = [p.name for p in NOTEBOOKS]


def test_the_tutorials_are_there() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01-quickstart.ipynb", "02-experiments.ipynb", "03-analysis.ipynb",
            "04-live-service.ipynb", "05-model-comparison.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_valid_nbformat(path: Path) -> None:
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4, nb.nbformat
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", nb.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_small(path: Path) -> None:
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size} bytes (limit {MAX_BYTES})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    with_outputs = [i for i, c in enumerate(nb["cells"])
                    if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not with_outputs, (f"{path.name}: cells {with_outputs} carry outputs; clear them "
                              "before committing (Edit > Clear Outputs of All Cells, or "
                              "`jupyter nbconvert --clear-output --inplace`)")
    assert "widgets" not in nb["metadata"], f"{path.name} carries saved widget state"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_embeds_no_video(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "data:video" not in text, f"{path.name} embeds a video as a data URL"
    assert not MP4_BASE64.search(text), f"{path.name} holds a base64 MP4"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_holds_no_api_key(path: Path) -> None:
    found = KEY_LIKE.findall(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name} holds something like an API key: {found[0][:6]}…"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_waits_for_its_jobs(path: Path) -> None:
    """nbval shuts the kernel down right after the last cell: a notebook waits for its jobs
    (``wait(`` or ``result(``) after the last cell that submits any."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    submits = [i for i, c in enumerate(code) if re.search(r"\.(submit|run|rerun|generate)\(", c)]
    waits = [i for i, c in enumerate(code) if re.search(r"\.(wait|result)\(", c)]
    if submits:
        assert waits and waits[-1] >= submits[-1], (
            f"{path.name} submits jobs in code cell {submits[-1]} and does not wait after it")


def test_checks_catch_what_they_look_for() -> None:
    # the patterns above match what they must (else the tests prove nothing)
    assert KEY_LIKE.search('"sk-' + "0123456789abcdef" * 2 + '"')
    assert KEY_LIKE.search("DASHSCOPE_API_KEY = 'abc'")
    assert not KEY_LIKE.search("Secret('sk-***')")
    import base64

    mp4_head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    assert MP4_BASE64.search(base64.b64encode(mp4_head).decode())


def test_readme_lists_every_tutorial_and_links_binder() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if f"notebooks/{p.name}" not in readme]
    assert not missing, f"README.md does not list {missing}"
    links = re.findall(r"https://mybinder\.org/v2/gh/[^\s)`]+", readme)
    assert links, "README.md has no Binder link"
    for link in links:
        target = re.search(r"urlpath=lab/tree/([^\s)&]+)", link)
        assert target and (REPO / target.group(1)).is_file(), link
