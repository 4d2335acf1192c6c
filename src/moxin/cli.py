"""`moxin <command>`: every command is a typed function; its `--help` is generated from the signature and the
docstring. A parameter annotated `Recipe` becomes a RECIPE argument (file or shipped name) with `--set key=value`
overrides and `--dry-run`. A MoxinError prints one line and exits 2, with no traceback.

The command table is lazy: `moxin --help` reads each command's summary from its module's source with `ast`, without
importing it. A command module is imported only when its command runs (or for its own `--help`); command modules,
recipes and configs import no torch or transformers at module level (those load inside the function bodies), so
`moxin --help` and `moxin <command> --help` start in well under a second (tests/test_startup.py)."""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import inspect
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from moxin.errors import MoxinError

# command words → "module:function". A group (e.g. "model") lists its subcommands.
COMMANDS: dict[str, str] = {
    "build": "moxin.build.commands:build",
    "config": "moxin.commands:config",
    "model info": "moxin.commands:model_info",
    "import": "moxin.commands:import_model",
    "export hf": "moxin.commands:export_hf",
    "generate": "moxin.commands:generate",
    "data": "moxin.data.commands:data",
    "data inspect": "moxin.data.commands:inspect",
    "data trace": "moxin.data.commands:trace",
    "tokenizer": "moxin.tokenizer.commands:tokenizer",
    "chat": "moxin.serve.commands:chat",
    "serve": "moxin.serve.commands:serve",
    "export gguf": "moxin.serve.commands:export_gguf",
    "pretrain": "moxin.train.commands:pretrain",
    "pretrain show-batch": "moxin.train.commands:show_batch",
    "checkpoint consolidate": "moxin.train.ckpt_commands:consolidate",
    "adapt": "moxin.adapt.commands:adapt",
    "finetune sft": "moxin.finetune.commands:sft",
    "finetune dpo": "moxin.finetune.commands:dpo",
    "finetune grpo": "moxin.finetune.commands:grpo",
    "lineage": "moxin.finetune.commands:lineage",
    "release": "moxin.release.commands:release",
    "mof check": "moxin.release.commands:mof_check",
    "verify": "moxin.release.commands:verify",
    "eval": "moxin.eval.commands:eval_command",
    "report": "moxin.report.commands:report",
    "compare": "moxin.compare.commands:compare",
}


# ------------------------------------------------------------------------------------------------ docstrings
def parse_doc(fn: Callable) -> tuple[str, str, dict[str, str]]:
    """(summary line, description, {param: help}) from a Google-style docstring."""
    return parse_docstring(inspect.getdoc(fn) or "")


def parse_docstring(doc: str) -> tuple[str, str, dict[str, str]]:
    """`parse_doc` on a docstring already cleaned of its indentation (`inspect.cleandoc`)."""
    parts = re.split(r"\n\s*Args:\s*\n", doc, maxsplit=1)
    body = parts[0].strip()
    summary = body.split("\n\n")[0].replace("\n", " ")
    params: dict[str, str] = {}
    if len(parts) == 2:
        current = None
        for line in parts[1].splitlines():
            m = re.match(r"\s*(\w+)(?: \(.*?\))?:\s*(.*)", line)
            if m and (not line.startswith(" " * 8)):
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    return summary, body, params


