"""OpenAI-compatible HTTP API (FastAPI + uvicorn): GET /v1/models, POST /v1/completions, POST /v1/chat/completions
(non-streamed, or server-sent events ending in `data: [DONE]`).

Generation runs on the engine's thread; handlers only await an asyncio queue fed with `call_soon_threadsafe`, so the
event loop never blocks and concurrent requests reach the engine together (where they are batched). Tokenization
runs in the default executor for the same reason. Every error is an OpenAI-style body.

No single request can harm another: the body is read with a size cap and a deadline (413, 408), parsed strictly and
validated against bounded ranges before it reaches the engine (400), its text is length-checked before tokenizing,
requests beyond the batch plus `max_queue` are refused (429), the work of a client that hung up is cancelled, a
stream that fails after it started ends with an error event and `[DONE]`, and uvicorn closes connections whose
request headers do not arrive in time (`GuardedH11`)."""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import h11
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from moxin.serve.engine import Completion, Engine, SamplingParams, ServeError
from moxin.serve.protocol import (
    APIError,
    ChatRequest,
    CompletionRequest,
    envelope,
    error_body,
    new_id,
    parse_json,
    usage,
    validate,
)
from moxin.serve.text import end_of_turn_ids, render_chat

__all__ = ["APIError", "BackgroundServer", "ServerConfig", "create_app", "uvicorn_config"]


@dataclass
class ServerConfig:
    model_name: str = "moxin"
    api_key: str | None = None
    max_tokens_limit: int = 2048  # the most tokens one request may ask for
    max_body_bytes: int = 4 * 2**20  # larger request bodies get 413 (checked while reading)
    max_queue: int = 64  # requests waiting beyond the batch; more get 429
    body_timeout_s: float = 30.0  # the whole body must arrive within this (else 408)
    header_timeout_s: float = 10.0  # request headers must arrive within this (else the connection is closed)
    keep_alive_s: int = 5  # idle keep-alive connections close after this
    max_header_bytes: int = 16 * 2**10  # uvicorn/h11 refuses larger request heads
    max_connections: int = 512  # uvicorn answers 503 beyond this many open connections
    chars_per_token: int = 32  # prompts longer than context × this are refused without tokenizing


