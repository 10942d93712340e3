"""The Studio in a real browser: Generate -> tracker row, a 100-video gallery, a trivial cell's
latency with a Studio open and 50 jobs in flight (issue 11, "Benchmarks").

    python benchmarks/bench_ui.py [--clicks 25] [--samples 200] [--json report.json]

One run: a JupyterLab server on 127.0.0.1 (tests/test_browser.py's ``lab_server``: clean
config dirs, no ``DASHSCOPE_API_KEY``) and Debian's /usr/bin/chromium driven by Playwright
(never ``playwright install``). A notebook ``bench_ui.ipynb`` is opened in the page; its kernel
is also reached with jupyter_client (the connection file in the server's runtime dir) to set
things up and to time trivial cells. Two embedded emulators in that kernel: ``fast``
(``connect(speed=0)``: instant apart from rendering) for the 100 finished videos, ``slow``
(``connect(speed=100)``: ~30 s queued, ~200 s running, so nothing finishes during the run)
for the Studio's jobs. In order:

1. Kernel baseline: ``1+1`` x N through jupyter_client (execute_request -> execute_reply), the
   kernel idle, no Studio, no job in flight.
2. ``Studio(slow)`` displayed from a cell in the page. Generate clicked ``--clicks`` times
   (Playwright's mouse click); timed **inside the page**: ``performance.now()`` in a
   capture-phase click listener on the document, then a MutationObserver on the Studio sees a
   new ``.wan-tracker-row`` holding the prompt's text (t_dom), then the next
   requestAnimationFrame callback (t_frame, ~ the frame that paints it).
3. 25 more jobs submitted from code: 50 in flight; ``1+1`` x N again with the Studio open,
   then again after ``studio.close()`` with the 50 still in flight (separates the Studio's cost
   from the poller's). The kernel's iopub traffic (comm messages) and CPU time are counted in
   each window; the widget models the Studio made are counted.
4. 100 finished videos (4 prompts x 25 seeds, 832*480, 5 s) made on ``fast`` before step 1;
   ``Gallery(jobs)`` displayed from a cell, twice: cold (posters not made yet: the gallery
   makes them in the background) and warm (posters cached). Timed inside the page from the
   Shift+Enter keydown that runs the cell to: its output element, all 100 ``<video>`` and 200
   rating/verdict controls in the DOM (+ next frame), and every poster URL the cards show
   decoded as an image (an ``Image`` with the same URL, from the cache once the ``<video>``
   fetched it; ``decode()``; + next frame). Bytes come from Chromium's network events
   (a Playwright CDP session): ``.mp4`` responses and poster images counted apart, during the
   display and after scrolling through the whole gallery; nothing is ever played.

The machine is shared (2 cores): read the ratios to the baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_jobs import Kernel, note, pct, say, table  # noqa: E402

from tests.test_browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    SCROLLER_JS,
    _get,
    _wait_for_kernel,
    lab_server,
)

NOTEBOOK = "bench_ui.ipynb"
SLOW_SPEED = 100  # x the "fast" timings: 30 s queued, ~200 s running: nothing ends in the run
IN_FLIGHT = 50
KERNEL_PROBES = 5  # Generate (generate_now) and bare submits timed inside the kernel
CLICK_PROMPT = "bench click: a red fox crossing a snowy field at dusk"
GALLERY_PROMPTS = ("a paper boat on a pond", "a lighthouse in a storm",
                   "a cat asleep on a windowsill", "a neon city street in the rain")
GALLERY_SEEDS = 25
GALLERY_MODEL, GALLERY_SIZE, GALLERY_DURATION = "wan2.5-t2v-preview", "832*480", 5
TARGETS = {"click_p50_ms": 100.0, "gallery_s": 1.0, "video_bytes": 1_000_000, "cell_p99_ms": 20.0}
CELLS = ["studio = wan_nb.Studio(slow)\nstudio",
         "gallery_cold = Gallery(gallery_jobs)\ngallery_cold",
         "gallery_warm = Gallery(gallery_jobs)\ngallery_warm"]

# -- in the page -------------------------------------------------------------------------------
CLICK_PROBE_JS = """(marker) => {
  const st = window.__benchClicks = {done: [], pending: null};
  const studio = document.querySelector('.wan-studio');
  const marked = () => [...studio.querySelectorAll('.wan-tracker-row')]
    .filter(r => r.textContent.includes(marker)).length;
  document.addEventListener('click', (e) => {
    if (!e.target.closest || !e.target.closest('.wan-studio .wan-nb-generate')) return;
    st.pending = {t0: performance.now(), before: marked()};
  }, true);
  new MutationObserver(() => {
    const p = st.pending;
    if (!p || marked() <= p.before) return;
    st.pending = null;
    p.dom = performance.now() - p.t0;
    requestAnimationFrame(() => { p.frame = performance.now() - p.t0; st.done.push(p); });
  }).observe(studio, {childList: true, subtree: true, characterData: true});
}"""

# armed before Shift+Enter: t0 at the keydown, then a rAF loop until the cell's gallery shows
# every card and every poster it shows decodes as an image
GALLERY_PROBE_JS = """([cellIndex, nVideos]) => {
  const st = window.__benchGallery = {t0: null, reply: null, output: null, cards: null,
                                      cardsFrame: null,
                                      posters: null, postersFrame: null, videos: 0,
                                      withPoster: 0, decoded: 0, failed: 0, done: false};
  const checks = {};
  const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[cellIndex];
  const onKey = (e) => {
    if (e.key !== 'Enter' || !e.shiftKey || st.t0 !== null) return;
    st.t0 = performance.now();
    document.removeEventListener('keydown', onKey, true);
    requestAnimationFrame(poll);
  };
  document.addEventListener('keydown', onKey, true);
  const poll = () => {
    const now = performance.now() - st.t0;
    if (st.output === null && cell.querySelector('.jp-OutputArea-output')) st.output = now;
    const prompt = (cell.querySelector('.jp-InputPrompt')?.textContent || '').trim();
    if (st.reply === null && /^\\[\\d+\\]:$/.test(prompt)) st.reply = now;
    const g = cell.querySelector('.wan-gallery');
    const vs = g ? [...g.querySelectorAll('video')] : [];
    const controls = g ? g.querySelectorAll('.widget-toggle-buttons, .wan-choice').length : 0;
    st.videos = vs.length;
    if (st.cards === null && vs.length >= nVideos && controls >= 2 * nVideos) {
      st.cards = now;
      requestAnimationFrame(() => { st.cardsFrame = performance.now() - st.t0; });
    }
    const posters = new Set(vs.map(v => v.poster).filter(Boolean));
    st.withPoster = vs.filter(v => v.poster).length;
    if (st.cards !== null && st.posters === null && st.withPoster >= nVideos) {
      // each poster URL the cards show now, decoded as an image (from the cache when the
      // <video> fetched it already); URLs replaced meanwhile do not count
      for (const u of posters) {
        if (u in checks) continue;
        checks[u] = 'pending';
        const img = new Image(); img.src = u;
        img.decode().then(() => { checks[u] = 'ok'; }, () => { checks[u] = 'fail'; });
      }
      st.decoded = [...posters].filter(u => checks[u] === 'ok').length;
      st.failed = [...posters].filter(u => checks[u] === 'fail').length;
      if (st.decoded >= nVideos) {
        st.posters = now;
        requestAnimationFrame(() => { st.postersFrame = performance.now() - st.t0;
                                      st.done = true; });
        return;
      }
    }
    if (now < 60000) requestAnimationFrame(poll); else st.done = true;
  };
}"""

# after the timing: do the posters the gallery shows decode as images?
POSTER_CHECK_JS = """async (cellIndex) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[cellIndex];
  const vs = [...cell.querySelectorAll('.wan-gallery video')];
  const urls = [...new Set(vs.map(v => v.poster).filter(Boolean))];
  const results = await Promise.all(urls.map(u => {
    const img = new Image(); img.src = u;
    return img.decode().then(() => [img.naturalWidth, img.naturalHeight], () => null);
  }));
  const ok = results.filter(Boolean);
  return {videos: vs.length, urls: urls.length, decoded: ok.length,
          size: ok.length ? ok[0] : null, example: urls[0] || null,
          src_example: vs.length ? vs[0].getAttribute('src') : null,
          preload: [...new Set(vs.map(v => v.getAttribute('preload')))],
          ready: vs.filter(v => v.readyState > 0).length};
}"""


# -- the kernel, reached with jupyter_client -----------------------------------------------------
class LabKernel(Kernel):
    """bench_jobs' Kernel helpers (run, roundtrip, samples) on the notebook's own kernel."""

    def __init__(self, connection_file: Path):
        from jupyter_client import BlockingKernelClient

        self.km = None  # type: ignore[assignment]  # the server owns the kernel
        self.connection_file = connection_file
        self.kc = BlockingKernelClient(connection_file=str(connection_file))
        self.kc.load_connection_file()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def json(self, code: str, timeout: float = 300.0) -> Any:
        out = self.run(code, timeout).strip().splitlines()
        return json.loads(out[-1]) if out else None

    def shutdown(self) -> None:
        self.kc.stop_channels()  # the server owns the kernel


class IopubCounter:
    """Counts the kernel's iopub messages (another client's SUB socket sees all of them) while
    started: comm messages, their bytes and the widget models they touch."""

    def __init__(self, connection_file: Path):
        import zmq
        from jupyter_client import BlockingKernelClient

        self.kc = BlockingKernelClient(connection_file=str(connection_file),
                                       context=zmq.Context())
        self.kc.load_connection_file()
        self.kc.start_channels(shell=False, iopub=True, stdin=False, hb=False, control=False)
        self._on = threading.Event()
        self._stop = threading.Event()
        self.reset()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.types: Counter[str] = Counter()
        self.comm_bytes = 0
        self.models: set[str] = set()
        self.started = time.perf_counter()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            if not self._on.is_set():
                continue
            kind = msg["msg_type"]
            self.types[kind] += 1
            if kind in ("comm_msg", "comm_open"):
                content = msg["content"]
                self.comm_bytes += len(json.dumps(content))
                self.models.add(content.get("comm_id", ""))

    def window(self) -> None:
        self.reset()
        self._on.set()

    def result(self) -> dict[str, Any]:
        self._on.clear()
        span = time.perf_counter() - self.started
        return {"span_s": span, "types": dict(self.types), "comm_bytes": self.comm_bytes,
                "models": len(self.models),
                "comm_per_s": (self.types["comm_msg"] + self.types["comm_open"]) / span}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.kc.stop_channels()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> float:
    return os.getloadavg()[0]


def measure_cells(k: LabKernel, counter: IopubCounter, pid: int, n: int, rng: random.Random
                  ) -> dict[str, Any]:
    counter.window()
    cpu0, t0 = cpu_s(pid), time.perf_counter()
    lat, _ = k.samples(n, (0.02, 0.06), rng)
    span = time.perf_counter() - t0
    cpu = cpu_s(pid) - cpu0
    traffic = counter.result()
    ms = [x * 1000 for x in lat]
    return {"n": n, "p50_ms": pct(ms, 50), "p90_ms": pct(ms, 90), "p99_ms": pct(ms, 99),
            "max_ms": max(ms), "kernel_cpu_share": cpu / span, "load": load(),
            "iopub": traffic, "lat_ms": ms}


# -- the page ----------------------------------------------------------------------------------
def run_cell(page: Any, index: int) -> None:
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def wait_prompt(page: Any, index: int, timeout: float = 120.0) -> None:
    """Until the cell shows an execution count ("[n]:")."""
    page.wait_for_function(
        """(i) => /^\\[\\d+\\]:$/.test((document.querySelectorAll('.jp-Notebook .jp-CodeCell')[i]
             .querySelector('.jp-InputPrompt')?.textContent || '').trim())""",
        arg=index, timeout=timeout * 1000, polling=100)


class Network:
    """Chromium's network events through a CDP session: bytes per request, by kind."""

    def __init__(self, page: Any):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.reqs: dict[str, dict[str, Any]] = {}
        self.cdp.on("Network.requestWillBeSent", self._sent)
        self.cdp.on("Network.responseReceived", self._response)
        self.cdp.on("Network.dataReceived", self._data)
        self.cdp.on("Network.loadingFinished", self._finished)
        self.cdp.on("Network.loadingFailed", self._failed)

    def reset(self) -> None:
        self.reqs = {}

    def _sent(self, e: dict[str, Any]) -> None:
        self.reqs[e["requestId"]] = {"url": e["request"]["url"], "type": e.get("type"),
                                     "body": 0, "wire": None, "status": None, "mime": None,
                                     "failed": None}

    def _response(self, e: dict[str, Any]) -> None:
        r = self.reqs.get(e["requestId"])
        if r is not None:
            r["status"], r["mime"] = e["response"]["status"], e["response"].get("mimeType")

    def _data(self, e: dict[str, Any]) -> None:
        r = self.reqs.get(e["requestId"])
        if r is not None:
            r["body"] += e.get("dataLength", 0)

    def _finished(self, e: dict[str, Any]) -> None:
        r = self.reqs.get(e["requestId"])
        if r is not None:
            r["wire"] = e.get("encodedDataLength")

    def _failed(self, e: dict[str, Any]) -> None:
        r = self.reqs.get(e["requestId"])
        if r is not None:
            r["failed"] = e.get("errorText")

    def summary(self) -> dict[str, Any]:
        def kind(r: dict[str, Any]) -> str:
            path = r["url"].split("?", 1)[0].lower()
            if path.endswith(".mp4") or r["type"] == "Media":
                return "video"
            if path.endswith((".jpg", ".jpeg")):
                return "poster"
            return "other"

        out: dict[str, Any] = {}
        for name in ("video", "poster", "other"):
            rs = [r for r in self.reqs.values() if kind(r) == name]
            out[name] = {
                "requests": len(rs), "body_bytes": sum(r["body"] for r in rs),
                "wire_bytes": sum(r["wire"] or 0 for r in rs),
                "statuses": dict(Counter(str(r["status"]) for r in rs)),
                "mimes": dict(Counter(str(r["mime"]) for r in rs)),
                "failed": sum(1 for r in rs if r["failed"]),
                "bytes_by_mime": dict(_sum_by(rs, "mime")),
                "unique_urls": len({r["url"] for r in rs}),
                "example": rs[0]["url"] if rs else None}
        return out


