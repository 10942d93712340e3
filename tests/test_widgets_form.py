"""The generation form (issue 11 item 1), headless, against the real emulator: what each model
offers, what a model change keeps, refusals that send nothing, Generate returning at once,
load() -> request() round trips, the live service's confirmation, and no callbacks left over.
(The keyboard and Ctrl+Enter in a real JupyterLab are the browser test's.)"""

from __future__ import annotations

import datetime as dt
import json
import time
import wave
from typing import Any

import ipywidgets as W
import pytest
from ipywidgets.widgets import widget as widget_module

import wan_nb
from wan_nb import catalog
from wan_nb.errors import ValidationError

from .conftest import wav_bytes
from wan_nb.widgets import form_controls as fc
from wan_nb.widgets.form import GenerationForm

MODELS = catalog.model_names()
LABELS = {"prompt": "Prompt", "negative_prompt": "Negative prompt", "model": "Model",
          "resolution": "Resolution", "ratio": "Ratio", "duration": "Duration", "seed": "Seed",
          "prompt_extend": "Prompt rewrite", "watermark": "Watermark", "audio": "Audio",
          "multi_shot": "Multi-shot", "generate": "Generate", "roll_seed": "🎲",
          "reuse_seed": "♻️", "audio_url": "Audio URL", "audio_file": "Audio file"}


def shown(w: W.Widget) -> bool:
    return w.layout.display != "none"


def text(html: W.HTML) -> str:
    return html.value


def settle_until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def fill(form: GenerationForm, model: str, **values: Any) -> GenerationForm:
    """Set the controls as a user would: the model first, then the picture, then the rest."""
    form.model.value = model
    for name in ("resolution", "ratio", "duration"):
        if name in values:
            getattr(form, name).value = values.pop(name)
    for name, value in values.items():
        getattr(form, name).value = value
    return form


def sent(session: wan_nb.Client) -> tuple[int, int, int]:
    """What has reached the service or the ledger: emulator tasks, store rows, jobs."""
    return (len(session.emulator.engine.tasks), len(session.store.runs()), len(session.jobs))


@pytest.fixture
def session(make_client) -> wan_nb.Client:
    return make_client()


@pytest.fixture
def form(session) -> GenerationForm:
    f = GenerationForm(session)
    yield f
    f.close()


# -- what each control offers, per model -------------------------------------------------------
def test_every_control_carries_its_visible_label(form):
    for attr, label in LABELS.items():
        assert getattr(form, attr).description == label, attr
    assert form.model.options == MODELS  # every catalog model, both protocols
    assert {catalog.get_model(m).protocol for m in form.model.options} == {"size", "resolution"}


@pytest.mark.parametrize("model", MODELS)
def test_each_model_offers_only_what_it_takes(form, model):
    spec = catalog.get_model(model)
    form.model.value = model
    assert form.resolution.options == spec.resolutions
    assert form.resolution.value == spec.default_resolution  # 1080P is not kept on wan2.1-plus
    assert [v for _, v in form.duration.options] == list(spec.durations)
    assert [label for label, _ in form.duration.options][:1] == [f"{spec.durations[0]} s"]
    for res in spec.resolutions:  # Ratio follows Resolution, the pixel size beside them
        form.resolution.value = res
        assert form.ratio.options == spec.ratios_at(res)
        for ratio in spec.ratios_at(res):
            form.ratio.value = ratio
            w, h = catalog.pixels(model, res, ratio)
            assert f"{w} × {h} px" in text(form._html["pixels"])
    assert shown(form.resolution) and shown(form.ratio) and shown(form.duration)
    assert shown(form.negative_prompt) == spec.negative_prompt
    assert shown(form.prompt_extend) == spec.prompt_extend
    assert shown(form.multi_shot) == spec.multi_shot
    assert shown(form.audio) == (len(spec.audio_modes) > 1)
    assert [v for _, v in form.audio.options] == list(spec.audio_modes)
    assert form.watermark.value == spec.default_watermark  # untouched: the model's default
    form.audio.value = spec.default_audio
    assert not shown(form.audio_url) and not shown(form.audio_file)
    if spec.custom_audio:
        form.audio.value = "custom"
        assert shown(form.audio_url) and shown(form.audio_file)
        form.audio.value = spec.default_audio
    assert f"/ {spec.prompt_max} characters" in text(form._html["prompt_count"])
    request = fill(form, model, prompt="a kite").request()
    assert (request.model, request.resolution, request.ratio) == (
        spec.name, form.resolution.value, form.ratio.value)


