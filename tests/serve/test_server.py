"""Acceptance 1 and 2 of [6/8]: the official openai client talks to the server; a bounded loopback load test;
malformed requests get OpenAI-style 4xx errors and the server keeps serving."""

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from serve_toy import toy, toy_ckpt  # noqa: F401  (fixtures)

from moxin.serve.engine import Engine, SamplingParams
from moxin.serve.server import BackgroundServer, ServerConfig, create_app
from moxin.serve.text import end_of_turn_ids

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server(toy):
    model, tok = toy
    engine = Engine(model, tok, max_batch=8)
    app = create_app(engine, tok, ServerConfig("toy", max_tokens_limit=64))
    with BackgroundServer(app) as srv:
        yield srv, engine, tok
    engine.close()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    srv, _, _ = server
    return OpenAI(base_url=srv.url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)


def _chat_ids(tok, messages):
    return tok.encode(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                      add_special_tokens=False)


def test_openai_client_models_completion_chat_and_stream(server, client):
    _, engine, tok = server
    assert [m.id for m in client.models.list().data] == ["toy"]

    c = client.completions.create(model="toy", prompt="hello world", max_tokens=10, temperature=0)
    ref = engine.generate(tok.encode("hello world"), SamplingParams(max_tokens=10))
    assert c.choices[0].text == ref.text and c.choices[0].finish_reason == ref.finish_reason
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (ref.prompt_tokens, ref.completion_tokens)

    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "東京 data"}]
    chat = client.chat.completions.create(model="toy", messages=messages, max_tokens=20, temperature=0)
    ref = engine.generate(_chat_ids(tok, messages), SamplingParams(max_tokens=20,
                                                                   stop_token_ids=end_of_turn_ids(tok)))
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == ref.text and ref.text
    assert chat.usage.prompt_tokens == len(_chat_ids(tok, messages))
    assert chat.usage.completion_tokens == ref.completion_tokens

    stream = client.chat.completions.create(model="toy", messages=messages, max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == chat.choices[0].message.content  # streamed == non-streamed (greedy)
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == chat.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens

    streamed = client.completions.create(model="toy", prompt="hello world", max_tokens=10, temperature=0, stream=True)
    assert "".join(ch.choices[0].text for ch in streamed) == c.choices[0].text


def test_sse_wire_format_ends_with_done(server):
    srv, _, _ = server
    body = {"model": "toy", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}
    with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=TIMEOUT) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [ln for ln in r.iter_lines() if ln]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"


