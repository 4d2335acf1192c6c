"""Typed configs: build a dataclass from a plain dict with validation errors that name the file, the key and the
bad value, and suggest the nearest valid key; write a dataclass back as a dict or TOML.

Each component owns its config dataclass (in its own package) and receives only that section. A dataclass may
define `_resolve(cls, data) -> data` to expand shorthands (e.g. a model preset) before validation. Reading recipe
files, shipped recipe names and `--set` overrides live in `moxin.recipe`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from moxin.errors import ConfigError

_MISSING = dataclasses.MISSING


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(tp))}]"
    return "none" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _first_leaf(key: str, value: Any) -> str:
    """'modle' = {layers = 3} → 'modle.layers': the full dotted key the user wrote."""
    while isinstance(value, dict) and len(value) == 1:
        ((k, value),) = value.items()
        key = f"{key}.{k}"
    return key


def _toml_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("toml", True)]


def _all_keys(cls: type, prefix: str) -> list[str]:
    keys = []
    for f in _toml_fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        tp = get_type_hints(cls)[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys.extend(_all_keys(tp, key + "."))
    return keys


def _convert(tp: Any, value: Any, key: str, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key, where)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key} in {where} must be {_type_name(tp)}, got {_fmt(value)}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in get_args(tp)], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; choose one of {_type_name(tp)}"
        raise ConfigError(f"{key} in {where} has invalid value {_fmt(value)}{hint}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} in {where} must be a table ([{key}]), got {_fmt(value)}")
        return from_dict(tp, value, where, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} in {where} must be a list, got {_fmt(value)}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [_convert(item_tp, v, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} in {where} must be a table, got {_fmt(value)}")
        _, val_tp = get_args(tp) or (str, Any)
        return {str(k): _convert(val_tp, v, f"{key}.{k}", where) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key} in {where} must be {_type_name(tp)}, got {_fmt(value)}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key} in {where} must be {_type_name(tp)}, got {_fmt(value)}")


def from_dict(cls: type, data: dict[str, Any], where: str = "<config>", prefix: str = "") -> Any:
    """Build dataclass `cls` from `data`, checking every key and type. Errors name `where` and the dotted key."""
    resolve = getattr(cls, "_resolve", None)
    if resolve is not None:
        data = resolve(dict(data), where=where, prefix=prefix)
    hints = get_type_hints(cls)
    names = {f.name for f in _toml_fields(cls)}
    for k in data:
        if k not in names:
            valid = _all_keys(cls, prefix)
            bad = _first_leaf(f"{prefix}{k}", data[k])
            close = difflib.get_close_matches(bad, valid, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(names))}"
            raise ConfigError(f"unknown key '{bad}' in {where}{hint}")
    kwargs = {}
    for f in _toml_fields(cls):
        key = f"{prefix}{f.name}"
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], key, where)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(f"missing required key '{key}' in {where}; add it to the recipe or pass --set {key}=...")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where=where, prefix=prefix)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass → plain TOML/JSON-able dict (paths as strings, None values dropped)."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: to_dict(getattr(obj, f.name)) for f in _toml_fields(type(obj)) if getattr(obj, f.name) is not None
        }
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_toml(data: dict[str, Any]) -> str:
    """Minimal TOML writer for resolved configs (tables, arrays of tables, scalars, lists of scalars)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {scalar(x)}" for k, x in v.items()) + "}"
        raise TypeError(type(v))

    def table(d: dict[str, Any], name: str) -> None:
        simple = {k: v for k, v in d.items() if not _is_table(v) and not _is_table_array(v)}
        if name and (simple or not d):
            lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {scalar(v)}" for k, v in simple.items())
        for k, v in d.items():
            sub = f"{name}.{k}" if name else k
            if _is_table(v):
                table(v, sub)
            elif _is_table_array(v):
                for item in v:
                    lines.append(f"\n[[{sub}]]")
                    lines.extend(f"{ik} = {scalar(iv)}" for ik, iv in item.items())

    table(data, "")
    return "\n".join(lines).strip() + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)