def test_the_prompt_count_is_live_against_the_models_limit(form):
    form.model.value = "wan2.2-t2v-plus"  # 800 characters
    form.prompt.value = "x" * 800
    assert "800 / 800 characters" in text(form._html["prompt_count"])
    assert text(form._errors["prompt"]) == ""
    form.prompt.value = "x" * 801
    assert "801 / 800 characters" in text(form._html["prompt_count"])
    assert "1 too many" in text(form._html["prompt_count"])
    assert "801 characters" in text(form._errors["prompt"])  # said beside it while typing
    form.model.value = "wan2.5-t2v-preview"  # 1500: the same text fits
    assert "801 / 1500" in text(form._html["prompt_count"])
    assert text(form._errors["prompt"]) == ""
    form.model.value = "happyhorse-1.0-t2v"  # 2500 for a prompt with CJK text
    form.prompt.value = "纸船" * 1251
    assert "2502 / 2500 characters (the limit for Chinese" in text(form._html["prompt_count"])


def test_the_estimate_follows_the_controls(form, session):
    fill(form, "wan2.5-t2v-preview", resolution="720P", ratio="16:9", duration=5)
    probe = wan_nb.GenerationRequest("x", model="wan2.5-t2v-preview", resolution="720P",
                                     ratio="16:9", duration=5)
    band = session.expected_run_band(probe)
    line = text(form._html["estimate"])
    assert "USD 0.50" in line and "emulator is free" in line
    assert f"{band.p50:.0f} s–{band.p90:.0f} s" in line and "nothing learned yet" in line
    form.duration.value = 10
    assert "USD 1.00" in text(form._html["estimate"])
    form.model.value = "wan3.0-video-prime"
    form.resolution.value = "480P"
    assert "USD 0.68" in text(form._html["estimate"])  # 0.068 × 10 s


# -- a model change keeps what fits --------------------------------------------------------------
CHANGES = [
    # (from, settings, to, expected afterwards)
    ("wan2.5-t2v-preview", dict(resolution="720P", ratio="4:3", duration=10), "wan2.7-t2v",
     dict(resolution="720P", ratio="4:3", duration=10)),
    ("wan2.5-t2v-preview", dict(resolution="480P", ratio="1:1", duration=10), "wan2.7-t2v",
     dict(resolution="1080P", ratio="1:1", duration=10)),
    ("wan3.0-video", dict(resolution="480P", ratio="21:9", duration=30), "wan2.6-t2v",
     dict(resolution="1080P", ratio="16:9", duration=5)),
    ("wan2.6-t2v", dict(resolution="720P", ratio="9:16", duration=15), "wan2.5-t2v-preview",
     dict(resolution="720P", ratio="9:16", duration=5)),
    ("wan2.7-t2v", dict(resolution="720P", ratio="3:4", duration=3), "happyhorse-1.0-t2v",
     dict(resolution="720P", ratio="3:4", duration=3)),
    ("wan2.7-t2v", dict(resolution="720P", ratio="3:4", duration=2), "happyhorse-1.0-t2v",
     dict(resolution="720P", ratio="3:4", duration=5)),
    ("wan2.5-t2v-preview", dict(audio="silent"), "wan2.7-t2v", dict(audio="silent")),
    ("wan2.5-t2v-preview", dict(audio="custom"), "wan3.0-video", dict(audio="auto")),
    ("wan2.5-t2v-preview", dict(audio="auto"), "wan2.2-t2v-plus", dict(audio="silent")),
    ("wan2.2-t2v-plus", dict(), "wan2.6-t2v", dict(audio="auto")),
    ("wan2.5-t2v-preview", dict(), "happyhorse-1.0-t2v", dict(watermark=True)),
    ("happyhorse-1.0-t2v", dict(), "wan2.7-t2v", dict(watermark=False, prompt_extend=True)),
    ("wan2.5-t2v-preview", dict(watermark=True), "wan2.7-t2v", dict(watermark=True)),
    ("wan2.5-t2v-preview", dict(prompt_extend=False), "wan2.6-t2v", dict(prompt_extend=False)),
    ("wan2.6-t2v", dict(multi_shot=True), "wan2.5-t2v-preview", dict(multi_shot=True)),
]


