"""Every model of the catalog, both protocols, one request (issue 10 items 1 and 2).

Table-driven over ``catalog.MODELS``: each model's defaults are accepted; each documented limit
is accepted at its edge and refused one step past it; ``size`` and ``shot_type`` are refused on
the ``resolution`` models with what to use instead; the two spellings of one request are the
same request; the wire bodies are reference §2 (size models, unchanged) and §7.2 (the others).
"""

from __future__ import annotations

import pytest

from wan_nb import catalog
from wan_nb.errors import ValidationError
from wan_nb.request import GenerationRequest

SPECS = list(catalog.MODELS.values())
IDS = [s.name for s in SPECS]
SIZE_SPECS = [s for s in SPECS if s.protocol == "size"]
RES_SPECS = [s for s in SPECS if s.protocol == "resolution"]


def make(spec, **kw):
    return GenerationRequest(**{"prompt": "a paper boat on a pond", "model": spec.name,
                                "seed": 7, **kw})


def refused(spec, **kw) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as e:
        make(spec, **kw)
    return e.value.errors


# -- the catalog ----------------------------------------------------------------------------------
def test_the_2026_models_are_in_the_catalog():
    assert {"wan2.7-t2v", "wan2.7-t2v-2026-04-25", "happyhorse-1.0-t2v", "wan3.0-video",
            "wan3.0-video-prime", "wan2.6-t2v-us"} <= set(catalog.MODELS)
    assert {s.name for s in RES_SPECS} == {"wan2.7-t2v", "wan2.7-t2v-2026-04-25",
                                           "happyhorse-1.0-t2v", "wan3.0-video",
                                           "wan3.0-video-prime"}
    assert catalog.get_model("wan2.6-t2v-us").protocol == "size"
    assert catalog.get_model("wan2.6-t2v-us").regions == ("virginia",)
    assert catalog.models_in("virginia") == ("happyhorse-1.0-t2v", "wan2.6-t2v-us")


def test_the_two_pixel_tables_differ_at_4_3_and_3_4_only():
    for res in ("720P", "1080P"):
        for ratio in ("16:9", "9:16", "1:1", "4:3", "3:4"):
            old = catalog.pixels("wan2.6-t2v", res, ratio)
            new = catalog.pixels("wan2.7-t2v", res, ratio)
            assert (old == new) == (ratio not in ("4:3", "3:4")), (res, ratio)
    assert catalog.pixels("wan2.5-t2v-preview", "720P", "4:3") == (1088, 832)
    assert catalog.pixels("wan2.7-t2v", "720P", "4:3") == (1104, 832)
    assert catalog.pixels("happyhorse-1.0-t2v", "1080P", "3:4") == (1248, 1648)


def test_wan3_assumed_sizes_are_marked():
    assert catalog.pixels("wan3.0-video", "480P", "4:3") == (640, 480)
    assert catalog.pixels("wan3.0-video", "1080P", "21:9") == (2520, 1080)
    assert catalog.pixels("wan3.0-video", "720P", "adaptive") == (1280, 720)
    assert ("wan3", "480P", "16:9") in catalog.ASSUMED_PIXELS
    assert ("wan3", "720P", "21:9") in catalog.ASSUMED_PIXELS
    assert ("wan3", "720P", "16:9") not in catalog.ASSUMED_PIXELS
    assert catalog.get_model("wan3.0-video").assumptions


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_model_has_a_price_for_each_resolution_by_either_spelling(spec):
    for res in spec.resolutions:
        p = catalog.price_per_second(spec.name, res)
        assert p is not None and p > 0
        for ratio in spec.ratios_at(res):
            w, h = catalog.pixels(spec.name, res, ratio)
            assert catalog.price_per_second(spec.name, f"{w}*{h}") == p
            if spec.protocol == "size":
                assert catalog.resolution_ratio(spec.name, f"{w}*{h}") == (res, ratio)
    assert catalog.estimate_cost(spec.name, spec.default_resolution, 10) == pytest.approx(
        10 * catalog.price_per_second(spec.name, spec.default_size))


