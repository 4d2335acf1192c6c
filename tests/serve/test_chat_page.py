"""Issue 17, items 2–3: the chat page at `/` of a real `moxin serve` process, driven in headless Chromium (Debian's
`chromium` + `chromium-driver`, installed by scripts/setup.sh) through selenium.

The served model is the toy one with a 4096-token context and its end-of-turn logits pinned to 0, so a greedy
reply always runs to max_tokens: short replies are exact references, and a long one streams on until stop is pressed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from serve_toy import build_tokenizer, free_port, start_serve, toy, wait_healthy  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                                else None)
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="the chat page browser tests need Debian's chromium and chromium-driver (chromium: "
           f"{CHROMIUM or 'missing'}, chromedriver: {CHROMEDRIVER or 'missing'}); run scripts/setup.sh as root")
KEY = "k3y-chat-page"
SYSTEM = "be brief"
WAIT = 30.0


def _checkpoint(folder: Path) -> Path:
    import torch

    from moxin.interop.native import save_model
    from moxin.model import build, preset
    from moxin.serve.text import end_of_turn_ids

    tok = build_tokenizer()
    cfg = dataclasses.replace(preset("tiny"), init_std=0.2, max_seq_len=4096, tie_embeddings=False)
    model = build(cfg, seed=0)
    with torch.no_grad():
        model.head.weight[end_of_turn_ids(tok)] = 0.0  # never the greedy choice: replies run to max_tokens
    save_model(model, folder / "model")
    tok.save_pretrained(folder / "tokenizer")
    return folder


class _Serve:
    """`python -m moxin.cli serve` in its own process, on a free loopback port."""

    def __init__(self, ckpt: Path, logs: Path, api_key: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = api_key
        env = {k: v for k, v in os.environ.items() if k != "MOXIN_API_KEY"}
        if api_key:
            env["MOXIN_API_KEY"] = api_key
        self.log = logs / f"serve-{self.port}.log"
        with open(self.log, "w") as out:
            self.proc = start_serve(ckpt, self.port, "--max-tokens-limit", "4000", env=env, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip

    def wait(self) -> None:
        wait_healthy(self.url, self.proc, lambda: self.log.read_text()[-3000:])

    def greedy(self, messages: list[dict], max_tokens: int) -> str:
        """The reference: the API's own non-streamed greedy reply."""
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        r = httpx.post(self.url + "/v1/chat/completions", headers=headers, timeout=WAIT,
                       json={"model": "toy", "messages": messages, "temperature": 0, "max_tokens": max_tokens})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat-page")
    ckpt = _checkpoint(folder)
    started = {"open": _Serve(ckpt, folder, None), "keyed": _Serve(ckpt, folder, KEY)}  # start both, then wait
    try:
        for srv in started.values():
            srv.wait()
        yield started
    finally:
        for srv in started.values():
            srv.stop()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,700",
                "--no-first-run", "--disable-extensions", "--disable-background-networking", "--lang=en-US",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):  # only loopback resolves
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------------------------------------ page helpers
def _until(driver, what: str, script: str):
    """Poll a JS expression until it is truthy; fail naming `what` (and the page's error text) on timeout."""
    deadline = time.time() + WAIT
    while time.time() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.05)
    shown = driver.execute_script("return document.getElementById('error').textContent")
    raise AssertionError(f"timed out waiting for {what}; page error: {shown!r}")


def _fill(driver, element_id: str, value: str) -> None:
    el = driver.find_element("id", element_id)
    el.clear()
    el.send_keys(value)


def _settings(driver, system: str, temperature: str, max_tokens: str) -> None:
    driver.execute_script("document.getElementById('system').value = arguments[0]", system)
    _fill(driver, "temperature", temperature)
    _fill(driver, "max-tokens", max_tokens)


def _ready(driver) -> bool:
    return driver.execute_script("const s = document.getElementById('send'), t = document.getElementById('stop');"
                                 "return !s.disabled && t.disabled && document.getElementById('status')"
                                 ".textContent === 'ready'")


def _replies(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('.msg.assistant .content')]"
                                 ".map(e => e.textContent)")