@pytest.mark.parametrize(("old", "settings", "new", "expected"), CHANGES)
def test_a_model_change_keeps_what_still_fits(form, old, settings, new, expected):
    fill(form, old, prompt="a fox in the snow", negative_prompt="blur", seed=77, **settings)
    form.model.value = new
    for name, value in expected.items():
        assert getattr(form, name).value == value, name
    assert (form.prompt.value, form.seed.value) == ("a fox in the snow", 77)
    request = form.request()  # whatever was kept, the result is a valid request of the model
    assert request.model == new
    spec = catalog.get_model(new)
    assert request.negative_prompt == ("blur" if spec.negative_prompt else "")
    assert form.negative_prompt.value == "blur"  # kept (hidden) for a model that takes it


def test_resolution_reshapes_ratio_and_a_hidden_negative_prompt_comes_back(form):
    fill(form, "wan2.5-t2v-preview", resolution="720P", ratio="4:3")
    form.resolution.value = "480P"  # no 4:3 at 480P
    assert form.ratio.options == ("16:9", "9:16", "1:1") and form.ratio.value == "16:9"
    form.negative_prompt.value = "text, watermark"
    form.model.value = "happyhorse-1.0-t2v"
    assert not shown(form.negative_prompt) and "no negative prompt" in text(
        form._html["model_note"])
    form.model.value = "wan2.7-t2v"
    assert shown(form.negative_prompt) and form.negative_prompt.value == "text, watermark"


# -- invalid combinations: refused beside the control, nothing sent -----------------------------
def _short_wav(path, seconds: float) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return str(path)


INVALID = [
    # (model, settings, the control showing the reason, words of the reason)
    ("wan2.5-t2v-preview", dict(prompt=""), "prompt", "non-empty"),
    ("wan2.5-t2v-preview", dict(prompt="   "), "prompt", "non-empty"),
    ("wan2.2-t2v-plus", dict(prompt="x" * 801), "prompt", "at most 800"),
    ("happyhorse-1.0-t2v", dict(prompt="纸" * 2501), "prompt", "at most 2500"),
    ("wan2.5-t2v-preview", dict(prompt="a kite", negative_prompt="n" * 501), "negative_prompt",
     "at most 500"),
    ("wan2.6-t2v", dict(prompt="a kite", multi_shot=True, prompt_extend=False), "multi_shot",
     "prompt_extend=True"),
    ("wan2.5-t2v-preview", dict(prompt="a kite", audio="custom"), "audio", "needs audio_url"),
    ("wan2.7-t2v", dict(prompt="a kite", audio="custom", audio_url="ftp://host/a.mp3"), "audio",
     "http(s) URL"),
    ("wan2.5-t2v-preview", dict(prompt="a kite", audio="custom", audio_url="/nowhere/a.wav"),
     "audio", "nor an existing local file"),
    ("wan2.5-t2v-preview", dict(prompt="a kite", audio="custom", audio_url="SHORT"), "audio",
     "the service takes 3 to 30 s"),
    ("wan2.5-t2v-preview", dict(prompt="a kite", audio="custom", audio_url="<b>x</b>.ogg"),
     "audio", "&lt;b&gt;x&lt;/b&gt;.ogg"),
]