def test_the_documented_prices():
    assert catalog.price_per_second("wan3.0-video", "480P") == 0.05
    assert catalog.price_per_second("wan3.0-video-prime", "1080P") == 0.28
    assert catalog.price_per_second("wan2.7-t2v", "1104*832") == 0.10
    assert catalog.price_per_second("happyhorse-1.0-t2v", "1920*1080") == 0.15
    assert catalog.PRICES_ARE_ESTIMATES


def test_the_snapshot_is_its_own_row_with_its_own_name_on_the_wire():
    snap = catalog.get_model("wan2.7-t2v-2026-04-25")
    assert snap.snapshot_of == "wan2.7-t2v" and snap.protocol == "resolution"
    assert snap.submissions_per_s < catalog.get_model("wan2.7-t2v").submissions_per_s
    r = make(snap)
    assert r.model == "wan2.7-t2v-2026-04-25"
    assert r.wire_body(region="beijing")["model"] == "wan2.7-t2v-2026-04-25"
    assert r.fingerprint != make(catalog.get_model("wan2.7-t2v")).fingerprint


# -- defaults ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_defaults_are_accepted_and_explicit(spec):
    r = GenerationRequest("a paper boat", model=spec.name)
    assert (r.resolution, r.ratio) == (spec.default_resolution, spec.default_ratio)
    assert (r.width, r.height) == catalog.pixels(spec.name, r.resolution, r.ratio)
    assert r.size == f"{r.width}*{r.height}" == spec.default_size
    assert r.duration == spec.default_duration and isinstance(r.seed, int)
    assert r.watermark is spec.default_watermark
    assert r.prompt_extend is spec.prompt_extend
    assert r.audio == spec.default_audio
    assert r.tier == r.resolution
    assert r.estimated_cost == catalog.estimate_cost(spec.name, r.resolution, r.duration)
    assert GenerationRequest.from_params(r.stored_json(), stored=True) == r


def test_happyhorse_watermarks_by_default():
    r = GenerationRequest("a horse", model="happyhorse-1.0-t2v", seed=1)
    assert r.watermark is True and r.wire_body()["parameters"]["watermark"] is True
    assert make(catalog.get_model("happyhorse-1.0-t2v"), watermark=False).watermark is False


# -- every documented limit, on both sides -----------------------------------------------------
PICTURES = [(s, res, ratio) for s in SPECS for res in s.resolutions for ratio in s.ratios_at(res)]


@pytest.mark.parametrize(("spec", "res", "ratio"), PICTURES,
                         ids=[f"{s.name}-{r}-{q}" for s, r, q in PICTURES])
def test_every_resolution_and_ratio_is_accepted(spec, res, ratio):
    r = make(spec, resolution=res, ratio=ratio)
    assert (r.width, r.height) == spec.table[res][ratio]
    params = r.wire_body()["parameters"]
    if spec.protocol == "size":
        assert params["size"] == f"{r.width}*{r.height}" and "resolution" not in params
    else:
        assert (params["resolution"], params["ratio"]) == (res, ratio) and "size" not in params


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_a_resolution_or_ratio_not_offered_is_refused(spec):
    missing = [res for res in catalog.RESOLUTIONS if res not in spec.resolutions]
    for res in missing:
        assert refused(spec, resolution=res) == [
            ("resolution", f"resolution {res!r} is not offered by {spec.name}; choose one of "
                           f"{', '.join(spec.resolutions)}")]
    assert refused(spec, resolution="4K")[0][0] == "resolution"
    res = spec.resolutions[0]
    errors = refused(spec, resolution=res, ratio="2:1")
    assert errors == [("ratio", f"ratio '2:1' is not offered by {spec.name} at {res}; choose "
                                f"one of {', '.join(spec.ratios_at(res))}")]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_durations_on_both_sides(spec):
    lo, hi = spec.durations[0], spec.durations[-1]
    assert make(spec, duration=lo).duration == lo
    assert make(spec, duration=hi).duration == hi
    for bad in (lo - 1, hi + 1):
        errors = refused(spec, duration=bad)
        assert [f for f, _ in errors] == ["duration"] and str(bad) in errors[0][1]
        assert spec.name in errors[0][1]


