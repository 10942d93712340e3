"""Binder's environment, rebuilt here: a fresh virtual environment from ``binder/requirements.txt``
alone, then every tutorial notebook executed in it against the offline emulator.

This is what repo2docker does with a ``binder/`` folder (it ignores pyproject.toml there): it runs
``pip install -r binder/requirements.txt`` from the repository root, whose last line ``.``
installs wan_nb itself (not editable). A dependency the package or a notebook needs but the file
forgets fails here, not on a learner's Binder. Each notebook runs alone in its own fresh copy of
``notebooks/`` (nothing run before it, no store), the way a newcomer opens it; the nbval run of
the main suite runs them all in one folder, one after the other, so both orders are covered.

The virtual environment is built fresh for every run (pip's download cache makes the second
build quicker); a cached one could hide a requirement removed since. The install is slow (a few
minutes: pandas, numpy, matplotlib, JupyterLab), so it is one test and each notebook another,
each under its own timeout.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "binder" / "requirements.txt"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# the notebook size limit of tests/test_notebooks.py holds for executed notebooks too: plots
# stay small and videos are referenced by path, never embedded
EXECUTED_MAX_BYTES = 1_000_000


def _clean_env(root: Path) -> dict[str, str]:
    """The environment of a newcomer's Binder: no key (so the emulator), no settings of ours or
    of the developer's Jupyter and IPython leaking in. HOME stays, for pip's download cache."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DASHSCOPE_", "WAN_NB_", "JUPYTER", "IPYTHON", "PYTHON",
                                "VIRTUAL_ENV", "MPL"))}
    for name, sub in (("JUPYTER_CONFIG_DIR", "jupyter-config"),
                      ("JUPYTER_DATA_DIR", "jupyter-data"),
                      ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                      ("MPLCONFIGDIR", "matplotlib")):
        (root / sub).mkdir(exist_ok=True)
        env[name] = str(root / sub)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{tail}")
    return proc.stdout


