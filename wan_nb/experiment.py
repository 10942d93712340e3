"""Reproducible sweeps: an :class:`Experiment` is a named set of variants of one base request.

::

    exp = Experiment("fox-rewrite", base={"model": "wan2.5-t2v-preview", "size": "832*480"})
    exp.grid(prompt=[p1, p2, p3], seed=[1, 2, 3], prompt_extend=[True, False])
    exp.estimate()            # cost and ETA before anything is paid
    exp.run(budget=5.00)      # returns at once; re-running the cell re-attaches, pays nothing
    exp.wait()
    exp.to_dataframe()

Models compare in one sweep, whatever protocol they speak: give the picture as ``resolution`` +
``ratio`` (every model takes it; the catalog picks each model's own pixels) and sweep ``model``::

    exp = Experiment("fox-models", base={"prompt": p1, "resolution": "720P", "ratio": "16:9"})
    exp.grid(model=["wan2.5-t2v-preview", "wan2.6-t2v", "wan2.7-t2v", "happyhorse-1.0-t2v",
                    "wan3.0-video"])
    exp.estimate()["per_model"]   # runs and estimated USD for each model
    exp.to_dataframe()            # one row per run: model, resolution, ratio, width, height, ...

Every variant gets an explicit seed: the one given, or one derived from the experiment's name and
the variant's key, so that the same cell always makes the same requests. Re-running finds the
runs already recorded with the same fingerprint in this experiment and re-attaches to them
instead of creating tasks again (``force=True`` creates new ones).
"""

from __future__ import annotations

import hashlib
import html
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import catalog
from .errors import ValidationError
from .jobs import Job, JobList
from .request import PARAMETERS, GenerationRequest, check_tags, unknown_parameter
from .statuses import RETRYABLE  # not reused by run(): they made no video and cost nothing

# a FAILED run with one of these codes may have a paid task on the service: never re-sent by
# retry_failed (force=True still re-rolls it)
NEVER_RETRIED_CODES = ("AmbiguousCreate",)


def _retryable(row: Mapping[str, Any]) -> bool:
    return row["status"] in RETRYABLE and row.get("error_code") not in NEVER_RETRIED_CODES


@dataclass(frozen=True)
class Variant:
    key: str
    params: Mapping[str, Any]


def _label(name: str, value: Any, index: int) -> str:
    text = str(value)
    if name in ("prompt", "negative_prompt", "audio_url") or len(text) > 24:
        return f"{name}#{index}"
    return f"{name}={text}"