def test_documented_durations():
    assert catalog.get_model("wan2.7-t2v").durations == tuple(range(2, 16))
    assert catalog.get_model("happyhorse-1.0-t2v").durations == tuple(range(3, 16))
    assert catalog.get_model("wan3.0-video").durations == tuple(range(2, 31))
    assert catalog.get_model("wan2.6-t2v-us").durations == (5, 10)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_prompt_length_on_both_sides(spec):
    assert make(spec, prompt="p" * spec.prompt_max).prompt
    errors = refused(spec, prompt="p" * (spec.prompt_max + 1))
    assert errors == [("prompt", f"prompt has {spec.prompt_max + 1} characters; {spec.name} "
                                 f"allows at most {spec.prompt_max} (the service would "
                                 "silently cut it)")]


def test_happyhorse_chinese_prompt_limit():
    spec = catalog.get_model("happyhorse-1.0-t2v")
    assert make(spec, prompt="马" * 2500).prompt
    errors = refused(spec, prompt="马" * 2501)
    assert errors[0][0] == "prompt" and "at most 2500" in errors[0][1]
    assert "Chinese" in errors[0][1]
    assert make(spec, prompt="h" * 5000).prompt


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_negative_prompt_on_both_sides(spec):
    if not spec.negative_prompt:
        errors = refused(spec, negative_prompt="blurry")
        assert errors[0][0] == "negative_prompt" and "not taken by" in errors[0][1]
        assert make(spec, negative_prompt="").negative_prompt == ""
        return
    n = spec.negative_prompt_max
    r = make(spec, negative_prompt="n" * n)
    assert r.wire_body()["input"]["negative_prompt"] == "n" * n
    assert refused(spec, negative_prompt="n" * (n + 1)) == [
        ("negative_prompt", f"negative_prompt has {n + 1} characters; at most {n} are allowed")]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_seed_on_both_sides(spec):
    assert make(spec, seed=catalog.SEED_MIN).seed == 0
    assert make(spec, seed=catalog.SEED_MAX).seed == catalog.SEED_MAX
    for bad in (-1, catalog.SEED_MAX + 1):
        assert [f for f, _ in refused(spec, seed=bad)] == ["seed"]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_audio_modes(spec):
    for mode in ("auto", "silent"):
        if mode in spec.audio_modes:
            assert make(spec, audio=mode).audio == mode
        else:
            assert [f for f, _ in refused(spec, audio=mode)] == ["audio"]
    url = "https://example.invalid/voice.mp3"
    if spec.custom_audio:
        r = make(spec, audio_url=url)
        assert r.audio == "custom" and r.wire_body()["input"]["audio_url"] == url
    else:
        assert [f for f, _ in refused(spec, audio_url=url)] == ["audio_url"]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_prompt_extend(spec):
    assert make(spec, prompt_extend=False).prompt_extend is False
    if spec.prompt_extend:
        assert make(spec, prompt_extend=True).wire_body()["parameters"]["prompt_extend"] is True
    else:
        errors = refused(spec, prompt_extend=True)
        assert errors[0][0] == "prompt_extend" and spec.name in errors[0][1]
        assert "prompt_extend" not in make(spec).wire_body()["parameters"]


def test_wan27_takes_two_second_audio(tmp_path):
    import struct

    def wav(path, seconds):
        rate = 8000
        data = b"\0\0" * int(rate * seconds)
        path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
                         + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
                         + b"data" + struct.pack("<I", len(data)) + data)
        return str(path)

    short = wav(tmp_path / "short.wav", 2.5)
    r = GenerationRequest("speak", model="wan2.7-t2v", audio_url=short, seed=1)
    assert r.audio_sha256 and len(r.read_audio_file()) > 0
    with pytest.raises(ValidationError, match="3 to 30 s"):
        GenerationRequest("speak", model="wan2.6-t2v", audio_url=short, seed=1)
    with pytest.raises(ValidationError, match="2 to 30 s"):
        GenerationRequest("speak", model="wan2.7-t2v", audio_url=wav(tmp_path / "s.wav", 1.5))


