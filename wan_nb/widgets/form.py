"""The generation form: every parameter of a text-to-video run as labelled controls, shaped by
the model picked, with a live estimate, and a Generate button that returns at once.

>>> form = GenerationForm(wan_nb.connect(), on_submit=print)        # doctest: +SKIP
>>> form.prompt.value = "a paper boat drifting on a pond at dawn"    # doctest: +SKIP
>>> form.model.value = "wan2.7-t2v"                                   # doctest: +SKIP
>>> job = form.generate_now()             # what clicking Generate does  # doctest: +SKIP

Every control's ``description`` is its visible label (tests and screen readers find it by that):
``prompt`` (Prompt), ``negative_prompt`` (Negative prompt), ``model`` (Model, every model of the
catalog, both protocols), ``resolution`` (Resolution), ``ratio`` (Ratio), ``duration``
(Duration), ``seed`` (Seed) with ``roll_seed`` (🎲: a new seed after each Generate) and
``reuse_seed`` (♻️: the last run's seed), ``prompt_extend`` (Prompt rewrite), ``watermark``
(Watermark), ``audio`` (Audio: auto / custom / silent) with ``audio_url`` (Audio URL) and
``audio_file`` (Audio file, an upload) for custom audio, ``multi_shot`` (Multi-shot),
``generate`` (Generate); on the live service ``confirm_threshold`` (Confirm above USD) and,
when a run costs more, ``confirm`` (Confirm) and ``cancel_confirm`` (Cancel).

A control the model does not take is hidden (``layout.display == "none"``): negative prompt
(HappyHorse), prompt rewrite (HappyHorse), audio (the silent models), multi-shot (wan2.6 only).
Changing the model keeps every value that still fits and takes the new model's default for the
others (the rewrite, watermark and audio choices follow the new model's defaults unless you
changed them). The seed is always concrete: with 🎲 on, a new one is rolled after each Generate,
so the seed shown is the one the next run uses.

An invalid combination is not sent: ``generate_now()`` returns None, every problem shows beside
its control, and nothing reaches the service; no exception reaches the cell. On the live
service (``session.backend`` ``live:…``), a run estimated above ``confirm_above_usd`` (or with
no known price) waits for a click on Confirm; never on the emulator.

**Keyboard, as found in JupyterLab 4.6 / ipywidgets 8.1 (the installed bundles).** JupyterLab
listens for keydown on the document in the bubbling phase (``bubblingKeydown: true``); lumino's
key matcher walks from the event's target up and stops at an element carrying
``data-lm-suppress-shortcuts``, testing the target itself first; the notebook's single-letter
shortcuts need ``.jp-Notebook.jp-mod-commandMode:not(.jp-mod-readWrite) :focus``, and the
notebook sets ``jp-mod-readWrite`` while a ``:read-write`` element (a text field) has focus;
ipywidgets' Text and Textarea views stop the propagation of keydown. So typing in the prompt is
safe three times over, but a focused dropdown, checkbox or button of the form (not read-write,
no stopPropagation) would still let A, B, X, D D reach the notebook. ipywidgets cannot set DOM
attributes from Python; the form carries an HTML widget whose inline ``onerror`` handler (the
HTML view sets ``innerHTML`` unsanitized, so inline handlers run where ``<script>`` would not)
sets ``data-lm-suppress-shortcuts`` on the form's container and on every focusable element in
it (a MutationObserver marks later ones), and marks the container ``data-wan-nb-hooked="1"``.

**Ctrl+Enter** (Cmd+Enter) in the prompt or the negative prompt generates: the same hook listens
for keydown on the container in the capture phase (before the textarea's own handler stops it)
and sends one state update of a hidden text field (class ``wan-nb-submit-channel``) carrying the
prompts' current text; the kernel sets the texts and clicks Generate. A mouse click on Generate
takes the same path, because a Button click is a custom message sent at once while a text's
updates wait behind an unanswered one, so the click could otherwise overtake the last typed
characters. Where the hook cannot run, Generate works as a plain button. In a browser: the
container is ``.wan-nb-form[data-wan-nb-hooked]``, the prompt ``.wan-nb-prompt textarea``, the
button ``.wan-nb-generate``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import ipywidgets as W

from .. import catalog
from ..catalog import ModelSpec
from ..errors import ValidationError, WanError
from ..request import GenerationRequest
from ..schedule import RunBand
from . import form_controls as fc

log = logging.getLogger("wan_nb.widgets.form")

_LABEL = {"description_width": "9.5em"}
_INDENT = "0 0 0 10em"  # under a labelled control, beside its label


def _show(widget: W.Widget, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


class GenerationForm(W.VBox):
    """``GenerationForm(session, *, on_submit=None, confirm_above_usd=1.0)``: the controls of
    one run (see the module's docstring); ``request()`` is the run they describe,
    ``load(run)`` fills them from a past run, ``generate_now()`` (what Generate does) submits
    it and returns the :class:`~wan_nb.jobs.Job` (or None when nothing was sent), calling
    ``on_submit(job)``; ``last_job`` is the last run this form sent."""

    def __init__(self, session: Any, *, on_submit: Callable[[Any], Any] | None = None,
                 confirm_above_usd: float = 1.0, **kwargs: Any) -> None:
        self.session = session
        self.on_submit = on_submit
        self.last_job: Any = None
        self.live = str(session.backend).startswith("live")
        self._pending: GenerationRequest | None = None
        self._quiet = 0
        self._attempted = False
        self._spec = catalog.get_model(catalog.DEFAULT_MODEL)
        self._checker = fc.Checker()
        #: the session's region (None: not known), whose models the form checks before sending
        self.region: str | None = getattr(getattr(getattr(session, "aio", None), "config", None),
                                          "region", None)
        self._build(confirm_above_usd)
        super().__init__(self._layout(), **kwargs)
        self.add_class(fc.FORM_CLASS)
        self._wire()
        self._reshape(self._spec, self._spec)
        self._refresh()

    # -- building ----------------------------------------------------------------------------
    def _build(self, threshold: float) -> None:
        spec = self._spec
        self.prompt = W.Textarea(description="Prompt", rows=4, continuous_update=True,
                                 placeholder="Describe the video (Ctrl+Enter generates)",
                                 layout=W.Layout(width="100%"), style=_LABEL)
        self.negative_prompt = W.Textarea(description="Negative prompt", rows=2,
                                          continuous_update=True,
                                          placeholder="What the video should not show",
                                          layout=W.Layout(width="100%"), style=_LABEL)
        self.model = W.Dropdown(description="Model", options=catalog.model_names(),
                                value=spec.name, style=_LABEL)
        self.resolution = W.Dropdown(description="Resolution", options=spec.resolutions,
                                     value=spec.default_resolution, style=_LABEL)
        self.ratio = W.Dropdown(description="Ratio", options=spec.ratios_at(
            spec.default_resolution), value=spec.default_ratio,
            style={"description_width": "initial"}, layout=W.Layout(width="12em"))
        self.duration = W.Dropdown(description="Duration", options=fc.duration_options(spec),
                                   value=spec.default_duration, style=_LABEL)
        self.seed = W.BoundedIntText(description="Seed", value=fc.new_seed(),
                                     min=catalog.SEED_MIN, max=catalog.SEED_MAX, style=_LABEL)
        self.roll_seed = W.ToggleButton(description="🎲", value=True,
                                        tooltip="Roll a new seed after each Generate",
                                        layout=W.Layout(width="3.2em"))
        self.reuse_seed = W.Button(description="♻️", tooltip="Reuse the last run's seed",
                                   layout=W.Layout(width="3.2em"))
        self.prompt_extend = W.Checkbox(description="Prompt rewrite", value=spec.prompt_extend,
                                        indent=False, layout=W.Layout(width="auto"))
        self.watermark = W.Checkbox(description="Watermark", value=spec.default_watermark,
                                    indent=False, layout=W.Layout(width="auto"))
        self.multi_shot = W.Checkbox(description="Multi-shot", value=False, indent=False,
                                     layout=W.Layout(width="auto"))
        self.audio = W.Dropdown(description="Audio", options=fc.audio_options(spec),
                                value=spec.default_audio, style=_LABEL,
                                tooltip="auto: the model's own sound; custom: your WAV/MP3 "
                                        "file or URL; silent: no sound")
        self.audio_url = W.Text(description="Audio URL", continuous_update=False,
                                placeholder="https://…, oss://… or a local .wav/.mp3 path",
                                layout=W.Layout(width="100%"), style=_LABEL)
        self.audio_file = W.FileUpload(description="Audio file", accept=".wav,.mp3",
                                       multiple=False)
        self.generate = W.Button(description="Generate", button_style="primary",
                                 tooltip="Send this run (Ctrl+Enter in the prompt)")
        self.confirm_threshold = W.BoundedFloatText(
            description="Confirm above USD", value=float(threshold), min=0.0, max=1e6,
            step=0.5, style={"description_width": "initial"}, layout=W.Layout(width="14em"))
        self.confirm = W.Button(description="Confirm", button_style="warning",
                                tooltip="Send this paid run")
        self.cancel_confirm = W.Button(description="Cancel", tooltip="Do not send it")
        self._html = {name: W.HTML() for name in (
            "prompt_count", "negative_count", "model_note", "pixels", "estimate", "status",
            "confirm_text", "audio_note")}
        self._errors = {name: W.HTML() for name in set(fc.FIELD_CONTROL.values())}
        self._hook = W.HTML(fc.hook_html(), layout=W.Layout(width="0px", height="0px",
                                                            overflow="hidden", margin="0"))
        self._channel = W.Text(layout=W.Layout(display="none"))
        self._channel.add_class(fc.CHANNEL_CLASS)
        self.prompt.add_class(fc.PROMPT_CLASS)
        self.negative_prompt.add_class(fc.NEGATIVE_CLASS)
        self.generate.add_class(fc.GENERATE_CLASS)

    def _layout(self) -> list[W.Widget]:
        h, e = self._html, self._errors

        def line(*children: W.Widget) -> W.HBox:
            return W.HBox(list(children), layout=W.Layout(align_items="center",
                                                          flex_flow="row wrap", width="100%"))

        def under(*children: W.Widget) -> W.HBox:
            return W.HBox(list(children), layout=W.Layout(margin=_INDENT))
        self._rows = {
            "prompt": W.VBox([self.prompt, under(h["prompt_count"]),
                              under(e["prompt"])]),
            "negative_prompt": W.VBox([self.negative_prompt,
                                       under(h["negative_count"]),
                                       under(e["negative_prompt"])]),
            "model": W.VBox([line(self.model, e["model"]), under(h["model_note"])]),
            "picture": line(self.resolution, self.ratio, h["pixels"], e["resolution"],
                            e["ratio"]),
            "duration": line(self.duration, e["duration"]),
            "seed": line(self.seed, self.roll_seed, self.reuse_seed, e["seed"]),
            "flags": line(W.HTML(layout=W.Layout(width="10em")), self.prompt_extend,
                          self.watermark, self.multi_shot, e["prompt_extend"], e["watermark"],
                          e["multi_shot"]),
            "audio": W.VBox([line(self.audio, e["audio"]),
                             line(self.audio_url),
                             under(self.audio_file, h["audio_note"])]),
            "estimate": under(h["estimate"]),
            "actions": line(W.HTML(layout=W.Layout(width="10em")), self.generate,
                            self.confirm_threshold, h["status"]),
            "confirm": W.HBox([h["confirm_text"], self.confirm, self.cancel_confirm],
                              layout=W.Layout(margin=_INDENT, align_items="center",
                                              flex_flow="row wrap")),
        }
        self._audio_custom = [self._rows["audio"].children[1], self._rows["audio"].children[2]]
        _show(self.confirm_threshold, self.live)
        _show(self._rows["confirm"], False)
        return [self._hook, *self._rows.values(), self._channel]

    def _wire(self) -> None:
        self.model.observe(self._on_model, "value")
        self.resolution.observe(self._on_resolution, "value")
        for w in (self.prompt, self.negative_prompt, self.ratio, self.duration, self.seed,
                  self.prompt_extend, self.watermark, self.multi_shot, self.audio,
                  self.audio_url, self.confirm_threshold):
            w.observe(self._on_change, "value")
        self.audio_file.observe(self._on_upload, "value")
        self._channel.observe(self._on_channel, "value")
        self.generate.on_click(self._on_generate)
        self.reuse_seed.on_click(self._on_reuse_seed)
        self.confirm.on_click(self._on_confirm)
        self.cancel_confirm.on_click(lambda _b: self._cancel_pending("Not sent."))

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """Set several controls without each change re-validating the form."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    # -- the model shapes the controls -------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        """The catalog row of the model picked."""
        return self._spec

    def _reshape(self, old: ModelSpec, new: ModelSpec) -> None:
        """Offer what ``new`` takes; keep what still fits, else take ``new``'s default."""
        self._spec = new
        with self._hold():
            res = self.resolution.value
            self.resolution.options = new.resolutions
            self.resolution.value = res if res in new.resolutions else new.default_resolution
            self._reshape_ratio(new)
            dur = self.duration.value
            self.duration.options = fc.duration_options(new)
            self.duration.value = dur if dur in new.durations else new.default_duration
            for box, before, after in ((self.prompt_extend, old.prompt_extend, new.prompt_extend),
                                       (self.watermark, old.default_watermark,
                                        new.default_watermark)):
                if box.value == before:  # untouched: follow the new model's default
                    box.value = after
            mode = self.audio.value
            if old.default_audio == mode and old is not new:
                mode = new.default_audio
            self.audio.options = fc.audio_options(new)
            self.audio.value = mode if mode in new.audio_modes else new.default_audio
        _show(self._rows["negative_prompt"], new.negative_prompt)
        _show(self.negative_prompt, new.negative_prompt)
        _show(self.prompt_extend, new.prompt_extend)
        _show(self.multi_shot, new.multi_shot)
        _show(self.audio, len(new.audio_modes) > 1)
        _show(self._rows["audio"], len(new.audio_modes) > 1)
        self._html["model_note"].value = fc.note_html(fc.model_note(new))
        self._show_custom_audio()

    def _reshape_ratio(self, spec: ModelSpec) -> None:
        ratios = spec.ratios_at(self.resolution.value)
        ratio = self.ratio.value
        with self._hold():
            self.ratio.options = ratios
            self.ratio.value = (ratio if ratio in ratios else spec.default_ratio
                                if spec.default_ratio in ratios else ratios[0])

    def _show_custom_audio(self) -> None:
        custom = self.audio.value == "custom" and len(self._spec.audio_modes) > 1
        for w in (*self._audio_custom, self.audio_url, self.audio_file):
            _show(w, custom)

    # -- events ------------------------------------------------------------------------------
    def _on_model(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._reshape(self._spec, catalog.get_model(change["new"]))
        self._refresh()

    def _on_resolution(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self._reshape_ratio(self._spec)
        self._refresh()

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        if change["owner"] is self.audio:
            self._show_custom_audio()
        self._refresh()

    def _on_upload(self, change: dict[str, Any]) -> None:
        entries = fc.upload_entries(change["new"])
        if not entries:
            return
        try:
            path = fc.save_upload(self.session.store.root / "uploads", entries[0])
        except (ValidationError, OSError) as e:
            self._html["audio_note"].value = fc.error_html([fc.message(e)])
            return
        self._html["audio_note"].value = fc.note_html(
            f"uploaded {entries[0].get('name')} → {path}")
        self.audio_file.value = ()  # the same file may be picked again
        self.audio_url.value = str(path)  # validates it (and refreshes) through _on_change

    def _on_channel(self, change: dict[str, Any]) -> None:
        msg = fc.channel_message(change["new"])
        if msg is None:
            return
        texts = msg.get("texts")
        if isinstance(texts, dict):
            with self._hold():
                for name in ("prompt", "negative_prompt"):
                    text, widget = texts.get(name), getattr(self, name)
                    if isinstance(text, str) and widget.value != text:
                        widget.value = text
        self._refresh()
        if not self.generate.disabled:
            self.generate.click()  # every on_click handler runs, as for a plain click

    def _on_generate(self, _button: Any) -> None:
        try:
            self.generate_now()
        except Exception as e:  # a button callback: the cell never sees an exception
            log.exception("Generate failed")
            self._status(f"Not sent: {fc.message(e)}", fc.ERROR)

    def _on_reuse_seed(self, _button: Any) -> None:
        job = self._last_run()
        if job is None or job.seed is None:
            self._status("No run yet to take a seed from.")
            return
        self.roll_seed.value = False  # reusing a seed means keeping it
        self.seed.value = int(job.seed)
        self._status(f"Seed {job.seed} of run {job.run_id}.")

    def _last_run(self) -> Any:
        if self.last_job is not None:
            return self.last_job
        try:
            jobs = list(self.session.jobs)
        except WanError:
            return None
        return max(jobs, key=lambda j: j.created_at) if jobs else None

    def _on_confirm(self, _button: Any) -> None:
        request, self._pending = self._pending, None
        _show(self._rows["confirm"], False)
        if request is not None:
            try:
                self._submit(request)
            except Exception as e:  # a button callback: the cell never sees an exception
                log.exception("Generate failed")
                self._status(f"Not sent: {fc.message(e)}", fc.ERROR)

    def _cancel_pending(self, why: str = "") -> None:
        if self._pending is not None:
            self._pending = None
            _show(self._rows["confirm"], False)
            if why:
                self._status(why)

    # -- what the controls describe ----------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        spec = self._spec
        p: dict[str, Any] = {
            "prompt": self.prompt.value, "model": spec.name, "resolution": self.resolution.value,
            "ratio": self.ratio.value, "duration": self.duration.value,
            "seed": self.seed.value, "watermark": bool(self.watermark.value)}
        if spec.negative_prompt:
            p["negative_prompt"] = self.negative_prompt.value
        if spec.prompt_extend:
            p["prompt_extend"] = bool(self.prompt_extend.value)
        if len(spec.audio_modes) > 1:
            p["audio"] = self.audio.value
            if self.audio.value == "custom":
                p["audio_url"] = self.audio_url.value.strip() or None
        if spec.multi_shot:
            p["shot_type"] = "multi" if self.multi_shot.value else "single"
        return p

    def request(self) -> GenerationRequest:
        """The :class:`~wan_nb.request.GenerationRequest` the controls describe (a local audio
        file is read and checked); :class:`~wan_nb.errors.ValidationError` listing every
        problem otherwise."""
        return GenerationRequest(**self._params())

    def _problems(self) -> list[tuple[str, str]]:
        return self._checker(self._params(), self.region)

    def _refresh(self) -> None:
        """Counts, pixel size, problems beside their controls and the estimate, from the
        controls as they are now (a change voids a pending confirmation)."""
        if self._quiet:
            return
        self._cancel_pending("Changed: not sent; press Generate again.")
        spec = self._spec
        limit, cjk = fc.prompt_limit(spec, self.prompt.value)
        self._html["prompt_count"].value = fc.count_html(len(self.prompt.value), limit, cjk)
        self._html["negative_count"].value = fc.count_html(len(self.negative_prompt.value),
                                                           spec.negative_prompt_max)
        self._html["pixels"].value = fc.pixels_html(spec.name, self.resolution.value,
                                                    self.ratio.value)
        errors = self._problems()
        if not self._attempted and not self.prompt.value.strip():
            errors = [(f, m) for f, m in errors if f != "prompt"]  # not yet: nothing typed
        self._show_errors(errors)
        self._html["estimate"].value = self._estimate()

    def _show_errors(self, errors: list[tuple[str, str]]) -> None:
        by_control: dict[str, list[str]] = {name: [] for name in self._errors}
        other: list[str] = []
        for field, message in errors:
            control = fc.FIELD_CONTROL.get(field)
            (by_control[control] if control else other).append(message)
        for name, messages in by_control.items():
            self._errors[name].value = fc.error_html(messages)
        if other:
            self._status("; ".join(other), fc.ERROR)

    def _estimate(self) -> str:
        spec = self._spec
        try:
            probe = GenerationRequest("estimate", model=spec.name,
                                      resolution=self.resolution.value, ratio=self.ratio.value,
                                      duration=self.duration.value, seed=0)
        except ValidationError:
            return ""
        band: RunBand | None
        try:
            band = self.session.expected_run_band(probe)
        except WanError:
            band = None
        return fc.estimate_html(probe.estimated_cost, band, live=self.live,
                                threshold=self.confirm_above_usd if self.live else None)

    @property
    def confirm_above_usd(self) -> float:
        """On the live service, a run estimated above this many USD asks first."""
        return float(self.confirm_threshold.value)

    @confirm_above_usd.setter
    def confirm_above_usd(self, value: float) -> None:
        self.confirm_threshold.value = float(value)

    # -- generating --------------------------------------------------------------------------
    def generate_now(self) -> Any:
        """What clicking Generate does: the run the controls describe is validated and sent
        (returns its :class:`~wan_nb.jobs.Job` at once, after ``on_submit(job)``), or shown
        beside the controls as not valid (returns None, nothing sent). On the live service a
        run above ``confirm_above_usd`` waits for Confirm (returns None until then)."""
        self._attempted = True
        self._cancel_pending()
        try:
            request = self.request()
            catalog.check_region(request.model, self.region)
        except ValidationError as e:
            self._show_errors(e.errors)
            n = len(e.errors)
            self._status(f"Not sent: {n} problem{'s' * (n != 1)}, shown beside the controls.",
                         fc.ERROR)
            return None
        self._show_errors([])
        cost = request.estimated_cost
        if self.live and (cost is None or cost > self.confirm_above_usd):
            self._pending = request
            self._html["confirm_text"].value = fc.confirm_html(cost, self.confirm_above_usd,
                                                               self.session.backend)
            _show(self._rows["confirm"], True)
            self._status("Waiting for your confirmation.", fc.WARN)
            return None
        return self._submit(request)

    def _submit(self, request: GenerationRequest) -> Any:
        try:
            job = self.session.submit(request)
        except ValidationError as e:
            self._show_errors(e.errors)
            self._status(f"Not sent: {fc.message(e)}", fc.ERROR)
            return None
        except WanError as e:
            self._status(f"Not sent: {fc.message(e)}", fc.ERROR)
            return None
        self.last_job = job
        if self.roll_seed.value:
            self.seed.value = fc.new_seed()  # what the next Generate uses, shown
        self._status(f"Sent: run {job.run_id} ({request.model}, {request.resolution} "
                     f"{request.ratio}, {request.duration} s, seed {request.seed}).", fc.OK)
        if self.on_submit is not None:
            try:
                self.on_submit(job)
            except Exception as e:  # the run is sent; say that the callback failed
                log.exception("on_submit failed")
                self._status(f"Sent run {job.run_id}, but on_submit failed: {fc.message(e)}",
                             fc.WARN)
        return job

    def _status(self, text: str, colour: str = fc.MUTED) -> None:
        self._html["status"].value = fc.status_html(text, colour)

    # -- loading a past run ------------------------------------------------------------------
    def load(self, run: Any) -> GenerationForm:
        """Fill every control from a past run: a Job, a GenerationRequest, or a ledger row (a
        dict from the store or a ``to_dataframe()`` row). The run's seed is kept (🎲 off).
        :class:`~wan_nb.errors.ValidationError` when the run cannot be read."""
        r = fc.request_of(run)
        spec = catalog.get_model(r.model)
        with self._hold():
            self.model.value = spec.name
        self._reshape(self._spec, spec)
        with self._hold():
            self.resolution.value = r.resolution
            self._reshape_ratio(spec)
            self.ratio.value = r.ratio
            self.duration.value = r.duration
            self.roll_seed.value = False
            self.seed.value = int(r.seed or 0)
            self.prompt.value = r.prompt
            self.negative_prompt.value = r.negative_prompt or ""
            self.prompt_extend.value = bool(r.prompt_extend)
            self.watermark.value = bool(r.watermark)
            self.audio.value = r.audio
            self.audio_url.value = r.audio_url or ""
            self.multi_shot.value = r.shot_type == "multi"
        self._show_custom_audio()
        self._refresh()
        self._status(f"Loaded {spec.name} run{fc.run_id_of(run)}.")
        return self

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the form and every widget it made, with their layouts and styles (the form
        holds no callback of the session or its jobs)."""
        self._pending = None
        for w in fc.descendants(self):
            for part in (getattr(w, "layout", None), getattr(w, "style", None)):
                if isinstance(part, W.Widget):
                    part.close()
            if w is not self:
                w.close()
        super().close()