def _sum_by(rs: list[dict[str, Any]], key: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for r in rs:
        out[str(r[key])] += r["body"]
    return out


def gallery_display(page: Any, net: Network, index: int, n: int) -> dict[str, Any]:
    """Run the gallery cell ``index`` and time it in the page (see the module's docstring)."""
    net.reset()
    page.evaluate(GALLERY_PROBE_JS, [index, n])
    run_cell(page, index)
    page.wait_for_function("() => window.__benchGallery.done", timeout=90_000, polling=200)
    st = page.evaluate("() => window.__benchGallery")
    page.wait_for_timeout(3000)  # late fetches
    shown = net.summary()
    posters = page.evaluate(POSTER_CHECK_JS, index)
    # scroll through the whole gallery, as a person looking at every card would
    net_before_scroll = json.loads(json.dumps(shown))
    net.reset()
    page.evaluate(f"""async () => {{
      const e = ({SCROLLER_JS})(); if (!e) return;
      for (let y = 0; y <= e.scrollHeight; y += 400) {{
        e.scrollTop = y; await new Promise(r => setTimeout(r, 50)); }}
    }}""")
    page.wait_for_timeout(2000)
    scrolled = net.summary()
    return {"timing_ms": st, "network": net_before_scroll, "network_scroll": scrolled,
            "posters": posters}


# -- the run -----------------------------------------------------------------------------------
SETUP = textwrap.dedent(f"""
    import json, os, time, collections
    import ipywidgets
    from ipywidgets.widgets import widget as _w
    import wan_nb
    from wan_nb.widgets import Gallery
    def n_models():
        return len(_w._instances)
    def model_kinds():
        return dict(collections.Counter(type(w).__name__ for w in _w._instances.values()))
    def timed_ms(fn, n):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
        return sorted(out)
    fast = wan_nb.connect(speed=0, store="runs_fast", quiet=True)
    slow = wan_nb.connect(speed={SLOW_SPEED}, store="runs_slow", quiet=True)
    print(json.dumps({{"pid": os.getpid(), "wan_nb": wan_nb.__version__,
                       "ipywidgets": ipywidgets.__version__, "models": n_models()}}))
""")

MAKE_GALLERY = textwrap.dedent(f"""
    _t = time.perf_counter()
    gallery_jobs = wan_nb.JobList(
        fast.submit(p, model={GALLERY_MODEL!r}, size={GALLERY_SIZE!r},
                    duration={GALLERY_DURATION}, seed=s)
        for p in {GALLERY_PROMPTS!r} for s in range({GALLERY_SEEDS}))
    gallery_jobs.wait(timeout=600)
    _sizes = [os.path.getsize(j.video) for j in gallery_jobs if j.video]
    print(json.dumps({{"s": time.perf_counter() - _t,
                       "status": collections.Counter(j.status for j in gallery_jobs),
                       "videos": len(_sizes), "video_bytes": sum(_sizes)}}))
""")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=25, help="Generate clicks timed (>= 20)")
    ap.add_argument("--samples", type=int, default=200, help="trivial cells per window")
    ap.add_argument("--json", type=Path, help="also write the JSON report to this file")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        ap.error(f"no Chromium at {CHROMIUM} (Debian's chromium package; WAN_NB_CHROMIUM)")
    rng = random.Random(args.seed)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    report: dict[str, Any] = {"load_start": load(), "cpus": os.cpu_count()}
    say(f"# bench_ui: JupyterLab + Chromium ({CHROMIUM}), python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, 1-minute load average {load():.1f} at the start")
    with tempfile.TemporaryDirectory(prefix="bench_ui_") as d, lab_server(Path(d)) as lab:
        tmp = Path(d)
        import nbformat

        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, str(lab.root / NOTEBOOK))
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp / "chromium-profile"), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
            counter: IopubCounter | None = None
            k: LabKernel | None = None
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(60_000)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                net = Network(page)
                page.goto(lab.url(f"lab/tree/{NOTEBOOK}"), timeout=90_000)
                page.wait_for_function("() => document.querySelectorAll("
                                       "'.jp-Notebook .jp-CodeCell').length >= 3",
                                       timeout=90_000)
                _wait_for_kernel(lab)
                session = next(s for s in _get(lab.url("api/sessions"))
                               if s["path"].endswith(NOTEBOOK))
                cf = tmp / "jupyter" / "runtime" / f"kernel-{session['kernel']['id']}.json"
                k = LabKernel(cf)
                counter = IopubCounter(cf)
                note("setting up the kernel, making 100 videos on the fast emulator")
                info = k.json(SETUP)
                report["versions"] = {"wan_nb": info["wan_nb"], "ipywidgets": info["ipywidgets"]}
                pid = info["pid"]
                made = k.json(MAKE_GALLERY, timeout=900)
                report["gallery_runs"] = made
                time.sleep(3)

                note("baseline: trivial cells, idle kernel")
                k.run("1+1")
                report["cells_baseline"] = measure_cells(k, counter, pid, args.samples, rng)

                note("Studio displayed; Generate clicks")
                models0 = k.json("print(n_models())")
                run_cell(page, 0)
                wait_prompt(page, 0)
                page.locator(".wan-studio .wan-nb-form[data-wan-nb-hooked]").wait_for()
                models_studio = k.json("print(n_models())") - models0
                k.run(f"studio.form.prompt.value = {CLICK_PROMPT!r}\n"
                      "studio.form.resolution.value = '480P'")
                page.wait_for_timeout(1000)
                page.evaluate(CLICK_PROBE_JS, CLICK_PROMPT[:30])
                button = page.locator(".wan-studio .wan-nb-generate button, "
                                      ".wan-studio button.wan-nb-generate").first
                clicks: list[dict[str, Any]] = []
                for i in range(args.clicks):
                    button.click()
                    page.wait_for_function(f"() => window.__benchClicks.done.length > {i}",
                                           timeout=60_000, polling=50)
                    page.wait_for_timeout(400 + rng.randint(0, 200))
                clicks = page.evaluate("() => window.__benchClicks.done")
                models_clicks = k.json("print(n_models())") - models0 - models_studio
                # the kernel's share of a click: what Generate runs (submit, tracker row,
                # Player), and a bare submit, timed in the kernel (jobs stay in flight)
                kernel_side = k.json(textwrap.dedent(f"""
                    _gen = timed_ms(studio.form.generate_now, {KERNEL_PROBES})
                    _sub = timed_ms(lambda: slow.submit("bench bare submit", resolution="480P",
                                                        duration=5), {KERNEL_PROBES})
                    _show = timed_ms(lambda: studio.show(studio.form.last_job), {KERNEL_PROBES})
                    print(json.dumps({{"generate_now_ms": _gen, "submit_ms": _sub,
                                       "show_ms": _show}}))
                """))
                report["clicks"] = {
                    "n": len(clicks), "dom_ms": [c["dom"] for c in clicks],
                    "frame_ms": [c["frame"] for c in clicks],
                    "studio_models": models_studio,
                    "models_per_click": models_clicks / max(1, len(clicks)),
                    "models_before_studio": models0, "kernel": kernel_side, "load": load()}

                note(f"{IN_FLIGHT} jobs in flight with the Studio open: trivial cells")
                more = IN_FLIGHT - len(clicks) - 2 * KERNEL_PROBES
                k.run(textwrap.dedent(f"""
                    extra = [slow.submit("bench in flight {{}}".format(i), resolution="480P",
                                         duration=5, seed=i) for i in range({more})]
                """))
                page.wait_for_function(f"() => document.querySelectorAll('.wan-studio "
                                       f".wan-tracker-row').length >= {IN_FLIGHT}",
                                       timeout=120_000, polling=250)
                page.wait_for_timeout(2000)
                state = k.json("print(json.dumps({'models': n_models(), 'flight': "
                               "collections.Counter(j.status for j in slow.jobs), "
                               "'rows': len(studio.tracker.jobs)}))")
                report["studio_state"] = state
                # what one tick of the tracker costs the kernel with 50 rows (on this thread)
                report["tick_ms"] = k.json("print(json.dumps(timed_ms(studio.tracker.refresh, "
                                           "20)))")
                report["cells_studio"] = measure_cells(k, counter, pid, args.samples, rng)
                k.run("studio.close()")
                page.wait_for_timeout(1000)
                report["cells_no_studio"] = measure_cells(k, counter, pid, args.samples, rng)
                report["after_close"] = k.json(
                    "print(json.dumps({'models': n_models(), 'kinds': model_kinds(), "
                    "'flight': sum(not j.done for j in slow.jobs)}))")
                k.run("slow.close()")

                note("gallery of 100 videos: cold (posters made now), then warm")
                time.sleep(2)
                m0 = k.json("print(n_models())")
                report["gallery_cold"] = gallery_display(page, net, 1, len(GALLERY_PROMPTS)
                                                         * GALLERY_SEEDS)
                report["gallery_cold"]["models"] = k.json("print(n_models())") - m0
                k.run("gallery_cold.wait_posters(120)")
                time.sleep(2)
                report["gallery_warm"] = gallery_display(page, net, 2, len(GALLERY_PROMPTS)
                                                         * GALLERY_SEEDS)
                # the kernel's share: building the gallery (posters cached), and the posters'
                # real size on disk (what the page would fetch if their URLs were served)
                report["gallery_kernel"] = k.json(textwrap.dedent("""
                    from wan_nb.media import cached_poster
                    _p = [cached_poster(j.video) for j in gallery_jobs]
                    _g = []
                    _b = timed_ms(lambda: _g.append(Gallery(gallery_jobs)), 3)
                    _m = n_models()
                    for _x in _g:
                        _x.close()
                    print(json.dumps({"build_ms": _b, "models_3": _m - n_models(),
                                      "posters": sum(x is not None for x in _p),
                                      "poster_bytes": sum(x.stat().st_size for x in _p if x)}))
                """))
                report["page_errors"] = errors[:10]
            finally:
                if counter is not None:
                    counter.close()
                if k is not None:
                    k.shutdown()
                context.close()
    report["load_end"] = load()
    report["wall_s"] = time.monotonic() - started
    print_report(report)
    blob = json.dumps(report, indent=1, default=str)
    if args.json:
        args.json.write_text(blob)
    say()
    say("JSON report:")
    say(json.dumps(_without(report, "lat_ms"), default=str, separators=(",", ":")))
    return 0


