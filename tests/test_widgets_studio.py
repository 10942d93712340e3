"""The Studio, headless: Generate from the form reaches the tracker and the player at once and
SUCCEEDED later; Load fills the form; the gallery rates into the store; building it ten times
leaves no callback behind (real widgets, the real emulator)."""

from __future__ import annotations

import time

import ipywidgets as W

import wan_nb
from wan_nb.widgets import Studio
from wan_nb.widgets.studio import run_log_html


def wait_until(predicate, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_generate_shows_the_job_at_once_and_it_succeeds(make_client):
    client = make_client()
    studio = Studio(client)
    assert "offline emulator" in studio.banner.value or "emulator" in studio.banner.value
    form = studio.form
    form.prompt.value = "a lighthouse at dusk, slow pan"
    form.model.value = "wan2.7-t2v"
    form.resolution.value = "720P"
    form.ratio.value = "4:3"
    t0 = time.monotonic()
    form.generate.click()
    took = time.monotonic() - t0
    job = form.last_job
    assert job is not None and took < 5.0, took  # returns at once: nothing waits for the run
    assert studio.tracker.jobs[-1] is job and studio.player is not None
    assert studio.player.job is job
    job.result(timeout=120)
    row = next(r for r in studio.tracker._rows if r.job is job)
    wait_until(lambda: "SUCCEEDED" in row.status.value, "the tracker row to say SUCCEEDED")
    assert (job.request.resolution, job.request.ratio, job.request.size) == ("720P", "4:3",
                                                                             "1104*832")
    # a job submitted from code shows in the Studio's tracker too
    other = client.submit("from code", model="wan2.5-t2v-preview", size="832*480", seed=3)
    wait_until(lambda: other in studio.tracker.jobs, "the code's job in the tracker")
    other.result(timeout=120)
    studio.close()


def test_load_fills_the_form_and_the_gallery_rates_into_the_store(make_client):
    client = make_client()
    done = [client.submit("a red kite", model="wan2.5-t2v-preview", size="832*480", seed=s)
            for s in (11, 12)]
    for j in done:
        j.result(timeout=120)
    studio = Studio(client)
    studio.load(done[1])
    assert studio.form.prompt.value == "a red kite" and studio.form.seed.value == 12
    assert studio.form.request().size == "832*480"
    studio.tabs.selected_index = 1  # Gallery: built from the session's jobs when opened
    gallery = studio.gallery
    assert gallery is not None and {c.job.run_id for c in gallery.cards} >= {
        j.run_id for j in done}
    card = next(c for c in gallery.cards if c.job is done[0])
    gallery.rate(card.job.run_id, 4)  # what a click on its "4" does
    gallery.set_keep(card.job.run_id, True)
    assert card.rating == 4 and "aria-pressed='true'" in card.html
    df = client.to_dataframe()
    assert df.loc[done[0].run_id, "rating"] == 4 and bool(df.loc[done[0].run_id, "keep"])
    studio.tabs.selected_index = 3  # Run log: the newest rows, escaped
    assert "a red kite" in studio._log.value and "wan-run-log" in studio._log.value
    studio.tabs.selected_index = 2
    assert set(studio.history.shown) >= {j.run_id for j in done}
    studio.close()


def test_building_the_studio_ten_times_leaves_no_callbacks(make_client):
    client = make_client()
    running = client.submit("still running", model="wan2.5-t2v-preview", size="832*480",
                            seed=1)
    manager = client.manager
    added_before = len(manager._added)
    models_before = len(W.widget._instances)
    for _ in range(10):
        studio = Studio(client)
        studio.tabs.selected_index = 1
        studio.close()
    assert len(manager._added) == added_before
    assert len(W.widget._instances) == models_before  # every model it made is closed
    assert running._state.callbacks == []
    running.result(timeout=120)


def test_the_run_log_escapes_what_it_shows(make_client):
    client = make_client()
    job = client.submit("<img src=x onerror=alert(1)>", model="wan2.5-t2v-preview",
                        size="832*480", seed=1)
    job.result(timeout=120)
    text = run_log_html(client.to_dataframe())
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


def test_studio_is_public():
    assert wan_nb.Studio is Studio and "Studio" in wan_nb.__all__