MALFORMED = [
    ("/v1/completions", b"{not json", "not valid JSON"),
    ("/v1/completions", {"model": "toy", "prompt": 42}, "prompt"),
    ("/v1/completions", {"model": "toy", "prompt": "hi", "max_tokens": "ten"}, "max_tokens"),
    ("/v1/completions", {"model": "toy", "prompt": "hi", "max_tokens": 65}, "over this server's limit of 64"),
    ("/v1/completions", {"model": "toy", "prompt": "hi", "temperature": "hot"}, "temperature"),
    ("/v1/completions", {"model": "toy", "prompt": "data " * 300}, "maximum context length is 256"),
    ("/v1/completions", {"model": "toy", "prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ("/v1/chat/completions", {"model": "toy", "messages": "hi"}, "messages"),
    ("/v1/chat/completions", {"model": "toy", "messages": []}, "messages"),
    ("/v1/chat/completions", {"model": "toy", "messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ("/v1/chat/completions", {"model": "toy", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
     "stream"),
    ("/v1/chat/completions", {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, "does not exist"),
    ("/v1/chat/completions", {"model": "toy", "messages": [{"role": "user", "content": "x"}], "n": 3}, "n"),
    ("/v1/nothing", {}, "Not Found"),
]


def _post(client: httpx.Client, url: str, body) -> httpx.Response:
    if isinstance(body, bytes):
        return client.post(url, content=body, headers={"content-type": "application/json"})
    return client.post(url, json=body)


@pytest.mark.parametrize("path,body,needle", MALFORMED)
def test_malformed_requests_get_openai_style_4xx(server, path, body, needle):
    srv, _, _ = server
    with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as c:
        r = _post(c, path, body)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert needle in err["message"] or needle == err["param"], err
    assert set(err) == {"message", "type", "param", "code"}


def test_api_key_is_enforced(toy):
    model, tok = toy
    engine = Engine(model, tok, max_batch=2)
    try:
        with BackgroundServer(create_app(engine, tok, ServerConfig("toy", api_key="s3cret"))) as srv:
            assert srv.host == "127.0.0.1"
            body = {"model": "toy", "prompt": "hi", "max_tokens": 2}
            r = httpx.post(srv.url + "/v1/completions", json=body, timeout=TIMEOUT)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            r = httpx.post(srv.url + "/v1/completions", json=body, headers={"Authorization": "Bearer s3cret"},
                           timeout=TIMEOUT)
            # sampled (temperature 1) from a random toy model, which may end at its EOS after 1 token
            assert r.status_code == 200 and 1 <= r.json()["usage"]["completion_tokens"] <= 2
    finally:
        engine.close()


def test_load_200_requests_8_clients_then_200_malformed(server):
    srv, engine, tok = server
    prompts = ["hello", "open data", "モデル 学習", "serve token chat", "world 12", "train moxin", "東京", "chat hello"]
    expected = {p: engine.generate(tok.encode(p), SamplingParams(max_tokens=8)).text for p in prompts}
    batches_before = len(engine.batches)

    local = threading.local()  # one keep-alive connection per client thread, as real clients do

    def client() -> httpx.Client:
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=srv.url, timeout=TIMEOUT)
            opened.append(local.c)
        return local.c

    opened: list[httpx.Client] = []

    def one(i: int) -> tuple[float, int, bool]:
        p = prompts[i % len(prompts)]
        t0 = time.perf_counter()
        r = client().post("/v1/completions", json={"model": "toy", "prompt": p, "max_tokens": 8, "temperature": 0})
        dt = time.perf_counter() - t0
        ok = r.status_code == 200 and r.json()["choices"][0]["text"] == expected[p]
        return dt, r.json()["usage"]["completion_tokens"] if ok else 0, ok

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(200)))
    wall = time.perf_counter() - t0
    assert all(ok for _, _, ok in results), sum(not ok for _, _, ok in results)
    lat = sorted(dt for dt, _, _ in results)
    p50, p99 = statistics.median(lat), lat[int(0.99 * len(lat)) - 1]
    tokens = sum(n for _, n, _ in results)
    print(f"\nload: 200 requests, 8 clients: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"{tokens / wall:.0f} completion tokens/s, {200 / wall:.1f} req/s, "
          f"mean batch {statistics.mean(engine.batches[batches_before:]):.2f}")
    assert max(engine.batches[batches_before:]) > 1

    def bad(i: int) -> int:
        path, body, _ = MALFORMED[i % len(MALFORMED)]
        return _post(client(), path, body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(bad, range(200)))
    for c in opened:
        c.close()
    assert all(400 <= c < 500 for c in codes), sorted(set(codes))
    with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as c:  # still serving
        r = c.post("/v1/completions", json={"model": "toy", "prompt": prompts[0], "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == expected[prompts[0]]


def test_moxin_serve_command_in_a_real_process(toy_ckpt):
    """`moxin serve` binds 127.0.0.1, needs the API key from MOXIN_API_KEY, answers, and stops on SIGINT."""
    import os
    import signal
    import subprocess

    from serve_toy import free_port, start_serve, wait_healthy

    port = free_port()
    env = {**os.environ, "MOXIN_API_KEY": "k3y"}
    proc = start_serve(toy_ckpt, port, "--max-tokens-limit", "32", env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, lambda: proc.stderr.read() if proc.poll() else "timeout", poll=0.3)
        assert httpx.get(url + "/v1/models", timeout=10).status_code == 401
        r = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k3y"}, timeout=10)
        assert r.json()["data"][0]["id"] == "toy"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "serving 'toy' on http://127.0.0.1:" in err and "API key required" in err


class _SlowModel(torch.nn.Module):
    """The toy model, 0.2 s per forward (sleeping, like torch compute, releases the GIL)."""

    def __init__(self, model):
        super().__init__()
        self.m, self.cfg, self.embed = model, model.cfg, model.embed

    def forward(self, *args, **kwargs):
        time.sleep(0.2)
        return self.m(*args, **kwargs)


def test_generation_never_blocks_the_event_loop(toy):
    model, tok = toy
    engine = Engine(_SlowModel(model), tok, max_batch=2)
    try:
        with BackgroundServer(create_app(engine, tok, ServerConfig("toy"))) as srv:
            body = {"model": "toy", "prompt": "hello", "max_tokens": 10, "temperature": 0}
            with ThreadPoolExecutor(1) as pool:
                t0 = time.perf_counter()
                long = pool.submit(httpx.post, srv.url + "/v1/completions", json=body, timeout=TIMEOUT)
                time.sleep(0.3)
                lat = []
                for _ in range(5):
                    t = time.perf_counter()
                    assert httpx.get(srv.url + "/health", timeout=TIMEOUT).status_code == 200
                    lat.append(time.perf_counter() - t)
                assert not long.done()  # the generation (≥ 2.2 s) is still running
                assert long.result().json()["usage"]["completion_tokens"] == 10
                assert time.perf_counter() - t0 > 2.0
            assert max(lat) < 1.0, lat  # answered while the engine thread was busy
    finally:
        engine.close()