@pytest.mark.parametrize(("model", "settings", "control", "words"), INVALID)
def test_an_invalid_combination_is_refused_and_nothing_is_sent(session, tmp_path, model,
                                                               settings, control, words):
    if settings.get("audio_url") == "SHORT":
        settings["audio_url"] = _short_wav(tmp_path / "short.wav", 1.0)
    submitted: list[Any] = []
    form = GenerationForm(session, on_submit=submitted.append)
    try:
        fill(form, model, **settings)
        before = sent(session)
        assert form.generate_now() is None
        form.generate.click()  # the button: no exception reaches the cell either
        reason = text(form._errors[control])
        assert words in reason and "⚠" in reason, reason
        assert "<b>" not in reason  # user text is escaped
        assert "Not sent" in text(form._html["status"])
        assert submitted == [] and form.last_job is None
        with pytest.raises(ValidationError):
            form.request()
        time.sleep(0.3)  # a create would leave within this time
        assert sent(session) == before
    finally:
        form.close()


def test_a_fixed_problem_clears_and_then_sends(form, session):
    fill(form, "wan2.6-t2v", prompt="a kite", multi_shot=True, prompt_extend=False)
    assert form.generate_now() is None
    assert "prompt_extend" in text(form._errors["multi_shot"])
    form.prompt_extend.value = True
    assert text(form._errors["multi_shot"]) == ""
    job = form.generate_now()
    assert job is not None and job.request.shot_type == "multi"


# -- Generate ------------------------------------------------------------------------------------
def test_generate_returns_at_once_and_the_job_succeeds(session):
    submitted: list[Any] = []
    form = GenerationForm(session, on_submit=submitted.append)
    try:
        fill(form, "wan2.7-t2v", prompt="a paper boat at dawn", resolution="720P", duration=2)
        seed = form.seed.value
        t0 = time.perf_counter()
        job = form.generate_now()
        took = time.perf_counter() - t0
        assert took < 1.0, took  # session.submit does not wait for the service
        assert submitted == [job] and form.last_job is job
        assert (job.request.seed, job.request.prompt) == (seed, "a paper boat at dawn")
        assert form.roll_seed.value and form.seed.value != seed  # 🎲: the next run's seed, shown
        assert job.run_id in text(form._html["status"])
        assert job.result(timeout=120).status == "SUCCEEDED"
        form.reuse_seed.click()  # ♻️: the last run's seed, kept (🎲 off)
        assert form.seed.value == seed and not form.roll_seed.value
        second = form.generate_now()
        assert second.request.seed == seed and form.seed.value == seed
        form.generate.click()  # the button does the same
        assert len(submitted) == 3 and submitted[-1].request.seed == seed
        settle_until(lambda: len(session.emulator.engine.tasks) == 3)
    finally:
        form.close()


def test_the_browser_channel_carries_the_prompt_and_clicks_generate(form):
    """What the page's hook sends on Ctrl+Enter or a click on Generate: one state update of
    the hidden channel with the prompts' current text (see the module docstring)."""
    clicks: list[Any] = []
    form.generate.on_click(clicks.append)  # another handler on Generate runs too
    form.prompt.value = "a paper bo"  # the kernel saw only part of what was typed
    form._channel.value = json.dumps({"n": 1, "source": "ctrl-enter", "texts": {
        "prompt": "a paper boat at dawn", "negative_prompt": "blurry"}})
    assert form.last_job is not None and clicks == [form.generate]
    assert (form.last_job.request.prompt, form.last_job.request.negative_prompt) == (
        "a paper boat at dawn", "blurry")
    form._channel.value = "not json"  # ignored, nothing sent
    assert len(clicks) == 1
    assert fc.FORM_CLASS in form._dom_classes and fc.PROMPT_CLASS in form.prompt._dom_classes
    assert fc.GENERATE_CLASS in form.generate._dom_classes
    assert "data-lm-suppress-shortcuts" in form._hook.value and "onerror=" in form._hook.value


def test_the_shortcut_guard_is_reusable_for_other_containers():
    guard = fc.guard_html("wan-nb-studio")
    assert "closest(&#x27;.wan-nb-studio&#x27;)" in guard and "data-lm-suppress-shortcuts" in guard
    assert "wan-nb-submit-channel" not in guard  # the form's Ctrl+Enter is the form's only
    assert "wan-nb-submit-channel" in fc.hook_html()
    for bad in ("a b", "x');alert(1);('", "", "1abc"):
        with pytest.raises(ValidationError, match="not a CSS class"):
            fc.guard_html(bad)