def derived_seed(experiment: str, key: str) -> int:
    """A reproducible seed for a variant that names none."""
    digest = hashlib.sha256(f"{experiment}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (catalog.SEED_MAX + 1)


class Experiment:
    """A named sweep over a base request; see the module docstring."""

    def __init__(self, name: str, base: Mapping[str, Any] | None = None, *,
                 client: Any = None, tags: Iterable[str] = ()):
        if not isinstance(name, str) or not name.strip():
            raise ValidationError([("name", f"an experiment needs a non-empty name, "
                                             f"not {name!r}")])
        self.name = name
        self.base = dict(base or {})
        self.tags = check_tags(tags)
        self._client = client
        self.variants: list[Variant] = []
        self.skipped: list[str] = []
        self._jobs: dict[str, Job] = {}

    # -- defining the sweep ------------------------------------------------------------------
    def grid(self, **axes: Iterable[Any]) -> Experiment:
        """Add the cartesian product of ``axes`` (each a list of values) over the base."""
        if not axes:
            raise ValidationError([("grid", "grid() needs at least one axis, e.g. "
                                            "seed=[1, 2, 3]")])
        lists = {}
        for name, values in axes.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                vals = [values]  # one value: an axis of one
            else:
                vals = list(values)
            if not vals:
                raise ValidationError([(name, f"axis {name!r} has no values")])
            lists[name] = vals
        names = list(lists)
        for combo in itertools.product(*(list(enumerate(lists[n])) for n in names)):
            key = "|".join(_label(n, v, i) for n, (i, v) in zip(names, combo, strict=True))
            self._add(key, {n: v for n, (_, v) in zip(names, combo, strict=True)})
        return self

    def add(self, key: str | None = None, **params: Any) -> Experiment:
        """Add one explicit variant (``key`` names it; default: its position)."""
        self._add(key or f"v{len(self.variants)}", params)
        return self

    def _add(self, key: str, params: Mapping[str, Any]) -> None:
        if any(v.key == key for v in self.variants):
            raise ValidationError([("variant", f"variant {key!r} already exists in "
                                               f"{self.name!r}")])
        self.variants.append(Variant(key, dict(params)))

    def requests(self) -> list[tuple[str, GenerationRequest]]:
        """Every variant's request, validated. All problems are reported together, before
        anything is sent."""
        out, errors = [], []
        for v in self.variants:
            params = {**self.base, **v.params}
            params.setdefault("seed", derived_seed(self.name, v.key))
            unknown = sorted(set(params) - set(PARAMETERS))
            errors += [(f"{v.key}: {u}", f"variant {v.key!r}: {unknown_parameter(u)}")
                       for u in unknown]
            if "prompt" not in params:
                errors.append((f"{v.key}: prompt", f"variant {v.key!r}: no prompt (give one "
                                                   "in base= or in the variant)"))
            known = {k: val for k, val in params.items() if k not in unknown}
            try:
                # a stand-in prompt still lets the other parameters be checked
                out.append((v.key, GenerationRequest(**{"prompt": "?", **known})))
            except ValidationError as e:
                errors += [(f"{v.key}: {f}", f"variant {v.key!r}: {m}") for f, m in e.errors]
        if errors:
            raise ValidationError(errors)
        if not out:
            raise ValidationError([("variants", f"experiment {self.name!r} has no variants; "
                                                "call grid(...) or add(...)")])
        return out

    # -- the client and store ----------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            from . import connect

            self._client = connect(quiet=False)
        return self._client

    @property
    def store(self) -> Any:
        return self.client.store

    def _existing(self, request: GenerationRequest) -> dict | None:
        rows = [r for r in self.store.runs(experiment=self.name,
                                           fingerprint=request.fingerprint)
                if r.get("backend") == self.client.backend]
        reusable = [r for r in rows if not _retryable(r)]
        return (reusable or rows or [None])[-1]

    # -- running -----------------------------------------------------------------------------
    def estimate(self) -> dict[str, Any]:
        """What :meth:`run` would do, before anything is paid: how many runs are new, their
        estimated cost (catalog prices, estimates) and an ETA from learned run times.

        ``per_model`` gives, for each model, its new runs, their estimated cost, and
        ``unpriced`` runs (no price known for that model and resolution: counted as 0)."""
        reqs = self.requests()
        new = [(k, r) for k, r in reqs
               if (row := self._existing(r)) is None or _retryable(row)]
        cost = sum(r.estimated_cost or 0.0 for _, r in new)
        per_model: dict[str, dict[str, Any]] = {}
        for _, r in reqs:
            per_model.setdefault(r.model, {"runs": 0, "new_runs": 0,
                                           "estimated_cost_usd": 0.0, "unpriced": 0})
        for _, r in new:
            entry = per_model[r.model]
            entry["new_runs"] += 1
            entry["estimated_cost_usd"] = round(entry["estimated_cost_usd"]
                                                + (r.estimated_cost or 0.0), 6)
            entry["unpriced"] += r.estimated_cost is None
        for _, r in reqs:
            per_model[r.model]["runs"] += 1
        eta = 0.0
        by_model: dict[str, list[GenerationRequest]] = {}
        for _, r in new:
            by_model.setdefault(r.model, []).append(r)
        for model, rs in by_model.items():
            spec = catalog.get_model(model)
            runs = [self.client.expected_run_seconds(r) for r in rs]
            waves = math.ceil(len(rs) / spec.concurrency)
            eta = max(eta, waves * max(runs) + len(rs) / spec.submissions_per_s)
        return {"experiment": self.name, "variants": len(reqs), "new_runs": len(new),
                "reused_runs": len(reqs) - len(new), "estimated_cost_usd": round(cost, 4),
                "prices_are_estimates": catalog.PRICES_ARE_ESTIMATES,
                "eta_seconds": round(eta, 1), "per_model": per_model}

    def run(self, *, budget: float | None = None, force: bool = False,
            retry_failed: bool = True) -> JobList:
        """Submit every variant not already recorded (returns at once).

        A variant whose run is already in the store (same fingerprint, this experiment) is
        re-attached, not paid again; ``force=True`` submits new runs anyway. Runs that made
        no video and cost nothing (failed, rejected, cancelled, expired) are submitted again
        unless ``retry_failed=False``. ``budget`` (USD, estimated) is a hard cap on what this
        call may submit: variants past it are skipped and listed in ``skipped``.
        """
        if budget is not None and (isinstance(budget, bool)
                                   or not isinstance(budget, (int, float)) or not budget >= 0):
            raise ValidationError([("budget", f"budget must be a number >= 0, not {budget!r}")])
        reqs = self.requests()
        session = self.client
        spent = 0.0
        self.skipped = []
        jobs = JobList()
        for key, request in reqs:
            row = None if force else self._existing(request)
            if row is not None and not (retry_failed and _retryable(row)):
                job = session.attach(row["run_id"])
            else:
                cost = request.estimated_cost or 0.0
                if budget is not None and spent + cost > budget + 1e-9:
                    self.skipped.append(key)
                    continue
                spent += cost
                # the check above is only a fast path: another kernel may be running this
                # same cell right now, so the store re-checks and inserts in one step
                job = session.submit(request, experiment=self.name, variant=key,
                                     tags=self.tags, dedupe=not force,
                                     reuse_unless=RETRYABLE if retry_failed else (),
                                     always_reuse_codes=NEVER_RETRIED_CODES)
            self._jobs[key] = job
            jobs.append(job)
        return jobs

    @property
    def jobs(self) -> JobList:
        return JobList(self._jobs.values())

    def resume(self) -> JobList:
        """Re-attach to this experiment's runs (after a kernel restart), without submitting."""
        for row in self.store.runs(experiment=self.name):
            if row.get("backend") == self.client.backend:
                job = self.client.attach(row["run_id"])
                self._jobs[row.get("variant") or row["run_id"]] = job
        return self.jobs

    def verify(self, *, full: bool = False) -> Any:
        """Check this experiment's downloaded videos: a DataFrame with ``state`` (ok, missing,
        truncated, changed, no_video), ``ok`` and ``problem`` per run (see
        :meth:`Store.verify`)."""
        return self.store.verify(experiment=self.name, full=full)

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> JobList:
        return self.jobs.wait(timeout, progress=progress)

    def retry_download(self) -> JobList:
        """Fetch again, in the background, every paid video of this experiment whose
        download failed or whose file is missing or damaged, while the service's URL is valid
        (24 h); nothing is created or paid again. Returns the jobs downloading again."""
        if not self._jobs:
            self.resume()
        return self.jobs.retry_download()

    def rerun(self, run_id: str, *, freeze_rewrite: bool = True) -> Job:
        """Submit a run again. With ``freeze_rewrite`` the service's rewritten prompt is sent
        as the prompt with ``prompt_extend=False`` and the same seed, which separates the
        rewriter's variance from the generator's."""
        from .jobs import rerun_request

        row = self.store.get_run(run_id)
        request = rerun_request(row, freeze_rewrite=freeze_rewrite)
        variant = (row.get("variant") or run_id) + ("|frozen" if freeze_rewrite else "")
        job = self.client.submit(request, experiment=self.name, variant=variant,
                                 tags=[*self.tags, f"rerun-of:{run_id}"])
        self._jobs[f"{variant}@{job.run_id}"] = job
        return job

    # -- analysis ----------------------------------------------------------------------------
    def to_dataframe(self) -> Any:
        return self.store.to_dataframe(experiment=self.name)

    def summary(self, by: str | list[str] = "variant") -> Any:
        from .analysis import summary

        return summary(self.to_dataframe(), by=by)

    def prompt_diff(self) -> Any:
        from .analysis import prompt_diff

        return prompt_diff(self.to_dataframe())

    def thumbnails(self, columns: Iterable[str] = ("variant", "status", "prompt",
                                                   "actual_prompt", "seed", "run_s"),
                   *, frames: int = 4) -> Any:
        """The runs with a strip of frames each, as HTML for a quick visual scan."""
        from IPython.display import HTML

        from .analysis import with_thumbnails

        df = with_thumbnails(self.to_dataframe(), self.store.root, frames=frames)
        view = df[["thumbnails", *columns]].copy()
        for name in columns:  # user text is escaped; only the thumbnails are markup
            view[name] = [html.escape("" if v is None or v is pd.NA else str(v))
                          for v in view[name]]
        return HTML(view.to_html(escape=False))

    def ratings(self) -> Any:
        from .analysis import ratings

        return ratings(self.to_dataframe())

    def rate(self, run_id: str, rating: int | None = None, notes: str | None = None, *,
             keep: bool | None = None) -> None:
        """Record your rating (1-5), keep (True) or reject (False), and notes for a run."""
        from .jobs import rating_fields

        self.store.update_run(run_id, **rating_fields(rating, keep, notes))

    def export_bundle(self, path: str) -> Any:
        return self.store.export_bundle(path, experiment=self.name)

    def gallery(self, columns: int | None = None, **options: Any) -> Any:
        """The Studio's gallery of this experiment's runs (see :meth:`JobList.gallery`)."""
        from .widgets.gallery import Gallery

        return Gallery(self, columns=columns, **options)

    def _repr_html_(self) -> str:
        counts: dict[str, int] = {}
        for j in self._jobs.values():
            counts[j.status] = counts.get(j.status, 0) + 1
        parts = ", ".join(f"{html.escape(k)} {v}" for k, v in sorted(counts.items()))
        return (f"<b>Experiment {html.escape(self.name)}</b>: {len(self.variants)} variants"
                f"{'; ' + parts if parts else ''}")

    def __repr__(self) -> str:
        return f"<Experiment {self.name!r}: {len(self.variants)} variants>"
