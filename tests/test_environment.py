"""environment.yml (conda, GPU) pins exactly what pyproject.toml's base set plus extras pin."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(requirements):
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]+\])?==([^\s;]+)", req.strip())
        assert m, f"'{req}' is not an exact pin"
        out[m.group(1).lower().replace("_", "-")] = (m.group(2) or "", m.group(3))
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    expected = _pins(project["dependencies"] + extras["gpu"] + extras["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == expected
    assert "python=3.11" in env["dependencies"]


def test_cpu_lock_agrees_with_direct_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = dict(line.split("==") for line in (REPO / "requirements/lock-cpu.txt").read_text().split()
                if "==" in line)
    lock = {k.lower().replace("_", "-"): v for k, v in lock.items()}
    for name, (_, version) in _pins(project["dependencies"]).items():
        assert lock.get(name) == version, f"lock has {name}=={lock.get(name)}, pyproject {version}"
