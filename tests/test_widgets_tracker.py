"""The tracker, headless: rows, the time-left band, cancel/retry/load, following a session, and
releasing every callback it held (widgets are real ipywidgets; jobs run on the real emulator)."""

from __future__ import annotations

import datetime as dt
import time

import ipywidgets as W
import pytest

from wan_nb.widgets.tracker import Tracker, notice, time_text

SMALL = dict(model="wan2.5-t2v-preview", size="832*480", duration=5)


def wait_until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def visible(button: W.Button) -> bool:
    return button.layout.display != "none"


def test_rows_describe_each_job_and_reach_succeeded(make_client):
    client = make_client()
    jobs = [client.submit("a paper boat", seed=1, **SMALL),
            client.submit("a kite", model="wan2.7-t2v", resolution="720P", ratio="4:3", seed=2)]
    tracker = Tracker(jobs)
    rows = tracker._rows
    assert "wan2.5-t2v-preview · 480P · 16:9 (832×480) · 5 s · seed 1" in rows[0].title.value
    assert "wan2.7-t2v · 720P · 4:3 (1104×832) · 5 s · seed 2" in rows[1].title.value
    for job in jobs:
        job.result(timeout=120)
    wait_until(lambda: "2 of 2 done" in tracker.header.value, "the header to count 2 done")
    for row in rows:
        assert "SUCCEEDED" in row.status.value
        assert row.time.value.count("took") == 1
        assert not visible(row.cancel) and not visible(row.retry)
        assert "<video" in row.player.value
    tracker.close()


def test_the_time_left_is_a_p50_p90_band_that_never_sticks(make_client):
    client = make_client(speed="4")  # 4× the fast timings: RUNNING for ~10 s
    for seed in range(2):  # teach the run time
        client.submit("teacher", seed=seed, model="wan2.5-t2v-preview", size="832*480",
                      duration=5)
    client.jobs.wait(timeout=240, progress=False)
    job = client.submit("a slow lighthouse", seed=9, **SMALL)
    wait_until(lambda: job.status == "RUNNING", "RUNNING", timeout=120)
    lo, hi = job.time_left()
    assert 0 <= lo <= hi
    text = time_text(job)
    assert "left" in text and "–" in text, text
    job.cancel() if job.status == "PENDING" else None
    job.result(timeout=240)
    assert time_text(job).startswith("took ")


def test_a_failed_job_shows_the_services_code_and_can_be_retried(make_client):
    client = make_client()
    loaded = []
    bad = client.submit("a boat __fail_output__", seed=5, **SMALL)
    tracker = Tracker([bad], on_load=loaded.append)
    bad.result(timeout=120, raise_on_error=False)
    row = tracker._rows[0]
    # the loop thread sets the row's widgets one after the other: wait for the last of them
    wait_until(lambda: "FAILED" in row.status.value and visible(row.retry)
               and not visible(row.cancel), "FAILED shown with Retry and no Cancel")
    assert "DataInspectionFailed" in row.message.value and visible(row.load)
    row.load.click()
    assert loaded == [bad]
    row.retry.click()  # the same request, a new run, tagged; it shows as a second row
    assert len(tracker._rows) == 2
    again = tracker._rows[1].job
    assert again.run_id != bad.run_id and again.request.seed == 5
    assert f"rerun-of:{bad.run_id}" in again.tags
    tracker.close()


def test_cancel_while_it_can_be_cancelled(make_client):
    client = make_client(speed="4")
    jobs = [client.submit(f"queue filler {i}", seed=i, **SMALL) for i in range(8)]
    tracker = Tracker(jobs)
    row = tracker._rows[-1]  # the last of 8 waits in this kernel's queue (5 at once)
    wait_until(lambda: visible(row.cancel), "Cancel shown while it can be cancelled")
    row.cancel.click()
    wait_until(lambda: row.job.status == "CANCELED", "CANCELED")
    wait_until(lambda: "CANCELED" in row.status.value and not visible(row.cancel),
               "the row to show CANCELED")
    client.jobs.cancel()
    tracker.close()


def test_a_video_not_downloaded_yet_shows_its_expiry():
    class Pending:  # the view is a function of a job's fields: any object with them will do
        error = None
        reconciling = False
        status = "SUCCEEDED"
        video = None
        record = {"video_url_expires_at": dt.datetime(2026, 1, 2, 3, 4,
                                                      tzinfo=dt.timezone.utc)}

    now = dt.datetime(2026, 1, 1, 5, 4, tzinfo=dt.timezone.utc)
    text = notice(Pending(), now)
    assert "03:04 UTC" in text and "in 22.0 h" in text
    assert "expired" in notice(Pending(), now + dt.timedelta(days=2))


def test_following_a_session_adds_new_jobs_on_top_and_close_releases_everything(make_client):
    client = make_client()
    manager = client.manager
    before = len(manager._added)
    trackers = [Tracker(session=client) for _ in range(10)]
    first = client.submit("first", seed=1, **SMALL)
    second = client.submit("second", seed=2, **SMALL)
    wait_until(lambda: all(len(t._rows) == 2 for t in trackers), "both jobs in every tracker")
    t = trackers[-1]
    assert [r.job.run_id for r in t._rows] == [first.run_id, second.run_id]
    assert t.children[1] is t._rows[1].box  # newest first
    assert len(first._state.callbacks) == 10
    for tr in trackers:
        tr.close()
    assert first._state.callbacks == [] and second._state.callbacks == []
    assert len(manager._added) == before
    third = client.submit("third", seed=3, **SMALL)
    time.sleep(0.3)
    assert all(len(tr._rows) == 2 for tr in trackers)  # closed: nothing more is added
    assert third._state.callbacks == []
    client.jobs.wait(timeout=120, progress=False)


@pytest.mark.parametrize("prompt", ["<img src=x onerror=alert(1)>", "a & b <script>"])
def test_user_text_is_escaped(make_client, prompt):
    client = make_client()
    job = client.submit(prompt, seed=1, **SMALL)
    tracker = Tracker([job])
    assert "<img src=x" not in tracker._rows[0].title.value
    assert "&lt;" in tracker._rows[0].title.value
    job.result(timeout=120)
    tracker.close()


def test_a_job_added_from_two_threads_at_once_shows_once(make_client):
    import threading

    client = make_client()
    for _ in range(20):
        tracker = Tracker()
        job = client.submit("twice", seed=1, **SMALL)
        go = threading.Barrier(2)

        def add(job=job, tracker=tracker, go=go):
            go.wait()
            tracker.add(job)

        threads = [threading.Thread(target=add) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(tracker._rows) == 1 and len(tracker.children) == 2
        tracker.close()
    client.jobs.cancel()