def test_a_failing_on_submit_still_sends_and_says_so(session):
    def boom(job):
        raise RuntimeError("tracker broke")

    form = GenerationForm(session, on_submit=boom)
    try:
        form.prompt.value = "a kite"
        form.generate.click()
        assert form.last_job is not None
        assert "on_submit failed: tracker broke" in text(form._html["status"])
    finally:
        form.close()


def test_an_uploaded_audio_file_is_saved_in_the_store_and_sent(form, session):
    data = wav_bytes()
    fill(form, "wan2.5-t2v-preview", prompt="a choir", audio="custom")
    form.audio_file.value = ({"name": "my voice.wav", "type": "audio/wav", "size": len(data),
                              "content": memoryview(data),
                              "last_modified": dt.datetime.now(dt.timezone.utc)},)
    path = form.audio_url.value
    assert path.startswith(str(session.store.root / "uploads")) and path.endswith("voice.wav")
    assert text(form._errors["audio"]) == ""
    job = form.generate_now()
    assert job.request.audio == "custom" and job.request.audio_url == path
    form.audio_file.value = ({"name": "notes.txt", "type": "text/plain", "size": 3,
                              "content": memoryview(b"abc"), "last_modified":
                              dt.datetime.now(dt.timezone.utc)},)
    assert "not .wav or .mp3" in text(form._html["audio_note"])
    assert form.audio_url.value == path  # the good file stays


# -- load() -> request() --------------------------------------------------------------------------
RUNS = [
    ("wan2.5-t2v-preview", dict(resolution="720P", ratio="4:3", duration=10,
                                negative_prompt="blurry", prompt_extend=False, watermark=True,
                                audio="silent")),
    ("wan2.6-t2v", dict(resolution="720P", ratio="9:16", duration=12, multi_shot=True)),
    ("wan2.7-t2v", dict(resolution="720P", ratio="3:4", duration=2, audio="silent")),
    ("happyhorse-1.0-t2v", dict(resolution="1080P", ratio="1:1", duration=3, watermark=False,
                                prompt="一只纸船在晨雾中漂流")),
    ("wan3.0-video", dict(resolution="480P", ratio="21:9", duration=30)),
    ("wan2.2-t2v-plus", dict(resolution="480P", ratio="9:16")),
    ("wan2.1-t2v-turbo", dict(resolution="480P", ratio="1:1", negative_prompt="text")),
    ("wan2.5-t2v-preview", dict(audio="custom", audio_url="WAV")),
]


@pytest.mark.parametrize(("model", "settings"), RUNS)
def test_load_fills_every_control_from_a_past_run(session, wav_file, model, settings):
    if settings.get("audio_url") == "WAV":
        settings = {**settings, "audio_url": str(wav_file)}
    settings = {"prompt": "a lighthouse at night", **settings}
    first = GenerationForm(session)
    fresh = GenerationForm(session)
    try:
        job = fill(first, model, seed=4242, **settings).generate_now()
        assert job is not None
        row = session.store.get_run(job.run_id)
        frame_row = session.to_dataframe().loc[job.run_id]
        columns_only = {k: v for k, v in row.items() if k != "request_json"}
        for run in (job, row, frame_row, columns_only, job.request):
            fresh.model.value = "wan2.1-t2v-plus"  # start from somewhere else
            fresh.roll_seed.value = True
            fresh.load(run)
            again = fresh.request()
            assert again == job.request, type(run)
            assert again.fingerprint == job.request.fingerprint
            assert not fresh.roll_seed.value and fresh.seed.value == 4242
        assert fresh.generate_now().request.fingerprint == job.request.fingerprint
    finally:
        first.close()
        fresh.close()


def test_load_refuses_what_is_not_a_run(form):
    with pytest.raises(ValidationError, match="cannot load"):
        form.load(42)
    with pytest.raises(ValidationError, match="unknown"):
        form.load({"prompt": "x", "model": "wan9"})


# -- the live service asks before a paid run ------------------------------------------------------
@pytest.fixture
def live(make_emulator, tmp_path) -> wan_nb.Client:
    """A session named like the live service, talking to the emulator."""
    emu = make_emulator()
    c = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="live:singapore",
                      store=tmp_path / "live-store")
    c.emulator = emu
    yield c
    c.close()


