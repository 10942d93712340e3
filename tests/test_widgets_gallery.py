"""The Player, the Gallery and the History, headless: real ipywidgets over real runs of the
emulator (in-process server, real MP4s, real store), poster frames made by ffmpeg."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import random
import re
import shutil
import threading
import time
from pathlib import Path

from ipywidgets.widgets import widget as widget_module
import pytest

import wan_nb
from wan_nb.display import gallery as static_gallery
from wan_nb.emulator.server import EmbeddedEmulator
from wan_nb.errors import ValidationError
from wan_nb.media import make_posters, poster_path
from wan_nb.store_table import DERIVED
from wan_nb.widgets.gallery import Gallery
from wan_nb.widgets.history import History
from wan_nb.widgets.player import NOT_DISCLOSED, Player

BASE = {"model": "wan2.5-t2v-preview", "size": "832*480", "duration": 5}
PROMPTS = ["a paper boat at dawn", "一只狐狸在雪地里"]
XSS = "<img src=x onerror=alert(1)>"


def wait_until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """One session on the emulator (made as conftest's make_client makes one) with finished
    runs: a prompt × seed sweep on wan2.5 (which discloses its rewrite), a wan2.7 run (which
    does not), a run whose prompt is markup and one with the rewrite off. Module-wide: seven
    renders are made once. The working directory is the store's parent, as a notebook's is,
    so videos are relative."""
    root = tmp_path_factory.mktemp("studio")
    emu = EmbeddedEmulator(data_dir=root / "emu").start()
    client = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="emulator",
                           store=root / "wan_runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        exp = wan_nb.Experiment("boats", base=BASE, client=client)
        exp.grid(prompt=PROMPTS, seed=[1, 2])
        exp.run()
        wan27 = client.submit("a kite over dunes", model="wan2.7-t2v", resolution="720P",
                              ratio="16:9", seed=3)
        xss = client.submit(XSS, seed=4, **BASE)
        off = client.submit("a quiet harbour", seed=5, prompt_extend=False, **BASE)
        exp.wait(timeout=240, progress=False)
        for job in (wan27, xss, off):
            job.result(timeout=240)
        yield {"client": client, "exp": exp, "wan27": wan27, "xss": xss, "off": off,
               "root": root}
    client.close()
    emu.stop()


def clear_ratings(studio) -> None:
    client = studio["client"]
    for job in [*studio["exp"].jobs, studio["wan27"], studio["xss"], studio["off"]]:
        client.store.update_run(job.run_id, rating=None, keep=None, notes=None)
        job.refresh()


def cell_runs(widget) -> list[str]:
    return [child.run_id for child in getattr(widget, "children", ())]


def grid_cells(gallery: Gallery) -> list[list[str]]:
    """Each grid cell's run ids, row by row (labels left out); the markup shows each once."""
    cells = gallery.cells()
    shown = [run_id for row in gallery.grid.children if row is not gallery.header
             for run_id in re.findall(r"data-wan-run='([^']*)'", row.value)]
    assert sorted(shown) == sorted(gallery.shown())
    return cells


def click(gallery: Gallery, run_id: str, action: str, value) -> None:
    """What a card button's handler sends through the hidden channel."""
    gallery.channel.value = json.dumps({"n": random.random(), "run_id": run_id,
                                        "action": action, "value": value})


def test_two_parameters_facet_a_labelled_grid(studio):
    exp = studio["exp"]
    gallery = Gallery(exp)  # by default: the first two parameters that vary
    assert (gallery.rows.value, gallery.cols.value) == ("prompt", "seed")
    assert gallery.row_labels == [f"Prompt: {p}" for p in PROMPTS]
    assert gallery.col_labels == ["Seed: 1", "Seed: 2"]
    by = {(j.prompt, j.seed): j.run_id for j in exp.jobs}
    assert grid_cells(gallery) == [[by[(p, s)]] for p in PROMPTS for s in (1, 2)]
    assert "grid-template-columns:minmax(80px, 180px) repeat(2, minmax(160px, 1fr))" in (
        gallery.grid.children[1].value)
    # one HTML for the labels of the columns (and the corner), one per row
    assert len(gallery.grid.children) == 1 + 2
    assert gallery.grid.children[0].value.count("font-weight:bold") == 1 + 2
    assert "Prompt: 一只狐狸在雪地里" in gallery.grid.children[-1].value

    # the dropdowns re-facet: seed down the rows, nothing across
    gallery.rows.value, gallery.cols.value = "seed", None
    assert gallery.row_labels == ["Seed: 1", "Seed: 2"] and gallery.col_labels == []
    assert grid_cells(gallery) == [[by[(p, 1)] for p in PROMPTS], [by[(p, 2)] for p in PROMPTS]]
    # what is not faceted any more is said under each video
    assert "Prompt</span> a paper boat at dawn" in gallery.cards[0].html
    gallery.close()

    # model × ratio over runs of two protocols
    jobs = [*exp.jobs, studio["wan27"]]
    mixed = Gallery(jobs, rows="model", cols="ratio")
    assert mixed.row_labels == ["Model: wan2.5-t2v-preview", "Model: wan2.7-t2v"]
    assert mixed.col_labels == ["Ratio: 16:9"]
    assert [len(c) for c in grid_cells(mixed)] == [4, 1]
    # the four wan2.5 videos one under another: four HTML rows (labelled once) and one
    assert len(mixed.grid.children) == 1 + 4 + 1
    assert [w.value.count("font-weight:bold") for w in mixed.grid.children[1:]] == [1, 0, 0,
                                                                                   0, 1]
    mixed.close()
    with pytest.raises(ValidationError, match="rows='colour' is not a parameter"):
        Gallery(jobs, rows="colour")
    with pytest.raises(ValidationError, match="columns must be a whole number >= 1"):
        Gallery(jobs, columns=0)
    with pytest.raises(ValidationError, match="limit must be a whole number >= 1"):
        History(studio["client"], limit=0)


def test_a_rating_and_a_verdict_reach_the_store_at_once(studio):
    clear_ratings(studio)
    exp = studio["exp"]
    gallery = Gallery(exp, on_load=lambda job: None)
    first, second = gallery.cards[0], gallery.cards[1]
    click(gallery, first.job.run_id, "rate", 4)  # what a click on "4" sends
    gallery.set_keep(second.job.run_id, False)  # the same code
    df = exp.to_dataframe()
    assert df.loc[first.job.run_id, "rating"] == 4
    assert df.loc[second.job.run_id, "keep"] is False or df.loc[second.job.run_id, "keep"] == 0
    assert df["rating"].notna().sum() == 1 and df["keep"].notna().sum() == 1
    assert "1 rated" in gallery.status.value
    # the markup shows it: the pressed buttons
    assert re.search(r"mod-active' data-wan-rate='4'[^>]*aria-pressed='true'", first.html)
    assert re.search(r"mod-active' data-wan-keep='reject'", second.html)
    assert "aria-pressed='true'" not in first.html.split("wan-verdict")[1]
    # Load into form hands the job over; what is not a click of ours is refused, nothing kept
    loaded = []
    gallery._on_load = loaded.append
    click(gallery, second.job.run_id, "load", None)
    assert loaded == [second.job]
    for bad in (("rate", 9), ("rate", True), ("keep", "yes")):
        click(gallery, first.job.run_id, *bad)
        assert "must be" in gallery.status.value
    click(gallery, "not-a-run", "rate", 3)
    click(gallery, first.job.run_id, "explode", 3)
    gallery.channel.value = "not json"
    with pytest.raises(ValidationError, match="rating must be a whole number 1-5"):
        gallery.rate(first.job.run_id, 0)
    with pytest.raises(ValidationError, match="is not a run of this gallery"):
        gallery.rate("nope", 3)
    df = exp.to_dataframe()
    assert df["rating"].notna().sum() == 1 and df["keep"].notna().sum() == 1
    assert df.loc[first.job.run_id, "rating"] == 4
    gallery.close()
    again = Gallery(exp)  # a new gallery shows what is recorded
    shown = {c.job.run_id: (c.rating, c.keep) for c in again.cards}
    assert shown[first.job.run_id] == (4, None)
    assert shown[second.job.run_id] == (None, False)
    assert "data-wan-load" not in again.markup()  # no on_load: no Load button
    again.close()


def test_order_by_rating(studio):
    clear_ratings(studio)
    exp = studio["exp"]
    gallery = Gallery(exp, rows=None, cols=None)
    ids = [c.job.run_id for c in gallery.cards]
    assert gallery.shown() == ids
    for card, rating in zip(gallery.cards, (2, 5, None, 3), strict=True):
        if rating:
            gallery.rate(card.job.run_id, rating)
    gallery.order.value = "best"
    assert gallery.shown() == [ids[1], ids[3], ids[0], ids[2]]  # unrated last
    gallery.order.value = "worst"
    assert gallery.shown() == [ids[0], ids[3], ids[1], ids[2]]
    # faceted: rows and columns in the order of their mean rating
    gallery.rows.value, gallery.cols.value = "prompt", "seed"
    gallery.order.value = "best"
    # prompt 0: seeds 1, 2 rated 2 and 5 (mean 3.5); prompt 1: 3 (mean 3); seed 2: 5 and 3
    assert gallery.row_labels == [f"Prompt: {PROMPTS[0]}", f"Prompt: {PROMPTS[1]}"]
    assert gallery.col_labels == ["Seed: 2", "Seed: 1"]
    gallery.order.value = "run"
    assert gallery.col_labels == ["Seed: 1", "Seed: 2"]
    gallery.close()


def test_blind_mode_hides_shuffles_and_reveals_when_all_are_rated(studio):
    clear_ratings(studio)
    exp = studio["exp"]
    studio["client"].store.update_run(exp.jobs[0].run_id, rating=5)  # rated before: not shown
    gallery = Gallery(exp, seed=7)
    ids = [c.job.run_id for c in gallery.cards]
    gallery.blind.value = True
    expected = list(ids)
    random.Random(7).shuffle(expected)
    assert gallery.shown() == expected
    assert gallery.row_labels == [] and gallery.col_labels == []
    assert gallery.header not in gallery.grid.children and "font-weight:bold" not in (
        gallery.markup())
    assert all(w.disabled for w in (gallery.rows, gallery.cols, gallery.order))
    assert all(c.rating is None and c.keep is None for c in gallery.cards)
    assert "aria-pressed='true'" not in gallery.markup()  # the rating given before: not shown

    def labels_hidden() -> bool:
        markup = gallery.markup()
        return not any(p in markup for p in PROMPTS) and "Seed" not in markup

    assert labels_hidden()
    for run_id, rating in zip(expected[:3], (3, 1, 4), strict=True):
        click(gallery, run_id, "rate", rating)
        assert labels_hidden() and not gallery.revealed
    gallery.set_keep(expected[0], True)  # a verdict is no rating: still hidden
    assert labels_hidden() and "3 of 4 rated" in gallery.status.value
    click(gallery, expected[3], "rate", 2)
    assert gallery.revealed and "Revealed" in gallery.status.value
    markup = gallery.markup()
    assert all(p in markup for p in PROMPTS) and "Seed</span> 1" in markup
    assert gallery.shown() == expected  # the order stays, to see which was which
    ratings = exp.to_dataframe()["rating"]
    assert {rid: ratings[rid] for rid in expected} == dict(zip(expected, (3, 1, 4, 2),
                                                                strict=True))
    gallery.blind.value = False  # back to the labelled grid, ratings as recorded
    assert gallery.row_labels and not gallery.rows.disabled
    assert {c.job.run_id: c.rating for c in gallery.cards} == dict(
        zip(expected, (3, 1, 4, 2), strict=True))
    gallery.close()


def test_player_marks_the_rewrite_or_says_it_is_not_disclosed(studio):
    job = studio["exp"].jobs[0]
    assert job.actual_prompt and job.actual_prompt != job.prompt
    loaded, reruns = [], []
    player = Player(job, on_load=loaded.append,
                    on_rerun=lambda j, freeze: reruns.append((j.run_id, freeze)))
    prompts = player.prompts.value
    added = re.findall(r"<ins[^>]*>(.*?)</ins>", prompts)
    assert added and job.actual_prompt.endswith(added[-1])
    assert NOT_DISCLOSED not in prompts
    assert "<video" in player.video.value and 'preload="metadata"' in player.video.value
    details = player.details.value
    for text in ("wan2.5-t2v-preview", "832×480", "5 s", f"<td style='padding:0'>{job.seed}",
                 "USD 0.250 (from the usage)", "Billed seconds"):
        assert text in details, text
    assert player.frozen_button.layout.display != "none"
    player.load_button.click()
    player.rerun_button.click()
    player.frozen_button.click()
    assert loaded == [job] and reruns == [(job.run_id, False), (job.run_id, True)]
    player.close()

    wan27 = Player(studio["wan27"])
    assert NOT_DISCLOSED in wan27.prompts.value and "<ins" not in wan27.prompts.value
    assert wan27.frozen_button.layout.display == "none"  # nothing to freeze
    assert wan27.load_button.layout.display == "none"  # no form given
    assert "1280×720" in wan27.details.value
    wan27.close()

    off = Player(studio["off"])  # the rewrite turned off: nothing to show, and it says why
    assert "the rewrite was off" in off.prompts.value and NOT_DISCLOSED not in off.prompts.value
    assert off.frozen_button.layout.display == "none"
    off.close()


def test_player_reruns_through_the_jobs_session(make_client):
    client = make_client()
    job = client.submit("a lantern on a quay", seed=11, **BASE).result(timeout=120)
    player = Player(job)
    player.rerun_button.click()
    again = player.last_rerun
    assert again.run_id != job.run_id and again.request.seed == 11
    assert again.prompt == job.prompt and f"submitted again with the same seed as run " \
        f"{again.run_id}" in player.message.value
    player.frozen_button.click()
    frozen = player.last_rerun
    assert frozen.prompt == job.actual_prompt and frozen.prompt_extend is False
    assert frozen.request.seed == 11
    for new in (again, frozen):
        new.result(timeout=120)
    player.close()


def test_history_searches_and_loads(studio):
    client = studio["client"]
    clear_ratings(studio)
    studio["wan27"].rate(notes="the best kite so far")
    loaded = []
    history = History(client, on_load=loaded.append, limit=5)
    runs = client.store.runs()
    n = len(runs)
    assert history.shown == [r["run_id"] for r in reversed(runs)][:5]  # newest first
    assert f"{n} of {n} runs in the run log; the newest 5 shown" in history.summary.value
    history.search.value = "狐狸"
    fox = [j.run_id for j in studio["exp"].jobs if j.prompt == PROMPTS[1]]
    assert sorted(history.shown) == sorted(fox)
    assert f"2 of {n} runs match" in history.summary.value
    history.search.value = "WAN2.7"  # any case, the model's name
    assert history.shown == [studio["wan27"].run_id]
    history.search.value = "best kite"  # every word, in the notes here
    assert history.shown == [studio["wan27"].run_id]
    boat = studio["exp"].jobs[0]  # the service's rewrite is searched too
    word = next(w for w in re.findall(r"[a-z]{5,}", boat.actual_prompt)
                if not any(w in (r["prompt"] or "") for r in runs))
    history.search.value = f"{word} boat"
    assert boat.run_id in history.shown
    assert all(word in client.store.get_run(r)["actual_prompt"] for r in history.shown)
    history.search.value = "nothing like this"
    assert history.shown == [] and f"0 of {n}" in history.summary.value
    history.search.value = "kite"
    row = history._rows[0]
    assert "seed 3" in row.html.value and "720P · 16:9" in row.html.value
    row.load.click()
    assert [j.run_id for j in loaded] == [studio["wan27"].run_id]
    assert loaded[0].request.seed == 3
    assert "data-lm-suppress-shortcuts" in history.guard.value
    history.close()


def test_user_text_is_escaped_everywhere(studio):
    xss = studio["xss"]
    xss.rate(notes=XSS)
    views = {"gallery": Gallery([xss, *studio["exp"].jobs], rows="prompt", cols=None),
             "player": Player(xss), "history": History(studio["client"])}
    markup = {"gallery": views["gallery"].markup(),
              "player": views["player"].prompts.value + views["player"].details.value,
              "history": "".join(r.html.value for r in views["history"]._rows)}
    for name, text in markup.items():
        assert "<img src=x" not in text, name
        assert "&lt;img src=x onerror=alert(1)&gt;" in text, name
    for view in views.values():
        view.close()


def test_posters_are_small_and_a_grid_of_100_loads_nothing_before_play(studio, tmp_path,
                                                                       monkeypatch):
    client = studio["client"]
    source = [j for j in studio["exp"].jobs]
    # 100 runs of emulator videos: the recorded runs copied (each its own file)
    rows = []
    for i in range(100):
        original = client.store.get_run(source[i % len(source)].run_id)
        video = Path(client.store.video_file(original))
        copy = video.with_name(f"copy{i:03d}.mp4")
        shutil.copyfile(video, copy)
        rows.append({k: v for k, v in original.items()
                     if k not in ("run_id", "created_at", "updated_at", "owner",
                                  "owner_heartbeat", "task_id", *DERIVED)}
                    | {"video_path": f"videos/{copy.name}", "seed": 1000 + i,
                       "video_mtime_ns": copy.stat().st_mtime_ns, "experiment": "hundred"})
    ids = client.store.insert_runs(rows)
    jobs = [client.attach(run_id) for run_id in ids]
    monkeypatch.chdir(studio["root"])
    models = len(widget_module._instances)
    started = time.perf_counter()
    gallery = Gallery(jobs, rows=None, cols=None, on_load=print)
    built = time.perf_counter() - started
    made = len(widget_module._instances) - models
    assert made <= 60, made  # a handful of models, not five per video (~445 before)
    assert gallery.wait_posters(timeout=240)
    # a click: the store written and that card's row re-rendered, quickly
    started = time.perf_counter()
    click(gallery, ids[50], "rate", 4)
    clicked = time.perf_counter() - started
    assert client.store.get_run(ids[50])["rating"] == 4
    assert "mod-active' data-wan-rate='4'" in gallery.cards[50].html
    assert clicked < 0.5, clicked
    markup = gallery.markup()
    videos = re.findall(r"<video [^>]*>", markup)
    assert len(videos) == 100
    assert set(re.findall(r'preload="([^"]*)"', markup)) == {"none"}
    # served: the path for the resolve hook, no poster= the browser would fetch from the
    # page's own URL before the hook has run
    posters = [re.search(r'data-wan-poster="([^"]*)"', v) for v in videos]
    assert all(posters), "every video has a poster"
    assert not any(re.search(r'\sposter="', v) for v in videos)
    total = sum(os.path.getsize(poster_path(j.video)) for j in jobs)
    assert total < 1_000_000 / 2, total  # well under 1 MB for 100
    assert built < 10, built
    # made once: asked again, every poster is the cached one
    before = [poster_path(j.video).stat().st_mtime_ns for j in jobs[:8]]
    assert make_posters([j.video for j in jobs[:8]]) == [poster_path(j.video) for j in jobs[:8]]
    assert [poster_path(j.video).stat().st_mtime_ns for j in jobs[:8]] == before
    gallery.close()
    print(f"100-video gallery: {made} models, built in {built:.2f} s, a click -> store -> "
          f"markup {clicked * 1000:.0f} ms, posters {total / 1000:.0f} kB")


def test_an_unreadable_video_gets_no_poster(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b'{"code": "InvalidParameter"}')
    assert make_posters([bad]) == [None]
    assert not list(tmp_path.glob("*.jpg")) and not list(tmp_path.glob(".*tmp"))


def test_widgets_leave_no_callbacks_on_jobs(studio, make_client):
    finished = list(studio["exp"].jobs)
    models = len(widget_module._instances)
    for _ in range(10):
        for view in (Gallery(finished, on_load=print), Player(finished[0], on_load=print),
                     History(studio["client"], on_load=print)):
            view.close()
    assert len(widget_module._instances) == models  # every model closed, layouts and styles too
    for _ in range(10):
        Gallery(finished)  # not closed: a finished job needs no callback at all
        Player(finished[0])
    assert all(not j._state.callbacks for j in finished)

    client = make_client()
    running = [client.submit("a slow tide", seed=s, **BASE) for s in (1, 2)]
    views = []
    for _ in range(10):
        views += [Gallery(running), Player(running[0])]
    assert len(running[0]._state.callbacks) == 20
    for view in views[:10]:
        view.close()
    assert len(running[0]._state.callbacks) == 10
    for job in running:  # the rest let go by themselves once their jobs are done
        job.result(timeout=120)
    wait_until(lambda: all(not j._state.callbacks for j in running), "callbacks released")
    # and the views show the finished runs, posters and all
    gallery = views[-2]
    assert gallery.wait_posters(timeout=60)
    assert all("<video" in c.html for c in gallery.cards)
    assert "SUCCEEDED" in views[-1].header.value
    for view in views[10:]:
        view.close()


def test_joblist_and_experiment_galleries_are_the_widget(studio):
    exp = studio["exp"]
    for gallery in (exp.gallery(columns=4), exp.jobs.gallery(rows="seed", cols=None),
                    wan_nb.Experiment("boats", base=BASE, client=studio["client"]).gallery()):
        assert isinstance(gallery, Gallery)
        assert sorted(gallery.shown()) == sorted(j.run_id for j in exp.jobs)
        gallery.close()
    static = static_gallery(exp.jobs)._repr_html_()  # the static export stays
    assert static.count("<video") == 4


CHROMIUM = os.environ.get("WAN_NB_CHROMIUM", "/usr/bin/chromium")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single byte ranges, as Jupyter serves them: a browser seeks in a
    video only where its server answers ranges."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start, end = int(match[1]), min(int(match[2] or size - 1), size - 1)
        f = open(path, "rb")  # noqa: SIM115 (closed by copyfile's caller)
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._left = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:
        left = getattr(self, "_left", None)
        if left is None:
            return super().copyfile(source, outputfile)
        while left > 0 and (chunk := source.read(min(65536, left))):
            outputfile.write(chunk)
            left -= len(chunk)


@pytest.mark.timeout(180)
def test_the_shared_control_plays_pauses_and_seeks_every_video_in_chromium(studio):
    """The gallery's markup put into the page with innerHTML, as ipywidgets 8's HTML view
    does, in headless Chromium: its inline handlers play, pause and seek the four videos of
    its own container together, and leave a video outside it alone. Before that, nothing is
    played or fetched (preload none) and every video shows its poster. The guards of the
    gallery and of the History mark their containers and controls with
    data-lm-suppress-shortcuts the same way."""
    if not os.access(CHROMIUM, os.X_OK) or importlib.util.find_spec("playwright") is None:
        reason = f"needs Chromium at {CHROMIUM} and the playwright package"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(reason + " (CI is set)", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    root = studio["root"]
    gallery = Gallery(studio["exp"])
    assert gallery.wait_posters(timeout=60)
    parts = [gallery.guard.value, gallery.sync.value, *(w.value for w in gallery.grid.children),
             "<div class='wan-gallery-channel'><input></div>"]
    outside = studio["xss"].video
    history = History(studio["client"])
    # what JupyterLab's page publishes (display.RESOLVE_HOOK makes /files/ URLs from it);
    # this plain server serves the folder at / and, through a link, at /files/ as well
    config = json.dumps({"serverRoot": str(root), "baseUrl": "/"})
    if not (root / "files").exists():
        (root / "files").symlink_to(root, target_is_directory=True)
    page_html = (
        "<!doctype html><meta charset=utf-8>"
        f"<script id=jupyter-config-data type=application/json>{config}</script>"
        f"<div id=history class='{history._css}'>"
        f"<div>{history.guard.value}</div><input id=search></div><div id=outer></div>"
        f"<video id=outside muted preload=none src='{os.path.relpath(outside, root)}'></video>"
        "<script>const g=document.createElement('div');"
        f"g.className='wan-gallery {gallery._css}';"
        f"for(const part of {json.dumps(parts)}){{const d=document.createElement('div');"
        "d.innerHTML=part;g.appendChild(d);}document.getElementById('outer').appendChild(g);"
        "</script>")
    (root / "gallery.html").write_text(page_html, encoding="utf-8")
    handler = functools.partial(RangeHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state = ("() => Array.from(document.querySelectorAll('video')).map(v => "
             "({id: v.id, paused: v.paused, t: v.currentTime, ready: v.readyState, "
             "poster: v.getAttribute('poster'), preload: v.getAttribute('preload')}))")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu",
                                               "--autoplay-policy=no-user-gesture-required"])
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/gallery.html")
                videos = page.evaluate(state)
                inside = [v for v in videos if v["id"] != "outside"]
                assert len(inside) == 4
                assert all(v["preload"] == "none" and v["poster"] for v in inside)
                assert all(v["ready"] == 0 for v in inside)  # nothing fetched yet
                page.click("button.wan-playall")
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.wan-gallery video'))"
                    ".every(v => !v.paused && v.currentTime > 0.3)", timeout=60_000)
                assert page.evaluate(state)[-1]["paused"]  # the video outside: untouched
                assert page.inner_text("button.wan-playall") == "⏸ Pause all"
                page.click("button.wan-playall")
                assert all(v["paused"] for v in page.evaluate(state))
                page.fill("input.wan-seek", "2.5")
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.wan-gallery video'))"
                    ".every(v => Math.abs(v.currentTime - 2.5) < 0.05)", timeout=30_000)
                assert page.evaluate(state)[-1]["t"] == 0
                # the History's and the gallery's containers and controls are marked: keys
                # typed in them skip the notebook's shortcuts
                page.wait_for_function(
                    "() => ['#history', '#search', '.wan-gallery', 'button.wan-playall', "
                    "'input.wan-seek'].every(s => document.querySelector(s)"
                    ".hasAttribute('data-lm-suppress-shortcuts'))", timeout=10_000)
                # a rating button's handler writes the click into the channel (ipywidgets
                # syncs it on change); handed to the kernel's side, it lands in the store
                page.evaluate("() => { window.changes = 0; document.querySelector("
                              "'.wan-gallery-channel input').addEventListener('change', "
                              "() => { window.changes++; }); }")
                page.click(".wan-gallery button[data-wan-rate='4']")
                sent = json.loads(page.input_value(".wan-gallery-channel input"))
                assert page.evaluate("() => window.changes") == 1
                first = gallery.cells()[0][0]
                assert (sent["run_id"], sent["action"], sent["value"]) == (first, "rate", 4)
                gallery.channel.value = json.dumps(sent)
                assert studio["client"].store.get_run(first)["rating"] == 4
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        gallery.close()
        history.close()