class BinderEnv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.env = _clean_env(root)
        self.install_seconds: float | None = None
        self.error: str | None = None

    def build(self) -> None:
        started = time.monotonic()
        # the base interpreter, as repo2docker's own Python, not this test's virtual env
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(self.venv)], cwd=self.root, env=self.env, timeout=120)
        _run([str(self.python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
             cwd=REPO, env=self.env, timeout=300)
        # from the repository root, as repo2docker runs it: the last line "." is wan_nb
        _run([str(self.python), "-m", "pip", "install", "--quiet", "-r",
              str(REQUIREMENTS.relative_to(REPO))], cwd=REPO, env=self.env, timeout=780)
        self.install_seconds = time.monotonic() - started


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BinderEnv]:
    env = BinderEnv(tmp_path_factory.mktemp("binder"))
    yield env
    # a few hundred MB: not left behind in pytest's kept temporary folders
    shutil.rmtree(env.venv, ignore_errors=True)


def _notebook_imports(path: Path) -> set[str]:
    """Top-level modules the code cells of a notebook import (IPython magics skipped)."""
    names: set[str] = set()
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        code = "\n".join(line for line in source.splitlines()
                         if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_notebooks_import_helper_sees_imports() -> None:
    # the import scan below must see what the tutorials really use, or it proves nothing
    found = set().union(*(_notebook_imports(p) for p in NOTEBOOKS))
    assert {"wan_nb", "pandas", "numpy", "matplotlib"} <= found, found


@pytest.mark.timeout(900)
def test_binder_requirements_install_alone(binder_env: BinderEnv) -> None:
    """pip installs binder/requirements.txt into an empty virtual env, consistently, with
    wan_nb from the repository and every module a notebook imports."""
    binder_env.build()
    py, env = str(binder_env.python), binder_env.env
    _run([py, "-m", "pip", "check"], cwd=binder_env.root, env=env, timeout=120)
    # wan_nb comes from the last line ".", installed as a copy (site-packages), not this repo
    where = _run([py, "-c", "import wan_nb; print(wan_nb.__file__); print(wan_nb.__version__)"],
                 cwd=binder_env.root, env=env, timeout=120).split()
    assert str(binder_env.venv) in where[0], where
    ours = (REPO / "wan_nb" / "_version.py").read_text()
    assert f'"{where[1]}"' in ours or f"'{where[1]}'" in ours, (where, ours)
    # every pin is what got installed (the file's versions are what Binder runs)
    frozen = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
              for line in _run([py, "-m", "pip", "freeze"], cwd=binder_env.root, env=env,
                               timeout=120).splitlines() if "==" in line}
    pins = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    pins = [p for p in pins if p and p != "."]
    assert pins, "binder/requirements.txt pins nothing"
    for pin in pins:
        name, _, version = pin.partition("==")
        assert version, f"{pin!r} in binder/requirements.txt is not pinned (name==version)"
        assert frozen.get(name.lower().replace("_", "-")) == version, (pin, frozen.get(name))
    # the kernel nbconvert starts is this environment's own (ipykernel's spec, "python" in its
    # argv being the interpreter of the jupyter that starts it)
    specs = json.loads(_run([str(binder_env.venv / "bin" / "jupyter"), "kernelspec", "list",
                             "--json"], cwd=binder_env.root, env=env, timeout=120))
    python3 = specs["kernelspecs"]["python3"]
    assert python3["resource_dir"].startswith(str(binder_env.venv)), python3
    modules = sorted(set().union(*(_notebook_imports(p) for p in NOTEBOOKS)))
    _run([py, "-c", "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)",
          *modules], cwd=binder_env.root, env=env, timeout=300)
    print(f"binder env built in {binder_env.install_seconds:.0f} s; imports ok: {modules}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_binder_env(binder_env: BinderEnv, notebook: Path) -> None:
    """The notebook, alone in a fresh copy of notebooks/, executes without an error in the
    Binder environment's own kernel, on the emulator; its executed copy stays small and holds
    no embedded video."""
    if binder_env.install_seconds is None:
        pytest.fail("the Binder environment was not built (see "
                    "test_binder_requirements_install_alone, which runs first)")
    work = binder_env.root / f"run-{notebook.stem}"
    shutil.copytree(REPO / "notebooks", work,
                    ignore=shutil.ignore_patterns("wan_runs", "*.zip", ".ipynb_checkpoints"))
    jupyter = str(binder_env.venv / "bin" / "jupyter")
    started = time.monotonic()
    _run([jupyter, "nbconvert", "--to", "notebook", "--execute",
          "--ExecutePreprocessor.timeout=600", "--ExecutePreprocessor.kernel_name=python3",
          # as JupyterLab saves a notebook by default: outputs, not the widgets' live state
          "--ExecutePreprocessor.store_widget_state=False",
          "--output", f"{notebook.stem}.executed", notebook.name],
         cwd=work, env=binder_env.env, timeout=840)
    seconds = time.monotonic() - started
    executed = work / f"{notebook.stem}.executed.ipynb"
    data = executed.read_bytes()
    assert len(data) < EXECUTED_MAX_BYTES, f"{notebook.name} executed is {len(data)} bytes"
    text = data.decode("utf-8")
    assert "data:video" not in text, f"{notebook.name} embedded a video"
    nb = json.loads(text)
    errors = [o for c in nb["cells"] for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    # the store is beside the notebook copy (the kernel ran in it), not in the repository
    assert (work / "wan_runs").is_dir(), "the notebook wrote no store beside itself"
    print(f"{notebook.name}: executed in the Binder env in {seconds:.0f} s, "
          f"{len(data) // 1024} KB with outputs")


def test_binder_requirements_end_with_the_package() -> None:
    """repo2docker installs the file from the repository root; its last line must be "."
    (wan_nb itself), and a runtime.txt must ask for a Python the pins support."""
    lines = [line.strip() for line in REQUIREMENTS.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == ".", lines[-1]
    runtime = (REPO / "binder" / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.1[1-3]", runtime), runtime
