"""Rendering chat templates (Jinja) with bounded resources.

A chat template comes with a tokenizer or a recipe, so it is untrusted code. Jinja's immutable sandbox already
refuses attribute escapes; this adds what it leaves open: every string, list or number an expression builds is
capped (`*`, `**`, `+`, `%`, `~`, joins, padding methods and filters), the rendered text is capped at `max_chars`,
and a wall-clock deadline is checked on every template line (so loops that print nothing still stop). A template
that hits a limit fails with one `TemplateError` line naming it. The variables are those transformers'
`apply_chat_template` passes (messages, add_generation_prompt, the special tokens), so a normal template renders
the same text."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from functools import lru_cache
from typing import Any

from moxin.errors import TemplateError, TemplateLimitError

MAX_CHARS = 4_000_000  # rendered text, and any one string or list built on the way
MAX_SECONDS = 1.0
MAX_INT_BITS = 4096
PRODUCED_FACTOR = 4  # all output pieces of one render (set blocks and macros included) ≤ this × max_chars
_budget = threading.local()  # characters the current render may still produce (compiled templates are shared)
_FILENAME = "<moxin chat template>"
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(\*|\d{7,})")  # '%*d' or a 7-digit field width


class _Limit(Exception):
    """Raised inside a render; turned into one TemplateError line naming the template."""


def _size(v: Any) -> int:
    return len(v) if isinstance(v, (str, list, tuple)) else 0


def _check(n: int, what: str) -> None:
    if n > MAX_CHARS:
        raise _Limit(f"{what} would build {n:,} items (limit {MAX_CHARS:,})")


def _bounded_binop(op: str, a: Any, b: Any) -> Any:
    if op == "*":
        if isinstance(a, int) and isinstance(b, int):
            if a.bit_length() + b.bit_length() > MAX_INT_BITS:
                raise _Limit(f"'*' on integers of {a.bit_length()} and {b.bit_length()} bits")
        else:
            count = b if _size(a) or isinstance(a, (str, list, tuple)) else a
            if isinstance(count, int):
                _check(max(_size(a), _size(b)) * count, "'*'")
        return a * b
    if op == "**":
        if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and b * a.bit_length() > MAX_INT_BITS:
            raise _Limit(f"'**' would build an integer of about {b * a.bit_length():,} bits")
        return a**b
    if op == "+":
        _check(_size(a) + _size(b), "'+'")
        return a + b
    if isinstance(a, str) and _WIDE_FORMAT.search(a):  # op == "%"
        raise _Limit("'%' formatting with a field width of millions of characters")
    return a % b


def _join(parts: Any, sep: str = "") -> str:
    items, total = [], 0
    for p in parts:
        items.append(str(p))
        total += len(items[-1]) + len(sep)
        _check(total, "joining")
    return sep.join(items)


def _counted_str(value: Any = "") -> str:
    """`str` as the compiled template sees it: every piece of output passes here, and is charged to the render."""
    text = str(value)
    left = getattr(_budget, "left", None)
    if left is not None:
        _budget.left = left - len(text)
        if _budget.left < 0:
            raise _Limit(f"it produced more than {PRODUCED_FACTOR} x {MAX_CHARS:,} characters of output pieces")
    return text


def _str_method(obj: Any, args: tuple, kwargs: dict) -> None:
    """Size checks for the str methods that can build big strings from small arguments."""
    name, s = obj.__name__, obj.__self__
    if name in ("ljust", "rjust", "center", "zfill") and args and isinstance(args[0], int):
        _check(args[0], f"str.{name}")
    elif name == "expandtabs":
        width = args[0] if args else kwargs.get("tabsize", 8)
        _check(len(s) * max(int(width), 1), "str.expandtabs")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = len(s) + 1 if args[0] == "" else s.count(args[0])
        _check(len(s) + hits * max(len(args[1]) - len(args[0]), 0), "str.replace")
    elif name == "join" and args:
        _check(
            sum(_size(x) for x in args[0]) + len(s) * len(args[0]) if isinstance(args[0], (list, tuple)) else 0,
            "str.join",
        )
    elif name == "format":
        _check(len(s) + sum(_size(x) for x in args) + sum(_size(x) for x in kwargs.values()), "str.format")


def _environment():
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import Namespace

    class Generation(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` (marks assistant text in some templates): rendered as is."""

        tags = frozenset({"generation"})

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    class SafeNamespace(Namespace):
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            if any(str(k).startswith("_") for k in attrs):
                raise _Limit("namespace() names may not start with '_'")
            Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            if str(name).startswith("_"):
                raise _Limit(f"namespace attribute {name!r} may not start with '_'")
            Namespace.__setitem__(self, name, value)

    class Bounded(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "+", "%"])
        concat = staticmethod(_join)

        def call_binop(self, context, operator, left, right):
            return _bounded_binop(operator, left, right)

        def call(__self, __context, __obj, *args, **kwargs):  # jinja's own signature
            if isinstance(getattr(__obj, "__self__", None), str) and hasattr(__obj, "__name__"):
                _str_method(__obj, args, kwargs)
            return super().call(__context, __obj, *args, **kwargs)

    env = Bounded(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    _bound_filters(env)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: time.strftime(fmt)
    env.globals["namespace"] = SafeNamespace
    return env


def _bound_filters(env) -> None:
    import jinja2

    base = dict(env.filters)

    def center(value, width=80):
        _check(int(width), "center")
        return base["center"](value, width)

    def indent(s, width=4, *args, **kwargs):
        w = width if isinstance(width, int) else len(str(width))
        _check(len(str(s)) + (str(s).count("\n") + 1) * w, "indent")
        return base["indent"](s, width, *args, **kwargs)

    @jinja2.pass_eval_context
    def replace(eval_ctx, s, old, new, count=None):
        _str_method(str(s).replace, (str(old), str(new)), {})
        return base["replace"](eval_ctx, s, old, new, count)

    @jinja2.pass_eval_context
    def join(eval_ctx, value, d="", attribute=None):
        items = list(value)
        _check(sum(len(str(x)) for x in items) + len(str(d)) * len(items), "join")
        return base["join"](eval_ctx, items, d, attribute)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        if indent is not None:
            _check(int(indent), "tojson indent")
        text = json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
        _check(len(text), "tojson")
        return text

    env.filters.update(center=center, indent=indent, replace=replace, join=join, tojson=tojson)
    env.filters.pop("format", None)  # '%'-formatting with arbitrary widths; templates use '~' or '+' instead


def _raise(message: str) -> None:
    from jinja2.exceptions import TemplateError as JinjaTemplateError

    raise JinjaTemplateError(message)


@lru_cache(maxsize=32)
def _compile(source: str):
    tmpl = _environment().from_string(source)
    g = tmpl.root_render_func.__globals__  # '~' compiles to these two; bound them too
    g["str_join"] = g["markup_join"] = _join
    g["str"] = _counted_str
    return tmpl


def render_template(
    source: str, name: str, max_chars: int | None = None, max_seconds: float | None = None, **variables: Any
) -> str:
    """Render `source` with `variables` under the limits; `name` says which template in the error line.
    Jinja errors (syntax, the template's own `raise_exception`) are TemplateError lines too."""
    from jinja2.exceptions import TemplateError as JinjaTemplateError

    limit = max_chars or MAX_CHARS
    deadline = time.monotonic() + (max_seconds or MAX_SECONDS)
    try:
        tmpl = _compile(source)
    except JinjaTemplateError as e:
        raise TemplateError(f"{name}: not a valid Jinja template ({_one_line(e)}); fix the template") from None
    old, _budget.left = sys.gettrace(), PRODUCED_FACTOR * limit
    sys.settrace(_tracer(deadline))
    try:
        text = _join(tmpl.generate(**variables))
    except _Limit as e:
        raise TemplateLimitError(f"{name}: rendering stopped: {e}; the template must build bounded text") from None
    except JinjaTemplateError as e:
        raise TemplateError(f"{name}: {_one_line(e)}") from None
    finally:
        sys.settrace(old)
        _budget.left = None
    if len(text) > limit:
        raise TemplateLimitError(
            f"{name}: rendering stopped: the text has {len(text):,} characters (limit {limit:,}); "
            f"shorten the conversation or the template"
        )
    return text


def _tracer(deadline: float):
    """A trace function that checks the deadline on every line the template's compiled code runs."""

    def local(frame, event, arg):
        if event == "line" and time.monotonic() > deadline:
            raise _Limit(f"it ran past its time limit of {MAX_SECONDS:g} s")
        return local

    def on_call(frame, event, arg):
        if time.monotonic() > deadline:
            raise _Limit(f"it ran past its time limit of {MAX_SECONDS:g} s")
        return local if frame.f_code.co_filename == "<template>" else None

    return on_call


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def template_name(tok: Any) -> str:
    """How errors name a tokenizer's template: by the tokenizer's path."""
    return f"chat template of {getattr(tok, 'name_or_path', '') or 'the tokenizer'}"


def render_chat(
    tok: Any,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool = False,
    template: str | None = None,
    name: str | None = None,
) -> str:
    """The text `tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` gives, rendered under
    the limits. `template` overrides the tokenizer's own; raises TemplateError when there is none."""
    source = template or getattr(tok, "chat_template", None)
    name = name or template_name(tok)
    if not source:
        raise TemplateError(f"{name}: the tokenizer has no chat template; set one (e.g. finetune.chat_template)")
    special = dict(getattr(tok, "special_tokens_map", {}) or {})
    return render_template(
        source,
        name,
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        tools=None,
        documents=None,
        **special,
    )
