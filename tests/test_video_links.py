"""Videos inside widgets: the resolve hook turns a video's path into the Jupyter server's
/files/ URL from the page's own configuration (JupyterLab does this for a cell's output, not
for a widget's markup). Driven in Debian's Chromium on static pages: quick, no server."""

from __future__ import annotations

import json

import pytest

from wan_nb.display import RESOLVE_HOOK, served_attrs, video_tag

from .test_browser import CHROMIUM, CHROMIUM_ARGS, _require_tools

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def config_script(root: str, base: str = "/") -> str:
    data = json.dumps({"serverRoot": root, "baseUrl": base})
    return f'<script id="jupyter-config-data" type="application/json">{data}</script>'


@pytest.fixture(scope="module")
def page():
    _require_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def render(page, head: str, markup: str) -> list[dict]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_content(f"<html><head><base href='http://127.0.0.1:9/lab/tree/nb.ipynb'>{head}"
                     "</head><body><div id=w></div></body></html>")
    page.evaluate("m => { document.getElementById('w').innerHTML = m; }", markup)
    page.wait_for_timeout(300)
    assert errors == []
    return page.evaluate("() => [...document.querySelectorAll('video')].map(v => ({"
                         "src: v.getAttribute('src'), poster: v.getAttribute('poster')}))")


def test_a_widgets_video_gets_the_servers_files_url(page, tmp_path, monkeypatch):
    root = tmp_path / "server root"
    (root / "sub" / "wan_runs").mkdir(parents=True)
    video = root / "sub" / "wan_runs" / "a b#1.mp4"
    video.write_bytes(b"\0" * 10)
    monkeypatch.chdir(root / "sub")  # the kernel's folder: the notebook's
    markup = video_tag(str(video), 200)
    assert 'src="wan_runs/a b#1.mp4"' in markup  # relative: a cell's output resolves it
    [v] = render(page, config_script(str(root), "/user/x/"), markup)
    assert v["src"] == "http://127.0.0.1:9/user/x/files/sub/wan_runs/a%20b%231.mp4"


def test_posters_too_and_what_is_already_a_url_or_outside_the_root_is_left_alone(page):
    markup = (f"<video src='v.mp4' {served_attrs('/srv/nb/v.mp4', '/srv/nb/v.jpg')}></video>"
              f"<video src='/files/already.mp4' {served_attrs('/srv/nb/x.mp4')}></video>"
              f"<video src='data:video/mp4;base64,AA' {served_attrs('/srv/nb/y.mp4')}></video>"
              f"<video src='far.mp4' {served_attrs('/elsewhere/far.mp4')}></video>"
              + RESOLVE_HOOK)
    got = render(page, config_script("/srv"), markup)
    assert got[0] == {"src": "http://127.0.0.1:9/files/nb/v.mp4",
                      "poster": "http://127.0.0.1:9/files/nb/v.jpg"}
    assert [g["src"] for g in got[1:]] == ["/files/already.mp4", "data:video/mp4;base64,AA",
                                           "far.mp4"]


def test_without_the_pages_configuration_nothing_changes(page):
    markup = (f"<video src='v.mp4' {served_attrs('/srv/nb/v.mp4')}></video>"
              + RESOLVE_HOOK)
    assert render(page, "", markup) == [{"src": "v.mp4", "poster": None}]