def _without(value: Any, key: str) -> Any:
    """``value`` without ``key`` at any depth (the raw samples stay in the --json file)."""
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    return value


def fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def print_report(r: dict[str, Any]) -> None:
    c = r["clicks"]
    say()
    say(f"## 1. Generate click -> new tracker row, in the page ({c['n']} clicks, load "
        f"{c['load']:.1f})")
    say(table(["measure", "p50 ms", "p90 ms", "max ms", "target"], [
        ["click -> row in the DOM (MutationObserver)", fmt(pct(c["dom_ms"], 50)),
         fmt(pct(c["dom_ms"], 90)), fmt(max(c["dom_ms"], default=None)), "< 100 ms"],
        ["click -> next animation frame", fmt(pct(c["frame_ms"], 50)),
         fmt(pct(c["frame_ms"], 90)), fmt(max(c["frame_ms"], default=None)), "< 100 ms"]]))
    kc = c["kernel"]
    say(f"in the kernel (median of {len(kc['submit_ms'])}): generate_now() "
        f"{statistics.median(kc['generate_now_ms']):.1f} ms (max "
        f"{max(kc['generate_now_ms']):.1f}), a bare slow.submit() "
        f"{statistics.median(kc['submit_ms']):.1f} ms, studio.show(job) (the Player it "
        f"opens) {statistics.median(kc['show_ms']):.1f} ms; trivial cell round trip p50 "
        f"{r['cells_baseline']['p50_ms']:.1f} ms (baseline, section 3)")
    say(f"widget models: {c['models_before_studio']} before the Studio; the Studio made "
        f"{c['studio_models']}; each Generate click {c['models_per_click']:.1f} "
        "(tracker row + the Player it opens)")

    say()
    say("## 2. Gallery of 100 finished videos (Gallery(jobs) run from a cell)")
    g = r["gallery_runs"]
    say(f"100 runs made on the fast emulator in {g['s']:.1f} s: {g['status']}, "
        f"{g['videos']} videos, {g['video_bytes'] / 1e6:.1f} MB on disk")
    rows = []
    for name in ("gallery_cold", "gallery_warm"):
        x = r[name]
        t, n, ns, p = x["timing_ms"], x["network"], x["network_scroll"], x["posters"]
        rows.append([name.split("_")[1], fmt(t["reply"], 0), fmt(t["output"], 0),
                     fmt(t["cards"], 0), fmt(t["cardsFrame"], 0), fmt(t["posters"], 0),
                     fmt(t["postersFrame"], 0),
                     f"{n['video']['body_bytes']} ({n['video']['requests']} req)",
                     f"{ns['video']['body_bytes']}",
                     f"{n['poster']['body_bytes']} ({n['poster']['requests']} req)",
                     f"{p['decoded']}/{p['urls']}"])
    say(table(["display", "reply ms", "output ms", "100 cards ms", "+frame ms",
               "posters decoded ms", "+frame ms", "video bytes",
               "video bytes after scroll", "poster bytes", "posters decode (after)"], rows))
    for name in ("gallery_cold", "gallery_warm"):
        x = r[name]
        say(f"{name}: poster src e.g. {x['posters']['example']}; statuses "
            f"{x['network']['poster']['statuses']}, requests by type "
            f"{x['network']['poster']['mimes']}, bytes by type "
            f"{x['network']['poster']['bytes_by_mime']}, "
            f"{x['network']['poster']['unique_urls']} distinct URLs; "
            f"video src e.g. {x['posters']['src_example']}, preload {x['posters']['preload']},"
            f" videos with readyState > 0: {x['posters']['ready']}; models "
            f"{x.get('models', '-')}")
    gk = r["gallery_kernel"]
    say(f"in the kernel: Gallery(jobs) built in {statistics.median(gk['build_ms']):.0f} ms "
        f"(median of 3, posters cached), {gk['models_3'] / 3:.0f} widget models; the "
        f"{gk['posters']} posters on disk: {gk['poster_bytes']} bytes")
    say("times from the Shift+Enter keydown that runs the cell (reply: the cell's prompt shows"
        " its number); '-' = not reached in 60 s")

    say()
    say(f"## 3. Trivial cell (1+1) round trip, jupyter_client on the notebook's kernel "
        f"({r['cells_baseline']['n']} each)")
    base = r["cells_baseline"]
    rows = []
    for label, key in (("baseline: idle, no Studio", "cells_baseline"),
                       (f"Studio open, {IN_FLIGHT} jobs in flight", "cells_studio"),
                       (f"Studio closed, {IN_FLIGHT} jobs in flight", "cells_no_studio")):
        x = r[key]
        io = x["iopub"]
        rows.append([label, fmt(x["p50_ms"]), fmt(x["p90_ms"]), fmt(x["p99_ms"]),
                     fmt(x["max_ms"]), fmt(x["p99_ms"] / base["p99_ms"], 2),
                     fmt(io["comm_per_s"]), fmt(io["comm_bytes"] / io["span_s"] / 1000),
                     str(io["models"]), fmt(x["kernel_cpu_share"] * 100, 0),
                     fmt(x["load"])])
    say(table(["window", "p50 ms", "p90 ms", "p99 ms", "max ms", "p99 / baseline",
               "comm msg/s", "comm KB/s", "models updated", "kernel CPU %", "load"], rows))
    say(f"in flight: {r['studio_state']['flight']}; widget models alive with the Studio: "
        f"{r['studio_state']['models']}, after studio.close(): {r['after_close']['models']} "
        f"({c['models_before_studio']} before it): {r['after_close']['kinds']}")
    say(f"one tracker refresh (what each {0.5} s tick runs) with {IN_FLIGHT} rows, on the "
        f"kernel's thread: median {statistics.median(r['tick_ms']):.1f} ms, max "
        f"{max(r['tick_ms']):.1f} ms (20 calls)")
    say()
    say(f"load average {r['load_start']:.1f} at the start, {r['load_end']:.1f} at the end, "
        f"on {r['cpus']} CPUs; wall time {r['wall_s']:.0f} s")
    if r.get("page_errors"):
        say(f"page errors: {r['page_errors']}")


if __name__ == "__main__":
    sys.exit(main())
