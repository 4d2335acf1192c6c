"""The OpenAI request bodies moxin accepts, how a raw body becomes one, and the response/error shapes it returns.

A body goes through `parse_json` (strict UTF-8, no NaN/Infinity literals, no non-finite numbers, no lone
surrogates, bounded nesting) and then `validate` (pydantic, strict types: a string where a number belongs is a 400,
not a silent cast). Every numeric field is bounded so that no accepted value can break sampling: the ranges follow
OpenAI's documentation, with small positive minimums where a value such as temperature=1e-300 would overflow fp32.
Fields OpenAI clients commonly send that change nothing here (`user`, `store`, ...) are ignored; any other unknown
field is a 400 naming it, rather than a silent no-op (`tools`, `response_format`, ... are not implemented)."""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

Number = StrictFloat | StrictInt
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what a 64-bit seed (signed or unsigned) can hold
TEMPERATURE_MIN = 0.01  # below this (except 0 = greedy) logits / temperature overflows fp32
TOP_P_MIN = 1e-4  # below this the nucleus is rounded to nothing in fp32
MAX_STOPS, MAX_STOP_CHARS = 4, 256
MAX_PROMPTS = 64  # prompts in one /v1/completions request
IGNORED_FIELDS = frozenset(
    {"user", "store", "metadata", "service_tier", "safety_identifier", "prompt_cache_key", "parallel_tool_calls"}
)


class APIError(Exception):
    """A request the server refuses: the HTTP status and the OpenAI-style error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        type_: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type_, code


# ------------------------------------------------------------------------------------------------ raw body → JSON
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a finite number")


def _finite(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"the number {text[:40]} is out of range; send a finite number")
    return x


def parse_json(raw: bytes) -> Any:
    """Request bytes → a JSON value, or APIError 400 (invalid UTF-8, invalid JSON, NaN/Infinity, lone surrogate)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(
            400,
            f"the request body is not valid UTF-8 (byte {e.start}: {raw[e.start : e.start + 4]!r}); "
            f"send UTF-8 encoded JSON",
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply; send a flat OpenAI request object") from None
    except ValueError as e:  # JSONDecodeError, too many digits, NaN/Infinity
        raise APIError(400, f"the request body is not valid JSON ({str(e)[:200]})") from None
    where = _lone_surrogate(value)
    if where is not None:
        raise APIError(
            400,
            f"{where or 'body'}: the text contains a lone UTF-16 surrogate (e.g. \\udc80), which is "
            f"not a character; send valid Unicode",
            where or None,
        )
    return value


def _lone_surrogate(value: Any) -> str | None:
    """The dotted path of the first string (key or value) holding a lone surrogate, else None (iterative walk)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return path
        elif isinstance(v, dict):
            for k, x in v.items():
                sub = f"{path}.{k}" if path else str(k)
                stack.append((path, k))
                stack.append((sub, x))
        elif isinstance(v, list):
            stack.extend((f"{path}.{i}" if path else str(i), x) for i, x in enumerate(v))
    return None


def validate(model: type[BaseModel], data: Any) -> Any:
    """A parsed JSON value → the request model, or APIError 400 naming the first bad field and its value."""
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(model.model_fields) - IGNORED_FIELDS)
    if unknown:
        raise APIError(
            400,
            f"unknown field {unknown[0]!r}: this server does not implement it; remove it "
            f"(accepted: {', '.join(sorted(model.model_fields))})",
            unknown[0],
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in first.get("loc", ()))
        got = first.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {json.dumps(got, default=str)[:80]})"
        msg = first.get("msg", "invalid value").removeprefix("Value error, ")
        raise APIError(400, f"{loc or 'body'}: {msg}{shown}", loc or None) from None


# ------------------------------------------------------------------------------------------------ requests
class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Base):
    include_usage: StrictBool = False


class _Sampling(_Base):
    model: StrictStr | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: Number = Field(default=1.0, ge=0, le=2)
    top_p: Number = Field(default=1.0, ge=TOP_P_MIN, le=1)
    n: StrictInt = Field(default=1, ge=1, le=1)  # one choice per prompt
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    frequency_penalty: Number = Field(default=0.0, ge=-2, le=2)
    presence_penalty: Number = Field(default=0.0, ge=-2, le=2)
    logit_bias: dict[StrictStr, Number] | None = None  # not supported: the server rejects a non-empty one
    # Extensions (vLLM spells them the same way).
    top_k: StrictInt | None = Field(default=None, ge=1)
    repetition_penalty: Number = Field(default=1.0, ge=0.01, le=10)
    logprobs: StrictBool | StrictInt | None = None  # not supported: the server rejects a truthy value
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=0)

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        if 0 < v < TEMPERATURE_MIN:
            raise ValueError(f"temperature must be 0 (greedy) or between {TEMPERATURE_MIN} and 2")
        return v

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else v or []
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop sequences are allowed, got {len(stops)}")
        if any(len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"a stop sequence may have at most {MAX_STOP_CHARS} characters")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v:
            raise ValueError("logit_bias is not supported by this server; remove it or send {}")
        return v

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(default=16, ge=1)  # OpenAI's default for completions
    echo: Literal[False] = False

    @model_validator(mode="after")
    def _prompts(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and isinstance(self.prompt[0], str) and len(self.prompt) > MAX_PROMPTS:
            raise ValueError(f"at most {MAX_PROMPTS} prompts per request, got {len(self.prompt)}; split the request")
        return self

    def chars(self) -> int:
        """Characters of text to tokenize (0 for token ids)."""
        return (
            len(self.prompt) if isinstance(self.prompt, str) else sum(len(p) for p in self.prompt if isinstance(p, str))
        )


class TextPart(_Base):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Base):
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart]
    name: StrictStr | None = None  # accepted, not used by chat templates here

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)

    def chars(self) -> int:
        return sum(len(m.text()) for m in self.messages)


# ------------------------------------------------------------------------------------------------ responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def error_body(
    message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def envelope(kind: str, rid: str, model: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model, "choices": choices, **extra}
