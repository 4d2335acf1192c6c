"""Issue 15, server items 1-5, one defect at a time against an in-process server: bounded fields (400), per-request
failure isolation, lone surrogates (400), size limits (413 / refused before tokenizing), cancellation of clients
that hung up, header/body deadlines, the 429 queue bound, and no open host without an API key."""

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from serve_toy import toy, toy_ckpt  # noqa: F401  (fixtures)

from moxin.errors import MoxinError
from moxin.serve import engine as engine_mod
from moxin.serve.engine import Engine, SamplingParams
from moxin.serve.server import BackgroundServer, ServerConfig, create_app

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server(toy):
    model, tok = toy
    engine = Engine(model, tok, max_batch=8)
    cfg = ServerConfig("toy", max_tokens_limit=200, max_body_bytes=64 * 1024, header_timeout_s=0.5,
                       body_timeout_s=0.5)
    with BackgroundServer(create_app(engine, tok, cfg)) as srv:
        yield srv, engine, tok
    engine.close()


def raw(srv, data: bytes, wait: float = 10.0) -> bytes:
    """Send raw bytes on a fresh connection; everything the server answers until it closes or `wait` passes."""
    with socket.create_connection((srv.host, srv.port), timeout=wait) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and _complete_response(out):
                    break
        except TimeoutError:
            pass
    return out


def _complete_response(out: bytes) -> bool:
    head, _, body = out.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def post_bytes(path: str, body: bytes, ctype: str = "application/json", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
            f"Connection: close\r\n\r\n").encode() + body


def status_and_error(resp: bytes) -> tuple[int, dict]:
    head, _, body = resp.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)["error"]


def _ok_error(r: httpx.Response, status: int, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if param is not None:
        assert err["param"] == param, err
    return err


# ------------------------------------------------------------------------------------------------ 1: field ranges
OUT_OF_RANGE = [
    ("seed", 2**64), ("seed", -(2**63) - 1), ("seed", 10**30), ("temperature", 1e-300), ("temperature", 2.5),
    ("temperature", -1), ("top_p", 1e-300), ("top_p", 0), ("top_p", 1.5), ("repetition_penalty", 1e-300),
    ("repetition_penalty", 0), ("repetition_penalty", 1e300), ("frequency_penalty", 2.5),
    ("presence_penalty", -1e300), ("n", 2), ("n", 0), ("max_tokens", 0), ("max_tokens", 10**20), ("top_k", 0),
    ("stop", ["a", "b", "c", "d", "e"]), ("stop", "x" * 300), ("logit_bias", {"5": 10}), ("top_logprobs", 3),
    ("tools", [{"type": "function"}]),
]


@pytest.mark.parametrize("field,value", OUT_OF_RANGE)
def test_out_of_range_fields_are_400_naming_the_field(server, field, value):
    srv, _, _ = server
    for path, base in [("/v1/completions", {"prompt": "x"}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})]:
        r = httpx.post(srv.url + path, json={**base, field: value}, timeout=TIMEOUT)
        _ok_error(r, 400, field)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400(server, literal):
    srv, _, _ = server
    body = f'{{"prompt": "x", "temperature": {literal}}}'.encode()
    r = httpx.post(srv.url + "/v1/completions", content=body, headers={"content-type": "application/json"})
    assert "finite" in _ok_error(r, 400)["message"]


def test_extreme_but_valid_values_are_served(server):
    srv, engine, tok = server
    for seed in (2**64 - 1, -(2**63)):
        r = httpx.post(srv.url + "/v1/completions", json={"prompt": "hello", "max_tokens": 4, "seed": seed,
                                                          "temperature": 0.01, "top_p": 1e-4,
                                                          "repetition_penalty": 10, "logit_bias": {}},
                       timeout=TIMEOUT)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1, r.text


