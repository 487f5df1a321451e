"""Dotted keys (`train.lr`) into raw params trees: read, write, and the overrides DVC and sweeps pass."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from cgd.config.schema import ParamsError


def lookup(raw: dict, dotted: str):
    """The value at `dotted` (KeyError when a part is missing)."""
    node = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def assign(tree: dict, dotted: str, value) -> None:
    """Set `dotted` in place, creating the sections on the way."""
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted keys (as `dvc exp run -S train.lr=5e-6` does) on a copy of the raw params."""
    out = yaml.safe_load(yaml.safe_dump(raw))
    for dotted_key, value in (overrides or {}).items():
        node = out
        parts = dotted_key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ParamsError(dotted_key, "does not name a key inside a section", "check the spelling")
            node = node[part]
        if parts[-1] not in node:
            close = difflib.get_close_matches(parts[-1], list(node), n=1)
            raise ParamsError(dotted_key, "is not a known key",
                              f"did you mean '{close[0]}'?" if close else "check the spelling")
        node[parts[-1]] = value
    return out
