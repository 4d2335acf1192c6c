"""OpenAI-compatible HTTP API (FastAPI + uvicorn): GET /v1/models, POST /v1/completions, POST /v1/chat/completions
(non-streamed, or server-sent events ending in `data: [DONE]`).

Generation runs on the engine's thread; handlers only await an asyncio queue fed with `call_soon_threadsafe`, so the
event loop never blocks and concurrent requests reach the engine together (where they are batched). Tokenization
runs in the default executor for the same reason. Every error is an OpenAI-style body with a 4xx status."""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from moxin.serve.engine import Completion, Engine, SamplingParams, ServeError
from moxin.serve.protocol import (ChatRequest, CompletionRequest, envelope, error_body, new_id, usage)
from moxin.serve.text import end_of_turn_ids


@dataclass
class ServerConfig:
    model_name: str = "moxin"
    api_key: str | None = None
    max_tokens_limit: int = 2048  # the most tokens one request may ask for


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, type_: str = "invalid_request_error",
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code


def create_app(engine: Engine, tokenizer, cfg: ServerConfig) -> FastAPI:
    app = FastAPI(title="moxin", docs_url=None, redoc_url=None)
    chat_stops = end_of_turn_ids(tokenizer)
    _install_error_handlers(app)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if cfg.api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {cfg.api_key}".encode()):
                return JSONResponse(error_body("invalid or missing API key: send 'Authorization: Bearer <key>'",
                                               "authentication_error", code="invalid_api_key"), status_code=401)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model", "created": 0,
                                            "owned_by": "moxin"}]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        _check_common(body, cfg)
        prompts = await asyncio.to_thread(_encode_prompts, tokenizer, body.prompt)
        if body.stream and len(prompts) > 1:
            raise APIError(400, "stream=true takes a single prompt; send one prompt per request", "prompt")
        params = [_params(body, len(p), body.max_tokens, engine, cfg, []) for p in prompts]
        for p, q in zip(prompts, params):
            engine.check(p, q)  # before a streamed response commits to status 200
        rid = new_id("cmpl")
        if body.stream:
            return _sse(_completion_chunks(engine, prompts[0], params[0], rid, cfg.model_name, body))
        done = await asyncio.gather(*[_complete(engine, p, q) for p, q in zip(prompts, params)])
        choices = [{"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
                   for i, c in enumerate(done)]
        return envelope("text_completion", rid, cfg.model_name, choices,
                        usage=usage(sum(c.prompt_tokens for c in done), sum(c.completion_tokens for c in done)))

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        _check_common(body, cfg)
        prompt = await asyncio.to_thread(_encode_chat, tokenizer, body)
        params = _params(body, len(prompt), body.max_completion_tokens or body.max_tokens, engine, cfg, chat_stops)
        engine.check(prompt, params)
        rid = new_id("chatcmpl")
        if body.stream:
            return _sse(_chat_chunks(engine, prompt, params, rid, cfg.model_name, body))
        c = await _complete(engine, prompt, params)
        choice = {"index": 0, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason,
                  "logprobs": None}
        return envelope("chat.completion", rid, cfg.model_name, [choice], usage=usage(c.prompt_tokens,
                                                                                      c.completion_tokens))

    return app


# ------------------------------------------------------------------------------------------------ requests
def _check_common(body, cfg: ServerConfig) -> None:
    if body.model is not None and body.model != cfg.model_name:
        raise APIError(404, f"the model {body.model!r} does not exist; this server serves {cfg.model_name!r}",
                       "model", code="model_not_found")
    if body.logprobs:
        raise APIError(400, "logprobs are not supported by this server; remove 'logprobs'", "logprobs")


def _encode_prompts(tok, prompt) -> list[list[int]]:
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        return [list(prompt)]
    texts = [prompt] if isinstance(prompt, str) else prompt
    return [tok.encode(t) for t in texts]


def _encode_chat(tok, body: ChatRequest) -> list[int]:
    if not getattr(tok, "chat_template", None):
        raise APIError(400, "this model's tokenizer has no chat template; use /v1/completions", "messages")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    try:
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # noqa: BLE001 - a template may reject a conversation (e.g. roles not alternating)
        raise APIError(400, f"the chat template rejected these messages: {e}", "messages") from None
    return tok.encode(text, add_special_tokens=False)


def _params(body, prompt_len: int, max_tokens: int | None, engine: Engine, cfg: ServerConfig,
            stop_ids: list[int]) -> SamplingParams:
    if prompt_len >= engine.context:
        raise APIError(400, f"this model's maximum context length is {engine.context} tokens; the prompt has "
                            f"{prompt_len} tokens: shorten it", "messages" if isinstance(body, ChatRequest) else "prompt",
                       code="context_length_exceeded")
    if max_tokens is not None and max_tokens > cfg.max_tokens_limit:
        raise APIError(400, f"max_tokens={max_tokens} is over this server's limit of {cfg.max_tokens_limit}",
                       "max_tokens")
    if max_tokens is None:  # chat default: as much as fits
        max_tokens = min(cfg.max_tokens_limit, engine.context - prompt_len)
    return SamplingParams(max_tokens=max_tokens, temperature=float(body.temperature), top_p=float(body.top_p),
                          top_k=body.top_k, repetition_penalty=float(body.repetition_penalty),
                          frequency_penalty=float(body.frequency_penalty),
                          presence_penalty=float(body.presence_penalty), seed=body.seed, stop=body.stops(),
                          stop_token_ids=stop_ids)


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


async def _complete(engine: Engine, prompt: list[int], params: SamplingParams) -> Completion:
    async for ev in _events(engine, prompt, params):
        if isinstance(ev, Completion):
            return ev
    raise RuntimeError("engine stream ended without a completion")  # unreachable


def _sse(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body():
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _completion_chunks(engine, prompt, params, rid, model, body) -> AsyncIterator[dict[str, Any]]:
    async for ev in _events(engine, prompt, params):
        if isinstance(ev, str):
            yield envelope("text_completion", rid, model, [{"index": 0, "text": ev, "finish_reason": None,
                                                            "logprobs": None}])
        else:
            yield envelope("text_completion", rid, model, [{"index": 0, "text": "", "finish_reason": ev.finish_reason,
                                                            "logprobs": None}])
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


# ------------------------------------------------------------------------------------------------ errors
def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        errs = e.errors()
        first: dict[str, Any] = dict(errs[0]) if errs else {"loc": (), "msg": "invalid request"}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        if first.get("type") == "json_invalid":
            msg = f"the request body is not valid JSON ({first.get('ctx', {}).get('error', first.get('msg'))})"
        else:
            got = first.get("input")
            shown = "" if isinstance(got, dict) or got is None else f" (got {json.dumps(got, default=str)[:80]})"
            msg = f"{'.'.join(loc) or 'body'}: {first.get('msg')}{shown}"
        return JSONResponse(error_body(msg, param=".".join(loc) or None), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {e.detail}", kind),
                            status_code=e.status_code)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, e: ServeError):
        return JSONResponse(error_body(str(e)), status_code=400)


# ------------------------------------------------------------------------------------------------ running
class BackgroundServer:
    """uvicorn in a thread on a socket bound before start (port 0 → a free port); for tests and benchmarks."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "BackgroundServer":
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