# ------------------------------------------------------------------------------------------------ parser
def _is_recipe(tp: Any) -> bool:
    return getattr(tp, "__name__", None) == "Recipe"


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def build_parser(name: str, fn: Callable) -> argparse.ArgumentParser:
    _summary, body, helps = parse_doc(fn)
    parser = argparse.ArgumentParser(
        prog=f"moxin {name}", description=body, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    hints = get_type_hints(fn)
    for pname, param in inspect.signature(fn).parameters.items():
        tp = _unwrap_optional(hints.get(pname, str))
        if _is_recipe(tp):
            _add_recipe_arguments(parser, fn, helps.get(pname, ""))
        elif pname in getattr(fn, "optional_positionals", ()):  # e.g. `moxin report A [B]`
            parser.add_argument(
                pname,
                metavar=pname.upper(),
                nargs="?",
                type=_caster(tp, pname),
                default=param.default,
                help=helps.get(pname, ""),
            )
        else:
            _add_argument(parser, pname, tp, param.default, helps.get(pname, ""))
    return parser


def _add_recipe_arguments(parser: argparse.ArgumentParser, fn: Callable, help_text: str) -> None:
    """RECIPE (a file or a shipped name; optional when the command sets `default_recipe`) and `--set`."""
    default = getattr(fn, "default_recipe", None)
    parser.add_argument(
        "recipe",
        metavar="RECIPE",
        nargs="?" if default else None,
        default=default,
        help=(help_text or "recipe TOML file, or a shipped recipe name")
        + (f" (default: {default})" if default else ""),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set model.n_layers=4 (repeatable)",
    )


def _add_argument(parser: argparse.ArgumentParser, pname: str, tp: Any, default: Any, help_text: str) -> None:
    """One parameter: positional without a default, `--flag/--no-flag` for bools, repeatable for lists."""
    flag = "--" + pname.replace("_", "-")
    if default is inspect.Parameter.empty:
        parser.add_argument(pname, metavar=pname.upper(), type=_caster(tp, pname), help=help_text)
    elif tp is bool:
        parser.add_argument(flag, dest=pname, action=argparse.BooleanOptionalAction, default=default, help=help_text)
    elif get_origin(tp) is list:
        (item,) = get_args(tp) or (str,)
        parser.add_argument(
            flag, dest=pname, action="append", type=_caster(item, pname), default=None, help=f"{help_text} (repeatable)"
        )
    else:
        kw: dict[str, Any] = {"type": _caster(tp, pname)}
        if get_origin(tp) is Literal:
            kw = {"choices": list(get_args(tp))}
        shown = "" if default is None or "default" in help_text else f" (default: {default})"
        parser.add_argument(flag, dest=pname, default=default, help=help_text + shown, **kw)


def _caster(tp: Any, pname: str) -> Callable[[str], Any]:
    if tp in (int, float, Path, str):
        return tp
    return str


def takes_recipe(fn: Callable) -> bool:
    return any(_is_recipe(_unwrap_optional(t)) for t in get_type_hints(fn).values())


# ------------------------------------------------------------------------------------------------ dispatch
def resolve_command(argv: list[str]) -> tuple[str | None, list[str]]:
    """Longest run of leading words that names a command → (command, remaining argv)."""
    words = []
    for a in argv:
        if a.startswith("-"):
            break
        words.append(a)
    for n in range(len(words), 0, -1):
        key = " ".join(words[:n])
        if key in COMMANDS:
            return key, argv[n:]
    return None, argv


def load_command(key: str) -> Callable:
    module, func = COMMANDS[key].split(":")
    return getattr(importlib.import_module(module), func)


@functools.cache
def _module_tree(module: str) -> ast.Module | None:
    """The parsed source of a moxin module, found under this package's folder without importing anything."""
    parts = module.split(".")
    if parts[0] != "moxin":
        return None
    base = Path(__file__).resolve().parent.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return ast.parse(path.read_text("utf-8"), filename=str(path))
    return None


def _source_docstring(module: str, func: str, depth: int = 0) -> str | None:
    """The docstring of top-level function `func` in `module`, following `from X import func` re-exports."""
    tree = _module_tree(module)
    if tree is None or depth > 4:
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == func:
            return ast.get_docstring(node) or ""
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == func:
                    return _source_docstring(node.module, alias.name, depth + 1)
    return None


def command_summary(key: str) -> str:
    """A command's one-line summary (the first paragraph of its docstring), read without importing its module."""
    module, func = COMMANDS[key].split(":")
    doc = _source_docstring(module, func)
    if doc is None:  # not a plain function in a moxin source file: import it
        return parse_doc(load_command(key))[0]
    return parse_docstring(doc)[0]


def overview(prefix: str = "") -> str:
    keys = [k for k in COMMANDS if k.startswith(prefix)]
    width = max(len(k) for k in keys) + 2
    lines = ["usage: moxin <command> [args] (moxin <command> --help for details)", "", "commands:"]
    for key in keys:
        lines.append(f"  {key.ljust(width)}{command_summary(key)}")
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    key, rest = resolve_command(argv)
    if key is None:
        group = " ".join(w for w in argv if not w.startswith("-"))
        if argv and not argv[0].startswith("-") and not any(k.startswith(group + " ") for k in COMMANDS):
            import difflib

            close = difflib.get_close_matches(group, list(COMMANDS), n=1)
            hint = f"; did you mean 'moxin {close[0]}'?" if close else "; run 'moxin --help' for the list"
            raise MoxinError(f"unknown command {group!r}{hint}")
        print(overview(group + " " if group else ""))
        return 0
    fn = load_command(key)
    subs = [k for k in COMMANDS if k.startswith(key + " ")]
    parser = build_parser(key, fn)
    if subs:
        parser.epilog = "subcommands: " + ", ".join(f"moxin {s}" for s in subs)
    args = vars(parser.parse_args(rest))
    if "recipe" in args:
        from moxin.recipe import load_recipe

        rname = next(p for p, t in get_type_hints(fn).items() if _is_recipe(_unwrap_optional(t)))
        args[rname] = load_recipe(args.pop("recipe"), args.pop("overrides"))
    result = fn(**args)
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return run(argv)
    except MoxinError as e:
        from rich.console import Console
        from rich.markup import escape

        msg = " ".join(str(e).split("\n"))
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(msg)}")
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