# -- the refusals of item 2 ----------------------------------------------------------------------
@pytest.mark.parametrize("spec", RES_SPECS, ids=[s.name for s in RES_SPECS])
def test_size_is_refused_on_resolution_models_naming_what_to_use(spec):
    errors = refused(spec, size="1280*720")
    assert errors == [("size", f"size is not used by {spec.name}, which takes resolution and "
                               f"ratio: instead of size='1280*720' use resolution='720P', "
                               f"ratio='16:9' (1280*720 on {spec.name})")]
    # a §2 size maps to its resolution and ratio, and the pixels this model makes of them
    errors = refused(spec, size="1088*832")
    assert "resolution='720P', ratio='4:3' (1104*832" in errors[0][1]
    errors = refused(spec, size="7*7")
    assert errors[0][0] == "size" and "resolution= one of" in errors[0][1]


@pytest.mark.parametrize("spec", RES_SPECS, ids=[s.name for s in RES_SPECS])
def test_shot_type_is_refused_on_resolution_models(spec):
    for shot in ("single", "multi"):
        errors = refused(spec, shot_type=shot)
        assert errors[0][0] == "shot_type" and f"not used by {spec.name}" in errors[0][1]
    assert "in the prompt" in refused(catalog.get_model("wan2.7-t2v"), shot_type="multi")[0][1]


def test_size_with_a_resolution_that_disagrees_is_refused():
    spec = catalog.get_model("wan2.5-t2v-preview")
    assert refused(spec, size="1280*720", ratio="4:3") == [
        ("size", "size '1280*720' is resolution '720P', ratio '16:9' on wan2.5-t2v-preview, "
                 "not ratio='4:3'; give either size or resolution and ratio")]
    r = make(spec, size="1280*720", resolution="720P", ratio="16:9")
    assert r == make(spec, size="1280*720")


# -- one request, two spellings ------------------------------------------------------------------
SIZE_PICTURES = [(s, res, ratio) for s, res, ratio in PICTURES if s.protocol == "size"]


@pytest.mark.parametrize(("spec", "res", "ratio"), SIZE_PICTURES,
                         ids=[f"{s.name}-{r}-{q}" for s, r, q in SIZE_PICTURES])
def test_both_spellings_are_one_request(spec, res, ratio):
    size = "{}*{}".format(*spec.table[res][ratio])
    by_size = make(spec, size=size)
    by_picture = make(spec, resolution=res, ratio=ratio)
    assert by_size == by_picture
    assert by_size.fingerprint == by_picture.fingerprint
    assert by_size.wire_body() == by_picture.wire_body()
    assert by_size.stored_json() == by_picture.stored_json()
    assert (by_size.resolution, by_size.ratio) == (res, ratio)


def test_the_issue_example_fingerprint():
    a = GenerationRequest("x", model="wan2.5-t2v-preview", size="1280*720", seed=3)
    b = GenerationRequest("x", model="wan2.5-t2v-preview", resolution="720P", ratio="16:9",
                          seed=3)
    assert a.fingerprint == b.fingerprint


# -- wire bodies ---------------------------------------------------------------------------------
def test_wan27_body_is_exactly_7_2():
    r = GenerationRequest("a fox", model="wan2.7-t2v", negative_prompt="blurry",
                          audio_url="https://example.invalid/a.mp3", resolution="720P",
                          ratio="16:9", duration=10, seed=12345)
    assert r.wire_body() == {
        "model": "wan2.7-t2v",
        "input": {"prompt": "a fox", "negative_prompt": "blurry",
                  "audio_url": "https://example.invalid/a.mp3"},
        "parameters": {"resolution": "720P", "ratio": "16:9", "duration": 10,
                       "prompt_extend": True, "watermark": False, "seed": 12345}}
    assert list(r.wire_body()["parameters"]) == ["resolution", "ratio", "duration",
                                                 "prompt_extend", "watermark", "seed"]


def test_wan27_audio_switch_is_passed_through_only_for_silence():
    auto = GenerationRequest("a fox", model="wan2.7-t2v", seed=1)
    assert "audio" not in auto.wire_body()["parameters"]
    silent = GenerationRequest("a fox", model="wan2.7-t2v", seed=1, audio="silent")
    assert silent.wire_body()["parameters"]["audio"] is False
    assert silent.fingerprint != auto.fingerprint