def _say(driver, text: str) -> str:
    """Type a message, press send, wait for the streamed reply to finish; return its text from the DOM."""
    before = len(_replies(driver))
    _fill(driver, "prompt", text)
    driver.find_element("id", "send").click()
    _until(driver, "the reply to finish", f"document.querySelectorAll('.msg.assistant').length > {before} && "
                                          "!document.getElementById('send').disabled")
    return _replies(driver)[-1]


def _count_stream_updates(driver) -> None:
    driver.execute_script("window.__updates = 0; new MutationObserver(ms => { for (const m of ms) "
                          "if (m.target.classList && m.target.classList.contains('content')) window.__updates++; })"
                          ".observe(document.getElementById('messages'), {childList: true, subtree: true})")


def _requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _screenshot(driver, tmp_path: Path) -> None:
    png = tmp_path / "chat.png"
    assert driver.save_screenshot(str(png)) and png.stat().st_size > 10_000
    if os.environ.get("MOXIN_SCREENSHOTS"):
        out = Path(os.environ["MOXIN_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, out / "chat.png")


# ------------------------------------------------------------------------------------------------ tests
def test_page_is_served_self_contained(toy):
    """Without a browser: GET / is one UTF-8 HTML file, no external asset, a CSP pinning its inline code."""
    from moxin.serve.engine import Engine
    from moxin.serve.server import BackgroundServer, ServerConfig, create_app

    model, tok = toy
    engine = Engine(model, tok, max_batch=1)
    try:
        for key, flag in ((None, 'data-api-key="none"'), ("s3cret", 'data-api-key="required"')):
            with BackgroundServer(create_app(engine, tok, ServerConfig("toy", api_key=key))) as srv:
                r = httpx.get(srv.url + "/", timeout=WAIT)  # public even with a key: the page asks for it
                assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
                html = r.text
                csp = r.headers["content-security-policy"]
                assert flag in html
    finally:
        engine.close()
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert csp.count("'sha256-") == 2  # the one <script> and the one <style>
    assert "http://" not in html and "https://" not in html and " src=" not in html
    for stored in ("localStorage", "sessionStorage", "document.cookie", "indexedDB", "innerHTML"):
        assert stored not in html, stored


@needs_browser
def test_chat_streams_greedy_replies_stops_and_starts_over(servers, browser, tmp_path):
    srv = servers["open"]
    browser.get(srv.url + "/")
    _until(browser, "the page to connect", "document.getElementById('status').textContent === 'ready'")
    assert browser.find_element("id", "model").text == "toy"
    assert not browser.find_element("id", "key-panel").is_displayed()
    _settings(browser, SYSTEM, "0", "40")
    _count_stream_updates(browser)

    first = "東京のデータについて教えて"
    reply = _say(browser, first)
    history = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": first}]
    assert reply == srv.greedy(history, 40) and reply
    assert browser.execute_script("return window.__updates") > 5  # the reply arrived in many pieces

    second = "and the model?"
    reply2 = _say(browser, second)  # the page sends the whole conversation
    history += [{"role": "assistant", "content": reply}, {"role": "user", "content": second}]
    assert reply2 == srv.greedy(history, 40)
    assert [e.text for e in browser.find_elements("css selector", ".msg.user .content")] == [first, second]
    _screenshot(browser, tmp_path)

    # A long reply (3500 tokens), stopped as soon as it shows: it stops growing and the page takes a new message.
    _settings(browser, SYSTEM, "0", "3500")
    _fill(browser, "prompt", "write a long story")
    browser.find_element("id", "send").click()
    _until(browser, "the long reply to start", "document.querySelectorAll('.msg.assistant .content')[2]"
                                               "?.textContent.length > 0")
    browser.find_element("id", "stop").click()
    _until(browser, "the page to be ready after stop", "!document.getElementById('send').disabled")
    stopped = len(_replies(browser)[-1])
    time.sleep(1.0)
    assert len(_replies(browser)[-1]) == stopped
    assert _ready(browser) and browser.find_element("id", "prompt").get_attribute("value") == ""
    notes = [e.text for e in browser.find_elements("css selector", ".msg.assistant .note")]
    assert notes[-1] == "(stopped)", notes
    deadline = time.time() + 5
    while True:  # the server saw the connection close and cancelled the generation, freeing its row
        health = httpx.get(srv.url + "/health", timeout=WAIT).json()
        if (health["cancelled"], health["running"]) == (1, 0) or time.time() > deadline:
            break
        time.sleep(0.05)
    assert (health["cancelled"], health["running"]) == (1, 0), health

    browser.find_element("id", "new-chat").click()
    assert browser.find_elements("css selector", ".msg") == []
    assert browser.find_element("id", "empty").is_displayed()
    _settings(browser, SYSTEM, "0", "40")
    fresh = _say(browser, "hello")  # a new conversation: no earlier turn is sent
    assert fresh == srv.greedy([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hello"}], 40)

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    urls = _requested_urls(browser)
    assert srv.url + "/" in urls and urls.count(srv.url + "/v1/chat/completions") == 4
    assert [u for u in urls if not u.startswith(srv.url + "/") and not u.startswith("data:")] == []


@needs_browser
def test_api_key_is_asked_for_and_kept_in_memory_only(servers, browser):
    srv = servers["keyed"]
    browser.get(srv.url + "/")
    _until(browser, "the key prompt", "!document.getElementById('key-panel').hidden")
    assert not browser.find_element("id", "app").is_displayed()
    assert browser.find_element("id", "api-key").get_attribute("type") == "password"

    _fill(browser, "api-key", "wrong-key")
    browser.find_element("id", "key-submit").click()
    err = _until(browser, "the wrong-key error", "!document.getElementById('key-error').hidden && "
                                                 "document.getElementById('key-error').textContent")
    assert "invalid or missing API key" in err
    assert not browser.find_element("id", "app").is_displayed()

    _fill(browser, "api-key", KEY)
    browser.find_element("id", "key-submit").click()
    _until(browser, "the page to connect", "document.getElementById('status').textContent === 'ready'")
    assert browser.find_element("id", "api-key").get_attribute("value") == ""  # not left in the field either
    _settings(browser, "", "0", "20")
    reply = _say(browser, "hello")
    assert reply == srv.greedy([{"role": "user", "content": "hello"}], 20) and reply

    kept = browser.execute_script("return [JSON.stringify({...localStorage}), JSON.stringify({...sessionStorage}),"
                                  " document.cookie, document.documentElement.outerHTML, location.href]")
    assert all(KEY not in k for k in kept), kept
    # The only console errors are the browser's own lines for the wrong key's 401.
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("/v1/models" in m and "401" in m for m in severe), severe
    urls = _requested_urls(browser)
    assert [u for u in urls if not u.startswith(srv.url + "/") and not u.startswith("data:")] == []


STUB_STREAM = """
const real = window.fetch, enc = new TextEncoder();
const head = enc.encode('data: {"choices":[{"index":0,"delta":{"content":"東京"},"finish_reason":null}]}' +
                        '\\r\\n\\r\\n');
const tail = enc.encode('data: {"error":{"message":"generation failed: boom","type":"server_error"}}\\n\\n' +
                        'data: [DONE]\\n\\n');
window.fetch = (url, init) => url !== "/v1/chat/completions" ? real(url, init) : Promise.resolve(new Response(
  new ReadableStream({start(c) {  // split inside a multi-byte character and inside an event
    c.enqueue(head.slice(0, 50)); c.enqueue(head.slice(50)); c.enqueue(tail); c.close(); }}),
  {status: 200, headers: {"content-type": "text/event-stream"}}));
"""


@needs_browser
def test_error_event_mid_stream_is_shown(servers, browser):
    """The server's error event after a started stream (then [DONE]): the partial text stays, the error shows."""
    browser.get(servers["open"].url + "/")
    _until(browser, "the page to connect", "document.getElementById('status').textContent === 'ready'")
    browser.execute_script(STUB_STREAM)
    assert _say(browser, "hi") == "東京"
    assert browser.find_element("id", "error").text == "generation failed: boom"
    assert browser.find_element("css selector", ".msg.assistant .note").text == "error: generation failed: boom"
    assert _ready(browser)
