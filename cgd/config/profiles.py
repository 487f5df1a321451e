"""Paper profiles: YAML overlays on params.yaml holding only the keys that differ from the demo.

A profile may start with `extends: other.yaml` (a sibling file) to inherit another profile's keys.

Applying one rewrites params.yaml in place (comments kept, via ruamel.yaml) after validating the
result, so DVC sees ordinary params changes: `dvc status` lists the stages they invalidate.
"""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from ruamel.yaml import YAML

from cgd import config as P


def _merge(base, overlay, prefix: str, changed: list[str]) -> None:
    for key, value in overlay.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in base:
            raise P.ParamsError(dotted, "is in the profile but not in params.yaml",
                                "fix the profile's spelling")
        # Sections merge key by key; free-form mappings (eval.benchmarks) are replaced whole.
        if isinstance(value, dict) and isinstance(base[key], dict) and dotted not in P.mapping_keys():
            _merge(base[key], value, dotted, changed)
        elif base[key] != value:
            base[key] = value
            changed.append(dotted)


def load_profile(path: str | Path, _seen: tuple = ()) -> dict:
    """A profile's overlay with its `extends:` chain resolved (the child's keys win)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ValueError(f"profile {path} extends itself through {' -> '.join(map(str, _seen))}")
    if not path.exists():
        raise FileNotFoundError(f"no profile {path}; available: "
                                f"{', '.join(p.stem for p in sorted(path.parent.glob('*.yaml')))}")
    overlay = yaml.safe_load(path.read_text()) or {}
    parent = overlay.pop("extends", None)
    if parent is None:
        return overlay
    merged = load_profile(path.parent / parent, (*_seen, path.resolve()))
    _deep_update(merged, overlay, "")
    return merged


def _deep_update(base: dict, overlay: dict, prefix: str) -> None:
    for key, value in overlay.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and isinstance(base.get(key), dict) and dotted not in P.mapping_keys():
            _deep_update(base[key], value, dotted)
        else:
            base[key] = value


def apply_profile(profile: str | Path, params_path: str | Path = "params.yaml",
                  dvc_yaml: str | Path | None = None) -> list[str]:
    """Overlay `profile` onto `params_path`; returns the dotted keys whose value changed."""
    return apply_overlay(load_profile(Path(profile)), params_path, dvc_yaml)


def apply_overlay(overlay: dict, params_path: str | Path = "params.yaml",
                  dvc_yaml: str | Path | None = None) -> list[str]:
    """Overlay a nested mapping of params onto `params_path` (validated first, comments kept)."""
    params_path = Path(params_path)
    rt = YAML()
    rt.preserve_quotes = True
    # Keep `null` spelled out (ruamel's default writes nothing), as the rest of the file does.
    rt.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = rt.load(params_path.read_text())
    changed: list[str] = []
    _merge(doc, overlay, "", changed)
    buf = io.StringIO()
    rt.dump(doc, buf)
    # Validate before writing: a bad profile never leaves params.yaml half-applied.
    P.from_dict(yaml.safe_load(buf.getvalue()),
                dvc_yaml if dvc_yaml is not None else params_path.parent / "dvc.yaml")
    params_path.write_text(buf.getvalue())
    return changed
