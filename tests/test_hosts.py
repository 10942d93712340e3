"""Workspace hosts (issue 10 item 5): built from a region and a workspace id, named like the
classic host of the same region, and bad workspace ids refused before anything starts."""

from __future__ import annotations

import pytest

import wan_nb
from wan_nb.config import Config
from wan_nb.errors import ValidationError

WORKSPACES = [
    ("ws-8f2a", "singapore", "https://ws-8f2a.ap-southeast-1.maas.aliyuncs.com", "singapore"),
    ("ws-8f2a", "beijing", "https://ws-8f2a.cn-beijing.maas.aliyuncs.com", "beijing"),
    ("ws-8f2a", "virginia", "https://ws-8f2a.us-east-1.maas.aliyuncs.com", "virginia"),
    ("llm-ABC123", "cn-beijing", "https://llm-abc123.cn-beijing.maas.aliyuncs.com", "beijing"),
    ("ws-1", None, "https://ws-1.ap-southeast-1.maas.aliyuncs.com", "singapore"),
]


@pytest.mark.parametrize(("workspace", "region", "url", "named"), WORKSPACES)
def test_a_workspace_host_is_built_and_named_by_its_region(workspace, region, url, named):
    assert Config.workspace_url(workspace, region) == url
    config = Config.resolve("sk-test", region, workspace=workspace, env={})
    assert (config.base_url, config.region, config.backend) == (url, named, f"live:{named}")
    # the same host given as base_url is the same backend: runs dedupe and resume across both
    assert Config.resolve("sk-test", base_url=url + "/api/v1", env={}).backend == \
        f"live:{named}"
    assert Config.resolve("sk-test", named, env={}).backend == f"live:{named}"


@pytest.mark.parametrize("bad", ["", "https://ws-1.cn-beijing.maas.aliyuncs.com", "ws_1",
                                 "my workspace", "-ws", "ws-", "w" * 64, "ws.1", "wś-1", 7])
def test_bad_workspace_ids_are_refused(bad):
    with pytest.raises(ValidationError) as e:
        Config.workspace_url(bad, "singapore")
    assert e.value.errors[0][0] == "workspace" and "not a workspace id" in e.value.errors[0][1]


def test_an_unknown_region_and_a_clash_are_refused():
    with pytest.raises(ValidationError, match="region 'mars' has no workspace host"):
        Config.workspace_url("ws-1", "mars")
    with pytest.raises(ValidationError, match="not both"):
        Config.resolve("sk-test", workspace="ws-1", base_url="https://example.invalid", env={})


def test_connect_builds_the_workspace_host(tmp_path):
    session = wan_nb.connect("sk-test", region="beijing", workspace="ws-9", resume=False,
                             store=tmp_path / "runs")
    try:
        assert session.base_url == "https://ws-9.cn-beijing.maas.aliyuncs.com"
        assert session.backend == "live:beijing"
    finally:
        session.close()
    with pytest.raises(ValidationError, match="not both"):
        wan_nb.connect("sk-test", workspace="ws-9", base_url="https://example.invalid",
                       resume=False, store=tmp_path / "runs")
    with pytest.raises(ValidationError) as e:
        wan_nb.connect(workspace="ws-9", emulator=True, store=tmp_path / "runs", quiet=True)
    assert e.value.errors[0][0] == "workspace"
    assert not (tmp_path / "runs").exists()


def test_a_workspace_host_from_the_async_client_and_a_model_refused_outside_its_region():
    import asyncio

    import pytest

    from wan_nb.client import AsyncClient
    from wan_nb.errors import ValidationError

    c = AsyncClient("sk-test-0123456789", region="singapore", workspace="ws-12345")
    assert c.base_url.startswith("https://ws-12345.ap-southeast-1.maas.aliyuncs.com")
    assert c.backend == "live:singapore"
    virginia = AsyncClient("sk-test-0123456789", region="virginia")
    # refused before anything is sent: no transport is ever reached (the host is not
    # contacted; the check runs first)
    with pytest.raises(ValidationError, match="offered in"):
        asyncio.run(virginia.create_task(prompt="a kite", model="wan2.7-t2v"))