def test_happyhorse_body():
    r = GenerationRequest("a horse", model="happyhorse-1.0-t2v", resolution="720P", ratio="4:3",
                          duration=3, seed=9)
    assert r.wire_body() == {
        "model": "happyhorse-1.0-t2v", "input": {"prompt": "a horse"},
        "parameters": {"resolution": "720P", "ratio": "4:3", "duration": 3,
                       "watermark": True, "seed": 9}}
    assert (r.width, r.height) == (1104, 832)


def test_wan3_body():
    r = GenerationRequest("a city", model="wan3.0-video", resolution="480P", ratio="21:9",
                          duration=30, seed=9, audio="silent")
    assert r.wire_body() == {
        "model": "wan3.0-video", "input": {"prompt": "a city"},
        "parameters": {"resolution": "480P", "ratio": "21:9", "duration": 30,
                       "prompt_extend": True, "watermark": False, "seed": 9, "audio": False}}
    assert "media" not in r.wire_body()["input"]


@pytest.mark.parametrize("spec", SIZE_SPECS, ids=[s.name for s in SIZE_SPECS])
def test_size_bodies_are_unchanged(spec):
    body = make(spec).wire_body()
    keys = ["size", "duration", "prompt_extend", "watermark", "seed"]
    keys += ["audio"] if spec.audio else []
    keys += ["shot_type"] if spec.multi_shot else []
    assert list(body["parameters"]) == keys


@pytest.mark.parametrize("spec", RES_SPECS, ids=[s.name for s in RES_SPECS])
def test_resolution_requests_round_trip_through_the_store_and_replace(spec):
    r = make(spec, resolution=spec.resolutions[0], ratio=spec.ratios_at(spec.resolutions[0])[-1])
    assert "size" not in r.params() and "shot_type" not in r.params()
    back = GenerationRequest.from_params(r.stored_json(), stored=True)
    assert back == r and back.fingerprint == r.fingerprint and back.size == r.size
    assert r.replace(seed=8).resolution == r.resolution
    old = r.replace(model="wan2.5-t2v-preview")
    assert old.size == "1920*1080" and old.watermark is False and old.prompt_extend is True
    assert old.replace(model=spec.name) == make(spec)


def test_a_stored_resolution_request_reads_back_with_its_pinned_fingerprint():
    # pinned: a change here would stop dedupe and resume from matching recorded runs
    stored = ('{"audio": "auto", "audio_url": null, "duration": 10, "model": "wan2.7-t2v", '
              '"negative_prompt": "", "prompt": "a paper boat", "prompt_extend": true, '
              '"ratio": "4:3", "resolution": "720P", "seed": 12345, "watermark": false}')
    r = GenerationRequest.from_params(stored, stored=True)
    assert r.fingerprint == "86f29b5f58489c4111b67012d9ab1a0392daf02183f8db374ba4d43541f48e65"
    assert r.stored_json() == stored and (r.width, r.height) == (1104, 832)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_pixel_sizes_list_each_picture_once(spec):
    sizes = spec.pixel_sizes
    assert len(sizes) == len(set(sizes))
    assert set(sizes) == {f"{w}*{h}" for by in spec.table.values() for w, h in by.values()}
    if spec.protocol == "size":
        assert sizes == spec.sizes


def test_regions():
    catalog.check_region("wan2.6-t2v-us", "virginia")
    catalog.check_region("happyhorse-1.0-t2v", "virginia")
    catalog.check_region("wan2.7-t2v", None)
    with pytest.raises(ValidationError, match="offered in virginia, not singapore"):
        catalog.check_region("wan2.6-t2v-us", "singapore")
    with pytest.raises(ValidationError, match="offered in singapore, beijing, not virginia"):
        catalog.check_region("wan3.0-video", "virginia")
    with pytest.raises(ValidationError, match="region 'mars' is unknown"):
        catalog.models_in("mars")


def test_a_lower_case_resolution_is_the_same_request():
    spec = catalog.get_model("wan2.7-t2v")
    assert make(spec, resolution="720p") == make(spec, resolution="720P")
    assert make(spec, resolution="720p").wire_body()["parameters"]["resolution"] == "720P"
