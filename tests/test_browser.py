"""The quickstart as a user sees it: a real JupyterLab server, headless Chromium, Run All Cells.

Starts ``jupyter lab`` on a copy of ``notebooks/`` (clean Jupyter config and runtime dirs, no
``DASHSCOPE_API_KEY``, so the offline emulator is used), opens ``01-quickstart.ipynb`` in
Debian's ``/usr/bin/chromium`` driven by Playwright (the PyPI wheel bundles its driver; we never
run ``playwright install``: no browser can be downloaded here), runs every cell from the menu and
checks what a person would see: the emulator banner, the validation message, the live tracker
(rows, SUCCEEDED badges, full green bars), inline videos that the browser really loads from the
notebook's folder, the run-log DataFrame, and no traceback anywhere.

A full screenshot lands in ``tmp_path`` and in ``/tmp/wan_nb_quickstart.png`` (also on failure).

Without Chromium, Playwright or JupyterLab the test skips outside CI and fails in CI (``CI`` set),
so a CI machine that lost its browser cannot pass silently. ``scripts/test.sh`` installs
Chromium when it is missing and it can. ``WAN_NB_CHROMIUM`` points at another Chromium binary.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # reported by _require_tools: skip outside CI, fail in CI
    PlaywrightTimeout = TimeoutError  # type: ignore[assignment,misc]

# a JupyterLab server, a kernel and Chromium: up to ~450 s of bounded waits on a loaded machine
pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "01-quickstart.ipynb"
CHROMIUM = os.environ.get("WAN_NB_CHROMIUM", "/usr/bin/chromium")
# what .library's machine notes prescribe: no sandbox as root, and no background connections
# (this machine's closed network refuses them, many at a time)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SCREENSHOT_COPY = Path("/tmp/wan_nb_quickstart.png")
# the Studio alone, in JupyterLab's light and dark themes (also copied to /tmp to look at)
STUDIO_SHOTS = {"light": Path("/tmp/wan_nb_studio_light.png"),
                "dark": Path("/tmp/wan_nb_studio_dark.png")}
# a prompt with the letters of notebook shortcuts (A, B: insert a cell; X: cut; D D: delete),
# and Chinese for the screenshots' fonts
TYPED_PROMPT = "a badger and a fox box by the dock at dawn, 小雨"
HOSTILE_PROMPT = "<img src=x onerror=alert(1)>"
SERVER_START_TIMEOUT = 90.0  # s until the server answers /api/status
KERNEL_START_TIMEOUT = 90.0  # s until the notebook's kernel is idle and connected
RUN_ALL_TIMEOUT = 240.0  # s for Run All Cells (the notebook itself waits up to 300 s for jobs)
UI_TIMEOUT = 30.0  # s for a widget or video to show up once the cells have run

# Unset in the server's environment: the notebook must take the offline emulator, store its
# runs beside itself (so JupyterLab can serve the videos) and reference videos by path.
SCRUBBED_ENV = ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL", "WAN_NB_STORE",
                "WAN_NB_EMBED_VIDEO")

# JupyterLab user settings written into the clean settings dir:
# - render every cell (no virtual scrolling) and no blank space after the last cell, so every
#   output is in the DOM and the screenshot covers the whole notebook;
# - no news or update checks (nothing reaches out of this machine).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                     "checkForUpdates": False},
}

# The state of "Run All": 'error' as soon as a traceback shows, else the list of input prompts
# once every code cell shows an execution count ("[7]:"), else false (still queued "[*]:").
RUN_STATE_JS = """() => {
  const tb = [...document.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .find(e => e.textContent.includes('Traceback'));
  if (tb) return 'error';
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => (c.querySelector('.jp-InputPrompt')?.textContent || '').trim());
  return cells.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p)) ? prompts : false;
}"""

# Some code cell is queued, running or done ("[*]:" or "[3]:"), so Run All was taken.
STARTED_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
  .some(p => /^\\[(\\*|\\d+)\\]:$/.test(p.textContent.trim()))"""