def test_the_live_service_asks_before_a_paid_run_above_the_threshold(live):
    submitted: list[Any] = []
    form = GenerationForm(live, on_submit=submitted.append)
    try:
        assert form.live and shown(form.confirm_threshold) and form.confirm_above_usd == 1.0
        fill(form, "wan2.5-t2v-preview", prompt="a kite", resolution="1080P", duration=10)
        assert "USD 1.50 (estimate)" in text(form._html["estimate"])
        assert "Generate asks first" in text(form._html["estimate"])
        before = sent(live)
        assert form.generate_now() is None
        assert shown(form._rows["confirm"]) and "USD 1.50" in text(form._html["confirm_text"])
        time.sleep(0.3)
        assert sent(live) == before and submitted == []
        form.cancel_confirm.click()  # Cancel: still nothing
        assert not shown(form._rows["confirm"]) and sent(live) == before
        assert form.generate_now() is None
        form.prompt.value = "a red kite"  # a change voids the question: Confirm sends nothing
        assert not shown(form._rows["confirm"])
        form.confirm.click()
        assert sent(live) == before
        assert form.generate_now() is None
        form.confirm.click()  # the confirming click sends exactly what was asked about
        assert len(submitted) == 1 and submitted[0].request.prompt == "a red kite"
        settle_until(lambda: len(live.emulator.engine.tasks) == before[0] + 1)
        form.duration.value = 5  # USD 0.75: under the threshold, sent at once
        assert form.generate_now() is not None and len(submitted) == 2
        form.confirm_above_usd = 0.5  # the user's own threshold
        assert form.generate_now() is None and len(submitted) == 2
        form.confirm.click()
        assert len(submitted) == 3
    finally:
        form.close()


def test_a_model_the_region_does_not_offer_is_refused_beside_the_model(make_emulator,
                                                                       tmp_path):
    emu = make_emulator()
    virginia = wan_nb.Client(emu.api_key, base_url=emu.base_url, backend="live:virginia",
                             region="virginia", store=tmp_path / "virginia")
    virginia.emulator = emu
    form = GenerationForm(virginia)
    try:
        fill(form, "wan2.7-t2v", prompt="a kite", resolution="720P", duration=2)
        assert "offered in singapore, beijing, not virginia" in text(form._errors["model"])
        before = sent(virginia)
        assert form.generate_now() is None and "virginia offers" in text(form._errors["model"])
        time.sleep(0.3)
        assert sent(virginia) == before
        form.model.value = "wan2.6-t2v-us"
        assert text(form._errors["model"]) == ""
    finally:
        form.close()
        virginia.close()


def test_a_closed_session_is_said_not_raised(session):
    form = GenerationForm(session)
    try:
        form.prompt.value = "a kite"
        session.close()
        form.generate.click()
        assert form.generate_now() is None and "closed" in text(form._html["status"])
    finally:
        form.close()


def test_the_emulator_never_asks(form, session):
    assert not form.live and not shown(form.confirm_threshold)
    fill(form, "wan3.0-video-prime", prompt="a kite", resolution="1080P", duration=30)
    assert form.generate_now() is not None  # USD 8.40 on the live service; free here
    assert not shown(form._rows["confirm"])


# -- no callbacks or widgets left behind ----------------------------------------------------------
def test_building_the_form_many_times_leaves_nothing_behind(session):
    job = session.submit("a kite", model="wan2.2-t2v-plus", resolution="480P")
    manager = session.manager
    callbacks = (list(session._added), list(manager._added), list(job._state.callbacks))
    widgets_before = len(widget_module._instances)
    for _ in range(10):
        form = GenerationForm(session, on_submit=lambda j: None)
        form.prompt.value = "a kite"
        form.load(job)
        form.reuse_seed.click()
        form.close()
    assert (list(session._added), list(manager._added), list(job._state.callbacks)) == callbacks
    assert len(widget_module._instances) == widgets_before  # every widget closed, layouts too
    assert job.result(timeout=120).status == "SUCCEEDED"