def test_json_that_crashes_parsers_is_400(server):
    srv, _, _ = server
    for body in [b"[" * 60_000, b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}", b"", b"{", b'"just a string"']:
        r = httpx.post(srv.url + "/v1/completions", content=body, headers={"content-type": "application/json"},
                       timeout=TIMEOUT)
        _ok_error(r, 400)


# ------------------------------------------------------------------------------------------------ 1: isolation
def _fail_row(monkeypatch, marker_seed: int, after: int) -> None:
    """Make sampling raise for the request with seed `marker_seed` once it generated `after` tokens."""
    real = engine_mod._Row.pick

    def pick(self, logits):
        if self.p.seed == marker_seed and len(self.text.ids) >= after:
            raise RuntimeError("injected sampling failure")
        return real(self, logits)

    monkeypatch.setattr(engine_mod._Row, "pick", pick)


def test_a_failing_row_ends_only_its_request(toy, monkeypatch):
    model, tok = toy
    engine = Engine(model, tok, max_batch=8, gather_s=0.2)
    prompts = [tok.encode(p) for p in ("hello", "open data", "モデル 学習")]
    try:
        solo = [engine.generate(p, SamplingParams(max_tokens=40, ignore_eos=True)) for p in prompts]
        _fail_row(monkeypatch, marker_seed=77, after=5)
        with ThreadPoolExecutor(4) as pool:
            bad = pool.submit(engine.generate, tok.encode("train"), SamplingParams(max_tokens=40, temperature=0.7,
                                                                                   seed=77, ignore_eos=True))
            good = [pool.submit(engine.generate, p, SamplingParams(max_tokens=40, ignore_eos=True)) for p in prompts]
            with pytest.raises(RuntimeError, match="injected"):
                bad.result(timeout=TIMEOUT)
            got = [g.result(timeout=TIMEOUT) for g in good]
        assert max(engine.batches[-2:]) >= 3  # they really shared a batch with the failing row
        assert [(g.text, g.token_ids) for g in got] == [(s.text, s.token_ids) for s in solo]
        assert engine.finished["error"] == 1
    finally:
        engine.close()


def test_a_stream_failing_after_it_started_ends_with_an_error_event_and_done(server, monkeypatch):
    srv, _, _ = server
    _fail_row(monkeypatch, marker_seed=99, after=3)
    body = {"prompt": "hello", "max_tokens": 50, "temperature": 0.5, "seed": 99, "stream": True}
    with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        events = [ln for ln in r.iter_lines() if ln]
    assert events[-1] == "data: [DONE]"
    err = json.loads(events[-2][6:])["error"]
    assert err["type"] == "server_error" and "injected sampling failure" in err["message"]
    assert len(events) >= 4  # text deltas came first: the stream had started
    # non-streamed: the failing request gets an OpenAI-style 500, a concurrent good one its normal answer
    good = {"prompt": "open data", "max_tokens": 20, "temperature": 0}
    with ThreadPoolExecutor(2) as pool:
        f_bad = pool.submit(httpx.post, srv.url + "/v1/completions", json={**body, "stream": False}, timeout=TIMEOUT)
        f_good = pool.submit(httpx.post, srv.url + "/v1/completions", json=good, timeout=TIMEOUT)
        assert _ok_error(f_bad.result(), 500)["code"] == "generation_failed"
        assert f_good.result().status_code == 200


# ------------------------------------------------------------------------------------------------ 2: surrogates
def test_lone_surrogates_escaped_or_raw_are_400(server):
    srv, _, _ = server
    bodies = [rb'{"prompt": "\udc80"}', rb'{"prompt": ["ok", "a\ud800b"]}', rb'{"prompt": "x", "stop": "\udfff"}',
              rb'{"messages": [{"role": "user", "content": "\udc80"}]}', b'{"prompt": "\xed\xa0\x80"}',
              b'{"prompt": "\xff\xfe"}', b'{"prompt": "\xc0\x80"}']
    for body in bodies:
        path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
        r = httpx.post(srv.url + path, content=body, headers={"content-type": "application/json"}, timeout=TIMEOUT)
        err = _ok_error(r, 400)
        assert "surrogate" in err["message"] or "UTF-8" in err["message"], err


# ------------------------------------------------------------------------------------------------ 3: size limits
def test_body_over_the_cap_is_413_before_it_is_read(server):
    srv, _, _ = server
    r = httpx.post(srv.url + "/v1/completions", json={"prompt": "x" * 100_000}, timeout=TIMEOUT)
    assert "65536" in _ok_error(r, 413)["message"]
    # a declared 10 MB body is refused from its headers alone: the server answers before any body byte is sent
    head = b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" \
           b"Content-Length: 10000000\r\nConnection: close\r\n\r\n"
    status, err = status_and_error(raw(srv, head))
    assert status == 413 and err["code"] == "request_too_large"

    def chunks():  # no Content-Length: counted while it streams in
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"y" * 4096
        yield b'"}'

    r = httpx.post(srv.url + "/v1/completions", content=chunks(), headers={"content-type": "application/json"},
                   timeout=TIMEOUT)
    assert "at least" in _ok_error(r, 413)["message"]


class _CountingTokenizer:
    def __init__(self, tok) -> None:
        self.tok, self.calls = tok, 0

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def encode(self, *a, **k):
        self.calls += 1
        return self.tok.encode(*a, **k)


def test_overlong_text_is_refused_without_tokenizing(toy):
    model, tok = toy
    counting = _CountingTokenizer(tok)
    engine = Engine(model, tok, max_batch=2)
    try:
        with BackgroundServer(create_app(engine, counting, ServerConfig("toy"))) as srv:
            most = engine.context * ServerConfig().chars_per_token
            r = httpx.post(srv.url + "/v1/completions", json={"prompt": "z" * (most + 1)}, timeout=TIMEOUT)
            assert _ok_error(r, 400, "prompt")["code"] == "context_length_exceeded"
            msgs = [{"role": "user", "content": "z" * (most // 2 + 1)}] * 2
            r = httpx.post(srv.url + "/v1/chat/completions", json={"messages": msgs}, timeout=TIMEOUT)
            assert _ok_error(r, 400, "messages")["code"] == "context_length_exceeded"
            assert counting.calls == 0
            r = httpx.post(srv.url + "/v1/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=TIMEOUT)
            assert r.status_code == 200 and counting.calls == 1
    finally:
        engine.close()


def test_wrong_content_type_is_415(server):
    srv, _, _ = server
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, err = status_and_error(raw(srv, post_bytes("/v1/completions", b'{"prompt": "x"}', ctype)))
        assert status == 415 and "application/json" in err["message"]


# ------------------------------------------------------------------------------------------------ 4: cancellation
class _SlowModel(torch.nn.Module):
    """The toy model, 0.1 s per forward (sleeping, like torch compute, releases the GIL)."""

    def __init__(self, model):
        super().__init__()
        self.m, self.cfg, self.embed = model, model.cfg, model.embed

    def forward(self, *args, **kwargs):
        time.sleep(0.1)
        return self.m(*args, **kwargs)


@pytest.fixture()
def slow_server(toy):
    model, tok = toy
    engine = Engine(_SlowModel(model), tok, max_batch=2)
    cfg = ServerConfig("toy", max_tokens_limit=200, max_queue=1)
    with BackgroundServer(create_app(engine, tok, cfg)) as srv:
        yield srv, engine
    engine.close()


def _wait(cond, timeout: float) -> float:
    t0 = time.perf_counter()
    while not cond():
        assert time.perf_counter() - t0 < timeout, "condition not reached"
        time.sleep(0.01)
    return time.perf_counter() - t0


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_hangs_up_frees_its_slot_within_1s(slow_server, stream):
    srv, engine = slow_server
    body = json.dumps({"prompt": "hello", "max_tokens": 150, "temperature": 0, "stream": stream}).encode()
    socks = []
    for _ in range(2):  # both batch rows: 150 tokens × 0.1 s would hold them for 15 s
        s = socket.create_connection((srv.host, srv.port))
        s.sendall(post_bytes("/v1/completions", body))
        socks.append(s)
    _wait(lambda: engine.load()["running"] == 2, 10)
    time.sleep(0.3)
    cancelled = engine.finished["cancelled"]
    for s in socks:
        s.close()
    freed = _wait(lambda: engine.load()["running"] == 0, 1.0)
    assert engine.finished["cancelled"] == cancelled + 2
    health = httpx.get(srv.url + "/health", timeout=TIMEOUT).json()
    assert health["requests"] == 0 and health["running"] == 0 and health["waiting"] == 0
    print(f"\nslot freed {freed * 1000:.0f} ms after the client hung up (stream={stream})")


def test_a_full_queue_answers_429(slow_server):
    srv, engine = slow_server  # max_batch 2 + max_queue 1: the 4th concurrent request is refused
    body = {"prompt": "hello", "max_tokens": 8, "temperature": 0}
    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(httpx.post, srv.url + "/v1/completions", json=body, timeout=TIMEOUT) for _ in range(3)]
        _wait(lambda: engine.load()["running"] + engine.load()["waiting"] == 3, 10)
        err = _ok_error(httpx.post(srv.url + "/v1/completions", json=body, timeout=TIMEOUT), 429)
        assert err["code"] == "queue_full" and "--max-queue" in err["message"]
        assert all(f.result().status_code == 200 for f in running)
    assert httpx.post(srv.url + "/v1/completions", json=body, timeout=TIMEOUT).status_code == 200


def test_slow_clients_are_timed_out(server):
    srv, _, _ = server  # header_timeout_s = body_timeout_s = 0.5
    for partial in (b"", b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Ty"):
        t0 = time.perf_counter()
        assert raw(srv, partial, wait=10) == b""  # closed without an answer
        assert time.perf_counter() - t0 < 3
    t0 = time.perf_counter()
    status, err = status_and_error(raw(srv, post_bytes("/v1/completions", b'{"prompt": "x"}')[:-5], wait=10))
    assert status == 408 and err["code"] == "request_timeout" and time.perf_counter() - t0 < 3
    # a kept-alive connection that starts a second request head and stalls is closed as well
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        first = b""
        while not (b"\r\n\r\n" in first and _complete_response(first)):
            first += s.recv(65536)
        assert b"200 OK" in first
        s.sendall(b"GET /hea")
        t0 = time.perf_counter()
        assert s.recv(65536) == b"" and time.perf_counter() - t0 < 3


# ------------------------------------------------------------------------------------------------ 5: open host
def test_a_network_host_without_a_key_refuses_to_start(tmp_path, monkeypatch):
    from moxin.serve import commands

    loaded = []
    monkeypatch.delenv("MOXIN_API_KEY", raising=False)
    monkeypatch.setattr(commands, "_engine", lambda *a, **k: loaded.append(a) or (_ for _ in ()).throw(
        RuntimeError("model loading reached")))
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(MoxinError, match="--insecure-no-key") as e:
            commands.serve(tmp_path, host=host)
        assert "\n" not in str(e.value) and host in str(e.value)
    assert not loaded  # refused before loading anything
    for host, kw in [("127.0.0.2", {}), ("localhost", {}), ("::1", {}), ("0.0.0.0", {"api_key": "k"}),
                     ("0.0.0.0", {"insecure_no_key": True})]:
        with pytest.raises(RuntimeError, match="model loading reached"):
            commands.serve(tmp_path, host=host, **kw)
    assert len(loaded) == 5


def test_cli_refuses_an_open_host_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MOXIN_API_KEY"}
    p = subprocess.run([sys.executable, "-m", "moxin.cli", "serve", str(tmp_path), "--host", "0.0.0.0"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "--insecure-no-key" in p.stderr