# Every <video> on the page with what the browser made of it; "settled" once each one has
# its metadata (readyState >= 1) or an error.
VIDEOS_JS = """() => [...document.querySelectorAll('.jp-Notebook video')].map(v => ({
  src: v.getAttribute('src') || '', readyState: v.readyState, width: v.videoWidth,
  height: v.videoHeight, duration: v.duration,
  error: v.error ? v.error.message || String(v.error.code) : null
}))"""
VIDEOS_SETTLED_JS = """() => {
  const vs = [...document.querySelectorAll('.jp-Notebook video')];
  return vs.length > 0 && vs.every(v => v.readyState >= 1 || v.error);
}"""

# The element that scrolls the notebook, found from its first cell so a renamed wrapper class
# does not break the screenshot.
SCROLLER_JS = """() => {
  let e = document.querySelector('.jp-NotebookPanel .jp-Cell');
  while (e && e !== document.body) {
    const s = getComputedStyle(e).overflowY;
    if ((s === 'auto' || s === 'scroll') && e.scrollHeight > e.clientHeight) return e;
    e = e.parentElement;
  }
  return null;
}"""


def _unavailable(reason: str) -> None:
    """Fail in CI (a lost browser must not pass silently), skip on a developer's machine."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def _require_tools() -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no Chromium at {CHROMIUM}: install Debian's chromium package "
                     "(scripts/test.sh does it as root: apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        _unavailable("the playwright package is missing: pip install -e '.[test]'")
    if importlib.util.find_spec("jupyterlab") is None:
        _unavailable("jupyterlab is missing from this environment (the test needs a real "
                     "JupyterLab server): pip install -e '.[lab,test]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 3.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def _write_lab_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        folder = settings_dir / package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.jupyterlab-settings").write_text(json.dumps(values))


class LabServer:
    def __init__(self, base_url: str, token: str, root: Path, log: Path, proc: subprocess.Popen):
        self.base_url, self.token, self.root, self.log, self.proc = (base_url, token, root, log,
                                                                     proc)

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        """Shut the kernels down through the API (they run in sessions of their own), then end
        the server by its PID: SIGTERM, and SIGKILL if it has not gone after 20 s."""
        if self.proc.poll() is None:
            try:
                for kernel in _get(self.url("api/kernels")) or []:
                    req = urllib.request.Request(self.url(f"api/kernels/{kernel['id']}"),
                                                 method="DELETE")
                    urllib.request.urlopen(req, timeout=10).close()
            except (OSError, ValueError, urllib.error.URLError):
                pass  # the server is going anyway; SIGTERM also shuts its kernels down
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # anything the server left in its own process group (it was started as a group leader)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@contextmanager
def lab_server(tmp_path: Path) -> Iterator[LabServer]:
    """A JupyterLab server on 127.0.0.1 serving a copy of ``notebooks/`` from
    ``tmp_path / "notebooks"``, with clean config dirs under ``tmp_path``; stopped on exit
    (benchmarks/bench_ui.py uses it too)."""
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root,
                    ignore=shutil.ignore_patterns("wan_runs", ".ipynb_checkpoints"))
    jupyter = tmp_path / "jupyter"
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(JUPYTER_CONFIG_DIR=str(jupyter / "config"),
               JUPYTER_DATA_DIR=str(jupyter / "data"),
               JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(jupyter / "config" / "lab" / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "config" / "lab" / "workspaces"),
               IPYTHONDIR=str(jupyter / "ipython"))
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)
    _write_lab_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    token = secrets.token_hex(16)
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI and these machines run as root
    log = tmp_path / "jupyter-lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", token, root, log, proc)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                _get(server.url("api/status"), timeout=2)
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within {SERVER_START_TIMEOUT:.0f} s:"
                                f"\n{server.log_tail()}")
                time.sleep(0.25)
        yield server
    finally:
        server.stop()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    _require_tools()
    with lab_server(tmp_path) as server:
        yield server


def _screenshot(page: Any, path: Path) -> None:
    """The whole notebook in one image: hide the file browser, make the window as tall as the
    notebook, scroll to the top, shoot; then copy to /tmp for people to look at."""
    page.keyboard.press("Escape")  # command mode, so the shortcut goes to the application
    page.keyboard.press("Control+b")  # toggle the left sidebar
    width = page.viewport_size["width"]
    for _ in range(3):  # the layout reflows after each resize; it settles within a step or two
        extra = page.evaluate(f"() => {{ const e = ({SCROLLER_JS})(); "
                              "return e ? e.scrollHeight - e.clientHeight : 0; }")
        if extra <= 0:
            break
        page.set_viewport_size({"width": width,
                                "height": min(page.viewport_size["height"] + extra, 16000)})
        page.wait_for_timeout(300)
    page.evaluate(f"() => {{ const e = ({SCROLLER_JS})(); if (e) e.scrollTop = 0; }}")
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)
    shutil.copyfile(path, SCREENSHOT_COPY)


def test_quickstart_runs_in_jupyterlab(lab: LabServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    n_cells = len(json.loads((lab.root / NOTEBOOK).read_text(encoding="utf-8"))["cells"])
    console: list[str] = []
    with sync_playwright() as pw:
        # a persistent context gives Chromium a fresh --user-data-dir of our own under tmp_path
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(UI_TIMEOUT * 1000)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(lab.url(f"lab/tree/{NOTEBOOK}"), timeout=60_000)
            page.wait_for_function(f"() => document.querySelectorAll('.jp-Notebook .jp-Cell')"
                                   f".length >= {n_cells}", timeout=60_000)
            dialogs: list[str] = []
            # an alert() would be hostile markup running: recorded and failed on; leaving the
            # page (the dark theme's reload) with unsaved cells asks first: yes
            page.on("dialog", lambda d: d.accept() if d.type == "beforeunload" else (
                dialogs.append(d.message), d.dismiss()))
            try:
                _run_all_and_check(page, lab, expect, console)
                _use_the_studio(page, lab, expect, dialogs)
            finally:
                try:
                    _screenshot(page, tmp_path / "quickstart.png")
                    _theme_screenshots(page, tmp_path)
                except Exception as e:  # never hide the real failure behind a screenshot's
                    print(f"screenshot failed: {e!r}", file=sys.stderr)
        finally:
            context.close()


def _wait_for_kernel(lab: LabServer) -> None:
    """Until the notebook's kernel is up, idle and the page is connected to it (a Run All
    issued before that can be dropped without a word)."""
    deadline = time.monotonic() + KERNEL_START_TIMEOUT
    while True:
        try:
            kernels = _get(lab.url("api/kernels"))
        except urllib.error.HTTPError as e:
            # jupyter_server answers 500 when the list is asked for while a kernel is still
            # starting (its last_activity not set yet: a TraitError in kernel_model); that is
            # "not up yet", as in jupyter-server/enterprise_gateway#1395
            if e.code < 500:
                raise
            kernels = []
        if any(k.get("execution_state") == "idle" and k.get("connections", 0) > 0
               for k in kernels):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"no idle, connected kernel after {KERNEL_START_TIMEOUT:.0f} s: "
                        f"{kernels}\n{lab.log_tail()}")
        time.sleep(0.25)


def _run_all(page: Any) -> None:
    """Run → Run All Cells from the menu bar, as a user would; again if no cell started."""
    for _attempt in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.wait_for_function(STARTED_JS, timeout=15_000, polling=250)
            return
        except PlaywrightTimeout:  # the click did not start anything
            page.keyboard.press("Escape")
    pytest.fail("Run → Run All Cells did not start any cell (three tries)")


def _run_all_and_check(page: Any, lab: LabServer, expect: Any, console: list[str]) -> None:
    _wait_for_kernel(lab)
    started = time.monotonic()
    _run_all(page)
    try:
        state = page.wait_for_function(RUN_STATE_JS, timeout=RUN_ALL_TIMEOUT * 1000,
                                       polling=500).json_value()
    except PlaywrightTimeout:
        prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
        pytest.fail(f"Run All Cells had not finished after {RUN_ALL_TIMEOUT:.0f} s; input "
                    f"prompts: {prompts}\nbrowser console:\n" + "\n".join(console[-20:])
                    + f"\nserver log:\n{lab.log_tail()}")
    outputs = page.locator(".jp-Notebook .jp-OutputArea-output")
    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    tracebacks = [t for t in stderr.all_inner_texts() if "Traceback" in t]
    assert state != "error" and not tracebacks, (
        "a cell raised:\n" + "\n---\n".join(tracebacks) + "\nbrowser console:\n"
        + "\n".join(console[-20:]) + f"\nserver log:\n{lab.log_tail()}")
    print(f"Run All Cells finished in {time.monotonic() - started:.1f} s: {' '.join(state)}")

    # the first output says which backend this session uses
    first = page.locator(".jp-Notebook .jp-CodeCell").first.locator(".jp-OutputArea-output")
    expect(first.first).to_contain_text("offline emulator")
    expect(first.first).to_contain_text("no DASHSCOPE_API_KEY")

    # bad input is refused with a message saying what is allowed
    expect(outputs.filter(has_text="is not offered by wan2.2-t2v-plus")).to_have_count(1)

    # the Studio: its tracker holds the form's job and the code's, both SUCCEEDED
    studio = page.locator(".wan-studio").first
    expect(studio).to_be_visible()
    header = studio.locator(".wan-tracker-header")
    try:
        expect(header).to_contain_text("2 of 2 done")
    except AssertionError:
        from wan_nb.store import Store

        runs = Store(lab.root / "wan_runs").to_dataframe()[["model", "prompt", "seed", "status"]]
        raise AssertionError(f"the tracker says {header.inner_text()!r}; the ledger holds:\n"
                             f"{runs.to_string()}") from None
    rows = studio.locator(".wan-tracker-row")
    expect(rows).to_have_count(2)
    for i in range(2):
        expect(rows.nth(i).locator(".widget-html", has_text="SUCCEEDED")).to_have_count(1)

    # inline videos (under each tracker row, the job card) that the browser loads from the
    # notebook's folder: JupyterLab turns a relative src into its /files/ URL, so a /files/ src
    # proves the output held a relative path (not a data: URL, not the emulator's)
    page.wait_for_function(VIDEOS_SETTLED_JS, timeout=UI_TIMEOUT * 1000, polling=250)
    videos = page.evaluate(VIDEOS_JS)
    files_url = f"{lab.base_url}/files/wan_runs/"
    sizes = sorted((v["width"], v["height"]) for v in videos if v["readyState"] >= 1)
    root = page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data')"
                         ".textContent).serverRoot")
    for v in videos:
        assert v["src"].startswith(files_url), (v, root)
        assert v["error"] is None, v
    assert (832, 480) in sizes and (1280, 720) in sizes, videos
    assert list((lab.root / "wan_runs" / "videos").glob("*.mp4")), "no video beside the notebook"

    # the run log is a DataFrame with one row per job
    frame = page.locator(".jp-OutputArea-output table.dataframe")
    expect(frame).to_have_count(1)
    expect(frame.locator("tbody tr")).to_have_count(2)
    expect(frame.locator("thead")).to_contain_text("actual_prompt")

    # the last code cell: every job succeeded
    last_code = page.locator(".jp-Notebook .jp-CodeCell").last.locator(".jp-OutputArea-output")
    expect(last_code.last).to_contain_text("['SUCCEEDED', 'SUCCEEDED']")


def _select_by_label(scope: Any, label: str) -> Any:
    """The <select> of the ipywidgets Dropdown whose description is ``label``."""
    return scope.locator(".widget-dropdown", has=scope.page.locator(
        "label", has_text=re.compile(f"^{re.escape(label)}$"))).locator("select").first


def _use_the_studio(page: Any, lab: LabServer, expect: Any, dialogs: list[str]) -> None:
    """What the issue asks of the Studio in a real browser: the form reshapes for wan2.7,
    typing never reaches the notebook's shortcuts, Generate adds a row that reaches SUCCEEDED
    with a playable video, a gallery rating lands in the store, hostile text stays text."""
    from wan_nb import catalog
    from wan_nb.store import Store

    studio = page.locator(".wan-studio").first
    studio.scroll_into_view_if_needed()
    model = _select_by_label(studio, "Model")
    model.click()
    model.select_option("wan2.7-t2v")
    resolution = _select_by_label(studio, "Resolution")
    expect(resolution.locator("option")).to_have_text(["720P", "1080P"])
    print("wan2.7-t2v resolutions shown:", resolution.locator("option").all_inner_texts())

    cells = page.locator(".jp-Notebook .jp-Cell")
    n_cells = cells.count()
    prompt = studio.locator(".wan-nb-prompt textarea")
    prompt.click()
    prompt.fill("")
    prompt.press_sequentially(TYPED_PROMPT, delay=15)
    page.wait_for_timeout(500)
    assert cells.count() == n_cells, "typing in the prompt changed the notebook's cells"
    expect(prompt).to_have_value(TYPED_PROMPT)

    rows = studio.locator(".wan-tracker-row")
    before = rows.count()
    clicked = time.monotonic()
    studio.locator(".wan-nb-generate button, button.wan-nb-generate").first.click()
    expect(rows).to_have_count(before + 1)
    print(f"Generate → tracker row in the page: {(time.monotonic() - clicked) * 1000:.0f} ms")
    row = rows.filter(has_text=TYPED_PROMPT).first
    expect(row.locator(".widget-html", has_text="SUCCEEDED")).to_have_count(1, timeout=120_000)
    video = row.locator("video").first
    expect(video).to_have_count(1, timeout=30_000)
    video.evaluate("v => { v.muted = true; v.preload = 'auto'; v.load(); }")
    page.wait_for_function("v => v.readyState >= 2", arg=video.element_handle(),
                           timeout=30_000, polling=250)
    size = video.evaluate("v => [v.videoWidth, v.videoHeight]")
    chosen = (resolution.input_value(), _select_by_label(studio, "Ratio").input_value())
    assert size == list(catalog.pixels("wan2.7-t2v", *chosen)), (size, chosen)

    # a rating in the gallery lands in the store at once
    studio.locator(".lm-TabBar-tab", has_text="Gallery").first.click()
    gallery = studio.locator(".wan-gallery").first
    expect(gallery).to_be_visible()
    assert Store(lab.root / "wan_runs").to_dataframe()["rating"].isna().all()
    gallery.locator("button[data-wan-rate='4']").first.click()
    deadline = time.monotonic() + UI_TIMEOUT
    while True:
        ratings = Store(lab.root / "wan_runs").to_dataframe()["rating"].dropna().tolist()
        if ratings == [4]:
            break
        assert time.monotonic() < deadline, f"the rating did not reach the store: {ratings}"
        time.sleep(0.2)
    # ... and the card shows it, pressed
    expect(gallery.locator("button[data-wan-rate='4'][aria-pressed='true']")).to_have_count(
        1, timeout=UI_TIMEOUT * 1000)

    # hostile text is shown as text, and nothing it carries runs
    prompt.click()
    prompt.fill("")
    prompt.press_sequentially(HOSTILE_PROMPT, delay=10)
    studio.locator(".wan-nb-generate button, button.wan-nb-generate").first.click()
    hostile = rows.filter(has_text=HOSTILE_PROMPT).first
    expect(hostile).to_be_visible()
    expect(hostile.locator(".widget-html", has_text="SUCCEEDED")).to_have_count(
        1, timeout=120_000)
    assert page.locator("img[src='x']").count() == 0
    assert dialogs == [], dialogs
    assert cells.count() == n_cells


def _theme_screenshots(page: Any, tmp_path: Path) -> None:
    """The Studio in the light theme, then in JupyterLab Dark, switched as a person would:
    Settings → Theme → JupyterLab Dark."""
    studio = page.locator(".wan-studio").first
    if studio.count() == 0:
        return
    for theme in ("light", "dark"):
        if theme == "dark":
            page.get_by_role("menuitem", name="Settings", exact=True).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).first.hover()
            page.locator(".lm-Menu-itemLabel",
                         has_text=re.compile("^JupyterLab Dark$")).first.click()
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                                   timeout=30_000)
            page.wait_for_timeout(1500)
        studio.scroll_into_view_if_needed()
        path = tmp_path / f"studio-{theme}.png"
        studio.screenshot(path=str(path))
        shutil.copyfile(path, STUDIO_SHOTS[theme])
