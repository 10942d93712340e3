"""The HTTP contract of the emulator, in-process through httpx.ASGITransport (no files)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from wan_nb import catalog
from wan_nb.errors import ERROR_CODES

from .conftest import AUTH, CREATE, HEADERS, KEY, TASKS, body

pytestmark = pytest.mark.anyio
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")


def envelope(r: Any, status: int, code: str, message: str | None = None) -> None:
    assert r.status_code == status, r.text
    data = r.json()
    assert set(data) == {"request_id", "code", "message"}
    assert data["code"] == code
    assert data["request_id"]
    if message is not None:
        assert data["message"] == message


# -- auth and headers ----------------------------------------------------------------------------
@pytest.mark.parametrize("headers,message", [
    ({"X-DashScope-Async": "enable"}, "No API-key provided."),
    ({"X-DashScope-Async": "enable", "Authorization": "Bearer "}, "No API-key provided."),
    ({"X-DashScope-Async": "enable", "Authorization": "Bearer sk-wrong"},
     "Invalid API-key provided."),
])
async def test_create_auth_failures(emu_factory: Any, headers: dict, message: str) -> None:
    async with emu_factory() as emu:
        r = await emu.client.post(CREATE, json=body(), headers=headers)
        envelope(r, 401, "InvalidApiKey", message)
        for path in (f"{TASKS}/x", TASKS, "/_emulator/stats"):
            envelope(await emu.client.get(path, headers=headers), 401, "InvalidApiKey", message)


async def test_any_sk_key_when_api_keys_is_none(emu_factory: Any) -> None:
    async with emu_factory(api_keys=None) as emu:
        h = {"Authorization": "Bearer sk-anything", "X-DashScope-Async": "enable"}
        assert (await emu.client.post(CREATE, json=body(), headers=h)).status_code == 200
        h["Authorization"] = "Bearer nope"
        envelope(await emu.client.post(CREATE, json=body(), headers=h), 401, "InvalidApiKey")


async def test_synchronous_call_is_refused(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await emu.client.post(CREATE, json=body(), headers=AUTH)
        envelope(r, 403, "AccessDenied", "current user api does not support synchronous calls")
        assert (await emu.stats())["creates"]["accepted"] == 0


# -- create bodies -------------------------------------------------------------------------------
BAD_BODIES = [
    ("not json", b"{", "not valid JSON"),
    ("a list", b"[1, 2]", "must be a JSON object"),
    ("NaN", b'{"model": "wan2.5-t2v-preview", "input": {"prompt": "x"}, '
            b'"parameters": {"seed": NaN}}', "not valid JSON"),
    ("prompt as a number", body(prompt=5), "prompt must be a non-empty string"),  # type: ignore
    ("empty prompt", body(prompt="  "), "prompt must be a non-empty string"),
    ("size as int", body(size=832), "size 832 is not offered"),
    ("size with x", body(size="832x480"), "written with '*'"),
    ("duration as string", body(duration="5"), "duration '5' is not offered"),
    ("duration 7 on wan2.5", body(duration=7), "use 5 or 10"),
    ("seed 2**31", body(seed=2**31), "seed 2147483648 must be"),
    ("seed negative", body(seed=-1), "seed -1 must be"),
    ("watermark as string", body(watermark="yes"), "watermark must be True or False"),
    ("audio as string", body(audio="on"), "audio must be true or false"),
    ("no input", {"model": "wan2.5-t2v-preview"}, "input.prompt"),
    ("input not an object", {"model": "wan2.5-t2v-preview", "input": "x"}, "input.prompt"),
    ("parameters a list", {"model": "wan2.5-t2v-preview", "input": {"prompt": "x"},
                           "parameters": [1]}, "parameters must be an object"),
    ("720P on wan2.2", body(model="wan2.2-t2v-plus", size="1280*720"), "not offered by"),
    ("audio_url on wan2.2", {"model": "wan2.2-t2v-plus",
                             "input": {"prompt": "x", "audio_url": "https://a/b.mp3"}},
     "not supported by wan2.2-t2v-plus"),
    ("local audio path", {"model": "wan2.5-t2v-preview",
                          "input": {"prompt": "x", "audio_url": "/etc/passwd"}},
     "must be a public http(s) URL"),
    ("oss without resolve header", {"model": "wan2.5-t2v-preview",
                                    "input": {"prompt": "x", "audio_url": "oss://a/b.mp3"}},
     "X-DashScope-OssResourceResolve"),
]


@pytest.mark.parametrize("name,payload,fragment", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_create_bodies_are_documented_400s(emu_factory: Any, name: str, payload: Any,
                                                     fragment: str) -> None:
    async with emu_factory() as emu:
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        r = await emu.client.post(CREATE, content=content, headers=HEADERS)
        envelope(r, 400, "InvalidParameter")
        assert fragment in r.json()["message"]
        stats = await emu.stats()
        assert stats["creates"] == {**stats["creates"], "accepted": 0, "refused": 1}


@pytest.mark.parametrize("model", ["wan2.9-t2v", "", None, 5, "wan2.5-i2v-preview"])
async def test_unknown_model(emu_factory: Any, model: Any) -> None:
    async with emu_factory() as emu:
        r = await emu.create(body(model=model))
        envelope(r, 400, "InvalidParameter", "Model not exist.")


async def test_too_large_body(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await emu.create(body(prompt="x" * (2 << 20)))
        envelope(r, 413, "BadRequest.TooLarge")


async def test_sdk_extras_are_tolerated_and_texts_truncated(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        long_prompt = "a fox " * 400  # 2400 characters, wan2.5 allows 1500
        b = {"model": "wan2.5-t2v-preview",
             "input": {"prompt": long_prompt, "negative_prompt": "blur " * 200,
                       "extend_prompt": True, "function": "video-synthesis"},
             "parameters": {"size": "832*480", "duration": 5, "seed": 1, "wait_timeout": 30,
                            "resolution": None}}
        r = await emu.create(b)
        assert r.status_code == 200, r.text
        out = r.json()
        assert set(out) == {"request_id", "output"}
        assert out["output"] == {"task_status": "PENDING", "task_id": out["output"]["task_id"]}
        t = emu.engine.tasks[out["output"]["task_id"]]
        assert len(t.params["prompt"]) == 1500 and len(t.params["negative_prompt"]) == 500
        assert t.orig_prompt == long_prompt


async def test_alias_model_name_is_kept_as_sent(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        tid = await emu.create_id(body(model="wanx2.1-t2v-turbo"))
        data = (await emu.list()).json()["data"]
        assert data[0]["task_id"] == tid and data[0]["model_name"] == "wanx2.1-t2v-turbo"
        r = await emu.list(model_name="wan2.1-t2v-turbo")
        assert r.json()["total"] == 1


# -- query ---------------------------------------------------------------------------------------
async def test_lifecycle_fields_by_state(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        tid = await emu.create_id()
        q = await emu.query(tid)
        assert set(q["output"]) == {"task_id", "task_status", "submit_time"}
        assert q["output"]["task_status"] == "PENDING" and "usage" not in q
        assert TIME_RE.match(q["output"]["submit_time"])
        emu.clock.advance(0.5)
        q = await emu.query(tid)
        assert q["output"]["task_status"] == "RUNNING"
        assert set(q["output"]) == {"task_id", "task_status", "submit_time", "scheduled_time"}
        emu.clock.advance(30)
        q = await emu.query(tid)
        out = q["output"]
        assert out["task_status"] == "SUCCEEDED"
        assert out["submit_time"] < out["scheduled_time"] < out["end_time"]
        assert out["orig_prompt"] == "a red fox walking through fresh snow"
        assert out["actual_prompt"].startswith("a red fox walking through fresh snow. ")
        assert q["usage"] == {"video_count": 1, "video_duration": 5, "video_ratio": "832*480"}
        assert q["request_id"]


async def test_times_are_utc_plus_8(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        emu.clock.set(0.0 + 24 * 3600)  # 1970-01-02 00:00:00 UTC
        tid = await emu.create_id()
        assert (await emu.query(tid))["output"]["submit_time"] == "1970-01-02 08:00:00.000"


async def test_wan26_usage_and_no_actual_prompt(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        tid = await emu.create_id(body(model="wan2.6-t2v", size="1280*720", duration=7,
                                       shot_type="multi"))
        emu.clock.advance(60)
        q = await emu.query(tid)
        assert q["output"]["task_status"] == "SUCCEEDED"
        assert "actual_prompt" not in q["output"] and q["output"]["orig_prompt"]
        assert q["usage"] == {"duration": 7, "size": "1280*720", "input_video_duration": 0,
                              "output_video_duration": 7, "video_count": 1, "SR": 720}


async def test_prompt_extend_false_keeps_the_prompt(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        tid = await emu.create_id(body(prompt_extend=False))
        emu.clock.advance(60)
        out = (await emu.query(tid))["output"]
        assert out["actual_prompt"] == out["orig_prompt"]


async def test_rewrite_is_deterministic_and_cjk_aware(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        ids = [await emu.create_id(body(prompt=p, seed=s))
               for p, s in (("a cat", 1), ("a cat", 1), ("a cat", 2), ("雨中的狐狸偵探", 1))]
        emu.clock.advance(60)
        actual = [(await emu.query(i))["output"]["actual_prompt"] for i in ids]
        assert actual[0] == actual[1]
        assert actual[3].startswith("雨中的狐狸偵探。") and actual[3].endswith("。")
        assert all(a.isascii() for a in actual[:3])


@pytest.mark.parametrize("path", [
    "{tasks}/{tid}/", "{tasks}/{tid}?model=wan2.5-t2v-preview&size=832*480",
    "{tasks}/{tid}/?wait_timeout=5"])
async def test_trailing_slash_and_query_string(emu_factory: Any, path: str) -> None:
    async with emu_factory() as emu:
        tid = await emu.create_id()
        r = await emu.client.get(path.format(tasks=TASKS, tid=tid), headers=AUTH)
        assert r.status_code == 200 and r.json()["output"]["task_id"] == tid


async def test_unknown_and_foreign_ids_are_unknown(emu_factory: Any) -> None:
    async with emu_factory(api_keys=(KEY, "sk-other")) as emu:
        r = await emu.client.get(f"{TASKS}/no-such-task", headers=AUTH)
        assert r.status_code == 200
        assert r.json()["output"] == {"task_id": "no-such-task", "task_status": "UNKNOWN"}
        tid = await emu.create_id()
        r = await emu.client.get(f"{TASKS}/{tid}", headers={"Authorization": "Bearer sk-other"})
        assert r.json()["output"]["task_status"] == "UNKNOWN"


async def test_wrong_urls_answer_url_error(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await emu.client.get("/api/v1/services/aigc/video-generation/nope", headers=AUTH)
        envelope(r, 400, "InvalidParameter", "url error, please check url!")
        r = await emu.client.get(CREATE, headers=AUTH)
        envelope(r, 400, "InvalidParameter", "url error, please check url!")


# -- cancel --------------------------------------------------------------------------------------
async def test_cancel_rules(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        tid = await emu.create_id()
        sdk_body = {"model": "", "parameters": {}, "input": ""}
        r = await emu.client.post(f"{TASKS}/{tid}/cancel/", json=sdk_body, headers=AUTH)
        assert r.status_code == 200 and set(r.json()) == {"request_id"}
        q = (await emu.query(tid))["output"]
        assert q["task_status"] == "CANCELED" and "end_time" in q and "scheduled_time" not in q
        emu.clock.advance(60)
        assert await emu.status(tid) == "CANCELED"
        msg = ERROR_CODES["UnsupportedOperation"][2]
        for target in (tid, "no-such-task"):  # already canceled; never existed
            r = await emu.client.post(f"{TASKS}/{target}/cancel", headers=AUTH)
            envelope(r, 400, "UnsupportedOperation", msg)
        running = await emu.create_id()
        emu.clock.advance(0.5)
        assert await emu.status(running) == "RUNNING"
        envelope(await emu.client.post(f"{TASKS}/{running}/cancel", headers=AUTH), 400,
                 "UnsupportedOperation", msg)
        emu.clock.advance(60)
        envelope(await emu.client.post(f"{TASKS}/{running}/cancel", headers=AUTH), 400,
                 "UnsupportedOperation", msg)


# -- list ----------------------------------------------------------------------------------------
async def test_list_shape_filters_and_pages(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        ids = []
        for i in range(7):
            ids.append(await emu.create_id(body(seed=i)))
            emu.clock.advance(1.0)  # stay under the 5/s submission limit
        wan22 = await emu.create_id(body(model="wan2.2-t2v-plus"))
        emu.clock.advance(2.0)
        await emu.client.post(f"{TASKS}/{wan22}/cancel", headers=AUTH)  # too late: RUNNING
        r = await emu.list()
        data = r.json()
        assert set(data) == {"request_id", "total", "total_page", "page_no", "page_size", "data"}
        assert data["total"] == 8 and data["total_page"] == 1 and data["page_size"] == 10
        assert [d["task_id"] for d in data["data"]] == [wan22, *reversed(ids)]
        item = data["data"][-1]
        assert set(item) == {"task_id", "status", "model_name", "gmt_create", "start_time",
                             "end_time", "request_id", "region"}
        assert isinstance(item["gmt_create"], int) and item["gmt_create"] > 1e12
        pending = data["data"][0]
        assert pending["status"] == "RUNNING" and "end_time" not in pending
        p2 = (await emu.list(page_no=2, page_size=3)).json()
        assert [d["task_id"] for d in p2["data"]] == list(reversed(ids))[2:5]
        assert p2["total_page"] == 3 and p2["page_no"] == 2
        assert (await emu.list(model_name="wan2.2-t2v-plus")).json()["total"] == 1
        assert (await emu.list(status="SUCCEEDED")).json()["total"] == 7
        assert (await emu.list(task_id=ids[3])).json()["data"][0]["task_id"] == ids[3]
        assert (await emu.list(model_name="no-such-model")).json()["total"] == 0


def _stamp(epoch: float) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(epoch, catalog.SERVICE_TZ).strftime("%Y%m%d%H%M%S")


async def test_list_time_window(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        t0 = emu.clock.now()
        old = await emu.create_id()
        emu.clock.advance(3 * 3600)
        new = await emu.create_id()
        now = emu.clock.now()
        r = await emu.list(start_time=_stamp(t0 - 60), end_time=_stamp(t0 + 3600))
        assert [d["task_id"] for d in r.json()["data"]] == [old]
        r = await emu.list(start_time=_stamp(now - 60))
        assert [d["task_id"] for d in r.json()["data"]] == [new]
        r = await emu.list(start_time=_stamp(now - 2 * 86400), end_time=_stamp(now))
        envelope(r, 400, "InvalidParameter")
        assert "24 hours" in r.json()["message"]
        for bad in ({"start_time": "2025-01-01"}, {"page_size": "0"}, {"page_no": "x"},
                    {"status": "DONE"}, {"start_time": _stamp(now), "end_time": _stamp(t0)}):
            envelope(await emu.list(**bad), 400, "InvalidParameter")


# -- content inspection --------------------------------------------------------------------------
async def test_content_inspection(emu_factory: Any) -> None:
    async with emu_factory(blocked_terms={"__blocked__": "DataInspectionFailed",
                                          "forbidden-word": "IPInfringementSuspect"}) as emu:
        r = await emu.create(body(prompt="a __BLOCKED__ thing"))
        envelope(r, 400, "DataInspectionFailed", "Input data may contain inappropriate content.")
        b = body(prompt="ok")
        b["input"]["negative_prompt"] = "forbidden-word"
        r = await emu.create(b)
        envelope(r, 400, "IPInfringementSuspect")
        tid = await emu.create_id(body(prompt="a __fail_output__ scene"))
        ip = await emu.create_id(body(prompt="a __ip_output__ scene", seed=2))
        emu.clock.advance(60)
        out = (await emu.query(tid))
        assert out["output"]["task_status"] == "FAILED" and "usage" not in out
        assert out["output"]["code"] == "DataInspectionFailed"
        assert "Output data" in out["output"]["message"]
        assert (await emu.query(ip))["output"]["code"] == "IPInfringementSuspect"
        stats = await emu.stats()
        assert stats["creates"]["refused_by_code"] == {"DataInspectionFailed": 1,
                                                       "IPInfringementSuspect": 1}


async def test_index_does_not_leak_the_key(emu_factory: Any) -> None:
    async with emu_factory() as emu:
        r = await emu.client.get("/")
        assert r.status_code == 200 and KEY not in r.text
        assert r.json()["api_base"] == "http://emulator/api/v1"
