"""From raw YAML to the schema's dataclasses: types, literals and field ranges, each error naming its key."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal

from cgd.config.schema import Params, ParamsError

# ---------------------------------------------------------------- building and type checking


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:  # free-form values (ablation overrides), checked by a cross-field rule
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]):  # an optional section: its own errors
            return _coerce(value, options[0], key)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ParamsError:
                continue
        raise ParamsError(key, f"is {value!r}; expected {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ParamsError(key, f"is {value!r}; expected one of {', '.join(map(repr, allowed))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(key, f"is {value!r}; expected {_type_name(tp)}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(key, f"is {value!r}; expected {_type_name(tp)}")
        _, item = typing.get_args(tp)
        return {str(k): _coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(key, f"is {value!r}; expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(key, f"is {value!r}; expected an integer")
        return value
    if tp is float:
        # YAML reads 1e-6 (no dot) as a string; accept it rather than surprise the user.
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(key, f"is {value!r}; expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ParamsError(key, f"is {value!r}; expected a non-empty string")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def _check_range(value: Any, meta: typing.Mapping, key: str) -> None:
    if value is None or isinstance(value, str):  # null, or a named setting such as "auto"
        return
    help_ = meta.get("help", "")
    for bound, ok, word in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
    ):
        limit = meta.get(bound)
        if limit is not None and not ok(value, limit):
            raise ParamsError(key, f"is {value!r}, out of range: must be {word} {limit}", help_)


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ParamsError(prefix or "<root>", f"is {data!r}; expected a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    dotted = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(fields)}"
            raise ParamsError(dotted(key), "is not a known key", fix)
    values = {}
    for name, f in fields.items():
        if name not in data:
            raise ParamsError(dotted(name), "is missing", f"add it (expected {_type_name(hints[name])})")
        values[name] = _coerce(data[name], hints[name], dotted(name))
        _check_range(values[name], f.metadata, dotted(name))
    return cls(**values)


# A section's `model` written as the keys that differ from a role's: rollout.model from the
# student's (who writes y'), critique_quality.model from the teacher's (the judge).
FILLED_MODELS = {"rollout": "student", "critique_quality": "teacher"}


def _fill_models(raw: dict) -> dict:
    """Each FILLED_MODELS section's model as written holds the role's keys that differ; the rest are
    the role's. critique_quality.backend null is critique.backend (the judge served as stage 03 serves the teacher)."""
    for section, role in FILLED_MODELS.items():
        given = (raw.get(section) or {}).get("model") if isinstance(raw.get(section), dict) else None
        if isinstance(given, dict) and isinstance(raw.get(role), dict):
            raw = {**raw, section: {**raw[section], "model": {**raw[role], **given}}}
    judge, critique = raw.get("critique_quality"), raw.get("critique")
    if isinstance(judge, dict) and "backend" in judge and judge["backend"] is None and isinstance(critique, dict):
        raw = {**raw, "critique_quality": {**judge, "backend": critique.get("backend")}}
    return raw


def build(raw: dict) -> Params:
    """Typed params from a raw mapping (types and ranges only; `from_dict` also validates)."""
    return _build(Params, _fill_models(raw), "")


def mapping_keys(cls: type = None, prefix: str = "") -> set[str]:
    """Dotted keys typed as free-form mappings (dict[str, X]) rather than fixed sections."""
    cls = cls or Params
    out = set()
    for name, tp in typing.get_type_hints(cls).items():
        dotted = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(tp):
            out |= mapping_keys(tp, dotted)
        elif typing.get_origin(tp) is dict:
            out.add(dotted)
    return out


def section(params: Params, name: str) -> dict:
    """A section as a plain dict, for printing in notebooks and writing into reports."""
    return dataclasses.asdict(getattr(params, name)) if dataclasses.is_dataclass(
        getattr(params, name)) else getattr(params, name)