class _Gate:
    """Counts the requests in the server (reading, tokenizing, queued or decoding); refuses more than `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count = limit, 0

    def admit(self, n: int = 1) -> None:
        if self.count + n > self.limit:
            raise APIError(
                429,
                f"the server is busy: {self.count} requests are queued or running (limit "
                f"{self.limit}, set with --max-queue); retry later",
                type_="rate_limit_error",
                code="queue_full",
            )

    @contextmanager
    def hold(self, n: int = 1) -> Iterator[None]:
        self.admit(n)
        self.count += n
        try:
            yield
        finally:
            self.count -= n


class _KeyCheck:
    """ASGI middleware: /v1/ paths need 'Authorization: Bearer KEY' (compared in constant time)."""

    def __init__(self, app, key: str) -> None:
        self.app, self.want = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.want):
                body = error_body(
                    "invalid or missing API key: send 'Authorization: Bearer <key>'",
                    "authentication_error",
                    code="invalid_api_key",
                )
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(engine: Engine, tokenizer, cfg: ServerConfig) -> FastAPI:
    app = FastAPI(title="moxin", docs_url=None, redoc_url=None)
    chat_stops = end_of_turn_ids(tokenizer)
    gate = _Gate(engine.max_batch + cfg.max_queue)
    app.state.config = cfg  # BackgroundServer reads the connection limits from it
    _install_error_handlers(app)
    _install_chat_page(app, cfg)
    if cfg.api_key:
        app.add_middleware(_KeyCheck, key=cfg.api_key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "requests": gate.count, **engine.load(), "cancelled": engine.finished["cancelled"]}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": cfg.model_name, "object": "model", "created": 0, "owned_by": "moxin"}],
        }

    @app.post("/v1/completions")
    async def completions(request: Request):
        with gate.hold():
            body = validate(CompletionRequest, parse_json(await _read_body(request, cfg)))
            _check_common(body, cfg, engine)
            many = isinstance(body.prompt, list) and isinstance(body.prompt[0], str)
            with gate.hold(len(body.prompt) - 1 if many else 0):
                return await _completions(request, engine, tokenizer, cfg, gate, body)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        with gate.hold():
            body = validate(ChatRequest, parse_json(await _read_body(request, cfg)))
            _check_common(body, cfg, engine)
            prompt = await asyncio.to_thread(_encode_chat, tokenizer, body)
            params = _params(body, len(prompt), body.max_completion_tokens or body.max_tokens, engine, cfg, chat_stops)
            engine.check(prompt, params)
            rid = new_id("chatcmpl")
            if body.stream:
                return _sse(_chat_chunks(engine, prompt, params, rid, cfg.model_name, body), gate)
            c = await _unless_gone(request, _complete(engine, prompt, params))
        if c is None:
            return _gone()
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": c.text},
            "finish_reason": c.finish_reason,
            "logprobs": None,
        }
        return envelope(
            "chat.completion", rid, cfg.model_name, [choice], usage=usage(c.prompt_tokens, c.completion_tokens)
        )

    return app


async def _completions(
    request: Request, engine: Engine, tokenizer, cfg: ServerConfig, gate: _Gate, body: CompletionRequest
):
    prompts = await asyncio.to_thread(_encode_prompts, tokenizer, body.prompt)
    if body.stream and len(prompts) > 1:
        raise APIError(400, "stream=true takes a single prompt; send one prompt per request", "prompt")
    params = [_params(body, len(p), body.max_tokens, engine, cfg, []) for p in prompts]
    for p, q in zip(prompts, params):
        engine.check(p, q)  # before a streamed response commits to status 200
    rid = new_id("cmpl")
    if body.stream:
        return _sse(_completion_chunks(engine, prompts[0], params[0], rid, cfg.model_name, body), gate)
    done = await _unless_gone(request, asyncio.gather(*[_complete(engine, p, q) for p, q in zip(prompts, params)]))
    if done is None:
        return _gone()
    choices = [
        {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None} for i, c in enumerate(done)
    ]
    return envelope(
        "text_completion",
        rid,
        cfg.model_name,
        choices,
        usage=usage(sum(c.prompt_tokens for c in done), sum(c.completion_tokens for c in done)),
    )


# ------------------------------------------------------------------------------------------------ bodies
async def _read_body(request: Request, cfg: ServerConfig) -> bytes:
    """The request body, refused (415, 413, 408) before it is all in memory when it cannot be a valid request."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise APIError(
            415,
            f"Content-Type {kind[:60]!r} is not supported; send 'Content-Type: application/json'",
            code="unsupported_media_type",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cfg.max_body_bytes:
        raise _too_large(int(declared), cfg)
    chunks: list[bytes] = []
    size, deadline = 0, time.monotonic() + cfg.body_timeout_s
    while True:
        try:
            msg = await asyncio.wait_for(request.receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise APIError(
                408,
                f"the request body did not arrive within {cfg.body_timeout_s:g} s; send it at once",
                code="request_timeout",
            ) from None
        if msg["type"] == "http.disconnect":  # nobody is left to answer
            raise APIError(499, "the client closed the connection", code="client_closed_request")
        size += len(msg.get("body", b""))
        if size > cfg.max_body_bytes:
            raise _too_large(size, cfg, "at least ")
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(chunks)


def _too_large(size: int, cfg: ServerConfig, prefix: str = "") -> APIError:
    return APIError(
        413,
        f"the request body has {prefix}{size} bytes, over this server's limit of "
        f"{cfg.max_body_bytes} (--max-body-bytes); shorten the prompt",
        code="request_too_large",
    )


async def _unless_gone(request: Request, work) -> Any:
    """Await `work`, or cancel it (and so its engine requests) and return None once the client hangs up."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        return None
    finally:
        gone.cancel()
        task.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _gone() -> JSONResponse:
    """The answer to a client that hung up (nobody reads it; 499 is nginx's "client closed request")."""
    return JSONResponse(error_body("the client closed the connection", code="client_closed_request"), status_code=499)


# ------------------------------------------------------------------------------------------------ requests
def _check_common(body, cfg: ServerConfig, engine: Engine) -> None:
    """Checks before any tokenizing: the model name, unsupported options, and the text length."""
    if body.model is not None and body.model != cfg.model_name:
        raise APIError(
            404,
            f"the model {body.model!r} does not exist; this server serves {cfg.model_name!r}",
            "model",
            code="model_not_found",
        )
    if body.logprobs:
        raise APIError(400, "logprobs are not supported by this server; remove 'logprobs'", "logprobs")
    chars, most = body.chars(), engine.context * cfg.chars_per_token
    if chars > most:  # no tokenizer packs this many characters into the context: refuse without tokenizing
        raise _too_long(body, engine, f"the text has {chars} characters (over {most}, {cfg.chars_per_token} per token)")


def _encode_prompts(tok, prompt) -> list[list[int]]:
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        return [list(prompt)]
    texts = [prompt] if isinstance(prompt, str) else prompt
    try:
        return [tok.encode(t) for t in texts]
    except Exception as e:  # text the tokenizer cannot take is this request's problem
        raise APIError(
            400, f"the tokenizer could not encode the prompt ({type(e).__name__}: {str(e)[:200]})", "prompt"
        ) from None


def _encode_chat(tok, body: ChatRequest) -> list[int]:
    if not getattr(tok, "chat_template", None):
        raise APIError(400, "this model's tokenizer has no chat template; use /v1/completions", "messages")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    try:
        text = render_chat(tok, messages, add_generation_prompt=True)  # size- and time-bounded Jinja
    except Exception as e:  # a template may reject a conversation (e.g. roles not alternating)
        raise APIError(400, f"the chat template rejected these messages: {e}", "messages") from None
    try:
        return tok.encode(text, add_special_tokens=False)
    except Exception as e:
        raise APIError(
            400, f"the tokenizer could not encode the messages ({type(e).__name__}: {str(e)[:200]})", "messages"
        ) from None


def _too_long(body, engine: Engine, what: str) -> APIError:
    """OpenAI's context_length_exceeded error: `what` says how long the request is."""
    param = "messages" if isinstance(body, ChatRequest) else "prompt"
    msg = f"this model's maximum context length is {engine.context} tokens; {what}: shorten it"
    return APIError(400, msg, param, code="context_length_exceeded")


def _params(
    body, prompt_len: int, max_tokens: int | None, engine: Engine, cfg: ServerConfig, stop_ids: list[int]
) -> SamplingParams:
    if prompt_len >= engine.context:
        raise _too_long(body, engine, f"the prompt has {prompt_len} tokens")
    if max_tokens is not None and max_tokens > cfg.max_tokens_limit:
        raise APIError(
            400, f"max_tokens={max_tokens} is over this server's limit of {cfg.max_tokens_limit}", "max_tokens"
        )
    if max_tokens is None:  # chat default: as much as fits
        max_tokens = min(cfg.max_tokens_limit, engine.context - prompt_len)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=float(body.temperature),
        top_p=float(body.top_p),
        top_k=body.top_k,
        repetition_penalty=float(body.repetition_penalty),
        frequency_penalty=float(body.frequency_penalty),
        presence_penalty=float(body.presence_penalty),
        seed=body.seed,
        stop=body.stops(),
        stop_token_ids=stop_ids,
    )


async def _events(engine: Engine, prompt: list[int], params: SamplingParams) -> AsyncIterator[str | Completion]:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()

    def deliver(ev: str | Completion | BaseException) -> None:
        loop.call_soon_threadsafe(q.put_nowait, ev)

    req = engine.submit(prompt, params, deliver)
    try:
        while True:
            ev = await q.get()
            if isinstance(ev, BaseException):
                raise ev
            yield ev
            if isinstance(ev, Completion):
                return
    finally:
        req.cancel()  # a client that hung up frees its batch row


def _as_api_error(e: Exception) -> APIError:
    """An exception from generating one request → the error its client gets (the others keep going)."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, ServeError):
        return APIError(400, str(e))
    return APIError(
        500,
        f"generating this request failed ({type(e).__name__}: {str(e)[:200]}); other requests are unaffected",
        type_="server_error",
        code="generation_failed",
    )


async def _complete(engine: Engine, prompt: list[int], params: SamplingParams) -> Completion:
    try:
        async for ev in _events(engine, prompt, params):
            if isinstance(ev, Completion):
                return ev
    except Exception as e:  # mapped to an OpenAI-style error
        raise _as_api_error(e) from None
    raise RuntimeError("engine stream ended without a completion")  # unreachable


def _sse(chunks: AsyncIterator[dict[str, Any]], gate: _Gate) -> StreamingResponse:
    """Server-sent events; a failure after the stream started ends it with an error event, then `[DONE]`."""

    async def body():
        gate.count += 1  # counted while it streams (the handler that admitted it has returned)
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except Exception as e:  # the status line (200) is already sent
            err = _as_api_error(e)
            yield f"data: {json.dumps(error_body(err.message, err.type, err.param, err.code))}\n\n"
        finally:
            gate.count -= 1
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _completion_chunks(engine, prompt, params, rid, model, body) -> AsyncIterator[dict[str, Any]]:
    async for ev in _events(engine, prompt, params):
        if isinstance(ev, str):
            yield envelope(
                "text_completion", rid, model, [{"index": 0, "text": ev, "finish_reason": None, "logprobs": None}]
            )
        else:
            yield envelope(
                "text_completion",
                rid,
                model,
                [{"index": 0, "text": "", "finish_reason": ev.finish_reason, "logprobs": None}],
            )
            if body.stream_options and body.stream_options.include_usage:
                yield envelope("text_completion", rid, model, [], usage=usage(ev.prompt_tokens, ev.completion_tokens))


async def _chat_chunks(engine, prompt, params, rid, model, body) -> AsyncIterator[dict[str, Any]]:
    kind = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return envelope(kind, rid, model, [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}])

    yield chunk({"role": "assistant", "content": ""})
    async for ev in _events(engine, prompt, params):
        if isinstance(ev, str):
            yield chunk({"content": ev})
        else:
            yield chunk({}, ev.finish_reason)
            if body.stream_options and body.stream_options.include_usage:
                yield envelope(kind, rid, model, [], usage=usage(ev.prompt_tokens, ev.completion_tokens))


# ------------------------------------------------------------------------------------------------ chat page
def _install_chat_page(app: FastAPI, cfg: ServerConfig) -> None:
    """GET / → the chat page (static/chat.html), which talks to this server's /v1/chat/completions.

    The page is told whether to ask for the API key; a Content-Security-Policy pins its one inline script and style
    by hash and lets it connect to this origin only, so model text can never load or run anything."""
    import base64
    import hashlib
    import re
    from importlib.resources import files

    from fastapi.responses import HTMLResponse

    html = files("moxin.serve").joinpath("static/chat.html").read_text(encoding="utf-8")
    if cfg.api_key:
        html = html.replace('data-api-key="none"', 'data-api-key="required"', 1)

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in found)

    csp = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }

    @app.get("/", include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)


# ------------------------------------------------------------------------------------------------ errors
def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            error_body(f"{request.method} {request.url.path}: {e.detail}", kind), status_code=e.status_code
        )

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, e: ServeError):
        return JSONResponse(error_body(str(e)), status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception):  # a bug: still an OpenAI-style body
        return JSONResponse(
            error_body(f"internal error ({type(e).__name__}); see the server log", "server_error"), status_code=500
        )


# ------------------------------------------------------------------------------------------------ running
class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for request headers: uvicorn times out idle keep-alive connections
    but waits forever on a client that sends part of a request head (or nothing after connecting)."""

    header_timeout_s = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # a new request head starts (also on a kept-alive connection)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.warning(
                "closing a connection whose request head did not arrive within %g s", self.header_timeout_s
            )
            self.transport.close()


def uvicorn_config(app: FastAPI, cfg: ServerConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"):
    """uvicorn settings that keep slow or greedy clients from holding the server: header deadline, keep-alive
    timeout, request-head size, connection limit (503 beyond it)."""
    import uvicorn

    protocol = type("GuardedH11", (GuardedH11,), {"header_timeout_s": cfg.header_timeout_s})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,
        timeout_keep_alive=cfg.keep_alive_s,
        h11_max_incomplete_event_size=cfg.max_header_bytes,
        limit_concurrency=cfg.max_connections,
        timeout_graceful_shutdown=2,
    )


class BackgroundServer:
    """uvicorn in a thread on a socket bound before start (port 0 → a free port); for tests and benchmarks."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, cfg: ServerConfig | None = None) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        cfg = cfg or getattr(app.state, "config", None) or ServerConfig()
        self.server = uvicorn.Server(uvicorn_config(app, cfg, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
