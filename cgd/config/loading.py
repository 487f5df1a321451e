"""Loading params.yaml: every stage calls `load()`, which coerces it (coerce.py) and validates it
(validation.py) before any heavy work, failing on the first problem with a `ParamsError` naming the
dotted key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cgd.config.coerce import build
from cgd.config.keys import apply_overrides
from cgd.config.schema import Params, ParamsError
from cgd.config.validation import validate


def from_dict(raw: dict, dvc_yaml: str | Path = "dvc.yaml") -> Params:
    params = build(raw)
    validate(params, raw, dvc_yaml)
    return params


def load(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None,
         dvc_yaml: str | Path | None = None) -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(str(path), "does not exist", "run from the repository root")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(str(path), f"is not valid YAML ({exc})", "fix the syntax") from exc
    raw = apply_overrides(raw or {}, overrides or {})
    return from_dict(raw, dvc_yaml if dvc_yaml is not None else path.parent / "dvc.yaml")
